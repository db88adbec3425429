"""The command line: verify (text, JSON, picture), demo, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from conftest import warp
from localmatch import load_image
from localmatch.cli import main
from test_verify import H_TRUE


@pytest.fixture(scope="module")
def pair(tmp_path_factory, astronaut):
    folder = tmp_path_factory.mktemp("pair")
    a, b, c = folder / "a.png", folder / "b.jpg", folder / "c.png"
    PIL.Image.fromarray(astronaut.pixels).save(a)
    PIL.Image.fromarray(warp(astronaut, H_TRUE, (469, 437)).pixels).save(b, quality=92)
    PIL.Image.fromarray(np.full((50, 60, 3), 128, np.uint8)).save(c)
    return str(a), str(b), str(c)


def test_verify_json(pair, capsys):
    a, b, _ = pair
    assert main(["verify", a, b, "--json", "--geometry", "homography"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"image_a", "image_b", "num_matches", "num_inliers", "geometry", "matrix", "is_match", "score"} <= set(out)
    assert out["image_a"] == a and out["image_b"] == b and out["is_match"] is True
    assert out["geometry"] == "homography" and np.array(out["matrix"]).shape == (3, 3)


def test_no_match_still_exits_zero(pair, capsys):
    a, _, c = pair
    assert main(["verify", a, c, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["is_match"] is False and out["geometry"] is None and out["matrix"] is None


def test_text_output_and_draw(pair, tmp_path, capsys):
    a, b, _ = pair
    picture = tmp_path / "m.png"
    assert main(["verify", a, b, "--draw", str(picture)]) == 0
    assert "MATCH" in capsys.readouterr().out
    drawn = np.asarray(PIL.Image.open(picture))
    assert drawn.shape[0] == 512 and drawn.shape[1] > 512 + 469 * 512 / 437 - 2


def test_bad_input_exits_2_with_the_reason(pair, tmp_path, capsys):
    a, _, _ = pair
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really")
    for args, words in [([a, str(tmp_path / "missing.png")], "no such file"), ([a, str(broken)], "broken.jpg"),
                        ([a, a, "--features", "surf"], "valid names: aliked, asift, delf, disk, keynet-affnet, sift, xfeat"),
                        ([a, a, "--backend", "x"], "opencv, pycolmap")]:
        assert main(["verify", *args]) == 2
        assert words in capsys.readouterr().err


def test_stage_options_reach_extraction_matching_and_ransac(pair, tmp_path, capsys):
    """``--feature-option``, ``--matcher-option``, ``--ransac-option``, ``--asmk-option KEY=VALUE`` set fields
    of the stages' configs (verify, index build, search); a wrong key or value ends with the reason (exit 2)."""
    a, b, _ = pair

    def verified(*options):
        assert main(["verify", a, b, "--json", "--geometry", "homography", *options]) == 0
        return json.loads(capsys.readouterr().out)

    default = verified()
    assert default["num_matches"] > 300
    assert verified("--feature-option", "max_features=150")["num_matches"] <= 150
    assert verified("--matcher-option", "ratio=0.5")["num_matches"] < default["num_matches"]
    strict = verified("--ransac-option", "threshold=0.25", "--ransac-option", "max_iterations=500")
    assert 15 <= strict["num_inliers"] < default["num_inliers"]
    for option, words in [("--feature-option=max_feature=5", "valid options: max_features"),
                          ("--matcher-option=ratio=2", "NNConfig.ratio must be a number in (0, 1]"),
                          ("--ransac-option=threshold=null", "RansacConfig.threshold must be a number > 0")]:
        assert main(["verify", a, b, option]) == 2
        assert words in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's usage error: exit status 2
        main(["verify", a, b, "--feature-option", "max_features"])
    assert "expected KEY=VALUE" in capsys.readouterr().err

    db = tmp_path / "db"
    assert main(["index", "build", str(db), a, b, "-q", "--feature-option", "max_features=200",
                 "--feature-option", "upright=true"]) == 0
    from localmatch.database import Database

    with Database(db, readonly=True) as opened:
        assert opened.feature_config.max_features == 200 and opened.feature_config.upright is True
        assert opened.info()["features"] <= 400
    assert main(["search", str(db), b, "-k", "1", "--json", "--matcher-option", "ratio=0.9",
                 "--ransac-option", "threshold=2"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["results"][0]["path"] == b
    assert main(["index", "build", str(tmp_path / "bad"), a, "--feature-option", "bogus=1"]) == 2
    assert "unknown SiftConfig option(s) bogus" in capsys.readouterr().err and not (tmp_path / "bad").exists()

    rasmk = tmp_path / "rasmk"
    assert main(["index", "build", str(rasmk), a, b, "-q", "--representation", "rasmk", "--codebook-size", "32",
                 "--asmk-option", "regions=clusters", "--asmk-option", "idf=true",
                 "--asmk-option", "codebook_size=64"]) == 0  # --codebook-size wins
    with Database(rasmk, readonly=True) as opened:
        assert (opened.asmk_config.regions, opened.asmk_config.idf, opened.asmk_config.codebook_size) == \
            ("clusters", True, 32)
    assert main(["index", "build", str(tmp_path / "bad"), a, "--representation", "rasmk",
                 "--asmk-option", "regions=boxes"]) == 2
    assert "valid names: clusters, full, grid" in capsys.readouterr().err and not (tmp_path / "bad").exists()


class Called(Exception):
    """Raised by a stand-in for the library function a command calls, once it has what it was called with."""


def stand_in(calls: list):
    def record(*args, **kwargs):
        calls.append(kwargs)
        raise Called

    return record


class StandInDatabase:
    """What ``_open_database`` gives the commands: ``add`` and ``search`` record their options and stop."""

    def __init__(self, calls: list) -> None:
        self.add = self.search = stand_in(calls)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False


def test_every_command_hands_its_options_to_the_library(pair, tmp_path, monkeypatch):
    """Each option reaches the call that does the work, with the value given (not the call's default)."""
    import localmatch.dedup
    import localmatch.evaluate
    import localmatch.pairs
    from localmatch import cli

    a, b, _ = pair
    calls: list = []
    stages = ["--feature-option", "max_features=500", "--matcher-option", "ratio=0.8", "--ransac-option", "threshold=2"]
    pipeline = {"features": "rootsift", "matcher": "nn", "geometry": "homography", "backend": "pycolmap",
                "min_inliers": 30, "fallback_features": "asift", "refine": True,
                "feature_config": {"max_features": 500}, "matcher_config": {"ratio": 0.8}, "ransac": {"threshold": 2}}
    pipeline_options = ["--features", "rootsift", "--matcher", "nn", "--geometry", "homography", "--backend",
                        "pycolmap", "--min-inliers", "30", "--fallback-features", "asift", "--refine", *stages]
    monkeypatch.setattr(cli, "verify", stand_in(calls))
    with pytest.raises(Called):
        main(["verify", a, b, *pipeline_options])
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text(f"{a} {b}\n")
    monkeypatch.setattr(localmatch.pairs, "verify_pairs", stand_in(calls))
    with pytest.raises(Called):
        main(["verify", "--pairs", str(pairs_file), *pipeline_options])
    assert calls == [pipeline, pipeline]
    calls.clear()

    codebook = tmp_path / "words.npy"
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({a: [[0, 0, 10, 10]]}))
    monkeypatch.setattr(cli, "_open_database",
                        lambda path, **settings: calls.append(settings) or StandInDatabase(calls))
    with pytest.raises(Called):
        main(["index", "build", str(tmp_path / "db"), a, "--features", "rootsift", "--index", "ivf", "--whiten", "64",
              "--representation", "rasmk", "--codebook-size", "64", "--codebook", str(codebook), "--feature-option",
              "max_features=500", "--asmk-option", "idf=true", "--boxes", str(boxes), "-q"])
    assert calls.pop(0) == {"readonly": False, "must_exist": False, "features": "rootsift", "index": "ivf",
                            "whitening": 64, "representation": "rasmk",
                            "asmk_config": {"idf": True, "codebook_size": 64}, "codebook": str(codebook),
                            "feature_config": {"max_features": 500}}
    assert calls.pop(0) == {"progress": False, "boxes": {a: [[0, 0, 10, 10]]}}
    with pytest.raises(Called):
        main(["index", "add", str(tmp_path / "db"), a, "--boxes", str(boxes)])
    assert calls == [{"readonly": False}, {"progress": None, "boxes": {a: [[0, 0, 10, 10]]}}]
    calls.clear()

    monkeypatch.setattr(cli, "_open_database", lambda path, **settings: StandInDatabase(calls))
    rerank = ["--shortlist", "7", "--no-rerank", "--matcher", "lightglue", "--matcher-top", "3", "--geometry",
              "homography", *stages[2:]]
    with pytest.raises(Called):
        main(["search", "db", a, "-k", "4", "--min-inliers", "25", "--box", "1,2,30,40", *rerank])
    assert calls.pop() == {"k": 4, "shortlist": 7, "rerank": False, "matcher": "lightglue", "matcher_top": 3,
                           "geometry": "homography", "min_inliers": 25, "matcher_config": {"ratio": 0.8},
                           "ransac": {"threshold": 2}, "box": (1.0, 2.0, 30.0, 40.0)}

    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"queries": [{"query": a, "positives": [b]}]}))
    monkeypatch.setattr(localmatch.evaluate, "load_ground_truth", stand_in(calls))
    with pytest.raises(Called):
        main(["eval", "db", str(truth), "--protocol", "hard", "--images-root", "jpg"])
    assert calls.pop() == {"protocol": "hard", "images_root": "jpg"}
    monkeypatch.undo()  # the real ground-truth reader again
    monkeypatch.setattr(cli, "_open_database", lambda path, **settings: StandInDatabase([]))
    monkeypatch.setattr(localmatch.evaluate, "evaluate", stand_in(calls))
    with pytest.raises(Called):
        main(["eval", "db", str(truth), "--keep-query", "--ukbench", *rerank])
    assert calls.pop() == {"rerank": False, "shortlist": 7, "exclude_query": False, "ukbench": True,
                           "matcher": "lightglue", "matcher_top": 3, "geometry": "homography",
                           "matcher_config": {"ratio": 0.8}, "ransac": {"threshold": 2}}

    monkeypatch.setattr(localmatch.dedup, "find_duplicates", stand_in(calls))
    with pytest.raises(Called):
        main(["dedup", a, b, "--db", str(tmp_path / "kept"), "--shortlist", "5", "--min-inliers", "40", "--no-mirror",
              "-q"])
    assert calls.pop() == {"database": str(tmp_path / "kept"), "shortlist": 5, "mirror": False, "min_inliers": 40,
                           "progress": False}


