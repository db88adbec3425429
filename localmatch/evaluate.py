"""Retrieval metrics and the evaluation loop.

Ground truth (JSON, documented layout)::

    {"queries": [
        {"query": "path/of/query.jpg",            # as added to the database, or any image file
         "positives": ["path/a.jpg", ...],        # database paths (as added) that should be found
         "junk": ["path/c.jpg", ...],             # optional: ignored when ranking is scored
         "bbox": [x0, y0, x1, y1]},               # optional: query region (Revisited Oxford/Paris)
        ...]}

Revisited Oxford/Paris ground truth (``gnd_roxford5k.mat`` / ``gnd_rparis6k.mat``, read with scipy; the
``.pkl`` variant is not read because nothing from disk is unpickled) is turned into this layout per
protocol: Easy (positives easy; junk junk+hard), Medium (positives easy+hard; junk junk) and Hard
(positives hard; junk junk+easy), as in Radenovic et al., CVPR 2018.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from localmatch.config import require_flag, require_whole
from localmatch.errors import GroundTruthError
from localmatch.matfile import read_revisited_mat

log = logging.getLogger(__name__)

PROTOCOLS = ("easy", "medium", "hard")


@dataclass(frozen=True)
class QueryTruth:
    query: str
    positives: frozenset[str]
    junk: frozenset[str] = frozenset()
    bbox: tuple[float, float, float, float] | None = None


def average_precision(ranked: Sequence[str], positives: Iterable[str], junk: Iterable[str] = ()) -> float:
    """AP of one ranked list, junk removed from the list; positives never retrieved count as misses.

    Same interpolation as the Revisited Oxford/Paris ``compute_ap`` (trapezoids between recall steps).
    """
    positives, junk = set(positives), set(junk)
    if not positives:
        return float("nan")
    kept = [r for r in ranked if r not in junk]
    hits = [i for i, r in enumerate(kept) if r in positives]
    ap, recall_step = 0.0, 1.0 / len(positives)
    for j, i in enumerate(hits):
        precision_0 = 1.0 if i == 0 else j / i
        precision_1 = (j + 1) / (i + 1)
        ap += (precision_0 + precision_1) * recall_step / 2.0
    return ap


def _top(ranked: Sequence[str], k: int, junk: Iterable[str]) -> list[str]:
    """The first ``k`` of ``ranked`` once the junk is taken out."""
    junk = set(junk)
    return [r for r in ranked if r not in junk][:k]


def precision_at_k(ranked: Sequence[str], positives: Iterable[str], k: int, junk: Iterable[str] = ()) -> float:
    """Share of the top ``k`` places (junk removed) that hold a positive; NaN for a query without positives,
    which :func:`evaluate` leaves out of its means, as the Revisited Oxford/Paris ``compute_map`` does."""
    positives = set(positives)
    if not positives:
        return float("nan")
    return sum(r in positives for r in _top(ranked, k, junk)) / k


def recall_at_k(ranked: Sequence[str], positives: Iterable[str], k: int, junk: Iterable[str] = ()) -> float:
    """1 when at least one positive is in the top ``k`` (junk removed), else 0 (place-recognition recall);
    NaN for a query without positives."""
    positives = set(positives)
    if not positives:
        return float("nan")
    return float(any(r in positives for r in _top(ranked, k, junk)))


def ndcg_at_k(ranked: Sequence[str], positives: Iterable[str], k: int, junk: Iterable[str] = ()) -> float:
    """Normalised discounted cumulative gain with binary relevance, junk removed."""
    positives = set(positives)
    dcg = sum(1.0 / np.log2(i + 2) for i, r in enumerate(_top(ranked, k, junk)) if r in positives)
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(k, len(positives))))
    return dcg / ideal if ideal else float("nan")


def ukbench_ns(ranked: Sequence[str], group: Iterable[str]) -> float:
    """UKBench N-S score of one query: how many of its group of 4 (itself included) are in the top 4."""
    return float(sum(r in set(group) for r in ranked[:4]))


def load_ground_truth(path: str | os.PathLike, *, protocol: str = "medium", images_root: str | None = None,
                      suffix: str = ".jpg") -> list[QueryTruth]:
    """Read the JSON layout above, or a Revisited Oxford/Paris ``gnd_*.mat`` for one protocol.

    For ``.mat`` files, image names are turned into paths as ``images_root/name + suffix``. A file that
    cannot be read or is not in the layout raises ``GroundTruthError`` naming the file and the reason.
    """
    path = Path(path)
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    if path.suffix == ".pkl":
        raise GroundTruthError(f"{path}: pickle files are not read; use the .mat ground truth or the JSON layout")
    if path.suffix == ".mat":
        return _load_revisited(path, protocol, images_root or "", suffix)
    try:
        data = json.loads(path.read_bytes())
    except OSError as e:
        raise GroundTruthError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise GroundTruthError(f"{path}: not JSON ({e})") from None
    queries = data.get("queries") if isinstance(data, dict) else None
    if not isinstance(queries, list):
        raise GroundTruthError(f'{path}: expected an object {{"queries": [...]}} (layout in localmatch.evaluate)')
    return [_json_query(path, i, q) for i, q in enumerate(queries)]


def _json_query(path: Path, index: int, entry: object) -> QueryTruth:
    """One entry of the JSON layout, checked field by field."""
    def fail(reason: str) -> GroundTruthError:
        return GroundTruthError(f"{path}: queries[{index}]: {reason}")

    if not isinstance(entry, dict):
        raise fail("expected an object with \"query\" and \"positives\"")
    if not isinstance(entry.get("query"), str):
        raise fail('"query" must be a path (a string)')
    paths = {}
    for key in ("positives", "junk"):
        value = entry.get(key, [] if key == "junk" else None)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(f'"{key}" must be a list of paths (strings)')
        paths[key] = frozenset(value)
    bbox = entry.get("bbox") or None  # absent, null or []: the whole query image
    if bbox is not None:
        if not isinstance(bbox, list) or not _is_box(bbox):
            raise fail('"bbox" must be [x0, y0, x1, y1], four finite numbers with x0 < x1 and y0 < y1')
        bbox = tuple(bbox)
    return QueryTruth(entry["query"], paths["positives"], paths["junk"], bbox)


def _is_box(values: Sequence) -> bool:
    """``values`` are a box ``x0, y0, x1, y1``: four finite numbers with ``x0 < x1`` and ``y0 < y1``."""
    return (len(values) == 4 and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                                     and np.isfinite(v) for v in values)
            and values[0] < values[2] and values[1] < values[3])


def _load_revisited(path: Path, protocol: str, images_root: str, suffix: str) -> list[QueryTruth]:
    mat = read_revisited_mat(path)  # in a child process: scipy's reader can crash on a corrupt file
    imlist = mat["imlist"]

    def names(indices: list[float], field_name: str) -> set[str]:  # 0-based indices into imlist
        if not all(float(i).is_integer() and 0 <= i < len(imlist) for i in indices):
            raise GroundTruthError(f"{path}: gnd.{field_name} holds indices that are not in imlist "
                                   f"(0-{len(imlist) - 1})")
        return {os.path.join(images_root, imlist[int(i)] + suffix) for i in indices}

    out = []
    for q, g in zip(mat["qimlist"], mat["gnd"]):
        easy, hard, junk = names(g["easy"], "easy"), names(g["hard"], "hard"), names(g["junk"], "junk")
        positives, ignore = {"easy": (easy, junk | hard), "medium": (easy | hard, junk),
                             "hard": (hard, junk | easy)}[protocol]
        bbx = tuple(g["bbx"]) if g["bbx"] is not None else None
        if bbx is not None and not _is_box(bbx):
            raise GroundTruthError(f"{path}: gnd.bbx of query {q} is not four finite numbers x0 < x1, y0 < y1")
        out.append(QueryTruth(os.path.join(images_root, q + suffix), frozenset(positives), frozenset(ignore), bbx))
    return out


def ground_truth_from_folders(paths: Sequence[str]) -> list[QueryTruth]:
    """Every image queries; the other images of its folder are its positives (multiview_dev's layout)."""
    by_folder: dict[str, set[str]] = {}
    for p in paths:
        by_folder.setdefault(os.path.dirname(p), set()).add(p)
    return [QueryTruth(p, frozenset(by_folder[os.path.dirname(p)] - {p})) for p in paths]


@dataclass
class EvaluationReport:
    """Mean metrics over queries, with speed and size beside them. A query without positives has no AP,
    precision, recall or NDCG, and is left out of those means (the N-S score counts the query itself)."""

    queries: int
    mean_ap: float
    precision_at: dict[int, float] = field(default_factory=dict)
    recall_at: dict[int, float] = field(default_factory=dict)
    ndcg_at: dict[int, float] = field(default_factory=dict)
    ukbench_ns: float | None = None
    latency_ms: float = 0.0
    bytes_per_image: float = 0.0
    #: positives of the ground truth that no database image has as its path: they can only count as misses
    missing_positives: int = 0

    def to_dict(self) -> dict:
        return {"queries": self.queries, "mAP": self.mean_ap,
                **{f"mP@{k}": v for k, v in self.precision_at.items()},
                **{f"recall@{k}": v for k, v in self.recall_at.items()},
                **{f"NDCG@{k}": v for k, v in self.ndcg_at.items()},
                **({"N-S": self.ukbench_ns} if self.ukbench_ns is not None else {}),
                "latency_ms": self.latency_ms, "bytes_per_image": self.bytes_per_image,
                "missing_positives": self.missing_positives}


def evaluate(database, truth: Sequence[QueryTruth], *, ks: Sequence[int] = (1, 5, 10), rerank: bool = True,
             shortlist: int = 100, exclude_query: bool = True, ukbench: bool = False, **search_options) -> EvaluationReport:
    """Search every query and score the rankings.

    Args:
        database: an open :class:`~localmatch.database.Database`.
        exclude_query: drop the query's own path from its ranking (every-image-queries protocols).
        ukbench: also report the N-S score (the query counts as one of its group of 4).

    A query with a ``bbox`` searches with that part of its image (``Database.search(..., box=bbox)``).
    """
    for k in ks:
        require_whole(k, "ks (the cut-offs of precision, recall and NDCG)", 1)
    for name, flag in (("rerank", rerank), ("exclude_query", exclude_query), ("ukbench", ukbench)):
        require_flag(flag, name)
    absent = [q.query for q in truth if not os.path.isfile(q.query)]
    if absent:  # found before any search, not after an hour of them
        raise GroundTruthError(f"{len(absent)} of the {len(truth)} queries are not files, for example {absent[0]!r}")
    depth = len(database)
    stored = {path for _, path in database.images()}
    missing = sorted({p for q in truth for p in q.positives} - stored)
    if missing:  # a path spelt otherwise than when it was added would quietly score as a miss
        log.warning("%d positives of the ground truth are not database paths (as added), for example %r; "
                    "they count as misses", len(missing), missing[0])
    aps: list[float] = []
    prec: dict[int, list[float]] = {k: [] for k in ks}
    rec: dict[int, list[float]] = {k: [] for k in ks}
    ndcg: dict[int, list[float]] = {k: [] for k in ks}
    ns: list[float] = []
    seconds: list[float] = []
    for q in truth:
        start = time.perf_counter()
        hits = database.search(q.query, k=depth, shortlist=shortlist, rerank=rerank, box=q.bbox, **search_options)
        seconds.append(time.perf_counter() - start)
        ranked = [h.path for h in hits]
        if ukbench:
            ns.append(ukbench_ns(ranked, q.positives | {q.query}))
        if exclude_query:
            ranked = [r for r in ranked if r != q.query]
        aps.append(average_precision(ranked, q.positives, q.junk))
        for k in ks:
            prec[k].append(precision_at_k(ranked, q.positives, k, q.junk))
            rec[k].append(recall_at_k(ranked, q.positives, k, q.junk))
            ndcg[k].append(ndcg_at_k(ranked, q.positives, k, q.junk))
    mean = lambda xs: float(np.nanmean(xs)) if len(xs) else float("nan")  # noqa: E731
    return EvaluationReport(
        queries=len(truth), mean_ap=mean(aps), precision_at={k: mean(v) for k, v in prec.items()},
        recall_at={k: mean(v) for k, v in rec.items()}, ndcg_at={k: mean(v) for k, v in ndcg.items()},
        ukbench_ns=mean(ns) if ukbench else None, latency_ms=1000 * float(np.median(seconds)) if seconds else 0.0,
        bytes_per_image=database.info()["bytes_per_image"], missing_positives=len(missing))
