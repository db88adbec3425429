"""Pictures of matches."""

from __future__ import annotations

import os

import cv2
import numpy as np

from localmatch.geometry import project
from localmatch.io import Image

INLIER_COLOUR = (40, 220, 40)   # RGB
OUTLIER_COLOUR = (230, 40, 40)


def side_by_side(image_a: Image, image_b: Image, points_a: np.ndarray, points_b: np.ndarray, *,
                 outliers_a: np.ndarray | None = None, outliers_b: np.ndarray | None = None,
                 homography: np.ndarray | None = None, max_height: int = 800) -> np.ndarray:
    """Draw A and B next to each other with a line per correspondence.

    Args:
        points_a, points_b: ``(M, 2)`` inlier points in original pixels (drawn green).
        outliers_a, outliers_b: optional ``(K, 2)`` rejected matches (drawn red, thinner).
        homography: optional A -> B homography; A's outline is drawn where it lands in B.
        max_height: both images are scaled to this height at most.

    Returns:
        ``(H, W, 3) uint8`` RGB picture.
    """
    height = min(max(image_a.height, image_b.height), max_height)
    sa, sb = height / image_a.height, height / image_b.height
    a = cv2.resize(image_a.pixels, (max(1, round(image_a.width * sa)), height), interpolation=cv2.INTER_AREA)
    b = cv2.resize(image_b.pixels, (max(1, round(image_b.width * sb)), height), interpolation=cv2.INTER_AREA)
    canvas = np.ascontiguousarray(np.concatenate([a, b], axis=1))
    offset = a.shape[1]

    def draw(pa, pb, colour, thickness):
        for (xa, ya), (xb, yb) in zip(np.asarray(pa), np.asarray(pb)):
            p = (int(round((xa + 0.5) * sa - 0.5)), int(round((ya + 0.5) * sa - 0.5)))
            q = (int(round((xb + 0.5) * sb - 0.5)) + offset, int(round((yb + 0.5) * sb - 0.5)))
            cv2.line(canvas, p, q, colour, thickness, cv2.LINE_AA)
            cv2.circle(canvas, p, 2, colour, -1, cv2.LINE_AA)
            cv2.circle(canvas, q, 2, colour, -1, cv2.LINE_AA)

    if outliers_a is not None and outliers_b is not None:
        draw(outliers_a, outliers_b, OUTLIER_COLOUR, 1)
    draw(points_a, points_b, INLIER_COLOUR, 1)
    if homography is not None:
        outline(canvas, warped_corners(image_a.width, image_a.height, homography), sb, offset)
    return canvas


def save_picture(picture: np.ndarray, path: str | os.PathLike) -> None:
    """Write an RGB picture; the format follows the file extension (.png, .jpg...)."""
    try:
        written = cv2.imwrite(os.fspath(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    except cv2.error:  # OpenCV raises for an extension it has no writer for, returns False for a bad folder
        written = False
    if not written:
        raise OSError(f"{os.fspath(path)}: could not write the picture (unknown extension or unwritable folder?)")


def outline(image: np.ndarray, corners: np.ndarray, scale: float = 1.0, offset: int = 0,
            colour: tuple[int, int, int] = (255, 200, 0)) -> None:
    """Draw a closed polygon (``(4, 2)`` points in original pixels, times ``scale``, shifted by ``offset``)."""
    pts = np.round((np.asarray(corners, np.float64) + 0.5) * scale - 0.5).astype(np.int32)
    pts[:, 0] += offset
    cv2.polylines(image, [pts.reshape(-1, 1, 2)], True, colour, 2, cv2.LINE_AA)


def warped_corners(width: int, height: int, H: np.ndarray) -> np.ndarray:
    """A ``width x height`` image's corners mapped by the homography ``H``: ``(4, 2)``."""
    return project(np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], float), H)[0]


