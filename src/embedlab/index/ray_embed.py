"""The Ray backend of ``embed-corpus``: Ray Data reads the corpus files, :mod:`embedlab.corpus` turns their
rows into (id, text) with the same per-row rule as the driver, a pool of actors (each loading
the model once) embeds them with :meth:`Embedder.encode`'s token-budget batches, and the driver
assembles the vectors into the same shards as the local backend. The actors return float32 vectors; the
driver encodes each shard in the manifest's precision, so int8 shards from Ray use the directory's one set of
per-dimension ranges (calibrated by the driver before any shard, or a resumed run's manifest), exactly as
local ones (:mod:`embedlab.index.shards`). A sparse model's actors (``output="sparse"``) return each row's
``encode(output="sparse")`` indices (int64) and weights (float32) as raw bytes, which the driver joins into
one :class:`~embedlab.vectors.SparseEmbeddings` per shard (the bytes are exact; the rows equal the local
backend's up to the float rounding of other batch compositions, as dense vectors do).

Rows are placed by id into their shard (shard ``k`` = corpus rows ``[k * shard_rows, (k+1) * shard_rows)``),
so the output is independent of the order Ray returns blocks in. Ray Data restarts a killed actor and
retries its task (``max_restarts=-1``, ``max_task_retries=-1`` are its defaults for actor pools); a job
killed as a whole resumes from the manifest (``--resume``).

Without an address a local runtime starts (``num_cpus = max(2, actors)``, a 200 MB object store, workers
with ``OMP_NUM_THREADS=1``) and stops afterwards; a runtime the caller already started is used as is.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from embedlab import errors
from embedlab.corpus import documents_from_arrow, gunzip, parquet_columns, parse_jsonl
from embedlab.errors import BackendError, ConfigError, EmbedlabError

OBJECT_STORE_BYTES = 200 * 1024**2
ACTOR_CPUS = 0.9  # leaves room for the read tasks on a 2-CPU runtime with 2 actors
READ_CPUS = 0.1
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


class EmbedActor:
    """One Ray actor: loads the model once, checks its fingerprint against the driver's, embeds batches."""

    def __init__(
        self,
        model: str,
        pooling: str | None,
        attention: str | None,
        fingerprint: str,
        prompt: str | None,
        dtype: str,
        token_budget: int | None,
        runtime: str = "torch",
        output: str = "dense",
    ) -> None:
        import torch

        from embedlab.models import Embedder

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        self.emb = Embedder.from_pretrained(model, pooling=pooling, attention=attention)
        if self.emb.fingerprint() != fingerprint:
            raise ConfigError(
                f"the Ray worker loaded {model} with fingerprint {self.emb.fingerprint()}, the driver's is "
                f"{fingerprint}: every node must see the same model files"
            )
        self.prompt, self.dtype, self.token_budget, self.runtime = prompt, dtype, token_budget, runtime
        self.output = output

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        if self.output == "sparse":  # ragged rows as bytes: exact, and a plain binary column for Ray Data
            rows = self.emb.encode(
                texts, prompt_name=self.prompt, dtype=self.dtype, token_budget=self.token_budget, output="sparse"
            )
            pairs = [rows.row(i) for i in range(len(rows))]
            return {
                "id": batch["id"],
                "indices": np.array([i.astype(np.int64).tobytes() for i, _ in pairs], dtype=object),
                "values": np.array([v.astype(np.float32).tobytes() for _, v in pairs], dtype=object),
            }
        vecs = self.emb.encode(
            texts, prompt_name=self.prompt, dtype=self.dtype, token_budget=self.token_budget, runtime=self.runtime
        )
        return {"id": batch["id"], "vector": np.asarray(vecs, dtype=np.float32)}


def _arrays(ids: list[str], texts: list[str]) -> dict[str, np.ndarray]:
    return {"id": np.array(ids, dtype=object), "text": np.array(texts, dtype=object)}


def parse_jsonl_files(batch: dict[str, np.ndarray], keep: set[str] | None) -> Iterator[dict[str, np.ndarray]]:
    """Read tasks' rows (one per JSONL file: its bytes, which Ray has already gunzipped, and its path)
    -> ``id`` and ``text`` batches, by :func:`embedlab.corpus.parse_jsonl` (the driver's rule, per row)."""
    for raw, path in zip(batch["bytes"], batch["path"]):
        for ids, texts in parse_jsonl(gunzip(bytes(raw)), str(path), keep=keep):
            yield _arrays(ids, texts)


def parquet_to_id_text(batch: Any, name: str, keep: set[str] | None) -> dict[str, np.ndarray]:
    """A Parquet block -> ``id`` and ``text`` by :func:`embedlab.corpus.documents_from_arrow` (the driver's rule)."""
    return _arrays(*documents_from_arrow(batch, name, keep=keep))


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail fast, naming the address, when a Ray head (``host:port`` or ``ray://host:port``) does not answer."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r} is not host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


def _start(address: str | None, actors: int) -> bool:
    """Connect or start a runtime; True when this call started it (and must stop it)."""
    import ray

    if address:
        check_reachable(address)
    if ray.is_initialized():
        return False
    env = {"env_vars": {k: os.environ.get(k, v) if k == "HF_HUB_OFFLINE" else v for k, v in WORKER_ENV.items()}}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=False)
    else:
        ray.init(
            num_cpus=max(2, actors),
            include_dashboard=False,
            object_store_memory=OBJECT_STORE_BYTES,
            runtime_env=env,
            log_to_driver=False,
        )
    return True


