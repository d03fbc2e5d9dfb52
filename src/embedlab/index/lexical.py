"""BM25, the model-free lexical baseline: an exact, persistent BM25 index built on ``bm25s``.

Scoring is bm25s's (its eager sparse matrix of precomputed term scores); what this module adds is
embedlab's conventions around it: validated parameters, documents as ``(id, text)`` pairs, an exact
top-k with one tie rule, and a checksummed directory written atomically.

**Tokenisation** (``bm25s.tokenize``): lower-cased, tokens are runs of two or more word characters
(``(?u)\\b\\w\\w+\\b``, scikit-learn's ``CountVectorizer`` pattern), English stopwords (bm25s's list,
from NLTK) removed, then each token stemmed with PyStemmer's English (Porter 2 / Snowball) stemmer.
Queries go through the same chain; a query token that is not in the corpus vocabulary is dropped, and
a repeated query token counts once per occurrence (as Lucene sums repeated query clauses).

**Scores**, for the default Lucene variant (Kamphuis et al., ECIR 2020), summed over the query tokens t::

    idf(t)   = ln(1 + (N - df + 0.5) / (df + 0.5))
    score    = sum_t idf(t) * tf / (k1 * (1 - b + b * L / avgL) + tf)

with N documents, df the documents holding t, tf its count in the document, L the document's length
in tokens (after stopword removal) and avgL the mean length. ``robertson``, ``atire``, ``bm25l`` and
``bm25+`` are bm25s's other variants (docs/sparse.md lists their formulas).

**Search** is exact: every document's score is computed, and the top k are returned best first, ties
broken by document id descending (pytrec_eval's order, the one :func:`embedlab.eval.evaluators.rank_documents`
uses), so a ranking never depends on the order documents were added. The hits of a query are the documents
holding at least one of its terms (as in Lucene and :class:`embedlab.index.sparse.SparseIndex`): a document
sharing no term is never returned, even where bm25l/bm25+ give it a non-zero floor, and an empty query, or
one made only of stopwords or of words absent from the corpus, gets an empty result (no ids, no scores)
rather than an error, so one such query does not fail a batch or an evaluation (it scores 0 there).

Directory layout (written atomically with :func:`embedlab.io.atomic_path`; the manifest holds a SHA-256 of
every other file, as :class:`embedlab.index.store.VectorIndex` does)::

    manifest.json         format, parameters, document count, the bm25s version, checksums (and its own)
    ids.json              document ids, in row order
    *.index.npy / *.json  bm25s's own files (``BM25.save``): the score matrix, vocabulary, parameters

BM25 keeps no vectors: :meth:`BM25Index.vectors` and :meth:`BM25Index.reconstruct` refuse in one line.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from embedlab._version import __version__
from embedlab.errors import ConfigError, IndexStoreError, InputError
from embedlab.io import atomic_path, file_sha256, read_json
from embedlab.validation import choice, finite_float, positive_int

__all__ = ["BM25Index", "METHODS", "STEMMERS", "STOPWORDS", "FORMAT"]

METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")
STEMMERS = ("english", None)
STOPWORDS = ("english", None)
FORMAT = "embedlab-bm25/1"
MANIFEST = "manifest.json"
IDS = "ids.json"
Hits = tuple[list[str], np.ndarray]
NO_VECTORS = (
    "a BM25 index stores no vectors (it keeps term statistics only): use a dense model's VectorIndex for vectors"
)


def _bm25s() -> Any:
    """bm25s, its logger quietened (bm25s sets it to DEBUG on import, which a root handler would print)."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def _none_name(value: Any) -> str:
    return "none" if value is None else str(value)


