"""The ``localmatch`` command line. Only this module prints."""

from __future__ import annotations

import argparse
import json
import logging
import sys

import numpy as np

from localmatch.api import DEFAULT_MIN_INLIERS, verify
from localmatch.errors import LocalmatchError
from localmatch.features import FEATURES
from localmatch.geometry import GEOMETRIES, GEOMETRY_BACKENDS
from localmatch.io import describe_source, load_image
from localmatch.matching import MATCHERS
from localmatch.types import Verification

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def _verification_json(image_a: str, image_b: str, result: Verification) -> dict:
    return {"image_a": image_a, "image_b": image_b, **result.to_dict()}


def _describe(result: Verification) -> str:
    verdict = "MATCH" if result.is_match else "no match"
    model = result.geometry or "no model"
    return f"{verdict}: {result.num_inliers} inliers of {result.num_matches} matches, {model}, score {result.score:.3f}"


def _add_pipeline_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", default="sift", help=f"feature extractor ({', '.join(FEATURES.names())})")
    p.add_argument("--matcher", default="nn", help=f"matcher ({', '.join(MATCHERS.names())})")
    p.add_argument("--geometry", default="auto", choices=GEOMETRIES, help="model to fit (default: auto)")
    p.add_argument("--backend", default="opencv", help=f"robust estimator ({', '.join(GEOMETRY_BACKENDS.names())})")
    p.add_argument("--min-inliers", type=int, default=DEFAULT_MIN_INLIERS, help="inliers needed for a match")


def cmd_verify(args: argparse.Namespace) -> int:
    image_a, image_b = load_image(args.image_a), load_image(args.image_b)
    result = verify(image_a, image_b, features=args.features, matcher=args.matcher, geometry=args.geometry,
                    backend=args.backend, min_inliers=args.min_inliers)
    if args.draw:
        from localmatch.viz import save_picture, side_by_side

        save_picture(side_by_side(image_a, image_b, result.points_a, result.points_b), args.draw)
    if args.json:
        print(json.dumps(_verification_json(describe_source(args.image_a), describe_source(args.image_b), result)))
    else:
        print(f"{args.image_a} <-> {args.image_b}")
        print(_describe(result))
        if result.matrix is not None:
            print(f"{result.geometry} (A -> B, original pixels):")
            print(np.array2string(result.matrix, precision=6, suppress_small=True))
        if args.draw:
            print(f"picture: {args.draw}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from localmatch.demo import corner_error, demo_pairs

    report = []
    for pair in demo_pairs():
        result = verify(pair.image_a, pair.image_b, geometry="auto")
        entry = {"pair": pair.name, **_verification_json(pair.image_a.source, pair.image_b.source, result),
                 "expected_match": pair.expect_match}
        line = f"{pair.name}: {_describe(result)}"
        if pair.true_homography is not None:
            h = verify(pair.image_a, pair.image_b, geometry="homography")
            err = corner_error(h.matrix, pair.true_homography, pair.image_a.width, pair.image_a.height)
            entry["homography_corner_error_px"] = err
            line += f"; homography corner error vs truth {err:.2f} px"
        report.append(entry)
        if not args.json:
            print(line)
    if args.json:
        print(json.dumps(report))
    ok = all(e["is_match"] == e["expected_match"] for e in report)
    if not args.json:
        print("demo: all verdicts as expected" if ok else "demo: some verdicts differ from the expected ones")
    return EXIT_OK if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localmatch", description="Do these images show the same thing, "
                                     "and how are they related?")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("verify", help="match and geometrically verify two images")
    p.add_argument("image_a")
    p.add_argument("image_b")
    _add_pipeline_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--draw", metavar="OUT.png", help="write a side-by-side picture of the inlier matches")
    p.set_defaults(run=cmd_verify)

    p = sub.add_parser("demo", help="verify built-in pairs made from images scikit-image ships")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except LocalmatchError as e:
        print(f"localmatch: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # e.g. the --draw picture could not be written
        print(f"localmatch: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
