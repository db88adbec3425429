"""Homography accuracy and speed on the 20 pairs of oxford_affine_vgg, beside the OpenCV tutorial.

Run: LOCALMATCH_DATA=../shared/data python bench/oxford_homography.py

The match + verify table alone, with the float product a process uses before it has imported torch,
numpy's BLAS on one thread:
OPENBLAS_NUM_THREADS=1 LOCALMATCH_DATA=../shared/data python bench/oxford_homography.py --cached-only --product float

mAA: for each pair, the mean distance between image 1's corners mapped by the estimated and by the
true homography (inf when no homography is found); mAA is the mean over thresholds 1, 2, 3, 5, 7 and
10 px of the share of pairs under the threshold.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics

import cv2
import numpy as np
import torch

import localmatch
from localmatch import refine
from localmatch.demo import corner_error
from localmatch.io import load_image
from localmatch.matching import compiled
from localmatch.matching.nn import quantize

from common import data_dir, mean_accuracy, numba_loop, timed, tutorial_homography

THRESHOLDS = (1, 2, 3, 5, 7, 10)
SEQUENCES = ("bikes", "boat", "graf", "leuven")


def pairs():
    root = data_dir("oxford_affine_vgg")
    for seq in SEQUENCES:
        images = sorted((root / seq).glob("img*.p?m"))
        for k in range(2, 7):
            yield f"{seq} 1-{k}", str(images[0]), str(images[k - 1]), np.loadtxt(root / seq / f"H1to{k}p")


#: localmatch configurations compared with the tutorial: (label, options of localmatch.verify).
VARIANTS = [
    ("localmatch (defaults: 2048 RootSIFT, ratio 0.8)", {}),
    ("localmatch (8192 RootSIFT, ratio 0.9)", {"feature_config": {"max_features": 8192},
                                               "matcher_config": {"ratio": 0.9}}),
    ("localmatch (defaults, ASIFT retry when not verified)", {"fallback_features": "asift"}),
    ("localmatch (defaults, ASIFT retry, refined)", {"fallback_features": "asift", "refine": True}),
    ("localmatch (defaults, refined)", {"refine": True}),
]
#: The refinement without its tilt test (every verified homography refined), for comparison in the same run.
REFINE_ALWAYS = ("localmatch (defaults, ASIFT retry, refined whatever the tilt)",
                 {"fallback_features": "asift", "refine": True})
#: The pair API as it was until session 13, for comparison in the same run: the two images extracted one
#: after the other, and the ASIFT retry with all its views at once: (label, retry features or None).
SESSION_12 = [
    ("localmatch (defaults), images one after the other (until session 13)", None),
    ("localmatch (defaults, ASIFT retry), one after the other, all views at once (until session 13)", "asift"),
]


@contextlib.contextmanager
def min_tilt(value: float):
    """Within the block, the refinement's tilt test (``localmatch.refine.MIN_TILT``) is ``value``."""
    before, refine.MIN_TILT = refine.MIN_TILT, value
    try:
        yield
    finally:
        refine.MIN_TILT = before


def one_after_the_other(path_a: str, path_b: str, retry: str | None, **options) -> localmatch.Verification:
    """``localmatch.verify(path_a, path_b, fallback_features=retry, **options)`` as session 12 ran it."""
    a, b = load_image(path_a), load_image(path_b)
    fa, fb = localmatch.extract(a), localmatch.extract(b)
    first = localmatch.verify_matches(fa, fb, localmatch.match(fa, fb), **options)
    if first.is_match or retry is None:
        return first
    fa, fb = localmatch.extract(a, retry), localmatch.extract(b, retry)
    again = localmatch.verify_matches(fa, fb, localmatch.match(fa, fb), **options)
    return again if again.is_match else first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="opencv", help="geometry backend of localmatch")
    parser.add_argument("--cached-only", action="store_true", help="only the match + verify table")
    parser.add_argument("--product", choices=("int8", "float"), default="int8",
                        help="the matcher's similarity product in that table: torch's int8 kernel (a process that "
                             "has imported torch) or numpy's float32 one (before it has: nn.FLOAT_ENTRIES_FIRST)")
    args = parser.parse_args()
    if not args.cached_only:
        accuracy_and_time(args.backend)
    if args.product == "float":
        localmatch.matching.nn._torch_is_worth_it = lambda entries: False
    match_and_verify(args.backend, args.product)


