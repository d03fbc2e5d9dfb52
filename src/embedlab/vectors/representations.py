"""The representation contract: one typed result for each kind of output an embedder can give.

============  ===========================  =====================================  ===========================
kind          type                         arrays                                 features key(s) it is read from
============  ===========================  =====================================  ===========================
dense         :class:`DenseEmbeddings`     ``vectors`` (n, d) float32             ``sentence_embedding``
binary        :class:`BinaryEmbeddings`    ``codes`` (n, d/8) uint8, ``dim``      ``sentence_embedding`` (its sign bits)
sparse        :class:`SparseEmbeddings`    CSR: ``indptr`` (n+1,), ``indices``,   ``sparse_embedding``
                                           ``values`` (nnz,), ``vocab_size``
multi_vector  :class:`MultiVectorEmbeddings`  ``vectors`` (sum of lengths, d),    ``token_vectors`` + ``token_mask``
                                           ``lengths`` (n,)
============  ===========================  =====================================  ===========================

Consumers (the index, the server, export) dispatch on ``result.kind`` (or the type), never on a
head's name; :func:`from_features` turns one batch's features dict into the typed result, and
:func:`concat` joins batches. Every type validates itself at construction (a one-line
:class:`~embedlab.errors.InputError`), and round-trips through

* ``to_arrays()`` / ``from_arrays()`` (numpy arrays; ``save_npz`` / ``load_npz`` write them atomically),
* ``to_json()`` / ``from_json()`` (one JSON object per text, as the HTTP API sends: dense
  ``{"embedding": [...]}``, binary ``{"embedding": [bytes...]}``, sparse ``{"indices": [...],
  "values": [...]}``, multi-vector ``{"vectors": [[...], ...], "length": n}``),
* ``to_arrow()`` / ``from_arrow()`` (a pyarrow table, one row per text; pyarrow is imported lazily).

Sparse rows hold strictly increasing vocabulary indices (sorted, no duplicates) with finite non-zero
weights; multi-vector rows hold ``length`` finite vectors of one width (a row may be empty).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from embedlab.errors import ConfigError, InputError
from embedlab.io import atomic_path
from embedlab.vectors.quantization import dequantize, quantize

KINDS = ("dense", "sparse", "multi_vector", "binary")
FEATURE_KEYS = {
    "dense": "sentence_embedding",
    "binary": "sentence_embedding",
    "sparse": "sparse_embedding",
    "multi_vector": "token_vectors",
}  # the features key each kind is read from


def check_kind(kind: Any) -> str:
    if kind not in KINDS:
        raise ConfigError(f"output kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return kind


def _array(x: Any) -> np.ndarray:
    """A numpy array from numpy or a (CPU or device, any float) torch tensor, without importing torch."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def _typed_array(x: Any, ndim: int, what: str, kind: type[np.generic], kind_name: str) -> np.ndarray:
    """``x`` as an ``ndim``-d array whose dtype is a ``kind`` (``np.floating``, ``np.integer``; an empty array
    passes whatever its dtype), or an :class:`InputError` naming ``what``."""
    a = _array(x)
    if a.ndim != ndim:
        raise InputError(f"{what} must be {ndim}-d; got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, kind):
        raise InputError(f"{what} must be {kind_name}; got {a.dtype}")
    return a


def _finite_floats(x: Any, ndim: int, what: str) -> np.ndarray:
    a = np.ascontiguousarray(_typed_array(x, ndim, what, np.floating, "floats"), dtype=np.float32)
    if not np.isfinite(a).all():
        raise InputError(f"{what} contain NaN or inf")
    return a


def _ints(x: Any, ndim: int, what: str) -> np.ndarray:
    return np.ascontiguousarray(_typed_array(x, ndim, what, np.integer, "integers"), dtype=np.int64)


class Embeddings(ABC):
    """Base of the typed results: ``kind``, ``len()``, ``take(rows)`` and the (de)serialisations."""

    kind: ClassVar[str]

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def take(self, rows: Any) -> Embeddings: ...

    @abstractmethod
    def to_arrays(self) -> dict[str, np.ndarray]: ...

    @classmethod
    @abstractmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> Embeddings: ...

    @abstractmethod
    def to_json(self) -> list[dict[str, Any]]: ...

    @classmethod
    @abstractmethod
    def from_json(cls, rows: Any, **kwargs: Any) -> Embeddings: ...

    def save_npz(self, path: str | Path) -> None:
        """The arrays and the kind in one ``.npz`` file, written atomically."""
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, kind=np.array(self.kind), **self.to_arrays())

    def to_arrow(self) -> Any:
        """A pyarrow table, one row per text (see :func:`from_arrow`)."""
        import pyarrow as pa

        table = pa.table(self._arrow_columns())
        return table.replace_schema_metadata({"embedlab.kind": self.kind, **self._arrow_metadata()})

    @abstractmethod
    def _arrow_columns(self) -> dict[str, Any]: ...

    def _arrow_metadata(self) -> dict[str, str]:
        return {}


