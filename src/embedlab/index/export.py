"""Export embedding shards or an embedlab index to a vector database (``embedlab export DIR --to URI``).

Targets (each carries the ids, the texts and the model's metadata):

==========================  ======================================================================
``lancedb://PATH``          LanceDB, in-process, no server (the embedded default). A table with
                            ``id``, ``text``, ``vector``; the model record in the schema metadata
                            (key ``embedlab``); an IVF_PQ cosine index when there are >= 256 rows.
``qdrant://PATH``           Qdrant local mode (``QdrantClient(path=...)``, exact search, one process
                            at a time). Point ids are UUID5 of the document id; the payload holds
                            ``id`` and ``text``; the model record is the collection's ``metadata``.
``http(s)://HOST:PORT``     a Qdrant server (checked first: an unreachable URL fails at once).
``milvus://FILE.db``        Milvus Lite, one file (a bare ``FILE.db`` works too). The model record is
                            the collection property ``embedlab``; a FLAT cosine index (exact). A Milvus
                            server (gRPC, ``milvus://HOST:PORT``) is not a target: refused in one line.
==========================  ======================================================================

Sparse shards (``embed-corpus`` with a sparse model, manifest kind ``sparse``) go to Qdrant as the named
sparse vector :data:`SPARSE_VECTOR` (``sparse_vectors_config``, no dense vector; scored by the dot product,
as SPLADE is; same point ids and payload) and to LanceDB as the list columns ``indices`` (int32) and
``values`` (float32), with ``vocab_size`` in the metadata: LanceDB 0.40 has no sparse vector type or index,
so the table stores them for reading back and cannot search them. Milvus refuses sparse sources (one line).

Vectors go out as float32 (shards in ``float16``/``int8``/``binary`` are decoded first; an index exports
its rescoring copy). Every target uses cosine similarity, as embedlab's float search does. The model record
also names the source's precision (and, for int8 shards, the manifest's quantisation record), so a reader
knows the float32 vectors were decoded from a lossy copy.

Milvus stores ids and texts as VARCHAR, at most 65,535 bytes each (UTF-8, as a Milvus server counts them).
Every id and text is checked before anything is written: an over-long id is refused, naming the row; an
over-long text too, unless ``truncate_texts=True`` (``--truncate-texts``), which cuts it at a character
boundary and counts the cut texts in the summary. Nothing is cut silently.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from embedlab.errors import ConfigError, ExportError
from embedlab.index.shards import MANIFEST, READ_FORMATS, SPARSE, EmbeddingShards, read_manifest, shard_kind

DEFAULT_COLLECTION = "embedlab"
LANCE_MIN_ANN_ROWS = 256  # IVF_PQ trains 256 centroids per sub-vector
LANCE_SAMPLE_RATE = 256  # Lance trains at most rows // sample_rate IVF partitions (and warns when asked more)
MILVUS_VARCHAR_BYTES = 65535  # Milvus VARCHAR max_length (ids and texts)
MILVUS_TEXT_BYTES = MILVUS_VARCHAR_BYTES  # the old name
SPARSE_VECTOR = "sparse"  # the name of the sparse vector in an exported Qdrant collection
UUID_NS = uuid.UUID("6f1d3c3e-6a55-4a8e-9d0f-6d2b1c0e3a11")


@dataclass
class Target:
    kind: str  # lancedb | qdrant-local | qdrant-server | milvus-lite
    location: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.location}"


def parse_target(uri: str) -> Target:
    """``lancedb://path``, ``qdrant://path``, ``http(s)://host:port``, ``milvus://file.db`` or ``file.db``."""
    if uri.startswith("lancedb://"):
        return Target("lancedb", uri[len("lancedb://") :])
    if uri.startswith("qdrant://"):
        return Target("qdrant-local", uri[len("qdrant://") :])
    if uri.startswith(("http://", "https://")):
        return Target("qdrant-server", uri)
    if uri.startswith("milvus://"):
        location = uri[len("milvus://") :]
        if location.strip() and not location.endswith(".db"):
            server = re.fullmatch(r"[\w.-]+:\d+/?", location) or location.startswith(("http", "tcp", "unix"))
            raise ConfigError(
                f"{uri}: "
                + ("a Milvus server (gRPC) is not an export target; " if server else "not a Milvus Lite file; ")
                + "embedlab exports to Milvus Lite files only: give milvus://FILE.db"
            )
        return Target("milvus-lite", location)
    if uri.endswith(".db") and "://" not in uri:
        return Target("milvus-lite", uri)
    raise ConfigError(
        f"unknown export target {uri!r}: use lancedb://PATH, qdrant://PATH, http://HOST:PORT (Qdrant) "
        f"or milvus://FILE.db (Milvus Lite)"
    )


