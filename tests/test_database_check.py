"""Checking a database for damage that opening and searching cannot see (Database.check, `index check`)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import sqlite3
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_data
from localmatch.cli import main
from localmatch.database import CheckReport, Database
from localmatch.database import check as check_module
from localmatch.dedup import find_duplicates
from localmatch.errors import DatabaseError
from localmatch.files import file_crc32
from localmatch.shortlist.asmk import InvertedFile

SMALL = {"max_side": 400, "max_features": 500}  # small working size keeps the tests quick


@pytest.fixture(scope="module")
def ukbench_paths() -> list[str]:
    return [str(p) for p in sorted((shared_data("ukbench_subset") / "images").glob("*.jpg"))][:8]


@pytest.fixture(scope="module")
def built(tmp_path_factory, ukbench_paths) -> Path:
    path = tmp_path_factory.mktemp("check") / "db"
    with Database(path, feature_config=SMALL) as db:
        assert len(db.add(ukbench_paths).added) == len(ukbench_paths)
    return path


def copy_of(db: Path, tmp_path: Path, name: str = "copy") -> Path:
    return Path(shutil.copytree(db, tmp_path / name))


def record(db: Path, image_id: int) -> dict:
    connection = sqlite3.connect(db / "localmatch.sqlite")
    connection.row_factory = sqlite3.Row
    row = dict(connection.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone())
    connection.close()
    return row


def execute(db: Path, *statements: str) -> None:
    connection = sqlite3.connect(db / "localmatch.sqlite", isolation_level=None)
    for statement in statements:
        connection.execute(statement)
    connection.close()


def flip_bit(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))


def flip_exponent(db: Path, global_row: int) -> int:
    """Flip the second bit of the exponent of the largest value in a stored global descriptor (0.09 becomes
    about 5700); returns its index."""
    vectors = np.memmap(db / "global.f16", np.float16, mode="r+").reshape(-1, 3328)
    i = int(np.argmax(np.abs(vectors[global_row])))
    vectors[global_row].view(np.uint16)[i] ^= 0x4000
    vectors.flush()
    return i


def check(db: Path, **options) -> CheckReport:
    with Database(db, readonly=True) as opened:
        return opened.check(**options)


def test_a_sound_database_checks_clean_against_every_checksum(built, ukbench_paths, capsys):
    report = check(built)
    assert report.ok and report.images == report.checksummed == len(ukbench_paths)
    assert report.damaged == report.problems == report.notes == []
    assert main(["index", "check", str(built)]) == 0
    assert "checked 8 images (8 against their checksums): no damage found" in capsys.readouterr().out
    with Database(built) as writer:  # a writer may check too, and nothing changes
        assert writer.check(quick=True).ok and writer.check().checksummed == len(ukbench_paths)


def test_a_flipped_bit_in_any_array_names_its_image_and_removing_and_adding_it_again_mends_it(
        built, tmp_path, ukbench_paths, capsys):
    db = copy_of(built, tmp_path)
    keypoints, descriptors, global_descriptor = record(db, 2), record(db, 5), record(db, 7)
    flip_bit(db / "keypoints.f32", keypoints["feature_row"] * 8 + 8 * 10 + 3)  # 10th keypoint's x
    flip_bit(db / "descriptors.i8", descriptors["feature_row"] * 128 + 128 * (descriptors["num_features"] - 1))
    flip_bit(db / "global.f16", global_descriptor["global_row"] * 3328 * 2 + 4000)

    assert check(db, quick=True).ok  # the records are sound: only reading the rows tells
    report = check(db)
    assert [(d.image_id, d.path) for d in report.damaged] == [(2, ukbench_paths[1]), (5, ukbench_paths[4]),
                                                              (7, ukbench_paths[6])]
    assert all("differ from what was written" in d.reason for d in report.damaged)
    assert report.checksummed == len(ukbench_paths) - 3 and not report.problems

    assert main(["index", "check", str(db), "--json"]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] is False and [d["image_id"] for d in printed["damaged"]] == [2, 5, 7]
    assert main(["index", "check", str(db)]) == 1
    out = capsys.readouterr().out
    assert f"damaged: image 5 ({ukbench_paths[4]}): its stored features differ" in out
    assert f"`localmatch index remove {db} 2 5 7`" in out

    assert main(["index", "remove", str(db), "2", "5", "7"]) == 0
    assert main(["index", "add", str(db), ukbench_paths[1], ukbench_paths[4], ukbench_paths[6], "-q"]) == 0
    assert check(db).ok
    with Database(db, readonly=True) as opened:
        assert opened.search(ukbench_paths[4], k=1)[0].path == ukbench_paths[4]


def test_repair_indexes_each_damaged_image_again_from_its_file(built, tmp_path, ukbench_paths, capsys):
    db = copy_of(built, tmp_path)
    flip_bit(db / "keypoints.f32", record(db, 2)["feature_row"] * 8 + 8 * 10 + 3)
    flip_bit(db / "descriptors.i8", record(db, 5)["feature_row"] * 128 + 5)
    flip_bit(db / "global.f16", record(db, 7)["global_row"] * 3328 * 2 + 4000)

    assert main(["index", "check", str(db), "--repair"]) == 0
    out = capsys.readouterr().out
    assert f"damaged: image 5 ({ukbench_paths[4]}): its stored features differ" in out  # what the check found
    assert [line for line in out.splitlines() if line.startswith("repaired:")] == [
        f"repaired: image 2 ({ukbench_paths[1]}) is image 9 now", f"repaired: image 5 ({ukbench_paths[4]}) is image "
        f"10 now", f"repaired: image 7 ({ukbench_paths[6]}) is image 11 now"]
    assert check(db).ok
    with Database(db, readonly=True) as mended, Database(built, readonly=True) as sound:
        assert [path for _, path in mended.images()] == [ukbench_paths[i] for i in (0, 2, 3, 5, 7, 1, 4, 6)]
        for old, new in ((2, 9), (5, 10), (7, 11)):  # what was written for the file in the first place
            before, after = sound.features_of(old), mended.features_of(new)
            assert np.array_equal(before.keypoints, after.keypoints)
            assert np.array_equal(before.descriptors.values, after.descriptors.values)
            assert np.array_equal(sound.global_of(old), mended.global_of(new))
        assert mended.search(ukbench_paths[4], k=1)[0].path == ukbench_paths[4]
    assert main(["index", "check", str(db), "--repair", "--json"]) == 0  # nothing left to do
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] is True and printed["repaired"] == [] and printed["check"]["damaged"] == []
    assert main(["index", "check", str(db), "--repair", "--quick"]) == 2


def test_repair_leaves_an_image_whose_file_is_gone_and_deletes_one_whose_bytes_another_path_holds(tmp_path,
                                                                                                   ukbench_paths):
    files = [str(shutil.copy(path, tmp_path / f"{i}.jpg")) for i, path in enumerate(ukbench_paths[:3])]
    with Database(tmp_path / "db", feature_config=SMALL) as db:
        db.add(files)
    for image_id in (1, 2):
        flip_bit(tmp_path / "db" / "descriptors.i8", record(tmp_path / "db", image_id)["feature_row"] * 128 + 9)
    Path(files[0]).rename(tmp_path / "gone.jpg")
    shutil.copy(files[2], files[1])  # image 2's file now holds what image 3 was made from

    with Database(tmp_path / "db") as db:
        assert sorted(db.shortlist(db.global_of(3), 3)[0]) == [1, 2, 3]
        report = db.repair()
        assert [(r.image_id, r.new_id) for r in report.repaired] == [(2, 3)]  # deleted: 3 holds those bytes
        assert sorted(db.shortlist(db.global_of(3), 3)[0]) == [1, 3]  # this handle's shortlist too
        assert [(d.image_id, d.path) for d in report.left] == [(1, files[0])] and not report.ok
        assert report.left[0].reason.startswith("its stored features differ from what was written (CRC-32 ")
        assert report.left[0].reason.endswith("; not repaired: its file cannot be read (No such file or directory)")
        assert [i for i, _ in db.images()] == [1, 3]  # the damaged image is kept until its file is back
        assert [d.image_id for d in db.check().damaged] == [1]
    assert main(["index", "check", str(tmp_path / "db"), "--repair"]) == 1
    (tmp_path / "gone.jpg").rename(files[0])
    with Database(tmp_path / "db") as db:
        assert [(r.image_id, r.new_id) for r in db.repair().repaired] == [(1, 4)]
        assert db.check().ok and [i for i, _ in db.images()] == [3, 4]
    with Database(tmp_path / "db", readonly=True) as db, pytest.raises(DatabaseError, match="read-only|readonly"):
        db.repair()


def test_searches_leave_an_image_with_damaged_rows_out_and_say_so_once(built, tmp_path, ukbench_paths, caplog):
    """Before session 29 a search matched damaged rows as if they were the image's: with its first keypoints
    overwritten the query's own image dropped out of the top 3 with no word said."""
    db = copy_of(built, tmp_path)
    flip_bit(db / "descriptors.i8", record(db, 1)["feature_row"] * 128 + 7)
    with Database(built, readonly=True) as sound:
        expected = [(h.image_id, h.rank, h.num_inliers, h.global_score) for h in
                    sound.search(ukbench_paths[0], k=8, shortlist=8) if h.image_id != 1]
    with Database(db, readonly=True) as opened, caplog.at_level(logging.WARNING, logger="localmatch.database"):
        for _ in range(2):
            hits = opened.search(ukbench_paths[0], k=8, shortlist=8)
            assert [(h.image_id, h.rank + 1, h.num_inliers, h.global_score) for h in hits] == expected
        warned = [r.getMessage() for r in caplog.records]
        assert len(warned) == 1, warned  # once per image while the database is open
        assert f"image 1 ({ukbench_paths[0]}) is damaged: its stored features differ from what was written" in \
            warned[0] and f"(localmatch index remove {db} 1)" in warned[0] and "left out of searches" in warned[0]
        with pytest.raises(DatabaseError, match="image 1 .* is damaged"):
            opened.features_of(1)
        assert [c.image_id for c in opened.candidates([3, 1, 99, 2])] == [3, 2]
        assert len(opened.features_of(3).keypoints) == record(db, 3)["num_features"]


