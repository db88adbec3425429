"""Where the pictures of localmatch.viz put what they draw, and in which colours."""

from __future__ import annotations

import numpy as np
import pytest

from localmatch.io import Image, load_image
from localmatch.viz import (INLIER_COLOUR, OUTLIER_COLOUR, homography_overlay, ranking_strip, save_picture,
                            side_by_side)

OUTLINE_COLOUR = (255, 200, 0)
GREY = (128, 128, 128)


def grey(width: int, height: int) -> Image:
    return Image(np.full((height, width, 3), 128, np.uint8), "<array>")


def near(pixel: np.ndarray, colour: tuple[int, int, int], tolerance: int = 30) -> bool:
    return bool(np.abs(pixel.astype(int) - colour).max() <= tolerance)


def outline_near(canvas: np.ndarray, row: int, column: int) -> bool:
    """Whether the anti-aliased outline passes through ``(row, column)``, give or take a pixel across it."""
    return any(near(canvas[r, c], OUTLINE_COLOUR)
               for r in range(row - 1, row + 2) for c in range(column - 1, column + 2))


def test_side_by_side_draws_each_match_where_its_points_are_in_both_scaled_images():
    # A 200 x 100 and B 100 x 50: both drawn 100 px high, so B at twice its size, right of A
    a, b = grey(200, 100), grey(100, 50)
    inliers_a, inliers_b = np.array([[50.0, 40.0]]), np.array([[5.25, 5.25]])  # B's point lands on (11, 11)
    outliers_a, outliers_b = np.array([[150.0, 80.0]]), np.array([[80.25, 40.25]])  # B's on (161, 81)
    H = np.array([[0.25, 0, 20], [0, 0.25, 10], [0, 0, 1]])  # A into B's (20, 10)-(69.75, 34.75)
    canvas = side_by_side(a, b, inliers_a, inliers_b, outliers_a=outliers_a, outliers_b=outliers_b, homography=H)
    assert canvas.shape == (100, 400, 3) and canvas.dtype == np.uint8
    assert tuple(canvas[40, 50]) == INLIER_COLOUR and tuple(canvas[11, 200 + 11]) == INLIER_COLOUR
    assert tuple(canvas[80, 150]) == OUTLIER_COLOUR and tuple(canvas[81, 200 + 161]) == OUTLIER_COLOUR
    # the line between an inlier's two points crosses column 145 at row 22.9 (anti-aliased over two rows)
    greenish = canvas[:, 145, 1].astype(int) - canvas[:, 145, [0, 2]].max(axis=1) > 40
    assert greenish[21:25].any() and not greenish[:18].any() and not greenish[28:].any()
    # A's outline in B, scaled by 2: the square (40, 20)-(140, 70) right of A; inside it B is untouched
    for row, column in ((20, 290), (70, 290), (45, 240), (45, 340)):
        assert outline_near(canvas, row, column), (row, column)
    assert tuple(canvas[45, 290]) == GREY and tuple(canvas[5, 290]) == GREY
    assert not any(outline_near(canvas, 45, c) for c in (10, 100, 190))  # nothing drawn in A


def test_homography_overlay_outlines_a_where_it_lands_in_b():
    a, b = grey(200, 100), grey(100, 50)
    canvas = homography_overlay(a, b, np.array([[0.25, 0, 20], [0, 0.25, 10], [0, 0, 1]]))
    assert canvas.shape == (50, 100, 3)
    for row, column in ((10, 45), (35, 45), (22, 20), (22, 70)):  # (20, 10)-(69.75, 34.75)
        assert outline_near(canvas, row, column), (row, column)
    assert tuple(canvas[22, 45]) == GREY and tuple(canvas[45, 90]) == GREY
    shrunk = homography_overlay(a, grey(1000, 500), np.eye(3), max_height=250)  # B drawn at half size
    assert shrunk.shape == (250, 500, 3) and outline_near(shrunk, 0, 50) and outline_near(shrunk, 49, 50)


def test_ranking_strip_frames_the_query_and_verified_results_in_their_colours():
    query, result = grey(200, 100), grey(100, 50)
    strip = ranking_strip(query, [(result, "#1 212 inliers", True), (result, "#2 3 inliers", False)], height=40)
    # tiles 80 px wide (height 40 plus a 28 px caption), 8 px white gaps between them
    assert strip.shape == (68, 80 + 8 + 80 + 8 + 80, 3)
    assert tuple(strip[0, 40]) == OUTLINE_COLOUR
    assert tuple(strip[0, 88 + 40]) == INLIER_COLOUR and tuple(strip[39, 88 + 40]) == INLIER_COLOUR
    assert tuple(strip[0, 176 + 40]) == (160, 160, 160)
    assert tuple(strip[20, 84]) == (255, 255, 255) and tuple(strip[20, 88 + 40]) == GREY
    assert (strip[45:, 88:168] < 100).any()  # the caption's black text under the thumbnail


def test_save_picture_keeps_rgb_order_and_names_the_file_it_cannot_write(tmp_path):
    picture = np.zeros((8, 8, 3), np.uint8)
    picture[..., 0] = 255  # red
    save_picture(picture, tmp_path / "red.png")
    assert tuple(load_image(tmp_path / "red.png").pixels[4, 4]) == (255, 0, 0)
    for bad in (tmp_path / "red.unknown", tmp_path / "missing" / "red.png"):
        with pytest.raises(OSError, match=str(bad.name)):
            save_picture(picture, bad)
