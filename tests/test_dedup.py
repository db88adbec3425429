"""Duplicate finding, pictures, HTML reports, the dedup and search commands, and the example scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import pytest

from localmatch.cli import main
from localmatch.database import Database
from localmatch.dedup import (DuplicatePair, DuplicateTest, _add_identical_copy, _classify, _components, _maps_inside,
                              find_duplicates, inlier_spread, photometric_agreement, thumbnail)
from localmatch.errors import DatabaseError
from localmatch.demo import skimage_photo, write_demo_collection
from localmatch.io import Image, load_image
from localmatch.types import Verification
from localmatch.viz import homography_overlay, html_page, ranking_strip, side_by_side

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    paths = write_demo_collection(str(folder))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not an image")
    return folder, {Path(p).name: p for p in paths}


@pytest.fixture(scope="module")
def report(collection):
    folder, _ = collection
    return find_duplicates([folder], progress=False)


def names(group):
    return sorted(Path(p).name for p in group)


def test_duplicate_groups_mirrors_and_same_scene(report, collection):
    groups = [names(g) for g in report.groups]
    assert groups == [["astronaut.jpg", "astronaut_crop.jpg", "astronaut_rot90.jpg"],
                      ["chelsea.jpg", "chelsea_mirrored.jpg"], ["coffee.jpg", "coffee_q15.jpg"]]
    relation = {frozenset((Path(p.a).name, Path(p.b).name)): p for p in report.pairs}
    mirrored = relation[frozenset(("chelsea.jpg", "chelsea_mirrored.jpg"))]
    assert mirrored.relation == "duplicate" and mirrored.mirrored
    stereo = relation[frozenset(("motorcycle_left.jpg", "motorcycle_right.jpg"))]
    assert stereo.relation == "same-scene"  # two photos of one scene are not duplicates
    assert [Path(p).name for p, _ in report.failed] == ["broken.jpg"]
    assert not any("rocket" in p.a or "rocket" in p.b for p in report.pairs)


def test_a_database_that_shortlists_with_asmk_finds_the_same_groups(collection, report, tmp_path):
    folder, _ = collection
    with Database(tmp_path / "db", representation="asmk", asmk_config={"codebook_size": 256}):
        pass  # created empty: find_duplicates keeps its settings
    asmk = find_duplicates([folder], database=tmp_path / "db", progress=False)
    assert [names(g) for g in asmk.groups] == [names(g) for g in report.groups]


def test_a_database_of_other_features_is_refused_before_anything_is_added(collection, tmp_path):
    """The duplicate test's sub-pixel thresholds hold for SIFT only: given a database of DELF-style cells
    (16 px apart), it called a resized copy "same-scene" and found no group."""
    folder, _ = collection
    with Database(tmp_path / "db", features="asift"):
        pass
    with pytest.raises(DatabaseError, match="'asift' features; finding duplicates needs a database of 'sift'"):
        find_duplicates([folder], database=tmp_path / "db", progress=False)
    with Database(tmp_path / "db", readonly=True) as db:
        assert len(db) == 0


def test_byte_identical_copies_are_duplicates_with_their_original_s_relations(collection, report, tmp_path):
    """A database indexes one file per content; before, the other copies vanished from the report."""
    import shutil

    folder, by_name = collection
    copies = tmp_path / "copies"
    copies.mkdir()
    shutil.copy(by_name["coffee.jpg"], copies / "coffee_copy.jpg")
    shutil.copy(by_name["coffee.jpg"], copies / "coffee_copy2.jpg")
    shutil.copy(by_name["motorcycle_left.jpg"], copies / "left_copy.jpg")
    result = find_duplicates([folder, copies], progress=False)
    groups = [names(g) for g in result.groups]
    assert ["coffee.jpg", "coffee_copy.jpg", "coffee_copy2.jpg", "coffee_q15.jpg"] in groups
    assert ["left_copy.jpg", "motorcycle_left.jpg"] in groups
    pairs = {frozenset((Path(p.a).name, Path(p.b).name)): p for p in result.pairs}
    identical = pairs[frozenset(("coffee_copy.jpg", "coffee_copy2.jpg"))]
    assert identical.relation == "duplicate" and np.array_equal(identical.matrix, np.eye(3))
    assert identical.coverage == identical.similarity == identical.spread == 1.0 and identical.residual == 0.0
    # the copy stands in the original's relations: the other stereo view is the same scene for both
    assert pairs[frozenset(("left_copy.jpg", "motorcycle_right.jpg"))].relation == "same-scene"
    before = {frozenset((Path(p.a).name, Path(p.b).name)): p.relation for p in report.pairs}
    assert all(pairs[k].relation == relation for k, relation in before.items())


def test_photometric_agreement_of_a_copy_and_of_another_photo(collection):
    _, files = collection
    a = load_image(files["astronaut.jpg"])
    identity = np.eye(3)
    coverage, similarity = photometric_agreement(thumbnail(a), thumbnail(a), identity)
    assert coverage == pytest.approx(1.0) and similarity > 0.99
    coffee = load_image(files["coffee.jpg"])
    assert photometric_agreement(thumbnail(a), thumbnail(coffee), identity)[1] < 0.5


def test_photometric_coverage_is_the_larger_share_and_thumbnails_scale_about_pixel_centres():
    astronaut = skimage_photo("astronaut.png")  # 512 x 512
    left_half = Image(np.ascontiguousarray(astronaut.pixels[:, :256]), "left half")
    coverage, similarity = photometric_agreement(thumbnail(astronaut), thumbnail(left_half), np.eye(3))
    assert coverage == pytest.approx(1.0) and similarity > 0.99  # all of B, though half of A
    half_size = Image(cv2.resize(astronaut.pixels, (256, 256), interpolation=cv2.INTER_AREA), "half size")
    to_half = np.array([[0.5, 0, -0.25], [0, 0.5, -0.25], [0, 0, 1]])  # pixel centres: 0.5 * (x + 0.5) - 0.5
    assert photometric_agreement(thumbnail(astronaut), thumbnail(half_size), to_half)[1] > 0.9999
    # (measured: 1 - 4e-7; scaling pixel corners instead of centres put B a quarter pixel off: 0.9924)
    corner = np.array([[1, 0, -500], [0, 1, -500], [0, 0, 1.0]])  # a 12 x 12 px corner: too few to correlate
    coverage, similarity = photometric_agreement(thumbnail(astronaut), thumbnail(astronaut), corner)
    assert coverage < 0.001 and similarity == 0.0


def cell_centres(size: tuple[int, int], grid: int = 8) -> np.ndarray:
    xs, ys = ((np.arange(grid) + 0.5) * side / grid - 0.5 for side in size)
    return np.array([(x, y) for y in ys for x in xs], np.float32)


def verified(points_a: np.ndarray, points_b: np.ndarray, H: np.ndarray) -> Verification:
    n = len(points_a)
    return Verification(n, n, points_a, points_b, "homography", H, True, 1.0)


def test_inlier_spread_counts_the_cells_that_hold_an_inlier_among_those_the_other_image_shows():
    size = (800, 400)  # not square: the 8 x 8 cells are 100 px wide and 50 px high
    everywhere = cell_centres(size)
    left_half, left_quarter = everywhere[everywhere[:, 0] < 400], everywhere[everywhere[:, 0] < 200]
    # A has keypoints in all 64 cells and B in its left 32; the inliers hold 16 cells: 1/4 of A's, 1/2 of B's
    same = verified(left_quarter, left_quarter, np.eye(3))
    assert inlier_spread(same, everywhere, size, left_half, size) == 0.25
    # B shows only A's left half (A's right half maps past B's right edge): only those cells count
    shift = np.array([[1, 0, 400], [0, 1, 0], [0, 0, 1.0]])
    assert inlier_spread(verified(left_quarter, left_quarter + [400, 0], shift), everywhere, size, everywhere,
                         size) == 0.5


def test_a_point_that_maps_behind_the_camera_is_not_inside_the_other_image():
    # the last coordinate 1 - x / 400 is negative right of x = 400, where x and y come out positive
    H = np.array([[0, 0, -200], [0, -1, 0], [-1 / 400, 0, 1]])
    points = np.array([[700, 100], [100, 100]], np.float64)  # behind, mapped to (267, 133); in front, (-267, -133)
    assert _maps_inside(points, H, (800, 400)).tolist() == [False, False]
    assert _maps_inside(points, np.eye(3), (800, 400)).tolist() == [True, True]


def test_a_byte_identical_copy_takes_its_original_s_pairs_and_tests():
    found = {("a", "x"): DuplicatePair("a", "x", "duplicate", 50, "homography")}
    tested = {("a", "x"), ("a", "y"), ("x", "y")}
    _add_identical_copy("c", "a", 120, found, tested)
    assert tested == {("a", "x"), ("a", "y"), ("x", "y"), ("c", "x"), ("c", "y"), ("a", "c")}
    assert sorted(found) == [("a", "c"), ("a", "x"), ("c", "x")]
    assert (found[("c", "x")].a, found[("c", "x")].num_inliers) == ("c", 50)
    assert found[("a", "c")].relation == "duplicate" and found[("a", "c")].num_inliers == 120


def test_a_shortlist_of_one_verifies_the_best_other_image(collection):
    folder, _ = collection
    groups = [names(g) for g in find_duplicates([folder], shortlist=1, mirror=False, progress=False).groups]
    assert ["coffee.jpg", "coffee_q15.jpg"] in groups


def test_the_residual_is_measured_in_b_s_working_pixels(tmp_path):
    """A photo over ``max_side`` is described at a reduced working size, in whose pixels a copy's keypoints
    agree to a fraction of a pixel. (The residual in B was scaled by the smaller of the two images' working
    scales: a 4032 px photo's match in a 1024 px copy was judged at a quarter of the copy's pixels.)"""
    coffee = skimage_photo("coffee.png")  # 600 x 400
    PIL.Image.fromarray(coffee.pixels).save(tmp_path / "b.png")
    grid = np.stack(np.meshgrid(np.arange(20, 600, 40.0), np.arange(20, 400, 40.0)), -1).reshape(-1, 2)
    shifted = verified(grid.astype(np.float32), (grid + [0.3, 0]).astype(np.float32), np.eye(3))
    pair = _classify("a.png", str(tmp_path / "b.png"), thumbnail(coffee), shifted, False, 0.5, 1.0, DuplicateTest())
    assert pair.residual == pytest.approx(0.15, abs=1e-4) and pair.relation == "duplicate"
    # in original pixels the same residual (0.3) would be over max_residual, and a uniform shift is all structure
    pair = _classify("a.png", str(tmp_path / "b.png"), thumbnail(coffee), shifted, False, 1.0, 1.0, DuplicateTest())
    assert pair.residual == pytest.approx(0.3, abs=1e-4) and pair.structure > 0.9 and pair.relation == "same-scene"


def test_components():
    assert _components([("a", "b"), ("c", "d"), ("b", "e")]) == [["a", "b", "e"], ["c", "d"]]


def test_pictures_and_html_escape(collection):
    _, files = collection
    a, b = load_image(files["astronaut.jpg"]), load_image(files["astronaut_crop.jpg"])
    H = np.array([[1.0, 0, -40], [0, 1, -60], [0, 0, 1]])
    pts = np.array([[100.0, 100.0], [300, 200]])
    picture = side_by_side(a, b, pts, pts - [40, 60], outliers_a=pts, outliers_b=pts, homography=H)
    assert picture.shape == (512, 512 + round(380 * 512 / 400), 3)  # both at the taller height
    assert homography_overlay(a, b, H).shape == (400, 380, 3)
    strip = ranking_strip(a, [(b, "#1 600 inl", True), (a, "#2", False)], height=100)
    assert strip.shape[0] == 128 and strip.dtype == np.uint8
    page = html_page("t<i>", [("<script>alert(1)</script>", [(a, "x&y<b>.jpg"), (None, "missing")])])
    assert "<script>alert" not in page and "&lt;script&gt;" in page and "x&amp;y&lt;b&gt;.jpg" in page
    assert "data:image/jpeg;base64," in page


def test_dedup_command_json_and_report(collection, tmp_path, capsys):
    folder, _ = collection
    out = tmp_path / "dups.html"
    assert main(["dedup", str(folder), "--json", "--report", str(out), "-q"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert len(data["groups"]) == 3
    assert {"a", "b", "num_inliers", "geometry", "relation", "coverage", "similarity", "residual", "structure",
            "spread"} <= set(data["pairs"][0])
    assert {p["relation"] for p in data["pairs"]} == {"duplicate", "same-scene"}
    assert "broken.jpg" in captured.err
    assert out.read_text().count("<figure>") >= 7


def test_search_draw_and_report(collection, tmp_path, capsys):
    folder, files = collection
    db = str(tmp_path / "db")
    assert main(["index", "build", db, str(folder), "-q"]) == 0
    capsys.readouterr()
    picture, page = tmp_path / "rank.png", tmp_path / "rank.html"
    assert main(["search", db, files["motorcycle_left.jpg"], "-k", "3", "--draw", str(picture), "--report", str(page)]) == 0
    assert np.asarray(PIL.Image.open(picture)).shape[0] == 188
    assert "motorcycle_right.jpg" in page.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("script,words", [("visualize_matches.py", "wrote"), ("landmark_search.py", "wrote ranking.png"),
                                          ("find_duplicates.py", "group 3")])
def test_examples_run_on_the_built_in_demo(tmp_path, script, words):
    done = subprocess.run([sys.executable, str(EXAMPLES / script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert words in done.stdout


@pytest.mark.parametrize("script,argv", [("visualize_matches.py", ["missing_a.jpg", "missing_b.jpg", "out.png"]),
                                         ("landmark_search.py", [".", "missing_a.jpg"])])
def test_examples_name_an_unusable_image_instead_of_a_traceback(tmp_path, script, argv):
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *argv], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.strip() == "error: missing_a.jpg: no such file", done.stderr
    assert "indexed" not in done.stdout  # the query is checked before the folder is indexed


def test_examples_end_with_a_reason_for_an_empty_folder_and_an_unwritable_picture(tmp_path, astronaut):
    query = tmp_path / "q.png"
    PIL.Image.fromarray(astronaut.pixels[:200, :200]).save(query)
    (tmp_path / "empty").mkdir()
    for script, argv, reason in (
            ("landmark_search.py", ["empty", "q.png"], "error: empty: no image to search (no image files)"),
            ("landmark_search.py", ["nowhere", "q.png"], "error: nowhere: no image to search (nowhere: cannot read"),
            ("visualize_matches.py", ["q.png", "q.png", "out.xyz"], "error: out.xyz: could not write the picture")):
        done = subprocess.run([sys.executable, str(EXAMPLES / script), *argv], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 1 and done.stderr.startswith(reason), done.stderr


def test_average_linkage_keeps_families_apart_despite_a_few_wrong_links():
    from localmatch.dedup import average_linkage_groups

    family_a, family_b = [f"a{i}" for i in range(4)], [f"b{i}" for i in range(4)]
    within = [(x, y) for fam in (family_a, family_b) for i, x in enumerate(fam) for y in fam[i + 1:]]
    across = [(x, y) for x in family_a for y in family_b]  # all tested, one called duplicate by mistake
    duplicates = within + [("a0", "b0")]
    groups = average_linkage_groups(duplicates, set(within) | set(across))
    assert groups == [family_a, family_b]
    # connected components would have merged them
    from localmatch.dedup import _components
    assert len(_components(duplicates)) == 1
    # a pair chained through an untested link still joins: only tested pairs count against a merge
    assert average_linkage_groups([("x", "y"), ("y", "z")], {("x", "y"), ("y", "z")}) == [["x", "y", "z"]]
    # a join needs half of the tested pairs between two groups to be duplicates
    half = [("x", "y"), ("y", "z")]
    assert average_linkage_groups(half, set(half) | {("x", "z")}) == [["x", "y", "z"]]
    third = [("w", "x"), ("x", "y"), ("y", "z")]  # {w, x} + {y, z}: 1 of 4 tested pairs between them
    assert average_linkage_groups(third, set(third) | {("w", "y"), ("w", "z"), ("x", "z")}) == [["w", "x"], ["y", "z"]]


def test_a_duplicate_pair_outside_the_groups_is_reported_as_same_scene():
    from localmatch.dedup import DuplicatePair, agree_with_groups, average_linkage_groups

    duplicates = [("w", "x"), ("w", "y"), ("x", "y"), ("x", "z")]  # z: a duplicate of x only
    tested = set(duplicates) | {("w", "z"), ("y", "z")}
    groups = average_linkage_groups(duplicates, tested)
    assert groups == [["w", "x", "y"]]
    pairs = [DuplicatePair(a, b, "duplicate", 50, "homography", False, np.eye(3)) for a, b in duplicates]
    relations = {(p.a, p.b): p.relation for p in agree_with_groups(pairs, groups)}
    assert relations == {("w", "x"): "duplicate", ("w", "y"): "duplicate", ("x", "y"): "duplicate",
                         ("x", "z"): "same-scene"}


def test_residual_structure_tells_keypoint_noise_from_a_smooth_misfit():
    from localmatch.dedup import DuplicateTest, residual_structure

    rng = np.random.default_rng(0)
    points = rng.uniform(0, 640, (400, 2))
    noise = residual_structure(points, points + rng.normal(0, 0.4, points.shape), np.eye(3))
    centred = (points - 320) / 320
    distortion = 0.5 * centred * (centred ** 2).sum(1, keepdims=True)  # radial, as a lens leaves it
    smooth = residual_structure(points, points + distortion + rng.normal(0, 0.05, points.shape), np.eye(3))
    assert abs(noise) < 0.1 and smooth > 0.8
    test = DuplicateTest()
    assert test.same_picture(1.0, 0.5, 0.1, 0.9, 1.0)  # sub-pixel agreement
    assert test.same_picture(1.0, 0.99, 0.5, 0.01, 1.0) and not test.same_picture(1.0, 0.99, 0.5, 0.3, 1.0)
    assert test.same_picture(1.0, 0.96, 0.26, 0.05, 1.0) and not test.same_picture(1.0, 0.96, 0.28, 0.05, 1.0)
    assert not test.same_picture(1.0, 0.995, 0.26, 0.19, 1.0)  # structured misfit
    assert not test.same_picture(0.3, 1.0, 0.05, 0.0, 1.0)  # too little overlap
    assert not test.same_picture(1.0, 1.0, 0.05, 0.0, 0.2)  # inliers in one place only


def test_half_size_copies_of_two_near_identical_ukbench_photos_are_not_duplicates(tmp_path):
    # UKBench 41 and 42: one rug photographed twice seconds apart. Halved, their keypoints disagree by
    # only 0.29 px with a correlation of 0.995, as much as a copy; the misfit's spatial structure
    # (0.19, a copy's is under 0.1) tells them apart. A halved and a quality-15 copy of 41 are duplicates.
    import cv2

    from conftest import shared_data

    images = shared_data("ukbench_subset") / "images"
    first, second = (cv2.imread(str(images / f"ukbench000{n}.jpg")) for n in (41, 42))
    half = lambda pixels: cv2.resize(pixels, (320, 240), interpolation=cv2.INTER_AREA)  # noqa: E731
    for name, pixels, quality in (("41.jpg", first, 95), ("41_half.jpg", half(first), 95),
                                  ("41_q15.jpg", first, 15), ("42_half.jpg", half(second), 95)):
        cv2.imwrite(str(tmp_path / name), pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    report = find_duplicates([tmp_path], progress=False)
    assert [names(g) for g in report.groups] == [["41.jpg", "41_half.jpg", "41_q15.jpg"]]
    other = [p for p in report.pairs if "42_half.jpg" in (Path(p.a).name, Path(p.b).name)]
    assert other and all(p.relation == "same-scene" for p in other)


def test_two_photos_sharing_only_a_caption_bar_are_not_duplicates(astronaut, coffee, tmp_path):
    # The same black caption bar on two different photos matches pixel for pixel (residual ~0 px) under
    # an identity homography, but only where the bar is: the inliers' spread (~0.2) says so.
    import cv2

    from localmatch.dedup import DuplicateTest

    def captioned(image):
        pixels = cv2.resize(np.ascontiguousarray(image.pixels[:, :, ::-1]), (512, 512))
        pixels[420:490] = 0
        cv2.putText(pixels, "Holiday 2026", (20, 470), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (255, 255, 255), 5,
                    cv2.LINE_AA)
        return pixels

    cv2.imwrite(str(tmp_path / "astronaut.jpg"), captioned(astronaut))
    cv2.imwrite(str(tmp_path / "astronaut_q30.jpg"), captioned(astronaut), [cv2.IMWRITE_JPEG_QUALITY, 30])
    cv2.imwrite(str(tmp_path / "coffee.jpg"), captioned(coffee))
    report = find_duplicates([tmp_path], progress=False)
    assert [names(g) for g in report.groups] == [["astronaut.jpg", "astronaut_q30.jpg"]]
    shared = [p for p in report.pairs if "coffee.jpg" in (Path(p.a).name, Path(p.b).name)]
    assert shared and all(p.relation == "same-scene" and p.spread < 0.4 and p.residual < 0.1 for p in shared)
    copy = next(p for p in report.pairs if p.relation == "duplicate")
    assert copy.spread > 0.9
    # without the spread test the caption alone would make them one picture
    unguarded = find_duplicates([tmp_path], progress=False, test=DuplicateTest(min_spread=0.0))
    assert [names(g) for g in unguarded.groups] == [["astronaut.jpg", "astronaut_q30.jpg", "coffee.jpg"]]