def test_a_damaged_global_descriptor_scores_zero_in_a_shortlist_built_again(built, tmp_path, ukbench_paths, caplog):
    """Before session 29 the image whose vector read 5700 for 0.09 came first in every shortlist, scored 373."""
    db = copy_of(built, tmp_path)
    flip_exponent(db, record(db, 5)["global_row"])
    (db / "shortlist.faiss").unlink()  # built again from global.f16 when next searched
    with Database(db, readonly=True) as opened, caplog.at_level(logging.WARNING, logger="localmatch.database"):
        hits = opened.search(ukbench_paths[1], k=8, rerank=False)
        assert hits[-1].image_id == 5 and hits[-1].global_score == 0 and hits[0].image_id == 2
        assert 5 not in [h.image_id for h in opened.search(ukbench_paths[1], k=8, shortlist=8)]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and f"image 5 ({ukbench_paths[4]}) is damaged: its stored global descriptor has " \
        "length" in warned[0] and "It scores 0 in every shortlist" in warned[0]


def test_dedup_over_a_database_with_a_damaged_image_leaves_that_image_out(built, tmp_path, ukbench_paths, caplog):
    db = copy_of(built, tmp_path)
    flip_bit(db / "keypoints.f32", record(db, 1)["feature_row"] * 8 + 5)
    sound = find_duplicates(ukbench_paths, database=copy_of(built, tmp_path, "sound"), mirror=False, progress=False)
    with caplog.at_level(logging.WARNING, logger="localmatch"):
        report = find_duplicates(ukbench_paths, database=db, mirror=False, progress=False)
    assert any(f"image 1 ({ukbench_paths[0]}) is damaged" in r.getMessage() for r in caplog.records)
    others = [(p.a, p.b, p.relation, p.num_inliers) for p in sound.pairs if ukbench_paths[0] not in (p.a, p.b)]
    assert [(p.a, p.b, p.relation, p.num_inliers) for p in report.pairs] == others
    assert len(others) < len(sound.pairs)  # the image had pairs, which went with it


