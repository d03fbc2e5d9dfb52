"""The Ray backend of ``embed-corpus``: Ray Data reads the corpus files, a pool of actors (each loading
the model once) embeds them with :meth:`Embedder.encode`'s token-budget batches, and the driver
assembles the vectors into the same shards as the local backend.

Rows are placed by id into their shard (shard ``k`` = corpus rows ``[k * shard_rows, (k+1) * shard_rows)``),
so the output is independent of the order Ray returns blocks in. Ray Data restarts a killed actor and
retries its task (``max_restarts=-1``, ``max_task_retries=-1`` are its defaults for actor pools); a job
killed as a whole resumes from the manifest (``--resume``).

Without an address a local runtime starts (``num_cpus = max(2, actors)``, a 200 MB object store, workers
with ``OMP_NUM_THREADS=1``) and stops afterwards; a runtime the caller already started is used as is.
"""
from __future__ import annotations

import gzip
import json
import os
import socket
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from embedlab import errors
from embedlab.errors import BackendError, ConfigError, EmbedlabError

OBJECT_STORE_BYTES = 200 * 1024**2
ACTOR_CPUS = 0.9  # leaves room for the read tasks on a 2-CPU runtime with 2 actors
READ_CPUS = 0.1
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


class EmbedActor:
    """One Ray actor: loads the model once, checks its fingerprint against the driver's, embeds batches."""

    def __init__(self, model: str, pooling: str | None, attention: str | None, fingerprint: str, prompt: str | None,
                 dtype: str, token_budget: int | None, runtime: str = "torch") -> None:
        import torch

        from embedlab.models import Embedder

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        self.emb = Embedder.from_pretrained(model, pooling=pooling, attention=attention)
        if self.emb.fingerprint() != fingerprint:
            raise ConfigError(f"the Ray worker loaded {model} with fingerprint {self.emb.fingerprint()}, the driver's is "
                              f"{fingerprint}: every node must see the same model files")
        self.prompt, self.dtype, self.token_budget, self.runtime = prompt, dtype, token_budget, runtime

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vecs = self.emb.encode(texts, prompt_name=self.prompt, dtype=self.dtype, token_budget=self.token_budget,
                               runtime=self.runtime)
        return {"id": batch["id"], "vector": np.asarray(vecs, dtype=np.float32)}


def to_id_text(batch: Any, id_col: str, has_title: bool, keep: set[str] | None) -> dict[str, np.ndarray]:
    """A read block -> ``id`` (str) and ``text`` (title joined as the driver does); ``keep`` filters ids."""
    from embedlab.index.corpus_embed import join_title

    ids = [str(i) for i in batch.column(id_col).to_pylist()]
    texts = batch.column("text").to_pylist()
    titles = batch.column("title").to_pylist() if has_title else [None] * len(ids)
    rows = [(i, join_title(h, t)) for i, h, t in zip(ids, titles, texts) if keep is None or i in keep]
    return {"id": np.array([r[0] for r in rows], dtype=object), "text": np.array([r[1] for r in rows], dtype=object)}


def _first_row(path: Path) -> dict[str, Any]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return json.loads(line)
    return {}


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
        ray.init(num_cpus=max(2, actors), include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
                 runtime_env=env, log_to_driver=False)
    return True


def build_dataset(corpus_files: Sequence[dict[str, Any]], keep: set[str] | None, actors: int, batch_rows: int,
                  actor_cls: Any, actor_kwargs: dict[str, Any]) -> Any:
    """read_json / read_parquet per file -> (id, text) -> the actor pool -> (id, vector)."""
    import pyarrow as pa
    import pyarrow.json as pj
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver shows one bar over rows
    parts = []
    for f in corpus_files:
        path = Path(f["path"]).resolve()
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
            id_col = "id" if "id" in names else "_id"
            has_title = "title" in names
            ds = ray.data.read_parquet(str(path), columns=[id_col, "text"] + (["title"] if has_title else []),
                                       ray_remote_args={"num_cpus": READ_CPUS})
        else:
            first = _first_row(path)
            id_col = "id" if "id" in first else "_id"
            has_title = "title" in first
            id_type = pa.int64() if isinstance(first.get(id_col), int) else pa.string()  # JSON number ids stay numbers
            fields = [(id_col, id_type), ("text", pa.string())] + ([("title", pa.string())] if has_title else [])
            ds = ray.data.read_json(
                str(path), file_extensions=None, ray_remote_args={"num_cpus": READ_CPUS},
                arrow_open_stream_args={"compression": "gzip"} if path.suffix == ".gz" else None,
                parse_options=pj.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore"),
                read_options=pj.ReadOptions(block_size=64 << 20))
        parts.append(ds.map_batches(to_id_text, batch_format="pyarrow", batch_size=None, num_cpus=READ_CPUS,
                                    fn_kwargs={"id_col": id_col, "has_title": has_title, "keep": keep}))
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    return ds.map_batches(actor_cls or EmbedActor, fn_constructor_kwargs=actor_kwargs, batch_size=batch_rows,
                          batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=ACTOR_CPUS)


def run_ray(model: str, corpus: Any, pending: Sequence[int], *, shard_rows: int, dim: int,
            on_shard: Callable[[int, np.ndarray], None], on_rows: Callable[[int], Any], address: str | None,
            actors: int, batch_rows: int, actor_kwargs: dict[str, Any], actor_cls: Any = None) -> None:
    """Embed the rows of the ``pending`` shards; ``on_shard(k, vectors)`` is called as each shard fills."""
    n = len(corpus)
    bounds = {k: (k * shard_rows, min(n, (k + 1) * shard_rows)) for k in pending}
    where = {corpus.ids[i]: (k, i - lo) for k, (lo, hi) in bounds.items() for i in range(lo, hi)}
    keep = None if len(where) == n else set(where)
    buffers: dict[int, np.ndarray] = {}
    filled: dict[int, np.ndarray] = {}
    started = _start(address, actors)
    try:
        ds = build_dataset(corpus.files, keep, actors, batch_rows, actor_cls, actor_kwargs)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for doc_id, vec in zip(batch["id"], batch["vector"]):
                    k, row = where[str(doc_id)]
                    if k not in buffers:
                        lo, hi = bounds[k]
                        buffers[k], filled[k] = np.empty((hi - lo, dim), np.float32), np.zeros(hi - lo, bool)
                    buffers[k][row] = vec
                    filled[k][row] = True
                on_rows(len(batch["id"]))
                for k in [k for k in buffers if filled[k].all()]:
                    on_shard(k, buffers.pop(k))
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
        raise BackendError(f"the Ray job returned {int(filled[k].sum())} of {len(filled[k])} rows of shard {k}; rerun with --resume")