def _rows_arg(rows: Any, n: int) -> np.ndarray:
    idx = np.asarray(rows, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise InputError(f"row index out of range for {n} rows")
    return idx % n if n else idx


# -- dense and binary ------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class DenseEmbeddings(Embeddings):
    """One float32 vector per text."""

    vectors: np.ndarray
    kind: ClassVar[str] = "dense"

    def __post_init__(self) -> None:
        object.__setattr__(self, "vectors", _finite_floats(self.vectors, 2, "dense vectors"))

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def take(self, rows: Any) -> DenseEmbeddings:
        return DenseEmbeddings(self.vectors[_rows_arg(rows, len(self))])

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"vectors": self.vectors}

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> DenseEmbeddings:
        return cls(arrays["vectors"])

    def to_json(self) -> list[dict[str, Any]]:
        return [{"embedding": row} for row in self.vectors.tolist()]

    @classmethod
    def from_json(cls, rows: Any, **kwargs: Any) -> DenseEmbeddings:
        _check_json_rows(rows, ("embedding",))
        widths = {len(r["embedding"]) for r in rows}
        if len(widths) > 1:
            raise InputError(f"dense rows must have one width; got {sorted(widths)}")
        return cls(np.asarray([r["embedding"] for r in rows], dtype=np.float32).reshape(len(rows), -1))

    def _arrow_columns(self) -> dict[str, Any]:
        import pyarrow as pa

        return {"embedding": pa.FixedSizeListArray.from_arrays(pa.array(self.vectors.ravel()), self.dim)}


@dataclass(frozen=True, eq=False)
class BinaryEmbeddings(Embeddings):
    """Sign bits of a ``dim``-wide vector per text, 8 a byte, most significant first (``np.packbits``)."""

    codes: np.ndarray
    dim: int
    kind: ClassVar[str] = "binary"

    def __post_init__(self) -> None:
        c = _array(self.codes)
        if c.ndim != 2 or c.dtype != np.uint8:
            raise InputError(f"binary codes must be a 2-d uint8 array; got shape {c.shape}, {c.dtype}")
        if not isinstance(self.dim, (int, np.integer)) or not 8 * c.shape[1] - 7 <= self.dim <= 8 * c.shape[1]:
            raise InputError(f"binary dim {self.dim!r} does not fit codes of {c.shape[1]} bytes")
        object.__setattr__(self, "codes", np.ascontiguousarray(c))
        object.__setattr__(self, "dim", int(self.dim))

    @classmethod
    def from_dense(cls, vectors: Any) -> BinaryEmbeddings:
        v = _finite_floats(vectors, 2, "dense vectors")
        return cls(quantize(v, "binary"), v.shape[1])

    def __len__(self) -> int:
        return len(self.codes)

    def take(self, rows: Any) -> BinaryEmbeddings:
        return BinaryEmbeddings(self.codes[_rows_arg(rows, len(self))], self.dim)

    def unpacked(self) -> np.ndarray:
        """±1/sqrt(dim) per bit (:func:`embedlab.vectors.dequantize`)."""
        return dequantize(self.codes, "binary", dim=self.dim)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"codes": self.codes, "dim": np.array(self.dim)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> BinaryEmbeddings:
        return cls(arrays["codes"], int(arrays["dim"]))

    def to_json(self) -> list[dict[str, Any]]:
        return [{"embedding": row} for row in self.codes.tolist()]

    @classmethod
    def from_json(cls, rows: Any, *, dim: int | None = None, **kwargs: Any) -> BinaryEmbeddings:
        _check_json_rows(rows, ("embedding",))
        codes = [r["embedding"] for r in rows]
        if any(not isinstance(b, int) or isinstance(b, bool) or not 0 <= b <= 255 for row in codes for b in row):
            raise InputError("binary rows must hold bytes (integers 0..255)")
        widths = {len(row) for row in codes}
        if len(widths) > 1:
            raise InputError(f"binary rows must have one width; got {sorted(widths)}")
        arr = np.asarray(codes, dtype=np.uint8).reshape(len(rows), -1)
        return cls(arr, 8 * arr.shape[1] if dim is None else dim)

    def _arrow_columns(self) -> dict[str, Any]:
        import pyarrow as pa

        return {"embedding": pa.FixedSizeListArray.from_arrays(pa.array(self.codes.ravel()), self.codes.shape[1])}

    def _arrow_metadata(self) -> dict[str, str]:
        return {"embedlab.dim": str(self.dim)}


