"""Mutual nearest neighbour + ratio test against a float64 brute-force reference."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch
import pytest

import localmatch
from localmatch import UnknownNameError
from localmatch.matching import compiled, nn
from localmatch.matching.nn import NNConfig, match_nn, match_nn_batched, quantize


@pytest.fixture(params=["numba", "numpy"])
def reduction(request, monkeypatch):
    """Runs a test with the compiled similarity reduction and with numpy's."""
    if request.param == "numba" and not compiled.AVAILABLE:
        pytest.skip("numba (the optional accelerator, a test dependency) is not installed")
    monkeypatch.setattr(compiled, "AVAILABLE", request.param == "numba")
    monkeypatch.setattr(compiled, "NUMPY_ENTRIES_FIRST", 0)


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def reference(a: np.ndarray, b: np.ndarray, ratio: float, mutual: bool) -> set[tuple[int, int]]:
    """The textbook definition, in float64 with full sorting."""
    d = np.sqrt(np.maximum(2 - 2 * a.astype(np.float64) @ b.T.astype(np.float64), 0))
    order = np.argsort(d, axis=1)
    out = set()
    for i in range(len(a)):
        j, j2 = order[i, 0], order[i, 1]
        if d[i, j] < ratio * d[i, j2] and (not mutual or np.argmin(d[:, j]) == i):
            out.add((i, int(j)))
    return out


def planted(seed: int, n: int = 700, m: int = 900, noise: float = 0.3, dim: int = 128):
    """Descriptors of A, and B holding noisy copies of the first (up to) 400 of A among distractors."""
    rng = np.random.default_rng(seed)
    a = unit_rows(np.abs(rng.normal(size=(n, dim))))
    b = unit_rows(np.abs(rng.normal(size=(m, dim))))
    k = min(400, n, m)
    perm = rng.permutation(m)[:k]
    b[perm] = unit_rows(a[:k] + noise * np.abs(rng.normal(size=(k, dim))) / np.sqrt(dim))
    return a, b, perm


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("mutual", [True, False])
@pytest.mark.usefixtures("reduction")
def test_agrees_with_brute_force(seed, mutual):
    a, b, perm = planted(seed)
    got = {tuple(p) for p in match_nn(a, b, NNConfig(ratio=0.8, mutual=mutual)).indices.tolist()}
    want = reference(a, b, 0.8, mutual)
    assert len(want) > 300
    # int8 products may only flip pairs sitting on the ratio boundary.
    assert len(got ^ want) <= 0.01 * len(want)
    assert {(i, int(perm[i])) for i in range(400)} & got  # the planted matches are found


def test_scores_are_one_minus_the_distance_ratio():
    """``scores = 1 - d1 / d2``, of distances (not squared: that would be about 0.2 higher here), to within
    the int8 product's error (largest where d1 is small)."""
    a, b, _ = planted(2)
    m = match_nn(a, b, NNConfig(ratio=0.9))
    d = np.sqrt(np.maximum(2 - 2 * a.astype(np.float64) @ b.T.astype(np.float64), 0))
    nearest_two = np.sort(d[m.indices[:, 0]], axis=1)[:, :2]
    want = 1 - nearest_two[:, 0] / nearest_two[:, 1]
    error = np.abs(m.scores - want)
    assert len(m) > 300 and np.median(error) < 0.02 and error.max() < 0.05


def test_permuted_copy_is_matched_exactly():
    a, _, _ = planted(3)
    perm = np.random.default_rng(3).permutation(len(a))
    m = match_nn(a, a[perm])
    assert len(m) == len(a)
    np.testing.assert_array_equal(perm[m.indices[:, 1]], m.indices[:, 0])
    assert (m.scores > 0).all() and (m.scores <= 1).all()


@pytest.mark.usefixtures("reduction")
def test_ratio_test_drops_ambiguous_matches():
    a, _, _ = planted(4, n=50)
    b = np.concatenate([a, a])  # every descriptor twice: nearest and second nearest tie
    assert len(match_nn(a, b, NNConfig(ratio=0.8, mutual=False))) == 0
    assert len(match_nn(a, b, NNConfig(ratio=1.0, mutual=True))) == 50


@pytest.mark.usefixtures("reduction")
def test_a_b_point_tied_for_two_a_points_is_matched_once():
    a, _, _ = planted(7, n=40)
    doubled = np.concatenate([a, a[:5]])  # A rows 40..44 repeat rows 0..4: each pair ties for one B point
    perm = np.random.default_rng(7).permutation(40)
    m = match_nn(doubled, a[perm], NNConfig(ratio=1.0, mutual=True))
    assert len(m) == 40 and len(np.unique(m.indices[:, 1])) == 40
    assert m.indices[:, 0].max() < 40  # the first of the tied rows is kept
    assert (np.diff(m.indices[:, 0]) > 0).all()  # still ordered by A index, not by B's
    np.testing.assert_array_equal(perm[m.indices[:, 1]], m.indices[:, 0])


@pytest.mark.usefixtures("reduction")
def test_empty_single_and_mismatched_inputs():
    a, b, _ = planted(5, n=20, m=30)
    assert len(match_nn(a[:0], b)) == 0 and len(match_nn(a, b[:0])) == 0
    one = match_nn(a, a[3:4])
    assert one.indices.tolist() == [[3, 0]] and one.scores[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="descriptor sizes differ"):
        match_nn(a, b[:, :64])


