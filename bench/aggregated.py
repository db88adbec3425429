"""ASMK benchmark: accuracy of global vs ASMK* vs R-ASMK*, bytes per image, query time at 10k/100k images.

Run: LOCALMATCH_DATA=../shared/data LOCALMATCH_WEIGHTS=../shared/weights python bench/aggregated.py
     [--only accuracy|learned|settings|bfloat16|delf|whitening|float|idf|cropped|boxes|reextract|bytes|latency]
     [--features sift,aliked,disk,delf]
     [--accuracy-features sift|delf|aliked:detection_threshold=0,max_features=4096|...] [--accuracy-matcher nn]

1. accuracy: multiview_dev (every image queries the other 78) and ukbench_subset + imagededup base images
   as distractors; each representation in its own Database (RootSIFT, default settings: 1024 words trained
   on the indexed descriptors, ASMK*, multiple assignment 5 / 1, alpha 3, tau 0), mAP before and after
   re-ranking; beside it the reference ``asmk`` package on the same stored descriptors and codebook.
2. learned: ASMK* and R-ASMK* over ALIKED, DISK (2048 features) and DELF-style features (1000), 1024
   words, next to RootSIFT on multiview_dev, before re-ranking (the same core as the database, on
   features extracted once); ``--features`` picks the extractors (here, in settings and in whitening).
   settings: each feature's extraction settings (features kept, detection threshold, working size, image
   pyramid) by ASMK* mAP over 6 codebook seeds, then each at its best setting over codebook sizes.
   bfloat16: each learned feature at its retrieval setting extracted in float32 and with ``cpu_bfloat16``
   (bfloat16 autocast on a CPU that has bfloat16 instructions), by ASMK* mAP over 6 codebook seeds.
   delf: how pairs of DELF-style features verify on multiview_dev next to RootSIFT's (37 same-scene and
   136 different-scene pairs, as bench/asift_fallback.py takes them), and what black bars around
   different ukbench objects do to them and to an ASMK database re-ranked with them, with and without the
   flat parts left out (``min_contrast``).
3. whitening: the same ASMK* over local descriptors PCA-whitened on the database's own descriptors (as HOW
   whitens its local features), over 6 codebook seeds, next to the descriptors as extracted.
4. float: R-ASMK against ASMK on RootSIFT over 6 codebook seeds, binarised (ASMK*) and with float residual
   sums (where the regional normalisation changes each word's vector, not only its signs).
   idf: ASMK* and R-ASMK* (grid) with and without idf weighting of the words, at 1024 and 4096 words.
   cropped: ASMK* against R-ASMK* when each query keeps only a centred box of its image (as ROxford's
   queries are cropped to a box), over 6 codebook seeds.
   boxes: the same through the user's path: asmk and rasmk databases evaluated with a centred query box,
   which search(box=...) crops and describes at the whole image's scale, over 6 codebook seeds.
   reextract: R-ASMK* whose regions are described again from their crops (as Detect-to-Retrieve describes
   each detected box), against ASMK* over the whole image, over 6 codebook seeds.
5. bytes: ASMK* inverted file bytes per image with 1000 RootSIFT features per image (multiview_dev).
6. latency: search time over 10k and 100k images with simulated aggregated descriptors (65536 words,
   about 1000 words per image, 128-bit signatures; a query of 4000 words holding a noisy copy of one
   image), localmatch's inverted file (with numba's compiled loop, and without: its numpy path) beside the
   ``asmk`` package's IVF holding the same entries; then the query's word assignment on a 65536-word
   codebook of real RootSIFT, exact and HNSW.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image

from common import data_dir, multiview_pairs, numba_loop, parse_options, timed
from database import evaluation_sets, multiview_paths
import localmatch
from localmatch.database import Database
from localmatch.demo import corner_error
from localmatch.evaluate import average_precision, evaluate, ground_truth_from_folders
from localmatch.features import extract
from localmatch.features.delf import CELL_PER_PIXEL_NOISE
from localmatch.io import Image, load_image
from localmatch.shortlist.asmk import (REGION_PROPOSERS, AsmkConfig, Aggregated, Codebook, InvertedFile,
                                       aggregate_regions, compiled, describe_database_image, describe_query,
                                       train_codebook)

REPRESENTATIONS = ("global", "asmk", "rasmk")


def reference_asmk_map(db: Database, truth, paths: list[str]) -> float:
    """mAP of the ``asmk`` package (ASMK*, MA 5/1, alpha 3, tau 0) on the database's stored descriptors and codebook."""
    from asmk import asmk_method, codebook as ref_codebook, index as ref_index

    codebook = db._current_codebook()
    cdb = ref_codebook.Codebook(ref_index.initialize_index(None), size=codebook.size)
    cdb.index(codebook.centroids.copy())
    params = {"index": {"gpu_id": None},
              "build_ivf": {"kernel": {"binary": True}, "ivf": {"use_idf": False},
                            "quantize": {"multiple_assignment": 1}, "aggregate": {}},
              "query_ivf": {"quantize": {"multiple_assignment": 5}, "aggregate": {}, "search": {"topk": None},
                            "similarity": {"similarity_threshold": 0.0, "alpha": 3.0}}}
    rows = db._rows()
    stored = [db._stored_descriptors(r) for r in rows]
    ids = np.concatenate([np.full(len(d), i) for i, d in enumerate(stored)])
    method = asmk_method.ASMKMethod(params, {}, codebook=cdb).build_ivf(np.concatenate(stored), ids)
    aps = []
    for t in truth:
        query = db.query_features(t.query)[0].descriptors.astype(np.float32)
        _, _, ranks, _ = method.query_ivf(query, np.zeros(len(query), int))
        ranked = [rows[i].path for i in ranks[0] if rows[i].path != t.query]
        aps.append(average_precision(ranked, t.positives, t.junk))
    return float(np.mean(aps))