# -- sparse ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SparseEmbeddings(Embeddings):
    """Weights over a vocabulary of ``vocab_size`` entries, in CSR layout: row i holds
    ``indices[indptr[i]:indptr[i+1]]`` (strictly increasing) with ``values`` at the same positions."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    vocab_size: int
    kind: ClassVar[str] = "sparse"

    def __post_init__(self) -> None:
        if (
            not isinstance(self.vocab_size, (int, np.integer))
            or isinstance(self.vocab_size, bool)
            or self.vocab_size <= 0
        ):
            raise InputError(f"sparse vocab_size must be a positive integer; got {self.vocab_size!r}")
        indptr, indices = _ints(self.indptr, 1, "sparse indptr"), _ints(self.indices, 1, "sparse indices")
        values = _finite_floats(self.values, 1, "sparse values")
        if len(indptr) == 0 or indptr[0] != 0 or (np.diff(indptr) < 0).any() or indptr[-1] != len(indices):
            raise InputError(f"sparse indptr must rise from 0 to the number of entries ({len(indices)})")
        if len(values) != len(indices):
            raise InputError(f"sparse rows have {len(indices)} indices but {len(values)} values")
        if len(indices) and (indices.min() < 0 or indices.max() >= self.vocab_size):
            raise InputError(f"sparse indices must lie in 0..{self.vocab_size - 1}")
        # strictly increasing within each row: every step that is not a row start must rise
        starts = np.zeros(len(indices), dtype=bool)
        starts[indptr[:-1][np.diff(indptr) > 0]] = True
        steps = np.diff(indices, prepend=-1)
        bad = ~starts & (steps <= 0)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            row = int(np.searchsorted(indptr, pos, side="right") - 1)
            what = "duplicate" if steps[pos] == 0 else "unsorted"
            raise InputError(f"sparse row {row} has {what} indices (they must be strictly increasing)")
        object.__setattr__(self, "indptr", indptr)
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "vocab_size", int(self.vocab_size))

    @classmethod
    def from_rows(cls, rows: list[tuple[Any, Any]], vocab_size: int) -> SparseEmbeddings:
        """From one (indices, values) pair per text."""
        lengths = [len(np.asarray(i).reshape(-1)) for i, _ in rows]
        indptr = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)
        indices = (
            np.concatenate([np.asarray(i, dtype=np.int64).reshape(-1) for i, _ in rows])
            if rows
            else np.zeros(0, np.int64)
        )
        values = np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for _, v in rows]) if rows else np.zeros(0)
        return cls(indptr, indices, values, vocab_size)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.indptr[i], self.indptr[i + 1]
        return self.indices[lo:hi], self.values[lo:hi]

    def to_dense(self) -> np.ndarray:
        """(n, vocab_size) float32 with zeros where no weight is stored."""
        out = np.zeros((len(self), self.vocab_size), dtype=np.float32)
        rows = np.repeat(np.arange(len(self)), np.diff(self.indptr))
        out[rows, self.indices] = self.values
        return out

    def take(self, rows: Any) -> SparseEmbeddings:
        return SparseEmbeddings.from_rows([self.row(int(i)) for i in _rows_arg(rows, len(self))], self.vocab_size)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "indptr": self.indptr,
            "indices": self.indices,
            "values": self.values,
            "vocab_size": np.array(self.vocab_size),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> SparseEmbeddings:
        return cls(arrays["indptr"], arrays["indices"], arrays["values"], int(arrays["vocab_size"]))

    def to_json(self, vocabulary: Any = None) -> list[dict[str, Any]]:
        """One ``{"indices", "values"}`` object per text; with ``vocabulary`` (a sequence of ``vocab_size``
        token strings) also ``"tokens"``, the strings of the indices (extra keys are ignored on reading)."""
        if vocabulary is not None and len(vocabulary) < self.vocab_size:
            raise ConfigError(f"the vocabulary has {len(vocabulary)} tokens, fewer than vocab_size {self.vocab_size}")
        rows = []
        for i, v in (self.row(k) for k in range(len(self))):
            row: dict[str, Any] = {"indices": i.tolist(), "values": v.tolist()}
            if vocabulary is not None:
                row["tokens"] = [vocabulary[j] for j in row["indices"]]
            rows.append(row)
        return rows

    @classmethod
    def from_json(cls, rows: Any, *, vocab_size: int | None = None, **kwargs: Any) -> SparseEmbeddings:
        _check_json_rows(rows, ("indices", "values"))
        if vocab_size is None:
            raise ConfigError("sparse rows from JSON need the vocabulary size")
        pairs = []
        for k, r in enumerate(rows):
            if not isinstance(r["indices"], list) or not isinstance(r["values"], list):
                raise InputError(f"sparse row {k}: indices and values must be lists")
            if any(not isinstance(i, int) or isinstance(i, bool) for i in r["indices"]):
                raise InputError(f"sparse row {k}: indices must be integers")
            pairs.append((np.asarray(r["indices"], dtype=np.int64), np.asarray(r["values"], dtype=np.float64)))
            if len(pairs[-1][0]) != len(pairs[-1][1]):
                raise InputError(f"sparse row {k} has {len(pairs[-1][0])} indices but {len(pairs[-1][1])} values")
        return cls.from_rows(pairs, vocab_size)

    def _arrow_columns(self) -> dict[str, Any]:
        import pyarrow as pa

        offsets = pa.array(self.indptr.astype(np.int32))
        return {
            "indices": pa.ListArray.from_arrays(offsets, pa.array(self.indices.astype(np.int32))),
            "values": pa.ListArray.from_arrays(offsets, pa.array(self.values)),
        }

    def _arrow_metadata(self) -> dict[str, str]:
        return {"embedlab.vocab_size": str(self.vocab_size)}


# -- multi-vector ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class MultiVectorEmbeddings(Embeddings):
    """A ragged set of ``dim``-wide token vectors per text (late interaction, ColBERT): row i is
    ``vectors[offsets[i]:offsets[i+1]]`` with ``offsets = [0, cumsum(lengths)]``."""

    vectors: np.ndarray
    lengths: np.ndarray
    kind: ClassVar[str] = "multi_vector"

    def __post_init__(self) -> None:
        vectors = _finite_floats(self.vectors, 2, "token vectors")
        lengths = _ints(self.lengths, 1, "multi-vector lengths")
        if (lengths < 0).any():
            raise InputError("multi-vector lengths must be >= 0")
        if int(lengths.sum()) != len(vectors):
            raise InputError(f"multi-vector lengths sum to {int(lengths.sum())} but there are {len(vectors)} vectors")
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "lengths", lengths)

    @classmethod
    def from_rows(cls, rows: list[Any], dim: int | None = None) -> MultiVectorEmbeddings:
        """From one (length, d) array per text (``dim`` is needed when every row is empty)."""
        arrays = [
            _finite_floats(r, 2, f"token vectors of row {k}")
            if np.size(r)
            else np.zeros((0, dim or (np.shape(r)[1] if np.ndim(r) == 2 else 0)), np.float32)
            for k, r in enumerate(rows)
        ]
        widths = {a.shape[1] for a in arrays if len(a)} | ({dim} if dim is not None else set())
        if len(widths) > 1:
            raise InputError(f"token vectors must have one width; got {sorted(widths)}")
        d = widths.pop() if widths else 0
        stacked = np.concatenate([a.reshape(-1, d) for a in arrays]) if arrays else np.zeros((0, d), np.float32)
        return cls(stacked.reshape(-1, d), np.array([len(a) for a in arrays], dtype=np.int64))

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)

    def row(self, i: int) -> np.ndarray:
        o = self.offsets
        return self.vectors[o[i] : o[i + 1]]

    def take(self, rows: Any) -> MultiVectorEmbeddings:
        return MultiVectorEmbeddings.from_rows([self.row(int(i)) for i in _rows_arg(rows, len(self))], self.dim)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"vectors": self.vectors, "lengths": self.lengths}

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> MultiVectorEmbeddings:
        return cls(arrays["vectors"], arrays["lengths"])

    def to_json(self) -> list[dict[str, Any]]:
        return [{"vectors": self.row(k).tolist(), "length": int(self.lengths[k])} for k in range(len(self))]

    @classmethod
    def from_json(cls, rows: Any, *, dim: int | None = None, **kwargs: Any) -> MultiVectorEmbeddings:
        _check_json_rows(rows, ("vectors", "length"))
        arrays = []
        for k, r in enumerate(rows):
            if not isinstance(r["vectors"], list) or any(not isinstance(v, list) for v in r["vectors"]):
                raise InputError(f"multi-vector row {k}: vectors must be a list of lists")
            if r["length"] != len(r["vectors"]):
                raise InputError(f"multi-vector row {k}: length {r['length']} but {len(r['vectors'])} vectors")
            widths = {len(v) for v in r["vectors"]}
            if len(widths) > 1:
                raise InputError(f"multi-vector row {k}: vectors of widths {sorted(widths)}")
            width = widths.pop() if widths else (dim or 0)
            arrays.append(np.asarray(r["vectors"], dtype=np.float64).reshape(len(r["vectors"]), width))
        return cls.from_rows(arrays, dim)

    def _arrow_columns(self) -> dict[str, Any]:
        import pyarrow as pa

        inner = pa.FixedSizeListArray.from_arrays(pa.array(self.vectors.ravel()), self.dim)
        return {"vectors": pa.ListArray.from_arrays(pa.array(self.offsets.astype(np.int32)), inner)}

    def _arrow_metadata(self) -> dict[str, str]:
        return {"embedlab.dim": str(self.dim)}


TYPES: dict[str, type[Embeddings]] = {
    "dense": DenseEmbeddings,
    "binary": BinaryEmbeddings,
    "sparse": SparseEmbeddings,
    "multi_vector": MultiVectorEmbeddings,
}


SAVE_SUFFIXES = (".npy", ".npz", ".jsonl")


def save_embeddings(path: str | Path, result: Any, vocabulary: Any = None) -> None:
    """Write an encode result atomically by the file's suffix: ``.npy`` (a dense (n, d) matrix), ``.npz``
    (any kind, :meth:`Embeddings.save_npz`) or ``.jsonl`` (one object per text with its ``index``: dense
    ``embedding``; sparse ``indices``, ``values`` and, given the ``vocabulary``, ``tokens``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SAVE_SUFFIXES:
        raise ConfigError(f"an embeddings file must end in {', '.join(SAVE_SUFFIXES)}; got {path}")
    if not isinstance(result, Embeddings):
        result = DenseEmbeddings(result)
    if suffix == ".npz":
        result.save_npz(path)
        return
    if suffix == ".npy" and result.kind != "dense":
        raise ConfigError(f"{result.kind} embeddings are saved as .npz or .jsonl, not .npy ({path})")
    with atomic_path(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, result.to_arrays()["vectors"])
            return
        if result.kind == "dense":
            rows = [{"embedding": [round(float(x), 7) for x in vec]} for vec in result.to_arrays()["vectors"]]
        elif result.kind == "sparse":
            rows = result.to_json(vocabulary)  # type: ignore[call-arg]
        else:
            rows = result.to_json()
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"index": i, **row}) + "\n" for i, row in enumerate(rows))


