"""Verify two images and save a picture of the inlier matches (and, for a homography, where A lands in B).

    python examples/visualize_matches.py A.jpg B.jpg matches.png

With no arguments it uses a built-in pair: a photograph scikit-image ships and a warped copy of it.
"""

from __future__ import annotations

import sys

import localmatch
from localmatch.demo import demo_pairs
from localmatch.viz import save_picture, side_by_side


def main(argv: list[str]) -> int:
    if len(argv) == 1 or len(argv) > 3:
        print(__doc__)
        return 2
    if len(argv) >= 2:
        image_a, image_b = localmatch.load_image(argv[0]), localmatch.load_image(argv[1])
    else:
        pair = demo_pairs()[1]
        image_a, image_b = pair.image_a, pair.image_b
    out = argv[2] if len(argv) == 3 else "matches.png"
    result = localmatch.verify(image_a, image_b)
    print(f"is_match={result.is_match} inliers={result.num_inliers}/{result.num_matches} geometry={result.geometry}")
    homography = result.matrix if result.geometry == "homography" else None
    save_picture(side_by_side(image_a, image_b, result.points_a, result.points_b, homography=homography), out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (localmatch.LocalmatchError, OSError) as e:  # an unusable image, an unwritable picture: the reason
        sys.exit(f"error: {e}")