DAMAGED_RECORDS = [
    ("UPDATE images SET feature_row = (SELECT feature_row FROM images WHERE id = 3) + 5, num_features = 10 WHERE id = 6",
     {3, 6},
     "its feature rows overlap those of image"),
    ("UPDATE images SET num_features = num_features + 100000 WHERE id = 4", {4}, "past the"),
    ("UPDATE images SET global_row = 99 WHERE id = 2", {2}, "its global descriptor lies at row 99"),
    ("UPDATE images SET width = 0 WHERE id = 1", {1}, "a size of 0 x"),
    ("UPDATE images SET descriptor_scale = 'x' WHERE id = 8", {8}, "a descriptor scale of x"),
    ("UPDATE images SET working_scale = -0.5 WHERE id = 7", {7}, "and a working scale of -0.5"),
    ("UPDATE images SET checksum = checksum + 1 WHERE id = 3", {3}, "differ from what was written"),
    ("UPDATE images SET checksum = 'abc' WHERE id = 5", {5}, "its record holds 'abc' where a checksum must be"),
    ("INSERT INTO regions VALUES (5, 40, 10, 20, 30)", {5}, "one of its region boxes is [40.0, 10.0, 20.0, 30.0]"),
]


@pytest.mark.parametrize("statement, damaged, says", DAMAGED_RECORDS)
def test_damaged_records_are_reported_by_image(built, tmp_path, statement, damaged, says):
    db = copy_of(built, tmp_path)
    execute(db, statement)
    report = check(db)
    assert {d.image_id for d in report.damaged} == damaged and not report.problems
    assert all(says in d.reason for d in report.damaged), report.damaged


