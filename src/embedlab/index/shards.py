"""Embedding shards: a corpus's vectors as Parquet files plus a manifest, reusable without re-encoding.

Directory layout (every file written atomically)::

    manifest.json          format, the model that made the vectors (fingerprint, pooling, attention, prompt,
                           dims), precision, the corpus files' SHA-256, and per shard: rows, SHA-256, first id
    shard-00000.parquet    columns ``id`` (string), ``vector`` (fixed-size list) and optionally ``text``
    shard-00001.parquet    ...

Shard ``k`` holds corpus rows ``[k * shard_rows, (k + 1) * shard_rows)`` in corpus order, so the shards
read in order give the corpus order whatever backend wrote them. The manifest is rewritten after every
finished shard; ``complete`` is true once every shard is listed.

Vector precisions: ``float32`` and ``float16`` as is; ``int8`` as ``round(127 * x / scale)`` with one
``scale`` (max |x|) per shard, stored in the manifest; ``binary`` as the packed signs (``dims / 8`` bytes),
read back as ``±1 / sqrt(dims)`` (unit sign vectors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from embedlab.errors import ShardError
from embedlab.io import atomic_path, file_sha256, read_json, write_json

FORMAT = "embedlab-shards/1"
MANIFEST = "manifest.json"
PRECISIONS = ("float32", "float16", "int8", "binary")


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


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ShardError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


# -- vectors <-> Arrow ------------------------------------------------------------------------------
def encode_vectors(vectors: np.ndarray, precision: str) -> tuple[Any, float | None]:
    """A fixed-size-list Arrow array of the vectors in ``precision``, and the int8 scale (else None)."""
    import pyarrow as pa

    x = np.asarray(vectors, dtype=np.float32)
    scale = None
    if precision == "float32":
        flat, width = x.ravel(), x.shape[1]
    elif precision == "float16":
        flat, width = x.astype(np.float16).ravel(), x.shape[1]
    elif precision == "int8":
        scale = float(np.abs(x).max()) or 1.0
        flat, width = np.clip(np.rint(x * (127.0 / scale)), -127, 127).astype(np.int8).ravel(), x.shape[1]
    elif precision == "binary":
        if x.shape[1] % 8:
            raise ShardError(f"binary precision needs dims divisible by 8, got {x.shape[1]}")
        flat, width = np.packbits(x > 0, axis=1).ravel(), x.shape[1] // 8
    else:
        check_precision(precision)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), width), scale


def decode_vectors(column: Any, precision: str, dim: int, scale: float | None = None) -> np.ndarray:
    """The float32 matrix stored in a ``vector`` column (inverse of :func:`encode_vectors`)."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    raw = column.flatten().to_numpy(zero_copy_only=False)
    if precision == "binary":
        bits = np.unpackbits(raw.reshape(n, dim // 8), axis=1)[:, :dim]
        return ((bits.astype(np.float32) * 2 - 1) / np.sqrt(dim)).astype(np.float32)
    x = raw.reshape(n, dim).astype(np.float32)
    if precision == "int8":
        x *= (scale or 1.0) / 127.0
    return x


# -- one shard ---------------------------------------------------------------------------------------
def write_shard(
    directory: str | Path,
    index: int,
    ids: Sequence[str],
    vectors: np.ndarray,
    texts: Sequence[str] | None,
    precision: str,
) -> dict[str, Any]:
    """Write shard ``index`` atomically (a failed write leaves no partial file); returns its manifest entry."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(ids) != len(vectors) or (texts is not None and len(texts) != len(ids)):
        raise ShardError(f"shard {index}: {len(ids)} ids, {len(vectors)} vectors, {len(texts or [])} texts")
    column, scale = encode_vectors(vectors, precision)
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
    if scale is not None:
        entry["scale"] = scale
    return entry


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
    if manifest.get("format") != FORMAT:
        raise ShardError(
            f"{directory / MANIFEST} is not an embedlab shard manifest (format {manifest.get('format')!r}, expected {FORMAT!r})"
        )
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
    def has_texts(self) -> bool:
        return bool(self.manifest.get("has_texts"))

    def __len__(self) -> int:
        return int(self.manifest["corpus"]["rows"])

    def iter_shards(self, *, texts: bool = True) -> Iterator[tuple[list[str], np.ndarray, list[str] | None]]:
        """(ids, float32 vectors, texts or None) per shard, in corpus order."""
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
            cols = ["id", "vector"] + (["text"] if texts and self.has_texts else [])
            try:
                table = pq.read_table(f, columns=cols)
            except Exception as exc:  # pyarrow raises several types for unreadable files
                raise ShardError(f"shard unreadable: {f} ({exc})") from None
            if table.num_rows != entry["rows"]:
                raise ShardError(f"shard {f} has {table.num_rows} rows, the manifest says {entry['rows']}")
            vecs = decode_vectors(table.column("vector"), self.precision, self.dim, entry.get("scale"))
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