def accuracy(folder: Path, spec: str = "sift", matcher: str | None = None) -> None:
    """``spec``: a feature name, optionally with options: ``aliked:detection_threshold=0,max_features=4096``;
    ``matcher``: the re-ranking matcher (None: the database's default for the features)."""
    features, options = parse_features(spec)
    print(f"## Retrieval accuracy by representation ({LABELS.get(features, features)}"
          f"{' ' + setting_label(features, options) if options else ''}"
          f"{', re-ranked with ' + matcher if matcher else ''}, 2 cores)\n")
    print("| set | representation | shortlist mAP | re-ranked mAP | `asmk` package mAP (same descriptors and codebook) "
          "| shortlist bytes per image | ms per query (shortlist / re-ranked) |")
    print("|---|---|---|---|---|---|---|")
    for name, files, truth, _ in evaluation_sets():
        for representation in REPRESENTATIONS:
            with Database(folder / f"{name[:8]}-{representation}-{features}", representation=representation,
                          features=features, feature_config=options) as db:
                db.add(files)
                plain = evaluate(db, truth, rerank=False)
                reranked = evaluate(db, truth, rerank=True, matcher=matcher)
                info = db.info()
                if representation == "global":
                    size = (db.path / "shortlist.faiss").stat().st_size / len(db)
                    reference = "-"
                else:
                    size = info["asmk_bytes_per_image"]
                    reference = f"{reference_asmk_map(db, truth, files):.3f}" if representation == "asmk" else "-"
            print(f"| {name} | {representation} | {plain.mean_ap:.3f} | {reranked.mean_ap:.3f} | {reference} "
                  f"| {size:.0f} | {plain.latency_ms:.0f} / {reranked.latency_ms:.0f} |", flush=True)


def parse_features(spec: str) -> tuple[str, dict]:
    """``"name:key=value,key=value"`` -> ``(name, {key: number})``."""
    name, _, options = spec.partition(":")
    return name, parse_options(options)


QUERY_ASSIGNMENTS = (1, 2, 3, 5)
CODEBOOK_SEEDS = tuple(range(6))
CODEBOOK_SIZES = (512, 1024, 2048, 4096)


LABELS = {"sift": "RootSIFT", "aliked": "ALIKED", "disk": "DISK", "delf": "DELF-style"}


