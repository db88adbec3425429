"""Verifying a list of pairs: the pairs file, the feature cache, errors per pair, the CLI's --pairs."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest

import localmatch
import localmatch.io
import localmatch.pairs
from conftest import warp
from localmatch import UnknownNameError
from localmatch.cli import main
from localmatch.pairs import PairsFileError, read_pairs, verify_pairs


@pytest.fixture
def images(astronaut, coffee, tmp_path):
    """Paths of three images: astronaut, a warped copy of it, coffee; and a file that is not an image."""
    paths = {"a": tmp_path / "astronaut.png", "a2": tmp_path / "astronaut warped.png", "c": tmp_path / "coffee.png"}
    PIL.Image.fromarray(astronaut.pixels).save(paths["a"])
    H = np.array([[0.9, 0.1, 20], [-0.1, 0.9, 30], [0, 0, 1]])
    PIL.Image.fromarray(warp(astronaut, H, (480, 470)).pixels).save(paths["a2"])
    PIL.Image.fromarray(coffee.pixels).save(paths["c"])
    paths["bad"] = tmp_path / "bad.jpg"
    paths["bad"].write_bytes(b"not an image")
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture
def decodes(monkeypatch):
    """The sources decoded from files, in order."""
    decoded = []
    decode = localmatch.io._decode
    monkeypatch.setattr(localmatch.io, "_decode", lambda f, name, *args: decoded.append(name) or decode(f, name, *args))
    return decoded


def test_read_pairs_takes_tabs_spaces_comments_and_a_root(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text("# query database\na.jpg b.jpg\n\n  c d.jpg\te.jpg\n/abs/f.jpg   g.jpg  \n")
    assert read_pairs(f) == [("a.jpg", "b.jpg"), ("c d.jpg", "e.jpg"), ("/abs/f.jpg", "g.jpg")]
    assert read_pairs(f, "/images")[0] == ("/images/a.jpg", "/images/b.jpg")
    assert read_pairs(f, "/images")[2] == ("/abs/f.jpg", "/images/g.jpg")
    f.write_text("a.jpg\tb.jpg\r\n# c\r\n", encoding="utf-8-sig")  # a Windows editor's byte-order mark and CRLF
    assert read_pairs(f) == [("a.jpg", "b.jpg")]
    f.write_text("a.jpg b.jpg\na.jpg\n")
    with pytest.raises(PairsFileError, match=r"pairs.txt, line 2: expected two image paths"):
        read_pairs(f)
    f.write_text("a.jpg\t\n")  # a tab, then nothing: the second path is empty
    with pytest.raises(PairsFileError, match=r"pairs.txt, line 1: expected two image paths"):
        read_pairs(f)
    with pytest.raises(PairsFileError, match="missing.txt: cannot read"):
        read_pairs(tmp_path / "missing.txt")


def test_verify_pairs_gives_what_verify_gives_and_extracts_each_image_once(images, decodes):
    pairs = [(images["a"], images["a2"]), (images["a"], images["c"]), (images["a2"], images["c"])]
    results = list(verify_pairs(pairs))
    assert sorted(decodes) == sorted([images["a"], images["a2"], images["c"]])  # three images, not six
    assert [r.verification.is_match for r in results] == [True, False, False]
    for (a, b), r in zip(pairs, results):
        alone = localmatch.verify(a, b)
        assert (r.image_a, r.image_b, r.error) == (a, b, None)
        assert r.verification.num_inliers == alone.num_inliers
        np.testing.assert_array_equal(r.verification.points_a, alone.points_a)
    assert results[0].to_dict()["num_inliers"] == results[0].verification.num_inliers


def test_verify_pairs_cache_keeps_the_most_recent_images(images, decodes):
    pairs = [(images["a"], images["a2"]), (images["c"], images["a2"]), (images["a"], images["c"])]
    list(verify_pairs(pairs, cache_size=2))
    # a is evicted when c comes in (a2 was used more recently), so it is decoded again for the third pair
    assert sorted(decodes[:2]) == sorted([images["a"], images["a2"]])  # side by side: either order
    assert decodes[2:] == [images["c"], images["a"]]
    with pytest.raises(ValueError, match="cache_size"):
        list(verify_pairs(pairs, cache_size=1))
    # kept by last use, not by first: a, in every pair, is never evicted (first in, it would be, by c)
    decodes.clear()
    list(verify_pairs([(images["a"], images["a2"]), (images["a"], images["c"]), (images["a"], images["bad"])],
                      cache_size=2))
    assert decodes.count(images["a"]) == 1 and len(decodes) == 4


def test_verify_pairs_retries_only_pairs_that_do_not_verify(images, monkeypatch):
    retried = []
    monkeypatch.setattr(localmatch.pairs, "retry_in_stages", lambda a, b, *args, **options: retried.append(b.source))
    results = list(verify_pairs([(images["a"], images["a2"]), (images["a"], images["c"])], fallback_features="asift"))
    assert [r.verification.is_match for r in results] == [True, False] and retried == [images["c"]]


def test_verify_pairs_reports_a_bad_image_and_goes_on(images, decodes):
    pairs = [(images["bad"], images["a"]), (images["a"], images["a2"]), (images["a2"], images["bad"])]
    results = list(verify_pairs(pairs))
    assert results[0].verification is None and "bad.jpg" in results[0].error
    assert results[1].verification.is_match and results[1].error is None
    assert results[2].verification is None and "bad.jpg" in results[2].error
    assert decodes.count(images["bad"]) == 1  # its failure is cached too
    assert results[0].to_dict()["is_match"] is None


def test_verify_pairs_checks_names_before_any_work(images, decodes):
    with pytest.raises(UnknownNameError, match="features"):
        verify_pairs([(images["a"], images["c"])], features="sfit").__next__()
    with pytest.raises(UnknownNameError, match="features"):
        verify_pairs([(images["a"], images["c"])], fallback_features="asfit").__next__()
    assert decodes == []


def test_verify_pairs_with_the_asift_fallback(astronaut, tmp_path):
    from test_asift import tilted

    slanted, _ = tilted(astronaut, 3.0, 30.0)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    PIL.Image.fromarray(astronaut.pixels).save(a)
    PIL.Image.fromarray(slanted.pixels).save(b)
    plain, retried = (next(verify_pairs([(a, b)], geometry="homography", fallback_features=fallback)).verification
                      for fallback in (None, "asift"))
    assert not plain.is_match
    assert retried.is_match and retried.features == "asift"


def test_cli_verify_pairs(images, tmp_path, capsys):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("astronaut.png\tastronaut warped.png\nastronaut.png\tcoffee.png\n")
    assert main(["verify", "--pairs", str(pairs), "--images-root", str(tmp_path), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["image_a"], d["image_b"], d["is_match"], d["error"]) for d in lines] == [
        (images["a"], images["a2"], True, None), (images["a"], images["c"], False, None)]

    pairs.write_text(f"{images['a']} {images['bad']}\n{images['a']} {images['c']}\n")
    assert main(["verify", "--pairs", str(pairs)]) == 2  # bad input, but every pair is reported
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2 and "error" in captured.out.splitlines()[0]
    assert "no match" in captured.out.splitlines()[1] and "bad.jpg" in captured.err

    for argv in (["verify", images["a"]], ["verify", images["a"], images["c"], "--pairs", str(pairs)],
                 ["verify", "--pairs", str(pairs), "--draw", "x.png"], ["verify", images["a"], images["c"],
                                                                         "--images-root", "/x"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert main(["verify", "--pairs", str(tmp_path / "none.txt")]) == 2
    assert "cannot read the pairs file" in capsys.readouterr().err