def point_id(doc_id: str) -> str:
    """Qdrant accepts only integers and UUIDs as point ids: a stable UUID5 of the document id."""
    return str(uuid.uuid5(UUID_NS, doc_id))


# -- sources ------------------------------------------------------------------------------------------
@dataclass
class Source:
    """Shards or an index, read batch by batch as (ids, float32 vectors, texts or None)."""

    path: Path
    kind: str
    model: dict[str, Any]
    dim: int
    count: int
    has_texts: bool
    manifest: dict[str, Any]

    @property
    def sparse(self) -> bool:
        """True for sparse shards (``dim`` is then their vocabulary size)."""
        return self.kind == "shards" and shard_kind(self.manifest) == SPARSE

    def sparse_batches(self) -> Iterator[tuple[list[str], Any, list[str] | None]]:
        """(ids, :class:`~embedlab.vectors.SparseEmbeddings`, texts or None) per sparse shard."""
        yield from EmbeddingShards(self.path).iter_sparse()

    def batches(self) -> Iterator[tuple[list[str], np.ndarray, list[str] | None]]:
        if self.kind == "shards":
            yield from EmbeddingShards(self.path).iter_shards()
            return
        from embedlab.index import VectorIndex

        index = VectorIndex.load(self.path)
        vecs = index._dequantize(np.asarray(index.store))  # the rescoring copy (float32, or int8 decoded)
        yield list(index.ids), vecs, list(index.texts) if index.texts is not None else None

    def strings(self) -> Iterator[tuple[list[str], list[str] | None]]:
        """(ids, texts or None) batch by batch, without decoding vectors (the checks before a write)."""
        if self.kind != "shards":
            for ids, _, texts in self.batches():
                yield ids, texts
            return
        import pyarrow.parquet as pq

        for entry in sorted(self.manifest.get("shards", []), key=lambda e: e["index"]):
            cols = ["id"] + (["text"] if self.has_texts else [])
            try:
                table = pq.read_table(self.path / entry["name"], columns=cols)
            except Exception as exc:  # pyarrow raises several types for unreadable files
                raise ExportError(f"shard unreadable: {self.path / entry['name']} ({exc})") from None
            ids = table.column("id").to_pylist()
            yield ids, table.column("text").to_pylist() if self.has_texts else None


def open_source(path: str | Path) -> Source:
    path = Path(path)
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        raise ExportError(f"{path} is neither an embedding shard directory nor an embedlab index (no {MANIFEST})")
    head = json.loads(manifest_file.read_text())
    if head.get("format") in READ_FORMATS:
        shards = EmbeddingShards(path)
        dim = shards.vocab_size if shards.kind == SPARSE else shards.dim
        return Source(path, "shards", shards.model, int(dim or 0), len(shards), shards.has_texts, read_manifest(path))
    if "codec" in head:
        return Source(
            path,
            "index",
            head.get("model") or {},
            int(head["dim"]),
            int(head["count"]),
            bool(head.get("has_texts")),
            head,
        )
    raise ExportError(f"{manifest_file} is neither a shard manifest nor an index manifest")


_QUANT_WORDS = ("scale", "range", "int8", "quant")  # manifest keys that describe a lossy encoding
_SHARD_BOOKKEEPING = {"index", "name", "rows", "sha256", "first_id"}


def _is_quant_key(key: str) -> bool:
    return any(w in key.lower() for w in _QUANT_WORDS)


