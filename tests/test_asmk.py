"""ASMK / R-ASMK: agreement with the reference ``asmk`` package, inverted-file bookkeeping, regions."""

from __future__ import annotations

import re

import numpy as np
import pytest

from localmatch.demo import skimage_photo
from localmatch.features import extract
from localmatch.shortlist.asmk import (Aggregated, AsmkConfig, Codebook, InvertedFile, aggregate, aggregate_regions,
                                       describe_query, train_codebook)
from localmatch.shortlist.asmk import codebook as codebook_module, compiled, inverted_file
from localmatch.shortlist.asmk.regions import grid_regions

NO_REFERENCE = ('the reference asmk package is not installed: pip install -e ".[reference]" (it compiles a Cython '
                'module: a C compiler and Python\'s headers are needed)')
PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
          "camera.png", "brick.png")
#: other photos train the test codebook: a word whose members all come from one indexed image would have a
#: residual sum of exactly zero up to rounding, whose signs no two implementations need agree on
CODEBOOK_PHOTOS = ("coins.png", "gravel.png", "grass.png", "retina.jpg", "hubble_deep_field.jpg", "ihc.png",
                   "moon.png", "page.png", "text.png")


@pytest.fixture(scope="module")
def rootsift():
    """Real RootSIFT features of scikit-image photos: ``[(keypoints, descriptors, (w, h))]``."""
    out = []
    for name in PHOTOS:
        f = extract(skimage_photo(name), "sift", max_features=500)
        out.append((f.keypoints, f.descriptors.astype(np.float32), f.image_size))
    return out


@pytest.fixture(scope="module")
def codebook():
    descriptors = [extract(skimage_photo(name), "sift", max_features=500).descriptors for name in CODEBOOK_PHOTOS]
    return train_codebook(np.concatenate(descriptors).astype(np.float32), 64, seed=0)


def reference_method(codebook: Codebook, *, binary: bool, idf: bool):
    asmk_method = pytest.importorskip("asmk.asmk_method", reason=NO_REFERENCE)
    from asmk import codebook as ref_codebook, index as ref_index

    cdb = ref_codebook.Codebook(ref_index.initialize_index(None), size=codebook.size)
    cdb.index(codebook.centroids.copy())
    params = {
        "index": {"gpu_id": None},
        "build_ivf": {"kernel": {"binary": binary}, "ivf": {"use_idf": idf},
                      "quantize": {"multiple_assignment": 1}, "aggregate": {}},
        "query_ivf": {"quantize": {"multiple_assignment": 5}, "aggregate": {}, "search": {"topk": None},
                      "similarity": {"similarity_threshold": 0.0, "alpha": 3.0}},
    }
    return asmk_method.ASMKMethod(params, {}, codebook=cdb)


@pytest.mark.parametrize("binary,idf,chunk,numba_loop", [
    (True, False, 1 << 17, True), (True, True, 1 << 17, True), (True, False, 40, True), (True, True, 40, True),
    (True, False, 1 << 17, False), (True, True, 1 << 17, False), (True, False, 40, False),
    (False, False, 1 << 17, False), (False, True, 40, False)])
def test_scores_and_rankings_equal_the_asmk_package(rootsift, codebook, binary, idf, chunk, numba_loop, monkeypatch):
    """``chunk`` 40 makes every search run in the search threads; ``numba_loop`` picks the compiled binary
    scoring loop or the numpy path."""
    if numba_loop and not compiled.AVAILABLE:
        pytest.skip("numba (the optional accelerator, a test dependency) is not installed")
    monkeypatch.setattr(compiled, "AVAILABLE", numba_loop)
    monkeypatch.setattr(inverted_file, "SEARCH_CHUNK", chunk)
    descriptors = [d for _, d, _ in rootsift]
    imids = np.concatenate([np.full(len(d), i) for i, d in enumerate(descriptors)])
    ref = reference_method(codebook, binary=binary, idf=idf).build_ivf(np.concatenate(descriptors), imids)
    _, _, ref_ranks, ref_scores = ref.query_ivf(np.concatenate(descriptors), imids)

    config = AsmkConfig(binary=binary, idf=idf)
    ivf = InvertedFile(codebook.size, codebook.dim, binary)
    for i, d in enumerate(descriptors):
        ivf.add(i, aggregate(d, codebook, assignments=1, binary=binary))
    for q, d in enumerate(descriptors):
        ids, scores = ivf.search(describe_query(d, codebook, config), len(descriptors), idf=idf)
        np.testing.assert_array_equal(ids, ref_ranks[q])
        np.testing.assert_allclose(scores, ref_scores[q], rtol=1e-4, atol=1e-6)
    if not idf:  # (with idf, words all 8 photos share weigh 0)
        assert (ref_ranks[:, 0] == np.arange(len(descriptors))).all(), "each photo should find itself first"