def _check_json_rows(rows: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(rows, list):
        raise InputError(f"expected a list of objects with {', '.join(keys)}; got {type(rows).__name__}")
    for k, r in enumerate(rows):
        if not isinstance(r, dict) or any(key not in r for key in keys):
            raise InputError(f"row {k} must be an object with {', '.join(keys)}")


def from_json(kind: str, rows: Any, **kwargs: Any) -> Embeddings:
    """The typed result of ``kind`` from its JSON rows (``vocab_size`` for sparse, ``dim`` optional)."""
    return TYPES[check_kind(kind)].from_json(rows, **kwargs)


def from_json_text(kind: str, text: str, **kwargs: Any) -> Embeddings:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON: {exc}") from None
    return from_json(kind, rows, **kwargs)


def load_npz(path: str | Path) -> Embeddings:
    """The typed result saved by :meth:`Embeddings.save_npz` (its kind read from the file)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read embeddings {path}: {exc}") from None
    kind = str(arrays.pop("kind", ""))
    return TYPES[check_kind(kind)].from_arrays(arrays)


def from_arrow(table: Any) -> Embeddings:
    """The typed result from :meth:`Embeddings.to_arrow`'s table (its kind read from the schema metadata)."""
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    kind = check_kind(meta.get("embedlab.kind"))
    if kind == "dense":
        col = table.column("embedding").combine_chunks()
        width = col.type.list_size
        return DenseEmbeddings(col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), width))
    if kind == "binary":
        col = table.column("embedding").combine_chunks()
        return BinaryEmbeddings(
            col.flatten().to_numpy(zero_copy_only=False).astype(np.uint8).reshape(len(col), -1),
            int(meta["embedlab.dim"]),
        )
    if kind == "sparse":
        idx, val = table.column("indices").combine_chunks(), table.column("values").combine_chunks()
        return SparseEmbeddings(
            idx.offsets.to_numpy(),
            idx.flatten().to_numpy(zero_copy_only=False),
            val.flatten().to_numpy(zero_copy_only=False),
            int(meta["embedlab.vocab_size"]),
        )
    col = table.column("vectors").combine_chunks()
    d = int(meta["embedlab.dim"])
    offsets = col.offsets.to_numpy()
    return MultiVectorEmbeddings(
        col.flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, d), np.diff(offsets)
    )


