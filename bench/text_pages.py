"""Pages of different text: what ``geometry="auto"`` and ``"homography"`` say about them.

Run: LOCALMATCH_WEIGHTS=../shared/weights python bench/text_pages.py [--features sift,aliked,xfeat,delf]

Four 850 x 1100 pages, each 30 lines of random lower-case letter strings drawn with OpenCV's Hershey
font (seeded, so every run draws the same pages; no two pages share a word), in the same layout. Every
pair (6) shows different text, so none should verify. A fundamental matrix only puts each point on a
line: when its epipolar lines run along the lines of text, any match between letters on corresponding
lines fits it. A homography must also place each letter along its line, which chance matches rarely do.
"""

from __future__ import annotations

import argparse
import itertools
import random
import string

import cv2
import numpy as np

import localmatch

PAGES, LINES, WORDS_PER_LINE = 4, 30, 7
GEOMETRIES = ("auto", "homography")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", default="sift,aliked,xfeat,delf")
    args = parser.parse_args()
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