def homography_overlay(image_a: Image, image_b: Image, H: np.ndarray, max_height: int = 800) -> np.ndarray:
    """B with the outline of A warped into it by ``H`` (A -> B): where A lies in B."""
    scale = min(1.0, max_height / image_b.height)
    size = (max(1, round(image_b.width * scale)), max(1, round(image_b.height * scale)))
    canvas = np.ascontiguousarray(cv2.resize(image_b.pixels, size, interpolation=cv2.INTER_AREA))
    outline(canvas, warped_corners(image_a.width, image_a.height, H), scale)
    return canvas


def _thumb(image: Image, height: int) -> np.ndarray:
    width = max(1, round(image.width * height / image.height))
    return np.ascontiguousarray(cv2.resize(image.pixels, (width, height), interpolation=cv2.INTER_AREA))


def ranking_strip(query: Image, results: list[tuple[Image, str, bool]], height: int = 160) -> np.ndarray:
    """The query, then each result with a caption; verified results framed green, the others grey.

    Args:
        results: ``(image, caption, verified)`` in rank order, e.g. ``"#1 212 inliers"``.
    """
    tiles = [_caption(_thumb(query, height), "query", (255, 200, 0))]
    for image, caption, verified in results:
        tiles.append(_caption(_thumb(image, height), caption, INLIER_COLOUR if verified else (160, 160, 160)))
    gap = np.full((height + 28, 8, 3), 255, np.uint8)
    return np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)


def _caption(tile: np.ndarray, text: str, colour: tuple[int, int, int]) -> np.ndarray:
    h, w = tile.shape[:2]
    out = np.full((h + 28, w, 3), 255, np.uint8)
    out[:h] = tile
    cv2.rectangle(out, (0, 0), (w - 1, h - 1), colour, 3)
    cv2.putText(out, text, (4, h + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def thumbnail_data_uri(image: Image, height: int = 140) -> str:
    """A small JPEG of the image as a ``data:`` URI, so an HTML report is one self-contained file."""
    import base64

    ok, data = cv2.imencode(".jpg", cv2.cvtColor(_thumb(image, height), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii")


def html_page(title: str, sections: list[tuple[str, list[tuple[Image | None, str]]]]) -> str:
    """A self-contained HTML report: per section a heading and captioned thumbnails. Every text is escaped."""
    from html import escape

    parts = [f"<!doctype html><meta charset='utf-8'><title>{escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:4px;"
             "vertical-align:top;max-width:240px}figcaption{font-size:12px;word-break:break-all}</style>",
             f"<h1>{escape(title)}</h1>"]
    for heading, items in sections:
        parts.append(f"<h2>{escape(heading)}</h2><div>")
        for image, caption in items:
            img = f"<img src='{thumbnail_data_uri(image)}' alt=''>" if image is not None else ""
            parts.append(f"<figure>{img}<figcaption>{escape(caption)}</figcaption></figure>")
        parts.append("</div>")
    return "\n".join(parts) + "\n"


def dedup_report_html(report) -> str:
    """A self-contained HTML page of a :class:`~localmatch.dedup.DedupReport`: each group of copies, then the
    pairs that show the same scene in other photos, as captioned thumbnails (a file that no longer
    decodes is shown by its caption alone)."""
    from localmatch.errors import LocalmatchError
    from localmatch.io import load_image

    def image(path: str) -> Image | None:
        try:
            return load_image(path)
        except LocalmatchError:
            return None

    sections = [(f"Group {i}: {len(g)} copies of one picture", [(image(p), p) for p in g])
                for i, g in enumerate(report.groups, start=1)]
    scene = [p for p in report.pairs if p.relation == "same-scene"]
    if scene:
        sections.append(("Same scene, other photos", [(image(x), f"{x}  <->  {p.b if x == p.a else p.a} "
                                                               f"({p.num_inliers} inliers)")
                                                      for p in scene for x in (p.a, p.b)]))
    return html_page("localmatch dedup", sections)
