"""What the ASIFT retry of ``verify(..., fallback_features="asift")`` gains and risks on multiview_dev.

Run: LOCALMATCH_DATA=../shared/data python bench/asift_fallback.py

The first three images (by name) of each of the 17 scenes: every pair within a scene should match
(37 pairs), every pair of the scenes' first images should not (136 pairs). Each pair is verified
with the defaults (RootSIFT, ``nn``, geometry ``auto``); a pair that does not verify is retried as the
fallback does, with ASIFT features and ``nn`` at their defaults, under each geometry. Features are
extracted once per image (the fallback itself extracts per call; the time column is one retry as the
pair API runs it: two ASIFT extractions, matching, RANSAC).
"""

from __future__ import annotations

import itertools
import statistics

import localmatch

from common import data_dir, timed

GEOMETRIES = ("auto", "homography", "fundamental")


def main() -> None:
    root = data_dir("multiview_dev")
    images = {scene.name: sorted(p for p in scene.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:3]
              for scene in sorted(p for p in root.iterdir() if p.is_dir())}
    same = [pair for paths in images.values() for pair in itertools.combinations(paths, 2)]
    different = [(images[x][0], images[y][0]) for x, y in itertools.combinations(images, 2)]
    cache: dict = {}

    def features(path, name):
        if (path, name) not in cache:
            cache[(path, name)] = localmatch.extract(str(path), name)
        return cache[(path, name)]

    def verified(a, b, name, geometry):
        fa, fb = features(a, name), features(b, name)
        return localmatch.verify_matches(fa, fb, localmatch.match(fa, fb), geometry=geometry).is_match

    print("| pairs | count | verified by RootSIFT (auto) | not verified, then by the ASIFT retry: "
          + " | ".join(GEOMETRIES) + " |")
    print("|---|---|---|" + "---|" * len(GEOMETRIES))
    failed_pairs = []
    for label, pairs in (("same scene", same), ("different scenes", different)):
        first = [verified(a, b, "sift", "auto") for a, b in pairs]
        failed = [pair for pair, ok in zip(pairs, first) if not ok]
        failed_pairs += failed
        retried = [sum(verified(a, b, "asift", g) for a, b in failed) for g in GEOMETRIES]
        print(f"| {label} | {len(pairs)} | {sum(first)} | {len(failed)}, then: "
              + " | ".join(str(n) for n in retried) + " |")
    a, b = failed_pairs[0]
    seconds = [timed(localmatch.verify, str(a), str(b), fallback_features="asift")[1] for _ in range(3)]
    plain = [timed(localmatch.verify, str(a), str(b))[1] for _ in range(3)]
    print(f"\nOne pair that needs the retry ({a.parent.name}/{a.name}, {b.parent.name}/{b.name}): "
          f"{statistics.median(seconds):.2f} s with it, {statistics.median(plain):.2f} s without (median of 3).")


if __name__ == "__main__":
    main()
