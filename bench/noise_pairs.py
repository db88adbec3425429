"""Pictures of nothing: pairs of independent sensor-noise JPEGs, which no combination should verify.

Run: LOCALMATCH_WEIGHTS=../shared/weights python bench/noise_pairs.py [--combos sift+nn,xfeat+lighterglue]

Twenty pairs, each two independent draws of Gaussian noise around one grey level (20: a dark frame, or
128), with a standard deviation of 1, 2, 4, 8 or 16 grey levels, saved as JPEG at quality 90 (so with
its 8 x 8 blocks, as a camera saves a lens-cap or pocket shot). Half the pairs have two sizes (640 x 480
and 800 x 600). Seeded: every run draws the same pictures. Nothing in one picture is in the other, so a
verified pair is a false match. Per combination and geometry: how many pairs verify, their matches and
inliers, and how many of the inliers lie within 32 px of the picture's border in A (where a network's
zero padding tells the position of a feature that describes nothing else).
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

import localmatch
from localmatch.io import load_image

COMBOS = "sift+nn,keynet-affnet+nn,delf+nn,aliked+lightglue,disk+lightglue,xfeat+lighterglue,xfeat+nn"
GEOMETRIES = ("auto", "homography", "fundamental")
MEANS, STDS = (20, 128), (1, 2, 4, 8, 16)
BORDER = 32  # px


def noise_jpeg(seed: int, mean: int, std: float, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3) uint8``: Gaussian noise around ``mean``, ``size = (width, height)``, through JPEG at 90."""
    width, height = size
    pixels = np.clip(mean + np.random.default_rng(seed).normal(0, std, (height, width, 3)), 0, 255)
    ok, encoded = cv2.imencode(".jpg", pixels.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return load_image(encoded.tobytes()).pixels


def noise_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(label, A, B)`` for every grey level, standard deviation and size pairing: 20 pairs."""
    pairs = []
    for mean in MEANS:
        for std in STDS:
            for two_sizes in (False, True):
                seed = 1000 * mean + 10 * std + 2 * two_sizes
                pairs.append((f"grey {mean}, std {std}{', two sizes' if two_sizes else ''}",
                              noise_jpeg(seed, mean, std, (640, 480)),
                              noise_jpeg(seed + 1, mean, std, (800, 600) if two_sizes else (640, 480))))
    return pairs


def near_border(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    x, y = points[:, 0], points[:, 1]
    return (x < BORDER) | (y < BORDER) | (x > width - 1 - BORDER) | (y > height - 1 - BORDER)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--combos", default=COMBOS)
    args = parser.parse_args()
    pairs = noise_pairs()
    print(f"| features + matcher | geometry | verified (of {len(pairs)}) | matches, median | inliers, largest three "
          f"| inliers of the verified within {BORDER} px of A's border |\n|---|---|---|---|---|---|")
    for combo in args.combos.split(","):
        name, matcher = combo.split("+")
        features = [(localmatch.extract(a, name), localmatch.extract(b, name)) for _, a, b in pairs]
        for geometry in GEOMETRIES:
            results = [localmatch.verify(fa, fb, features=name, matcher=matcher, geometry=geometry)
                       for fa, fb in features]
            verified = [(r, fa) for r, (fa, _) in zip(results, features) if r.is_match]
            border = (np.concatenate([near_border(r.points_a, fa.image_size) for r, fa in verified]).mean()
                      if verified else float("nan"))
            largest = sorted((r.num_inliers for r in results), reverse=True)[:3]
            print(f"| {combo} | {geometry} | {len(verified)} | {np.median([r.num_matches for r in results]):.0f} "
                  f"| {', '.join(map(str, largest))} | {'-' if not verified else f'{border:.0%}'} |", flush=True)


if __name__ == "__main__":
    main()