@pytest.mark.skipif(not compiled.AVAILABLE, reason="numba (a test dependency) is not installed")
@pytest.mark.parametrize("rows,columns", [(37, 1), (64, 2), (256, 301), (5, 2048)])
def test_compiled_reduction_gives_numpys_integers(rows, columns):
    """A small integer range makes the best of most rows occur more than once (the first column must be
    reported, and the tied best is also the second best); one row is constant."""
    rng = np.random.default_rng(rows + columns)
    sim = rng.integers(-6, 7, (rows, columns)).astype(np.int32)
    sim[1] = 9
    outputs = []
    for reduce in (compiled.reduce_block, nn._reduce_block):
        n = rows + 3  # the block sits at row 3 of a taller matrix
        out = (np.zeros(n, np.int64), np.zeros(n, np.int32), np.full(n, nn._INT_MIN, np.int32),
               np.full(columns, 5, np.int32))
        reduce(sim.copy(), 3, *out)
        outputs.append(out)
    for got, want in zip(*outputs):
        np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(not compiled.AVAILABLE, reason="numba (a test dependency) is not installed")
def test_numpy_reduces_until_it_has_cost_what_loading_numba_costs(monkeypatch):
    a, b, _ = planted(7)
    pair = len(a) * len(b)
    monkeypatch.setattr(compiled, "NUMPY_ENTRIES_FIRST", 3 * pair)
    monkeypatch.setattr(compiled, "_numpy_entries", 0)
    calls = []
    monkeypatch.setattr(compiled, "reduce_block", lambda *args: calls.append(len(args[0])) or nn._reduce_block(*args))
    want = match_nn(a, b)
    for _ in range(2):  # numpy's, three pairs in all: the compiled loop is not called
        np.testing.assert_array_equal(match_nn(a, b).indices, want.indices)
    assert calls == [] and compiled._numpy_entries == 3 * pair
    match_nn(a, b)
    assert sum(calls) == len(a)  # every row of the fourth pair went to the compiled loop
    monkeypatch.setattr(compiled, "AVAILABLE", False)
    calls.clear()
    match_nn(a, b)
    assert calls == []


def test_importing_localmatch_does_not_import_numba():
    """numba takes a few tenths of a second to import; the compiled loops import it on first use."""
    code = "import sys, localmatch, localmatch.database; assert 'numba' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("dim", [128, 2048])
def test_float_product_gives_the_int8_kernels_integers(dim):
    # the extremes: every product 127 * 127 (or -127 * 127), summed in whatever order BLAS takes
    rng = np.random.default_rng(dim)
    a = (rng.choice([-127, 127], size=(300, dim)) * (rng.random((300, dim)) < 0.9)).astype(np.int8)
    b = rng.choice([-127, 127], size=(200, dim)).astype(np.int8)
    b[0] = a[0]  # a similarity of dim * 127**2: over 2**24 at dim 2048
    want = torch._int_mm(torch.from_numpy(a), torch.from_numpy(b).T).numpy()
    got = nn._float_product(b)(a)
    assert got.dtype == np.int32 and got.flags.writeable
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", [3, 4])
def test_matches_do_not_depend_on_which_product_ran(seed, monkeypatch):
    a, b, _ = planted(seed)
    int8 = match_nn(a, b)
    monkeypatch.setattr(nn, "_torch_is_worth_it", lambda entries: False)
    floats = match_nn(a, b)
    np.testing.assert_array_equal(floats.indices, int8.indices)
    np.testing.assert_array_equal(floats.scores, int8.scores)


def test_sift_pairs_do_not_import_torch_until_it_is_worth_its_import_time():
    """Importing torch takes about 1 s: one SIFT pair (``localmatch verify``) runs without it, and the
    matcher imports it once numpy's float product has run ``FLOAT_ENTRIES_FIRST`` entries."""
    code = """if True:
        import sys
        from localmatch.cli import main
        from localmatch.matching import nn
        assert main(["demo"]) == 0 and "torch" not in sys.modules, "a SIFT pair imported torch"
        nn.FLOAT_ENTRIES_FIRST = nn._float_entries + 1
        assert main(["demo"]) == 0 and "torch" in sys.modules, "torch was never imported"
    """
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_batched_equals_pairwise():
    a, b, _ = planted(6)
    candidates = [b, b[::2], b[:0], b[100:130]]
    batched = match_nn_batched(a, candidates)
    qa = quantize(a)
    for got, cand in zip(batched, candidates):
        want = match_nn(qa, quantize(cand))
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_allclose(got.scores, want.scores)


def test_matches_are_checked_against_their_shape_and_the_keypoints(astronaut):
    from localmatch.types import Matches

    with pytest.raises(ValueError, match=r"indices must be \(K, 2\) integers"):
        Matches(np.zeros((3, 2), np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"scores must be \(3,\)"):
        Matches(np.zeros((3, 2), np.int64), np.zeros(4, np.float32))
    f = localmatch.extract(astronaut, max_features=100)
    for bad in ([[0, len(f)]], [[-1, 2]]):  # -1 quietly took the last keypoint
        with pytest.raises(ValueError, match="match indices out of range: A has 100 keypoints"):
            localmatch.verify_matches(f, f, Matches(np.array(bad * 20), np.ones(20, np.float32)))


def test_match_api_and_registry(astronaut):
    f = localmatch.extract(astronaut, max_features=300)
    m = localmatch.match(f, f)
    assert len(m) == len(f)
    with pytest.raises(UnknownNameError, match="lightglue, loftr, nn"):
        localmatch.match(f, f, matcher="bogus")
    plain = localmatch.extract(astronaut, max_features=300, root=False)
    with pytest.raises(ValueError, match="cannot match rootsift features with sift"):
        localmatch.match(f, plain)


def test_int8_descriptors_are_made_once_per_features_object(astronaut):
    from localmatch.matching.nn import quantized

    features = localmatch.extract(astronaut, max_features=300)
    first = quantized(features)
    assert quantized(features) is first
    np.testing.assert_array_equal(first.values, quantize(features.descriptors).values)
    assert quantized(localmatch.extract(astronaut, max_features=300)) is not first
