"""Learned features and matchers side by side with SIFT + NN: homography mAA on oxford_affine_vgg, relative
pose AUC on scannet_sample_superglue, extraction time per image and matching time per pair (CPU).

Run: LOCALMATCH_DATA=../shared/data LOCALMATCH_WEIGHTS=../shared/weights python bench/learned.py
     [--only oxford|scannet|loftr|ensemble|multiview|ukbench|rerank|batch] [--combos sift+nn,aliked+lightglue,...]

A combination is ``features+matcher``, optionally with feature options after ``:`` and matcher options after
``@``: ``aliked+lightglue:detection_threshold=0``, ``keynet-affnet+nn@ratio=0.85``.

``--only multiview`` (not part of the default run) counts verified pairs on multiview_dev: 37 pairs of one
scene, which should verify, and 136 of different scenes, which should not, with the largest inlier count
among the latter (how close chance comes to the 15 that verify). ``--only ukbench`` does the same on
ukbench_subset: 84 pairs of one object and 91 pairs of the objects' first views.

``--only rerank`` measures what re-ranking a database in two passes (``Database.search``'s ``matcher_top``)
costs in mAP and saves in time on multiview_dev, against ``nn`` alone and the matcher on every candidate.

``--only batch`` times LightGlue on candidate pairs one after the other (with and without point pruning)
against the same pairs in one batch, which kornia runs as a batch only with pruning off.

``--only ensemble`` asks how far pooling several combinations goes on oxford_affine_vgg: per pair, each
combination's refined inliers are pooled and one homography is fitted to them all (MAGSAC++, 1 px).

ScanNet protocol (SuperGlue's): images at 640x480, intrinsics scaled to match; the essential matrix is
estimated from points normalised by K with a threshold of 1 px over the mean focal length (OpenCV
USAC_MAGSAC, whose default seed is fixed) and decomposed with recoverPose; the error
of a pair is the larger of the rotation error and the translation-direction error (sign-free), a failure
counts as 180 degrees; AUC up to 5/10/20 degrees, in percent.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

import localmatch
from localmatch.geometry import HOMOGRAPHY, RansacConfig, estimate
from localmatch.matching import MATCHERS
from localmatch.refine import refine_homography
from common import data_dir, mean_accuracy, multiview_pairs, parse_options, ukbench_pairs
from oxford_homography import THRESHOLDS, corner_error, pairs as oxford_pairs

COMBOS = ["sift+nn", "disk+nn", "disk+lightglue", "aliked+nn", "aliked+lightglue", "xfeat+nn", "xfeat+lighterglue",
          "aliked+lightglue:detection_threshold=0", "keynet-affnet+nn"]

#: The combinations pooled by ``--only ensemble``: each learned one that refines best, and SIFT.
ENSEMBLE = ["sift+nn", "keynet-affnet+nn", "disk+lightglue", "aliked+lightglue", "xfeat+lighterglue"]


def parse_combo(combo: str) -> tuple[str, str, dict, dict]:
    """``features+matcher[:option=value,...][@option=value,...]`` -> (features, matcher, feature options,
    matcher options); for example ``keynet-affnet+nn@ratio=0.85``."""
    combo, _, matcher_options = combo.partition("@")
    pair, _, options = combo.partition(":")
    features, matcher = pair.split("+")
    return features, matcher, parse_options(options), parse_options(matcher_options)


def split_combos(text: str) -> list[str]:
    """Comma-separated combinations, whose options are comma-separated too: a part without ``+`` is one more
    option of the combination before it (``aliked+lightglue:detection_threshold=0,max_features=4096,disk+nn``
    is two combinations)."""
    combos: list[str] = []
    for part in text.split(","):
        if "+" in part or not combos:
            combos.append(part)
        else:
            combos[-1] += "," + part
    return combos


def timed_extract(path, features, options, times):
    start = time.perf_counter()
    f = localmatch.extract(path, features, **options)
    times.append(time.perf_counter() - start)
    return f


def timed_match(fa, fb, matcher, matcher_options, times):
    start = time.perf_counter()
    m = localmatch.match(fa, fb, matcher, matcher_options)
    times.append(time.perf_counter() - start)
    return m


def oxford_verifications(combo: str, t_extract: list, t_match: list):
    """Per oxford pair: its name, the true homography, A's size, the combination's verification and the same
    refined (``refine=True``: pairs whose homography tilts A by 1.1 or more are matched again on B warped
    into A's frame). Extraction and matching times are appended to the lists."""
    features, matcher, options, matcher_options = parse_combo(combo)
    cache = {}
    for name, path_a, path_b, H_true in oxford_pairs():
        for p in (path_a, path_b):
            if p not in cache:
                cache[p] = timed_extract(p, features, options, t_extract)
        fa, fb = cache[path_a], cache[path_b]
        matches = timed_match(fa, fb, matcher, matcher_options, t_match)
        result = localmatch.verify_matches(fa, fb, matches, geometry="homography")
        refined = refine_homography(result, fa, fb, path_a, path_b, features=features, feature_config=options,
                                    matcher=MATCHERS.get(matcher), matcher_config=matcher_options)
        yield name, H_true, fa.image_size, result, refined


def oxford(combos: list[str]) -> None:
    """mAA of each combination, and with its verified homographies refined."""
    print("## oxford_affine_vgg: homography mAA (20 pairs), CPU\n")
    print("| features + matcher | mAA | mAA, refined | median s extraction / image | median s matching / pair "
          "| errors > 10 px |")
    print("|---|---|---|---|---|---|")
    for combo in combos:
        t_extract, t_match, errors, refined = [], [], [], []
        for _, H_true, size, result, better in oxford_verifications(combo, t_extract, t_match):
            errors.append(corner_error(result.matrix, H_true, *size))
            refined.append(corner_error(better.matrix, H_true, *size))
        print(f"| {combo} | {mean_accuracy(errors, THRESHOLDS):.3f} | {mean_accuracy(refined, THRESHOLDS):.3f} "
              f"| {statistics.median(t_extract):.3f} | {statistics.median(t_match):.3f} | {sum(e > 10 for e in errors)} |")


def pooled_homography(verifications: list) -> np.ndarray | None:
    """One homography fitted to the inliers of several verifications of a pair, 1 px threshold (the
    refinement's); the inliers of each are given in its own order, one combination after the other."""
    points_a = np.concatenate([v.points_a for v in verifications])
    points_b = np.concatenate([v.points_b for v in verifications])
    model = estimate(points_a, points_b, HOMOGRAPHY, config=RansacConfig(threshold=1.0))
    return None if model is None else model.matrix


def ensemble(combos: list[str]) -> None:
    """mAA of every set of the combinations (one alone included) whose refined inliers are pooled per pair."""
    print("## oxford_affine_vgg: pooled refined inliers of several combinations (20 pairs)\n")
    print("| combinations | mAA | errors (px) above 1, by pair |")
    print("|---|---|---|")
    runs = {combo: list(oxford_verifications(combo, [], [])) for combo in combos}
    truth = [(name, H_true, size) for name, H_true, size, *_ in runs[combos[0]]]
    for count in range(1, len(combos) + 1):
        for subset in itertools.combinations(combos, count):
            errors = []
            for i, (_, H_true, size) in enumerate(truth):
                H = pooled_homography([runs[c][i][-1] for c in subset])
                errors.append(corner_error(H, H_true, *size))
            above = ", ".join(f"{truth[i][0]} {e:.2f}" for i, e in enumerate(errors) if e > 1)
            print(f"| {' + '.join(subset)} | {mean_accuracy(errors, THRESHOLDS):.3f} | {above} |", flush=True)


def scannet_pairs():
    root = data_dir("scannet_sample_superglue")
    for line in (root / "scannet_sample_pairs_with_gt.txt").read_text().split("\n"):
        if not line.strip():
            continue
        v = line.split()
        K_a, K_b = np.array(v[4:13], float).reshape(3, 3), np.array(v[13:22], float).reshape(3, 3)
        T = np.array(v[22:38], float).reshape(4, 4)
        yield root / "images" / Path(v[0]).name, root / "images" / Path(v[1]).name, K_a, K_b, T


def load_640(path: Path):
    image = localmatch.load_image(path)
    pixels = cv2.resize(image.pixels, (640, 480), interpolation=cv2.INTER_AREA)
    return localmatch.Image(pixels, str(path)), (640 / image.width, 480 / image.height)


def scale_K(K, sx, sy):
    # pixel-centre convention: x' + 0.5 = s (x + 0.5)
    S = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    return S @ K


def relative_pose_error(points_a, points_b, K_a, K_b, T):
    """max(rotation error, translation-direction error) in degrees; 180 when no pose."""
    if len(points_a) < 5:
        return 180.0
    na = cv2.undistortPoints(points_a.reshape(-1, 1, 2).astype(np.float64), K_a, None).reshape(-1, 2)
    nb = cv2.undistortPoints(points_b.reshape(-1, 1, 2).astype(np.float64), K_b, None).reshape(-1, 2)
    threshold = 1.0 / np.mean([K_a[0, 0], K_a[1, 1], K_b[0, 0], K_b[1, 1]])
    try:
        E, mask = cv2.findEssentialMat(na, nb, np.eye(3), method=cv2.USAC_MAGSAC, prob=0.99999, threshold=threshold)
    except cv2.error:
        return 180.0
    if E is None or E.shape != (3, 3):
        return 180.0
    _, R, t, _ = cv2.recoverPose(E, na, nb, np.eye(3), mask=mask)
    R_gt, t_gt = T[:3, :3], T[:3, 3]
    cos = np.clip((np.trace(R_gt.T @ R) - 1) / 2, -1, 1)
    err_R = np.degrees(np.arccos(cos))
    cos_t = np.clip(abs(t.ravel() @ t_gt) / (np.linalg.norm(t) * np.linalg.norm(t_gt) + 1e-12), 0, 1)
    err_t = np.degrees(np.arccos(cos_t))
    return float(max(err_R, err_t))


def pose_auc(errors, thresholds=(5, 10, 20)):
    """SuperGlue's pose_auc, in percent."""
    errors = np.sort(np.asarray(errors))
    recall = (np.arange(len(errors)) + 1) / len(errors)
    errors, recall = np.r_[0.0, errors], np.r_[0.0, recall]
    out = []
    for t in thresholds:
        last = np.searchsorted(errors, t)
        r = np.r_[recall[:last], recall[last - 1]]
        e = np.r_[errors[:last], t]
        out.append(100 * np.trapezoid(r, x=e) / t)
    return out


def scannet(combos: list[str]) -> None:
    print("\n## scannet_sample_superglue: relative pose AUC (15 pairs, 640x480), CPU\n")
    print("| features + matcher | AUC@5 | AUC@10 | AUC@20 | median s extraction / image | median s matching / pair |")
    print("|---|---|---|---|---|---|")
    for combo in combos:
        features, matcher, options, matcher_options = parse_combo(combo)
        t_extract, t_match, errors = [], [], []
        for path_a, path_b, K_a, K_b, T in scannet_pairs():
            (ia, sa), (ib, sb) = load_640(path_a), load_640(path_b)
            fa = timed_extract(ia, features, {"max_side": 640, **options}, t_extract)
            fb = timed_extract(ib, features, {"max_side": 640, **options}, t_extract)
            m = timed_match(fa, fb, matcher, matcher_options, t_match)
            corr = localmatch.api.correspondences_of(fa, fb, m)
            errors.append(relative_pose_error(corr.points_a, corr.points_b, scale_K(K_a, *sa), scale_K(K_b, *sb), T))
        auc = pose_auc(errors)
        print(f"| {combo} | {auc[0]:.1f} | {auc[1]:.1f} | {auc[2]:.1f} | {statistics.median(t_extract):.3f} "
              f"| {statistics.median(t_match):.3f} |")


def verified_pairs(name: str, pairs, combos: list[str]) -> None:
    """Verified pairs that show one scene or object (should match) and pairs that show different ones
    (should not), and the largest inlier count among the latter: how close chance comes to the 15 that
    verify. ``pairs`` is ``(same, different)``."""
    same, different = pairs
    print(f"\n## {name}: pairs verified (geometry auto; {len(same)} of one scene or object, {len(different)} "
          "of different ones)\n")
    print("| features + matcher | same verified | different verified | largest inlier count, different |")
    print("|---|---|---|---|")
    for combo in combos:
        features, matcher, options, matcher_options = parse_combo(combo)
        cache: dict = {}

        def extracted(path):
            if path not in cache:
                cache[path] = localmatch.extract(str(path), features, **options)
            return cache[path]

        def inliers(a, b) -> int:
            fa, fb = extracted(a), extracted(b)
            matches = localmatch.match(fa, fb, matcher, matcher_options)
            return localmatch.verify_matches(fa, fb, matches, geometry="auto").num_inliers

        same_counts = [inliers(a, b) for a, b in same]
        different_counts = [inliers(a, b) for a, b in different]
        print(f"| {combo} | {sum(c >= 15 for c in same_counts)} | {sum(c >= 15 for c in different_counts)} "
              f"| {max(different_counts)} |", flush=True)


#: ``--only rerank``'s default: each learned feature with the matcher it is re-ranked with by default.
RERANK_COMBOS = ["aliked+lightglue", "xfeat+lighterglue"]


def rerank_passes(combos: list[str], tops: list[int]) -> None:
    """A multiview_dev database of each combination's features (the database defaults: a gem shortlist of
    100, which holds all 78 other images): each scene's first image queries it, re-ranked with ``nn`` alone, with
    the matcher on the first N of ``nn``'s ranking (``matcher_top``), and with the matcher on every candidate."""
    import tempfile

    from localmatch.database import Database, expand_image_paths
    from localmatch.evaluate import evaluate, ground_truth_from_folders

    images = sorted(expand_image_paths([data_dir("multiview_dev")]))
    truth = ground_truth_from_folders(images)
    queries = [q for i, q in enumerate(truth) if i == 0 or Path(q.query).parent != Path(truth[i - 1].query).parent]
    print(f"\n## Re-ranking in two passes: multiview_dev, {len(queries)} queries (each scene's first image) "
          f"among {len(images)} images\n")
    print("| features | re-ranking | mAP | s per query (median; query extraction included) |\n|---|---|---|---|")
    for combo in combos:
        features, matcher, options, matcher_options = parse_combo(combo)
        with tempfile.TemporaryDirectory() as tmp, Database(Path(tmp) / "db", features=features,
                                                            feature_config=options or None) as db:
            db.add(images)
            runs = [("nn", "nn", None)] + [(f"{matcher} on the top {n} after nn", matcher, n) for n in tops]
            runs.append((f"{matcher} on every candidate", matcher, None))
            for label, run_matcher, top in runs:
                report = evaluate(db, queries, matcher=run_matcher, matcher_top=top,
                                  matcher_config=matcher_options if run_matcher == matcher else None)
                print(f"| {combo} | {label} | {report.mean_ap:.3f} | {report.latency_ms / 1000:.2f} |", flush=True)


#: ``--only batch``: the query and candidates (british_museum's 10 photographs: the first queries the other 9).
BATCH_SCENE = "british_museum"


def lightglue_batches(combos: list[str]) -> None:
    """LightGlue over one query's candidates: pair by pair (as ``Database.search`` runs it) with the preset's
    point pruning and without, and all pairs in one batch. kornia batches pairs only when they have the same
    number of keypoints and prune nothing (a pruning batch runs pair by pair), so every image keeps the
    smallest count of the scene and the batch runs with ``width_confidence=-1``."""
    import torch

    from localmatch.matching.lightglue import PRESETS, LightGlueConfig, _as_input, _model

    paths = sorted((data_dir("multiview_dev") / BATCH_SCENE).glob("*.jpg"))
    print(f"\n## LightGlue: candidate pairs one after the other or in one batch ({BATCH_SCENE}: 1 query, "
          f"{len(paths) - 1} candidates), CPU\n")
    print("| features + matcher | keypoints per image | s per pair: one after the other, pruning (default) "
          "| one after the other, no pruning | one batch, no pruning | batch matches equal to no pruning's |")
    print("|---|---|---|---|---|---|")
    for combo in combos:
        features, matcher, options, matcher_options = parse_combo(combo)
        extracted = [localmatch.extract(p, features=features, config=options or None) for p in paths]
        n = min(len(f) for f in extracted)
        inputs = [_as_input(f, torch.device("cpu")) for f in extracted]
        inputs = [{**x, "keypoints": x["keypoints"][:, :n], "descriptors": x["descriptors"][:, :n]} for x in inputs]
        query, candidates = inputs[0], inputs[1:]
        config = LightGlueConfig(**matcher_options)
        preset, weights = PRESETS[features]
        threshold = config.filter_threshold_for(features)
        # width_confidence None: the preset's point pruning; -1: none
        models = {"pruning": _model(preset, weights, "cpu", threshold, config.depth_confidence, None, False),
                  "no pruning": _model(preset, weights, "cpu", threshold, config.depth_confidence, -1, False)}
        seconds, matches = {}, {}
        with torch.inference_mode():
            for name, model in models.items():
                model({"image0": query, "image1": candidates[0]})  # warm-up
                start = time.perf_counter()
                outs = [model({"image0": query, "image1": c}) for c in candidates]
                seconds[name] = (time.perf_counter() - start) / len(candidates)
                matches[name] = torch.cat([o["matches0"] for o in outs])
            batch_query = {k: v.expand(len(candidates), *v.shape[1:]) for k, v in query.items()}
            batch = {k: torch.cat([c[k] for c in candidates]) for k in query}
            start = time.perf_counter()
            out = models["no pruning"]({"image0": batch_query, "image1": batch})
            batched = (time.perf_counter() - start) / len(candidates)
        agree = float((out["matches0"] == matches["no pruning"]).float().mean())
        print(f"| {combo} | {n} | {seconds['pruning']:.3f} | {seconds['no pruning']:.3f} | {batched:.3f} | {agree:.1%} |", flush=True)


def loftr_cost() -> None:
    """LoFTR's per-pair time (its checkpoint is not available here: random weights, time only)."""
    print("\n## LoFTR per-pair cost (real architecture, random weights: time only, no quality)\n")
    print("| working size | s per pair |\n|---|---|")
    m = localmatch.MATCHERS.get("loftr")
    pairs = list(scannet_pairs())[:3]
    for side in (480, 640):
        config = m.make_config(pretrained="none", max_side=side)
        times = []
        for path_a, path_b, *_ in pairs:
            a, b = localmatch.load_image(path_a), localmatch.load_image(path_b)
            m.run(a, b, config)
            start = time.perf_counter()
            m.run(a, b, config)
            times.append(time.perf_counter() - start)
        print(f"| {side} px long side | {statistics.median(times):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("oxford", "scannet", "loftr", "ensemble", "multiview", "ukbench", "rerank",
                                                "batch"))
    parser.add_argument("--combos", help=f"default: {','.join(COMBOS)}; with --only ensemble: {','.join(ENSEMBLE)}; "
                                         f"with --only rerank and batch: {','.join(RERANK_COMBOS)}")
    parser.add_argument("--tops", default="5,10,20", help="--only rerank: the matcher_top values (default 5,10,20)")
    args = parser.parse_args()
    combos = split_combos(args.combos) if args.combos else COMBOS
    if args.only in (None, "oxford"):
        oxford(combos)
    if args.only in (None, "scannet"):
        scannet(combos)
    if args.only in (None, "loftr"):
        loftr_cost()
    if args.only == "multiview":
        verified_pairs("multiview_dev", multiview_pairs(), combos)
    if args.only == "ukbench":
        verified_pairs("ukbench_subset", ukbench_pairs(), combos)
    if args.only == "ensemble":
        ensemble(combos if args.combos else ENSEMBLE)
    if args.only == "rerank":
        rerank_passes(combos if args.combos else RERANK_COMBOS, [int(n) for n in args.tops.split(",")])
    if args.only == "batch":
        lightglue_batches(combos if args.combos else RERANK_COMBOS)


if __name__ == "__main__":
    main()
