"""Retrieval metrics on hand-checked rankings, and the ground-truth readers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from localmatch.errors import GroundTruthError
from localmatch.evaluate import (average_precision, ground_truth_from_folders, load_ground_truth, ndcg_at_k,
                                 precision_at_k, recall_at_k, ukbench_ns)


def test_average_precision_matches_the_revisited_definition():
    # Positives at ranks 1 and 3 of 2 positives: trapezoids (1+1)/2*0.5 + (0.5+2/3)/2*0.5
    assert average_precision(["a", "x", "b"], {"a", "b"}) == pytest.approx(0.5 + (0.5 + 2 / 3) / 4)
    assert average_precision(["a", "b", "x"], {"a", "b"}) == pytest.approx(1.0)
    assert average_precision(["x", "y"], {"a"}) == 0.0  # never retrieved
    # junk is removed before scoring
    assert average_precision(["j", "a", "b"], {"a", "b"}, junk={"j"}) == pytest.approx(1.0)
    assert np.isnan(average_precision(["a"], set()))


def test_precision_recall_ndcg_and_ns():
    ranked = ["x", "a", "j", "b", "y"]
    assert precision_at_k(ranked, {"a", "b"}, 2) == 0.5
    assert precision_at_k(ranked, {"a", "b"}, 3, junk={"j"}) == pytest.approx(2 / 3)
    assert precision_at_k(ranked, {"a", "b"}, 10) == 0.2  # a list shorter than k: the missing places are misses
    assert recall_at_k(ranked, {"a"}, 1) == 0.0 and recall_at_k(ranked, {"a"}, 2) == 1.0
    assert ndcg_at_k(["a", "b"], {"a", "b"}, 2) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "a"], {"a"}, 2) == pytest.approx(1 / np.log2(3))
    assert ukbench_ns(["q", "a", "x", "b", "c"], {"q", "a", "b", "c"}) == 3.0
    # without positives a query has no precision, recall or NDCG to speak of
    assert all(np.isnan(metric(ranked, set(), 2)) for metric in (precision_at_k, recall_at_k, ndcg_at_k))


def test_json_ground_truth_and_folders(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"queries": [{"query": "q.jpg", "positives": ["a.jpg"], "junk": ["j.jpg"],
                                             "bbox": [1, 2, 30, 40]}, {"query": "r.jpg", "positives": []}]}))
    truth = load_ground_truth(path)
    assert truth[0].positives == {"a.jpg"} and truth[0].junk == {"j.jpg"} and truth[0].bbox == (1, 2, 30, 40)
    assert truth[1].junk == frozenset() and truth[1].bbox is None
    folders = ground_truth_from_folders(["s1/a.jpg", "s1/b.jpg", "s2/c.jpg"])
    assert folders[0].positives == {"s1/b.jpg"} and folders[2].positives == frozenset()
    with pytest.raises(GroundTruthError, match="pickle"):
        load_ground_truth(tmp_path / "gnd_roxford5k.pkl")


def test_revisited_mat_protocols(tmp_path):
    from scipy.io import savemat

    gnd = np.zeros((1,), dtype=[("easy", "O"), ("hard", "O"), ("junk", "O"), ("bbx", "O")])
    gnd[0] = (np.array([0, 1]), np.array([2]), np.array([3]), np.array([10.0, 20.0, 110.0, 220.0]))
    savemat(tmp_path / "gnd_test.mat", {"imlist": np.array(["i0", "i1", "i2", "i3", "i4"], dtype=object),
                                        "qimlist": np.array(["q0"], dtype=object), "gnd": gnd})
    path = tmp_path / "gnd_test.mat"
    easy = load_ground_truth(path, protocol="easy", images_root="r")[0]
    medium = load_ground_truth(path, protocol="medium", images_root="r")[0]
    hard = load_ground_truth(path, protocol="hard", images_root="r")[0]
    assert easy.query == "r/q0.jpg" and easy.bbox == (10.0, 20.0, 110.0, 220.0)
    assert easy.positives == {"r/i0.jpg", "r/i1.jpg"} and easy.junk == {"r/i2.jpg", "r/i3.jpg"}
    assert medium.positives == {"r/i0.jpg", "r/i1.jpg", "r/i2.jpg"} and medium.junk == {"r/i3.jpg"}
    assert hard.positives == {"r/i2.jpg"} and hard.junk == {"r/i0.jpg", "r/i1.jpg", "r/i3.jpg"}


@pytest.mark.parametrize("text, reason", [
    ("{bad", "not JSON"),
    ("[1, 2]", '"queries"'),
    ("{}", '"queries"'),
    ('{"queries": [3]}', r"queries\[0\]: expected an object"),
    ('{"queries": [{"positives": []}]}', r'queries\[0\]: "query"'),
    ('{"queries": [{"query": "q.jpg", "positives": "a.jpg"}]}', '"positives" must be a list'),
    ('{"queries": [{"query": "q.jpg", "positives": [], "junk": [1]}]}', '"junk" must be a list'),
    ('{"queries": [{"query": "q.jpg", "positives": [], "bbox": [1, 2, 3]}]}', '"bbox"'),
    ('{"queries": [{"query": "q.jpg", "positives": [], "bbox": [30, 2, 10, 40]}]}', "x0 < x1 and y0 < y1"),
])
def test_malformed_json_ground_truth_names_the_file_and_the_reason(tmp_path, text, reason):
    path = tmp_path / "truth.json"
    path.write_text(text)
    with pytest.raises(GroundTruthError, match=reason) as raised:
        load_ground_truth(path)
    assert str(path) in str(raised.value)
    with pytest.raises(GroundTruthError, match="cannot read"):
        load_ground_truth(tmp_path / "missing.json")


def _write_revisited(path, easy=(0, 1)):
    from scipy.io import savemat

    gnd = np.zeros((1,), dtype=[("easy", "O"), ("hard", "O"), ("junk", "O"), ("bbx", "O")])
    gnd[0] = (np.array(easy), np.array([2]), np.array([3]), np.array([10.0, 20.0, 110.0, 220.0]))
    savemat(path, {"imlist": np.array(["i0", "i1", "i2", "i3", "i4"], dtype=object),
                   "qimlist": np.array(["q0"], dtype=object), "gnd": gnd})


def test_corrupt_or_foreign_mat_files_raise_ground_truth_errors(tmp_path):
    not_mat = tmp_path / "not.mat"
    not_mat.write_bytes(b"garbage")
    with pytest.raises(GroundTruthError, match="not a MATLAB .mat file"):
        load_ground_truth(not_mat)
    other = tmp_path / "other.mat"
    from scipy.io import savemat
    savemat(other, {"x": np.eye(2)})
    with pytest.raises(GroundTruthError, match="no imlist, qimlist, gnd"):
        load_ground_truth(other)
    out_of_range = tmp_path / "range.mat"
    _write_revisited(out_of_range, easy=(0, 9))
    with pytest.raises(GroundTruthError, match="gnd.easy holds indices that are not in imlist"):
        load_ground_truth(out_of_range)
    # One changed byte (in the tag of an element of imlist): scipy 1.17's compiled reader dies with
    # SIGSEGV on this file (73 of 2472 such one-byte changes do). It is read in a child process, so this
    # process gets an error instead of crashing.
    corrupt = tmp_path / "corrupt.mat"
    _write_revisited(corrupt)
    data = bytearray(corrupt.read_bytes())
    data[232] = 0xFE
    corrupt.write_bytes(bytes(data))
    with pytest.raises(GroundTruthError, match=str(corrupt.name)):
        load_ground_truth(corrupt)


def test_revisited_mat_fields_as_stored_one_image_no_boxes_and_bad_values(tmp_path):
    """MATLAB squeezes a list of one name to a scalar and a missing field away: both read as lists; box
    coordinates keep their fractions; a field of text, an unreadable file and a non-MAT file are named,
    each with its own reason (not a child's exit status)."""
    from scipy.io import savemat

    from localmatch.matfile import read_revisited_mat

    no_boxes = np.zeros((1,), dtype=[("easy", "O"), ("hard", "O"), ("junk", "O")])
    no_boxes[0] = (np.array([0]), np.array([], dtype=float), np.array([], dtype=float))
    savemat(tmp_path / "one.mat", {"imlist": np.array(["i0"], dtype=object), "qimlist": np.array(["q0"], dtype=object),
                                   "gnd": no_boxes})
    fields = read_revisited_mat(tmp_path / "one.mat")
    assert fields == {"imlist": ["i0"], "qimlist": ["q0"],
                      "gnd": [{"easy": [0.0], "hard": [], "junk": [], "bbx": None}]}
    assert load_ground_truth(tmp_path / "one.mat", images_root="r")[0].bbox is None
    boxes = np.zeros((1,), dtype=[("easy", "O"), ("hard", "O"), ("junk", "O"), ("bbx", "O")])
    boxes[0] = (np.array([0]), np.array([1]), np.array([], dtype=float), np.array([10.5, 20.25, 110.0, 220.75]))
    savemat(tmp_path / "boxes.mat", {"imlist": np.array(["i0", "i1"], dtype=object),
                                     "qimlist": np.array(["q0"], dtype=object), "gnd": boxes})
    assert read_revisited_mat(tmp_path / "boxes.mat")["gnd"][0]["bbx"] == [10.5, 20.25, 110.0, 220.75]
    text = np.zeros((1,), dtype=[("easy", "O"), ("hard", "O"), ("junk", "O")])
    text[0] = (np.array(["i0"], dtype=object), np.array([1]), np.array([2]))
    savemat(tmp_path / "text.mat", {"imlist": np.array(["i0", "i1", "i2"], dtype=object),
                                    "qimlist": np.array(["q0"], dtype=object), "gnd": text})
    for name, reason in (("text.mat", "gnd.easy holds .* not numbers"), ("missing.mat", "cannot read"),
                         ("garbage.mat", "not a MATLAB .mat file")):
        if name == "garbage.mat":
            (tmp_path / name).write_bytes(b"garbage")
        with pytest.raises(GroundTruthError, match=reason) as raised:
            read_revisited_mat(tmp_path / name)
        assert str(tmp_path / name) in str(raised.value) and "exit status" not in str(raised.value)


def test_a_crashing_mat_reader_is_reported_not_fatal(tmp_path, monkeypatch):
    import signal
    import subprocess

    from localmatch import matfile

    crashed = subprocess.CompletedProcess([], -signal.SIGSEGV, stdout="", stderr="")
    monkeypatch.setattr(matfile.subprocess, "run", lambda *args, **kwargs: crashed)
    with pytest.raises(GroundTruthError, match=r"crashed on it \(SIGSEGV\); the file is corrupt"):
        load_ground_truth(tmp_path / "gnd_x.mat")


def test_evaluate_checks_its_cut_offs_and_flags_before_any_search(tmp_path):
    """ks=(0,) divided by zero, ks=(-1,) reported a precision of -1, ks=(1.5,) failed in slicing."""
    from localmatch.config import ConfigError
    from localmatch.database import Database
    from localmatch.evaluate import QueryTruth, evaluate

    truth = [QueryTruth(str(tmp_path / "never-read.jpg"), ["x.jpg"])]
    with Database(tmp_path / "db") as db:
        for options, message in (({"ks": (0,)}, "ks .* not 0"), ({"ks": (5, -1)}, "ks .* not -1"),
                                 ({"ks": (1.5,)}, "ks .* not 1.5"), ({"ukbench": "yes"}, "ukbench must be True")):
            with pytest.raises(ConfigError, match=message):
                evaluate(db, truth, **options)
        # a query that is not a file stopped the evaluation only when its turn came, after the others' searches
        db.search = lambda *args, **kwargs: pytest.fail("searched before the queries were checked")
        with pytest.raises(GroundTruthError, match="1 of the 1 queries are not files, for example .*never-read.jpg"):
            evaluate(db, truth)


def test_a_query_without_positives_is_left_out_of_the_means(tmp_path):
    """Revisited Oxford's hard protocol, for one, leaves some queries with no positive: their AP is
    undefined, and the mean is over the others (a plain mean made every figure NaN)."""
    from localmatch.database import Database
    from localmatch.demo import write_demo_collection
    from localmatch.evaluate import QueryTruth, evaluate

    paths = {Path(p).name: p for p in write_demo_collection(str(tmp_path / "photos"))}
    with Database(tmp_path / "db", feature_config={"max_side": 320}) as db:
        db.add(sorted(paths.values()))
        truth = [QueryTruth(paths["coffee.jpg"], frozenset({paths["coffee_q15.jpg"]})),
                 QueryTruth(paths["rocket.jpg"], frozenset())]
        both, alone = evaluate(db, truth, rerank=False), evaluate(db, truth[:1], rerank=False)
    assert both.queries == 2 and both.mean_ap == alone.mean_ap == 1.0
    assert both.precision_at == alone.precision_at and both.recall_at == alone.recall_at
    assert both.ndcg_at == alone.ndcg_at