def test_binary_signatures_hold_the_same_bits_as_the_asmk_package(rootsift, codebook):
    pytest.importorskip("asmk", reason=NO_REFERENCE)
    from asmk import hamming

    sums = np.random.default_rng(0).normal(size=(7, 128)).astype(np.float32)
    theirs = hamming.binarize_and_pack_2D(sums)  # uint32 words, most significant bit first
    their_bits = (theirs[:, :, None] >> (31 - np.arange(32, dtype=np.uint32))) & 1
    np.testing.assert_array_equal(np.unpackbits(np.packbits(sums > 0, axis=1), axis=1), their_bits.reshape(7, 128))
    ours = aggregate(rootsift[0][1], codebook, binary=True)
    assert ours.vectors.dtype == np.uint8 and ours.vectors.shape == (len(ours), 16)


def test_scores_do_not_depend_on_insertion_order_or_deletes(rootsift, codebook):
    aggregated = [aggregate(d, codebook) for _, d, _ in rootsift]
    query = describe_query(rootsift[2][1], codebook, AsmkConfig())

    def build(order, removed=()):
        ivf = InvertedFile(codebook.size, codebook.dim, True)
        for i in order:
            ivf.add(i, aggregated[i])
            if i in removed:
                ivf.search(query, 3)  # flush into a segment before removing
                ivf.remove(i)
        return ivf.search(query, len(aggregated), idf=True)

    forward = build(range(len(aggregated)))
    backward = build(reversed(range(len(aggregated))))
    np.testing.assert_array_equal(forward[0], backward[0])
    np.testing.assert_array_equal(forward[1], backward[1])
    # one image added one at a time with searches between (many segments, merges), then removed and re-added
    ivf = InvertedFile(codebook.size, codebook.dim, True)
    for i in range(len(aggregated)):
        ivf.add(i, aggregated[i])
        ivf.search(query, 1)
    assert ivf.remove(2) and not ivf.remove(2) and 2 not in ivf
    ivf.add(2, aggregated[2])
    again = ivf.search(query, len(aggregated), idf=True)
    np.testing.assert_array_equal(again[0], forward[0])
    np.testing.assert_allclose(again[1], forward[1], rtol=1e-6)
    # a removed image is gone and the rest keep their scores (idf off: nothing else depends on it)
    ivf.remove(5)
    ids, scores = ivf.search(query, 100)
    assert 5 not in ids.tolist()
    full = dict(zip(*ivf_scores(aggregated, codebook, query)))
    assert all(abs(full[i] - s) < 1e-6 for i, s in zip(ids.tolist(), scores.tolist()))


def ivf_scores(aggregated, codebook, query):
    ivf = InvertedFile(codebook.size, codebook.dim, True)
    for i, a in enumerate(aggregated):
        ivf.add(i, a)
    ids, scores = ivf.search(query, len(aggregated))
    return ids.tolist(), scores.tolist()


