"""Embedding shards: a corpus's vectors as Parquet files plus a manifest, reusable without re-encoding.

Directory layout (every file written atomically)::

    manifest.json          format, the model that made the vectors (fingerprint, pooling, attention, prompt,
                           dims), precision (and for int8 the per-dimension ranges), the corpus files'
                           SHA-256, and per shard: rows, SHA-256, first id
    shard-00000.parquet    columns ``id`` (string), ``vector`` (fixed-size list) and optionally ``text``
    shard-00001.parquet    ...

Shard ``k`` holds corpus rows ``[k * shard_rows, (k + 1) * shard_rows)`` in corpus order, so the shards
read in order give the corpus order whatever backend wrote them. The manifest is rewritten after every
finished shard; ``complete`` is true once every shard is listed.

Vector precisions are :data:`embedlab.vectors.PRECISIONS`, encoded and decoded by
:func:`embedlab.vectors.quantize` / :func:`~embedlab.vectors.dequantize` (the one quantiser, as the server
and the index use): ``float32`` and ``float16`` as is; ``binary`` as the packed sign bits (``dims / 8``
bytes), read back as ``±1 / sqrt(dims)``; ``int8`` as FAISS SQ8 codes - 128 with ONE set of per-dimension
ranges (:class:`~embedlab.vectors.Int8Ranges`) for the whole directory, stored in the manifest as
``int8_ranges`` (``{"lo": [...], "hi": [...]}``). ``embed-corpus`` calibrates them once per directory,
on the vectors of the first :data:`CALIBRATION_ROWS` corpus rows (corpus order, encoded by the driver
before any shard), and every shard (local or Ray, and the shards of a ``--resume``d run, which reuse the
manifest's ranges) is encoded with them; values outside a dimension's range clip to its end.

Format ``embedlab-shards/2`` (this one) differs from ``/1`` only in int8. ``/1`` int8 shards (one abs-max
``scale`` per shard in the manifest entries, ``round(127 x / scale)``) stay readable as the read-only
precision ``int8-absmax``: a manifest with precision ``int8``, per-shard ``scale`` entries and no
``int8_ranges`` reads as it. Nothing writes it.

Sparse shards (a sparse model, e.g. pooling ``splade``): the manifest adds ``"kind": "sparse"`` and
``"vocab_size"`` (dense manifests carry no ``kind`` and read as ``dense``), the precision is always
``float32``, and each shard's ``vector`` column is replaced by ``indices`` (list of int32, strictly
increasing per row) and ``values`` (list of float32): row i of a shard is row i of the
:class:`~embedlab.vectors.SparseEmbeddings` that ``encode(output="sparse")`` gives, exactly. Checksums,
first ids and ``--resume`` are those of dense shards. :meth:`EmbeddingShards.iter_sparse` /
:meth:`~EmbeddingShards.read_sparse` read them; the dense readers (and ``index build --from-embeddings``)
refuse them in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from embedlab.errors import ConfigError, InputError, ShardError
from embedlab.io import atomic_path, file_sha256, read_json, write_json
from embedlab.vectors import PRECISIONS, Int8Ranges, calibrate_int8, dequantize, quantize

FORMAT = "embedlab-shards/2"
READ_FORMATS = ("embedlab-shards/1", FORMAT)
MANIFEST = "manifest.json"
LEGACY_PRECISIONS = ("int8-absmax",)  # read only: shards of format /1 with one abs-max scale per shard
CALIBRATION_ROWS = 1024  # int8: the ranges are the min/max of the first this many corpus rows' vectors


def model_record(
    emb: Any, name: str, query_prompt: str | None = None, document_prompt: str | None = None
) -> dict[str, Any]:
    """What identifies the vectors' model, as stored in index and shard manifests."""
    return {
        "name": name,
        "source": emb.backbone.source,
        "pooling": emb.head.name,
        "attention": emb.attention,
        "fingerprint": emb.fingerprint(),
        "dim": emb.output_dim,
        "normalize": emb.normalize,
        "query_prompt": query_prompt,
        "document_prompt": document_prompt,
    }


SPARSE = "sparse"


