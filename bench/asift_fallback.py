"""What the ASIFT retry of ``verify(..., fallback_features="asift")`` gains and risks on multiview_dev.

Run: LOCALMATCH_DATA=../shared/data python bench/asift_fallback.py

The first three images (by name) of each of the 17 scenes: every pair within a scene should match
(37 pairs), every pair of the scenes' first images should not (136 pairs). Each pair is verified
with the defaults (RootSIFT, ``nn``, geometry ``auto``); a pair that does not verify is retried as the
fallback does, with ASIFT features and ``nn`` at their defaults, stage by stage (the views up to tilt
sqrt 2, then the tilt-2 views added), under each geometry. Features are extracted once per image here;
the timing table then runs the pair API itself, staged and with all views at once, on the same pairs.
Last, an a-contrario test (ORSA's number of false alarms) on the retried pairs, to see whether it would
separate them better than the inlier count.
"""

from __future__ import annotations

import math
import statistics
from typing import NamedTuple

import numpy as np
from scipy.special import gammaln

import localmatch
from localmatch.api import correspondences_of
from localmatch.features import FEATURES
from localmatch.io import load_image

from common import multiview_pairs, timed

GEOMETRIES = ("auto", "homography", "fundamental")


def main() -> None:
    same, different = multiview_pairs()
    sift: dict = {}
    asift: dict = {}
    extractor = FEATURES.get("asift")

    def first_attempt(a, b):
        fa, fb = (sift.setdefault(p, localmatch.extract(str(p))) for p in (a, b))
        return localmatch.verify_matches(fa, fb, localmatch.match(fa, fb), geometry="auto").is_match

    def stages(path):
        if path not in asift:
            config = extractor.make_config()
            asift[path] = list(extractor.run_stages(load_image(str(path)), config))
        return asift[path]

    def retry(a, b, geometry) -> Retry:
        most = 0
        for stage, (fa, fb) in enumerate(zip(stages(a), stages(b)), 1):
            matches = localmatch.match(fa, fb)
            result = localmatch.verify_matches(fa, fb, matches, geometry=geometry)
            most = max(most, result.num_inliers)
            if result.is_match:
                break
        nfa = log10_nfa(result, correspondences_of(fa, fb, matches), fa.image_size, fb.image_size)
        return Retry(result, stage if result.is_match else None, most, nfa)

    print("| pairs | count | verified by RootSIFT (auto) | not verified, then by the ASIFT retry (of which at its "
          "first stage): " + " | ".join(GEOMETRIES) + " |")
    print("|---|---|---|" + "---|" * len(GEOMETRIES))
    failed_pairs, significance_rows, stage_of, largest = {}, [], {}, {}
    for label, pairs in (("same scene", same), ("different scenes", different)):
        first = [first_attempt(a, b) for a, b in pairs]
        failed = [pair for pair, ok in zip(pairs, first) if not ok]
        failed_pairs[label] = failed
        retries = {g: [retry(a, b, g) for a, b in failed] for g in GEOMETRIES}
        print(f"| {label} | {len(pairs)} | {sum(first)} | {len(failed)}, then: "
              + " | ".join(f"{sum(r.stage is not None for r in retries[g])} ({sum(r.stage == 1 for r in retries[g])})"
                           for g in GEOMETRIES) + " |")
        significance_rows += [(label, r.result.num_inliers, r.result.num_matches, r.nfa) for r in retries["auto"]]
        stage_of.update({pair: r.stage for pair, r in zip(failed, retries["auto"])})
        largest[label] = [max([r.most_inliers for r in retries[g] if r.stage is None], default=0) for g in GEOMETRIES]
    print("\nLargest inlier count of a retried pair that did not verify (any stage; 15 verify):\n")
    print("| pairs | " + " | ".join(GEOMETRIES) + " |\n|---|" + "---|" * len(GEOMETRIES))
    for label, counts in largest.items():
        print(f"| {label} | " + " | ".join(map(str, counts)) + " |")
    significance(significance_rows)
    timing(failed_pairs, stage_of)


class Retry(NamedTuple):
    """One pair's staged retry: the verification it returns (the first stage's that verified, else the
    last's), that stage (1-based; None when none verified), the most inliers any stage found, and the
    log10 NFA of the returned model."""

    result: localmatch.Verification
    stage: int | None
    most_inliers: int
    nfa: float


def all_views_at_once(a, b):
    """The retry as it was until session 13: SIFT first, then every ASIFT view of both images at once."""
    a, b = load_image(a), load_image(b)
    first = localmatch.verify(a, b)
    if first.is_match:
        return first
    retry = localmatch.verify(a, b, features="asift")
    return retry if retry.is_match else first


