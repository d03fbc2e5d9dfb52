"""Embed a corpus into Parquet shards (``embedlab embed-corpus``): plan, resume checks, the local backend.

The driver reads the corpus files (JSONL with ``id``/``text``, BEIR ``_id``/``title``/``text`` with
``.gz`` allowed, or Parquet with the same columns), hashes them, refuses duplicate ids, and splits the
rows into shards of ``shard_rows``. The ``local`` backend encodes shard after shard with
:meth:`Embedder.encode` (token-budget batches); the ``ray`` backend (:mod:`embedlab.index.ray_embed`)
sends the unfinished rows through a Ray Data actor pool. Both write the same shards through
:func:`embedlab.index.shards.write_shard`, and the manifest is rewritten after every shard, so a
killed job resumes with ``resume=True`` and loses at most the shards in flight.

A sparse model (``emb.output_kind == "sparse"``, e.g. pooling ``splade``) makes sparse shards: each holds
its rows' ``encode(output="sparse")`` (:func:`~embedlab.index.shards.write_sparse_shard`), the manifest
records ``kind`` and ``vocab_size``, and only ``precision="float32"``, the torch runtime and a non-int8
dtype are accepted (:func:`check_sparse_job`, one line, before anything is written).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from embedlab._version import __version__
from embedlab.corpus import iter_documents
from embedlab.errors import ConfigError, InputError
from embedlab.index.shards import (
    CALIBRATION_ROWS,
    FORMAT,
    MANIFEST,
    SPARSE,
    ShardError,
    calibrate,
    check_precision,
    manifest_ranges,
    model_record,
    read_manifest,
    shard_ok,
    write_manifest,
    write_shard,
    write_sparse_shard,
)
from embedlab.io import file_sha256
from embedlab.progress import ShowProgress, progress_bar
from embedlab.validation import choice, positive_int

log = logging.getLogger(__name__)
BACKENDS = ("local", "ray")


@dataclass
class Corpus:
    """The rows of one or more corpus files, in file order, with each file's hash."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def read_corpora(paths: Sequence[str | Path]) -> Corpus:
    """Read corpus files in order (:func:`embedlab.corpus.iter_documents`: one id and title rule per row);
    a duplicate id anywhere is a one-line error naming the first one."""
    if not paths:
        raise InputError("no corpus files given (--corpus FILE, repeatable)")
    corpus = Corpus()
    seen: dict[str, tuple[str, int]] = {}
    for p in map(Path, paths):
        if not p.is_file():
            raise InputError(f"corpus file not found: {p}")
        rows = 0
        for ids, texts in iter_documents(p):
            for doc_id in ids:
                rows += 1
                if doc_id in seen:
                    f0, r0 = seen[doc_id]
                    raise InputError(f"duplicate id {doc_id!r}: document {rows} of {p} repeats document {r0} of {f0}")
                seen[doc_id] = (str(p), rows)
            corpus.ids += ids
            corpus.texts += texts
        if not rows:
            raise InputError(f"corpus {p} is empty")
        corpus.files.append({"path": str(p), "name": p.name, "sha256": file_sha256(p), "rows": rows})
    return corpus