def shard_kind(manifest: dict[str, Any]) -> str:
    """``sparse`` for sparse shards, ``dense`` otherwise (manifests before sparse shards carry no kind)."""
    return str(manifest.get("kind") or "dense")


def check_dense(manifest: dict[str, Any], directory: str | Path) -> None:
    """A one-line ShardError when the shards are sparse (the dense readers and index cannot use them)."""
    if shard_kind(manifest) == SPARSE:
        raise ShardError(
            f"{directory} holds sparse shards (pooling {manifest.get('model', {}).get('pooling')!r}, "
            f"vocab_size {manifest.get('vocab_size')}): a dense index cannot be built from them; use "
            f"embedlab.index.SparseIndex, or `embedlab export {directory} --to qdrant://PATH`"
        )


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def check_precision(precision: str) -> str:
    """``precision`` if shards can be written in it (:data:`embedlab.vectors.PRECISIONS`); a one-line
    ShardError otherwise (``int8-absmax`` is read only)."""
    if precision in LEGACY_PRECISIONS:
        raise ShardError(
            f"precision {precision!r} is read only (format embedlab-shards/1); write int8 shards with precision 'int8'"
        )
    if precision not in PRECISIONS:
        raise ShardError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


def calibrate(vectors: np.ndarray) -> Int8Ranges:
    """The int8 ranges of a shard directory: :func:`embedlab.vectors.calibrate_int8` on the calibration
    vectors (``embed-corpus`` passes those of the first :data:`CALIBRATION_ROWS` corpus rows)."""
    try:
        return calibrate_int8(vectors)
    except (ConfigError, InputError) as exc:
        raise ShardError(f"int8 calibration: {exc}") from None


def manifest_ranges(manifest: dict[str, Any]) -> Int8Ranges | None:
    """The manifest's int8 ranges (None for the other precisions); a one-line ShardError when an int8
    manifest has none or malformed ones."""
    if manifest.get("precision") != "int8":
        return None
    data = manifest.get("int8_ranges")
    if data is None:
        raise ShardError("an int8 shard manifest must carry its per-dimension ranges (int8_ranges)")
    try:
        return Int8Ranges.from_dict(data)
    except ConfigError as exc:
        raise ShardError(f"the shard manifest's int8_ranges: {exc}") from None


# -- vectors <-> Arrow ------------------------------------------------------------------------------
def encode_vectors(vectors: np.ndarray, precision: str, ranges: Int8Ranges | None = None) -> Any:
    """A fixed-size-list Arrow array of the vectors' codes in ``precision`` (:func:`embedlab.vectors.quantize`;
    int8 needs the directory's ``ranges``)."""
    import pyarrow as pa

    check_precision(precision)
    if precision == "int8" and ranges is None:
        raise ShardError("int8 shards need the directory's per-dimension ranges (shards.calibrate)")
    try:
        codes = quantize(np.asarray(vectors, dtype=np.float32), precision, ranges)
    except (ConfigError, InputError) as exc:
        raise ShardError(f"{precision} shard: {exc}") from None
    return pa.FixedSizeListArray.from_arrays(pa.array(codes.ravel()), codes.shape[1])


