"""Re-ranking a shortlist from stored features: the threshold's scale, the fused order, the second pass."""

from __future__ import annotations

import numpy as np

from localmatch import rerank
from localmatch.matching.nn import quantize
from localmatch.rerank import Candidate, fuse_ranking, rerank_candidates, verify_candidates
from localmatch.types import Features, Verification

from conftest import points_on_a_plane

H = np.array([[0.82, 0.21, 23.0], [-0.17, 0.91, 61.0], [2.1e-4, -1.3e-4, 1.0]])


def _descriptors(n: int) -> np.ndarray:
    d = np.abs(np.random.default_rng(1).normal(size=(n, 128)))
    return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)


def _query(points: np.ndarray, working_scale: float) -> Features:
    zeros = np.zeros(len(points), np.float32)
    return Features(points.astype(np.float32), zeros, zeros, zeros, _descriptors(len(points)), (500, 500), "rootsift",
                    working_scale)


def _candidate(image_id: int, points: np.ndarray, working_scale: float) -> Candidate:
    return Candidate(image_id, f"{image_id}.jpg", points.astype(np.float32), quantize(_descriptors(len(points))),
                     working_scale, (500, 500))


def test_the_threshold_is_in_working_pixels_of_each_image():
    """30 exact correspondences and 10 whose candidate points are 4.5 original pixels off: outliers at 3
    working pixels when the candidate was worked on at full size, whatever the query's size; inliers when
    the candidate was worked on at half size."""
    pa, pb = points_on_a_plane(H, np.r_[np.zeros(30), np.full(10, 4.5)])
    options = dict(geometry="homography", ransac={"threshold": 3.0, "max_iterations": 1000}, threads=1)
    candidates = [_candidate(1, pb, 1.0), _candidate(2, pb, 0.5)]
    for query_scale in (1.0, 0.5):
        results = verify_candidates(_query(pa, query_scale), candidates, **options)
        assert [v.num_inliers for v in results] == [30, 40], query_scale


def _verification(num_inliers: int, min_inliers: int = 15) -> Verification:
    empty = np.zeros((0, 2), np.float32)
    return Verification(100, num_inliers, empty, empty, None, None, num_inliers >= min_inliers, num_inliers / 100)


def _candidates(n: int) -> list[Candidate]:
    return [_candidate(i, np.zeros((1, 2)), 1.0) for i in range(n)]


def test_verified_hits_come_first_and_scores_descend_with_rank():
    """Verified candidates by inliers, then the others by global score alone: the one with the best global
    score ranks after every verified one, but before an unverified one with 14 inliers; scores (below 1
    for the unverified) descend with rank."""
    global_scores = np.array([0.9, 0.2, 0.5, 0.3])
    results = [_verification(0), _verification(20), _verification(14), _verification(16)]
    hits = fuse_ranking(_candidates(4), global_scores, results, min_inliers=15)
    assert [h.image_id for h in hits] == [1, 3, 0, 2]
    assert [h.rank for h in hits] == [1, 2, 3, 4]
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == 20 + (0.2 + 1) / 4 and scores[2] == (0.9 + 1) / 4 < 1
    assert [h.verified for h in hits] == [True, True, False, False]


def test_the_second_matcher_verifies_the_head_of_the_nn_ranking(monkeypatch):
    """Two passes: ``nn`` verifies every candidate, then the costly matcher the first ``matcher_top`` of
    the list ``nn`` ranked (not of the shortlist's order), whose verifications replace ``nn``'s."""
    nn_inliers = [0, 0, 30, 0, 50, 0]  # the shortlist's order is 0..5; nn's ranking starts 4, 2, 0
    asked = []

    def fake_verify(query, candidates, *, matcher="nn", **options):
        if matcher == "nn":
            return [_verification(nn_inliers[c.image_id]) for c in candidates]
        asked.append([c.image_id for c in candidates])
        return [_verification(100 + c.image_id) for c in candidates]

    monkeypatch.setattr(rerank, "verify_candidates", fake_verify)
    global_scores = np.linspace(0.9, 0.4, 6)
    hits = rerank_candidates(_query(np.zeros((1, 2)), 1.0), _candidates(6), global_scores, matcher="lightglue",
                             matcher_top=3)
    assert asked == [[4, 2, 0]]
    assert [(h.image_id, h.num_inliers) for h in hits[:3]] == [(4, 104), (2, 102), (0, 100)]
    assert [h.num_inliers for h in hits[3:]] == [0, 0, 0]
