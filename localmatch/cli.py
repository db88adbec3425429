"""The ``localmatch`` command line. Only this module prints."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sqlite3
import sys
from typing import Any

import numpy as np

from localmatch import __version__
from localmatch.api import DEFAULT_MIN_INLIERS, verify
from localmatch.errors import ConfigError, ImageError, LocalmatchError
from localmatch.features import FEATURES
from localmatch.geometry import GEOMETRIES, GEOMETRY_BACKENDS
from localmatch.io import Image, crop, describe_source, load_image
from localmatch.matching import DEFAULT_MATCHER, MATCHERS
from localmatch.rerank import DEFAULT_MATCHER_TOP, DEFAULT_RERANK_GEOMETRY
from localmatch.shortlist.asmk import REPRESENTATIONS
from localmatch.shortlist.index import INDEX_KINDS
from localmatch.types import Hit, Verification

EXIT_OK, EXIT_DAMAGED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a program killed by SIGPIPE
SEARCH_JSON_KEYS = ("rank", "path", "score", "global_score", "num_inliers", "geometry", "verified")


def _verification_json(image_a: str, image_b: str, result: Verification) -> dict:
    return {"image_a": image_a, "image_b": image_b, **result.to_dict()}


def _describe(result: Verification) -> str:
    verdict = "MATCH" if result.is_match else "no match"
    model = result.geometry or "no model"
    features = f" ({result.features} features)" if result.features else ""
    refined = " (refined)" if result.refined else ""
    return (f"{verdict}: {result.num_inliers} inliers of {result.num_matches} matches{features}, {model}{refined}, "
            f"score {result.score:.3f}")


def _key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` from the command line: VALUE read as JSON (``4096``, ``0.85``, ``true``, ``null``,
    ``[0.7071, 1.0]``, a list becoming a tuple), anything else kept as a string (``cpu``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (for example max_features=4096), not {text!r}")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return key.strip(), tuple(parsed) if isinstance(parsed, list) else parsed


def _box(text: str) -> tuple[float, ...]:
    """``X0,Y0,X1,Y1`` from the command line: four numbers."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected X0,Y0,X1,Y1 (four numbers, for example 120,40,380,300), not {text!r}")
    return values


def _matcher_top(text: str) -> int | None:
    """``--matcher-top``: a whole number >= 1, or ``all`` (None)."""
    if text == "all":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or 'all', not {text!r}")
    return int(text)


def _add_rerank_matcher(p: argparse.ArgumentParser) -> None:
    """``--matcher`` and ``--matcher-top`` of the commands that re-rank a database's shortlist."""
    p.add_argument("--matcher", default=None, help=_matcher_help("re-ranking matcher"))
    p.add_argument("--matcher-top", type=_matcher_top, default=DEFAULT_MATCHER_TOP, metavar="N|all",
                   help=f"a matcher other than nn verifies only the first N candidates after nn has re-ranked "
                        f"them all (default {DEFAULT_MATCHER_TOP}; 'all': every candidate, 0.2-1 s each with "
                        f"LightGlue on a CPU)")


CONFIG_OPTIONS = {
    "feature": "an option of the feature extractor, e.g. max_features=4096 or detection_threshold=0",
    "matcher": "an option of the matcher, e.g. ratio=0.85",
    "ransac": "an option of the robust estimator, e.g. threshold=2 (working-image pixels) or max_iterations=20000",
    "asmk": "an ASMK option, e.g. regions=clusters, idf=true or binary=false (--codebook-size takes precedence)",
}


def _add_config_options(p: argparse.ArgumentParser, *kinds: str) -> None:
    """``--feature-option``, ``--matcher-option``, ``--ransac-option``, ``--asmk-option KEY=VALUE`` (repeatable):
    the fields of the stage's config dataclass (``SiftConfig``, ``NNConfig``, ``RansacConfig``, ``AsmkConfig``...),
    checked by it."""
    for kind in kinds:
        p.add_argument(f"--{kind}-option", dest=f"{kind}_options", metavar="KEY=VALUE", type=_key_value,
                       action="append", help=CONFIG_OPTIONS[kind] + " (repeatable)")