def decode_vectors(
    column: Any, precision: str, dim: int, ranges: Int8Ranges | None = None, *, scale: float | None = None
) -> np.ndarray:
    """The float32 matrix stored in a ``vector`` column (inverse of :func:`encode_vectors`;
    :func:`embedlab.vectors.dequantize`). ``int8`` needs the manifest's ``ranges``; the legacy
    ``int8-absmax`` its shard's ``scale``."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    raw = column.flatten().to_numpy(zero_copy_only=False)
    if precision in LEGACY_PRECISIONS:
        return raw.reshape(n, dim).astype(np.float32) * np.float32((scale or 1.0) / 127.0)
    if precision not in PRECISIONS:
        raise ShardError(f"unknown shard precision {precision!r}")
    width = dim // 8 if precision == "binary" else dim
    try:
        return dequantize(raw.reshape(n, width), precision, ranges, dim)
    except (ConfigError, InputError) as exc:
        raise ShardError(f"{precision} shard: {exc}") from None


# -- one shard ---------------------------------------------------------------------------------------
def write_shard(
    directory: str | Path,
    index: int,
    ids: Sequence[str],
    vectors: np.ndarray,
    texts: Sequence[str] | None,
    precision: str,
    ranges: Int8Ranges | None = None,
) -> dict[str, Any]:
    """Write shard ``index`` atomically (a failed write leaves no partial file); returns its manifest entry.
    int8 needs the directory's ``ranges`` (the manifest's ``int8_ranges``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(ids) != len(vectors) or (texts is not None and len(texts) != len(ids)):
        raise ShardError(f"shard {index}: {len(ids)} ids, {len(vectors)} vectors, {len(texts or [])} texts")
    column = encode_vectors(vectors, precision, ranges)
    cols = {"id": pa.array(list(ids), pa.string()), "vector": column}
    if texts is not None:
        cols["text"] = pa.array(list(texts), pa.string())
    name = shard_name(index)
    with atomic_path(Path(directory) / name) as tmp:
        pq.write_table(pa.table(cols), tmp)
        digest = file_sha256(tmp)
    entry: dict[str, Any] = {
        "index": index,
        "name": name,
        "rows": len(ids),
        "sha256": digest,
        "first_id": str(ids[0]) if len(ids) else None,
    }
    return entry


def write_sparse_shard(
    directory: str | Path, index: int, ids: Sequence[str], rows: Any, texts: Sequence[str] | None
) -> dict[str, Any]:
    """Write sparse shard ``index`` atomically: ``rows`` (a :class:`~embedlab.vectors.SparseEmbeddings`) as
    the list columns ``indices`` (int32) and ``values`` (float32); returns its manifest entry."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embedlab.vectors import SparseEmbeddings

    if not isinstance(rows, SparseEmbeddings):
        raise ShardError(f"sparse shard {index}: expected SparseEmbeddings, got {type(rows).__name__}")
    if len(ids) != len(rows) or (texts is not None and len(texts) != len(ids)):
        raise ShardError(f"shard {index}: {len(ids)} ids, {len(rows)} sparse rows, {len(texts or [])} texts")
    if rows.vocab_size > np.iinfo(np.int32).max:
        raise ShardError(f"sparse shard {index}: vocab_size {rows.vocab_size} does not fit int32 indices")
    offsets = pa.array(rows.indptr.astype(np.int64), pa.int64())
    cols = {
        "id": pa.array(list(ids), pa.string()),
        "indices": pa.LargeListArray.from_arrays(offsets, pa.array(rows.indices.astype(np.int32), pa.int32())),
        "values": pa.LargeListArray.from_arrays(offsets, pa.array(rows.values.astype(np.float32), pa.float32())),
    }
    if texts is not None:
        cols["text"] = pa.array(list(texts), pa.string())
    name = shard_name(index)
    table = pa.table(cols).replace_schema_metadata({"embedlab.vocab_size": str(rows.vocab_size)})
    with atomic_path(Path(directory) / name) as tmp:
        pq.write_table(table, tmp)
        digest = file_sha256(tmp)
    return {
        "index": index,
        "name": name,
        "rows": len(ids),
        "sha256": digest,
        "first_id": str(ids[0]) if len(ids) else None,
    }


def decode_sparse(table: Any, vocab_size: int) -> Any:
    """The :class:`~embedlab.vectors.SparseEmbeddings` of a sparse shard's ``indices`` and ``values`` columns."""
    from embedlab.vectors import SparseEmbeddings

    idx = table.column("indices").combine_chunks()
    val = table.column("values").combine_chunks()
    indptr = idx.offsets.to_numpy()
    if not np.array_equal(indptr, val.offsets.to_numpy()):
        raise ShardError("sparse shard: the indices and values columns have different row lengths")
    base = int(indptr[0]) if len(indptr) else 0
    try:
        return SparseEmbeddings(
            indptr - base,
            idx.values.to_numpy(zero_copy_only=False)[base : base + int(indptr[-1] - base)],
            val.values.to_numpy(zero_copy_only=False)[base : base + int(indptr[-1] - base)],
            vocab_size,
        )
    except InputError as exc:
        raise ShardError(f"sparse shard: {exc}") from None


