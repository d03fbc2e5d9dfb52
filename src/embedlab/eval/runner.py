"""Run tasks for one embedder: cached encoding, one MTEB-like JSON per (model, task)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from embedlab._version import __version__
from embedlab.errors import ConfigError, EmbedlabError
from embedlab.eval.evaluators import SEED, Retrieve, evaluate_retriever, evaluate_sparse_retrieval, evaluate_task
from embedlab.eval.registry import TaskSpec
from embedlab.io import atomic_path, cache_key, read_json, write_json
from embedlab.readers import files_digest
from embedlab.settings import cache_dir


class EmbeddingCache:
    """On-disk cache of embeddings: ``<root>/<model fingerprint>/<key>.npy``, the key
    :func:`embedlab.io.cache_key` over the model's weight fingerprint (which covers its pooling and chain),
    the prompt, the precision/runtime and the texts in order (docs/architecture.md, "Caches").

    A sparse model's sparse weights (``output="sparse"``, what its retrieval searches) are their own kind:
    keyed with ``"sparse-embeddings"`` instead of ``"embeddings"`` and stored as
    ``<key>.sparse.npz`` (:meth:`SparseEmbeddings.save_npz`), so they never mix with the same model's dense
    (n, V) vectors of the same texts (``<key>.npy``), which the other task types read."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "embeddings"

    def path(self, fingerprint: str, prompt: str, dtype: str, texts: list[str], kind: str = "dense") -> Path:
        if kind == "sparse":
            key = cache_key(fingerprint, "sparse-embeddings", prompt, dtype, texts)
            return self.root / fingerprint / f"{key}.sparse.npz"
        return self.root / fingerprint / f"{cache_key(fingerprint, 'embeddings', prompt, dtype, texts)}.npy"

    def get(self, path: Path, n: int) -> Any:
        if not path.is_file():
            return None
        if path.name.endswith(".sparse.npz"):
            from embedlab.errors import InputError
            from embedlab.vectors import SparseEmbeddings, load_npz

            try:
                emb = load_npz(path)
            except (InputError, OSError, ValueError, KeyError):
                return None  # corrupt entry: re-encode
            return emb if isinstance(emb, SparseEmbeddings) and len(emb) == n else None
        try:
            arr = np.load(path)
        except (OSError, ValueError):
            return None  # corrupt entry: re-encode
        return arr if arr.shape[0] == n else None

    def put(self, path: Path, arr: Any) -> None:
        if path.name.endswith(".sparse.npz"):
            arr.save_npz(path)
            return
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr)


def instruction_prefix(template: str, instruction: str) -> str:
    """The prompt an instruction template gives a query: the part before ``{text}``."""
    if not template.endswith("{text}"):
        raise EmbedlabError(f"an evaluation instruction template must end with {{text}}, got {template!r}")
    return template[: -len("{text}")].format(task=instruction) if instruction else ""


