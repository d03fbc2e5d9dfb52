"""An exact inverted index over :class:`~embedlab.vectors.SparseEmbeddings` (learned sparse / SPLADE-like
weights): score = dot product of the query's and the document's weights, top-k exact.

The documents are a scipy CSR matrix (one row per document, ``vocab_size`` columns); search reads its
CSC copy, whose column ``t`` is the posting list of vocabulary entry ``t``. A query visits the posting
lists of its own non-zero entries only, so

* the hits of a query are the documents sharing at least one active dimension with it (a document
  whose weights cancel to a score of 0 is still a hit; a document sharing none is never returned),
  ranked by score descending, ties broken by document id descending (pytrec_eval's order, as
  :func:`embedlab.eval.evaluators.rank_documents` does), at most ``k`` of them;
* an empty query (no non-zero entry) returns no hits, never arbitrary documents.

Scores are accumulated in float64 from the float32 weights.

Directory layout (every file written atomically; the manifest holds a SHA-256 of each, and of itself)::

    manifest.json   kind "sparse", vocab_size, documents, nnz, the model fingerprint, checksums
    indptr.npy      CSR row pointers (documents + 1,) int64
    indices.npy     vocabulary index of each stored weight (nnz,) int64, increasing within a row
    values.npy      the weights (nnz,) float32
    ids.json        document ids, in row order
    vocab.json      optional: the token of each vocabulary index (vocab_size strings)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from embedlab._version import __version__
from embedlab.errors import ConfigError, IndexStoreError, InputError
from embedlab.io import atomic_path, file_sha256, read_json
from embedlab.validation import positive_int
from embedlab.vectors.representations import SparseEmbeddings

MANIFEST = "manifest.json"
FORMAT = "embedlab-sparse-index/1"
ARRAYS = ("indptr", "indices", "values")
Hits = tuple[list[str], np.ndarray]


def _manifest_digest(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _short(names: Sequence[str]) -> str:
    return ", ".join(names[:5]) + (" …" if len(names) > 5 else "")


class SparseIndex:
    """Documents as sparse weight vectors over one vocabulary; see the module docstring."""

    def __init__(
        self,
        vocab_size: int,
        *,
        model_fingerprint: str | None = None,
        vocab: Sequence[str] | None = None,
        model: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size <= 0:
            raise IndexStoreError(f"vocab_size must be a positive integer; got {vocab_size!r}")
        if model_fingerprint is not None and (not isinstance(model_fingerprint, str) or not model_fingerprint):
            raise IndexStoreError(f"model_fingerprint must be a non-empty string; got {model_fingerprint!r}")
        self.vocab_size = int(vocab_size)
        if model is not None and not isinstance(model, dict):
            raise IndexStoreError(f"model must be a mapping (a model record); got {type(model).__name__}")
        if model_fingerprint is None and model is not None:
            model_fingerprint = model.get("fingerprint")
        self.model_fingerprint = model_fingerprint
        # what built the documents (embedlab.index.shards.model_record: name, pooling, prompts, ...): the query encoder
        self.model: dict[str, Any] = {**(model or {}), "fingerprint": model_fingerprint}
        self.vocab: list[str] | None = None
        if vocab is not None:
            vocab = list(vocab)
            if len(vocab) != self.vocab_size or not all(isinstance(t, str) for t in vocab):
                raise IndexStoreError(
                    f"vocab must be {self.vocab_size} strings (one per index); got {len(vocab)} items"
                )
            self.vocab = vocab
        self.ids: list[str] = []
        self.matrix = sp.csr_matrix((0, self.vocab_size), dtype=np.float32)
        self._csc: sp.csc_matrix | None = None
        self._id_rank: np.ndarray | None = None  # position of each row's id in sorted order (the tie-break key)
        self._row_of: dict[str, int] | None = None
        self._disk: tuple[Path, int] | None = None  # (directory, bytes) of the last save/load, while unchanged

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        embeddings: SparseEmbeddings,
        *,
        model_fingerprint: str | None = None,
        vocab: Sequence[str] | None = None,
        model: dict[str, Any] | None = None,
    ) -> SparseIndex:
        """An index of ``embeddings`` (one row per id, in order); ``model``: the record of the model that made
        them (kept in the manifest, so a query encoder can be loaded)."""
        emb = cls._check_embeddings(embeddings, "documents")
        if len(emb) == 0:
            raise IndexStoreError("cannot build an index from an empty corpus")
        index = cls(emb.vocab_size, model_fingerprint=model_fingerprint, vocab=vocab, model=model)
        index.add(ids, emb)
        return index

    @staticmethod
    def _check_embeddings(embeddings: Any, what: str) -> SparseEmbeddings:
        if not isinstance(embeddings, SparseEmbeddings):
            raise IndexStoreError(f"{what} must be SparseEmbeddings; got {type(embeddings).__name__}")
        return embeddings

    def _check_vocab(self, emb: SparseEmbeddings, what: str) -> None:
        if emb.vocab_size != self.vocab_size:
            raise IndexStoreError(
                f"{what} have a vocabulary of {emb.vocab_size} entries, the index {self.vocab_size}: "
                "they come from another model or tokenizer"
            )

    def _changed(self) -> None:
        self._csc = self._id_rank = self._row_of = None
        self._disk = None

    @staticmethod
    def _csr(emb: SparseEmbeddings) -> sp.csr_matrix:
        return sp.csr_matrix(
            (emb.values.astype(np.float32), emb.indices, emb.indptr), shape=(len(emb), emb.vocab_size), copy=True
        )

    # -- updates ----------------------------------------------------------------------------------
    def add(self, ids: Sequence[str], embeddings: SparseEmbeddings) -> None:
        """Append documents; an id already in the index (or twice in ``ids``) is refused, nothing added."""
        emb = self._check_embeddings(embeddings, "documents")
        self._check_vocab(emb, "the documents")
        ids = list(ids)
        if len(ids) != len(emb):
            raise IndexStoreError(f"{len(emb)} embeddings but {len(ids)} ids")
        if not all(isinstance(i, str) and i for i in ids):
            raise IndexStoreError("ids must be non-empty strings")
        seen = set(self.ids)
        dup = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
        if dup:
            raise IndexStoreError(f"duplicate ids: {_short(dup)}")
        if not ids:
            return
        self.matrix = sp.vstack([self.matrix, self._csr(emb)], format="csr", dtype=np.float32)
        self.ids = self.ids + ids
        self._changed()

    def delete(self, ids: Sequence[str]) -> int:
        """Remove documents by id; returns how many. Unknown ids are refused, nothing removed."""
        drop = set(ids)
        unknown = sorted(drop - set(self.ids))
        if unknown:
            raise IndexStoreError(f"unknown ids: {_short(unknown)}")
        keep = [r for r, i in enumerate(self.ids) if i not in drop]
        if not keep:
            raise IndexStoreError("deleting every document would leave an empty index")
        self.matrix = self.matrix[keep]
        self.ids = [self.ids[r] for r in keep]
        self._changed()
        return len(drop)

    # -- search -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def check_model(self, fingerprint: str | None, who: str = "the query model") -> None:
        """Refuse embeddings of another model than the one that built the index (``None``: no check; an
        index that records no fingerprint is refused too)."""
        if fingerprint is None:
            return
        if fingerprint != self.model_fingerprint:
            mine = self.model_fingerprint or "none recorded"
            raise IndexStoreError(
                f"this sparse index was built by the model of fingerprint {mine}; {who} has fingerprint {fingerprint}"
            )

    def _ensure_search_state(self) -> tuple[sp.csc_matrix, np.ndarray]:
        if self._csc is None:
            csc = self.matrix.tocsc()
            csc.sort_indices()
            self._csc = csc
        if self._id_rank is None:
            rank = np.empty(len(self.ids), dtype=np.int64)
            rank[sorted(range(len(self.ids)), key=self.ids.__getitem__)] = np.arange(len(self.ids))
            self._id_rank = rank
        return self._csc, self._id_rank

    def search(self, queries: SparseEmbeddings, k: int = 10, *, model_fingerprint: str | None = None) -> list[Hits]:
        """Per query, the ids and float64 scores of its top-``k`` hits (fewer when fewer documents share
        a dimension with it; none for an empty query)."""
        q = self._check_embeddings(queries, "queries")
        self._check_vocab(q, "the queries")
        try:
            positive_int("k", k)
        except ConfigError as exc:
            raise IndexStoreError(str(exc)) from None
        self.check_model(model_fingerprint)
        csc, id_rank = self._ensure_search_state()
        out: list[Hits] = []
        for i in range(len(q)):
            terms, weights = q.row(i)
            lo, hi = csc.indptr[terms], csc.indptr[terms + 1]
            lengths = hi - lo
            total = int(lengths.sum())
            if total == 0:
                out.append(([], np.zeros(0, dtype=np.float64)))
                continue
            # positions of every posting of the query's terms, in term order
            pos = np.repeat(lo - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
            contrib = csc.data[pos].astype(np.float64) * np.repeat(weights.astype(np.float64), lengths)
            rows, inverse = np.unique(csc.indices[pos], return_inverse=True)
            scores = np.bincount(inverse, weights=contrib, minlength=len(rows))
            if len(rows) > k:  # keep every row at or above the k-th score (ties at the cut included)
                cut = np.partition(-scores, k - 1)[k - 1]
                keep = -scores <= cut
                rows, scores = rows[keep], scores[keep]
            order = np.lexsort((-id_rank[rows], -scores))[:k]
            out.append(([self.ids[r] for r in rows[order]], scores[order]))
        return out

    def document(self, doc_id: str) -> SparseEmbeddings:
        """The stored weights of one document."""
        if self._row_of is None:
            self._row_of = {d: r for r, d in enumerate(self.ids)}
        if doc_id not in self._row_of:
            raise IndexStoreError(f"unknown ids: {doc_id}")
        row = self.matrix[self._row_of[doc_id]]
        return SparseEmbeddings.from_rows([(row.indices, row.data)], self.vocab_size)

    # -- reporting --------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """documents, vocab_size, nnz, mean active dimensions per document, the model fingerprint, bytes of
        the arrays in memory, and ``disk_bytes``: the size of the directory's index files (manifest
        included) when the index was saved or loaded and not changed since, else ``None``."""
        n, nnz = len(self.ids), int(self.matrix.nnz)
        return {
            "kind": "sparse",
            "documents": n,
            "vocab_size": self.vocab_size,
            "nnz": nnz,
            "mean_active_dims": nnz / n if n else 0.0,
            "model_fingerprint": self.model_fingerprint,
            "has_vocab": self.vocab is not None,
            "memory_bytes": int(self.matrix.data.nbytes + self.matrix.indices.nbytes + self.matrix.indptr.nbytes),
            "disk_bytes": self._disk[1] if self._disk else None,
        }

    def manifest(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": "sparse",
            "embedlab_version": __version__,
            "vocab_size": self.vocab_size,
            "documents": len(self.ids),
            "nnz": int(self.matrix.nnz),
            "model": {**self.model, "fingerprint": self.model_fingerprint},
            "has_vocab": self.vocab is not None,
        }

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the index directory atomically (a killed save leaves the previous index intact)."""
        path = Path(path)
        m = self.matrix
        arrays: dict[str, np.ndarray] = {
            "indptr": np.asarray(m.indptr, dtype=np.int64),
            "indices": np.asarray(m.indices, dtype=np.int64),
            "values": np.asarray(m.data, dtype=np.float32),
        }
        with atomic_path(path) as tmp:
            tmp.mkdir(parents=True)
            for name, a in arrays.items():
                np.save(tmp / f"{name}.npy", a, allow_pickle=False)
            (tmp / "ids.json").write_text(json.dumps(self.ids, ensure_ascii=False), encoding="utf-8")
            if self.vocab is not None:
                (tmp / "vocab.json").write_text(json.dumps(self.vocab, ensure_ascii=False), encoding="utf-8")
            manifest = self.manifest()
            manifest["files"] = {p.name: file_sha256(p) for p in sorted(tmp.iterdir())}
            manifest["manifest_sha256"] = _manifest_digest(manifest)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            size = sum(p.stat().st_size for p in tmp.iterdir())
        self._disk = (path, size)

    @classmethod
    def load(cls, path: str | Path, *, expect_fingerprint: str | None = None) -> SparseIndex:
        """The index saved at ``path``, every file checked against the manifest's checksums;
        ``expect_fingerprint``: refuse an index built by another model."""
        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise IndexStoreError(f"{path} is not an embedlab sparse index (no {MANIFEST})")
        manifest = read_json(path / MANIFEST, IndexStoreError, "sparse index manifest")
        if not isinstance(manifest, dict) or manifest.get("kind") != "sparse":
            kind = manifest.get("kind") if isinstance(manifest, dict) else None
            raise IndexStoreError(f"{path / MANIFEST} is not a sparse index manifest (kind {kind!r})")
        if manifest.get("manifest_sha256") != _manifest_digest(manifest):
            raise IndexStoreError(f"index file corrupt: {path / MANIFEST} does not match its own checksum")
        if manifest.get("format") != FORMAT:
            raise IndexStoreError(
                f"{path} is a sparse index of format {manifest.get('format')!r}; this embedlab reads {FORMAT}"
            )
        files = manifest.get("files") or {}
        needed = [f"{a}.npy" for a in ARRAYS] + ["ids.json"] + (["vocab.json"] if manifest.get("has_vocab") else [])
        for name in sorted(set(needed) | set(files)):
            f = path / name
            if name not in files:
                raise IndexStoreError(f"index {path} is inconsistent: the manifest has no checksum for {name}")
            if not f.is_file():
                raise IndexStoreError(f"index file missing: {f}")
            if file_sha256(f) != files[name]:
                raise IndexStoreError(f"index file corrupt: {f} does not match its checksum in the manifest")
        try:
            arrays = {a: np.load(path / f"{a}.npy", allow_pickle=False) for a in ARRAYS}
            ids = json.loads((path / "ids.json").read_text(encoding="utf-8"))
            vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8")) if manifest.get("has_vocab") else None
            emb = SparseEmbeddings(arrays["indptr"], arrays["indices"], arrays["values"], int(manifest["vocab_size"]))
        except (OSError, ValueError, KeyError, TypeError, InputError) as exc:
            raise IndexStoreError(f"index {path} is corrupt: {exc}") from None
        if (
            not isinstance(ids, list)
            or len(ids) != len(emb)
            or manifest.get("documents") != len(emb)
            or manifest.get("nnz") != len(emb.values)
        ):
            raise IndexStoreError(f"index {path} is inconsistent: counts differ between files")
        model = manifest.get("model") or {}
        if not isinstance(model, dict):
            raise IndexStoreError(f"index {path} is corrupt: its model record is not a mapping")
        index = cls(emb.vocab_size, model_fingerprint=model.get("fingerprint"), vocab=vocab, model=model)
        index.add(ids, emb)
        index.check_model(expect_fingerprint, "the expected model")
        index._disk = (path, sum((path / n).stat().st_size for n in [*files, MANIFEST]))
        return index


__all__ = ["SparseIndex"]