def shard_ok(directory: str | Path, entry: dict[str, Any]) -> bool:
    """True when the shard file exists and matches the SHA-256 in its manifest entry."""
    f = Path(directory) / entry["name"]
    return f.is_file() and file_sha256(f) == entry["sha256"]


def read_manifest(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    if not (directory / MANIFEST).is_file():
        raise ShardError(
            f"{directory} holds no embedding shards (no {MANIFEST}); write them with `embedlab embed-corpus`"
        )
    manifest = read_json(directory / MANIFEST, ShardError, "shard manifest")
    if manifest.get("format") not in READ_FORMATS:
        raise ShardError(
            f"{directory / MANIFEST} is not an embedlab shard manifest (format {manifest.get('format')!r}, "
            f"expected one of {', '.join(READ_FORMATS)})"
        )
    return upgrade_manifest(manifest)


def upgrade_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with its legacy int8 named: precision ``int8`` with per-shard ``scale`` entries and no
    ``int8_ranges`` (format ``/1``) reads as the read-only ``int8-absmax``."""
    shards = manifest.get("shards", [])
    if manifest.get("precision") == "int8" and "int8_ranges" not in manifest and any("scale" in e for e in shards):
        manifest = {**manifest, "precision": "int8-absmax"}
    return manifest


def write_manifest(directory: str | Path, manifest: dict[str, Any]) -> None:
    write_json(Path(directory) / MANIFEST, manifest)


# -- reading a whole directory ----------------------------------------------------------------------
class EmbeddingShards:
    """A finished shard directory. Every shard is checked against its SHA-256 before it is read."""

    def __init__(self, directory: str | Path, *, verify: bool = True) -> None:
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        if not self.manifest.get("complete"):
            done = sum(e["rows"] for e in self.manifest.get("shards", []))
            raise ShardError(
                f"{self.directory} is incomplete ({done} of {self.manifest['corpus']['rows']} rows): "
                f"finish it with `embedlab embed-corpus ... --out {self.directory} --resume`"
            )
        self.verify = verify
        self._ranges = manifest_ranges(self.manifest)  # a missing or malformed int8 record fails here

    @property
    def model(self) -> dict[str, Any]:
        return self.manifest["model"]

    @property
    def dim(self) -> int:
        return int(self.manifest["model"]["dim"])

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    @property
    def int8_ranges(self) -> Int8Ranges | None:
        """The per-dimension ranges every int8 shard is decoded with (None for the other precisions)."""
        return self._ranges

    @property
    def has_texts(self) -> bool:
        return bool(self.manifest.get("has_texts"))

    @property
    def kind(self) -> str:
        """``dense`` or ``sparse`` (:func:`shard_kind`)."""
        return shard_kind(self.manifest)

    @property
    def vocab_size(self) -> int | None:
        """The sparse shards' vocabulary size (None for dense shards)."""
        return int(self.manifest["vocab_size"]) if self.kind == SPARSE else None

    def _tables(self, columns: list[str]) -> Iterator[tuple[dict[str, Any], Any]]:
        """(manifest entry, checked Parquet table of ``columns``) per shard, in corpus order."""
        import pyarrow.parquet as pq

        for entry in sorted(self.manifest["shards"], key=lambda e: e["index"]):
            f = self.directory / entry["name"]
            if not f.is_file():
                raise ShardError(f"shard missing: {f}")
            if self.verify and file_sha256(f) != entry["sha256"]:
                raise ShardError(
                    f"shard corrupt: {f} does not match its SHA-256 in the manifest; "
                    f"re-create it with `embedlab embed-corpus ... --resume`"
                )
            try:
                table = pq.read_table(f, columns=columns)
            except Exception as exc:  # pyarrow raises several types for unreadable files
                raise ShardError(f"shard unreadable: {f} ({exc})") from None
            if table.num_rows != entry["rows"]:
                raise ShardError(f"shard {f} has {table.num_rows} rows, the manifest says {entry['rows']}")
            yield entry, table

    def iter_sparse(self, *, texts: bool = True) -> Iterator[tuple[list[str], Any, list[str] | None]]:
        """(ids, :class:`~embedlab.vectors.SparseEmbeddings`, texts or None) per sparse shard, in corpus order."""
        if self.kind != SPARSE:
            raise ShardError(f"{self.directory} holds dense shards: read them with iter_shards / read_all")
        cols = ["id", "indices", "values"] + (["text"] if texts and self.has_texts else [])
        for entry, table in self._tables(cols):
            try:
                rows = decode_sparse(table, int(self.manifest["vocab_size"]))
            except ShardError as exc:
                raise ShardError(f"{self.directory / entry['name']}: {exc}") from None
            yield (table.column("id").to_pylist(), rows, table.column("text").to_pylist() if "text" in cols else None)

    def read_sparse(self, *, texts: bool = True) -> tuple[list[str], Any, list[str] | None]:
        """Every sparse shard joined: (ids, one SparseEmbeddings, texts or None)."""
        from embedlab.vectors import SparseEmbeddings, concat

        ids: list[str] = []
        parts: list[Any] = []
        all_texts: list[str] | None = [] if texts and self.has_texts else None
        for i, rows, t in self.iter_sparse(texts=texts):
            ids += i
            parts.append(rows)
            if all_texts is not None and t is not None:
                all_texts += t
        joined = concat(parts) if parts else SparseEmbeddings.from_rows([], int(self.manifest["vocab_size"]))
        return ids, joined, all_texts

    def __len__(self) -> int:
        return int(self.manifest["corpus"]["rows"])

    def iter_shards(self, *, texts: bool = True) -> Iterator[tuple[list[str], np.ndarray, list[str] | None]]:
        """(ids, float32 vectors, texts or None) per shard, in corpus order (dense shards only)."""
        check_dense(self.manifest, self.directory)
        cols = ["id", "vector"] + (["text"] if texts and self.has_texts else [])
        for entry, table in self._tables(cols):
            vecs = decode_vectors(
                table.column("vector"), self.precision, self.dim, self.int8_ranges, scale=entry.get("scale")
            )
            yield (table.column("id").to_pylist(), vecs, table.column("text").to_pylist() if "text" in cols else None)

    def read_all(self, *, texts: bool = True) -> tuple[list[str], np.ndarray, list[str] | None]:
        ids: list[str] = []
        vecs: list[np.ndarray] = []
        all_texts: list[str] | None = [] if texts and self.has_texts else None
        for i, v, t in self.iter_shards(texts=texts):
            ids += i
            vecs.append(v)
            if all_texts is not None and t is not None:
                all_texts += t
        return ids, (np.concatenate(vecs) if vecs else np.empty((0, self.dim), np.float32)), all_texts


# -- shards -> index ----------------------------------------------------------------------------------
def build_index_from_shards(
    directory: str | Path,
    codec: str = "float32",
    *,
    rescore: str = "float32",
    model: str | None = None,
    query_prompt: str | None = None,
    load_model: Callable[[str, str | None, str | None], Any] | None = None,
) -> Any:
    """A :class:`VectorIndex` from finished shards, without re-encoding.

    The index records the shards' model. With ``load_model(name, pooling, attention)`` the model (``model``,
    default the one named in the manifest) is loaded and its fingerprint must equal the shards'; so an
    index never pairs vectors with a query model that did not make them."""
    from embedlab.index.store import VectorIndex

    shards = EmbeddingShards(directory)
    check_dense(shards.manifest, directory)  # before any model loads
    record = dict(shards.model)
    if query_prompt is not None:
        record["query_prompt"] = query_prompt
    if load_model is not None:
        name = model or record["name"]
        fp = load_model(name, record.get("pooling"), record.get("attention")).fingerprint()
        if fp != record.get("fingerprint"):
            raise ShardError(
                f"the shards in {directory} were made by {record['name']} (fingerprint {record.get('fingerprint')}); "
                f"{name} has fingerprint {fp}: its queries would not match these vectors"
            )
        record["name"] = name
    elif model is not None and model != record.get("name"):
        raise ShardError(f"the shards in {directory} were made by {record.get('name')}, not {model}")
    if shards.precision != "float32":
        record["shard_precision"] = shards.precision
    ids, vectors, texts = shards.read_all()
    return VectorIndex.build(vectors, ids, codec, texts=texts, rescore=rescore, model=record)