def _config(args: argparse.Namespace, kind: str) -> dict | None:
    """The ``--KIND-option`` values as the dict a config is built from, or None when none were given."""
    pairs = getattr(args, f"{kind}_options", None)
    return dict(pairs) if pairs else None


def _matcher_help(what: str) -> str:
    """``--matcher``'s help: the matchers, and the default of each extractor (from ``DEFAULT_MATCHER``)."""
    defaults = ", ".join(f"{matcher} for {features}" for features, matcher in DEFAULT_MATCHER.items())
    return f"{what} ({', '.join(MATCHERS.names())}; default: {defaults}, nn for the others)"


def _add_pipeline_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", default="sift", help=f"feature extractor ({', '.join(FEATURES.names())})")
    p.add_argument("--matcher", default=None, help=_matcher_help("matcher"))
    p.add_argument("--geometry", default="auto", choices=GEOMETRIES,
                   help="model to fit (default: auto; homography for flat subjects such as documents)")
    p.add_argument("--backend", default="opencv", help=f"robust estimator ({', '.join(GEOMETRY_BACKENDS.names())})")
    p.add_argument("--min-inliers", type=int, default=DEFAULT_MIN_INLIERS, help="inliers needed for a match")
    _add_config_options(p, "feature", "matcher", "ransac")


def _stage_configs(args: argparse.Namespace) -> dict:
    return {"feature_config": _config(args, "feature"), "matcher_config": _config(args, "matcher"),
            "ransac": _config(args, "ransac")}


def cmd_verify(args: argparse.Namespace) -> int:
    if args.pairs:
        return _verify_pairs_file(args)
    image_a, image_b = load_image(args.image_a), load_image(args.image_b)
    result = verify(image_a, image_b, features=args.features, matcher=args.matcher, geometry=args.geometry,
                    backend=args.backend, min_inliers=args.min_inliers, fallback_features=args.fallback_features,
                    refine=args.refine, **_stage_configs(args))
    if args.draw:
        from localmatch.viz import save_picture, side_by_side

        homography = result.matrix if result.geometry == "homography" else None
        save_picture(side_by_side(image_a, image_b, result.points_a, result.points_b, homography=homography), args.draw)
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


def _verify_pairs_file(args: argparse.Namespace) -> int:
    """``localmatch verify --pairs FILE``: one line (or JSON object) per pair, as each is verified. An
    image that cannot be used is reported for its pairs, on stdout and stderr, and the run goes on; the
    exit status is then 2 (bad input), as for a single pair."""
    from localmatch.pairs import read_pairs, verify_pairs

    pairs = read_pairs(args.pairs, args.images_root)
    status = EXIT_OK
    for outcome in verify_pairs(pairs, features=args.features, matcher=args.matcher, geometry=args.geometry,
                                backend=args.backend, min_inliers=args.min_inliers,
                                fallback_features=args.fallback_features, refine=args.refine,
                                **_stage_configs(args)):
        if outcome.error:
            print(f"localmatch: {outcome.image_a} <-> {outcome.image_b}: {outcome.error}", file=sys.stderr)
            status = EXIT_BAD_INPUT
        if args.json:
            print(json.dumps(outcome.to_dict()), flush=True)
        else:
            verdict = _describe(outcome.verification) if outcome.verification else f"error: {outcome.error}"
            print(f"{outcome.image_a} <-> {outcome.image_b}: {verdict}", flush=True)
    return status


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


def _open_database(path: str, *, readonly: bool, must_exist: bool = True, **settings):
    from localmatch.database import DB_FILE, Database, DatabaseError

    if must_exist and not os.path.exists(os.path.join(path, DB_FILE)):
        raise DatabaseError(f"{path}: no localmatch database here (create one with `localmatch index build`)")
    return Database(path, readonly=readonly, **settings)


