"""How far apart independent homography estimates are on oxford_affine_vgg, next to their error.

Run: LOCALMATCH_DATA=../shared/data python bench/oxford_agreement.py

Three estimates per pair: localmatch (8192 RootSIFT, ratio 0.9), the OpenCV tutorial pipeline, and a
photometric one (OpenCV's ECC alignment, ``cv2.findTransformECC`` with a homography, started from
localmatch's estimate and run at 1/4, 1/2 and full resolution), which uses pixels rather than keypoints.
Where the three agree with each other far better than with the ground truth, the remaining corner
error is in the ground truth (or in what a single homography can say about the pair), not in the
keypoints: this bounds what any estimator can score on the benchmark's mAA.
"""

from __future__ import annotations

import cv2
import numpy as np

import localmatch

from common import tutorial_homography
from oxford_homography import corner_error, pairs


def ecc_refined(path_a: str, path_b: str, H: np.ndarray) -> np.ndarray:
    a, b = (cv2.imread(p, cv2.IMREAD_GRAYSCALE).astype(np.float32) for p in (path_a, path_b))
    H = H / H[2, 2]
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
    for s in (0.25, 0.5, 1.0):
        S = np.diag([s, s, 1.0])
        small_a, small_b = (cv2.resize(x, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) for x in (a, b))
        _, W = cv2.findTransformECC(small_a, small_b, (S @ H @ np.linalg.inv(S)).astype(np.float32),
                                    cv2.MOTION_HOMOGRAPHY, criteria, None, 5)
        H = np.linalg.inv(S) @ W.astype(np.float64) @ S
    return H


def main() -> None:
    print("| pair | error: localmatch | tutorial | ECC | spread: localmatch-tutorial | localmatch-ECC | tutorial-ECC |")
    print("|---|---|---|---|---|---|---|")
    for name, path_a, path_b, H_true in pairs():
        width, height = cv2.imread(path_a, cv2.IMREAD_GRAYSCALE).shape[::-1]
        ours = localmatch.verify(path_a, path_b, geometry="homography", feature_config={"max_features": 8192},
                                 matcher_config={"ratio": 0.9})
        tutorial, _ = tutorial_homography(path_a, path_b)
        if not ours.is_match or tutorial is None:
            print(f"| {name} | no estimate to compare |||||")
            continue
        try:
            ecc = ecc_refined(path_a, path_b, ours.matrix)
        except cv2.error:
            print(f"| {name} | ECC did not converge |||||")
            continue
        def err(A, B):
            return corner_error(A, B, width, height)
        print(f"| {name} | {err(ours.matrix, H_true):.2f} | {err(tutorial, H_true):.2f} | {err(ecc, H_true):.2f} "
              f"| {err(ours.matrix, tutorial):.2f} | {err(ours.matrix, ecc):.2f} | {err(tutorial, ecc):.2f} |")


if __name__ == "__main__":
    main()
