"""Homography refinement on synthetic slants of real photographs (scikit-image's), where the truth is exact.

Run: python bench/refine_synthetic.py [--planes 5] [--seed 1]

Each photograph A is warped into B by the homography of a plane turned by 25-60 degrees about a random
axis in its own plane (camera 1.5 image widths away), scaled by 0.85 about the centre, onto a canvas a
little smaller than A; with ``--resolution 2.5`` B is drawn 2.5 times larger as well. B is drawn with
Lanczos interpolation, then given Gaussian noise (sigma 2 grey levels) and saved as JPEG (quality 90), so
that warping A by the true homography (bilinear, as the refinement does) does not give B's pixels back.
Corner error (px, in B) of ``verify(A, B, geometry="homography")`` with and without ``refine=True``.
"""

from __future__ import annotations

import argparse
import statistics

import cv2
import numpy as np

import localmatch
from localmatch.demo import corner_error, skimage_photo
from localmatch.io import Image
from localmatch.refine import tilts

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png")


def slanted_plane(rng: np.random.Generator, width: int, height: int, resolution: float) -> np.ndarray:
    """A homography (pixel-centre convention) showing the image as a plane turned by 25-60 degrees."""
    theta, phi = np.deg2rad(rng.uniform(25, 60)), rng.uniform(0, np.pi)
    f = 1.5 * max(width, height)
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    R, _ = cv2.Rodrigues(np.array([np.cos(phi), np.sin(phi), 0.0]) * theta)
    H = K @ R @ np.linalg.inv(K)
    c = H @ [width / 2, height / 2, 1]
    c = c[:2] / c[2]
    shift = np.array([[1, 0, width / 2 - 0.85 * c[0]], [0, 1, height / 2 - 0.85 * c[1]], [0, 0, 1]])
    H = shift @ np.diag([0.85, 0.85, 1]) @ H
    k = resolution
    H = np.array([[k, 0, (k - 1) / 2], [0, k, (k - 1) / 2], [0, 0, 1]]) @ H
    return H / H[2, 2]


def photographed(pixels: np.ndarray, rng: np.random.Generator, source: str) -> Image:
    """``pixels`` with Gaussian noise (sigma 2) and JPEG compression (quality 90), as a camera would give them."""
    noisy = np.clip(pixels + rng.normal(0, 2, pixels.shape), 0, 255).astype(np.uint8)
    encoded = cv2.imencode(".jpg", noisy[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    return Image(localmatch.load_image(encoded).pixels, source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, default=5, help="slants per photograph")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--resolution", type=float, default=1.0, help="B's resolution over A's")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print("| photo | tilt | inliers | error px | refined error px | refined |\n|---|---|---|---|---|---|")
    before, after = [], []
    for name in PHOTOS:
        a = skimage_photo(name)
        w, h = a.size
        for _ in range(args.planes):
            H = slanted_plane(rng, w, h, args.resolution)
            size = (round((w - 13) * args.resolution), round((h - 7) * args.resolution))
            b = photographed(cv2.warpPerspective(a.pixels, H, size, flags=cv2.INTER_LANCZOS4,
                                                 borderMode=cv2.BORDER_REFLECT), rng, f"{name} (slanted)")
            plain = localmatch.verify(a, b, geometry="homography")
            if not plain.is_match:
                print(f"| {name} | - | {plain.num_inliers} | not verified | - | - |")
                continue
            refined = localmatch.verify(a, b, geometry="homography", refine=True)
            e0, e1 = corner_error(plain.matrix, H, w, h), corner_error(refined.matrix, H, w, h)
            if refined.refined:
                before.append(e0)
                after.append(e1)
            print(f"| {name} | {np.median(tilts(H, plain.points_a)):.2f} | {plain.num_inliers} | {e0:.3f} | {e1:.3f} "
                  f"| {refined.refined} |")
    better = sum(e1 < e0 for e0, e1 in zip(before, after))
    print(f"\nrefined pairs: {len(before)}; median error {statistics.median(before):.3f} -> "
          f"{statistics.median(after):.3f} px; better on {better}")


if __name__ == "__main__":
    main()
