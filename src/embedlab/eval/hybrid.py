"""Hybrid retrieval: two retrievers' runs fused (:mod:`embedlab.index.fusion`) and scored by the one metric loop.

A hybrid has two *parts*, each a retriever with scores (:data:`~embedlab.eval.evaluators.Search`): BM25, a
dense model (exact cosine search, as :func:`~embedlab.eval.evaluators.evaluate_retrieval`) or a sparse model
(exact dot-product :class:`~embedlab.index.sparse.SparseIndex`). Each part retrieves ``depth`` (100)
documents per query (a document whose id equals the query's dropped first when ``task.ignore_identical_ids``,
MTEB v1), the two runs are fused by ``fuse`` — :func:`embedlab.index.fusion.fuse`, which the caller passes in
(the evaluation layer sits below the index layer, docs/architecture.md) — and the fused ranking (best first,
ties by doc id descending) is scored by :func:`~embedlab.eval.evaluators.ranking_scores`.

Fusions: ``rrf`` (k = 60) and ``convex`` (``weight`` on the first part, ``1 - weight`` on the second, each
run min-max normalised per query; a document one part did not retrieve gets 0 from it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from embedlab._version import __version__
from embedlab.errors import ConfigError
from embedlab.eval.evaluators import (
    SEED,
    Search,
    _retrieval_data,
    dense_search,
    evaluate_task,
    ranking_scores,
    sparse_search,
)
from embedlab.eval.registry import TaskSpec
from embedlab.readers import files_digest

DEPTH = 100
RRF_K = 60
FUSIONS = ("rrf", "convex")
Run = dict[str, dict[str, float]]
#: ``fuse(name, runs, **params)`` -> the fused run: :func:`embedlab.index.fusion.fuse`
Fuse = Callable[..., Run]


@dataclass
class HybridPart:
    """One retriever of a hybrid: its name (``bm25`` or the model), its search and what the result records."""

    name: str
    search: Search
    metadata: dict[str, Any] = field(default_factory=dict)


def fusion_params(fusion: str, weight: float | None = None) -> dict[str, Any]:
    """The parameters :func:`embedlab.index.fusion.fuse` gets: ``rrf`` k = 60; ``convex`` weights
    ``[weight, 1 - weight]`` with min-max normalisation. Refused in one line (ConfigError): an unknown fusion,
    a weight outside (0, 1), a weight with ``rrf``, ``convex`` without a weight."""
    if fusion not in FUSIONS:
        raise ConfigError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
    if fusion == "rrf":
        if weight is not None:
            raise ConfigError("--fusion-weight applies to --fusion convex, not rrf (RRF has no weights)")
        return {"k": RRF_K}
    if weight is None:
        raise ConfigError("--fusion convex needs --fusion-weight A (the first model's weight, in (0, 1))")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < 1:
        raise ConfigError(f"--fusion-weight must be in (0, 1) (the first model's weight); got {weight!r}")
    return {"weights": [float(weight), 1.0 - float(weight)], "norm": "min-max"}


def bm25_part(index: Any) -> HybridPart:
    """BM25 (an :class:`~embedlab.index.lexical.BM25Index`, built anew on each task's corpus) as a hybrid part."""

    def search(doc_ids: list[str], doc_texts: list[str], query_texts: list[str], depth: int):
        hits = index.build(doc_ids, doc_texts).search(query_texts, depth)
        return [(ids, [float(s) for s in scores]) for ids, scores in hits]

    return HybridPart("bm25", search, {"retriever": "bm25", "model_source": index.describe(), "bm25": index.params()})


def model_part(
    name: str,
    embedder: Any,
    *,
    prompts: dict[str, str | None] | None = None,
    dtype: str = "fp32",
    cache: Any = None,
    runtime: str | None = None,
    raw_prompts: dict[str, str] | None = None,
    on_encode: Any = None,
) -> HybridPart:
    """A model as a hybrid part: a sparse model (``output_kind == "sparse"``) searches its sparse weights by
    dot product, a dense one by cosine; encoding goes through :func:`~embedlab.eval.runner.make_encoder`
    (prompts, cache) as for a plain evaluation."""
    from embedlab.eval.runner import make_encoder, model_metadata, resolved_dtype

    prompts = prompts or {}
    dtype = resolved_dtype(embedder, dtype, runtime)
    sparse = getattr(embedder, "output_kind", "dense") == "sparse"
    encode = make_encoder(
        embedder,
        prompts=prompts,
        dtype=dtype,
        cache=cache,
        raw_prompts=raw_prompts,
        runtime=runtime,
        on_encode=on_encode,
        output="sparse" if sparse else "numpy",
    )
    search = sparse_search(encode) if sparse else dense_search(encode)
    meta = {
        "retriever": "sparse" if sparse else "dense",
        "similarity": "dot" if sparse else "cosine",
        "model": name,
        **model_metadata(embedder, prompts, dtype),
    }
    return HybridPart(name, search, meta)


def evaluate_hybrid(
    task: TaskSpec, parts: list[HybridPart], fusion: str, params: dict[str, Any], fuse: Fuse, depth: int = DEPTH
) -> tuple[dict[str, float], dict[str, Any]]:
    """The fused ranking (``fuse(fusion, runs, **params)``) of the parts' runs, each cut to ``depth``,
    scored by :func:`ranking_scores`."""
    if task.type != "retrieval":
        raise ConfigError(f"a hybrid scores retrieval tasks only, not {task.name} ({task.type})")
    corpus, queries, qrels, qids = _retrieval_data(task)
    doc_ids = list(corpus)
    doc_texts = [corpus[i] for i in doc_ids]
    query_texts = [queries[i] for i in qids]
    runs = []
    for part in parts:
        hits = part.search(doc_ids, doc_texts, query_texts, depth + 1)  # one spare for a dropped identical id
        run: dict[str, dict[str, float]] = {}
        for qid, (ids, scores) in zip(qids, hits):
            kept = [(d, float(s)) for d, s in zip(ids, scores) if not (task.ignore_identical_ids and d == qid)]
            run[qid] = dict(kept[:depth])
        runs.append(run)
    fused = fuse(fusion, runs, **params)
    rankings = {qid: list(fused.get(qid, {})) for qid in qids}
    return ranking_scores(task, qids, rankings, qrels)


def run_hybrid_task(
    task: TaskSpec,
    parts: list[HybridPart],
    out_dir: Path,
    *,
    fusion: str,
    params: dict[str, Any],
    fuse: Fuse,
    depth: int = DEPTH,
    extra_metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate one retrieval task with a hybrid (``fuse``: :func:`embedlab.index.fusion.fuse`) and write its
    JSON atomically (the layout of :func:`~embedlab.eval.runner.run_task`); the metadata's ``hybrid`` records
    the parts, the fusion and its parameters and the depth."""
    from embedlab.eval.runner import _write_result, check_retrieval_tasks

    check_retrieval_tasks([task], "a hybrid", "fuses rankings, so it")
    start = time.perf_counter()

    def evaluator(t: TaskSpec, _encode: Any, _rng: Any) -> tuple[dict[str, float], dict[str, Any]]:
        return evaluate_hybrid(t, parts, fusion, params, fuse, depth)

    scores, per_example = evaluate_task(task, lambda texts, role: None, evaluator)  # type: ignore[arg-type,return-value]
    first = parts[0].metadata
    metadata = {
        "embedlab_version": __version__,
        "model_source": " + ".join(p.name for p in parts) + f" ({fusion})",
        "retriever": "hybrid",
        "pooling": first.get("pooling", "no"),
        "attention": first.get("attention"),
        "seed": SEED,
        "hybrid": {
            "parts": [p.metadata for p in parts],
            "fusion": fusion,
            "fusion_params": params,
            "depth": depth,
        },
        "dataset_hash": files_digest(task.all_paths()),
        "evaluation_time_s": round(time.perf_counter() - start, 3),
        **(extra_metadata or {}),
    }
    return _write_result(task, scores, per_example, metadata, out_dir)


def run_hybrid(
    task: TaskSpec,
    out_dir: Path,
    retrievers: list[tuple[str, Any, dict[str, str | None]]],
    fusion: str,
    params: dict[str, Any],
    fuse: Fuse,
    *,
    dtype: str,
    runtime: str,
    instruction_template: str | None,
) -> dict[str, Any]:
    """One task of ``embedlab eval --hybrid``: ``retrievers`` are (name, an embedder or, named ``bm25``, a
    :class:`~embedlab.index.lexical.BM25Index`, the named prompts); each becomes a part (a model with its
    prompts, the embedding cache and, with ``instruction_template``, the task's instruction on the query
    side), fused by :func:`run_hybrid_task`."""
    from embedlab.eval.runner import EmbeddingCache, instruction_prefix

    raw = {"query": instruction_prefix(instruction_template, task.instruction)} if instruction_template else None
    parts = []
    for name, retriever, prompts in retrievers:
        if name.lower() == "bm25":
            parts.append(bm25_part(retriever))
        else:
            parts.append(
                model_part(
                    name,
                    retriever,
                    prompts=prompts,
                    dtype=dtype,
                    cache=EmbeddingCache(),
                    runtime=runtime,
                    raw_prompts=raw,
                )
            )
    extra = {"instruction": raw["query"]} if raw and raw["query"] else None
    return run_hybrid_task(task, parts, out_dir, fusion=fusion, params=params, fuse=fuse, extra_metadata=extra)


__all__ = [
    "DEPTH",
    "FUSIONS",
    "RRF_K",
    "HybridPart",
    "bm25_part",
    "evaluate_hybrid",
    "fusion_params",
    "model_part",
    "run_hybrid",
    "run_hybrid_task",
]
