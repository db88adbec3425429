"""Built-in demo pairs made from photographs that scikit-image ships (nothing is downloaded)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from localmatch.io import Image, load_image
from localmatch.viz import warped_corners


@dataclass(frozen=True, eq=False)
class DemoPair:
    """Two images and, for synthetic pairs, the true homography from A to B."""

    name: str
    image_a: Image
    image_b: Image
    true_homography: np.ndarray | None
    expect_match: bool


def skimage_photo(file_name: str) -> Image:
    """A photograph from the scikit-image wheel's data folder, read from disk (never downloaded)."""
    from importlib.resources import files

    return load_image(str(files("skimage") / "data" / file_name))


def warp_homography(image: Image, H: np.ndarray, size: tuple[int, int], name: str) -> Image:
    """Warp ``image`` by ``H`` (A -> B, pixel-centre convention) into a ``(width, height)`` canvas."""
    pixels = cv2.warpPerspective(image.pixels, H, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return Image(pixels, name)


#: A mild viewpoint change: rotation, scale, shear and some perspective.
DEMO_HOMOGRAPHY = np.array([[0.82, 0.21, 23.0], [-0.17, 0.91, 61.0], [2.1e-4, -1.3e-4, 1.0]])


def demo_pairs() -> list[DemoPair]:
    """A real stereo pair, a synthetic homography on a real photo, and a pair that must not match."""
    left, right = skimage_photo("motorcycle_left.png"), skimage_photo("motorcycle_right.png")
    astronaut = skimage_photo("astronaut.png")
    warped = warp_homography(astronaut, DEMO_HOMOGRAPHY, (469, 437), astronaut.source + " (warped)")
    return [
        DemoPair("stereo pair (Middlebury motorcycle)", left, right, None, True),
        DemoPair("astronaut under a known homography", astronaut, warped, DEMO_HOMOGRAPHY, True),
        DemoPair("astronaut vs coffee (different photos)", astronaut, skimage_photo("coffee.png"), None, False),
    ]


def corner_error(H_est: np.ndarray | None, H_true: np.ndarray, width: int, height: int) -> float:
    """Mean distance (px) between A's four corners mapped by the two homographies; inf if none."""
    if H_est is None:
        return float("inf")
    distances = warped_corners(width, height, H_est) - warped_corners(width, height, H_true)
    return float(np.linalg.norm(distances, axis=1).mean())


def write_demo_collection(folder: str) -> list[str]:
    """Write a small collection made from scikit-image's photographs into ``folder`` and return the paths.

    It holds near-duplicates (a crop, a 90-degree rotation, a mirror image and a strongly re-compressed copy),
    two photos of one scene (the Middlebury motorcycle stereo pair) and unrelated photos, so searching and
    duplicate finding have something to show with no download.
    """
    import os

    os.makedirs(folder, exist_ok=True)
    astronaut, coffee, chelsea = (skimage_photo(n) for n in ("astronaut.png", "coffee.png", "chelsea.png"))
    left, right, rocket = (skimage_photo(n) for n in ("motorcycle_left.png", "motorcycle_right.png", "rocket.jpg"))
    files = {
        "astronaut.jpg": (astronaut.pixels, 95),
        "astronaut_crop.jpg": (astronaut.pixels[60:460, 40:420], 92),
        "astronaut_rot90.jpg": (np.rot90(astronaut.pixels), 92),
        "coffee.jpg": (coffee.pixels, 95),
        "coffee_q15.jpg": (coffee.pixels, 15),
        "chelsea.jpg": (chelsea.pixels, 95),
        "chelsea_mirrored.jpg": (chelsea.pixels[:, ::-1], 92),
        "motorcycle_left.jpg": (left.pixels, 95),
        "motorcycle_right.jpg": (right.pixels, 95),
        "rocket.jpg": (rocket.pixels, 95),
    }
    paths = []
    for name, (pixels, quality) in files.items():
        path = os.path.join(folder, name)
        cv2.imwrite(path, cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        paths.append(path)
    return paths