# -- the manifest and --resume ------------------------------------------------------------------------
def _new_manifest(
    model: dict[str, Any],
    corpus: Corpus,
    *,
    precision: str,
    dtype: str,
    runtime: str,
    backend: str,
    shard_rows: int,
    store_texts: bool,
    vocab_size: int | None = None,
) -> dict[str, Any]:
    sparse = {"kind": SPARSE, "vocab_size": vocab_size} if vocab_size is not None else {}
    return {
        "format": FORMAT,
        **sparse,
        "embedlab_version": __version__,
        "model": model,
        "precision": precision,
        "dtype": dtype,
        "runtime": runtime,
        "backend": backend,
        "shard_rows": shard_rows,
        "num_shards": -(-len(corpus) // shard_rows),
        "has_texts": store_texts,
        "corpus": {"rows": len(corpus), "files": corpus.files},
        "shards": [],
        "runs": [],
        "complete": False,
    }


def check_resumable(old: dict[str, Any], new: dict[str, Any], where: Path) -> None:
    """Refuse to resume when anything that defines the vectors changed; the message names the mismatch."""
    for key in ("kind", "vocab_size"):  # sparse shards (dense manifests carry neither)
        if old.get(key) != new.get(key):
            raise ConfigError(
                f"cannot resume {where}: {key} was {old.get(key) or 'dense'!r}, now {new.get(key) or 'dense'!r}; "
                f"use a new --out directory"
            )
    om, nm = old["model"], new["model"]
    for key in ("fingerprint", "pooling", "attention", "document_prompt", "dim", "normalize"):
        if om.get(key) != nm.get(key):
            what = "model" if key == "fingerprint" else f"model's {key.replace('_', ' ')}"
            raise ConfigError(
                f"cannot resume {where}: the {what} changed ({key} {om.get(key)!r} in the manifest, "
                f"{nm.get(key)!r} now); use a new --out directory"
            )
    of, nf = old["corpus"]["files"], new["corpus"]["files"]
    if [f["name"] for f in of] != [f["name"] for f in nf]:
        raise ConfigError(
            f"cannot resume {where}: the corpus files changed ({', '.join(f['name'] for f in of)} in the "
            f"manifest, {', '.join(f['name'] for f in nf)} now)"
        )
    for a, b in zip(of, nf):
        if a["sha256"] != b["sha256"]:
            raise ConfigError(
                f"cannot resume {where}: corpus file {b['path']} changed (SHA-256 {a['sha256'][:12]}… in the "
                f"manifest, {b['sha256'][:12]}… now)"
            )
    for key in ("precision", "shard_rows", "has_texts", "dtype"):
        if old.get(key) != new.get(key):
            raise ConfigError(f"cannot resume {where}: {key} was {old.get(key)!r}, now {new.get(key)!r}")
    check_runtime_matches(old, new["runtime"], new["dtype"], where)


def shard_runtime(manifest: dict[str, Any], entry: dict[str, Any]) -> tuple[str, str]:
    """(runtime, dtype) that embedded a shard: its own record, else the manifest's (older manifests), else torch."""
    return (
        entry.get("runtime") or manifest.get("runtime") or "torch",
        entry.get("dtype") or manifest.get("dtype") or "fp32",
    )


def check_runtime_matches(old: dict[str, Any], runtime: str, dtype: str, where: Path) -> None:
    """Refuse to finish shards made by another runtime: torch and ONNX Runtime (above all their int8
    copies, which are quantised differently) give different vectors, and one index must not mix them."""
    for entry in old.get("shards", []):
        was = shard_runtime(old, entry)
        if was != (runtime, dtype):
            raise ConfigError(
                f"cannot resume {where}: shard {entry['index']} was embedded with runtime {was[0]} ({was[1]}), "
                f"this run uses runtime {runtime} ({dtype}); mixing them puts two models' vectors in one "
                f"index: rerun with --runtime {was[0]} --dtype {was[1]}, or use a new --out directory"
            )


def _finished_shards(out: Path, old: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The manifest's shards whose files still match their SHA-256; the others are redone."""
    done = {}
    for entry in old.get("shards", []):
        if shard_ok(out, entry):
            done[entry["index"]] = entry
        else:
            log.warning("shard %s is missing or fails its SHA-256 check: re-encoding it", entry["name"])
    return done


# -- the job ------------------------------------------------------------------------------------------
def embed_corpus(
    model: str,
    corpora: Sequence[str | Path],
    out: str | Path,
    *,
    backend: str = "local",
    ray_address: str | None = None,
    actors: int = 1,
    shard_rows: int = 10_000,
    dtype: str = "fp32",
    runtime: str = "torch",
    precision: str = "float32",
    resume: bool = False,
    store_texts: bool = True,
    prompt: str | None = None,
    query_prompt: str | None = None,
    pooling: str | None = None,
    attention: str | None = None,
    token_budget: int | None = None,
    batch_rows: int = 256,
    show_progress: ShowProgress = None,
    embedder: Any = None,
    actor_cls: Any = None,
) -> dict[str, Any]:
    """Embed ``corpora`` with ``model`` into shards under ``out``; returns the final manifest.

    ``embedder`` may pass an already loaded :class:`Embedder` for ``model`` (the local backend then
    reuses it; Ray actors always load ``model`` themselves, which must be a path or alias they can
    reach). ``actor_cls`` replaces the Ray actor class (for tests and custom setups). ``runtime="onnx"`` runs
    the backbone in ONNX Runtime (:mod:`embedlab.models.onnx_runtime`): the driver exports the graph (or
    loads it from the cache) before any shard, and the Ray actors load the cached graph."""
    from embedlab.models import Embedder
    from embedlab.models.embedder import resolve_dtype

    choice("backend", backend, BACKENDS)
    check_precision(precision)
    for name, value in (("--shard-rows", shard_rows), ("--actors", actors), ("batch_rows", batch_rows)):
        positive_int(name, value)
    if ray_address and backend != "ray":
        raise ConfigError("--ray-address needs --backend ray")
    out = Path(out)
    corpus = read_corpora(corpora)
    from embedlab.models.onnx_runtime import check_runtime

    check_runtime(runtime)
    emb = embedder if embedder is not None else Embedder.from_pretrained(model, pooling=pooling, attention=attention)
    sparse = getattr(emb, "output_kind", "dense") == SPARSE  # a sparse head (splade): sparse shards
    if sparse:
        check_sparse_job(model, precision, runtime, dtype)
    if runtime == "torch":
        dtype = resolve_dtype(dtype, emb.device)
    elif not hasattr(emb, "for_runtime"):
        raise ConfigError(f"runtime '{runtime}' runs a transformer backbone; {model} is a {type(emb).__name__}")
    else:
        _, dtype = emb.for_runtime(runtime, dtype)  # export (or the cached graph) and a bad combination fail here
    emb.resolve_prompt(prompt)  # an unknown prompt name fails before any work
    record = model_record(emb, model, query_prompt, prompt)
    manifest = _new_manifest(
        record,
        corpus,
        precision=precision,
        dtype=dtype,
        runtime=runtime,
        backend=backend,
        shard_rows=shard_rows,
        store_texts=store_texts,
        vocab_size=emb.output_dim if sparse else None,
    )
    done: dict[int, dict[str, Any]] = {}
    ranges = None
    if (out / MANIFEST).is_file():
        if not resume:
            raise ConfigError(
                f"{out} already holds embedding shards: pass --resume to finish or verify them, or choose another --out"
            )
        old = read_manifest(out)
        check_resumable(old, manifest, out)
        done = _finished_shards(out, old)
        for entry in done.values():  # shards of older manifests get the runtime that made them
            entry.setdefault("runtime", shard_runtime(old, entry)[0])
            entry.setdefault("dtype", shard_runtime(old, entry)[1])
        manifest["runs"] = list(old.get("runs", []))
        ranges = manifest_ranges(old)  # int8: a resumed run encodes with the ranges its shards were written with
        if ranges is not None:
            manifest["int8_calibration"] = old.get("int8_calibration")
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not a shard directory: choose an empty or new --out")
    if precision == "int8" and ranges is None:  # calibrated once per directory, before any shard
        rows = min(len(corpus), CALIBRATION_ROWS)
        sample = emb.encode(
            corpus.texts[:rows], prompt_name=prompt, dtype=dtype, token_budget=token_budget, runtime=runtime
        )
        ranges = calibrate(np.asarray(sample, dtype=np.float32))
        manifest["int8_calibration"] = {"rows": rows, "sample": "the first corpus rows"}
    if ranges is not None:
        manifest["int8_ranges"] = ranges.to_dict()
    out.mkdir(parents=True, exist_ok=True)
    pending = [k for k in range(manifest["num_shards"]) if k not in done]
    manifest["shards"] = sorted(done.values(), key=lambda e: e["index"])
    write_manifest(out, manifest)

    def finish_shard(k: int, vectors: Any) -> None:
        lo, hi = k * shard_rows, min(len(corpus), (k + 1) * shard_rows)
        shard_texts = corpus.texts[lo:hi] if store_texts else None
        try:
            if sparse:
                if vectors.vocab_size != manifest["vocab_size"]:
                    raise ShardError(
                        f"shard {k}: the model gave sparse rows over {vectors.vocab_size} entries, "
                        f"the manifest says vocab_size {manifest['vocab_size']}"
                    )
                entry = write_sparse_shard(out, k, corpus.ids[lo:hi], vectors, shard_texts)
            else:
                entry = write_shard(out, k, corpus.ids[lo:hi], vectors, shard_texts, precision, ranges)
            entry.update(runtime=runtime, dtype=dtype, backend=backend)
            done[k] = entry
            manifest["shards"] = sorted(done.values(), key=lambda e: e["index"])
            write_manifest(out, manifest)  # after the shard: a listed shard is always a finished one
        except OSError as exc:  # disk full, permissions: the shards listed so far stay valid
            raise ShardError(
                f"cannot write shard {k} in {out}: {exc.strerror or exc}; the {len(done)} finished shard(s) "
                f"are kept: free space and rerun with --resume"
            ) from None

    rows_pending = sum(min(len(corpus), (k + 1) * shard_rows) - k * shard_rows for k in pending)
    start = time.perf_counter()
    with progress_bar(show_progress, total=rows_pending, desc=f"embed ({backend})", unit="text") as bar:
        if backend == "local":
            for k in pending:
                lo, hi = k * shard_rows, min(len(corpus), (k + 1) * shard_rows)
                if sparse:  # a SparseEmbeddings (CSR) of the shard's rows
                    vecs = emb.encode(
                        corpus.texts[lo:hi], prompt_name=prompt, dtype=dtype, token_budget=token_budget, output=SPARSE
                    )
                else:
                    vecs = emb.encode(
                        corpus.texts[lo:hi], prompt_name=prompt, dtype=dtype, token_budget=token_budget, runtime=runtime
                    )
                finish_shard(k, vecs)
                bar.update(hi - lo)
        elif pending:
            from embedlab.index.ray_embed import run_ray

            run_ray(
                model,
                corpus,
                pending,
                shard_rows=shard_rows,
                dim=emb.output_dim,
                sparse=sparse,
                on_shard=finish_shard,
                on_rows=bar.update,
                address=ray_address,
                actors=actors,
                batch_rows=batch_rows,
                actor_kwargs={
                    "model": model,
                    "pooling": pooling,
                    "attention": attention,
                    "fingerprint": record["fingerprint"],
                    "prompt": prompt,
                    "dtype": dtype,
                    "token_budget": token_budget,
                    "runtime": runtime,
                    **({"output": SPARSE} if sparse else {}),
                },
                actor_cls=actor_cls,
            )
    missing = [k for k in range(manifest["num_shards"]) if k not in done]
    if missing:
        raise ConfigError(
            f"the job ended with {len(missing)} shard(s) unwritten (first: {missing[0]}); rerun with --resume"
        )
    seconds = time.perf_counter() - start
    manifest["complete"] = True
    manifest["seconds"] = round(seconds, 3)
    manifest["run"] = {
        "backend": backend,
        "runtime": runtime,
        "dtype": dtype,
        "rows": rows_pending,
        "shards": len(pending),
        "reused_shards": manifest["num_shards"] - len(pending),
        "seconds": round(seconds, 3),
        "texts_per_second": round(rows_pending / seconds, 1) if rows_pending and seconds > 0 else None,
    }
    manifest["runs"].append(manifest["run"])
    write_manifest(out, manifest)
    return manifest


def check_sparse_job(model: str, precision: str, runtime: str, dtype: str) -> None:
    """Sparse shards hold the exact float32 weights of ``encode(output="sparse")`` (torch, not int8): any
    other precision, runtime or the int8 dtype is a one-line ConfigError, before anything is written."""
    if precision != "float32":
        raise ConfigError(
            f"--precision {precision} applies to dense vectors; {model} gives sparse ones, stored as float32 "
            f"weights: drop --precision"
        )
    if runtime != "torch":
        raise ConfigError(f"sparse shards are embedded with --runtime torch; got --runtime {runtime}")
    if dtype == "int8":
        raise ConfigError("sparse shards are embedded with --dtype fp32, bf16 or fp16; int8 is for dense backbones")


def run_summary(manifest: dict[str, Any], out: str | Path) -> str:
    """One line on what :func:`embed_corpus` did in its last run: the documents it embedded (not the
    corpus size), the shards it kept from before, and the rate over the embedded documents only."""
    run, total = manifest["run"], manifest["corpus"]["rows"]
    kept = f"; {run['reused_shards']} finished shard(s) kept" if run["reused_shards"] else ""
    if not run["rows"]:
        return (
            f"nothing to embed: all {manifest['num_shards']} shard(s) of {total} documents were already finished "
            f"and verified ({manifest['precision']}) -> {out}"
        )
    return (
        f"embedded {run['rows']} of {total} documents into {run['shards']} shard(s){kept} ({manifest['precision']}) "
        f"with {run['backend']} in {run['seconds']:.1f} s ({run['texts_per_second']:.1f} texts/s) -> {out}"
    )