def from_features(features: dict[str, Any], kind: str) -> Embeddings:
    """The typed result of ``kind`` from one batch's features dict (see :mod:`embedlab.models.features`):

    * dense / binary read ``sentence_embedding`` (B, d);
    * sparse reads ``sparse_embedding`` = ``{"indices": (B, K) int, "values": (B, K) float,
      "vocab_size": V}``; slots with index < 0 or weight 0 are padding, each row's indices are sorted here;
    * multi_vector reads ``token_vectors`` (B, T, d) and ``token_mask`` (B, T), keeping the masked-in rows.
    """
    check_kind(kind)
    key = FEATURE_KEYS[kind]
    if features.get(key) is None:
        raise ConfigError(f"output {kind!r} needs the features key {key!r}, which no module of this model writes")
    if kind == "dense":
        return DenseEmbeddings(features[key])
    if kind == "binary":
        return BinaryEmbeddings.from_dense(features[key])
    if kind == "sparse":
        sparse = features[key]
        if not isinstance(sparse, dict) or not {"indices", "values", "vocab_size"} <= set(sparse):
            raise ConfigError("sparse_embedding must be a dict with indices, values and vocab_size")
        idx, val = _ints(sparse["indices"], 2, "sparse indices"), _array(sparse["values"])
        if idx.shape != val.shape:
            raise InputError(f"sparse indices {idx.shape} and values {val.shape} differ in shape")
        rows = []
        for i, v in zip(idx, val):
            keep = (i >= 0) & (v != 0)
            order = np.argsort(i[keep], kind="stable")
            rows.append((i[keep][order], v[keep][order]))
        return SparseEmbeddings.from_rows(rows, int(sparse["vocab_size"]))
    if features.get("token_mask") is None:
        raise ConfigError("token_vectors need their token_mask in the features")
    tv, mask = _array(features[key]), _array(features["token_mask"]).astype(bool)
    if tv.ndim != 3 or mask.shape != tv.shape[:2]:
        raise InputError(f"token_vectors {tv.shape} and token_mask {mask.shape} do not match")
    return MultiVectorEmbeddings.from_rows([t[m] for t, m in zip(tv, mask)], tv.shape[2])