def test_rows_shared_by_two_images_are_found_however_the_spans_nest():
    def shared(spans):
        damaged: dict[int, str] = {}
        check_module._flag_shared_rows(spans, "feature", damaged)
        return damaged

    assert shared([(0, 10, 1), (10, 20, 2), (20, 21, 3)]) == {}  # end to end: each image has rows of its own
    assert shared([(9, 20, 2), (0, 10, 1)]) == {1: "its feature rows overlap those of image 2",
                                                2: "its feature rows overlap those of image 1"}
    # image 3 starts past image 2's end but inside image 1's, which holds both
    assert shared([(0, 100, 1), (10, 20, 2), (30, 40, 3)]) == {
        1: "its feature rows overlap those of image 2", 2: "its feature rows overlap those of image 1",
        3: "its feature rows overlap those of image 1"}


@pytest.mark.parametrize("statement, damaged, says", DAMAGED_RECORDS)
def test_repair_mends_every_kind_of_damaged_record(built, tmp_path, ukbench_paths, statement, damaged, says):
    db = copy_of(built, tmp_path)
    execute(db, statement)
    with Database(db) as opened:
        report = opened.repair()
        assert sorted(r.image_id for r in report.repaired) == sorted(damaged) and report.ok
        assert opened.check().ok and sorted(path for _, path in opened.images()) == sorted(ukbench_paths)


def test_region_boxes_of_an_image_not_in_the_database_are_a_note(built, tmp_path):
    db = copy_of(built, tmp_path)
    execute(db, "INSERT INTO regions VALUES (999, 10, 10, 20, 30)", "INSERT INTO regions VALUES (999, 40, 10, 20, 30)")
    report = check(db)
    assert not report.damaged and not report.problems
    assert "the regions table holds boxes of 1 images that are not in the database (unused)" in report.notes