def _print_add_report(report, quiet: bool) -> None:
    for path, reason in report.failed:
        print(f"localmatch: skipped {path}: {reason}", file=sys.stderr)
    if not quiet:
        changed = f"; {len(report.replaced)} had changed since added: old entries replaced" if report.replaced else ""
        print(f"added {len(report.added)}, already indexed {len(report.skipped)}, failed {len(report.failed)}{changed}")


def _require_inputs(paths: list[str]) -> None:
    """Stop before any work when a file or folder named on the command line does not exist (a typo would
    otherwise create an empty database, or find no duplicates, and exit 0), and warn of a folder that holds
    no image file (the work goes on: the other inputs may hold some). Files that exist but do not decode are
    reported one by one as the work goes on."""
    from localmatch.database import IMAGE_SUFFIXES, image_files_under

    for path in paths:
        if not os.path.exists(path):
            raise ImageError(path, "no such file or folder")
        if os.path.isdir(path) and not any(image_files_under(path)):  # stops at the first: no second full walk
            print(f"localmatch: warning: {path}: no image files in this folder or below (file names ending "
                  f"{', '.join(IMAGE_SUFFIXES)}, any case; hidden ones left out)", file=sys.stderr)


def cmd_index_build(args: argparse.Namespace) -> int:
    from localmatch.database import DB_FILE, DatabaseError

    if os.path.exists(os.path.join(args.db, DB_FILE)):
        raise DatabaseError(f"{args.db}: a database already exists here (use `localmatch index add`)")
    _require_inputs(args.images)
    asmk = _config(args, "asmk") or {}
    if args.codebook_size is not None:
        asmk["codebook_size"] = args.codebook_size
    boxes = _read_boxes(args.boxes)
    with _open_database(args.db, readonly=False, must_exist=False, features=args.features, index=args.index,
                        whitening=args.whiten, representation=args.representation, asmk_config=asmk or None,
                        codebook=args.codebook, feature_config=_config(args, "feature")) as db:
        _print_add_report(db.add(args.images, progress=None if not args.quiet else False, boxes=boxes), args.quiet)
    return EXIT_OK


def _read_boxes(path: str | None) -> dict | None:
    """``{image path: [[x0, y0, x1, y1], ...]}`` from a JSON file (R-ASMK regions), or None."""
    from localmatch.database import DatabaseError

    if path is None:
        return None
    try:
        with open(path, "rb") as f:  # bytes: json detects UTF-8 (with or without a byte-order mark) and UTF-16
            boxes = json.loads(f.read())
    except (OSError, ValueError) as e:
        raise DatabaseError(f"{path}: cannot read boxes ({e})") from None
    if not isinstance(boxes, dict):
        raise DatabaseError(f"{path}: boxes must be a JSON object mapping image paths to lists of [x0, y0, x1, y1]")
    return boxes


def cmd_index_add(args: argparse.Namespace) -> int:
    _require_inputs(args.images)
    with _open_database(args.db, readonly=False) as db:
        _print_add_report(db.add(args.images, progress=None if not args.quiet else False,
                                 boxes=_read_boxes(args.boxes)), args.quiet)
    return EXIT_OK


def cmd_index_remove(args: argparse.Namespace) -> int:
    """Remove by path (as added) or id; items that name no image are listed on stderr (exit status 2)."""
    with _open_database(args.db, readonly=False) as db:
        images = db.images()
        ids, paths = {image_id for image_id, _ in images}, {path for _, path in images}
        items = [int(x) if x.isdigit() and x not in paths else x for x in args.items]
        missing = [x for x, item in zip(args.items, items) if item not in ids and item not in paths]
        removed = db.remove(items)
    print(f"removed {removed}")
    for item in missing:
        print(f"localmatch: {args.db}: no image with path or id {item!r} (paths are matched as they were added; "
              "`localmatch index list` shows them)", file=sys.stderr)
    return EXIT_BAD_INPUT if missing else EXIT_OK


