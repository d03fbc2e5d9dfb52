"""The clustering check of Gonen & Goldberg (NAACL 2019, *Lipstick on a Pig*): is the removed bias still
recoverable? And the whole words of a subword vocabulary it runs on."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np

from embedlab.analysis.bias.subspace import Subspace
from embedlab.analysis.bias.weat import unit
from embedlab.errors import InputError


@dataclass
class ClusteringCheck:
    words: int  # per side
    alignment_before: float
    alignment_after: float
    seed: int
    ranked_by: str = "he - she"  # or "subspace" (the first basis vector), when no direction was given

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cluster_alignment(V: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """K-means (k = 2) on the rows; the share of rows whose cluster matches its label, under the
    better of the two cluster-to-label assignments (0.5 = no alignment, 1 = perfect)."""
    from sklearn.cluster import KMeans

    pred = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(unit(V))
    acc = float(np.mean(pred == labels))
    return max(acc, 1 - acc)


def gender_direction(encoder: Any, pair: tuple[str, str] = ("he", "she")) -> np.ndarray:
    """``unit(he) − unit(she)`` in ``encoder``'s space: the direction Gonen & Goldberg rank words on."""
    from embedlab.analysis.bias.data import phrase
    from embedlab.analysis.bias.encoders import encode

    a, b = encode(encoder, list(pair) if hasattr(encoder, "has") else [phrase(pair[0]), phrase(pair[1])])
    return unit(a[None])[0] - unit(b[None])[0]


def most_biased(V: np.ndarray, direction: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, labels): the ``n`` rows projecting most negatively (label 0) and the ``n`` most
    positively (label 1) on ``direction``, by cosine."""
    proj = unit(V) @ unit(np.asarray(direction, float))
    order = np.argsort(proj, kind="stable")
    return np.concatenate([order[:n], order[-n:]]), np.array([0] * n + [1] * n)


def gonen_goldberg(
    before: np.ndarray,
    after: np.ndarray,
    subspace: Subspace | None = None,
    n: int = 500,
    seed: int = 0,
    *,
    direction: np.ndarray | None = None,
) -> ClusteringCheck:
    """Gonen & Goldberg's check: take the ``n`` words most biased towards each side in the *original*
    vectors, by their projection on ``direction`` (the paper's he − she, :func:`gender_direction`),
    label them by side, cluster the original and the debiased vectors of those words into two
    clusters, and report how well each clustering recovers the labels. Without ``direction`` the
    words are ranked on the subspace's first basis vector (``ranked_by`` says which)."""
    before, after = np.asarray(before, float), np.asarray(after, float)
    if before.shape[0] != after.shape[0]:
        raise InputError("before and after must hold the same words")
    if direction is None and subspace is None:
        raise InputError("the clustering check needs a direction to rank words on (he - she) or a subspace")
    n = min(n, before.shape[0] // 2)
    if n < 2:
        raise InputError("the clustering check needs at least 4 words")
    ranked_by = "he - she" if direction is not None else "subspace"
    idx, labels = most_biased(before, direction if direction is not None else subspace.basis[0], n)
    return ClusteringCheck(
        n, cluster_alignment(before[idx], labels, seed), cluster_alignment(after[idx], labels, seed), seed, ranked_by
    )


def vocabulary_words(tokenizer: Any, exclude: Iterable[str] = (), limit: int = 20_000, min_len: int = 3) -> list[str]:
    """Whole lower-case alphabetic words of a subword tokenizer's vocabulary (WordPiece: no ``##``;
    byte-level BPE: a leading ``Ġ``; SentencePiece: a leading ``▁``, since an unmarked piece continues
    a word), in vocabulary-id order, minus ``exclude``, at most ``limit``."""
    vocab = tokenizer.get_vocab()
    excluded = {w.lower() for w in exclude}
    marker = next((m for m in ("Ġ", "▁") if any(t.startswith(m) for t in vocab)), None)
    out, seen = [], set()
    for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
        if marker is not None:
            if not tok.startswith(marker):
                continue
            tok = tok[len(marker) :]
        word = tok
        if (
            len(word) >= min_len
            and word.isascii()
            and word.isalpha()
            and word.islower()
            and word not in excluded
            and word not in seen
        ):
            seen.add(word)
            out.append(word)
            if len(out) >= limit:
                break
    return out
