"""Pages of different text: what ``geometry="auto"`` and ``"homography"`` say about them.

Run: LOCALMATCH_WEIGHTS=../shared/weights python bench/text_pages.py [--features sift,aliked,xfeat,delf]
     LOCALMATCH_DATA=../shared/data LOCALMATCH_WEIGHTS=../shared/weights python bench/text_pages.py --chance

Four 850 x 1100 pages, each 30 lines of random lower-case letter strings drawn with OpenCV's Hershey
font (seeded, so every run draws the same pages; no two pages share a word), in the same layout. Every
pair (6) shows different text, so none should verify. A fundamental matrix only puts each point on a
line: when its epipolar lines run along the lines of text, any match between letters on corresponding
lines fits it. A homography must also place each letter along its line, which chance matches rarely do.

``--chance`` asks whether a permutation test tells those fits from real ones. Each pair that ``auto``
verifies with a fundamental matrix is fitted again (same RANSAC) after its B points are shuffled among
its matches, five times: that keeps where the points lie in each image (rows of text, a facade's rows
of windows) and takes away which point goes with which. The ratio of the real fit's inliers to the
shuffled fits' mean is printed for the pages, and for multiview_dev's and ukbench_subset's pairs
(``bench/common.py``) of one scene (should verify) and of different ones (should not).
"""

from __future__ import annotations

import argparse
import itertools
import random
import string
from dataclasses import replace

import cv2
import numpy as np

import localmatch
from common import multiview_pairs, ukbench_pairs
from localmatch.api import correspondences_of, verify_correspondences

PAGES, LINES, WORDS_PER_LINE = 4, 30, 7
GEOMETRIES = ("auto", "homography")
SHUFFLES = 5
CUT = 1.5  # a ratio to count pairs against
CHANCE_COMBOS = "sift+nn,keynet-affnet+nn,delf+nn,aliked+lightglue,disk+lightglue,xfeat+lighterglue"


def text_page(seed: int) -> np.ndarray:
    """``(1100, 850, 3) uint8``: black random letter strings on white, ``LINES`` lines 34 px apart."""
    rng = random.Random(seed)
    page = np.full((1100, 850, 3), 255, np.uint8)
    for line in range(LINES):
        words = ("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 8)))
                 for _ in range(WORDS_PER_LINE))
        cv2.putText(page, " ".join(words), (40, 60 + 34 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2,
                    cv2.LINE_AA)
    return page


def shuffled_ratio(features_a: localmatch.Features, features_b: localmatch.Features, matcher: str) -> float | None:
    """The ``auto`` fit's inliers over the mean inliers of F refitted to shuffled matches, when ``auto``
    verifies the pair with a fundamental matrix (else None)."""
    points = correspondences_of(features_a, features_b, localmatch.match(features_a, features_b, matcher))
    result = verify_correspondences(points)
    if not (result.is_match and result.geometry == "fundamental"):
        return None
    rng = np.random.default_rng(0)
    shuffled = []
    for _ in range(SHUFFLES):
        refit = replace(points, points_b=points.points_b[rng.permutation(len(points))])
        shuffled.append(verify_correspondences(refit, geometry="fundamental", min_inliers=1).num_inliers)
    return result.num_inliers / max(float(np.mean(shuffled)), 1.0)


def chance(combos: list[str]) -> None:
    """``--chance``: per set, how many pairs ``auto`` verifies with F, the range of their shuffled-match ratios,
    and how many fall under ``CUT``."""
    pages = [text_page(100 + n) for n in range(PAGES)]
    (mv_same, mv_different), (uk_same, uk_different) = multiview_pairs(), ukbench_pairs()
    print(f"| features + matcher | pages (6) | multiview_dev same ({len(mv_same)}) | multiview_dev different "
          f"({len(mv_different)}) | ukbench same ({len(uk_same)}) | ukbench different ({len(uk_different)}) |")
    print("|---|---|---|---|---|---|")
    for combo in combos:
        name, matcher = combo.split("+")
        cache: dict = {}

        def extracted(path):
            if path not in cache:
                cache[path] = localmatch.extract(str(path), name)
            return cache[path]

        page_features = [localmatch.extract(page, name) for page in pages]
        sets = [[(page_features[a], page_features[b]) for a, b in itertools.combinations(range(PAGES), 2)]]
        sets += [[(extracted(a), extracted(b)) for a, b in pairs]
                 for pairs in (mv_same, mv_different, uk_same, uk_different)]
        cells = []
        for pairs in sets:
            ratios = sorted(r for r in (shuffled_ratio(a, b, matcher) for a, b in pairs) if r is not None)
            cells.append(f"{len(ratios)}; {ratios[0]:.2f} - {ratios[-1]:.2f}; {sum(r < CUT for r in ratios)} under {CUT}"
                         if ratios else "0")
        print(f"| {combo} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", default="sift,aliked,xfeat,delf")
    parser.add_argument("--chance", nargs="?", const=CHANCE_COMBOS, metavar="COMBOS",
                        help=f"the shuffled-match test instead (default combinations: {CHANCE_COMBOS})")
    args = parser.parse_args()
    if args.chance:
        chance(args.chance.split(","))
        return
    pages = [text_page(100 + n) for n in range(PAGES)]
    pairs = list(itertools.combinations(range(PAGES), 2))
    print(f"| features | geometry | pairs of different pages verified (of {len(pairs)}) | inliers per pair | "
          "model of the verified |\n|---|---|---|---|---|")
    for name in args.features.split(","):
        features = [localmatch.extract(page, name) for page in pages]
        for geometry in GEOMETRIES:
            results = [localmatch.verify(features[a], features[b], features=name, geometry=geometry) for a, b in pairs]
            models = sorted({r.geometry for r in results if r.is_match})
            print(f"| {name} | {geometry} | {sum(r.is_match for r in results)} "
                  f"| {', '.join(str(r.num_inliers) for r in results)} | {', '.join(models) or '-'} |", flush=True)


if __name__ == "__main__":
    main()