def test_option_values_are_read_as_json_else_as_text():
    from localmatch.cli import _key_value

    assert _key_value("max_features=4096") == ("max_features", 4096)
    assert _key_value("ratio=0.85") == ("ratio", 0.85)
    assert _key_value("upright=true") == ("upright", True) and _key_value("max_side=null") == ("max_side", None)
    assert _key_value("scales=[0.7071, 1]") == ("scales", (0.7071, 1))
    assert _key_value("device=cpu") == ("device", "cpu") and _key_value(" half = false") == ("half", False)


def test_a_named_input_that_does_not_exist_stops_index_and_dedup_before_any_work(pair, tmp_path, capsys):
    """A typo used to create an empty database (which `index build` then refused to make again) or find no
    duplicates, with exit status 0."""
    a = pair[0]
    db, typo = str(tmp_path / "db"), str(tmp_path / "phtos")
    assert main(["index", "build", db, a, typo]) == 2
    assert f"{typo}: no such file or folder" in capsys.readouterr().err and not os.path.exists(db)
    assert main(["index", "build", db, a, "-q"]) == 0
    assert main(["index", "add", db, typo]) == 2 and main(["dedup", a, typo, "-q"]) == 2
    assert capsys.readouterr().err.count(f"{typo}: no such file or folder") == 2


