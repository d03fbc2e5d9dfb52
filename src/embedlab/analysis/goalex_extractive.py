"""The extractive proposer: embedlab's offline stand-in for GoalEx's LLM proposer. **Not the paper's method**
(GoalEx asks GPT-3.5/4 to write the explanations); it is what ``embedlab cluster`` uses when no LLM able to
propose is given, and its runs are named ``extractive-pas`` (propose-assign-select with this proposer).

A round's candidate explanations are built from the distinctive terms of embedding-based groups:

1. **Groups.** The focus texts (every text in the first round; the texts no selected explanation covers in later
   rounds) are grouped by k-means on their L2-normalised embeddings, at a few granularities and seeds
   (:func:`group_partitions`), so that the selection programme has more than K candidates to choose from.
2. **Distinctive terms: c-TF-IDF**, as BERTopic defines it. The texts of each class are joined into one
   document and counted (scikit-learn's ``CountVectorizer``: unigrams and bigrams, English stop words removed);
   the weight of term t in class c is ``tf(t, c) * log(1 + A / f(t))``, where ``tf`` is the count of t in c
   divided by c's total count, ``f(t)`` is t's count over all classes and ``A`` the average number of words per
   class. The classes are one partition's groups plus, in later rounds, the texts outside the focus as one more
   class, so that a term must set its group apart from the whole corpus.
3. **Goal steering (KeyBERT-style).** Among the terms found in at least ``min_group_df`` of the group's texts,
   the ``top_terms`` highest by c-TF-IDF are re-ranked by the cosine between the term's embedding and the group's
   centroid plus ``goal_weight`` times the cosine between the term's embedding and the goal's embedding; the first
   ``pool`` are kept.
4. **Wording.** An explanation fills the goal's template (a quoted ``'... <slot>'`` in the goal, such as
   ``'is about <topic>'``; else ``is about <...>``) with 1 to ``terms`` pool terms: ``is about oil, prices or
   company``. Of these wordings the proposer keeps the one the embedding assigner would find most typical of the
   group: the highest mean standardised cosine over the group's texts.

The explanations then go through the loop unchanged: the embedding assigner scores every (text, explanation)
pair, and the paper's integer programme selects K of them.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_TEMPLATE = "is about <topic>"
_TEMPLATE = re.compile(r"""['"\u2018\u201c]([^'"\u2019\u201d]*<[^>]+>[^'"\u2019\u201d]*)['"\u2019\u201d]""")


def goal_template(goal: str) -> str:
    """The explanation template a goal asks for: its first quoted phrase with a ``<slot>`` ('is about <topic>'),
    else :data:`DEFAULT_TEMPLATE`."""
    m = _TEMPLATE.search(goal or "")
    return m.group(1).strip() if m else DEFAULT_TEMPLATE


def fill_template(template: str, terms: Sequence[str]) -> str:
    """``is about <topic>`` + [a, b, c] -> ``is about a, b or c``."""
    terms = list(terms)
    joined = terms[0] if len(terms) == 1 else ", ".join(terms[:-1]) + " or " + terms[-1]
    return re.sub(r"<[^>]+>", lambda _m: joined, template, count=1)


def ctfidf(counts: np.ndarray) -> np.ndarray:
    """Class-based TF-IDF (BERTopic's definition): ``counts`` is (classes, terms); returns the weights
    ``tf(t, c) * log(1 + A / f(t))`` with tf the per-class L1-normalised counts, f(t) the term's total count over
    the classes and A the average number of words per class."""
    counts = np.asarray(counts, dtype=np.float64)
    per_class = counts.sum(1, keepdims=True)
    tf = counts / np.maximum(per_class, 1e-12)
    f = counts.sum(0)
    avg_words = counts.sum() / max(len(counts), 1)
    idf = np.log(1.0 + avg_words / np.maximum(f, 1e-12))
    return tf * idf[None, :]


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def kmeans_labels(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means (scikit-learn, 10 restarts) on rows of X; fewer distinct points than k is not warned about on the
    console (the caller sees the group count instead)."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(X)


def group_partitions(n_focus: int, k: int, round_no: int) -> list[tuple[int, int]]:
    """(number of groups, seed) of the k-means partitions of the focus texts: K with three seeds and
    round(1.5 K) in the first round; min(K, focus / 2) in later rounds (the uncovered texts are fewer)."""
    if round_no == 0:
        parts = [(k, 0), (k, 1), (k, 2), (max(k + 1, round(1.5 * k)), 0)]
    else:
        parts = [(max(1, min(k, n_focus // 2)), 0), (max(1, min(k, n_focus // 2)), 1)]
    return [(min(g, n_focus), s) for g, s in parts if n_focus >= 1]


class ExtractiveProposer:
    """Proposes explanations from c-TF-IDF terms of k-means groups, re-ranked by the embedder (see the module
    docstring). ``embedder`` encodes terms, explanations and the goal; the texts' embeddings are given to
    :meth:`propose`."""

    kind = "extractive"

    def __init__(
        self,
        embedder: Any,
        *,
        terms: int = 5,
        pool: int = 7,
        top_terms: int = 10,
        goal_weight: float = 0.3,
        min_group_df: float = 0.1,
        ngram_range: tuple[int, int] = (1, 2),
        contrast: bool = True,
        centroid_weight: float = 1.0,
        ctfidf_weight: float = 0.0,
    ) -> None:
        self.contrast = contrast
        self.centroid_weight = centroid_weight
        self.ctfidf_weight = ctfidf_weight
        self.embedder = embedder
        self.terms = terms
        self.pool = pool
        self.top_terms = top_terms
        self.goal_weight = goal_weight
        self.min_group_df = min_group_df
        self.ngram_range = ngram_range
        self._cache: dict[str, np.ndarray] = {}
        self.log: list[dict[str, Any]] = []

    def settings(self) -> dict[str, Any]:
        return {
            "proposer": self.kind,
            "terms": self.terms,
            "pool": self.pool,
            "top_terms": self.top_terms,
            "goal_weight": self.goal_weight,
            "min_group_df": self.min_group_df,
            "contrast": self.contrast,
            "centroid_weight": self.centroid_weight,
            "ctfidf_weight": self.ctfidf_weight,
            "ngram_range": list(self.ngram_range),
            "weighting": "c-TF-IDF (BERTopic), KeyBERT-style re-ranking",
        }

    def _embed(self, phrases: Sequence[str]) -> np.ndarray:
        todo = [p for p in dict.fromkeys(phrases) if p not in self._cache]
        if todo:
            vecs = _normalise_rows(np.asarray(self.embedder.encode(list(todo), show_progress=False)))
            self._cache.update(zip(todo, vecs))
        return np.stack([self._cache[p] for p in phrases]) if len(phrases) else np.zeros((0, 1))

    def propose(
        self,
        goal: str,
        texts: Sequence[str],
        focus: Sequence[int],
        k: int,
        embeddings: np.ndarray,
        round_no: int = 0,
        seed: int = 0,
    ) -> list[str]:
        """Candidate explanations for the ``focus`` texts (indices into ``texts``), one per group."""
        from sklearn.feature_extraction.text import CountVectorizer

        focus = np.asarray(list(focus), dtype=int)
        if len(focus) == 0:
            return []
        E = _normalise_rows(embeddings)
        try:
            vec = CountVectorizer(
                ngram_range=self.ngram_range, stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b"
            )
            counts = vec.fit_transform(list(texts)).tocsr()
        except ValueError:  # only stop words, or no words at all
            return []
        vocab = np.asarray(vec.get_feature_names_out())
        present = (counts > 0).astype(np.int32)
        goal_vec = self._embed([goal])[0]
        template = goal_template(goal)
        outside = np.setdiff1d(np.arange(len(texts)), focus)
        found: list[str] = []
        seen: set[str] = set()
        for groups, part_seed in group_partitions(len(focus), k, round_no):
            labels = kmeans_labels(E[focus], groups, seed + part_seed) if groups > 1 else np.zeros(len(focus), int)
            members = [m for m in (focus[labels == g] for g in range(groups)) if len(m)]
            classes = members + ([outside] if len(outside) else [])
            C = np.vstack([np.asarray(counts[m].sum(0)).ravel() for m in classes])
            W = ctfidf(C)
            for g, m in enumerate(members):
                df = np.asarray(present[m].sum(0)).ravel()
                pool = self._term_pool(W[g], df, len(m), vocab, E[m].mean(0), goal_vec)
                explanation = self._best_wording(template, pool, E, m, [o for o in members if o is not m])
                if explanation is None or explanation in seen:
                    continue
                seen.add(explanation)
                found.append(explanation)
                self.log.append(
                    {
                        "round": round_no,
                        "groups": groups,
                        "seed": seed + part_seed,
                        "size": len(m),
                        "pool": pool,
                        "explanation": explanation,
                    }
                )
        return found

    def _term_pool(
        self,
        weights: np.ndarray,
        df: np.ndarray,
        size: int,
        vocab: np.ndarray,
        centroid: np.ndarray,
        goal_vec: np.ndarray,
    ) -> list[str]:
        """The group's ``pool`` best terms: among the terms in at least ``min_group_df`` of its texts (at least
        2 texts; any text when none is), the ``top_terms`` highest by c-TF-IDF, re-ranked by cosine to the group's
        centroid plus ``goal_weight`` x cosine to the goal."""
        need = max(2, int(np.ceil(self.min_group_df * size)))
        cand = np.flatnonzero(df >= need)
        if len(cand) == 0:
            cand = np.flatnonzero(df > 0)
        if len(cand) == 0:
            return []
        top = cand[np.argsort(-weights[cand], kind="stable")[: self.top_terms]]
        phrases = [str(vocab[t]) for t in top]
        P = self._embed(phrases)
        centroid = centroid / max(np.linalg.norm(centroid), 1e-12)
        score = self.centroid_weight * (P @ centroid) + self.goal_weight * (P @ goal_vec)
        score = score + self.ctfidf_weight * weights[top] / max(float(weights[top].max()), 1e-12)
        return [phrases[i] for i in np.argsort(-score, kind="stable")[: self.pool]]

    def _best_wording(
        self, template: str, pool: Sequence[str], E: np.ndarray, members: np.ndarray, others: Sequence[np.ndarray] = ()
    ) -> str | None:
        """The explanation (the template filled with 1 to ``terms`` terms of the pool, in pool order, no term
        inside another) whose embedding best sets the group apart: the highest mean standardised cosine over the
        group's texts, the score the embedding assigner gives them."""
        combos: list[list[str]] = []
        for size in range(1, min(self.terms, len(pool)) + 1):
            for combo in itertools.combinations(pool, size):
                words = [set(c.split()) for c in combo]
                if any(i != j and words[i] <= words[j] for i in range(size) for j in range(size)):
                    continue
                combos.append(list(combo))
        if not combos:
            return None
        wordings = [fill_template(template, c) for c in combos]
        D = self._embed(wordings)
        S = E @ D.T  # (n, combos)
        Z = (S - S.mean(0)) / np.maximum(S.std(0), 1e-12)
        score = Z[members].mean(0)
        if self.contrast and len(others):
            score = score - np.max([Z[o].mean(0) for o in others], axis=0)
        return wordings[int(np.argmax(score))]
