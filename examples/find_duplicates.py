"""Find groups of near-duplicates in folders of images and write an HTML report with thumbnails.

    python examples/find_duplicates.py PHOTOS_DIR [MORE_DIRS...] [--report duplicates.html]

With no folder it uses a built-in collection made from photographs scikit-image ships (a crop, a
rotation, a mirror image and a re-compressed copy among them), written to a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from localmatch.dedup import find_duplicates
from localmatch.demo import write_demo_collection
from localmatch.viz import dedup_report_html


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*")
    parser.add_argument("--report", default="duplicates.html")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folders = args.folders or [tmp]
        if not args.folders:
            write_demo_collection(tmp)
        report = find_duplicates(folders)
        for i, group in enumerate(report.groups, start=1):
            print(f"group {i}: " + ", ".join(group))
        for pair in report.pairs:
            if pair.relation == "same-scene":
                print(f"same scene, other photo: {pair.a} <-> {pair.b} ({pair.num_inliers} inliers)")
        for path, reason in report.failed:
            print(f"could not read {path}: {reason}")
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(dedup_report_html(report))
    print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
