"""The command line: verify (text, JSON, picture), demo, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from conftest import warp
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
                        ([a, a, "--features", "surf"], "valid names: sift"),
                        ([a, a, "--backend", "x"], "opencv, pycolmap")]:
        assert main(["verify", *args]) == 2
        assert words in capsys.readouterr().err


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