def test_save_and_load_without_pickle(rootsift, codebook, tmp_path):
    ivf = InvertedFile(codebook.size, codebook.dim, True)
    for i, (_, d, _) in enumerate(rootsift):
        ivf.add(10 * i, aggregate(d, codebook))
    query = describe_query(rootsift[4][1], codebook, AsmkConfig())
    ivf.search(query, 1)  # the images now make one segment, from which 30 is removed (its entries dead)
    ivf.remove(30)
    before = ivf.search(query, 5)
    ivf.save(tmp_path / "asmk.npz")
    codebook.save(tmp_path / "codebook.npy")
    loaded = InvertedFile.load(tmp_path / "asmk.npz")
    after = loaded.search(describe_query(rootsift[4][1], Codebook.load(tmp_path / "codebook.npy"), AsmkConfig()), 5)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_allclose(before[1], after[1])
    assert len(loaded) == len(rootsift) - 1 and 30 not in loaded
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="bad.npz"):
        InvertedFile.load(tmp_path / "bad.npz")
    # readable, but its arrays do not make an inverted file (the compiled scoring loop does not check bounds)
    with np.load(tmp_path / "asmk.npz") as data:
        arrays = dict(data)
    for key, value, says in (
            ("image_ids", arrays["image_ids"].astype(np.int32), "index arrays of the wrong types"),
            ("vectors", arrays["vectors"][:, :8], "vectors are uint8 (%d, 8), expected uint8 (E, 16)"
             % len(arrays["vectors"])),
            ("offsets", np.r_[arrays["offsets"][:-1], arrays["offsets"][-1] + 1], "word offsets do not delimit")):
        np.savez(tmp_path / "tampered.npz", **{**arrays, key: value})
        with pytest.raises(ValueError, match=re.escape(f"inconsistent inverted file ({says}")):
            InvertedFile.load(tmp_path / "tampered.npz")


def test_idf_weights_follow_images_added_after_a_search(rootsift, codebook):
    aggregated = [aggregate(d, codebook) for _, d, _ in rootsift]
    query = describe_query(rootsift[1][1], codebook, AsmkConfig())
    grown, fresh = InvertedFile(codebook.size, codebook.dim, True), InvertedFile(codebook.size, codebook.dim, True)
    for i, a in enumerate(aggregated[:-1]):
        grown.add(i, a)
    grown.search(query, 3, idf=True)  # the images' idf norms are computed for these contents
    grown.add(len(aggregated) - 1, aggregated[-1])  # which moves every word's idf
    grown.search(query, 3)  # a flush into a second segment
    grown.remove(0)
    for i, a in enumerate(aggregated[1:], 1):
        fresh.add(i, a)
    ids, scores = grown.search(query, len(aggregated), idf=True)
    expected = fresh.search(query, len(aggregated), idf=True)
    np.testing.assert_array_equal(ids, expected[0])
    np.testing.assert_allclose(scores, expected[1], rtol=1e-6)


def test_empty_images_and_queries(codebook):
    empty = aggregate(np.zeros((0, 128), np.float32), codebook)
    assert len(empty) == 0 and empty.vectors.shape == (0, 16)
    ivf = InvertedFile(codebook.size, codebook.dim, True)
    assert ivf.search(empty, 5)[0].size == 0
    ivf.add(1, empty)
    ids, scores = ivf.search(empty, 5)
    assert ids.tolist() == [1] and scores.tolist() == [0.0]
    with pytest.raises(ValueError, match="already"):
        ivf.add(1, empty)
    with pytest.raises(ValueError, match="binary"):
        ivf.add(2, aggregate(np.zeros((0, 128), np.float32), codebook, binary=False))
    with pytest.raises(ValueError, match="the query was aggregated differently"):
        ivf.search(aggregate(np.zeros((0, 128), np.float32), codebook, binary=False), 5)
    outside = Aggregated(np.array([codebook.size], np.int32), np.zeros((1, 16), np.uint8), True, 128)
    with pytest.raises(ValueError, match=f"word ids outside 0..{codebook.size - 1}"):
        ivf.add(3, outside)


def test_codebook_training_is_seeded_and_shrinks_for_small_samples(rootsift):
    data = np.concatenate([d for _, d, _ in rootsift])
    a, b = train_codebook(data, 32, seed=3), train_codebook(data, 32, seed=3)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert train_codebook(data[:100], 1024).size == 100 // 16
    words = a.assign(data[:10], 5)
    assert words.shape == (10, 5)
    distances = ((data[:10, None] - a.centroids[words]) ** 2).sum(-1)
    assert (np.diff(distances, axis=1) >= -1e-5).all() and (distances[:, 0] <= ((data[:10, None] - a.centroids[None]) ** 2).sum(-1).min(1) + 1e-5).all()