def make_encoder(
    embedder: Any,
    *,
    prompts: dict[str, str | None],
    dtype: str,
    cache: EmbeddingCache | None,
    on_encode: Callable[[int], None] | None = None,
    raw_prompts: dict[str, str] | None = None,
    runtime: str | None = None,
    output: str = "numpy",
) -> Callable[[list[str], str], Any]:
    """``encode(texts, role)`` with de-duplication and the embedding cache; role picks the prompt
    (a named prompt of the model, or a literal one from ``raw_prompts``). ``output="sparse"`` (a sparse
    model): :class:`~embedlab.vectors.SparseEmbeddings`, one row per text, cached as their own kind."""
    fingerprint = embedder.fingerprint()
    sparse = output == "sparse"
    if sparse and getattr(embedder, "output_kind", "dense") != "sparse":
        raise EmbedlabError(f"output='sparse' needs a sparse model; {embedder.head.name} pooling gives dense vectors")

    def encode(texts: list[str], role: str) -> Any:
        prompt_name = prompts.get(role)
        prompt = embedder.resolve_prompt(prompt_name) if prompt_name else ""
        if raw_prompts and raw_prompts.get(role):
            prompt = raw_prompts[role]
        unique = list(dict.fromkeys(texts))
        precision = dtype if runtime in (None, "torch") else f"{dtype}/{runtime}"
        key = cache.path(fingerprint, prompt, precision, unique, "sparse" if sparse else "dense") if cache else None
        vecs = cache.get(key, len(unique)) if cache and key else None
        if vecs is None:
            kwargs = {"output": "sparse"} if sparse else {}
            vecs = embedder.encode(unique, prompt=prompt or None, dtype=dtype, runtime=runtime, **kwargs)
            if on_encode:
                on_encode(len(unique))
            if cache and key:
                cache.put(key, vecs)
        pos = {t: i for i, t in enumerate(unique)}
        rows = [pos[t] for t in texts]
        if sparse:  # SparseEmbeddings validate finiteness themselves
            return vecs if rows == list(range(len(unique))) else vecs.take(rows)
        if not np.isfinite(vecs).all():
            raise EmbedlabError("the model returned NaN or inf embeddings")
        return vecs[rows]

    return encode


def model_metadata(embedder: Any, prompts: dict[str, str | None], dtype: str) -> dict[str, Any]:
    return {
        "embedlab_version": __version__,
        "model_source": embedder.backbone.source,
        "model_fingerprint": embedder.fingerprint(),
        "pooling": embedder.head.name,
        "attention": embedder.attention,
        "normalize": embedder.normalize,
        "dim": embedder.output_dim,
        "prompts": {role: embedder.resolve_prompt(name) if name else "" for role, name in prompts.items()},
        "dtype": dtype,
        "seed": SEED,
    }


def resolved_dtype(embedder: Any, dtype: str, runtime: str | None = None) -> str:
    """The precision an evaluation really runs at: ``auto`` resolved (bf16 where native, else fp32), or the
    ONNX Runtime copy's (results and cache keys name this one)."""
    from embedlab.models.embedder import resolve_dtype

    if runtime in (None, "torch"):
        return resolve_dtype(dtype, embedder.device)
    return embedder.for_runtime(runtime, dtype)[1]


def result_path(out_dir: Path, task: TaskSpec) -> Path:
    return Path(out_dir) / f"{task.name}.json"


def run_task(
    task: TaskSpec,
    embedder: Any,
    out_dir: Path,
    *,
    prompts: dict[str, str | None] | None = None,
    dtype: str = "fp32",
    cache: EmbeddingCache | None = None,
    instruction_template: str | None = None,
    extra_metadata: dict[str, Any] | None = None,
    runtime: str | None = None,
) -> dict[str, Any]:
    """Evaluate one task and write its JSON atomically; returns the result dict. With
    ``instruction_template`` the task's instruction prefixes every query-side text. ``dtype="auto"``
    is resolved here (bf16 where native, else fp32), so results and cache keys name the real one. ``runtime``
    ``onnx`` encodes with ONNX Runtime (``Embedder.for_runtime``; recorded in the metadata and the cache key)."""
    dtype = resolved_dtype(embedder, dtype, runtime)
    prompts = prompts or {}
    start = time.perf_counter()
    encoded = {"texts": 0}
    raw = {"query": instruction_prefix(instruction_template, task.instruction)} if instruction_template else None
    settings: dict[str, Any] = dict(
        prompts=prompts,
        dtype=dtype,
        cache=cache,
        raw_prompts=raw,
        runtime=runtime,
        on_encode=lambda n: encoded.__setitem__("texts", encoded["texts"] + n),
    )
    encode = make_encoder(embedder, **settings)
    evaluator = None
    sparse = task.type == "retrieval" and getattr(embedder, "output_kind", "dense") == "sparse"
    if sparse:  # a sparse model retrieves with its sparse weights: exact dot-product index, never cosine
        encode_sparse = make_encoder(embedder, **settings, output="sparse")

        def evaluator(t: TaskSpec, _encode: Any, _rng: Any) -> tuple[dict[str, float], dict[str, Any]]:
            return evaluate_sparse_retrieval(t, encode_sparse)

    scores, per_example = evaluate_task(task, encode, evaluator)
    metadata = {
        **model_metadata(embedder, prompts, dtype),
        **({"retrieval": "sparse", "similarity": "dot"} if sparse else {}),
        "dataset_hash": files_digest(task.all_paths()),
        "evaluation_time_s": round(time.perf_counter() - start, 3),
        "texts_encoded": encoded["texts"],
        **({"runtime": runtime} if runtime not in (None, "torch") else {}),
        **({"instruction": raw["query"]} if raw and raw["query"] else {}),
        **(extra_metadata or {}),
    }
    return _write_result(task, scores, per_example, metadata, out_dir)