def test_a_file_cut_short_and_a_damaged_sqlite_file_are_problems(built, tmp_path):
    cut = copy_of(built, tmp_path, "cut")
    last = record(cut, 8)
    size = (cut / "descriptors.i8").stat().st_size
    (cut / "descriptors.i8").write_bytes((cut / "descriptors.i8").read_bytes()[:size - 128])
    report = check(cut)
    assert [d.image_id for d in report.damaged] == [8] and "past the end of a file that was cut short" in \
        report.damaged[0].reason
    assert len(report.problems) == 1 and "descriptors.i8: holds" in report.problems[0]
    assert last["num_features"] > 0

    orphan_index = copy_of(built, tmp_path, "sqlite")  # SQLite's own check: pages no table owns
    execute(orphan_index, "PRAGMA writable_schema=ON", "DELETE FROM sqlite_schema WHERE name = 'images_path'")
    report = check(orphan_index, quick=True)
    assert len(report.problems) == 1 and re.fullmatch(r"SQLite quick_check: Page \d+ is never used", report.problems[0])
    assert not report.damaged and not report.ok


def test_images_added_before_checksums_get_their_values_checked_and_new_ones_a_checksum(built, tmp_path,
                                                                                         ukbench_paths):
    old = copy_of(built, tmp_path)
    execute(old, "ALTER TABLE images DROP COLUMN checksum")  # what a database made before session 28 holds
    report = check(old)
    assert report.ok and report.checksummed == 0
    assert report.notes == ["8 images were added before localmatch kept checksums: only their values were checked"]
    with Database(old, readonly=True) as reader:  # searched as before, with nothing to compare the rows with
        assert reader.search(ukbench_paths[1], k=1)[0].path == ukbench_paths[1]

    outside, not_finite = record(old, 2), record(old, 4)
    with open(old / "keypoints.f32", "r+b") as f:
        f.seek(outside["feature_row"] * 8)  # one beyond the right edge, one beyond the bottom
        f.write(np.array([[outside["width"] + 5, 10], [10, outside["height"] + 5]], np.float32).tobytes())
        f.seek(not_finite["feature_row"] * 8 + 4)
        f.write(np.array([np.nan], np.float32).tobytes())
    flip_exponent(old, record(old, 6)["global_row"])
    vectors = np.memmap(old / "global.f16", np.float16, mode="r+").reshape(-1, 3328)
    vectors[record(old, 8)["global_row"]] = 0  # what an image with nothing to describe is stored with
    vectors.flush()
    report = check(old)
    assert len(report.damaged) == 3 and [(d.image_id, d.reason) for d in report.damaged[:2]] == [
        (2, "2 keypoints outside the image's 640 x 480 pixels"), (4, "keypoints that are not finite numbers")]
    length = re.fullmatch(r"a global descriptor of length (\S+) where 1 was written", report.damaged[2].reason)
    assert report.damaged[2].image_id == 6 and length and float(length[1]) > 100

    with Database(old) as writer:  # a writer adds the column; what it adds from then on is checksummed
        assert writer.keeps_checksums
        writer.remove([2, 4, 6])
        writer.add([ukbench_paths[1]])
    report = check(old)
    assert report.ok and report.checksummed == 1 and report.images == 6


def test_asmk_codebook_and_caches(tmp_path, ukbench_paths):
    db = tmp_path / "asmk"
    with Database(db, representation="asmk", feature_config=SMALL, asmk_config={"codebook_size": 64}) as writer:
        writer.add(ukbench_paths[:4])
    assert check(db).ok
    (db / "asmk.npz").write_bytes(b"not an npz")
    report = check(db)
    assert report.ok and len(report.notes) == 1 and "asmk.npz: not a readable inverted file" in report.notes[0]
    (db / "codebook.npy").write_bytes((db / "codebook.npy").read_bytes()[:200])
    report = check(db)
    assert not report.ok and "codebook.npy: not a readable codebook" in report.problems[0]