def test_query_words_by_hnsw_search_are_deterministic_and_nearly_exact(rootsift, monkeypatch):
    data = np.concatenate([d for _, d, _ in rootsift])
    codebook = train_codebook(data, 256, seed=0)
    queries = rootsift[3][1]
    exact = codebook.assign(queries, 5, search="exact")
    approximate = codebook.assign(queries, 5, search="hnsw")
    assert approximate.shape == exact.shape and approximate.dtype == np.int64
    assert ((approximate >= 0) & (approximate < codebook.size)).all()
    np.testing.assert_array_equal(approximate, Codebook(codebook.centroids).assign(queries, 5, search="hnsw"))
    assert (approximate[:, 0] == exact[:, 0]).mean() >= 0.95
    np.testing.assert_array_equal(codebook.assign(queries, 5, search="auto"), exact)  # small codebook: exact
    monkeypatch.setattr(codebook_module, "APPROXIMATE_FROM_WORDS", codebook.size)
    np.testing.assert_array_equal(codebook.assign(queries, 5, search="auto"), approximate)
    with pytest.raises(ValueError, match="exact"):
        codebook.assign(queries, 5, search="ivf")
    with pytest.raises(ValueError, match="hnsw"):
        AsmkConfig(query_word_search="nearest")

    ivf = InvertedFile(codebook.size, codebook.dim, True)
    for i, (_, d, _) in enumerate(rootsift):
        ivf.add(i, aggregate(d, codebook))
    ids, _ = ivf.search(describe_query(queries, codebook, AsmkConfig(query_word_search="hnsw")), 3)
    assert ids[0] == 3


def test_hnsw_graph_is_saved_with_a_large_codebook_and_checked_on_load(rootsift, tmp_path, monkeypatch, caplog):
    data = np.concatenate([d for _, d, _ in rootsift])
    codebook = train_codebook(data, 128, seed=0)
    monkeypatch.setattr(codebook_module, "APPROXIMATE_FROM_WORDS", codebook.size)
    path = tmp_path / "words.npy"
    codebook.save(path)
    graph = tmp_path / "words.hnsw"
    assert graph.exists()
    loaded = Codebook.load(path)
    assert loaded._graph is not None  # read, not rebuilt
    np.testing.assert_array_equal(loaded.assign(data[:200], 5, search="hnsw"), codebook.assign(data[:200], 5, search="hnsw"))

    other = train_codebook(data, 128, seed=1)
    other.save(tmp_path / "other.npy")
    (tmp_path / "other.hnsw").replace(graph)  # a graph of other words beside these
    assert Codebook.load(path)._graph is None and "other words" in caplog.text
    graph.write_bytes(b"not a faiss index")
    fresh = Codebook.load(path)
    assert fresh._graph is None and "ignoring the saved HNSW graph" in caplog.text
    np.testing.assert_array_equal(fresh.assign(data[:200], 5, search="hnsw"), codebook.assign(data[:200], 5, search="hnsw"))

    monkeypatch.setattr(codebook_module, "APPROXIMATE_FROM_WORDS", 16384)
    codebook.save(path)  # small codebook now: no graph, and no stale one left
    assert not graph.exists()


def test_rasmk_with_one_full_region_is_asmk(rootsift, codebook):
    keypoints, descriptors, (w, h) = rootsift[0]
    plain = aggregate(descriptors, codebook, binary=False)
    regional = aggregate_regions(descriptors, keypoints, np.array([[0, 0, w - 1, h - 1]]), codebook, binary=False)
    np.testing.assert_array_equal(plain.words, regional.words)
    np.testing.assert_allclose(plain.vectors, regional.vectors, atol=1e-5)