class BM25Index:
    """An exact BM25 index over ``(id, text)`` documents.

    ``k1`` > 0 (term-frequency saturation), ``0 <= b <= 1`` (length normalisation), ``method`` one of
    :data:`METHODS`, ``delta`` (> 0; bm25l and bm25+ only), ``stemmer`` ``"english"`` (PyStemmer) or None,
    ``stopwords`` ``"english"`` or None. Defaults: Lucene, k1 1.5, b 0.75, English stopwords and stemming
    (bm25s's defaults, and the figures in docs/sparse.md). Bad values raise :class:`ConfigError` (exit 2).
    """

    def __init__(
        self,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        stemmer: str | None = "english",
        stopwords: str | None = "english",
        delta: float = 0.5,
    ) -> None:
        self.k1 = finite_float("BM25 k1", k1, low=0.0, low_open=True)
        self.b = finite_float("BM25 b", b, low=0.0, high=1.0)
        self.delta = finite_float("BM25 delta", delta, low=0.0, low_open=True)
        self.method = choice("BM25 method", method, METHODS)
        if stemmer not in STEMMERS:
            raise ConfigError(f"BM25 stemmer must be english or none; got {stemmer!r}")
        if stopwords not in STOPWORDS:
            raise ConfigError(f"BM25 stopwords must be english or none; got {stopwords!r}")
        self.stemmer_name, self.stopwords_name = stemmer, stopwords
        self.ids: list[str] = []
        self._bm25: Any = None
        self._stemmer: Any = None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "BM25Index":
        """An index from ``KEY=VALUE`` options (the CLI's ``--bm25``): k1, b, method, stemmer, stopwords,
        delta; ``none`` (any case) or null for no stemmer / no stopwords. An unknown key is a ConfigError."""
        known = ("k1", "b", "method", "stemmer", "stopwords", "delta")
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"unknown BM25 option {unknown[0]!r}: the options are {', '.join(known)}")
        kw = dict(options)
        for key in ("stemmer", "stopwords"):
            if isinstance(kw.get(key), str) and kw[key].lower() in ("none", "null", "off"):
                kw[key] = None
        return cls(**kw)

    # -- parameters -------------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """The parameters that define the scores (what the manifest and eval results record)."""
        p: dict[str, Any] = {
            "method": self.method,
            "k1": self.k1,
            "b": self.b,
            "stemmer": self.stemmer_name,
            "stopwords": self.stopwords_name,
        }
        if self.method in ("bm25l", "bm25+"):
            p["delta"] = self.delta
        return p

    def describe(self) -> str:
        """One line: ``bm25 lucene k1=1.5 b=0.75, stopwords english, stemmer english``."""
        extra = f" delta={self.delta:g}" if self.method in ("bm25l", "bm25+") else ""
        return (
            f"bm25 {self.method} k1={self.k1:g} b={self.b:g}{extra}, stopwords {_none_name(self.stopwords_name)}, "
            f"stemmer {_none_name(self.stemmer_name)}"
        )

    def __len__(self) -> int:
        return len(self.ids)

    # -- tokenisation -----------------------------------------------------------------------------
    def _tokenize(self, texts: list[str]) -> Any:
        bm25s = _bm25s()

        if self.stemmer_name is not None and self._stemmer is None:
            import Stemmer

            self._stemmer = Stemmer.Stemmer(self.stemmer_name)
        return bm25s.tokenize(
            texts,
            lower=True,
            stopwords=self.stopwords_name or [],
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )

    def tokens(self, text: str) -> list[str]:
        """The index terms of one text (after lower-casing, stopwords and stemming)."""
        return list(self._tokenize([text])[0])

    # -- construction -----------------------------------------------------------------------------
    def build(self, doc_ids: Sequence[str], texts: Sequence[str]) -> "BM25Index":
        """Index the documents (replacing any earlier build); returns ``self``. Ids must be unique non-empty
        strings, one per text; an empty corpus, or one with no indexable token at all, is refused."""
        bm25s = _bm25s()

        ids, texts = list(doc_ids), list(texts)
        if not ids:
            raise IndexStoreError("cannot build a BM25 index from an empty corpus")
        if len(ids) != len(texts):
            raise IndexStoreError(f"{len(ids)} ids but {len(texts)} texts")
        if not all(isinstance(i, str) and i for i in ids):
            raise IndexStoreError("document ids must be non-empty strings")
        if not all(isinstance(t, str) for t in texts):
            raise InputError("every document text must be a string")
        seen: set[str] = set()
        dup = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
        if dup:
            raise IndexStoreError(f"duplicate ids: {', '.join(dup[:5])}{' …' if len(dup) > 5 else ''}")
        tokens = self._tokenize(texts)
        if not any(tokens):
            raise IndexStoreError(
                "cannot build a BM25 index: no document has an indexable word (all empty, one-letter or stopwords)"
            )
        bm25 = bm25s.BM25(k1=self.k1, b=self.b, delta=self.delta, method=self.method)
        bm25.index(tokens, show_progress=False)
        self._bm25, self.ids = bm25, ids
        return self

    def _require_built(self) -> Any:
        if self._bm25 is None:
            raise IndexStoreError("the BM25 index is empty: build() it from documents or load() a saved one")
        return self._bm25

    # -- search -----------------------------------------------------------------------------------
    def _term_ids(self, query: str) -> list[int]:
        bm25 = self._require_built()
        if not isinstance(query, str):
            raise InputError(f"a BM25 query must be a string; got {type(query).__name__}")
        n_terms = len(bm25.scores["indptr"]) - 1  # bm25s's extra "" vocabulary entry has no column
        return [t for t in bm25.get_tokens_ids(self.tokens(query)) if t < n_terms]

    def score(self, query: str) -> np.ndarray:
        """Every document's BM25 score for one query (float32, bm25s's precision, in document order)."""
        term_ids = self._term_ids(query)
        if not term_ids:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self._bm25.get_scores(term_ids), dtype=np.float32)

    def search(self, queries: str | Sequence[str], k: int = 10) -> list[Hits]:
        """Per query (a single string is one query), the ids and float32 scores of its top-``k`` hits: the
        documents holding at least one of its terms, best first, ties by id descending; fewer than ``k``
        when fewer documents match, none for an empty query or one with no indexed term (module docstring)."""
        bm25 = self._require_built()
        positive_int("k", k)
        if isinstance(queries, str):
            queries = [queries]
        indptr, indices = bm25.scores["indptr"], bm25.scores["indices"]
        out: list[Hits] = []
        for q in queries:
            term_ids = self._term_ids(q)
            rows = (
                np.unique(np.concatenate([indices[indptr[t] : indptr[t + 1]] for t in term_ids]))
                if term_ids
                else np.zeros(0, dtype=np.int64)
            )
            if not len(rows):
                out.append(([], np.zeros(0, dtype=np.float32)))
                continue
            s = np.asarray(bm25.get_scores(term_ids), dtype=np.float32)
            best = _top_k(rows, s[rows], self.ids, k)
            out.append(([self.ids[i] for i in best], s[best]))
        return out

    def retrieve(self, doc_ids: list[str], doc_texts: list[str], queries: list[str], depth: int) -> list[list[str]]:
        """The evaluator's ``Retrieve`` (:func:`embedlab.eval.evaluators.evaluate_retriever`): build over the
        corpus given, then each query's ranked ids, at most ``depth``."""
        self.build(doc_ids, doc_texts)
        return [ids for ids, _ in self.search(queries, depth)]

    # -- no vectors -------------------------------------------------------------------------------
    def vectors(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise IndexStoreError(NO_VECTORS)

    reconstruct = vectors
    encode = vectors

    # -- persistence ------------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        bm25s = _bm25s()

        return {
            "format": FORMAT,
            "embedlab_version": __version__,
            "bm25s_version": bm25s.__version__,
            "params": self.params(),
            "count": len(self),
        }

    def save(self, path: str | Path) -> None:
        """Write the index directory atomically (a killed save leaves the previous one intact)."""
        bm25 = self._require_built()
        with atomic_path(Path(path)) as tmp:
            tmp.mkdir(parents=True)
            bm25.save(str(tmp), show_progress=False)
            (tmp / IDS).write_text(json.dumps(self.ids, ensure_ascii=False), encoding="utf-8")
            manifest = self.manifest()
            manifest["files"] = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            manifest["manifest_sha256"] = _manifest_digest(manifest)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "BM25Index":
        """Read a directory written by :meth:`save`, every file checked against its manifest checksum;
        a missing, corrupt or tampered file is an :class:`IndexStoreError` naming it."""
        bm25s = _bm25s()

        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise IndexStoreError(f"{path} is not an embedlab BM25 index (no {MANIFEST})")
        manifest = read_json(path / MANIFEST, IndexStoreError, "BM25 index manifest")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            what = "a dense index" if isinstance(manifest, dict) and "codec" in manifest else "not a BM25 index"
            raise IndexStoreError(f"{path / MANIFEST} is {what} (expected format {FORMAT})")
        if manifest.get("manifest_sha256") != _manifest_digest(manifest):
            raise IndexStoreError(f"BM25 index manifest corrupt: {path / MANIFEST} does not match its own checksum")
        files = manifest.get("files")
        if not isinstance(files, dict) or IDS not in files:
            raise IndexStoreError(f"{path / MANIFEST} is corrupt: it lists no checksums")
        for name, digest in files.items():
            f = path / name
            if not f.is_file():
                raise IndexStoreError(f"BM25 index file missing: {f}")
            if file_sha256(f) != digest:
                raise IndexStoreError(f"BM25 index file corrupt: {f} does not match its checksum in the manifest")
        params = manifest.get("params")
        if not isinstance(params, dict):
            raise IndexStoreError(f"{path / MANIFEST} is corrupt: no parameters")
        try:
            index = cls(**params)
        except (ConfigError, TypeError) as exc:
            raise IndexStoreError(f"{path / MANIFEST} is corrupt: {exc}") from None
        try:
            bm25 = bm25s.BM25.load(str(path), show_progress=False)
            ids = json.loads((path / IDS).read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexStoreError(f"BM25 index {path} cannot be read: {exc}") from None
        saved = (bm25.method, float(bm25.k1), float(bm25.b), float(bm25.delta), int(bm25.scores["num_docs"]))
        expected = (index.method, index.k1, index.b, index.delta, manifest.get("count"))
        if saved != expected or not isinstance(ids, list) or len(ids) != manifest.get("count"):
            raise IndexStoreError(f"BM25 index {path} is inconsistent: its manifest and its files disagree")
        index._bm25, index.ids = bm25, [str(i) for i in ids]
        return index


def _manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest without its own ``manifest_sha256`` entry (canonical JSON)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _top_k(rows: np.ndarray, scores: np.ndarray, ids: list[str], k: int) -> list[int]:
    """The k best of ``rows`` (their ``scores``), best first, ties by id descending; exact at the cut
    (every row tied with the k-th score is sorted before the cut is made)."""
    if len(rows) > k:
        keep = scores >= np.partition(scores, len(rows) - k)[len(rows) - k]
        rows, scores = rows[keep], scores[keep]
    order = sorted(range(len(rows)), key=lambda j: (float(scores[j]), ids[rows[j]]), reverse=True)
    return [int(rows[j]) for j in order[:k]]