def cmd_index_list(args: argparse.Namespace) -> int:
    with _open_database(args.db, readonly=True) as db:
        images = db.images()
    if args.json:
        print(json.dumps([{"id": image_id, "path": path} for image_id, path in images]))
    else:
        for image_id, path in images:
            print(f"{image_id}\t{path}")
    return EXIT_OK


def cmd_index_info(args: argparse.Namespace) -> int:
    with _open_database(args.db, readonly=True) as db:
        info = db.info()
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key}: {value:.0f}" if isinstance(value, float) else f"{key}: {value}")
    return EXIT_OK


def cmd_index_check(args: argparse.Namespace) -> int:
    """Exit status 1 when damage was found (with ``--repair``: when some is left), 0 when none."""
    from localmatch.database import remove_command

    if args.repair and args.quick:
        raise ConfigError("--repair checks every image fully; it cannot be --quick")
    with _open_database(args.db, readonly=not args.repair) as db:
        progress = None if not args.json else False
        repair = db.repair(progress=progress) if args.repair else None
        report = repair.check if repair is not None else db.check(quick=args.quick, progress=progress)
    outcome = repair if repair is not None else report  # what the exit status and --json give
    if args.json:
        print(json.dumps(outcome.to_dict()))
        return EXIT_OK if outcome.ok else EXIT_DAMAGED
    for image in report.damaged:
        print(f"damaged: image {image.image_id} ({image.path}): {image.reason}")
    for problem in report.problems:
        print(f"problem: {problem}")
    for note in report.notes:
        print(f"note: {note}")
    how = "records only" if args.quick else f"{report.checksummed} against their checksums"
    print(f"checked {report.images} images ({how}): "
          + ("no damage found" if report.ok else f"{len(report.damaged)} damaged, {len(report.problems)} other problems"))
    if repair is not None:
        for mended in repair.repaired:
            print(f"repaired: image {mended.image_id} ({mended.path}) is image {mended.new_id} now")
        for image in repair.left:
            print(f"not repaired: image {image.image_id} ({image.path}): {image.reason}")
    elif report.damaged:
        print(f"remove the damaged images with `{remove_command(args.db, [i.image_id for i in report.damaged])}`, "
              f"then add their files again; or index them again from their files with `localmatch index check "
              f"{shlex.quote(args.db)} --repair`")
    return EXIT_OK if outcome.ok else EXIT_DAMAGED


def cmd_search(args: argparse.Namespace) -> int:
    """Search each query (a folder: each image in it); one that cannot be read is reported (``error``, and on
    stderr) and the rest go on."""
    from localmatch.database import expand_image_paths

    out: list[dict[str, Any]] = []
    sections: list[tuple[str, list[tuple[Image | None, str]]]] = []  # the report's, see viz.html_page
    queries = expand_image_paths(args.queries)
    if not queries:
        raise ImageError(" ".join(args.queries), "no image files to search with")
    if args.box is not None and len(queries) != 1:
        raise ConfigError(f"--box crops one query image, and {len(queries)} were given")
    with _open_database(args.db, readonly=True) as db:
        for n, query in enumerate(queries):
            try:  # decoded here when it is drawn too, so that it is decoded once
                image = load_image(query, max_pixels=db.feature_config.max_pixels) if args.draw or args.report else None
                hits = db.search(query if image is None else image, k=args.k, shortlist=args.shortlist,
                                 rerank=not args.no_rerank, matcher=args.matcher, matcher_top=args.matcher_top,
                                 geometry=args.geometry, min_inliers=args.min_inliers,
                                 matcher_config=_config(args, "matcher"),
                                 ransac=_config(args, "ransac"), box=args.box)
            except ImageError as e:
                print(f"localmatch: error: {e}", file=sys.stderr)
                out.append({"query": query, "error": e.reason, "results": []})
                continue
            results = [{key: hit[key] for key in SEARCH_JSON_KEYS} for hit in map(Hit.to_dict, hits)]
            out.append({"query": query, **({"box": list(args.box)} if args.box else {}), "results": results})
            if image is not None:
                draw = None
                if args.draw:
                    stem, ext = os.path.splitext(args.draw)
                    draw = args.draw if len(queries) == 1 else f"{stem}_{n + 1}{ext or '.png'}"
                _write_search_pictures(query, image, hits, draw, sections, args.box)
            if not args.json:
                print(query)
                for h in hits:
                    mark = f"{h.num_inliers} inliers" if h.verified else "not verified"
                    print(f"  {h.rank:3d}  {h.path}  {db.representation} {h.global_score:.3f}  {mark}")
    if args.report:
        from localmatch.viz import html_page

        with open(args.report, "w", encoding="utf-8") as f:
            f.write(html_page("localmatch search", sections))
    if args.json:
        print(json.dumps(out))
    return EXIT_BAD_INPUT if any("error" in o for o in out) else EXIT_OK