def accuracy_and_time(backend: str) -> None:
    """The mAA and time per pair of each variant beside the tutorial's."""
    names = [name for name, *_ in pairs()]
    errors = {label: [] for label, _ in VARIANTS + [REFINE_ALWAYS] + SESSION_12 + [("OpenCV tutorial", None)]}
    seconds = {label: [] for label in errors}
    for _, path_a, path_b, H_true in pairs():
        h, w = cv2.imread(path_a, cv2.IMREAD_GRAYSCALE).shape
        for label, options in VARIANTS:
            res, t = timed(localmatch.verify, path_a, path_b, geometry="homography", backend=backend, **options)
            errors[label].append(corner_error(res.matrix, H_true, w, h))
            seconds[label].append(t)
        with min_tilt(1.0):
            label, options = REFINE_ALWAYS
            res, t = timed(localmatch.verify, path_a, path_b, geometry="homography", backend=backend, **options)
        errors[label].append(corner_error(res.matrix, H_true, w, h))
        seconds[label].append(t)
        for label, retry in SESSION_12:
            res, t = timed(one_after_the_other, path_a, path_b, retry, geometry="homography", backend=backend)
            errors[label].append(corner_error(res.matrix, H_true, w, h))
            seconds[label].append(t)
        (H_tut, _), t = timed(tutorial_homography, path_a, path_b)
        errors["OpenCV tutorial"].append(corner_error(H_tut, H_true, w, h))
        seconds["OpenCV tutorial"].append(t)

    labels = list(errors)
    print("Corner error (px) per pair:\n")
    print("| pair | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for i, name in enumerate(names):
        print(f"| {name} | " + " | ".join(f"{errors[l][i]:.2f}" for l in labels) + " |")
    tut_time = statistics.median(seconds["OpenCV tutorial"])
    print("\n| pipeline | homography mAA | median s/pair | time vs tutorial | mean s/pair | slowest pair s |")
    print("|---|---|---|---|---|---|")
    for label in labels:
        t = statistics.median(seconds[label])
        print(f"| {label} | {mean_accuracy(errors[label], THRESHOLDS):.3f} | {t:.3f} | {t / tut_time:.2f}x "
              f"| {statistics.mean(seconds[label]):.3f} | {max(seconds[label]):.3f} |")



def match_and_verify(backend: str, product: str) -> None:
    """Matching + verification alone from cached features, on one core, with each similarity reduction."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    cached = [(localmatch.extract(path_a), localmatch.extract(path_b)) for _, path_a, path_b, _ in pairs()]
    reductions = {"numba": compiled.AVAILABLE, "numpy": False}  # the numpy row twice without numba
    print(f"\nMatch + verify from cached features (default config, ~{np.mean([len(f) for p in cached for f in p]):.0f} "
          f"RootSIFT per image), {product} similarity product, 1 thread, best of 5 per pair; the matcher's similarity "
          "reduction compiled by numba (a process past its first ~2500 pairs) or numpy's (before them, or without "
          "numba):\n")
    print("| reduction | geometry | median ms | max ms |\n|---|---|---|---|")
    for reduction, available in reductions.items():
        with numba_loop(compiled, available):
            for geometry in ("homography", "auto"):
                times = []
                for fa, fb in cached:
                    def run():
                        m = localmatch.match(fa, fb)
                        return localmatch.verify_matches(fa, fb, m, geometry=geometry, backend=backend)
                    run()
                    times.append(min(timed(run)[1] for _ in range(5)))
                print(f"| {reduction} | {geometry} | {1000 * statistics.median(times):.2f} | {1000 * max(times):.2f} |")
    _, path_a, path_b, _ = next(iter(pairs()))
    q = [quantize(localmatch.extract(p).descriptors) for p in (path_a, path_b)]
    with numba_loop(compiled, compiled.AVAILABLE):
        t_match = min(timed(localmatch.matching.nn.match_nn, q[0], q[1])[1] for _ in range(10))
    print(f"\nof which matching alone (int8 descriptors already quantised, {product} product, numba's reduction): "
          f"{1000 * t_match:.2f} ms")


if __name__ == "__main__":
    main()