def timing(failed_pairs: dict, stage_of: dict) -> None:
    """Seconds per pair through the pair API (decoding included, median of 3), staged and all at once,
    alternating, on up to two pairs verified at the first stage, two at the second, and four spread over
    the list that do not verify."""
    kinds = {"verified at the first stage": [p for p in failed_pairs["same scene"] if stage_of[p] == 1][:2],
             "verified at the second stage": [p for p in failed_pairs["same scene"] if stage_of[p] == 2][:2],
             "not verified (different scenes)": failed_pairs["different scenes"][::34][:4]}
    print("\nOne retried pair through the pair API, s (decoding and the SIFT attempt included, median of 3):\n")
    print("| pair | kind | staged retry (now) | all views at once (until session 13) | without the retry |")
    print("|---|---|---|---|---|")
    for kind, pairs in kinds.items():
        for a, b in pairs:
            staged, at_once, plain = [], [], []
            for _ in range(3):
                staged.append(timed(localmatch.verify, str(a), str(b), fallback_features="asift")[1])
                at_once.append(timed(all_views_at_once, str(a), str(b))[1])
                plain.append(timed(localmatch.verify, str(a), str(b))[1])
            print(f"| {a.parent.name}/{a.name} - {b.parent.name}/{b.name} | {kind} | "
                  f"{statistics.median(staged):.2f} | {statistics.median(at_once):.2f} | {statistics.median(plain):.2f} |")


def significance(rows: list[tuple[str, int, int, float]]) -> None:
    """Would an a-contrario test (ORSA's number of false alarms) separate the retry's true and chance
    matches better than the inlier count does? ``rows``: (pairs, inliers, matches, log10 NFA) of each
    retry under geometry auto; every same-scene one is printed, and the most significant of the others."""
    print("\nPairs retried with ASIFT (geometry auto): inliers, and log10 of ORSA's number of false alarms of the "
          "model found (lower is more significant); every same-scene pair and the 5 most significant of the others:\n")
    print("| pairs | inliers / matches | log10 NFA |\n|---|---|---|")
    shown = [r for r in rows if r[0] == "same scene"] + sorted((r for r in rows if r[0] != "same scene"),
                                                               key=lambda r: r[3])[:5]
    for label, inliers, matches, nfa in shown:
        print(f"| {label} | {inliers} / {matches} | {nfa:.1f} |")


def log10_nfa(result, correspondences, size_a, size_b) -> float:
    """log10 of the number of false alarms (Moisan and Stival's ORSA) of ``result``'s model over all the
    matches: min over k of ``outcomes * (n - s) * C(n, k) * C(k, s) * p(e_k) ** (k - s)``, with e_k the
    k-th smallest residual (the larger of the two transfer or epipolar distances) and p the chance that a
    uniformly random point lies that close (homography: a disc; fundamental matrix: a band along the line)."""
    if result.matrix is None:
        return math.inf
    a = np.c_[correspondences.points_a, np.ones(len(correspondences))].astype(np.float64)
    b = np.c_[correspondences.points_b, np.ones(len(correspondences))].astype(np.float64)
    M = result.matrix
    if result.geometry == "fundamental":
        lines_b, lines_a = a @ M.T, b @ M
        residuals = np.maximum(np.abs((lines_b * b).sum(1)) / np.hypot(*lines_b[:, :2].T),
                               np.abs((lines_a * a).sum(1)) / np.hypot(*lines_a[:, :2].T))
        sample, outcomes = 7, 3
    else:
        to_b, to_a = a @ M.T, b @ np.linalg.inv(M).T
        residuals = np.maximum(np.linalg.norm(to_b[:, :2] / to_b[:, 2:] - b[:, :2], axis=1),
                               np.linalg.norm(to_a[:, :2] / to_a[:, 2:] - a[:, :2], axis=1))
        sample, outcomes = 4, 1
    area = max(size_a[0] * size_a[1], size_b[0] * size_b[1])
    diagonal = max(math.hypot(*size_a), math.hypot(*size_b))
    n, errors = len(residuals), np.maximum(np.sort(residuals), 1e-3)
    k = np.arange(sample + 1, n + 1)
    e = errors[k - 1]
    chance = np.minimum(1.0, 2 * e * diagonal / area if sample == 7 else math.pi * e ** 2 / area)
    values = (math.log10(outcomes * (n - sample)) + log_binomial(n, k) + log_binomial(k, sample)
              + (k - sample) * np.log10(chance))
    return float(values.min()) if len(values) else math.inf


def log_binomial(n, k):
    """log10 of the binomial coefficient C(n, k) (k may be an array)."""
    return (gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)) / math.log(10)


if __name__ == "__main__":
    main()
