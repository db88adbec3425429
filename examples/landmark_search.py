"""Build a database from a folder, query it, and save a picture of the ranking.

    python examples/landmark_search.py PHOTOS_DIR QUERY.jpg [ranking.png]

With no arguments it uses a built-in collection made from photographs scikit-image ships (written to a
temporary folder) and queries it with one of them.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import localmatch
from localmatch.database import Database
from localmatch.demo import write_demo_collection
from localmatch.viz import ranking_strip, save_picture


def main(argv: list[str]) -> int:
    if len(argv) == 1 or len(argv) > 3:
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        if argv:
            folder, query = argv[0], argv[1]
        else:
            folder = str(Path(tmp) / "photos")
            query = write_demo_collection(folder)[7]  # motorcycle_left.jpg
        out = argv[2] if len(argv) == 3 else "ranking.png"
        query_image = localmatch.load_image(query)  # a query that cannot be used fails before the indexing
        with Database(Path(tmp) / "db") as db:
            report = db.add([folder])
            print(f"indexed {len(report.added)} images ({len(report.failed)} could not be read)")
            if len(db) == 0:
                raise localmatch.LocalmatchError(f"{folder}: no image to search (" + (
                    f"{report.failed[0][0]}: {report.failed[0][1]}" if report.failed else "no image files") + ")")
            hits = db.search(query_image, k=5)
        for h in hits:
            state = f"{h.num_inliers} inliers ({h.geometry})" if h.verified else "not verified"
            print(f"#{h.rank} {h.path}  global {h.global_score:.3f}  {state}")
        results = [(localmatch.load_image(h.path), f"#{h.rank} {h.num_inliers} inl" if h.verified else f"#{h.rank}",
                    h.verified) for h in hits]
        save_picture(ranking_strip(query_image, results), out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (localmatch.LocalmatchError, OSError) as e:  # an unusable image, an unwritable picture: the reason
        sys.exit(f"error: {e}")
