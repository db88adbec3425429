"""Near-duplicate groups: global shortlist, geometric verification, then "same picture" or "same scene".

For every image, the global index shortlists candidates; each is verified against the image with a
homography (a copy of a picture, cropped, resized, rotated, re-encoded, recoloured or in mild perspective,
is always a homography of it) and, when that fails, a fundamental matrix. A verified pair is then told
apart:

- ``"duplicate"`` (the same picture): the homography holds over a large part of at least one of the two
  (``min_coverage``), its inliers are spread over what both images show of each other (``min_spread``,
  see :func:`inlier_spread`: a caption, watermark or poster shared by two different photos matches
  only where it is) and either they agree to a fraction of a pixel (median residual at most
  ``max_residual`` of B's working-image pixels: one exposure, resampled), or their disagreement, though
  larger, is noise without spatial structure (``structure``, see :func:`residual_structure`) and, once B is
  warped onto A, the two are nearly the same image (normalised cross-correlation of blurred grey levels,
  ``min_similarity`` with residuals up to ``similar_max_residual``; ``noisy_min_similarity`` with
  residuals up to ``noisy_max_residual``, what heavy re-compression does to a copy). Another shot of a
  flat object leaves a smooth misfit instead (lens distortion, relief, parallax);
- ``"same-scene"`` (same place or object, another photo): anything else that verified. Two photos of a
  flat object can share a homography, but a second exposure moves the keypoints by more than a fraction
  of a pixel and changes light and background.

The thresholds were set on UKBench-made copies against the other UKBench photos of the same object,
which are often nearly the same shot (bench/dedup.py, the set the benchmark reports on; its
``--source multiview`` set, copies of multiview_dev, was held out until it showed the need for the
spread test): copies have a median residual of 0.1 px, the other photos 0.53 px (1 % of them below
0.275 px; ``similar_max_residual`` was re-set from 0.3 to 0.27 px in session 39, when homographies began to
be fitted with MAGSAC's cutoff at the threshold and other photos' residuals fell by 8 %, copies' by 1 %);
correlation alone let 273 of those photos through; copies re-compressed at JPEG quality 10-30
have residuals of 0.3-0.6 px but a structure of at most 0.08 (0.07 for the built-in demo's quality-15
coffee), while of the other photos that come as close in residual and correlation, all but two pairs
(two views of one tile, -0.01 and 0.02, kept apart by the grouping below) have a structure of 0.12-0.8.
The spread of copies is 0.58 or more for 99 % of pairs on both sets (lowest 0.37-0.43: half-size copies
of textureless photos, which the grouping still joins); different photos that share only an overlaid
caption or a few planar markers (multiview_dev's corridor) score 0.1-0.38.

Mirrored copies are found by also searching with the horizontally flipped image.

Groups are made from the duplicate pairs by average linkage rather than connected components: two groups
join only when at least half of the pairs between them that were verified (shortlisted and tested) were
called duplicates. A few wrong duplicate links between two families of copies of different photos of one
object then no longer merge the families (connected components did: bench/dedup.py), while a real group of
copies, where most tested pairs are duplicates, stays whole. A duplicate pair whose images end up in
different groups is reported as ``"same-scene"``, so pairs and groups agree.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

import cv2
import numpy as np
from tqdm import tqdm

from localmatch.api import DEFAULT_MIN_INLIERS, check_min_inliers
from localmatch.config import require_flag, require_whole
from localmatch.database import Database, expand_image_paths
from localmatch.errors import DatabaseError, ImageError
from localmatch.geometry import project
from localmatch.io import Image, load_image
from localmatch.rerank import verify_candidates
from localmatch.types import Verification

log = logging.getLogger(__name__)

THUMBNAIL_SIDE = 256
SIMILARITY_BLUR = 2.0  # px at THUMBNAIL_SIDE: removes JPEG blocking and resampling noise
SPREAD_GRID = 8  # cells per side over which inlier_spread counts where the inliers are


@dataclass(frozen=True)
class DuplicatePair:
    """Two verified images.

    Attributes:
        a, b: paths as given.
        relation: ``"duplicate"`` (the same picture) or ``"same-scene"`` (another photo of it).
        num_inliers, geometry: of the verification.
        mirrored: B matched A flipped left-right.
        matrix: ``(3, 3)`` from A (flipped first when ``mirrored``) to B in original pixels.
        coverage: share of the smaller-covered image that the other overlaps (0 for same-scene F pairs).
        similarity: photometric correlation over the overlap (-1..1; 0 when not measured).
        residual: median inlier residual of the homography, measured in B, in B's working-image pixels (0 when
            not measured). For images of different sizes it depends on which is B (a half-size B halves it);
            each image of a pair is verified against the other, and either way may find it a duplicate.
        structure: how much each inlier's residual agrees with its neighbours' (about 0 for keypoint noise,
            towards 1 for a smooth misfit such as lens distortion or relief; 0 when not measured).
        spread: share of the image regions both images show that hold an inlier (0..1; 0 when not
            measured), see :func:`inlier_spread`.
    """

    a: str
    b: str
    relation: str
    num_inliers: int
    geometry: str | None
    mirrored: bool = False
    matrix: np.ndarray | None = None
    coverage: float = 0.0
    similarity: float = 0.0
    residual: float = 0.0
    structure: float = 0.0
    spread: float = 0.0

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "num_inliers": self.num_inliers, "geometry": self.geometry,
                "relation": self.relation, "mirrored": self.mirrored, "coverage": round(self.coverage, 4),
                "similarity": round(self.similarity, 4), "residual": round(self.residual, 4),
                "structure": round(self.structure, 4), "spread": round(self.spread, 4)}


@dataclass
class DedupReport:
    groups: list[list[str]] = field(default_factory=list)
    pairs: list[DuplicatePair] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"groups": self.groups, "pairs": [p.to_dict() for p in self.pairs],
                "failed": [{"path": p, "reason": r} for p, r in self.failed]}


def find_duplicates(images: Iterable[str | os.PathLike], *, database: str | os.PathLike | None = None,
                    shortlist: int = 10, min_inliers: int = DEFAULT_MIN_INLIERS, mirror: bool = True,
                    test: "DuplicateTest | None" = None,
                    progress: bool | None = None) -> DedupReport:
    """Find near-duplicate groups among image files (and the images under folders).

    Args:
        database: a folder to keep the index in (reused and extended on later calls; an existing one keeps
            its settings, an ASMK database shortlists with ASMK); a temporary one by default. A database of
            other than SIFT features is refused (``DatabaseError``): the duplicate test's thresholds hold
            for SIFT's positions only.
        shortlist: candidates verified per image (and per mirrored image).
        mirror: also look for left-right mirrored copies.
        test: the thresholds that tell a duplicate from another photo (:class:`DuplicateTest`).
        progress: show progress bars (default: when stderr is a terminal).
    """
    check_min_inliers(min_inliers)  # before the images are indexed
    require_whole(shortlist, "shortlist (candidates verified per image)", 1)
    require_flag(mirror, "mirror")
    paths = expand_image_paths(images)
    show = sys.stderr.isatty() if progress is None else progress
    with tempfile.TemporaryDirectory(prefix="localmatch-dedup-") as tmp:
        with Database(database or os.path.join(tmp, "db")) as db:
            if db.features != "sift":  # before anything is added to it
                raise DatabaseError(f"{db.path}: holds {db.features!r} features; finding duplicates needs a database "
                                    "of 'sift' features, the ones its duplicate test is calibrated on (inliers to "
                                    "a fraction of a pixel)")
            added = db.add(paths, progress=show)
            report = DedupReport(failed=list(added.failed))
            ids = {p: i for i, p in db.images()}
            # byte-identical files are indexed once: each copy takes the verified pairs of the one stored
            copies = {path: stored for path, stored in added.same_as.items() if path != stored}
            wanted = [p for p in paths if p in ids]
            wanted += sorted(set(copies.values()) - set(wanted))  # stored by an earlier call under another path
            found: dict[tuple[str, str], DuplicatePair] = {}
            tested: set[tuple[str, str]] = set()
            test = test or DuplicateTest()
            for path in tqdm(wanted, desc="verifying", unit="img", disable=not show):
                pairs, candidates = _pairs_of(db, ids[path], path, shortlist, min_inliers, mirror, test)
                tested.update((min(path, c), max(path, c)) for c in candidates)
                for pair in pairs:
                    key = (min(pair.a, pair.b), max(pair.a, pair.b))
                    if key not in found or _better(pair, found[key]):
                        found[key] = pair
            for copy, stored in copies.items():
                try:
                    num_features = len(db.features_of(ids[stored]).keypoints)
                except DatabaseError:  # damaged stored features: left out above, with a warning
                    continue
                _add_identical_copy(copy, stored, num_features, found, tested)
    report.groups = average_linkage_groups([k for k, p in found.items() if p.relation == "duplicate"], tested)
    report.pairs = agree_with_groups(sorted(found.values(), key=lambda p: (p.a, p.b)), report.groups)
    return report


def _add_identical_copy(copy: str, stored: str, num_features: int, found: dict[tuple[str, str], DuplicatePair],
                        tested: set[tuple[str, str]]) -> None:
    """Record ``copy``, a file with the same bytes as ``stored``: the two as a duplicate pair (identity
    homography, every feature an inlier), and every pair and test of ``stored`` again with ``copy``."""
    def key(a: str, b: str) -> tuple[str, str]:
        return min(a, b), max(a, b)

    for pair in [p for p in found.values() if stored in (p.a, p.b)]:
        moved = dataclasses.replace(pair, a=copy) if pair.a == stored else dataclasses.replace(pair, b=copy)
        found[key(moved.a, moved.b)] = moved
    tested.update([key(copy, b if a == stored else a) for a, b in tested if stored in (a, b)])
    found[key(stored, copy)] = DuplicatePair(stored, copy, "duplicate", num_features, "homography",
                                             matrix=np.eye(3), coverage=1.0, similarity=1.0, spread=1.0)
    tested.add(key(stored, copy))


def agree_with_groups(pairs: list[DuplicatePair], groups: list[list[str]]) -> list[DuplicatePair]:
    """The pairs, with a ``"duplicate"`` whose images are not in one group turned ``"same-scene"``."""
    group_of = {path: n for n, group in enumerate(groups) for path in group}
    return [dataclasses.replace(p, relation="same-scene")
            if p.relation == "duplicate" and (p.a not in group_of or group_of[p.a] != group_of.get(p.b)) else p
            for p in pairs]


def _better(new: DuplicatePair, old: DuplicatePair) -> bool:
    rank = {"duplicate": 1, "same-scene": 0}
    return (rank[new.relation], new.num_inliers) > (rank[old.relation], old.num_inliers)


@dataclass(frozen=True)
class DuplicateTest:
    """When a homography-verified pair is the same picture (see the module docstring).

    Duplicate when ``coverage >= min_coverage``, ``spread >= min_spread`` and either ``residual <=
    max_residual``, or the inliers' disagreement has no spatial structure (``structure <=
    max_structure``) and either ``similarity >= min_similarity`` with ``residual <=
    similar_max_residual``, or ``similarity >= noisy_min_similarity`` with ``residual <=
    noisy_max_residual`` (residuals in B's working-image pixels).
    """

    max_residual: float = 0.2
    max_structure: float = 0.1
    min_similarity: float = 0.95
    similar_max_residual: float = 0.27
    noisy_min_similarity: float = 0.99
    noisy_max_residual: float = 0.6
    min_coverage: float = 0.5
    min_spread: float = 0.6

    def same_picture(self, coverage: float, similarity: float, residual: float, structure: float,
                     spread: float) -> bool:
        if coverage < self.min_coverage or spread < self.min_spread:
            return False
        if residual <= self.max_residual:
            return True
        return structure <= self.max_structure and (
            (similarity >= self.min_similarity and residual <= self.similar_max_residual)
            or (similarity >= self.noisy_min_similarity and residual <= self.noisy_max_residual))


def _pairs_of(db: Database, image_id: int, path: str, shortlist: int, min_inliers: int, mirror: bool,
              test: DuplicateTest) -> tuple[list[DuplicatePair], set[str]]:
    """The verified pairs of one image, and the paths of every candidate it was tested against."""
    try:
        image = load_image(path, max_pixels=db.feature_config.max_pixels)
    except ImageError as e:  # changed on disk since it was indexed
        log.warning("%s", e)
        return [], set()
    out: list[DuplicatePair] = []
    tested: set[str] = set()
    # The image as indexed reuses its stored features; only the mirrored view is extracted anew. ASMK
    # databases shortlist with the local features alone.
    with_global = db.representation == "global"
    try:
        stored = (db.features_of(image_id).as_features(db.extractor), db.global_of(image_id) if with_global else None)
    except DatabaseError as e:  # its stored features are damaged (a database given to dedup)
        log.warning("%s; it is left out", e)
        return [], set()
    views = [(image, False, stored)]
    if mirror:
        flipped = Image(np.ascontiguousarray(image.pixels[:, ::-1]), path)
        views.append((flipped, True, db.query_features(flipped, with_global=with_global)))
    for view, mirrored, (features, vector) in views:
        ids, _ = db.shortlist_for(features, vector, shortlist + 1)
        candidates = [c for c in db.candidates(ids) if c.path != path]
        tested.update(c.path for c in candidates)
        homographies = verify_candidates(features, candidates, geometry="homography", min_inliers=min_inliers)
        rest = [c for c, v in zip(candidates, homographies) if not v.is_match]
        epipolar = dict(zip((c.image_id for c in rest),
                            verify_candidates(features, rest, geometry="fundamental", min_inliers=min_inliers)))
        view_thumbnail = thumbnail(view)
        for cand, h in zip(candidates, homographies):
            if h.is_match:
                spread = inlier_spread(h, features.keypoints, features.image_size, cand.keypoints, cand.image_size)
                out.append(_classify(path, cand.path, view_thumbnail, h, mirrored, cand.working_scale, spread, test))
            elif epipolar[cand.image_id].is_match:
                f = epipolar[cand.image_id]
                out.append(DuplicatePair(path, cand.path, "same-scene", f.num_inliers, f.geometry, mirrored, f.matrix))
    return out, tested


def _classify(path_a: str, path_b: str, thumb_a: "Thumbnail", h: Verification, mirrored: bool,
              working_scale_b: float, spread: float, test: DuplicateTest) -> DuplicatePair:
    """The pair's cues and relation; ``working_scale_b``: B's working pixels per original pixel, the unit of
    the residual (measured in B)."""
    matrix = h.matrix
    assert matrix is not None, "a verified pair has its homography"
    try:
        coverage, similarity = photometric_agreement(thumb_a, _thumbnail_of(path_b), matrix)
    except ImageError as e:
        log.warning("%s", e)
        coverage, similarity = 0.0, 0.0
    residual = median_residual(h.points_a, h.points_b, matrix) * working_scale_b
    structure = residual_structure(h.points_a, h.points_b, matrix)
    relation = "duplicate" if test.same_picture(coverage, similarity, residual, structure, spread) else "same-scene"
    return DuplicatePair(path_a, path_b, relation, h.num_inliers, h.geometry, mirrored, h.matrix, coverage,
                         similarity, residual, structure, spread)


def inlier_spread(h: Verification, keypoints_a: np.ndarray, size_a: tuple[int, int], keypoints_b: np.ndarray,
                  size_b: tuple[int, int], grid: int = SPREAD_GRID) -> float:
    """How much of what two images show of each other their inliers cover: in each image, of the cells of
    a ``grid x grid`` division that hold a keypoint the homography maps inside the other image, the
    share that hold an inlier; the smaller of the two shares.

    A copy re-finds its keypoints wherever the two overlap (0.58 or more for 99 % of the benchmark's
    copies, even of textureless scenes); two photos that share only a caption, a watermark or a poster
    match only there (0.1-0.4). Keypoints ``(N, 2)`` and inliers (``h.points_a``, ``h.points_b``) in
    original pixels, sizes ``(width, height)``, ``h.matrix`` maps A to B.
    """
    H = np.asarray(h.matrix, float)
    try:
        H_inv = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return 0.0
    shares = []
    for inliers, keypoints, size, to_other, other_size in ((h.points_a, keypoints_a, size_a, H, size_b),
                                                           (h.points_b, keypoints_b, size_b, H_inv, size_a)):
        seen = _cells(keypoints[_maps_inside(keypoints, to_other, other_size)], size, grid)
        shares.append(len(_cells(inliers, size, grid) & seen) / len(seen) if seen else 0.0)
    return min(shares)


def _maps_inside(points: np.ndarray, H: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(N,) bool``: ``H`` maps the point in front of the camera and inside an image of ``size``."""
    mapped, w = project(points, H)
    x, y = mapped[:, 0], mapped[:, 1]
    return (w > 0) & (x >= -0.5) & (y >= -0.5) & (x < size[0] - 0.5) & (y < size[1] - 0.5)


def _cells(points: np.ndarray, size: tuple[int, int], grid: int) -> set[int]:
    column = np.clip((np.asarray(points[:, 0]) + 0.5) * grid // size[0], 0, grid - 1).astype(int)
    row = np.clip((np.asarray(points[:, 1]) + 0.5) * grid // size[1], 0, grid - 1).astype(int)
    return set((row * grid + column).tolist())


def residual_structure(points_a: np.ndarray, points_b: np.ndarray, H: np.ndarray, neighbours: int = 8) -> float:
    """``sum(e_i . m_i) / sum(|e_i|^2)``: residual vectors ``e`` of ``H`` against the mean ``m`` of each
    point's ``neighbours`` nearest (in A) residuals. Independent noise gives about 0, a smooth misfit
    about 1."""
    from scipy.spatial import cKDTree

    if len(points_a) <= neighbours:
        return 0.0
    errors = project(points_a, H)[0] - points_b
    _, near = cKDTree(points_a).query(points_a, neighbours + 1)
    around = errors[near[:, 1:]].mean(axis=1)
    total = float((errors ** 2).sum())
    return float((errors * around).sum() / total) if total > 0 else 0.0


def median_residual(points_a: np.ndarray, points_b: np.ndarray, H: np.ndarray) -> float:
    """Median distance (px in B) between ``H`` applied to A's points and their partners."""
    return float(np.median(np.linalg.norm(project(points_a, H)[0] - points_b, axis=1)))


@dataclass(frozen=True, eq=False)
class Thumbnail:
    """A small grey copy: ``gray (h, w) uint8`` and ``scale (sx, sy)`` = small size / original size."""

    gray: np.ndarray
    scale: tuple[float, float]


def thumbnail(image: Image, side: int = THUMBNAIL_SIDE) -> Thumbnail:
    s = min(1.0, side / max(image.width, image.height))
    w, h = max(1, round(image.width * s)), max(1, round(image.height * s))
    return Thumbnail(cv2.resize(image.gray(), (w, h), interpolation=cv2.INTER_AREA), (w / image.width, h / image.height))


@lru_cache(maxsize=1024)
def _thumbnail_of(path: str) -> Thumbnail:
    return thumbnail(load_image(path))


def photometric_agreement(a: Thumbnail, b: Thumbnail, H: np.ndarray) -> tuple[float, float]:
    """``(coverage, similarity)`` of B warped onto A by the homography ``H`` (A -> B, original pixels).

    Coverage is the larger of the shares of A and of B that the other overlaps; similarity is the
    normalised cross-correlation of the blurred grey levels over A's overlap (-1..1).
    """
    ga = cv2.GaussianBlur(a.gray.astype(np.float32) / 255.0, (0, 0), SIMILARITY_BLUR)
    gb = cv2.GaussianBlur(b.gray.astype(np.float32) / 255.0, (0, 0), SIMILARITY_BLUR)
    # small B <- B <- A <- small A, each scaling in the pixel-centre convention
    H_small = _scale_matrix(b.scale) @ H @ np.linalg.inv(_scale_matrix(a.scale))
    try:
        H_inv = np.linalg.inv(H_small)
    except np.linalg.LinAlgError:
        return 0.0, 0.0
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped_b = cv2.warpPerspective(gb, H_small, (ga.shape[1], ga.shape[0]), flags=flags, borderValue=-1.0)
    overlap_a = warped_b >= 0
    in_b = cv2.warpPerspective(np.ones_like(ga), H_inv, (gb.shape[1], gb.shape[0]), flags=flags, borderValue=0.0) > 0.5
    coverage = max(float(overlap_a.mean()), float(in_b.mean()))
    if overlap_a.sum() < 64:
        return coverage, 0.0
    x, y = ga[overlap_a], warped_b[overlap_a]
    x, y = x - x.mean(), y - y.mean()
    denominator = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return coverage, float((x * y).sum() / denominator) if denominator > 0 else 0.0


def _scale_matrix(scale: tuple[float, float]) -> np.ndarray:
    sx, sy = scale
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])


def average_linkage_groups(duplicates: Iterable[tuple[str, str]], tested: set[tuple[str, str]],
                           min_agreement: float = 0.5) -> list[list[str]]:
    """Groups of images from duplicate pairs, joined by average linkage over the tested pairs.

    Within each connected component of the duplicate pairs, starting from single images, the two groups
    with the highest share of duplicate pairs among the tested pairs between them are joined, while that
    share is at least ``min_agreement``. Pairs never tested (not shortlisted) count neither way.
    ``tested`` holds ``(a, b)`` with ``a < b`` (duplicate pairs count as tested). Returns the groups of
    two or more paths, each sorted, in sorted order.
    """
    duplicates = {(min(a, b), max(a, b)) for a, b in duplicates}
    component_of = {path: n for n, group in enumerate(_components(list(duplicates))) for path in group}
    tested_within: dict[int, list[tuple[str, str]]] = {}
    for a, b in set(tested) | duplicates:
        if a in component_of and component_of[a] == component_of.get(b):
            tested_within.setdefault(component_of[a], []).append((a, b))
    groups = []
    for pairs in tested_within.values():
        groups += _link(pairs, duplicates, min_agreement)
    return sorted(sorted(group) for group in groups if len(group) > 1)


def _link(tested: list[tuple[str, str]], duplicates: set[tuple[str, str]], min_agreement: float) -> list[set[str]]:
    members = {path: {path} for pair in tested for path in pair}
    neighbours: dict[str, set[str]] = {}
    for a, b in tested:
        if (a, b) in duplicates:
            neighbours.setdefault(a, set()).add(b)
            neighbours.setdefault(b, set()).add(a)
    # between[(x, y)] = [duplicate pairs, tested pairs, triangles through the duplicate pairs] between the
    # groups named x < y; triangles (shared duplicate neighbours) order otherwise equal joins, so a pair
    # backed by others joins before a lone link
    between: dict[tuple[str, str], list[int]] = {}
    for a, b in tested:
        counts = between.setdefault((a, b), [0, 0, 0])
        if (a, b) in duplicates:
            counts[0] += 1
            counts[2] += len(neighbours[a] & neighbours[b])
        counts[1] += 1
    while True:
        best = max(((d / t, d, s, key) for key, (d, t, s) in between.items() if d and d / t >= min_agreement),
                   default=None)
        if best is None:
            return list(members.values())
        keep, gone = best[3]
        members[keep] |= members.pop(gone)
        merged: dict[tuple[str, str], list[int]] = {}
        for (x, y), values in between.items():
            x, y = (keep if x == gone else x), (keep if y == gone else y)
            if x != y:
                counts = merged.setdefault((min(x, y), max(x, y)), [0, 0, 0])
                for i, v in enumerate(values):
                    counts[i] += v
        between = merged


def _components(edges: list[tuple[str, str]]) -> list[list[str]]:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        parent[find(a)] = find(b)
    groups: dict[str, list[str]] = {}
    for x in parent:
        groups.setdefault(find(x), []).append(x)
    return sorted(sorted(g) for g in groups.values())