def _precision_record(src: Source) -> dict[str, Any]:
    """The source's precision, and for int8 shards what the manifest says about the quantisation: the
    top-level keys about scales or ranges (``int8_ranges``, ``int8_calibration``), and each shard's own
    (the read-only ``int8-absmax`` shards of format /1 carry one ``scale`` per shard)."""
    m = src.manifest
    if src.kind == "index":  # the exported copy is the rescoring store
        return {"precision": m.get("rescore", "float32"), "codec": m.get("codec")}
    out: dict[str, Any] = {"precision": m.get("precision")}
    if m.get("precision") in ("int8", "int8-absmax"):
        quant: dict[str, Any] = {k: v for k, v in m.items() if _is_quant_key(k) and k != "precision"}
        per_shard = {
            e["name"]: {k: v for k, v in e.items() if k not in _SHARD_BOOKKEEPING and _is_quant_key(k)}
            for e in sorted(m.get("shards", []), key=lambda e: e["index"])
        }
        if any(per_shard.values()):
            quant["shards"] = per_shard
        out["int8"] = quant
    return out


def _metadata(src: Source) -> dict[str, Any]:
    if src.sparse:
        return {
            "model": src.model,
            "source": str(src.path),
            "source_kind": src.kind,
            "kind": SPARSE,
            "vocab_size": src.dim,
            "metric": "dot",
            "exported_as": "sparse float32",
            "precision": src.manifest.get("precision", "float32"),
        }
    return {
        "model": src.model,
        "source": str(src.path),
        "source_kind": src.kind,
        "dim": src.dim,
        "metric": "cosine",
        "exported_as": "float32",
        **_precision_record(src),
    }


