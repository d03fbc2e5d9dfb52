"""Every index kind behind one search call, and hybrid indexes (a dense part fused with a lexical one).

=========  ================================================  ==========================================
kind       directory                                         query side
=========  ================================================  ==========================================
dense      :class:`~embedlab.index.store.VectorIndex`        its model's dense vectors (cosine)
sparse     :class:`~embedlab.index.sparse.SparseIndex`       its model's sparse vectors (dot product)
bm25       :class:`~embedlab.index.lexical.BM25Index`        the text itself (no model)
hybrid     ``hybrid.json`` + one folder per part             each part's own; the runs fused
=========  ================================================  ==========================================

:func:`index_kind` tells a directory's kind from its manifest; :func:`open_retriever` opens any of them as
a :class:`Retriever` whose ``search(texts, k)`` gives, per query, ``(ids, scores)`` best first. A hybrid
searches each part to ``depth`` (100 by default, at least k) and fuses the two runs with
:func:`embedlab.index.fusion.fuse`: reciprocal rank fusion (``rrf``, k = 60) or a convex combination of
min-max normalised scores (``convex``, ``weight`` on the dense part, ``1 - weight`` on the other).
The models that encode queries are loaded by the caller's ``load_model(record)`` (the CLI's), from the
model record each part keeps (:func:`embedlab.index.shards.model_record`), and checked against it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.errors import ConfigError, IndexStoreError
from embedlab.index import fusion
from embedlab.io import atomic_path, read_json
from embedlab.validation import choice, positive_int

HYBRID_FILE = "hybrid.json"
HYBRID_FORMAT = "embedlab-hybrid/1"
KINDS = ("dense", "sparse", "bm25", "hybrid")
DEFAULT_DEPTH = 100
Hits = tuple[list[str], np.ndarray]
LoadModel = Callable[[dict[str, Any]], Any]


def index_kind(path: str | Path) -> str:
    """``dense``, ``sparse``, ``bm25`` or ``hybrid``, from the directory's manifest (one line if it is none)."""
    path = Path(path)
    if not path.is_dir():
        raise IndexStoreError(f"no index at {path}: build one with `embedlab index build --out {path} ...`")
    if (path / HYBRID_FILE).is_file():
        return "hybrid"
    manifest = path / "manifest.json"
    if not manifest.is_file():
        raise IndexStoreError(f"{path} is not an embedlab index (no manifest.json or {HYBRID_FILE})")
    data = read_json(manifest, IndexStoreError, "index manifest")
    if not isinstance(data, dict):
        raise IndexStoreError(f"{manifest} is not an index manifest")
    if str(data.get("format", "")).startswith("embedlab-bm25"):
        return "bm25"
    if data.get("kind") == "sparse":
        return "sparse"
    return "dense"