def concat(parts: list[Embeddings]) -> Embeddings:
    """One result from batches of the same kind, in order."""
    if not parts:
        raise InputError("nothing to concatenate")
    kinds = {p.kind for p in parts}
    if len(kinds) > 1:
        raise InputError(f"cannot concatenate results of kinds {sorted(kinds)}")
    first = parts[0]
    if isinstance(first, DenseEmbeddings):
        return DenseEmbeddings(np.concatenate([p.vectors for p in parts]))  # type: ignore[attr-defined]
    if isinstance(first, BinaryEmbeddings):
        return BinaryEmbeddings(np.concatenate([p.codes for p in parts]), first.dim)  # type: ignore[attr-defined]
    if isinstance(first, SparseEmbeddings):
        return SparseEmbeddings.from_rows([p.row(i) for p in parts for i in range(len(p))], first.vocab_size)  # type: ignore[attr-defined]
    assert isinstance(first, MultiVectorEmbeddings)
    return MultiVectorEmbeddings.from_rows([p.row(i) for p in parts for i in range(len(p))], first.dim)  # type: ignore[attr-defined]


__all__ = [
    "FEATURE_KEYS",
    "KINDS",
    "TYPES",
    "BinaryEmbeddings",
    "DenseEmbeddings",
    "Embeddings",
    "MultiVectorEmbeddings",
    "SparseEmbeddings",
    "check_kind",
    "concat",
    "from_arrow",
    "from_features",
    "from_json",
    "from_json_text",
    "load_npz",
]
