"""Fusion of retrieval runs (hybrid search): reciprocal rank fusion and convex combination.

A run is ``{query_id: {doc_id: score}}`` (higher is better), the shape ranx and pytrec_eval use. Each
function returns a fused run of the same shape, every query's documents ordered by fused score
descending, ties by doc id descending (pytrec_eval's order, as
:func:`embedlab.eval.evaluators.rank_documents` breaks them).

* :func:`rrf`: ``score(d) = sum over runs of 1 / (k + rank(d))``, rank 1-based within the run's list for
  that query (ties in a run ranked by doc id descending); a document absent from a run adds nothing
  (Cormack, Clarke & Büttcher, SIGIR 2009; k = 60).
* :func:`convex`: ``score(d) = sum over runs of w_r * norm_r(d)``, each run normalized per query over the
  documents it retrieved for that query only; a document absent from a run gets ``missing`` (0 by
  default) from it. Norms: ``min-max`` ((s - min) / (max - min)) and ``z-score`` ((s - mean) / std,
  population std). A list whose scores are all equal (one document, say) normalizes to 0 under both.
  Weights must be positive; they need not sum to 1.

The queries are the union of the runs' queries; a query missing from a run is an empty list there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from embedlab.errors import ConfigError, InputError
from embedlab.validation import choice, finite_float, positive_number

Run = dict[str, dict[str, float]]
METHODS = ("rrf", "convex")
NORMS = ("min-max", "z-score")
_PARAMS = {"rrf": ("k",), "convex": ("weights", "norm", "missing")}


def _check_runs(runs: Any) -> list[Mapping[str, Mapping[str, float]]]:
    if isinstance(runs, Mapping) or not isinstance(runs, Sequence) or not runs:
        raise InputError("runs must be a non-empty list of runs ({query_id: {doc_id: score}})")
    for r, run in enumerate(runs):
        if not isinstance(run, Mapping):
            raise InputError(f"run {r} must be a dict {{query_id: {{doc_id: score}}}}; got {type(run).__name__}")
        for qid, docs in run.items():
            if not isinstance(docs, Mapping):
                raise InputError(f"run {r}, query {qid!r}: results must be a dict {{doc_id: score}}")
            for doc, score in docs.items():
                if not isinstance(doc, str):
                    raise InputError(f"run {r}, query {qid!r}: doc ids must be strings; got {doc!r}")
                if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                    raise InputError(
                        f"run {r}, query {qid!r}, doc {doc!r}: score must be a finite number; got {score!r}"
                    )
    return list(runs)


def _queries(runs: list[Mapping[str, Mapping[str, float]]]) -> list[str]:
    seen: dict[str, None] = {}
    for run in runs:
        seen.update(dict.fromkeys(run))
    return list(seen)


def _ranked(docs: Mapping[str, float]) -> list[str]:
    """Doc ids by score descending, ties by doc id descending."""
    return sorted(sorted(docs, reverse=True), key=lambda d: -docs[d])


def _sorted_run(fused: dict[str, dict[str, float]]) -> Run:
    return {qid: {d: docs[d] for d in _ranked(docs)} for qid, docs in fused.items()}


def rrf(runs: Sequence[Mapping[str, Mapping[str, float]]], k: float = 60) -> Run:
    """Reciprocal rank fusion: ``sum over runs of 1 / (k + rank)``, 1-based ranks (see the module docstring)."""
    checked = _check_runs(runs)
    k = finite_float("k", k, low=0)
    fused: dict[str, dict[str, float]] = {}
    for qid in _queries(checked):
        acc: dict[str, float] = {}
        for run in checked:
            for rank, doc in enumerate(_ranked(run.get(qid, {})), start=1):
                acc[doc] = acc.get(doc, 0.0) + 1.0 / (k + rank)
        fused[qid] = acc
    return _sorted_run(fused)


def _normalize(docs: Mapping[str, float], norm: str) -> dict[str, float]:
    if not docs:
        return {}
    scores = [float(s) for s in docs.values()]
    if norm == "min-max":
        lo, hi = min(scores), max(scores)
        if hi == lo:
            return dict.fromkeys(docs, 0.0)
        return {d: (float(s) - lo) / (hi - lo) for d, s in docs.items()}
    mean = math.fsum(scores) / len(scores)
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / len(scores))
    if std == 0:
        return dict.fromkeys(docs, 0.0)
    return {d: (float(s) - mean) / std for d, s in docs.items()}


def convex(
    runs: Sequence[Mapping[str, Mapping[str, float]]],
    weights: Sequence[float],
    norm: str = "min-max",
    missing: float = 0.0,
) -> Run:
    """Convex combination ``sum over runs of w_r * norm_r(d)`` (see the module docstring)."""
    checked = _check_runs(runs)
    choice("norm", norm, NORMS)
    if isinstance(weights, (str, bytes, Mapping)) or not isinstance(weights, Sequence):
        raise ConfigError(f"weights must be a list of numbers, one per run; got {weights!r}")
    if len(weights) != len(checked):
        raise ConfigError(f"weights must be one number per run: {len(checked)} runs but {len(weights)} weights")
    w = [positive_number(f"weights[{i}]", x) for i, x in enumerate(weights)]
    missing = finite_float("missing", missing)
    fused: dict[str, dict[str, float]] = {}
    for qid in _queries(checked):
        normed = [_normalize(run.get(qid, {}), norm) for run in checked]
        docs: dict[str, None] = {}
        for n in normed:
            docs.update(dict.fromkeys(n))
        fused[qid] = {d: math.fsum(wr * n.get(d, missing) for wr, n in zip(w, normed)) for d in docs}
    return _sorted_run(fused)


def fuse(name: str, runs: Sequence[Mapping[str, Mapping[str, float]]], **params: Any) -> Run:
    """``rrf`` or ``convex`` by name, with that method's parameters (``k``; ``weights``, ``norm``, ``missing``)."""
    choice("fusion method", name, METHODS)
    unknown = sorted(set(params) - set(_PARAMS[name]))
    if unknown:
        raise ConfigError(
            f"fusion {name} takes {', '.join(_PARAMS[name])}; got unknown parameter(s) {', '.join(unknown)}"
        )
    if name == "rrf":
        return rrf(runs, **params)
    if "weights" not in params:
        raise ConfigError("fusion convex needs weights, one positive number per run")
    return convex(runs, **params)


__all__ = ["METHODS", "NORMS", "Run", "convex", "fuse", "rrf"]