def learned(names: tuple[str, ...]) -> None:
    print("\n## ASMK over learned features (multiview_dev, default options: 2048 features, DELF-style 1000; "
          "1024 words trained on the 79 images, before re-ranking)\n")
    print("| features | ASMK* mAP | R-ASMK* mAP (grid regions) | R-ASMK* mAP (keypoint clusters) | entries per image |\n"
          "|---|---|---|---|---|")
    paths, truth = multiview_truth()
    sweeps, assignment_sweeps, seed_sweeps = {}, {}, {}
    for name in names:
        features = multiview_features(name)
        descriptors = np.concatenate([f.descriptors for f in features]).astype(np.float32)
        label = LABELS.get(name, name)
        seed_sweeps[label] = []
        for seed in CODEBOOK_SEEDS:
            codebook = train_codebook(descriptors, 1024, seed=seed)
            row = [asmk_map(features, paths, truth, codebook, AsmkConfig(regions=regions), regional)
                   for regional, regions in ((False, "grid"), (True, "grid"), (True, "clusters"))]
            seed_sweeps[label].append([m for m, _ in row])
            if seed == 0:
                print(f"| {label} | {row[0][0]:.3f} | {row[1][0]:.3f} | {row[2][0]:.3f} | {row[0][1]:.0f} |", flush=True)
        codebook = train_codebook(descriptors, 1024)
        sweeps[label] = [asmk_map(features, paths, truth, train_codebook(descriptors, size), AsmkConfig(), False)[0]
                         for size in CODEBOOK_SIZES]
        assignment_sweeps[label] = [asmk_map(features, paths, truth, codebook, AsmkConfig(query_assignments=m),
                                             False)[0] for m in QUERY_ASSIGNMENTS]
    print(f"\nThe same three columns over {len(CODEBOOK_SEEDS)} k-means seeds of the 1024-word codebook "
          "(mean and sample standard deviation; R-ASMK* minus ASMK* paired by seed):\n")
    print("| features | ASMK* mAP | R-ASMK* (grid) mAP | R-ASMK* (clusters) mAP | clusters minus ASMK* |\n"
          "|---|---|---|---|---|")
    for label, runs in seed_sweeps.items():
        runs = np.array(runs)
        cells = [mean_sd(runs[:, j]) for j in range(3)]
        gain = runs[:, 2] - runs[:, 0]
        print(f"| {label} | " + " | ".join(cells) + f" | {paired_sd(gain)} |")
    print("\nASMK* mAP by codebook size (same features, words trained on them):\n")
    print("| features | " + " | ".join(f"{size} words" for size in CODEBOOK_SIZES) + " |")
    print("|---|" + "---|" * len(CODEBOOK_SIZES))
    for label, values in sweeps.items():
        print(f"| {label} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    print("\nASMK* mAP by the query's multiple assignment (1024 words; images always assigned to 1 word):\n")
    print("| features | " + " | ".join(f"query to {m} nearest" for m in QUERY_ASSIGNMENTS) + " |")
    print("|---|" + "---|" * len(QUERY_ASSIGNMENTS))
    for label, values in assignment_sweeps.items():
        print(f"| {label} | " + " | ".join(f"{v:.3f}" for v in values) + " |")


# Extraction settings each feature is tried with, for retrieval (ASMK*); {} is the feature's defaults.
EXTRACTION_SETTINGS = {
    "sift": ({}, {"max_features": 4096}),
    "aliked": ({}, {"detection_threshold": 0}, {"detection_threshold": 0, "max_features": 4096},
               {"detection_threshold": 0, "max_features": 8192}, {"detection_threshold": 0, "max_side": 640}),
    "disk": ({}, {"max_features": 4096}, {"max_features": 8192}),
    "delf": ({}, {"max_side": 512}, {"max_side": 1024}, {"max_features": 500}, {"max_features": 2000},
             {"max_side": 1024, "max_features": 2000}, {"scales": (0.7071, 1.0)},
             {"scales": (0.5, 0.7071, 1.0, 1.4142)}, {"min_contrast": None}, {"reflect_border": True}),
}
DEFAULT_SETTINGS = {"sift": "max_features=2048", "aliked": "max_features=2048, detection_threshold=kornia's 0.2",
                    "disk": "max_features=2048", "delf": "max_side=768, max_features=1000, min_contrast=1"}
# The setting of each feature that retrieves best in the table above, compared across codebook sizes.
RETRIEVAL_SETTINGS = {"sift": {}, "aliked": {"detection_threshold": 0, "max_features": 4096},
                      "disk": {"max_features": 4096}, "delf": {}}
SIZE_SWEEP = (512, 1024, 2048, 4096, 8192)
SIZE_SWEEP_SEEDS = CODEBOOK_SEEDS[:3]


def extraction_settings(names: tuple[str, ...]) -> None:
    print(f"\n## Extraction settings for retrieval (multiview_dev, ASMK*, 1024 words, {len(CODEBOOK_SEEDS)} "
          "codebook seeds, before re-ranking)\n")
    print("| features | setting | ASMK* mAP | features per image | entries per image | s extraction / image |\n"
          "|---|---|---|---|---|---|")
    paths, truth = multiview_truth()
    for name in names:
        for options in EXTRACTION_SETTINGS.get(name, ({},)):
            features, seconds = timed_multiview_features(name, **options)
            maps, entries = seed_maps(features, paths, truth, 1024, CODEBOOK_SEEDS)
            label = setting_label(name, options)
            print(f"| {LABELS.get(name, name)} | {label} | {mean_sd(maps)} "
                  f"| {np.mean([len(f.keypoints) for f in features]):.0f} | {entries:.0f} | {seconds:.3f} |",
                  flush=True)


def bfloat16_extraction(names: tuple[str, ...]) -> None:
    print(f"\n## ASMK* over features extracted in float32 and in bfloat16 (multiview_dev, each feature at its "
          f"retrieval setting, 1024 words, {len(CODEBOOK_SEEDS)} codebook seeds, before re-ranking)\n")
    print("| features | setting | precision | ASMK* mAP | s extraction / image |\n|---|---|---|---|---|")
    paths, truth = multiview_truth()
    for name in names:
        if name == "sift":
            continue  # OpenCV's SIFT has no bfloat16 path
        options = RETRIEVAL_SETTINGS.get(name, {})
        for precision, cpu_bfloat16 in (("float32", False), ("bfloat16", True)):
            features, seconds = timed_multiview_features(name, **options, cpu_bfloat16=cpu_bfloat16)
            maps, _ = seed_maps(features, paths, truth, 1024, CODEBOOK_SEEDS)
            print(f"| {LABELS.get(name, name)} | {setting_label(name, options)} | {precision} | {mean_sd(maps)} "
                  f"| {seconds:.3f} |", flush=True)


def codebook_sizes(names: tuple[str, ...]) -> None:
    print(f"\n## ASMK* mAP by codebook size, each feature at its retrieval setting (multiview_dev, "
          f"{len(SIZE_SWEEP_SEEDS)} codebook seeds, before re-ranking)\n")
    print("| features | setting | " + " | ".join(f"{size} words" for size in SIZE_SWEEP) + " |\n"
          "|---|---|" + "---|" * len(SIZE_SWEEP))
    paths, truth = multiview_truth()
    for name in names:
        options = RETRIEVAL_SETTINGS.get(name, {})
        features, _ = timed_multiview_features(name, **options)
        cells = [mean_sd(seed_maps(features, paths, truth, size, SIZE_SWEEP_SEEDS)[0]) for size in SIZE_SWEEP]
        print(f"| {LABELS.get(name, name)} | {setting_label(name, options)} | " + " | ".join(cells) + " |", flush=True)


def seed_maps(features: list, paths: list[str], truth, words: int, seeds) -> tuple[list[float], float]:
    """ASMK* mAP with a codebook of ``words`` trained with each seed, and entries per image (first seed)."""
    runs = [asmk_map(features, paths, truth, codebook, AsmkConfig(), False)
            for codebook in seed_codebooks(features, words, seeds)]
    return [m for m, _ in runs], runs[0][1]


def seed_codebooks(features: list, words: int = 1024, seeds=CODEBOOK_SEEDS) -> list[Codebook]:
    """A codebook of ``words`` trained on all the features' descriptors with each of the ``seeds``."""
    descriptors = np.concatenate([f.descriptors for f in features]).astype(np.float32)
    return [train_codebook(descriptors, words, seed=seed) for seed in seeds]


def mean_sd(values) -> str:
    """``"mean ± sample standard deviation"`` of mAPs, to 3 places."""
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def paired_sd(differences) -> str:
    """``"+mean ± sample standard deviation"`` of mAP differences paired by seed, to 3 places."""
    return f"{np.mean(differences):+.3f} ± {np.std(differences, ddof=1):.3f}"


def setting_label(name: str, options: dict) -> str:
    given = ", ".join(f"{k}={v}" for k, v in options.items())
    return given or f"defaults ({DEFAULT_SETTINGS.get(name, 'as extracted')})"


def delf_pairs() -> None:
    print("\n## Pairs verified with DELF-style features and with RootSIFT (multiview_dev, `verify` defaults, "
          "geometry auto, a match at 15 inliers)\n")
    print("| features | same scene: verified of 37 | median inliers | different scenes: verified of 136 "
          "| largest inlier counts |\n|---|---|---|---|---|")
    same, different = multiview_pairs()
    rows = (("sift", "RootSIFT", None, None),
            ("delf", "DELF-style (RANSAC threshold 6 working px, ratio 0.9: the defaults)", None, None),
            ("delf", "DELF-style, 3 working px", 1.0, None), ("delf", "DELF-style, 12 working px", 4.0, None),
            ("delf", "DELF-style, ratio 0.85", None, 0.85), ("delf", "DELF-style, ratio 0.88", None, 0.88))
    for name, label, cell_noise, ratio in rows:
        by_path = dict(zip(multiview_paths(), multiview_features(name)))  # extracted once per run
        inliers = {kind: pair_inliers(pairs, by_path, name, cell_noise, ratio)
                   for kind, pairs in (("same", same), ("different", different))}
        largest = ", ".join(str(v) for v in sorted(inliers["different"])[-3:][::-1])
        print(f"| {label} | {np.sum(inliers['same'] >= 15)} | {np.median(inliers['same']):.0f} "
              f"| {np.sum(inliers['different'] >= 15)} | {largest} |", flush=True)


BAR_OBJECTS = 10  # the first view of each of the first ukbench_subset objects
BAR_FRAMES = {"pillarbox": (480, 853, 0, 106), "letterbox": (640, 640, 80, 0)}  # canvas h, w; offset y, x


def delf_bars() -> None:
    """Different photographs in the same black bars, and a photograph against its own copy in bars."""
    print(f"\n## DELF-style features and black bars ({BAR_OBJECTS} different ukbench_subset objects, 640 x 480, "
          "put in the same bars; `verify` defaults)\n")
    print("| bars | min_contrast | different objects: verified of 45 | largest inlier counts | a photograph and "
          "its copy in bars: verified | median inliers | largest mean corner error, px |\n|---|---|---|---|---|---|---|")
    paths = sorted((data_dir("ukbench_subset") / "images").glob("*.jpg"))[::4][:BAR_OBJECTS]
    photos = [load_image(p).pixels for p in paths]
    plain_by_setting = {min_contrast: [extract(photo, "delf", min_contrast=min_contrast) for photo in photos]
                        for min_contrast in (None, 1.0)}
    for bars, (_, _, y, x) in BAR_FRAMES.items():
        framed = [in_bars(photo, bars) for photo in photos]
        for min_contrast, plain in plain_by_setting.items():
            boxed = [extract(image, "delf", min_contrast=min_contrast) for image in framed]
            different = [localmatch.verify(boxed[a], boxed[b], features="delf").num_inliers
                         for a in range(len(boxed)) for b in range(a + 1, len(boxed))]
            copies = [localmatch.verify(a, b, features="delf", geometry="homography") for a, b in zip(plain, boxed)]
            moved = np.array([[1, 0, x], [0, 1, y], [0, 0, 1]], float)
            shift = [corner_error(c.matrix if c.is_match else None, moved, photo.shape[1], photo.shape[0])
                     for c, photo in zip(copies, photos)]
            largest = ", ".join(str(v) for v in sorted(different)[-3:][::-1])
            copy_inliers = np.median([c.num_inliers for c in copies])
            print(f"| {bars} | {min_contrast} | {sum(n >= 15 for n in different)} | {largest} "
                  f"| {sum(c.is_match for c in copies)} of {len(copies)} | {copy_inliers:.0f} | {max(shift):.2f} |",
                  flush=True)


def in_bars(photo: np.ndarray, bars: str) -> np.ndarray:
    """``photo`` (480 x 640) on the black canvas of ``BAR_FRAMES[bars]``."""
    height, width, y, x = BAR_FRAMES[bars]
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[y:y + photo.shape[0], x:x + photo.shape[1]] = photo
    return canvas


def delf_bars_database(folder: Path) -> None:
    """An ASMK database of DELF-style cells of ukbench_subset in which the first view of each object is in
    pillarbox bars (saved as JPEG); each of those queries it."""
    print("\n## An ASMK database of DELF-style cells, the first view of each ukbench_subset object in pillarbox "
          "bars: its top 3 (itself left out) when that view queries\n")
    print("| min_contrast | views of its object, shortlist | views of its object, re-ranked (verified) "
          "| other objects verified, re-ranked |\n|---|---|---|---|")
    paths = sorted((data_dir("ukbench_subset") / "images").glob("*.jpg"))
    images, queries = [], []
    for n, path in enumerate(paths):
        if n % 4 == 0:
            path = folder / f"bars_{path.name}"
            PIL.Image.fromarray(in_bars(load_image(paths[n]).pixels, "pillarbox")).save(path, quality=90)
            queries.append(str(path))
        images.append(str(path))
    group = {path: n // 4 for n, path in enumerate(images)}
    for min_contrast in (None, 1.0):
        with Database(folder / f"delf_bars_{min_contrast}", features="delf", representation="asmk",
                      feature_config={"min_contrast": min_contrast}) as db:
            db.add(images, progress=False)
            shortlisted = [top_three(db, query, rerank=False) for query in queries]
            reranked = [top_three(db, query, rerank=True) for query in queries]
        own = sum(group[h.path] == group[q] for q, hits in zip(queries, shortlisted) for h in hits)
        own_reranked = [(group[h.path] == group[q], h.verified) for q, hits in zip(queries, reranked) for h in hits]
        total = 3 * len(queries)
        print(f"| {min_contrast} | {own} of {total} | {sum(o for o, _ in own_reranked)} of {total} "
              f"({sum(o and v for o, v in own_reranked)}) | {sum(v and not o for o, v in own_reranked)} |", flush=True)


def top_three(db: Database, query: str, rerank: bool) -> list:
    """The query's first three hits among all the database's images, the query itself left out."""
    return [h for h in db.search(query, k=4, shortlist=len(db), rerank=rerank) if h.path != query][:3]


def pair_inliers(pairs, by_path: dict, name: str, cell_noise: float | None, ratio: float | None) -> np.ndarray:
    """Inliers of each pair through ``verify`` on the given features; ``cell_noise`` in place of
    ``CELL_PER_PIXEL_NOISE`` (RANSAC's threshold is 3 working px / ``working_scale``) and ``ratio`` in
    place of the matcher's default, where given."""
    def features(path):
        f = by_path[str(path)]
        return f if cell_noise is None else dataclasses.replace(
            f, working_scale=f.working_scale * CELL_PER_PIXEL_NOISE / cell_noise)

    matcher_config = None if ratio is None else {"ratio": ratio}
    return np.array([localmatch.verify(features(a), features(b), features=name, matcher_config=matcher_config)
                     .num_inliers for a, b in pairs])


WHITENING_POWERS = (0.0, 0.25, 0.5)


def multiview_features(name: str, **options) -> list:
    """The named features of every multiview_dev image, extracted once per run and options."""
    return timed_multiview_features(name, **options)[0]


def multiview_truth() -> tuple[list[str], list]:
    """multiview_dev's image paths and its ground truth (every image queries the others of its folder)."""
    paths = multiview_paths()
    return paths, ground_truth_from_folders(paths)


@functools.cache
def multiview_images() -> tuple:
    """Every multiview_dev image, decoded once per run."""
    return tuple(load_image(p) for p in multiview_paths())


@functools.cache
def timed_multiview_features(name: str, **options) -> tuple[list, float]:
    """``(features of every multiview_dev image, seconds of extraction per image)``, once per run and
    options; the model is loaded before the clock starts."""
    images = multiview_images()
    extract(images[0], name, **options)
    features, seconds = timed(lambda: [extract(image, name, **options) for image in images])
    return features, seconds / len(images)


def whitening(names: tuple[str, ...]) -> None:
    print("\n## ASMK* over PCA-whitened local descriptors (multiview_dev, default options, 1024 words, "
          f"{len(CODEBOOK_SEEDS)} codebook seeds, before re-ranking)\n")
    print("| features | as extracted | " + " | ".join(f"PCA, eigenvalues ** -{p:g}" for p in WHITENING_POWERS)
          + " |\n|---|---|" + "---|" * len(WHITENING_POWERS))
    paths, truth = multiview_truth()
    for name in names:
        label = LABELS.get(name, name)
        extracted = multiview_features(name)
        cells = []
        for features in [extracted] + [pca_whitened(extracted, p) for p in WHITENING_POWERS]:
            cells.append(mean_sd(seed_maps(features, paths, truth, 1024, CODEBOOK_SEEDS)[0]))
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


def float_aggregation() -> None:
    """R-ASMK against ASMK with the residual sums kept as unit float vectors (no binarisation), where the
    regional normalisation changes each word's vector and not only its signs."""
    print("\n## R-ASMK vs ASMK, binarised and float (multiview_dev, RootSIFT 2048, 1024 words, "
          f"{len(CODEBOOK_SEEDS)} codebook seeds, before re-ranking)\n")
    paths, truth = multiview_truth()
    features = multiview_features("sift")
    columns = [(f"{'R-' if regions else ''}ASMK{'*' if binary else ''}{f' ({regions})' if regions else ''}",
                AsmkConfig(binary=binary, regions=regions or "clusters"), bool(regions))
               for binary in (True, False) for regions in (None, "clusters", "grid")]
    runs = np.array([[asmk_map(features, paths, truth, codebook, config, regional)[0]
                      for _, config, regional in columns]
                     for codebook in seed_codebooks(features)])
    print("| aggregation | mAP | minus ASMK of the same kind, paired by seed |\n|---|---|---|")
    for j, (label, _, _) in enumerate(columns):
        plain = runs[:, 0 if j < 3 else 3]
        gain = runs[:, j] - plain
        paired = "-" if j in (0, 3) else paired_sd(gain)
        print(f"| {label} | {mean_sd(runs[:, j])} | {paired} |", flush=True)


def idf_weighting() -> None:
    """ASMK* and R-ASMK* (grid) with and without idf weighting of the visual words, at 1024 and 4096 words."""
    print("\n## idf weighting (multiview_dev, RootSIFT 2048, "
          f"{len(CODEBOOK_SEEDS)} codebook seeds, before re-ranking)\n")
    paths, truth = multiview_truth()
    features = multiview_features("sift")
    print("| words | ASMK* | ASMK*, idf | R-ASMK* (grid) | R-ASMK* (grid), idf | R-ASMK* minus ASMK*, paired "
          "| the same with idf |\n|---|---|---|---|---|---|---|")
    for words in (1024, 4096):
        runs = np.array([[asmk_map(features, paths, truth, codebook, AsmkConfig(idf=idf, regions="grid"), regional)[0]
                          for regional in (False, True) for idf in (False, True)]
                         for codebook in seed_codebooks(features, words)])
        print(f"| {words} | " + " | ".join(mean_sd(runs[:, j]) for j in range(4)) +
              f" | {paired_sd(runs[:, 2] - runs[:, 0])} | {paired_sd(runs[:, 3] - runs[:, 1])} |", flush=True)


#: Sides of the centred box a cropped query keeps, as fractions of its image's width and height.
QUERY_CROPS = (1.0, 0.5, 0.35, 0.25)


def cropped_queries(names: tuple[str, ...]) -> None:
    """ASMK* against R-ASMK* databases when each query keeps only the features of a centred box of its
    image, as ROxford and RParis crop their queries to a box: the query then shows a part of its matches."""
    print("\n## R-ASMK* vs ASMK* with cropped queries (multiview_dev, default options, 1024 words, "
          f"{len(CODEBOOK_SEEDS)} codebook seeds, before re-ranking; a query keeps the features of its image's "
          "centred box of the given fraction of each side)\n")
    print("| features | query box | ASMK* mAP | R-ASMK* (clusters) mAP | minus ASMK*, paired | R-ASMK* (grid) mAP "
          "| minus ASMK*, paired |\n|---|---|---|---|---|---|---|")
    paths, truth = multiview_truth()
    for name in names:
        features = multiview_features(name)
        codebooks = seed_codebooks(features)
        for fraction in QUERY_CROPS:
            queries = [central_descriptors(f, fraction) for f in features]
            runs = np.array([[asmk_map(features, paths, truth, codebook, AsmkConfig(regions=regions), regional,
                                       queries)[0]
                              for regional, regions in ((False, "clusters"), (True, "clusters"), (True, "grid"))]
                             for codebook in codebooks])
            cells = [cell for j in (1, 2) for cell in (mean_sd(runs[:, j]), paired_sd(runs[:, j] - runs[:, 0]))]
            print(f"| {LABELS.get(name, name)} | {box_label(fraction)} | {mean_sd(runs[:, 0])} | "
                  + " | ".join(cells) + " |", flush=True)


def central_descriptors(features, fraction: float) -> np.ndarray:
    """The descriptors whose keypoints lie in :func:`central_box` (pixel centres, so half a pixel in from the
    box's edges; all of them for the whole image)."""
    box = central_box(features.image_size, fraction)
    if box is None:
        return features.descriptors
    x0, y0, x1, y1 = np.subtract(box, 0.5)
    x, y = features.keypoints[:, 0], features.keypoints[:, 1]
    return features.descriptors[(x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)]


#: Sides of the centred query box of the boxes part, as fractions of the query image's width and height.
BOX_FRACTIONS = (1.0, 0.5, 0.25)


def box_queries(folder: Path) -> None:
    """The cropped queries through the user's path: ASMK and R-ASMK databases (RootSIFT, default settings,
    the codebook's seed varied) evaluated with a centred query box, which ``search(box=...)`` crops and
    describes at the scale of the whole image."""
    print("\n## ASMK vs R-ASMK databases with query boxes (multiview_dev, RootSIFT, default settings, codebook "
          f"seeds 0-{len(CODEBOOK_SEEDS) - 1}, before re-ranking; `evaluate` with a centred bbox per query)\n")
    print("| query box | asmk mAP | rasmk mAP | rasmk minus asmk, paired by seed |\n|---|---|---|---|")
    paths, truth = multiview_truth()
    sizes = [image.size for image in multiview_images()]  # decoded once per run, in the order of paths
    boxed = {fraction: [dataclasses.replace(t, bbox=central_box(size, fraction)) for t, size in zip(truth, sizes)]
             for fraction in BOX_FRACTIONS}
    maps = {}
    for seed in CODEBOOK_SEEDS:
        for representation in ("asmk", "rasmk"):
            with Database(folder / f"boxes-{representation}-{seed}", representation=representation,
                          asmk_config={"seed": seed}) as db:
                db.add(paths, progress=False)
                for fraction, queries in boxed.items():
                    maps.setdefault((representation, fraction), []).append(evaluate(db, queries, rerank=False).mean_ap)
    for fraction in BOX_FRACTIONS:
        plain, regional = np.array(maps[("asmk", fraction)]), np.array(maps[("rasmk", fraction)])
        print(f"| {box_label(fraction)} | {mean_sd(plain)} | {mean_sd(regional)} | {paired_sd(regional - plain)} |",
              flush=True)


def central_box(size: tuple[int, int], fraction: float) -> tuple[float, ...] | None:
    """The centred box of ``fraction`` of each side of an image of ``size`` ``(width, height)``; None for 1."""
    if fraction == 1:
        return None
    (width, height), margin = size, (1 - fraction) / 2
    return margin * width, margin * height, (1 - margin) * width, (1 - margin) * height


def box_label(fraction: float) -> str:
    return "whole image" if fraction == 1 else f"{fraction:g} x {fraction:g}"


REEXTRACT_PROPOSERS = {"grid, 1 level": ("grid", {"levels": 1}),
                       "keypoint clusters (2 and 4)": ("clusters", {"counts": (2, 4)})}
#: Crops smaller than this on either side are not described again.
REEXTRACT_MIN_SIDE = 64


def reextracted_regions(names: tuple[str, ...]) -> None:
    """R-ASMK* whose regional descriptors are extracted again from each region's crop, as Detect-to-Retrieve
    extracts DELF in each detected box, against ASMK* over the whole image's features (queries: whole images)."""
    print("\n## R-ASMK* over descriptors extracted again from each region's crop (multiview_dev, default "
          f"options, 1024 words trained on the whole images' descriptors, {len(CODEBOOK_SEEDS)} codebook "
          "seeds, before re-ranking)\n")
    print("| features | regions (besides the whole image) | crops per image | ASMK* mAP (whole image) "
          "| R-ASMK* mAP (re-extracted) | minus ASMK*, paired by seed | entries per image (ASMK* / R-ASMK*) |\n"
          "|---|---|---|---|---|---|---|")
    paths, truth = multiview_truth()
    for name in names:
        whole = multiview_features(name)
        codebooks = seed_codebooks(whole)
        plain = [asmk_map(whole, paths, truth, codebook, AsmkConfig(), False) for codebook in codebooks]
        for label, (proposer, options) in REEXTRACT_PROPOSERS.items():
            sets = [region_sets(image, f, name, proposer, options) for image, f in zip(multiview_images(), whole)]
            regional = [sets_map(sets, whole, paths, truth, codebook) for codebook in codebooks]
            print(f"| {LABELS.get(name, name)} | {label} | {np.mean([len(s) - 1 for s in sets]):.1f} "
                  f"| {mean_sd([m for m, _ in plain])} | {mean_sd([m for m, _ in regional])} "
                  f"| {paired_sd(np.subtract([m for m, _ in regional], [m for m, _ in plain]))} "
                  f"| {plain[0][1]:.0f} / {regional[0][1]:.0f} |",
                  flush=True)


def region_sets(image, whole, name: str, proposer: str, options: dict) -> list[np.ndarray]:
    """The whole image's descriptors, then those extracted from each proposed region's crop."""
    boxes = REGION_PROPOSERS.get(proposer)(image.width, image.height, whole.keypoints, **options)
    sets = [whole.descriptors]
    for x0, y0, x1, y1 in np.round(boxes).astype(int):
        if (x0, y0, x1, y1) == (0, 0, image.width - 1, image.height - 1):
            continue
        if min(x1 - x0, y1 - y0) + 1 < REEXTRACT_MIN_SIDE:
            continue
        crop = Image(np.ascontiguousarray(image.pixels[y0:y1 + 1, x0:x1 + 1]), image.source)
        sets.append(extract(crop, name).descriptors)
    return sets


def sets_map(sets: list[list[np.ndarray]], whole: list, paths: list[str], truth, codebook) -> tuple[float, float]:
    """``(mAP, entries per image)``: database images aggregated by R-ASMK* over their descriptor sets, queried
    by the whole images' ASMK*. ``aggregate_regions`` takes regions as boxes, so set ``r`` is given keypoints
    at ``(r, 0)`` and the one-point box ``(r, 0, r, 0)``: each descriptor falls in its own set's region only."""
    config = AsmkConfig()
    images = []
    for image_sets in sets:
        region = np.repeat(np.arange(len(image_sets), dtype=np.float32), [len(s) for s in image_sets])
        boxes = np.repeat(np.arange(len(image_sets), dtype=np.float32)[:, None], 4, axis=1) * [1, 0, 1, 0]
        images.append(aggregate_regions(np.concatenate(image_sets), np.c_[region, np.zeros_like(region)], boxes,
                                        codebook, assignments=config.database_assignments))
    return inverted_file_map(images, [f.descriptors for f in whole], paths, truth, codebook, config)


def pca_whitened(features: list, power: float) -> list:
    """The features with descriptors centred, rotated onto the principal axes of all of them, scaled by
    ``eigenvalue ** -power`` (0: rotation only, 0.5: full whitening) and L2-normalised again."""
    descriptors = np.concatenate([f.descriptors for f in features]).astype(np.float64)
    mean = descriptors.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(descriptors - mean, rowvar=False))
    projection = eigenvectors / np.maximum(eigenvalues, 1e-12) ** power
    out = []
    for f in features:
        x = (f.descriptors - mean) @ projection
        x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
        out.append(dataclasses.replace(f, descriptors=x.astype(np.float32)))
    return out


def asmk_map(features, paths: list[str], truth, codebook, config: AsmkConfig, regional: bool,
             queries: list[np.ndarray] | None = None) -> tuple[float, float]:
    """``(mAP, entries per image)`` of every image querying the others through an ASMK inverted file; image
    ``i`` queries with ``queries[i]`` (descriptors) where given, else with all of its own descriptors."""
    images = [describe_database_image(f.descriptors, f.keypoints, f.image_size, codebook, config, regional=regional)
              for f in features]
    queries = queries if queries is not None else [f.descriptors for f in features]
    return inverted_file_map(images, queries, paths, truth, codebook, config)


def inverted_file_map(images: list[Aggregated], queries: list[np.ndarray], paths: list[str], truth, codebook,
                      config: AsmkConfig) -> tuple[float, float]:
    """``(mAP, entries per image)``: the aggregated ``images`` in an inverted file, image ``i`` querying the
    others with the descriptors ``queries[i]``."""
    ivf = InvertedFile(codebook.size, codebook.dim, config.binary)
    for i, aggregated in enumerate(images):
        ivf.add(i, aggregated)
    aps = []
    for i, t in enumerate(truth):
        ids, _ = ivf.search(describe_query(queries[i], codebook, config), 100, idf=config.idf)
        aps.append(average_precision([paths[j] for j in ids if j != i], t.positives))
    return float(np.mean(aps)), float(np.mean([len(a) for a in images]))


def bytes_per_image(folder: Path) -> None:
    print("\n## ASMK* bytes per image at 1000 RootSIFT features per image (multiview_dev)\n")
    with Database(folder / "bytes", representation="asmk", feature_config={"max_features": 1000}) as db:
        db.add(multiview_paths())
        info = db.info()
        ivf = db._current_asmk()
    n = info["images"]
    print(f"{n} images, {info['features'] / n:.0f} features and {ivf.num_entries / len(ivf):.0f} words per image, "
          f"{info['codebook_words']} words: **{info['asmk_bytes_per_image']:.0f} bytes per image on disk** "
          f"(`asmk.npz`, zlib-compressed), {ivf.nbytes / n:.0f} bytes per image in RAM (16-byte signature + "
          f"4-byte image index per word, plus word offsets); codebook {(db.path / 'codebook.npy').stat().st_size} "
          f"bytes once.")


def simulated(n: int, words: int, per_image: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(offsets (n+1,), word ids, signatures (E, 16) uint8)`` of ``n`` images, words increasing per image."""
    draws = np.sort(rng.integers(0, words, size=(n, per_image), dtype=np.int64), axis=1)
    keep = np.ones_like(draws, bool)
    keep[:, 1:] = draws[:, 1:] != draws[:, :-1]
    counts = keep.sum(1)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    word_ids = draws[keep]
    signatures = rng.integers(0, 256, size=(len(word_ids), 16), dtype=np.uint8)
    return offsets, word_ids, signatures


def to_asmk_layout(signatures: np.ndarray) -> np.ndarray:
    """Our ``np.packbits`` bytes as the ``asmk`` package's uint32 words (bit 32j at the top of word j)."""
    return np.ascontiguousarray(signatures).view(">u4").astype(np.uint32)


def reference_ivf(offsets, word_ids, signatures, words: int):
    """The ``asmk`` package's IVF state holding the same entries (built directly, not by its slow per-entry loop)."""
    from asmk.inverted_file import IVF

    image_ids = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    order = np.argsort(word_ids, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(word_ids, minlength=words))])
    packed = to_asmk_layout(signatures[order])
    sorted_ids = image_ids[order]
    vecs = [packed[a:b] if b > a else None for a, b in zip(starts[:-1], starts[1:])]
    ids = [sorted_ids[a:b] if b > a else None for a, b in zip(starts[:-1], starts[1:])]
    counts = np.diff(starts).astype(np.int32)
    return IVF(norm_factor=np.diff(offsets).astype(np.float64), n_images=len(offsets) - 1, ivf_vecs=vecs,
               ivf_image_ids=ids, counts=counts, idf=np.ones(words, np.float32), imid_offset=0, use_idf=False)