def test_a_folder_without_image_files_is_warned_of_and_the_rest_goes_on(pair, tmp_path, capsys):
    a = pair[0]
    texts = tmp_path / "texts"
    (texts / ".hidden").mkdir(parents=True)
    (texts / "notes.txt").write_text("no image")
    (texts / ".hidden" / "a.jpg").write_bytes(Path(a).read_bytes())  # hidden: left out under a folder
    db = str(tmp_path / "db")
    assert main(["index", "build", db, a, str(texts), "-q"]) == 0
    assert capsys.readouterr().err == (f"localmatch: warning: {texts}: no image files in this folder or below (file "
                                       "names ending .jpg, .jpeg, .jpe, .jfif, .png, .ppm, .pgm, .pbm, .pnm, .tif, "
                                       ".tiff, .webp, .bmp, .gif, .avif, .heic, .heif, .jp2, .j2k, any case; hidden "
                                       "ones left out)\n")
    assert main(["index", "list", db, "--json"]) == 0 and len(json.loads(capsys.readouterr().out)) == 1
    (tmp_path / "photos" / "2026").mkdir(parents=True)
    (tmp_path / "photos" / "2026" / "b.jpg").write_bytes(Path(pair[1]).read_bytes())
    assert main(["index", "add", db, str(tmp_path / "photos"), "-q"]) == 0  # images below it: no warning
    assert capsys.readouterr().err == ""