def build_dataset(
    corpus_files: Sequence[dict[str, Any]],
    keep: set[str] | None,
    actors: int,
    batch_rows: int,
    actor_cls: Any,
    actor_kwargs: dict[str, Any],
) -> Any:
    """Per file, Ray reads the bytes (JSONL) or the Parquet blocks, and :mod:`embedlab.corpus` turns them
    into (id, text) exactly as the driver did -> the actor pool -> (id, vector). No column or key is
    decided from a first row or a schema: every row gets the per-row rule."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver shows one bar over rows
    parts = []
    for f in corpus_files:
        path = Path(f["path"]).resolve()
        if path.suffix == ".parquet":
            ds = ray.data.read_parquet(
                str(path), columns=parquet_columns(path), ray_remote_args={"num_cpus": READ_CPUS}
            )
            ds = ds.map_batches(
                parquet_to_id_text,
                batch_format="pyarrow",
                batch_size=None,
                num_cpus=READ_CPUS,
                fn_kwargs={"name": str(path), "keep": keep},
            )
        else:
            ds = ray.data.read_binary_files(str(path), include_paths=True, ray_remote_args={"num_cpus": READ_CPUS})
            ds = ds.map_batches(
                parse_jsonl_files, batch_format="numpy", batch_size=1, num_cpus=READ_CPUS, fn_kwargs={"keep": keep}
            )
        parts.append(ds)
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    return ds.map_batches(
        actor_cls or EmbedActor,
        fn_constructor_kwargs=actor_kwargs,
        batch_size=batch_rows,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=ACTOR_CPUS,
    )


def _sparse_rows(rows: list[Any], vocab_size: int) -> Any:
    from embedlab.vectors import SparseEmbeddings

    return SparseEmbeddings.from_rows(rows, vocab_size)


def run_ray(
    model: str,
    corpus: Any,
    pending: Sequence[int],
    *,
    shard_rows: int,
    dim: int,
    on_shard: Callable[[int, Any], None],
    on_rows: Callable[[int], Any],
    address: str | None,
    actors: int,
    batch_rows: int,
    actor_kwargs: dict[str, Any],
    actor_cls: Any = None,
    sparse: bool = False,
) -> None:
    """Embed the rows of the ``pending`` shards; ``on_shard(k, vectors)`` is called as each shard fills
    (``sparse``: with a :class:`~embedlab.vectors.SparseEmbeddings` over ``dim`` entries; the actors must
    have ``output="sparse"`` in ``actor_kwargs``)."""
    n = len(corpus)
    bounds = {k: (k * shard_rows, min(n, (k + 1) * shard_rows)) for k in pending}
    where = {corpus.ids[i]: (k, i - lo) for k, (lo, hi) in bounds.items() for i in range(lo, hi)}
    keep = None if len(where) == n else set(where)
    buffers: dict[int, Any] = {}
    filled: dict[int, np.ndarray] = {}
    started = _start(address, actors)
    try:
        ds = build_dataset(corpus.files, keep, actors, batch_rows, actor_cls, actor_kwargs)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                rows = (
                    zip(batch["indices"], batch["values"]) if sparse else batch["vector"]
                )  # sparse: (index bytes, weight bytes) per row
                for doc_id, vec in zip(batch["id"], rows):
                    k, row = where[str(doc_id)]
                    if k not in buffers:
                        lo, hi = bounds[k]
                        buffers[k] = [None] * (hi - lo) if sparse else np.empty((hi - lo, dim), np.float32)
                        filled[k] = np.zeros(hi - lo, bool)
                    if sparse:
                        ib, vb = vec
                        vec = (np.frombuffer(bytes(ib), np.int64), np.frombuffer(bytes(vb), np.float32))
                    buffers[k][row] = vec
                    filled[k][row] = True
                on_rows(len(batch["id"]))
                for k in [k for k in buffers if filled[k].all()]:
                    done = buffers.pop(k)
                    on_shard(k, _sparse_rows(done, dim) if sparse else done)
                    filled.pop(k)
        except Exception as exc:  # Ray wraps worker errors in its own types (subclassing the cause); show one line
            cause = getattr(exc, "cause", None) or exc
            if isinstance(cause, EmbedlabError):  # an actor's or the driver's own one-line error
                raise type(cause)(str(cause)) from None
            for line in reversed(str(cause).splitlines()):  # an actor that died in __init__ carries only text
                name, sep, message = line.partition(": ")
                if sep and name.startswith("embedlab.errors."):
                    raise getattr(errors, name.rsplit(".", 1)[1], EmbedlabError)(message) from None
            first = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
            raise BackendError(f"the Ray job failed: {first}; finished shards are kept, rerun with --resume") from None
    finally:
        if started:
            import ray

            ray.shutdown()
    if buffers:
        k = min(buffers)
        raise BackendError(
            f"the Ray job returned {int(filled[k].sum())} of {len(filled[k])} rows of shard {k}; rerun with --resume"
        )