def cmd_dedup(args: argparse.Namespace) -> int:
    from localmatch.dedup import find_duplicates

    _require_inputs(args.images)
    report = find_duplicates(args.images, database=args.db, shortlist=args.shortlist, mirror=not args.no_mirror,
                             min_inliers=args.min_inliers, progress=False if args.quiet else None)
    for path, reason in report.failed:
        print(f"localmatch: skipped {path}: {reason}", file=sys.stderr)
    if args.report:
        _write_dedup_report(report, args.report)
    if args.json:
        print(json.dumps({"groups": report.groups, "pairs": [p.to_dict() for p in report.pairs]}))
    else:
        for i, group in enumerate(report.groups, start=1):
            print(f"group {i}: " + "  ".join(group))
        same = [p for p in report.pairs if p.relation == "same-scene"]
        print(f"{len(report.groups)} groups of duplicates; {len(same)} more pairs show the same scene in other photos")
    return EXIT_OK


def _write_dedup_report(report, out: str) -> None:
    from localmatch.viz import dedup_report_html

    with open(out, "w", encoding="utf-8") as f:
        f.write(dedup_report_html(report))


def _write_search_pictures(query: str, query_image: Image, hits, draw: str | None, report_sections: list,
                           box=None) -> None:
    """The ranking strip (``draw``) and the report's section of the query at path ``query``; with a ``box``,
    the query tile shows the part of the query that was searched."""
    from localmatch.viz import ranking_strip, save_picture

    if box is not None:
        query_image = crop(query_image, box)[0]
    shown = []
    for h in hits:
        try:
            shown.append((load_image(h.path), h))
        except LocalmatchError:
            continue
    if draw:
        results = [(im, f"#{h.rank} {h.num_inliers} inl" if h.verified else f"#{h.rank} {h.global_score:.2f}", h.verified)
                   for im, h in shown]
        save_picture(ranking_strip(query_image, results), draw)
    report_sections.append((f"Query {query}", [(query_image, "query")] + [
        (im, f"#{h.rank} {h.path} - {h.num_inliers} inliers" if h.verified else f"#{h.rank} {h.path} - not verified")
        for im, h in shown]))