def test_an_asmk_inverted_file_built_again_leaves_a_damaged_image_out(tmp_path, ukbench_paths, caplog):
    db = tmp_path / "asmk"
    with Database(db, representation="asmk", feature_config=SMALL, asmk_config={"codebook_size": 64}) as writer:
        writer.add(ukbench_paths[:4])
    (db / "asmk.npz").unlink()  # the cache is built again from the stored rows when next searched
    flip_bit(db / "descriptors.i8", record(db, 2)["feature_row"] * 128 + 3)
    with Database(db, readonly=True) as opened, caplog.at_level(logging.WARNING, logger="localmatch.database"):
        hits = opened.search(ukbench_paths[0], k=4, rerank=False)
        assert [h.image_id for h in hits if h.image_id != 2] == [h.image_id for h in hits] and len(hits) == 3
        assert len(opened.search(ukbench_paths[0], k=4)) == 3
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and f"image 2 ({ukbench_paths[1]}) is damaged" in warned[0]


def test_a_bit_flipped_in_the_saved_faiss_index_or_codebook_is_a_problem(built, tmp_path, ukbench_paths):
    """Both are read as they are: a flipped bit in the index's vectors changes that image's shortlist scores,
    one in the codebook the words every query is assigned to."""
    db = copy_of(built, tmp_path)
    flip_bit(db / "shortlist.faiss", (db / "shortlist.faiss").stat().st_size // 2)
    assert check(db, quick=True).ok  # it reads the file, whose vectors it cannot judge
    report = check(db)
    assert len(report.problems) == 1 and not report.damaged
    assert re.fullmatch(rf"{re.escape(str(db / 'shortlist.faiss'))}: differs from what was written \(CRC-32 \w{{8}}, "
                        r"recorded \w{8}\): searches would use wrong vectors; delete it, and it is built again from "
                        r"global.f16 when the database is next opened", report.problems[0]), report.problems
    (db / "shortlist.faiss").unlink()
    with Database(db) as writer:  # a writer saves the index it builds, with its checksum
        writer.add([ukbench_paths[-1]])
        assert writer.search(ukbench_paths[2], k=1)[0].path == ukbench_paths[2]
    assert (db / "shortlist.faiss").exists() and check(db).ok

    asmk = tmp_path / "asmk"
    with Database(asmk, representation="asmk", feature_config=SMALL, asmk_config={"codebook_size": 64}) as writer:
        writer.add(ukbench_paths[:4])
    flip_bit(asmk / "codebook.npy", (asmk / "codebook.npy").stat().st_size - 100)
    report = check(asmk)
    assert len(report.problems) == 1 and "codebook.npy: differs from what was written" in report.problems[0] and \
        "searches would use wrong words; train it again (Database.train_codebook)" in report.problems[0]
    with Database(asmk) as writer:
        writer.train_codebook()
    assert check(asmk).ok

    given = tmp_path / "given"
    with Database(given, representation="asmk", feature_config=SMALL, codebook=asmk / "codebook.npy") as writer:
        writer.add(ukbench_paths[:2])
    assert check(given).ok
    flip_bit(given / "codebook.npy", (given / "codebook.npy").stat().st_size - 100)
    assert "it was given when the database was made: make the database again with that file" in \
        check(given).problems[0]


def test_an_unreadable_faiss_index_is_a_note_as_it_is_rebuilt(built, tmp_path):
    db = copy_of(built, tmp_path)
    (db / "shortlist.faiss").write_bytes(b"\0" * 64)
    report = check(db)
    assert report.ok and len(report.notes) == 1 and "shortlist.faiss: unreadable" in report.notes[0]


def test_a_check_beside_a_writer_sees_a_consistent_database(built, tmp_path, ukbench_paths):
    """Each check reads one snapshot: images the writer commits meanwhile, and the array bytes it appends
    ahead of committing them, are never half seen."""
    db = copy_of(built, tmp_path)
    with Database(db) as writer:
        writer.remove(list(range(3, 9)))
    writer_script = ("import sys\nfrom localmatch.database import Database\n"
                     "with Database(sys.argv[1]) as db:\n"
                     "    for path in sys.argv[2:]:\n"
                     "        db.add([path])\n"
                     "        db.remove([1]) if path == sys.argv[3] else None\n")
    child = subprocess.Popen([sys.executable, "-c", writer_script, str(db), *ukbench_paths[2:]])
    while child.poll() is None:
        report = check(db)
        assert report.ok, report
    assert child.returncode == 0
    final = check(db)
    assert final.ok and final.images == len(ukbench_paths) - 1 == final.checksummed


def test_text_that_is_not_utf8_and_a_null_are_reported_not_raised(built, tmp_path):
    db = copy_of(built, tmp_path)
    execute(db, "PRAGMA writable_schema=ON",  # lifts NOT NULL, so that a damaged record's NULL can be stored
            "UPDATE sqlite_schema SET sql = replace(sql, 'working_scale REAL NOT NULL', 'working_scale REAL') "
            "WHERE name = 'images'")
    execute(db, "UPDATE images SET path = CAST(x'2f6eff2e6a7067' AS TEXT) WHERE id = 2",  # "/n\xff.jpg"
            "UPDATE images SET working_scale = NULL WHERE id = 3")
    report = check(db)
    assert [(d.image_id, d.path, d.reason) for d in report.damaged] == [
        (2, "/n\ufffd.jpg", "its path is not UTF-8 text (damaged bytes)"),
        (3, record(db, 3)["path"], "its record holds NULL where a value must be")]
    json.dumps(report.to_dict())  # printable as it is

    with Database(db) as opened:  # the NULL's image is indexed again; the other's file is not known
        repair = opened.repair()
        assert [r.image_id for r in repair.repaired] == [3] and not repair.ok
        assert [(d.image_id, d.reason.split("; ")[-1]) for d in repair.left] == [
            (2, "not repaired: its stored path is damaged, so its file is not known")]
        assert [d.image_id for d in opened.check().damaged] == [2]
    json.dumps(repair.to_dict())


def test_a_codebook_for_descriptors_of_another_size_is_a_problem(tmp_path, ukbench_paths):
    db = tmp_path / "asmk"
    with Database(db, representation="asmk", feature_config=SMALL, asmk_config={"codebook_size": 64}) as writer:
        writer.add(ukbench_paths[:2])
    np.save(db / "codebook.npy", np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32))
    report = check(db)
    assert report.problems == [f"{db / 'codebook.npy'}: 32-d words for 128-d descriptors"]