def latency(queries: int = 20) -> None:
    from asmk import kernel as ref_kernel

    print("\n## Inverted-file search time (simulated aggregated descriptors, 65536 words, 128-bit ASMK*, top 100)\n")
    if not compiled.AVAILABLE:
        print("(numba is not installed: both localmatch columns are its numpy path)\n")
    print("| images | words per image | entries | localmatch build s | localmatch ms per query "
          "| localmatch without numba ms per query | `asmk` package ms per query | ratio | localmatch bytes per image "
          "| finds the noisy copy |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    words, search_ms = 65536, {}
    for n in (10_000, 100_000):
        rng = np.random.default_rng(0)
        offsets, word_ids, signatures = simulated(n, words, 1000, rng)
        start = time.perf_counter()
        ivf = InvertedFile(words, 128, True)
        for i in range(n):
            a, b = offsets[i], offsets[i + 1]
            ivf.add(i, Aggregated(word_ids[a:b].astype(np.int32), signatures[a:b], True, 128))
        ivf.compact()
        build = time.perf_counter() - start
        ref = reference_ivf(offsets, word_ids, signatures, words)
        kernel = ref_kernel.ASMKKernel(None, binary=True)
        similarity = lambda *x: kernel.similarity(*x, alpha=3.0, similarity_threshold=0.0)  # noqa: E731
        ours, numpy_path, theirs, found = [], [], [], 0
        for q in range(queries):
            target = int(rng.integers(n))
            a, b = offsets[target], offsets[target + 1]
            noisy = signatures[a:b] ^ np.packbits(rng.random((b - a, 128)) < 0.1, axis=1)
            extra = rng.choice(words, 3000, replace=False)
            query_words, first = np.unique(np.concatenate([word_ids[a:b], extra]), return_index=True)
            query_vecs = np.concatenate([noisy, rng.integers(0, 256, (3000, 16), dtype=np.uint8)])[first]
            query = Aggregated(query_words.astype(np.int32), query_vecs, True, 128)
            start = time.perf_counter()
            ids, _ = ivf.search(query, 100)
            ours.append(time.perf_counter() - start)
            found += int(ids[0] == target)
            with numba_loop(compiled, False):
                (numpy_ids, _), seconds = timed(ivf.search, query, 100)
            numpy_path.append(seconds)
            assert numpy_ids[0] == ids[0]
            packed = to_asmk_layout(query_vecs)
            start = time.perf_counter()
            ref_ids, _ = ref.search(packed, query_words, similarity_func=similarity, topk=100)
            theirs.append(time.perf_counter() - start)
            assert ref_ids[0] == ids[0]
        t_ours, t_ref = 1000 * statistics.median(ours), 1000 * statistics.median(theirs)
        t_numpy = 1000 * statistics.median(numpy_path)
        search_ms[n] = (t_ours, t_numpy, t_ref)
        print(f"| {n} | {len(word_ids) / n:.0f} | {len(word_ids)} | {build:.1f} | {t_ours:.1f} | {t_numpy:.1f} | {t_ref:.1f} "
              f"| {t_ref / t_ours:.1f}x faster | {ivf.nbytes / n:.0f} | {found}/{queries} |", flush=True)
        del ivf, ref
    aggregation_ms = query_word_search(words)
    for n, (t_ours, t_numpy, t_ref) in search_ms.items():
        ours, theirs = t_ours + aggregation_ms["hnsw"], t_ref + aggregation_ms["exact"]
        print(f"\nWhole query at {n} images (inverted file + aggregation): localmatch {ours:.0f} ms "
              f"({t_ours:.0f} + {aggregation_ms['hnsw']:.0f}, HNSW words; "
              f"{t_numpy + aggregation_ms['hnsw']:.0f} ms without numba); the `asmk` package {theirs:.0f} ms "
              f"({t_ref:.0f} + {aggregation_ms['exact']:.0f}, exact words): {theirs / ours:.1f}x.")


def realistic_codebook(words: int) -> tuple[Codebook, list[np.ndarray]]:
    """A ``words``-word codebook with the structure of real RootSIFT, and real query descriptor sets.

    Two-level faiss k-means (256 coarse words, then each coarse cell split in proportion to the
    descriptors it holds) over the RootSIFT of every shared image outside ukbench_subset, about 240k
    descriptors (a flat 65536-word k-means on them would take about an hour on 2 cores). The queries are
    the first 1000 RootSIFT descriptors of each of 20 ukbench_subset images, which the codebook never saw.
    Random centroids would not do: in 128 random dimensions every centroid is about as far as any other,
    which no real codebook is and which defeats any approximate search.
    """
    import faiss

    root = data_dir("multiview_dev").parent
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".ppm", ".pgm"))
    training, queries = [], []
    for path in images:
        held_out = "ukbench_subset" in path.parts
        if held_out and len(queries) >= 20:
            continue
        try:
            descriptors = extract(load_image(path)).descriptors.astype(np.float32)
        except ValueError:  # the corrupt file among the duplicates
            continue
        if held_out:
            queries.append(descriptors[:1000])
        else:
            training.append(descriptors)
    data = np.concatenate(training)
    coarse = faiss.Kmeans(data.shape[1], 256, niter=20, seed=0)
    coarse.train(data)
    cell = coarse.index.search(data, 1)[1][:, 0]
    counts = np.bincount(cell, minlength=256)
    shares = np.maximum(1, np.floor(words * counts / len(data)).astype(int))
    shares[np.argsort(-counts)[: max(0, words - shares.sum())]] += 1  # the remainder to the largest cells
    centroids = []
    for c in range(256):
        points = data[cell == c]
        fine = faiss.Kmeans(data.shape[1], int(min(shares[c], len(points))), niter=10, seed=c,
                            min_points_per_centroid=1)
        fine.train(points)
        centroids.append(fine.centroids)
    return Codebook(np.concatenate(centroids)[:words]), queries