def _write_result(
    task: TaskSpec, scores: dict[str, float], per_example: dict[str, Any], metadata: dict[str, Any], out_dir: Path
) -> dict[str, Any]:
    """The one result layout (MTEB-like), written atomically to :func:`result_path`."""
    result = {
        "task_name": task.name,
        "mteb_name": task.mteb_name,
        "type": task.type,
        "category": task.category,
        "split": task.split,
        "evaluated_splits": task.evaluation_splits,
        "main_metric": task.main_metric,
        "main_score": scores[task.main_metric],
        "scores": scores,
        "per_example": per_example,
        "metadata": metadata,
    }
    write_json(result_path(out_dir, task), result)
    return result


def check_retrieval_tasks(tasks: list[TaskSpec], retriever: str = "BM25", why: str = "has no vectors, so it") -> None:
    """A retriever without vectors (BM25), or a hybrid (fused rankings), scores retrieval tasks only: any
    other task is refused (ConfigError, exit 2) in one line naming them."""
    other = [t for t in tasks if t.type != "retrieval"]
    if other:
        names = ", ".join(f"{t.name} ({t.type})" for t in other[:4]) + (" …" if len(other) > 4 else "")
        raise ConfigError(
            f"{retriever} {why} can only score retrieval tasks, not {names}: "
            f"choose retrieval tasks, e.g. --tasks SciFact"
        )


def run_retriever_task(
    task: TaskSpec,
    retrieve: Retrieve,
    out_dir: Path,
    *,
    retriever: str,
    description: str,
    extra_metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate one retrieval task with a retriever that has no vectors (``retrieve``, e.g.
    :meth:`embedlab.index.lexical.BM25Index.retrieve`; ``retriever`` names it, ``description`` is what
    reports show as its source) and write its JSON atomically, as :func:`run_task` does."""
    check_retrieval_tasks([task], retriever)
    start = time.perf_counter()
    scores, per_example = evaluate_retriever(task, retrieve)
    metadata = {
        "embedlab_version": __version__,
        "model_source": description,
        "retriever": retriever,
        "pooling": "no",  # no model: no pooling, no attention, no vectors
        "attention": None,
        "seed": SEED,
        "dataset_hash": files_digest(task.all_paths()),
        "evaluation_time_s": round(time.perf_counter() - start, 3),
        **(extra_metadata or {}),
    }
    return _write_result(task, scores, per_example, metadata, out_dir)


def load_results(directory: str | Path) -> dict[str, dict[str, Any]]:
    """Every result JSON in a directory, by task name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise EmbedlabError(f"result directory not found: {directory}")
    results = {}
    for path in sorted(directory.glob("*.json")):
        data = read_json(path, EmbedlabError, "result file")
        if isinstance(data, dict) and "task_name" in data and "main_score" in data:
            results[data["task_name"]] = data
    if not results:
        raise EmbedlabError(f"no result files in {directory}")
    return results