def test_a_saved_index_replaced_by_a_writer_while_it_is_read_is_read_again(built, tmp_path, monkeypatch):
    """A writer replaces the file, then records its CRC: a reading that began before that compares the new
    file with the old CRC, and must not call the new file damaged."""
    db = copy_of(built, tmp_path)
    path = db / "shortlist.faiss"
    read: list[int] = []

    def a_writer_replaces_it_meanwhile(file):
        if not read:
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0x10  # the writer's new index
            path.with_suffix(".new").write_bytes(data)
            os.replace(path.with_suffix(".new"), path)
            execute(db, f"UPDATE meta SET value = '{zlib.crc32(data)}' WHERE key = 'index_crc32'")
        read.append(file_crc32(file))
        return read[-1]

    monkeypatch.setattr(check_module, "file_crc32", a_writer_replaces_it_meanwhile)
    report = check(db)
    assert report.ok and len(read) == 2 and read[0] == read[1], report.problems


def test_repair_keeps_given_region_boxes_and_saves_the_inverted_file(tmp_path, ukbench_paths):
    db = tmp_path / "rasmk"
    boxes = np.array([[0, 0, 639, 479], [100, 50, 400, 300]], np.float32)
    with Database(db, representation="rasmk", feature_config=SMALL, asmk_config={"codebook_size": 64}) as writer:
        writer.add(ukbench_paths[:4], boxes={ukbench_paths[1]: boxes})
    flip_bit(db / "descriptors.i8", record(db, 2)["feature_row"] * 128 + 7)
    with Database(db) as opened:
        assert [(r.image_id, r.new_id) for r in opened.repair().repaired] == [(2, 5)]
        assert np.array_equal(opened._boxes_of(5), boxes)
    assert list(InvertedFile.load(db / "asmk.npz").image_ids()) == [1, 3, 4, 5]  # saved as it is now
