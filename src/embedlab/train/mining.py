"""Hard-negative mining with a teacher embedder.

* ``topk`` — NV-Retriever's TopK-PercPos, adopted by NV-Embed-v2 (Moreira et al. 2024): rank the
  corpus by the teacher's cosine to the query and keep a candidate only if its score is below
  ``(1 - relative_margin)`` times the positive's (95% by default), which drops likely false negatives.
* ``lemon`` — LEMON-style (Rony et al. 2022) cluster-neighbourhood negatives: k-means over the corpus,
  the candidate pool is the members of the ``probe`` clusters nearest the query, negatives are drawn
  uniformly from the pool after the same positive-aware filter (falling back to ``topk`` when the
  pool is too small).

Known positives — by index and by identical text — are never returned as negatives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedlab.errors import EmbedlabError
from embedlab.validation import choice, finite_float, positive_int
from embedlab.vectors import check_vectors, normalize

STRATEGIES = ("topk", "lemon")


@dataclass
class MinedNegatives:
    negatives: list[list[int]]  # corpus indices per (query, positive) pair
    positive_scores: np.ndarray
    negative_scores: list[list[float]]


def mine_hard_negatives(
    query_vectors: np.ndarray,
    positive_vectors: np.ndarray,
    corpus_vectors: np.ndarray,
    known_positives: Sequence[set[int]],
    *,
    num_negatives: int = 4,
    relative_margin: float = 0.05,
    strategy: str = "topk",
    top_k: int = 100,
    n_clusters: int | None = None,
    probe: int = 3,
    seed: int = 0,
) -> MinedNegatives:
    """Negatives per (query, positive) pair, from precomputed teacher embeddings."""
    choice("strategy", strategy, STRATEGIES)
    finite_float("relative_margin", relative_margin, low=0.0, high=1.0, high_open=True)
    positive_int("num_negatives", num_negatives)
    positive_int("top_k", top_k)
    if n_clusters is not None:
        positive_int("n_clusters", n_clusters)
    positive_int("probe", probe)
    q = _normalise(query_vectors)
    p = _normalise(positive_vectors)
    c = _normalise(corpus_vectors)
    if not (len(q) == len(p) == len(known_positives)):
        raise EmbedlabError("queries, positives and known_positives must have the same length")
    pos_scores = (q * p).sum(1)
    scores = q @ c.T
    rng = np.random.default_rng(seed)
    members: list[np.ndarray] = []
    nearest: np.ndarray | None = None
    if strategy == "lemon":
        from sklearn.cluster import KMeans

        k = n_clusters or max(2, int(np.sqrt(len(c))))
        k = min(k, len(c))
        km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(c)
        members = [np.flatnonzero(km.labels_ == j) for j in range(k)]
        centroids = _normalise(km.cluster_centers_)
        nearest = np.argsort(-(q @ centroids.T), axis=1)[:, : min(probe, k)]
    negatives, neg_scores = [], []
    for i in range(len(q)):
        limit = (1 - relative_margin) * pos_scores[i]
        allowed = scores[i] < limit
        for j in known_positives[i]:
            allowed[j] = False
        chosen: list[int] = []
        if strategy == "lemon" and nearest is not None:
            pool = np.concatenate([members[j] for j in nearest[i]])
            pool = pool[allowed[pool]]
            if len(pool) >= num_negatives:
                chosen = rng.choice(pool, size=num_negatives, replace=False).tolist()
        if not chosen:
            order = np.argsort(-scores[i], kind="stable")[: max(top_k, num_negatives)]
            chosen = [int(j) for j in order if allowed[j]][:num_negatives]
        negatives.append([int(j) for j in chosen])
        neg_scores.append([float(scores[i, j]) for j in chosen])
    return MinedNegatives(negatives, pos_scores, neg_scores)


def mine_texts(
    teacher: Any, pairs: Sequence[tuple[str, str]], corpus: Sequence[str] | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """Mine for (query, positive) text pairs; the corpus defaults to every positive. Returns rows
    ``{"query", "positive", "negatives": [...]}``."""
    if not pairs:
        raise EmbedlabError("no pairs to mine negatives for")
    corpus = list(dict.fromkeys(corpus if corpus is not None else [p for _, p in pairs]))
    index = {t: i for i, t in enumerate(corpus)}
    positives_of: dict[str, set[int]] = {}
    for q, pos in pairs:
        if pos in index:
            positives_of.setdefault(q, set()).add(index[pos])
    known = [positives_of.get(q, set()) | ({index[q]} if q in index else set()) for q, _ in pairs]
    qv = teacher.encode([q for q, _ in pairs])
    pv = teacher.encode([p for _, p in pairs])
    cv = teacher.encode(corpus)
    mined = mine_hard_negatives(qv, pv, cv, known, **kwargs)
    return [
        {"query": q, "positive": p, "negatives": [corpus[j] for j in negs]}
        for (q, p), negs in zip(pairs, mined.negatives)
    ]


def _normalise(x: np.ndarray) -> np.ndarray:
    """2-d, finite float vectors at unit length (an InputError, an EmbedlabError, otherwise)."""
    return normalize(check_vectors(x))
