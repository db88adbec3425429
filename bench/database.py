"""Database benchmark: retrieval accuracy, re-ranking throughput, shortlist latency, bytes per image.

Run: LOCALMATCH_DATA=../shared/data python bench/database.py [--skip-100k]

1. multiview_dev (every image queries all 79, itself ignored) and ukbench_subset + imagededup base images
   as distractors (every ukbench image queries; its group of 4 are the positives): mAP and N-S with and
   without re-ranking.
2. Re-ranking throughput from cached features: 100 candidates per query (a database of all the images
   above), localmatch's batched re-ranker beside a loop of the OpenCV tutorial pipeline (BFMatcher kNN k=2,
   ratio 0.8, findHomography RANSAC 3 px) over the same pairs and the same stored features.
3. Shortlist search latency without re-ranking at 100k images (random unit descriptors of the default
   global descriptor's size), per index kind.
4. How well the ``lsh`` index's sketches pick candidates on real descriptors: the default global
   descriptor of every image above, each multiview_dev image querying the lot with ``refine * k`` a
   small share of the collection, recall of the exact top 10.
5. PCA whitening learned on the database (``Database(whitening=512)``: shrinkage 1, at most N - 1
   directions) beside the raw gem and gem+vlad vectors on both sets, with and without re-ranking; and
   plain PCA whitening (shrinkage 0) of the same stored vectors to 32, 64 and 512 dimensions.
6. Opening and growing a 100k-image database end to end (``--only open``): a database whose images table,
   arrays and saved index are filled with 100k simulated images (random global descriptors, 2 local
   features each), then a reader's open + first shortlist, a writer adding one real image and closing, a
   writer removing one image and the readers after it, and the rewrite of the index file.
7. ``Database.check`` (``--only check``) on 10k simulated images of 2048 local features each (2.8 GB of
   arrays) beside reading the array files end to end, and the quick check.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from common import data_dir, numba_loop, timed
from localmatch.database import Database
from localmatch.database.store import image_checksum
from localmatch.evaluate import QueryTruth, evaluate, ground_truth_from_folders
from localmatch.matching import compiled
from localmatch.rerank import verify_candidates
from localmatch.evaluate import average_precision
from localmatch.shortlist.index import INDEX_KINDS, LSH_BITS, ShortlistIndex
from localmatch.shortlist.whitening import learn_whitening

SUFFIXES = (".jpg", ".jpeg", ".png")
GLOBAL_DESCRIPTORS_COMPARED = ("vlad", "gem", "gem+vlad")  # gem+vlad is the default


def multiview_paths() -> list[str]:
    return [str(p) for p in sorted(data_dir("multiview_dev").glob("*/*")) if p.suffix.lower() in SUFFIXES]


def ukbench_truth() -> tuple[list[str], list[str], list[QueryTruth]]:
    images = [str(p) for p in sorted((data_dir("ukbench_subset") / "images").glob("*.jpg"))]
    distractors = [str(p) for p in sorted((data_dir("imagededup_testdata") / "base_images").glob("*.jpg"))]
    group = lambda p: int(Path(p).stem[len("ukbench"):]) // 4  # noqa: E731
    truth = [QueryTruth(p, frozenset(q for q in images if group(q) == group(p)) - {p}) for p in images]
    return images, distractors, truth


def evaluation_sets() -> list[tuple[str, list[str], list[QueryTruth], bool]]:
    """``(name, files to index, ground truth, is UKBench)`` of multiview_dev and ukbench + distractors."""
    paths = multiview_paths()
    images, distractors, ukbench = ukbench_truth()
    return [("multiview_dev", paths, ground_truth_from_folders(paths), False),
            (f"ukbench_subset + {len(distractors)} distractors", images + distractors, ukbench, True)]


def accuracy(folder: Path) -> None:
    print("## Retrieval accuracy\n")
    print("| set | global descriptor | images | shortlist only: mAP | with re-ranking: mAP "
          "| N-S (shortlist / re-ranked) | ms per query (shortlist / re-ranked) | bytes per image |")
    print("|---|---|---|---|---|---|---|---|")
    for name, files, truth, is_ukbench in evaluation_sets():
        for descriptor in GLOBAL_DESCRIPTORS_COMPARED:
            with Database(folder / f"{name[:8]}-{descriptor}", global_descriptor=descriptor) as db:
                db.add(files)
                plain = evaluate(db, truth, rerank=False, ukbench=is_ukbench)
                reranked = evaluate(db, truth, rerank=True, ukbench=is_ukbench)
            ns = f"{plain.ukbench_ns:.2f} / {reranked.ukbench_ns:.2f}" if is_ukbench else "-"
            print(f"| {name} | {descriptor} | {len(files)} | {plain.mean_ap:.3f} | {reranked.mean_ap:.3f} | {ns} "
                  f"| {plain.latency_ms:.0f} / {reranked.latency_ms:.0f} | {reranked.bytes_per_image:.0f} |")


def tutorial_pair(kp_a, des_a, kp_b, des_b, matcher) -> int:
    if len(des_a) < 2 or len(des_b) < 2:
        return 0
    good = [m for m, n in matcher.knnMatch(des_a, des_b, k=2) if m.distance < 0.8 * n.distance]
    if len(good) < 4:
        return 0
    src = np.float32([kp_a[m.queryIdx] for m in good])
    dst = np.float32([kp_b[m.trainIdx] for m in good])
    _, mask = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
    return 0 if mask is None else int(mask.sum())


def throughput(folder: Path, queries: int = 5) -> None:
    print("\n## Re-ranking throughput (100 candidates per query, cached features, 2 cores)\n")
    images, distractors, _ = ukbench_truth()
    paths = multiview_paths() + images + distractors
    variants = {"numba": compiled.AVAILABLE, "numpy": False}  # the numpy row twice when numba is missing
    with Database(folder / "all") as db:
        db.add(paths)
        ours: dict[str, list[float]] = {name: [] for name in variants}
        tutorial, counts, reading, crc = [], [], [], []
        matcher = cv2.BFMatcher(cv2.NORM_L2)
        for n, q in enumerate(multiview_paths()[:: max(1, len(multiview_paths()) // queries)][:queries]):
            query, vector = db.query_features(q)
            ids, _ = db.shortlist(vector, 100)
            db.candidates(ids)  # the rows into the page cache, as a search that follows others finds them
            candidates, seconds = timed(db.candidates, ids)  # each compared with its checksum, as search does
            reading.append(seconds)
            crc.append(timed(lambda: [image_checksum(c.keypoints, c.descriptors.values, None) for c in candidates])[1])
            counts += [len(c.keypoints) for c in candidates]
            verify_candidates(query, candidates[:5])  # warm up
            for name in (list(variants) if n % 2 == 0 else list(variants)[::-1]):  # alternate who goes first
                with numba_loop(compiled, variants[name]):
                    ours[name].append(timed(verify_candidates, query, candidates)[1])
            floats = [(c.keypoints, c.descriptors.values.astype(np.float32) / c.descriptors.scale) for c in candidates]
            start = time.perf_counter()
            for kp, des in floats:
                tutorial_pair(query.keypoints, query.descriptors, kp, des, matcher)
            tutorial.append(time.perf_counter() - start)
    t_tut = statistics.median(tutorial)
    print(f"candidates have {np.median(counts):.0f} RootSIFT features (median), the query "
          f"{len(query.keypoints)}; {len(tutorial)} queries\n")
    print("| pipeline | s per query (100 pairs) | pairs per second | speed-up |\n|---|---|---|---|")
    for name, label in (("numba", "numba reduction"), ("numpy", "numpy reduction")):
        t_ours = statistics.median(ours[name])
        print(f"| localmatch re-ranker (int8 NN + ratio, {label}, MAGSAC++ F, 2 threads) | {t_ours:.3f} "
              f"| {100 / t_ours:.0f} | {t_tut / t_ours:.1f}x |")
    print(f"| OpenCV tutorial loop (BFMatcher kNN + ratio + findHomography RANSAC) | {t_tut:.3f} | {100 / t_tut:.0f} | 1.0x |")
    t_read, t_crc, t_ours = statistics.median(reading), statistics.median(crc), statistics.median(ours["numba"])
    print(f"\nreading the 100 candidates, as a search does before re-ranking them (Database.candidates: records, "
          f"rows, each compared with its checksum; not in the times above): {1000 * t_read:.1f} ms, of which the "
          f"CRC-32 of their keypoints and descriptors {1000 * t_crc:.1f} ms: {t_read / t_ours:.1%} and "
          f"{t_crc / t_ours:.1%} of the time re-ranking them takes")


def latency(dim: int, kinds: list[str], n: int = 100_000, queries: int = 50) -> None:
    print(f"\n## Shortlist search latency, {n} images, {dim}-d random unit descriptors, top 100\n")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    probes = vectors[:queries] + 0.05 * rng.standard_normal((queries, dim), dtype=np.float32)
    grown = 100  # added after the build, as a Database does for a batch of new images
    print(f"| index | build s ({n - grown} images) | s to add {grown} more (a rebuild before session 7) "
          "| median ms per query | RAM bytes per image | finds the perturbed copy | s to write the file / read it "
          "| s to map it / ms for a first query on the map "
          "| s for a writer to open, add 1 vector and close: read + add + write (session 8) / map + add beside |")
    print("|---|---|---|---|---|---|---|---|---|")
    removed_rows = []
    for kind in kinds:
        index = ShortlistIndex(dim, kind)
        start = time.perf_counter()
        index.build(vectors[:-grown], np.arange(n - grown))
        build = time.perf_counter() - start
        start = time.perf_counter()
        index.add(vectors[-grown:], np.arange(n - grown, n))
        add = time.perf_counter() - start
        median_ms, found = probe_searches(index, probes)
        extra = {"flat": 0, "lsh": LSH_BITS // 8, "ivf": 8, "hnsw": 2 * 32 * 4}[kind]  # besides vector and id
        ram = 4 * dim + 8 + extra
        with tempfile.TemporaryDirectory() as folder:
            file = Path(folder) / "index.faiss"
            _, write = timed(index.save, file)
            _, read = timed(ShortlistIndex.load, file, dim, kind)
            mapped, open_map = timed(ShortlistIndex.load, file, dim, kind, mapped=True)  # what a reader does
            _, first = timed(mapped.search, probes[0], 100)
            del mapped
            _, add_one_before = timed(add_one, file, dim, kind, probes[0], n, mapped=False)
            _, add_one_now = timed(add_one, file, dim, kind, probes[0], n, mapped=True)
            removed_rows.append((kind, searching_with_removed(file, dim, kind, probes, n)))
        print(f"| {kind} | {build:.1f} | {add:.3f} | {median_ms:.2f} | {ram} | {found}/{queries} "
              f"| {write:.1f} / {read:.1f} | {open_map:.3f} / {1000 * first:.1f} | {add_one_before:.1f} / {add_one_now:.3f} |")
        del index
    counts = removed_counts(n)
    print("\nMedian ms per query on the mapped file with images removed since it was written (hidden from search):\n")
    print("| index | " + " | ".join(f"{h} removed" for h in counts) + " | finds the perturbed copy |")
    print("|---" * (len(counts) + 2) + "|")
    for kind, row in removed_rows:
        print(f"| {kind} | " + " | ".join(f"{ms:.2f}" for ms, _ in row) + f" | {min(f for _, f in row)}/{len(probes)} |")


def probe_searches(index: ShortlistIndex, probes: np.ndarray) -> tuple[float, int]:
    """Median ms per top-100 search of the ``(Q, D)`` probes, and how many find their own image (probe ``i``
    is a perturbed copy of image ``i``) first."""
    times, found = [], 0
    for i, q in enumerate(probes):
        start = time.perf_counter()
        ids, _ = index.search(q, 100)
        times.append(time.perf_counter() - start)
        found += int(len(ids) > 0 and ids[0] == i)
    return 1000 * statistics.median(times), found


def removed_counts(n: int) -> tuple[int, ...]:
    return 0, 10, 1000, n // 8  # n // 8: the most the saved file may lag by before it is rewritten


def searching_with_removed(file: Path, dim: int, kind: str, probes: np.ndarray, n: int) -> list[tuple[float, int]]:
    """:func:`probe_searches` on the mapped ``file`` with the last images removed (hidden: the probes' own
    images are the first ones), for each of :func:`removed_counts`."""
    rows = []
    for removed in removed_counts(n):
        index = ShortlistIndex.load(file, dim, kind, mapped=True)
        index.remove(np.arange(n - removed, n + 1))  # n: the copy of probe 0 that add_one() saved
        index.search(probes[0], 100)  # pages of the file in
        rows.append(probe_searches(index, probes))
    return rows


def simulated_database(path: Path, n: int, index: str = "flat", features: int = 2) -> int:
    """A gem+vlad database of ``n`` simulated images: rows (with their checksums), arrays and the saved index
    written the way ``Database.add`` writes them, without decoding ``n`` images (random unit global
    descriptors, ``features`` random local features each; a bench helper reaching into the database's
    internals). Returns the global dimension."""
    rng = np.random.default_rng(0)
    chunk = max(1, 2_000_000 // features)  # images written at a time: about 256 MB of descriptors
    with Database(path, index=index) as db:
        records = []
        for first in range(0, n, chunk):
            m = min(chunk, n - first)
            keypoints = (rng.random((m * features, 2), np.float32) * [639, 479]).astype(np.float32)
            descriptors = rng.integers(-128, 128, (m * features, 128), np.int8)
            vectors = rng.standard_normal((m, db.global_dim), dtype=np.float32)
            vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)
            db._arrays["keypoints"].append(first * features, keypoints)
            db._arrays["descriptors"].append(first * features, descriptors)
            db._arrays["global"].append(first, vectors)
            for j in range(m):
                rows = slice(j * features, (j + 1) * features)
                checksum = image_checksum(keypoints[rows], descriptors[rows], vectors[j:j + 1])
                i = first + j
                records.append((f"simulated/{i:06d}.jpg", f"{i:064x}", features, features * i, i, checksum))
        with db._transaction():
            db._db.executemany(
                "INSERT INTO images (path, content_hash, width, height, num_features, feature_row, descriptor_scale,"
                " working_scale, global_row, checksum) VALUES (?, ?, 640, 480, ?, ?, 1.0, 1.0, ?, ?)", records)
            db._set_meta(feature_rows=features * n, global_rows=n, generation=n)
        db._save_faiss_index()  # built from the stored vectors: written at once
        return db.global_dim


def checking(n: int = 10_000, features: int = 2048) -> None:
    """``Database.check`` on ``n`` simulated images of ``features`` local features, beside reading the
    three array files end to end (what any check of their contents must do), in one run: with the files
    in the page cache, and evicted from it before each step (``posix_fadvise(DONTNEED)``, which needs no
    privileges; what the virtual disk's host caches is beyond it)."""
    print(f"\n## Checking a database of {n} simulated images, {features} local features each\n")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "db"
        _, made = timed(simulated_database, path, n, "flat", features)
        files = [path / name for name in ("keypoints.f32", "descriptors.i8", "global.f16")]
        print(f"made in {made:.0f} s; arrays {sum(f.stat().st_size for f in files) / 1e9:.2f} GB\n")

        def read_files() -> None:
            buffer = bytearray(1 << 24)
            for file in files:
                with open(file, "rb", buffering=0) as f:
                    while f.readinto(buffer):
                        pass

        def evict() -> None:
            for file in files:
                fd = os.open(file, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)

        print("| run | files | reading the three files: s | check(): s | check(quick=True): s | check() / reading |")
        print("|---|---|---|---|---|---|")
        for run in (1, 2, 3):
            for cached in (False, True):
                if not cached:
                    evict()
                _, reading = timed(read_files)
                if not cached:
                    evict()
                with Database(path, readonly=True) as db:
                    report, full = timed(db.check, progress=False)
                    assert report.ok and report.checksummed == n, report
                    _, quick = timed(db.check, quick=True, progress=False)
                del db  # unmaps the arrays: mapped pages would stay in the cache
                gc.collect()
                where = "in the page cache" if cached else "evicted"
                print(f"| {run} | {where} | {reading:.2f} | {full:.2f} | {quick:.2f} | {full / reading:.2f} |")


def opening(n: int = 100_000, index: str = "flat") -> None:
    print(f"\n## Opening and growing a database of {n} simulated images ({index}, gem+vlad), end to end\n")
    image = str(data_dir("ukbench_subset") / "images" / "ukbench00000.jpg")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "db"
        dim, made = timed(simulated_database, path, n, index)
        print(f"made in {made:.0f} s\n")
        print("| step | s |")
        print("|---|---|")
        vector = np.random.default_rng(1).standard_normal(dim).astype(np.float32)
        for label in ("reader: open + first shortlist of 100", "reader again (file in the page cache)"):
            start = time.perf_counter()
            with Database(path, readonly=True) as db:
                db.shortlist(vector / np.linalg.norm(vector), 100)
            print(f"| {label} | {time.perf_counter() - start:.2f} |")
        for k, added in enumerate((image, str(data_dir("ukbench_subset") / "images" / "ukbench00001.jpg"))):
            start = time.perf_counter()
            with Database(path) as db:
                db.add([added])
            print(f"| writer: open, add 1 image (extraction included), close ({k + 1}) | {time.perf_counter() - start:.2f} |")
        start = time.perf_counter()
        with Database(path, readonly=True) as db:
            hits = db.search(image, k=1, rerank=False)
        assert hits[0].path == image
        print(f"| reader: open + search by image (extraction included), finds the added image | "
              f"{time.perf_counter() - start:.2f} |")
        for k in (1, 2):
            start = time.perf_counter()
            with Database(path) as db:
                db.remove([f"simulated/{k:06d}.jpg"])
            print(f"| writer: open, remove 1 image, close ({k}) | {time.perf_counter() - start:.2f} |")
            start = time.perf_counter()
            with Database(path, readonly=True) as db:
                found, _ = db.shortlist(vector / np.linalg.norm(vector), 100)
            assert not set(found.tolist()) & {2, 3}  # the ids of simulated/000001 and 000002
            print(f"| reader: open + first shortlist after that removal | {time.perf_counter() - start:.2f} |")
        with Database(path) as db:
            start = time.perf_counter()
            db._current_index()
            db._index_unsaved = float("inf")  # as when the file lags by more than 1/8 (internals: a bench)
            db._save_faiss_index()
            print(f"| writer: open the index and rewrite it, as a lag over 1/8 calls for | "
                  f"{time.perf_counter() - start:.2f} |")


def add_one(file: Path, dim: int, kind: str, vector: np.ndarray, new_id: int, *, mapped: bool) -> None:
    """What a writer's index does for ``localmatch index add DB one.jpg``. Until session 8 it read the file,
    added (which copies faiss's storage to grow it) and rewrote the file on closing; now it maps the file,
    adds beside the map and leaves the file alone while it lags by at most 1/8 of the collection."""
    index = ShortlistIndex.load(file, dim, kind, mapped=mapped)
    index.add(vector[None], np.array([new_id]))
    if not mapped:
        index.save(file)


def sketch_recall(k: int = 10) -> None:
    import localmatch
    from localmatch.io import load_image
    from localmatch.shortlist import DEFAULT_GLOBAL_DESCRIPTOR, get_global_descriptor

    describer = get_global_descriptor(DEFAULT_GLOBAL_DESCRIPTOR)
    paths = [p for _, files, _, _ in evaluation_sets() for p in files]
    vectors = []
    for path in paths:
        image = load_image(path)
        vectors.append(describer.describe(image, localmatch.extract(image)))
    vectors = np.asarray(vectors, np.float32)
    queries = len(multiview_paths())
    ids = np.arange(len(paths))
    flat = ShortlistIndex(describer.dim, "flat")
    flat.build(vectors, ids)
    print(f"\n## lsh candidates on real {describer.dim}-d {DEFAULT_GLOBAL_DESCRIPTOR} descriptors: "
          f"{len(paths)} images, {queries} queries, recall of the exact top {k}\n")
    print("| refine (candidates re-scored) | share of the collection | recall@10 of the exact top 10 |\n|---|---|---|")
    for refine in (2, 3, 5):
        lsh = ShortlistIndex(describer.dim, "lsh", refine=refine)
        lsh.build(vectors, ids)
        recall = [len(set(flat.search(v, k)[0]) & set(lsh.search(v, k)[0])) / k for v in vectors[:queries]]
        print(f"| {refine} ({refine * k}) | {refine * k / len(paths):.0%} | {np.mean(recall):.3f} |")


WHITENING_DIMS = 512
PLAIN_WHITENING_DIMS = (32, 64, 512)


def whitening(folder: Path) -> None:
    print("\n## PCA whitening of the global descriptors, learned on the database itself\n")
    print(f"| set | global descriptor | raw: mAP (shortlist / re-ranked) | whitening={WHITENING_DIMS} (shrinkage 1): "
          "mAP (shortlist / re-ranked) | dims learned | " +
          " | ".join(f"plain PCA whitening to {d}: mAP" for d in PLAIN_WHITENING_DIMS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(PLAIN_WHITENING_DIMS))
    for name, files, truth, is_ukbench in evaluation_sets():
        for descriptor in ("gem", "gem+vlad"):
            row = []
            for dims in (0, WHITENING_DIMS):
                with Database(folder / f"w{dims}-{name[:8]}-{descriptor}", global_descriptor=descriptor,
                              whitening=dims) as db:
                    db.add(files)
                    plain = evaluate(db, truth, rerank=False, ukbench=is_ukbench).mean_ap
                    reranked = evaluate(db, truth, rerank=True, ukbench=is_ukbench).mean_ap
                    row.append(f"{plain:.3f} / {reranked:.3f}")
                    if dims:
                        row.append(str(db._current_index().whitened_dims))
                    else:
                        rows = db._rows()
                        vectors, paths = db._global_vectors(rows), [r.path for r in rows]
            for dims in PLAIN_WHITENING_DIMS:
                whitened = learn_whitening(vectors, dims, shrinkage=0.0).apply(vectors)
                row.append(f"{shortlist_map(whitened, paths, truth):.3f}")
            print(f"| {name} | {descriptor} | " + " | ".join(row) + " |", flush=True)


def shortlist_map(vectors: np.ndarray, paths: list[str], truth: list[QueryTruth]) -> float:
    """mAP of every query ranking the other images by inner product (the query itself left out)."""
    row_of = {p: i for i, p in enumerate(paths)}
    aps = []
    for t in truth:
        q = row_of[t.query]
        order = np.argsort(-(vectors @ vectors[q]), kind="stable")
        aps.append(average_precision([paths[j] for j in order if j != q], t.positives, t.junk))
    return float(np.mean(aps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-100k", action="store_true", help="skip the 100k-image latency part")
    parser.add_argument("--only", choices=("accuracy", "throughput", "latency", "recall", "whitening", "open", "check"),
                        help="run one part")
    parser.add_argument("--index", nargs="+", choices=INDEX_KINDS,
                        help="index kinds of the latency part (default: all) and of the open part (default: flat)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "accuracy"):
            accuracy(Path(tmp))
        if args.only in (None, "throughput"):
            throughput(Path(tmp))
    if args.only in (None, "latency") and not args.skip_100k:
        from localmatch.shortlist import DEFAULT_GLOBAL_DESCRIPTOR, get_global_descriptor
        latency(get_global_descriptor(DEFAULT_GLOBAL_DESCRIPTOR).dim, args.index or list(INDEX_KINDS))
    if args.only in (None, "recall"):
        sketch_recall()
    if args.only in (None, "whitening"):
        with tempfile.TemporaryDirectory() as tmp:
            whitening(Path(tmp))
    if args.only in (None, "open") and not args.skip_100k:
        for kind in args.index or ["flat"]:
            opening(index=kind)
    if args.only in (None, "check") and not args.skip_100k:
        checking()


if __name__ == "__main__":
    main()