def query_word_search(words: int) -> dict[str, float]:
    """Median ms of a query's aggregation per word search (``{"exact": ..., "hnsw": ...}``).

    Prints, for exact and HNSW search of the 5 nearest words, the time, the recall of the exact words and
    multiview_dev mAP (ASMK*, images assigned exactly, before re-ranking).
    """
    codebook, queries = realistic_codebook(words)
    paths, truth = multiview_truth()
    features = multiview_features("sift")
    print(f"\nQuery aggregation (1000 RootSIFT descriptors of each of {len(queries)} held-out ukbench_subset "
          f"images, 5 nearest of {codebook.size} words, residual sums, signs; codebook: two-level k-means "
          "over the other shared images' RootSIFT, multiview_dev included):\n")
    print("| word search | ms per query (median) | nearest word found | 5 nearest words found "
          "| multiview_dev ASMK* mAP with these words |")
    print("|---|---|---|---|---|")
    exact = [codebook.assign(q, 5, search="exact") for q in queries]
    codebook.assign(queries[0], 5, search="hnsw")  # build the graph outside the timing
    medians = {}
    for search in ("exact", "hnsw"):
        times = []
        for q in queries:
            start = time.perf_counter()
            describe_query(q, codebook, AsmkConfig(query_word_search=search))
            times.append(time.perf_counter() - start)
        found = [codebook.assign(q, 5, search=search) for q in queries]
        top1 = np.mean(np.concatenate([f[:, 0] == e[:, 0] for f, e in zip(found, exact)]))
        top5 = np.mean([len(set(a) & set(b)) / 5 for f, e in zip(found, exact) for a, b in zip(f, e)])
        quality = asmk_map(features, paths, truth, codebook, AsmkConfig(query_word_search=search), False)[0]
        medians[search] = 1000 * statistics.median(times)
        print(f"| {search} | {medians[search]:.0f} | {top1:.3f} | {top5:.3f} | {quality:.3f} |", flush=True)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("accuracy", "learned", "settings", "bfloat16", "delf", "whitening", "float", "idf",
                                           "cropped", "boxes", "reextract", "bytes", "latency"),
                        help="run one part")
    parser.add_argument("--features", default="sift,aliked,disk,delf",
                        help="extractors of the learned, settings, bfloat16, whitening, cropped and reextract parts")
    parser.add_argument("--accuracy-features", default="sift",
                        help="the local features of the accuracy part, with options after a colon")
    parser.add_argument("--accuracy-matcher", help="its re-ranking matcher (default: the features' default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "accuracy"):
            accuracy(Path(tmp), args.accuracy_features, args.accuracy_matcher)
        if args.only in (None, "learned"):
            learned(tuple(args.features.split(",")))
        if args.only in (None, "settings"):
            extraction_settings(tuple(args.features.split(",")))
            codebook_sizes(tuple(args.features.split(",")))
        if args.only in (None, "bfloat16"):
            bfloat16_extraction(tuple(args.features.split(",")))
        if args.only in (None, "delf"):
            delf_pairs()
            delf_bars()
            delf_bars_database(Path(tmp))
        if args.only in (None, "whitening"):
            whitening(tuple(args.features.split(",")))
        if args.only in (None, "float"):
            float_aggregation()
        if args.only in (None, "idf"):
            idf_weighting()
        if args.only in (None, "cropped"):
            cropped_queries(tuple(args.features.split(",")))
        if args.only in (None, "boxes"):
            box_queries(Path(tmp))
        if args.only in (None, "reextract"):
            reextracted_regions(tuple(args.features.split(",")))
        if args.only in (None, "bytes"):
            bytes_per_image(Path(tmp))
        if args.only in (None, "latency"):
            latency()


if __name__ == "__main__":
    main()