def cmd_eval(args: argparse.Namespace) -> int:
    from localmatch.evaluate import evaluate, load_ground_truth

    truth = load_ground_truth(args.ground_truth, protocol=args.protocol, images_root=args.images_root)
    with _open_database(args.db, readonly=True) as db:
        report = evaluate(db, truth, rerank=not args.no_rerank, shortlist=args.shortlist,
                          exclude_query=not args.keep_query, ukbench=args.ukbench, matcher=args.matcher,
                          matcher_top=args.matcher_top, geometry=args.geometry,
                          matcher_config=_config(args, "matcher"), ransac=_config(args, "ransac"))
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        for key, value in report.to_dict().items():
            print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localmatch", description="Do these images show the same thing, "
                                     "and how are they related?")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    parser.add_argument("--version", action="version", version=f"localmatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("verify", help="match and geometrically verify two images (or a list of pairs)")
    p.add_argument("image_a", nargs="?")
    p.add_argument("image_b", nargs="?")
    p.add_argument("--pairs", metavar="PAIRS.txt",
                   help="verify the pairs listed in this file instead (two image paths per line, tab- or "
                        "space-separated, as hloc's pairs files), each image extracted once; one line per pair")
    p.add_argument("--images-root", metavar="DIR", help="folder the pairs file's relative paths are under "
                   "(default: the current folder)")
    _add_pipeline_options(p)
    p.add_argument("--fallback-features", metavar="NAME",
                   help="when the pair does not verify, try again with these features and nn (asift: strong "
                        "viewpoint change, about 0.5-2.5 s more per retried pair)")
    p.add_argument("--refine", action="store_true",
                   help="refine a verified homography that tilts A (25 degrees or more) by matching again with one "
                        "image warped into the other's frame (about 0.1 s more per such pair)")
    p.add_argument("--json", action="store_true", help="print one JSON object (with --pairs: one per line)")
    p.add_argument("--draw", metavar="OUT.png", help="write a side-by-side picture of the inlier matches")
    p.set_defaults(run=cmd_verify)

    index = sub.add_parser("index", help="build and maintain an image database").add_subparsers(
        dest="index_command", required=True)
    p = index.add_parser("build", help="create a database from images and folders of images")
    p.add_argument("db")
    p.add_argument("images", nargs="+")
    p.add_argument("--features", default="sift", help=f"local features ({', '.join(FEATURES.names())})")
    p.add_argument("--index", default="flat", choices=INDEX_KINDS, help="shortlist index (default: exact)")
    p.add_argument("--whiten", type=int, default=0, metavar="DIMS",
                   help="PCA-whiten global descriptors to DIMS, learned on the database (default 0: off)")
    p.add_argument("--representation", default="global", choices=REPRESENTATIONS,
                   help="what shortlists: one global vector per image (default), ASMK* or regional ASMK*")
    p.add_argument("--codebook-size", type=int, default=None, help="ASMK visual words (default 1024)")
    p.add_argument("--codebook", metavar="WORDS.npy", help="use this (K, D) float32 codebook instead of training one")
    p.add_argument("--boxes", metavar="BOXES.json", help='R-ASMK regions: {"image path": [[x0, y0, x1, y1], ...]}')
    _add_config_options(p, "feature", "asmk")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(run=cmd_index_build)
    p = index.add_parser("add", help="add images (already indexed content is skipped)")
    p.add_argument("db")
    p.add_argument("images", nargs="+")
    p.add_argument("--boxes", metavar="BOXES.json", help="R-ASMK regions of these images (see index build)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(run=cmd_index_add)
    p = index.add_parser("remove", help="remove images by path (as added) or id")
    p.add_argument("db")
    p.add_argument("items", nargs="+")
    p.set_defaults(run=cmd_index_remove)
    p = index.add_parser("list", help="id and path (as added) of every image, in the order they were added")
    p.add_argument("db")
    p.add_argument("--json", action="store_true", help='print [{"id", "path"}, ...]')
    p.set_defaults(run=cmd_index_list)
    p = index.add_parser("info", help="images, features and bytes per image")
    p.add_argument("db")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_index_info)
    p = index.add_parser("check", help="look for damaged images and files (exit status 1 when any is found), and "
                                       "with --repair index damaged images again (exit status 1 when any is left)")
    p.add_argument("db")
    p.add_argument("--quick", action="store_true", help="check the records and files, not every image's stored "
                                                        "features against its checksum")
    p.add_argument("--repair", action="store_true", help="then index each damaged image again from its file (it "
                                                         "gets a new id); images whose file is gone are left")
    p.add_argument("--json", action="store_true", help='print {"ok", "images", "checksummed", "damaged": [...], '
                                                       '"problems", "notes"}; with --repair {"ok", "check": {...}, '
                                                       '"repaired": [...], "left": [...]}')
    p.set_defaults(run=cmd_index_check)

    p = sub.add_parser("search", help="find database images showing what the queries show")
    p.add_argument("db")
    p.add_argument("queries", nargs="+", help="query images, or folders of them")
    p.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--shortlist", type=int, default=100, help="candidates verified per query (default 100)")
    p.add_argument("--no-rerank", action="store_true", help="global shortlist order only")
    p.add_argument("--box", type=_box, metavar="X0,Y0,X1,Y1",
                   help="search with this part of the query image (original pixels; one query)")
    _add_rerank_matcher(p)
    p.add_argument("--geometry", default=DEFAULT_RERANK_GEOMETRY, choices=GEOMETRIES)
    p.add_argument("--min-inliers", type=int, default=DEFAULT_MIN_INLIERS)
    _add_config_options(p, "matcher", "ransac")
    p.add_argument("--json", action="store_true", help="print one JSON array, one object per query")
    p.add_argument("--draw", metavar="OUT.png", help="ranking strip picture (OUT_N.png for several queries)")
    p.add_argument("--report", metavar="OUT.html", help="HTML page with thumbnails of every query's results")
    p.set_defaults(run=cmd_search)

    p = sub.add_parser("dedup", help="groups of near-duplicates, told apart from other photos of a scene")
    p.add_argument("images", nargs="+", help="image files and folders")
    p.add_argument("--json", action="store_true", help='print {"groups": [...], "pairs": [...]}')
    p.add_argument("--report", metavar="OUT.html", help="HTML page with thumbnails of the groups")
    p.add_argument("--db", help="keep the index in this folder (reused next time) instead of a temporary one")
    p.add_argument("--shortlist", type=int, default=10, help="candidates verified per image (default 10)")
    p.add_argument("--min-inliers", type=int, default=DEFAULT_MIN_INLIERS)
    p.add_argument("--no-mirror", action="store_true", help="do not look for mirrored copies")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=cmd_dedup)

    p = sub.add_parser("eval", help="retrieval metrics of a database against ground truth")
    p.add_argument("db")
    p.add_argument("ground_truth", help="JSON layout of localmatch.evaluate, or a Revisited Oxford/Paris gnd_*.mat")
    p.add_argument("--protocol", default="medium", choices=("easy", "medium", "hard"))
    p.add_argument("--images-root", default=None, help="folder of the images named in a .mat ground truth")
    p.add_argument("--shortlist", type=int, default=100)
    p.add_argument("--no-rerank", action="store_true")
    _add_rerank_matcher(p)
    p.add_argument("--geometry", default=DEFAULT_RERANK_GEOMETRY, choices=GEOMETRIES)
    _add_config_options(p, "matcher", "ransac")
    p.add_argument("--keep-query", action="store_true", help="keep the query itself in its ranking")
    p.add_argument("--ukbench", action="store_true", help="also report the UKBench N-S score")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("demo", help="verify built-in pairs made from images scikit-image ships")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "verify":
        two_images = args.image_a is not None and args.image_b is not None
        if (args.pairs is None and not two_images) or (args.pairs is not None and args.image_a is not None):
            parser.error("verify takes two images, or --pairs FILE")
        if args.pairs is not None and args.draw:
            parser.error("--draw pictures one pair; it cannot be used with --pairs")
        if args.images_root is not None and args.pairs is None:
            parser.error("--images-root goes with --pairs")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except BrokenPipeError:  # `localmatch ... | head`: the reader has gone; stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
        return EXIT_BROKEN_PIPE
    except LocalmatchError as e:
        print(f"localmatch: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except sqlite3.OperationalError as e:  # "database or disk is full", "database is locked"...: not damage
        print(f"localmatch: error: {getattr(args, 'db', '')}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except sqlite3.DatabaseError as e:  # damage that opening the database could not see
        print(f"localmatch: error: {getattr(args, 'db', '')}: the database file is damaged ({e})", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # e.g. the --draw picture could not be written
        print(f"localmatch: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