# -- writers ------------------------------------------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def lance_partitions(rows: int, sample_rate: int = LANCE_SAMPLE_RATE) -> int:
    """The IVF partitions to ask Lance for: sqrt(rows), but no more than Lance trains (rows // sample_rate;
    asked for more, it trains that many and warns), so the number printed is the number built."""
    return max(1, min(math.isqrt(rows), rows // sample_rate))


def _import_lancedb() -> Any:
    """lancedb, with its Rust log (env_logger, read once at import, straight to stderr) at ``error`` unless the
    user set ``LANCEDB_LOG``: its WARN lines ("No existing dataset ...") would flood the CLI's one-line summary."""
    os.environ.setdefault("LANCEDB_LOG", "error")
    import lancedb

    return lancedb


def _lancedb(src: Source, location: str, collection: str, overwrite: bool, ann: bool) -> dict[str, Any]:
    import pyarrow as pa

    lancedb = _import_lancedb()

    db = lancedb.connect(location)
    if collection in db.table_names() and not overwrite:
        raise ExportError(f"lancedb://{location} already has a table {collection!r}: pass --overwrite to replace it")
    if src.sparse:
        return _lancedb_sparse(src, db, collection)
    fields = [pa.field("id", pa.string()), pa.field("vector", pa.list_(pa.float32(), src.dim))]
    if src.has_texts:
        fields.append(pa.field("text", pa.string()))
    schema = pa.schema(fields, metadata={"embedlab": json.dumps(_metadata(src))})
    table = db.create_table(collection, schema=schema, mode="overwrite")
    for ids, vecs, texts in src.batches():
        cols = [
            pa.array(ids, pa.string()),
            pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel(), pa.float32()), src.dim),
        ]
        if src.has_texts:
            cols.append(pa.array(texts, pa.string()))
        table.add(pa.Table.from_arrays(cols, schema=schema))
    index = "none (exact scan)"
    if ann and src.count >= LANCE_MIN_ANN_ROWS:
        parts = lance_partitions(src.count)
        sub = next(s for s in (src.dim // 8, src.dim // 4, src.dim // 2, src.dim, 1) if s and src.dim % s == 0)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # lancedb 0.40 prefers config=IvfPq(...)
            table.create_index(
                metric="cosine",
                index_type="IVF_PQ",
                num_partitions=parts,
                num_sub_vectors=sub,
                sample_rate=LANCE_SAMPLE_RATE,
            )
        index = f"IVF_PQ (cosine, {parts} partitions, {sub} sub-vectors)"
    elif ann:
        index = f"none: {src.count} rows is under {LANCE_MIN_ANN_ROWS} (IVF_PQ cannot train); searches scan exactly"
    return {"rows": table.count_rows(), "index": index}


def _lancedb_sparse(src: Source, db: Any, collection: str) -> dict[str, Any]:
    """Sparse shards as a table of ``id``, ``indices`` (list of int32), ``values`` (list of float32), ``text``."""
    import pyarrow as pa

    fields = [
        pa.field("id", pa.string()),
        pa.field("indices", pa.list_(pa.int32())),
        pa.field("values", pa.list_(pa.float32())),
    ]
    if src.has_texts:
        fields.append(pa.field("text", pa.string()))
    schema = pa.schema(fields, metadata={"embedlab": json.dumps(_metadata(src))})
    table = db.create_table(collection, schema=schema, mode="overwrite")
    for ids, rows, texts in src.sparse_batches():
        offsets = pa.array(rows.indptr.astype(np.int32), pa.int32())
        cols = [
            pa.array(ids, pa.string()),
            pa.ListArray.from_arrays(offsets, pa.array(rows.indices.astype(np.int32), pa.int32())),
            pa.ListArray.from_arrays(offsets, pa.array(rows.values.astype(np.float32), pa.float32())),
        ]
        if src.has_texts:
            cols.append(pa.array(texts, pa.string()))
        table.add(pa.Table.from_arrays(cols, schema=schema))
    return {
        "rows": table.count_rows(),
        "index": "none: LanceDB has no sparse vector index (indices and values stored as list columns)",
    }


def qdrant_client(target: Target, timeout: float = 3.0) -> Any:
    from qdrant_client import QdrantClient

    if target.kind == "qdrant-local":
        try:
            return QdrantClient(path=target.location)
        except (RuntimeError, OSError) as exc:  # e.g. the path is already open in another process
            raise ExportError(f"cannot open Qdrant local storage at {target.location}: {exc}") from None
    client = QdrantClient(url=target.location, timeout=int(max(1, timeout)), check_compatibility=False)
    try:
        client.get_collections()
    except Exception as exc:  # httpx / grpc errors of several kinds
        raise ExportError(
            f"cannot reach Qdrant at {target.location}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    return client


def _qdrant(
    src: Source, target: Target, collection: str, overwrite: bool, ann: bool, batch: int = 512
) -> dict[str, Any]:
    import warnings

    from qdrant_client import models

    client = qdrant_client(target)
    try:
        if client.collection_exists(collection):
            if not overwrite:
                raise ExportError(
                    f"{target.location} already has a collection {collection!r}: pass --overwrite to replace it"
                )
            client.delete_collection(collection)
        if src.sparse:
            client.create_collection(
                collection,
                vectors_config={},
                sparse_vectors_config={SPARSE_VECTOR: models.SparseVectorParams()},
                metadata=_metadata(src),
            )
        else:
            client.create_collection(
                collection,
                vectors_config=models.VectorParams(size=src.dim, distance=models.Distance.COSINE),
                metadata=_metadata(src),
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*local mode.*")  # local mode warns above 20,000 points
            if src.sparse:
                _qdrant_sparse_points(client, src, collection, batch)
            for ids, vecs, texts in [] if src.sparse else src.batches():
                for lo in range(0, len(ids), batch):
                    hi = min(len(ids), lo + batch)
                    payload = [
                        {"id": ids[i], **({"text": texts[i]} if texts is not None else {})} for i in range(lo, hi)
                    ]
                    client.upsert(
                        collection,
                        points=models.Batch(
                            ids=[point_id(i) for i in ids[lo:hi]], vectors=vecs[lo:hi].tolist(), payloads=payload
                        ),
                        wait=True,
                    )
        rows = client.count(collection, exact=True).count
    finally:
        client.close()
    if src.sparse:
        index = f"sparse vector {SPARSE_VECTOR!r} (dot product, inverted index)"
    else:
        index = "exact (local mode has no HNSW)" if target.kind == "qdrant-local" else "HNSW (built by the server)"
    return {"rows": rows, "index": index}


def _qdrant_sparse_points(client: Any, src: Source, collection: str, batch: int) -> None:
    """Upsert sparse shards as points with the named sparse vector, the dense export's ids and payload."""
    from qdrant_client import models

    for ids, rows, texts in src.sparse_batches():
        for lo in range(0, len(ids), batch):
            hi = min(len(ids), lo + batch)
            points = []
            for i in range(lo, hi):
                idx, val = rows.row(i)
                points.append(
                    models.PointStruct(
                        id=point_id(ids[i]),
                        vector={SPARSE_VECTOR: models.SparseVector(indices=idx.tolist(), values=val.tolist())},
                        payload={"id": ids[i], **({"text": texts[i]} if texts is not None else {})},
                    )
                )
            client.upsert(collection, points=points, wait=True)


def _utf8_prefix(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that is at most ``limit`` bytes in UTF-8 (cut at a character boundary)."""
    return text.encode()[:limit].decode(errors="ignore")


def check_milvus_strings(src: Source, truncate_texts: bool = False) -> dict[str, Any]:
    """Every id and text against Milvus's VARCHAR limit, before anything is written. An id over it is refused,
    naming the row (an id cannot be cut: it is the key); a text too, unless ``truncate_texts``. Returns
    ``{"cut": n, "longest": bytes}`` for the texts over the limit."""
    limit, row, cut, longest = MILVUS_VARCHAR_BYTES, 0, 0, 0
    first: tuple[int, str, int] | None = None
    for ids, texts in src.strings():
        for i, doc_id in enumerate(ids):
            n = len(doc_id.encode())
            if n > limit:
                raise ExportError(
                    f"row {row + i}: id {doc_id[:40]!r}... is {n:,} bytes, over Milvus's VARCHAR limit of "
                    f"{limit:,} bytes (an id is the primary key and is never cut); export to LanceDB or Qdrant"
                )
            if texts is not None and texts[i] is not None:
                t = len(texts[i].encode())
                if t > limit:
                    cut, longest = cut + 1, max(longest, t)
                    first = first or (row + i, doc_id, t)
        row += len(ids)
    if first and not truncate_texts:
        r, doc_id, t = first
        more = f" ({cut:,} texts are over it, the longest {longest:,} bytes)" if cut > 1 else ""
        raise ExportError(
            f"row {r} (id {doc_id!r}): text is {t:,} bytes, over Milvus's VARCHAR limit of {limit:,} bytes{more}; "
            f"pass --truncate-texts to cut such texts at {limit:,} bytes, or export to LanceDB or Qdrant (no limit)"
        )
    return {"cut": cut, "longest": longest}


class _QuietMilvusLite(logging.Filter):
    """Milvus Lite's in-process gRPC server leaves ``AllocTimestamp`` unimplemented, and pymilvus calls it while
    it waits for an index: grpc logs ``Exception calling application: Method not implemented!`` with a traceback,
    although the call is retried without it and the export succeeds. Drop exactly those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, NotImplementedError) or "Method not implemented" in record.getMessage())


@contextmanager
def _quiet_milvus_lite() -> Iterator[None]:
    log, flt = logging.getLogger("grpc._server"), _QuietMilvusLite()
    log.addFilter(flt)
    try:
        yield
    finally:
        log.removeFilter(flt)


def _milvus_client(location: str) -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise ConfigError(
            "the Milvus Lite target needs pymilvus and milvus-lite: pip install 'embedlab[scale]'"
        ) from None
    return MilvusClient(str(Path(location).resolve()))


def _milvus(
    src: Source,
    location: str,
    collection: str,
    overwrite: bool,
    ann: bool,
    batch: int = 1000,
    truncate_texts: bool = False,
) -> dict[str, Any]:
    texts_over = check_milvus_strings(src, truncate_texts)
    with _quiet_milvus_lite():
        result = _milvus_write(src, location, collection, overwrite, batch)
    if texts_over["cut"]:
        result["index"] += (
            f"; {texts_over['cut']:,} text(s) cut at {MILVUS_VARCHAR_BYTES:,} bytes "
            f"(the longest was {texts_over['longest']:,})"
        )
    result["texts_cut"] = texts_over["cut"]
    return result


def _milvus_write(src: Source, location: str, collection: str, overwrite: bool, batch: int) -> dict[str, Any]:
    from pymilvus import DataType

    Path(location).parent.mkdir(parents=True, exist_ok=True)
    client = _milvus_client(location)
    try:
        if client.has_collection(collection):
            if not overwrite:
                raise ExportError(f"{location} already has a collection {collection!r}: pass --overwrite to replace it")
            client.drop_collection(collection)
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MILVUS_VARCHAR_BYTES)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=src.dim)
        if src.has_texts:
            schema.add_field("text", DataType.VARCHAR, max_length=MILVUS_VARCHAR_BYTES)
        params = client.prepare_index_params()
        params.add_index(field_name="vector", index_type="FLAT", metric_type="COSINE")
        client.create_collection(collection, schema=schema, index_params=params)
        client.alter_collection_properties(collection, properties={"embedlab": json.dumps(_metadata(src))})
        for ids, vecs, texts in src.batches():
            for lo in range(0, len(ids), batch):
                hi = min(len(ids), lo + batch)
                rows = [
                    {
                        "id": ids[i],
                        "vector": vecs[i].tolist(),
                        **({"text": _utf8_prefix(texts[i], MILVUS_VARCHAR_BYTES)} if texts is not None else {}),
                    }
                    for i in range(lo, hi)
                ]
                client.insert(collection, rows)
        client.flush(collection)
        rows = int(client.get_collection_stats(collection)["row_count"])
    finally:
        client.close()
    return {"rows": rows, "index": "FLAT (cosine, exact)"}


def export(
    source: str | Path,
    uri: str,
    *,
    collection: str = DEFAULT_COLLECTION,
    overwrite: bool = False,
    ann: bool = True,
    truncate_texts: bool = False,
) -> dict[str, Any]:
    """Write the vectors, ids, texts and model record of ``source`` to ``uri``; returns a summary.
    ``truncate_texts`` (Milvus only) cuts texts over Milvus's 65,535-byte VARCHAR limit instead of refusing."""
    target = parse_target(uri)
    if truncate_texts and target.kind != "milvus-lite":
        raise ConfigError("--truncate-texts applies to Milvus Lite targets only (LanceDB and Qdrant keep every text)")
    src = open_source(source)
    if src.sparse and target.kind == "milvus-lite":
        raise ConfigError(
            f"{source} holds sparse shards: the Milvus Lite export takes dense vectors only; "
            f"export them to qdrant://PATH or lancedb://PATH"
        )
    if target.kind == "lancedb":
        result = _lancedb(src, target.location, collection, overwrite, ann)
    elif target.kind.startswith("qdrant"):
        result = _qdrant(src, target, collection, overwrite, ann)
    else:
        result = _milvus(src, target.location, collection, overwrite, ann, truncate_texts=truncate_texts)
    if result["rows"] != src.count:
        raise ExportError(f"{target} holds {result['rows']} rows after the export, the source {src.count}")
    return {"target": str(target), "collection": collection, "source": src.kind, **result}


# -- reading back (parity tests, benchmarks) ---------------------------------------------------------
def search_target(
    uri: str,
    queries: np.ndarray,
    k: int = 10,
    *,
    collection: str = DEFAULT_COLLECTION,
    exact: bool = True,
    nprobes: int = 20,
    refine_factor: int | None = None,
) -> list[list[str]]:
    """Top-``k`` document ids per query from an exported target (cosine). ``exact=False`` uses LanceDB's ANN
    index (``nprobes``, optional ``refine_factor``); the other targets search as they were built."""
    target = parse_target(uri)
    q = _unit(np.asarray(queries, dtype=np.float32))
    if target.kind == "lancedb":
        table = _import_lancedb().connect(target.location).open_table(collection)
        out = []
        for v in q:
            s = table.search(v).metric("cosine").limit(k).select(["id", "_distance"])
            s = s.bypass_vector_index() if exact else s.nprobes(nprobes)
            if not exact and refine_factor:
                s = s.refine_factor(refine_factor)
            out.append(s.to_arrow().column("id").to_pylist())
        return out
    if target.kind.startswith("qdrant"):
        client = qdrant_client(target)
        try:
            return [
                [
                    p.payload["id"]
                    for p in client.query_points(collection, query=v.tolist(), limit=k, with_payload=["id"]).points
                ]
                for v in q
            ]
        finally:
            client.close()
    client = _milvus_client(target.location)
    try:
        res = client.search(collection, data=q.tolist(), limit=k, output_fields=["id"])
        return [[hit["id"] for hit in hits] for hits in res]
    finally:
        client.close()


def target_metadata(uri: str, *, collection: str = DEFAULT_COLLECTION) -> dict[str, Any]:
    """The model record stored with an exported collection."""
    target = parse_target(uri)
    if target.kind == "lancedb":
        meta = _import_lancedb().connect(target.location).open_table(collection).schema.metadata or {}
        return json.loads(meta[b"embedlab"])
    if target.kind.startswith("qdrant"):
        client = qdrant_client(target)
        try:
            return dict(client.get_collection(collection).config.metadata or {})
        finally:
            client.close()
    client = _milvus_client(target.location)
    try:
        return json.loads(client.describe_collection(collection)["properties"]["embedlab"])
    finally:
        client.close()