@dataclass
class Retriever:
    """One index with what encodes its queries; ``search(texts, k)`` -> per query (ids, scores)."""

    kind: str
    index: Any
    model: Any = None  # the query encoder (None for BM25)
    query_prompt: str | None = None
    rescore: int = 4
    parts: dict[str, Retriever] = field(default_factory=dict)  # a hybrid's: {"dense": ..., "lexical": ...}
    fusion: dict[str, Any] = field(default_factory=dict)  # a hybrid's default fusion

    def __len__(self) -> int:
        if self.kind == "hybrid":
            return len(self.parts["dense"])
        return len(self.index)

    def search(
        self,
        texts: Sequence[str],
        k: int = 10,
        *,
        fusion_method: str | None = None,
        weight: float | None = None,
        depth: int | None = None,
    ) -> list[Hits]:
        positive_int("k", k)
        texts = list(texts)
        if fusion_method is not None and self.kind != "hybrid":
            raise ConfigError(
                f"a hybrid search needs a hybrid index (a dense and a lexical part); this is a {self.kind} index: "
                "build one with `embedlab index build --hybrid bm25|SPARSE_MODEL ...`"
            )
        if self.kind == "hybrid":
            return self._fused(texts, k, fusion_method, weight, depth)
        if self.kind == "bm25":
            return [(list(ids), np.asarray(scores, dtype=np.float64)) for ids, scores in self.index.search(texts, k)]
        if self.kind == "sparse":
            queries = self.model.encode(texts, prompt_name=self.query_prompt, output="sparse")
            return self.index.search(queries, k, model_fingerprint=self.model.fingerprint())
        ids, scores = self.index.search(
            self.model.encode(texts, prompt_name=self.query_prompt), k=k, rescore=self.rescore
        )
        return [(list(row), np.asarray(sc, dtype=np.float64)) for row, sc in zip(ids, scores)]

    def _fused(
        self, texts: list[str], k: int, method: str | None, weight: float | None, depth: int | None
    ) -> list[Hits]:
        depth = max(k, positive_int("depth", depth if depth is not None else self.fusion.get("depth", DEFAULT_DEPTH)))
        runs = [self.parts[p].search(texts, min(depth, len(self.parts[p]))) for p in ("dense", "lexical")]
        return fuse_hits(runs[0], runs[1], k, self.fusion, method, weight)  # a dense index refuses k > n: capped

    def info(self) -> dict[str, Any]:
        """What ``embedlab index info`` shows: kind, size, the parts (a hybrid), and the manifest's facts."""
        if self.kind == "hybrid":
            return {
                "kind": "hybrid",
                "documents": len(self),
                "fusion": self.fusion,
                **{f"{name} part": part.info() for name, part in self.parts.items()},
            }
        if self.kind == "sparse":
            from embedlab.vectors import concat

            sample = self.index.ids[:: max(1, len(self.index.ids) // 100)][:100]
            queries = concat([self.index.document(d) for d in sample])
            return {
                **self.index.info(),
                "query latency (its own documents as queries, k 10)": search_latency(self.index, queries),
            }
        manifest = dict(self.index.manifest())
        return {"kind": self.kind, **manifest}


def fuse_hits(
    dense: Sequence[Hits],
    lexical: Sequence[Hits],
    k: int,
    defaults: dict[str, Any] | None = None,
    method: str | None = None,
    weight: float | None = None,
) -> list[Hits]:
    """Per query, the top ``k`` of the fused dense and lexical hits: ``method`` (else the index's default, else
    rrf) with RRF's k (``defaults["rrf_k"]``, 60) or convex's ``weight`` on the dense part."""
    defaults = defaults or {}
    method = method or defaults.get("method", "rrf")
    choice("fusion method", method, fusion.METHODS)
    params: dict[str, Any] = {}
    if method == "convex":
        w = weight if weight is not None else defaults.get("weight")
        if w is None:
            raise ConfigError("convex fusion needs a weight (--fusion-weight W, 0 < W < 1: the dense part's)")
        params["weights"] = [_weight(w), 1 - _weight(w)]
    elif weight is not None:
        raise ConfigError(f"a fusion weight applies to convex fusion, not {method}")
    else:
        params["k"] = defaults.get("rrf_k", 60)
    qids = [str(i) for i in range(len(dense))]
    runs = [
        {q: dict(zip(ids, map(float, scores))) for q, (ids, scores) in zip(qids, part)} for part in (dense, lexical)
    ]
    fused = fusion.fuse(method, runs, **params)
    out: list[Hits] = []
    for q in qids:
        docs = list(fused.get(q, {}).items())[:k]
        out.append(([d for d, _ in docs], np.asarray([s for _, s in docs], dtype=np.float64)))
    return out


def open_hybrid_parts(path: str | Path, load_model: LoadModel | None = None) -> tuple[Any, Retriever, dict[str, Any]]:
    """A hybrid's dense VectorIndex (its queries encoded by the caller, e.g. the server's engine), its lexical
    part as a Retriever (a sparse part's model loaded by ``load_model``) and its fusion defaults."""
    from embedlab.index.store import VectorIndex

    path = Path(path)
    config = read_hybrid(path)
    dense = VectorIndex.load(path / config["parts"]["dense"])
    lexical = open_retriever(path / config["parts"]["lexical"], load_model)
    return dense, lexical, dict(config.get("fusion") or {})


def _weight(w: Any) -> float:
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < float(w) < 1:
        raise ConfigError(f"the fusion weight must be a number strictly between 0 and 1; got {w!r}")
    return float(w)


def open_retriever(path: str | Path, load_model: LoadModel | None = None, *, rescore: int = 4) -> Retriever:
    """The index at ``path`` (any kind) with its query encoder(s), loaded by ``load_model(record)``."""
    from embedlab.index.lexical import BM25Index
    from embedlab.index.sparse import SparseIndex
    from embedlab.index.store import VectorIndex

    path = Path(path)
    kind = index_kind(path)
    if kind == "hybrid":
        config = read_hybrid(path)
        parts = {name: open_retriever(path / sub, load_model, rescore=rescore) for name, sub in config["parts"].items()}
        return Retriever("hybrid", None, parts=parts, fusion=dict(config.get("fusion") or {}))
    if kind == "bm25":
        return Retriever("bm25", BM25Index.load(path))
    index: Any = SparseIndex.load(path) if kind == "sparse" else VectorIndex.load(path)
    record = index.model
    if load_model is None or not record.get("name"):
        raise IndexStoreError(
            f"the {kind} index at {path} records no model: search it from Python with your own vectors"
        )
    model = load_model(record)
    if kind == "sparse":
        index.check_model(model.fingerprint(), f"the model {record['name']}")
    else:
        from embedlab.index.shards import model_record

        index.check_model(
            model_record(model, record["name"], record.get("query_prompt"), record.get("document_prompt"))
        )
    return Retriever(kind, index, model, record.get("query_prompt"), rescore)


def build_sparse(
    emb: Any,
    name: str,
    ids: Sequence[str],
    texts: Sequence[str],
    query_prompt: str | None = None,
    document_prompt: str | None = None,
    *,
    dtype: str = "fp32",
    show_progress: Any = None,
    runtime: str | None = None,
    prompt_name: str | None = None,
) -> Any:
    """A :class:`~embedlab.index.sparse.SparseIndex` of ``texts`` encoded by the sparse model ``emb`` (torch
    only), with its model record and vocabulary."""
    from embedlab.index.shards import model_record
    from embedlab.index.sparse import SparseIndex

    if runtime not in (None, "torch"):
        raise ConfigError(f"a sparse model runs on torch; got runtime {runtime!r}")
    docs = emb.encode(
        list(texts),
        prompt_name=document_prompt or prompt_name,
        dtype=dtype,
        output="sparse",
        show_progress=show_progress,
    )
    return SparseIndex.build(
        list(ids),
        docs,
        model=model_record(emb, name, query_prompt, document_prompt),
        vocab=emb.head.vocabulary(emb.tokenizer),
    )


def build_lexical(
    spec: str, ids: Sequence[str], texts: Sequence[str], load_model: Callable[[str], Any], **encode: Any
) -> Any:
    """A hybrid's lexical part: ``bm25`` (a BM25Index of the texts) or the name of a sparse model."""
    from embedlab.index.lexical import BM25Index

    if spec.lower() == "bm25":
        return BM25Index().build(list(ids), list(texts))
    emb = load_model(spec)
    if emb.output_kind != "sparse":
        raise ConfigError(f"--hybrid {spec}: a dense model; a hybrid's lexical part is bm25 or a sparse model (SPLADE)")
    encode.pop("prompt_name", None)  # the dense model's document prompt is not the sparse model's
    return build_sparse(emb, spec, ids, texts, **{**encode, "runtime": None})


def search_latency(index: Any, queries: Any, k: int = 10) -> dict[str, float]:
    """p50 / p99 milliseconds of one-query searches of a sparse index (``queries``: SparseEmbeddings)."""
    import time

    times = []
    for i in range(len(queries)):
        q = queries.take([i])
        start = time.perf_counter()
        index.search(q, k)
        times.append(1000 * (time.perf_counter() - start))
    ms = np.asarray(times)
    return {
        "queries": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def read_hybrid(path: Path) -> dict[str, Any]:
    config = read_json(path / HYBRID_FILE, IndexStoreError, "hybrid index config")
    parts = config.get("parts") if isinstance(config, dict) else None
    if config.get("format") != HYBRID_FORMAT or not isinstance(parts, dict) or set(parts) != {"dense", "lexical"}:
        raise IndexStoreError(f"{path / HYBRID_FILE} is not a hybrid index config of format {HYBRID_FORMAT}")
    for name, sub in parts.items():
        if not isinstance(sub, str) or "/" in sub or sub.startswith("."):
            raise IndexStoreError(f"{path / HYBRID_FILE}: part {name} must be a folder name inside the index")
    return config


def save_hybrid(path: str | Path, dense: Any, lexical: Any, fusion_defaults: dict[str, Any] | None = None) -> None:
    """Write a hybrid index atomically: ``dense/`` (a VectorIndex), ``lexical/`` (a BM25Index or SparseIndex)
    and ``hybrid.json`` naming them and the default fusion (RRF k = 60 unless given)."""
    defaults = {"method": "rrf", "rrf_k": 60, "depth": DEFAULT_DEPTH, **(fusion_defaults or {})}
    choice("fusion method", defaults["method"], fusion.METHODS)
    if defaults["method"] == "convex":
        _weight(defaults.get("weight"))
    with atomic_path(path) as tmp:
        tmp.mkdir(parents=True)
        dense.save(tmp / "dense")
        lexical.save(tmp / "lexical")
        config = {"format": HYBRID_FORMAT, "parts": {"dense": "dense", "lexical": "lexical"}, "fusion": defaults}
        (tmp / HYBRID_FILE).write_text(json.dumps(config, indent=2) + "\n")


__all__ = [
    "DEFAULT_DEPTH",
    "HYBRID_FILE",
    "KINDS",
    "Retriever",
    "build_lexical",
    "build_sparse",
    "fuse_hits",
    "open_hybrid_parts",
    "index_kind",
    "open_retriever",
    "save_hybrid",
    "search_latency",
]
