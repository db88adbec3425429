"""PCA whitening of global descriptors: the learned map, its faiss form inside the index, and the database."""

from __future__ import annotations

import numpy as np
import pytest

from localmatch.database import Database, DatabaseError
from localmatch.shortlist import index as index_module
from localmatch.shortlist.index import MIN_WHITENING_VECTORS, ShortlistIndex
from localmatch.shortlist.whitening import learn_whitening

SMALL = {"max_side": 400, "max_features": 500}


def unit_rows(rng, n: int, dim: int, spread: np.ndarray | None = None) -> np.ndarray:
    x = rng.normal(size=(n, dim)) * (1.0 if spread is None else spread)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_whitening_equalises_the_variance_of_the_principal_directions():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 20)) * np.geomspace(10, 0.1, 20)  # very unequal spreads
    plain = learn_whitening(x, 8, shrinkage=0.0)
    y = (x - plain.mean) @ plain.projection.T  # before the final L2 normalisation
    np.testing.assert_allclose(np.cov(y, rowvar=False, bias=True), np.eye(8), atol=1e-4)
    shrunk = learn_whitening(x, 8, shrinkage=1.0)
    variances = np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True))[::-1][:8]
    expected = variances / (variances + variances.mean())  # lambda / (lambda + s * mean(lambda))
    np.testing.assert_allclose(np.var((x - shrunk.mean) @ shrunk.projection.T, axis=0), expected, rtol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(shrunk.apply(x), axis=1), 1.0, rtol=1e-5)
    # Fewer vectors than dimensions (the variances come from a thin SVD): the same equalisation.
    few = x[:15, :] @ rng.normal(size=(20, 40))
    thin = learn_whitening(few, 8, shrinkage=0.0)
    y = (few - thin.mean) @ thin.projection.T
    np.testing.assert_allclose(np.cov(y, rowvar=False, bias=True), np.eye(8), atol=1e-4)


def test_whitening_learns_at_most_one_direction_less_than_it_has_vectors():
    rng = np.random.default_rng(1)
    assert learn_whitening(rng.normal(size=(10, 50)), 32).dims == 9
    assert learn_whitening(rng.normal(size=(100, 50)), 32).dims == 32
    with pytest.raises(ValueError, match="not all equal"):
        learn_whitening(np.ones((5, 8)), 4)
    with pytest.raises(ValueError, match="at least 2 vectors"):
        learn_whitening(np.ones((1, 8)), 4)


@pytest.mark.parametrize("kind", ["flat", "lsh", "ivf", "hnsw"])
def test_whitened_index_scores_with_the_learned_map_and_round_trips(tmp_path, kind):
    rng = np.random.default_rng(2)
    vectors = unit_rows(rng, 800, 48, np.geomspace(5, 0.2, 48))
    ids = np.arange(800, dtype=np.int64) * 3 + 1
    index = ShortlistIndex(48, kind, whiten=16)
    index.build(vectors, ids)
    assert index.whitened_dims == 16
    whitened = learn_whitening(vectors, 16).apply(vectors)
    query = vectors[5] + 0.05 * rng.normal(size=48).astype(np.float32)
    found, scores = index.search(query, 5)
    assert found[0] == ids[5]
    wq = learn_whitening(vectors, 16).apply(query[None])[0]
    np.testing.assert_allclose(scores, whitened[(found - 1) // 3] @ wq, rtol=1e-4, atol=1e-5)
    index.save(tmp_path / "w.faiss")
    again = ShortlistIndex.load(tmp_path / "w.faiss", 48, kind, built_with=800, whiten=16)
    assert again.whitened_dims == 16
    np.testing.assert_array_equal(again.search(query, 5)[0], found)


def test_whitened_flat_index_grows_removes_and_is_relearned_as_the_collection_doubles():
    rng = np.random.default_rng(3)
    vectors = unit_rows(rng, 400, 32)
    ids = np.arange(400, dtype=np.int64)
    small = ShortlistIndex(32, "flat", whiten=8)
    small.build(vectors[:MIN_WHITENING_VECTORS - 1], ids[:MIN_WHITENING_VECTORS - 1])
    assert small.whitened_dims == 0  # too few vectors to learn from: indexed as they are
    assert not small.wants_rebuild(MIN_WHITENING_VECTORS - 1) and small.wants_rebuild(MIN_WHITENING_VECTORS)
    grown = ShortlistIndex(32, "flat", whiten=8)
    grown.build(vectors[:100], ids[:100])
    grown.add(vectors[100:200], ids[100:200])
    assert grown.whitened_dims == 8 and not grown.wants_rebuild(200) and grown.wants_rebuild(201)
    assert [grown.search(v, 1)[0][0] for v in vectors[100:200:10]] == ids[100:200:10].tolist()
    grown.remove(ids[:50])
    assert len(grown) == 150 and 0 not in grown.search(vectors[0], 150)[0]
    with pytest.raises(ValueError, match="whiten"):
        ShortlistIndex(32, "flat", whiten=-1)


def test_database_whitens_once_it_holds_enough_images_and_keeps_the_setting(tmp_path, monkeypatch, ukbench_paths):
    monkeypatch.setattr(index_module, "MIN_WHITENING_VECTORS", 8)
    path = tmp_path / "db"
    with Database(path, feature_config=SMALL, whitening=6) as db:
        db.add(ukbench_paths[:4])
        assert db._current_index().whitened_dims == 0 and db.info()["whitened_dims"] == 0
        db.add(ukbench_paths[4:12])  # 12 >= 8 images: rebuilt with a whitening learned on them
        assert db._current_index().whitened_dims == 6
        assert db.info()["whitening"] == 6 and db.info()["whitened_dims"] == 6
        hits = db.search(ukbench_paths[9], k=4, rerank=False)
        assert hits[0].path == ukbench_paths[9]
        expected = [h.path for h in hits]
    with Database(path, readonly=True) as reader:
        assert reader.whitening == 6 and reader._current_index().whitened_dims == 6  # loaded, not relearned
        assert [h.path for h in reader.search(ukbench_paths[9], k=4, rerank=False)] == expected
    with pytest.raises(DatabaseError, match="whitening=6"):
        Database(path, whitening=0)
    with pytest.raises(DatabaseError, match="whitening must be"):
        Database(tmp_path / "other", whitening=-3)


@pytest.fixture(scope="module")
def ukbench_paths() -> list[str]:
    from conftest import shared_data

    return [str(p) for p in sorted((shared_data("ukbench_subset") / "images").glob("*.jpg"))][:12]


def test_index_build_takes_the_whitening_dimensions(tmp_path, capsys, ukbench_paths):
    import json

    from localmatch.cli import main

    db = str(tmp_path / "db")
    assert main(["index", "build", db, *ukbench_paths[:3], "--whiten", "8", "-q"]) == 0
    assert main(["index", "info", db, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["whitening"] == 8 and info["whitened_dims"] == 0  # 3 images: too few to learn from