def test_version(capsys):
    import localmatch

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"localmatch {localmatch.__version__}"
    from importlib.metadata import version

    assert version("localmatch") == localmatch.__version__  # pyproject.toml and the package agree


def test_demo_runs(capsys):
    assert main(["demo"]) == 0
    assert "all verdicts as expected" in capsys.readouterr().out


def test_console_script_is_installed(pair):
    a, b, _ = pair
    script = shutil.which("localmatch") or str(Path(sys.executable).parent / "localmatch")
    done = subprocess.run([script, "verify", a, b, "--json"], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["is_match"] is True
    bad = subprocess.run([script, "verify", a, a + ".missing"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no such file" in bad.stderr


def test_a_closed_output_pipe_ends_quietly():
    """`localmatch ... | head` must not end in a traceback or an error message once head has gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    done = subprocess.run([sys.executable, "-m", "localmatch.cli", "demo"], stdout=write_end,
                          stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    assert done.returncode == 141 and done.stderr == ""


def test_index_search_and_eval_commands(tmp_path, capsys):
    from conftest import shared_data

    images = sorted((shared_data("ukbench_subset") / "images").glob("*.jpg"))[:8]
    paths = [str(p) for p in images]
    db = str(tmp_path / "db")
    assert main(["index", "build", db, *paths[:6], "-q"]) == 0
    assert main(["index", "build", db, *paths]) == 2  # exists already
    assert "already exists" in capsys.readouterr().err
    assert main(["index", "add", db, *paths]) == 0
    assert "added 2, already indexed 6" in capsys.readouterr().out
    assert main(["index", "info", db, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["images"] == 8 and info["features"] > 0 and info["bytes_per_image"] > 0

    assert main(["search", db, paths[1], paths[6], "-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["query"] for o in out] == [paths[1], paths[6]]
    first = out[0]["results"]
    assert len(first) == 3 and first[0]["path"] == paths[1] and first[0]["rank"] == 1
    assert {"rank", "path", "score", "global_score", "num_inliers"} <= set(first[0])
    assert {r["path"] for r in first} <= set(paths[:4])
    queries = tmp_path / "queries"  # a folder of queries: each image in it (was: "is a directory")
    queries.mkdir()
    for p in paths[1], paths[6]:
        shutil.copy(p, queries)
    assert main(["search", db, str(queries), "-k", "1", "--json"]) == 0
    assert [o["results"][0]["path"] for o in json.loads(capsys.readouterr().out)] == [paths[1], paths[6]]
    (queries / "empty").mkdir()
    assert main(["search", db, str(queries / "empty")]) == 2
    assert "empty: no image files to search with" in capsys.readouterr().err
    # --box: one query, searched with that part of its image; the box is echoed in the JSON
    assert main(["search", db, paths[1], "-k", "1", "--json", "--box", "100,80,540,400",
                 "--draw", str(tmp_path / "boxed.png")]) == 0
    boxed = json.loads(capsys.readouterr().out)[0]
    assert boxed["box"] == [100, 80, 540, 400] and boxed["results"][0]["path"] == paths[1]
    strip = load_image(tmp_path / "boxed.png")  # the query tile shows the 440 x 320 box, 160 px high
    assert strip.height == 160 + 28 and strip.width == 220 + 8 + round(640 * 160 / 480)
    assert main(["search", db, str(queries), "--box", "100,80,540,400"]) == 2
    assert "--box crops one query image, and 2 were given" in capsys.readouterr().err
    assert main(["search", db, paths[1], "--json", "--box", "700,0,800,100"]) == 2
    assert json.loads(capsys.readouterr().out)[0]["error"] == "the box [700, 0, 800, 100] holds no pixel of the 640x480 image"
    with pytest.raises(SystemExit):  # argparse's usage error: exit status 2
        main(["search", db, paths[1], "--box", "1,2,3"])
    assert "expected X0,Y0,X1,Y1" in capsys.readouterr().err
    assert main(["search", db, paths[1], "-k", "1", "--json", "--matcher", "nn", "--matcher-top", "all"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["results"][0]["path"] == paths[1]
    with pytest.raises(SystemExit):
        main(["search", db, paths[1], "--matcher-top", "0"])
    assert "expected a whole number >= 1 or 'all', not '0'" in capsys.readouterr().err

    assert main(["index", "list", db, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [image["path"] for image in listed] == paths and len({image["id"] for image in listed}) == 8
    assert main(["index", "remove", db, paths[0]]) == 0
    assert "removed 1" in capsys.readouterr().out
    # what names no image is reported, and the rest is still removed
    assert main(["index", "remove", db, "not/added.jpg", paths[0], str(listed[2]["id"])]) == 2
    out, err = capsys.readouterr()
    assert "removed 1" in out and "'not/added.jpg'" in err and repr(paths[0]) in err and "index list" in err
    assert main(["index", "list", db]) == 0
    kept = listed[1:2] + listed[3:]
    assert capsys.readouterr().out.splitlines() == [f"{image['id']}\t{image['path']}" for image in kept]
    assert main(["search", db, paths[1], "--no-rerank", "--json"]) == 0
    assert paths[0] not in [r["path"] for r in json.loads(capsys.readouterr().out)[0]["results"]]

    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"queries": [{"query": p, "positives": [q for q in paths[4:8] if q != p]}
                                          for p in paths[4:8]]}))
    assert main(["eval", db, str(gt), "--json", "--ukbench", "--matcher", "nn", "--matcher-top", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mAP"] > 0.9 and report["queries"] == 4 and report["N-S"] > 3 and report["latency_ms"] > 0
    assert report["missing_positives"] == 0
    gt.write_text(json.dumps({"queries": [{"query": paths[4], "positives": [paths[5], "./" + paths[6]]}]}))
    assert main(["eval", db, str(gt), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["missing_positives"] == 1  # and a warning says which
    gt.write_text(json.dumps({"queries": [{"query": paths[4], "positives": [paths[5]], "bbox": [5000, 0, 6000, 10]}]}))
    assert main(["eval", db, str(gt)]) == 2
    assert f"{paths[4]}: the box [5000, 0, 6000, 10] holds no pixel of the 640x480 image" in capsys.readouterr().err
    gt.write_text(json.dumps({"queries": [{"query": paths[4], "positives": paths[5]}]}))
    assert main(["eval", db, str(gt)]) == 2
    assert f"{gt}: queries[0]: \"positives\" must be a list" in capsys.readouterr().err

    assert main(["search", str(tmp_path / "none"), paths[0]]) == 2
    assert "no localmatch database" in capsys.readouterr().err
    assert main(["search", db, str(tmp_path / "missing.jpg")]) == 2
    capsys.readouterr()
    # one unreadable query among several: it is reported and the others are still searched
    assert main(["search", db, str(tmp_path / "missing.jpg"), paths[1], "-k", "1", "--json"]) == 2
    out, err = capsys.readouterr()
    missing, found = json.loads(out)
    assert missing == {"query": str(tmp_path / "missing.jpg"), "error": "no such file", "results": []}
    assert found["results"][0]["path"] == paths[1] and "missing.jpg: no such file" in err
    capsys.readouterr()
    # bad option values end with the reason (exit 2), not a traceback, nor quietly as another setting
    assert main(["search", db, paths[1], "-k", "0"]) == 2
    assert "k (results per query) must be a whole number >= 1, not 0" in capsys.readouterr().err
    assert main(["search", db, paths[1], "--min-inliers", "0"]) == 2
    assert "min_inliers must be a whole number >= 1, not 0" in capsys.readouterr().err
    assert main(["index", "build", str(tmp_path / "asmk"), paths[0], "--representation", "asmk",
                 "--codebook-size", "0"]) == 2  # 0 was taken for "not given": 1024 words
    assert "AsmkConfig.codebook_size must be a whole number >= 1, not 0" in capsys.readouterr().err
    assert not (tmp_path / "asmk").exists()