def test_rasmk_sums_normalised_regional_vlads(rootsift, codebook):
    keypoints, descriptors, (w, h) = rootsift[1]
    boxes = np.array([[0, 0, w / 2, h - 1], [w / 3, 0, w - 1, h / 2]], np.float32)
    regional = aggregate_regions(descriptors, keypoints, boxes, codebook, binary=False)
    expected = np.zeros((codebook.size, codebook.dim))
    for x0, y0, x1, y1 in boxes:  # the definition, one region at a time
        inside = (keypoints[:, 0] >= x0) & (keypoints[:, 0] <= x1) & (keypoints[:, 1] >= y0) & (keypoints[:, 1] <= y1)
        vlad = np.zeros_like(expected)
        words = codebook.assign(descriptors[inside])[:, 0]
        np.add.at(vlad, words, descriptors[inside] - codebook.centroids[words])
        expected += vlad / np.linalg.norm(vlad)
    used = np.flatnonzero(np.abs(expected).sum(1) > 0)
    np.testing.assert_array_equal(regional.words, used)
    np.testing.assert_allclose(regional.vectors, expected[used] / np.linalg.norm(expected[used], axis=1, keepdims=True), atol=1e-4)
    binary = aggregate_regions(descriptors, keypoints, boxes, codebook)
    np.testing.assert_array_equal(binary.vectors, np.packbits(expected[used] > 0, axis=1))


def test_grid_regions_cover_the_image_with_overlapping_squares():
    boxes = grid_regions(1024, 768)
    assert len(boxes) == 21
    assert [0, 0, 1023, 767] in boxes.tolist()
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 1023).all() and (boxes[:, 3] <= 767).all()
    portrait = grid_regions(480, 640)
    assert len(portrait) == 21 and (portrait[:, 3] <= 639).all()


def test_keypoint_cluster_regions_follow_the_features():
    from localmatch.shortlist.asmk.regions import keypoint_clusters

    rng = np.random.default_rng(0)
    left = rng.normal((100, 300), 20, size=(200, 2))
    right = rng.normal((500, 100), 20, size=(200, 2))
    boxes = keypoint_clusters(640, 480, np.concatenate([left, right]).astype(np.float32))
    assert boxes[0].tolist() == [0, 0, 639, 479] and len(boxes) == 1 + 2 + 4 + 8
    two = boxes[1:3]
    centres = np.stack([(two[:, 0] + two[:, 2]) / 2, (two[:, 1] + two[:, 3]) / 2], 1)
    assert sorted(np.round(centres, -2).tolist()) == [[100, 300], [500, 100]]
    assert (two[:, 2] - two[:, 0] < 200).all()  # each box holds one blob, not both
    assert len(keypoint_clusters(640, 480, left[:20].astype(np.float32))) == 1  # too few points: whole image


def test_a_keypoint_on_a_box_edge_is_inside_and_keypoints_must_match_descriptors(rootsift, codebook):
    _, descriptors, _ = rootsift[0]
    on_edges = np.array([[10, 5], [0, 10]], np.float32)  # the right edge, and the left and bottom ones
    regional = aggregate_regions(descriptors[:2], on_edges, np.array([[0, 0, 10, 10]]), codebook, binary=False)
    assert len(regional) == len(aggregate(descriptors[:2], codebook)) > 0
    with pytest.raises(ValueError, match="3 keypoints for 2 descriptors"):
        aggregate_regions(descriptors[:2], np.zeros((3, 2)), np.array([[0, 0, 10, 10]]), codebook)


def test_region_proposers_leave_out_repeats_small_groups_and_stray_points():
    from localmatch.shortlist.asmk.regions import keypoint_clusters

    square = grid_regions(600, 600)  # its first level's square is the whole image again
    assert len(square) == len(np.unique(square, axis=0)) == 14
    rng = np.random.default_rng(1)
    assert keypoint_clusters(640, 480, rng.normal(50, 5, (5, 2)).astype(np.float32)).tolist() == [[0, 0, 639, 479]]
    big, small = rng.normal((100, 300), 20, (100, 2)), rng.normal((500, 100), 5, (10, 2))
    points = np.concatenate([big, [[250, 300]], small]).astype(np.float32)  # a stray point right of the big blob
    boxes = keypoint_clusters(640, 480, points, counts=(2,))
    assert len(boxes) == 2  # the whole image and the big blob's box: the group of 10 is under min_points
    assert boxes[1][2] < 200  # boxed from its 2nd to its 98th percentile, the stray point does not stretch it
