"""A persistent, compressed vector index with rescoring.

Directory layout (every file written atomically; the manifest holds a SHA-256 of each)::

    manifest.json     codec, dims, count, rescoring copy, the model that made the vectors, checksums
    codes.faiss       the compact searched codes (a FAISS index; binary codes for ``binary``)
    rescore.npy       the higher-precision copy (float32, or uint8 + rescore_ranges.npy), memory-mapped
    ids.json          document ids, in row order
    texts.jsonl       optional document texts

Search takes the top ``k x r`` candidates from the codes, then rescores them with the copy
(``r`` = oversampling factor; ``r = 0`` returns the codes' own ranking).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from embedlab._version import __version__
from embedlab.errors import ConfigError, IndexStoreError
from embedlab.index.codecs import Codec, CodecError, parse_codec, prepare
from embedlab.io import atomic_path, file_sha256, read_json
from embedlab.validation import at_most, non_negative_int, positive_int

RESCORE_DTYPES = ("float32", "int8")
MANIFEST = "manifest.json"


def _check(check: Callable[..., Any], name: str, value: Any, *args: Any) -> Any:
    """An :mod:`embedlab.validation` check of a search argument, its message raised as an :class:`IndexStoreError`."""
    try:
        return check(name, value, *args)
    except ConfigError as exc:
        raise IndexStoreError(str(exc)) from None


class VectorIndex:
    def __init__(
        self, codec: Codec, dim: int, rescore_dtype: str = "float32", model: dict[str, Any] | None = None
    ) -> None:
        if rescore_dtype not in RESCORE_DTYPES:
            raise IndexStoreError(f"rescore copy must be one of {RESCORE_DTYPES}, got {rescore_dtype!r}")
        if codec.mrl_dim is not None and codec.mrl_dim > dim:
            raise CodecError(f"codec {codec.spec} truncates to {codec.mrl_dim} dims but the vectors have {dim}")
        if codec.is_binary and codec.input_dim(dim) % 8:
            raise CodecError(f"binary codes need a dimension divisible by 8, got {codec.input_dim(dim)}")
        if not codec.is_binary:
            codec.factory_string(dim)  # validates the PQ split early
        self.codec, self.dim, self.rescore_dtype = codec, dim, rescore_dtype
        self.model = model or {}
        self.ids: list[str] = []
        self.texts: list[str] | None = None
        self.store: np.ndarray = np.empty((0, dim), dtype=np.float32 if rescore_dtype == "float32" else np.uint8)
        self.ranges: np.ndarray | None = None  # (2, dim) min and step for the uint8 copy
        self.codes: Any = None
        self.build_seconds = 0.0

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        ids: Sequence[str],
        codec: str | Codec = "float32",
        *,
        texts: Sequence[str] | None = None,
        rescore: str = "float32",
        model: dict[str, Any] | None = None,
    ) -> "VectorIndex":
        codec = parse_codec(codec) if isinstance(codec, str) else codec
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise IndexStoreError("cannot build an index from an empty corpus")
        index = cls(codec, int(vectors.shape[1]), rescore, model)
        index._set_rows(prepare(vectors), list(ids), list(texts) if texts is not None else None)
        return index

    def _check_ids(self, ids: list[str], n: int, existing: set[str] | None = None) -> None:
        if len(ids) != n:
            raise IndexStoreError(f"{n} vectors but {len(ids)} ids")
        if not all(isinstance(i, str) and i for i in ids):
            raise IndexStoreError("ids must be non-empty strings")
        seen: set[str] = set(existing or ())
        dup = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
        if dup:
            raise IndexStoreError(f"duplicate ids: {', '.join(dup[:5])}{' …' if len(dup) > 5 else ''}")

    def _quantize_store(self, full: np.ndarray) -> np.ndarray:
        if self.rescore_dtype == "float32":
            return full
        if self.ranges is None:
            lo, hi = full.min(0), full.max(0)
            self.ranges = np.stack([lo, np.maximum(hi - lo, 1e-12) / 255.0]).astype(np.float32)
        lo, step = self.ranges
        return np.clip(np.floor((full - lo) / step), 0, 255).astype(np.uint8)

    def _dequantize(self, rows: np.ndarray) -> np.ndarray:
        if self.rescore_dtype == "float32":
            return np.asarray(rows, dtype=np.float32)
        lo, step = self.ranges  # type: ignore[misc]
        return lo + (np.asarray(rows, dtype=np.float32) + 0.5) * step

    def _set_rows(self, full: np.ndarray, ids: list[str], texts: list[str] | None, recalibrate: bool = True) -> None:
        """Replace every row (full = prepared full-dim vectors) and rebuild the codes; ``recalibrate``
        recomputes the int8 copy's ranges, otherwise the existing calibration is reused."""
        self._check_ids(ids, len(full))
        if texts is not None and len(texts) != len(full):
            raise IndexStoreError(f"{len(full)} vectors but {len(texts)} texts")
        start = time.perf_counter()
        if recalibrate:
            self.ranges = None
        self.store = self._quantize_store(full)
        self.ids, self.texts = ids, texts
        self.codes = self._new_codes(full)
        self.build_seconds = time.perf_counter() - start

    def _new_codes(self, full: np.ndarray) -> Any:
        import faiss

        x = self.codec.prepare(full)
        d = x.shape[1]
        if self.codec.is_binary:
            codes = faiss.IndexBinaryFlat(d)
            codes.add(np.packbits(x > 0, axis=1))
            return codes
        codes = faiss.index_factory(d, self.codec.factory_string(self.dim), faiss.METRIC_INNER_PRODUCT)
        if not codes.is_trained:
            needed = {"pq": 2**self.codec.bits, "ivfpq": max(self.codec.nlist, 2**self.codec.bits)}.get(
                self.codec.base, 1
            )
            if len(x) < needed:
                raise CodecError(f"codec {self.codec.spec} needs at least {needed} vectors to train, got {len(x)}")
            # FAISS wants ~39-256 points per centroid; a seeded sample keeps training time bounded on large corpora
            limit = max(65536, 256 * max(self.codec.nlist, 2**self.codec.bits))
            sample = x if len(x) <= limit else x[np.sort(np.random.default_rng(0).choice(len(x), limit, replace=False))]
            codes.train(sample)
        codes.add(x)
        return codes

    # -- updates ----------------------------------------------------------------------------------
    def add(self, vectors: np.ndarray, ids: Sequence[str], texts: Sequence[str] | None = None) -> None:
        """Append documents; trained codecs keep their training (calibration, centroids)."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise IndexStoreError("nothing to add: the corpus is empty")
        if vectors.shape[1] != self.dim:
            raise IndexStoreError(f"vectors have {vectors.shape[1]} dimensions, the index {self.dim}")
        ids = list(ids)
        self._check_ids(ids, len(vectors), set(self.ids))
        if (texts is None) != (self.texts is None):
            raise IndexStoreError("texts must be given for every batch or for none")
        full = prepare(vectors)
        new_rows = self._quantize_store(full)
        self.store = np.concatenate([np.asarray(self.store), new_rows])
        x = self.codec.prepare(full)
        self.codes.add(np.packbits(x > 0, axis=1) if self.codec.is_binary else x)
        self.ids = self.ids + ids
        if texts is not None:
            self.texts = (self.texts or []) + list(texts)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id; the codes are rebuilt from the rescoring copy. Returns how many."""
        drop = set(ids)
        unknown = drop - set(self.ids)
        if unknown:
            raise IndexStoreError(f"unknown ids: {', '.join(sorted(unknown)[:5])}")
        keep = [i for i, x in enumerate(self.ids) if x not in drop]
        if not keep:
            raise IndexStoreError("deleting every document would leave an empty index")
        full = prepare(self._dequantize(np.asarray(self.store)[keep]))
        texts = [self.texts[i] for i in keep] if self.texts is not None else None
        self._set_rows(full, [self.ids[i] for i in keep], texts, recalibrate=False)  # kept rows keep their calibration
        return len(drop)

    # -- search -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        rescore: int = 0,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> tuple[list[list[str]], np.ndarray]:
        """Top-k ids and scores per query. ``rescore=r`` (r >= 1) rescored k·r candidates."""
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise IndexStoreError(f"queries have {q.shape[-1] if q.ndim else 0} dimensions, the index {self.dim}")
        _check(positive_int, "k", k)
        _check(at_most, "k", k, len(self), "the number of documents in the index")
        _check(non_negative_int, "rescore", rescore)
        full = prepare(q)
        x = self.codec.prepare(full)
        kk = min(len(self), k * max(1, rescore))
        self._set_search_params(nprobe, ef_search, kk)
        if self.codec.is_binary:
            dist, rows = self.codes.search(np.packbits(x > 0, axis=1), kk)
            scores = 1.0 - 2.0 * dist.astype(np.float32) / x.shape[1]  # Hamming -> cosine of the sign vectors
        else:
            scores, rows = self.codes.search(x, kk)
        if rescore:
            cand = np.where(rows < 0, 0, rows)
            vecs = self._dequantize(np.asarray(self.store)[cand.ravel()]).reshape(cand.shape[0], cand.shape[1], -1)
            scores = np.einsum("qd,qcd->qc", full, vecs)
            scores[rows < 0] = -np.inf
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            rows = np.take_along_axis(rows, order, 1)
            scores = np.take_along_axis(scores, order, 1)
        else:
            rows, scores = rows[:, :k], scores[:, :k]
        return [[self.ids[r] for r in row if r >= 0] for row in rows], np.asarray(scores, dtype=np.float32)

    def _set_search_params(self, nprobe: int | None, ef_search: int | None, kk: int = 0) -> None:
        import faiss

        if self.codec.base == "ivfpq":
            faiss.extract_index_ivf(self.codes).nprobe = nprobe or 16
        elif self.codec.base in ("hnsw", "hnsw_int8"):
            self.codes.hnsw.efSearch = max(ef_search or 64, kk)  # a beam narrower than k returns fewer than k hits

    # -- persistence ------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        return {
            "embedlab_version": __version__,
            "codec": self.codec.spec,
            "dim": self.dim,
            "count": len(self),
            "rescore": self.rescore_dtype,
            "bytes_per_vector": self.codec.bytes_per_vector(self.dim),
            "model": self.model,
            "has_texts": self.texts is not None,
        }

    def save(self, path: str | Path) -> None:
        """Write the index directory atomically (a killed save leaves the previous index intact)."""
        import faiss

        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.mkdir(parents=True)
            if self.codec.is_binary:
                faiss.write_index_binary(self.codes, str(tmp / "codes.faiss"))
            else:
                faiss.write_index(self.codes, str(tmp / "codes.faiss"))
            np.save(tmp / "rescore.npy", np.asarray(self.store))
            if self.ranges is not None:
                np.save(tmp / "rescore_ranges.npy", self.ranges)
            (tmp / "ids.json").write_text(json.dumps(self.ids))
            if self.texts is not None:
                (tmp / "texts.jsonl").write_text(
                    "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in self.texts), encoding="utf-8"
                )
            manifest = self.manifest()
            manifest["files"] = {p.name: file_sha256(p) for p in sorted(tmp.iterdir())}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, *, verify: bool = True, mmap: bool = True) -> "VectorIndex":
        import faiss

        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise IndexStoreError(f"{path} is not an embedlab index (no {MANIFEST})")
        manifest = read_json(path / MANIFEST, IndexStoreError, "index manifest")
        if "codec" not in manifest:
            if str(manifest.get("format", "")).startswith("embedlab-shards/"):
                raise IndexStoreError(
                    f"{path} holds embedding shards (written by `embedlab embed-corpus`), not an index: "
                    f"build one with `embedlab index build --from-embeddings {path} --out INDEX_DIR`"
                )
            raise IndexStoreError(f"{path / MANIFEST} is not an embedlab index manifest (it names no codec)")
        files = manifest.get("files", {})
        for name, digest in files.items():
            f = path / name
            if not f.is_file():
                raise IndexStoreError(f"index file missing: {f}")
            if verify and file_sha256(f) != digest:
                raise IndexStoreError(f"index file corrupt: {f} does not match its checksum in the manifest")
        index = cls(parse_codec(manifest["codec"]), int(manifest["dim"]), manifest["rescore"], manifest.get("model"))
        reader = faiss.read_index_binary if index.codec.is_binary else faiss.read_index
        index.codes = reader(str(path / "codes.faiss"))
        index.store = np.load(path / "rescore.npy", mmap_mode="r" if mmap else None)
        if (path / "rescore_ranges.npy").is_file():
            index.ranges = np.load(path / "rescore_ranges.npy")
        index.ids = json.loads((path / "ids.json").read_text())
        if (path / "texts.jsonl").is_file():
            index.texts = [json.loads(line) for line in (path / "texts.jsonl").read_text(encoding="utf-8").splitlines()]
        if (
            len(index.ids) != manifest["count"]
            or index.codes.ntotal != len(index.ids)
            or len(index.store) != len(index.ids)
        ):
            raise IndexStoreError(f"index {path} is inconsistent: counts differ between files")
        return index

    def check_model(self, model: dict[str, Any]) -> None:
        """Refuse queries from another model than the one that built the index."""
        mine, theirs = self.model.get("fingerprint"), model.get("fingerprint")
        if mine and theirs and mine != theirs:
            raise IndexStoreError(
                f"this index was built with {self.model.get('name')} ({self.model.get('pooling')} pooling, "
                f"{self.model.get('attention')} attention, fingerprint {mine}); the query model's fingerprint is {theirs}"
            )
