"""WEAT and SEAT statistics: associations, the effect size, exact and sampled permutation p-values, running tests."""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from embedlab.analysis.bias.data import MAX_EXACT, N_RANDOM, SET_KEYS, BiasTest, check_sizes, seat_sentences
from embedlab.analysis.bias.encoders import encode, known_words
from embedlab.errors import ConfigError, InputError
from embedlab.io import cache_key
from embedlab.validation import positive_int


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.any(n == 0):
        raise InputError("a zero vector cannot be compared by cosine (an empty or all-zero embedding)")
    return v / n


def associations(W: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """s(w, A, B) = mean_a cos(w, a) - mean_b cos(w, b), for each row w of W."""
    W, A, B = unit(W), unit(A), unit(B)
    return (W @ A.T).mean(axis=1) - (W @ B.T).mean(axis=1)


def weat_statistic(sx: np.ndarray, sy: np.ndarray) -> float:
    """S(X, Y, A, B) = sum_x s(x) - sum_y s(y)."""
    return float(np.sum(sx) - np.sum(sy))


def effect_size(sx: np.ndarray, sy: np.ndarray) -> float:
    """d = (mean_x s - mean_y s) / std_{w in X∪Y} s(w), sample std (``ddof=1``); 0 when every s is equal."""
    pooled = np.concatenate([sx, sy])
    sd = float(np.std(pooled, ddof=1))
    if sd == 0:
        return 0.0
    return float((np.mean(sx) - np.mean(sy)) / sd)


def n_partitions(n: int) -> int:
    """Ordered equal halves (X_i, Y_i) of a pooled set of 2n: C(2n, n)."""
    return math.comb(2 * n, n)


@dataclass
class PermutationResult:
    p_value: float
    method: str  # exact | random
    permutations: int  # partitions enumerated, or random permutations drawn
    seed: int | None


def permutation_p(
    sx: np.ndarray,
    sy: np.ndarray,
    *,
    max_exact: int = MAX_EXACT,
    n_random: int = N_RANDOM,
    seed: int = 0,
    chunk: int = 10_000,
) -> PermutationResult:
    """One-sided p of S(X, Y): the share of equal-size partitions of X ∪ Y with S_i >= S.

    Since S_i = 2 · sum(s over X_i) - sum(s over X ∪ Y), only the sums of size-n subsets matter.
    Exact when C(2n, n) <= ``max_exact``; otherwise ``n_random`` seeded permutations of the pool
    (without replacement), p = (b + 1) / (m + 1)."""
    sx, sy = np.asarray(sx, float), np.asarray(sy, float)
    n = len(sx)
    if n != len(sy):
        raise InputError(f"the permutation test needs |X| = |Y|; got {len(sx)} and {len(sy)}")
    pool = np.concatenate([sx, sy])
    total = pool.sum()
    observed = 2 * sx.sum() - total
    tol = 1e-10 * max(1.0, float(np.abs(pool).sum()))
    count = n_partitions(n)
    if count <= max_exact:
        hits = 0
        combos = itertools.combinations(range(2 * n), n)
        while True:
            block = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, chunk)), dtype=np.int64)
            if not len(block):
                break
            stats = 2 * pool[block.reshape(-1, n)].sum(axis=1) - total
            hits += int(np.count_nonzero(stats >= observed - tol))
        return PermutationResult(hits / count, "exact", count, None)
    positive_int("n_random", n_random)
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < n_random:
        m = min(chunk, n_random - done)
        idx = rng.permuted(np.tile(np.arange(2 * n), (m, 1)), axis=1)[:, :n]
        stats = 2 * pool[idx].sum(axis=1) - total
        hits += int(np.count_nonzero(stats >= observed - tol))
        done += m
    return PermutationResult((hits + 1) / (n_random + 1), "random", n_random, seed)


@dataclass
class WeatResult:
    """One WEAT/SEAT test on one model."""

    test: str
    mode: str  # weat | seat
    effect_size: float
    statistic: float
    p_value: float
    p_method: str
    permutations: int
    seed: int | None
    sizes: dict[str, int]  # members of each set that were embedded (sentences for SEAT)
    skipped: dict[str, list[str]] = field(default_factory=dict)  # words missing from a static vocabulary
    dropped: dict[str, list[str]] = field(default_factory=dict)  # words dropped to make |X| = |Y|
    title: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def weat_from_vectors(
    X: np.ndarray,
    Y: np.ndarray,
    A: np.ndarray,
    B: np.ndarray,
    *,
    name: str = "test",
    mode: str = "weat",
    max_exact: int = MAX_EXACT,
    n_random: int = N_RANDOM,
    seed: int = 0,
) -> WeatResult:
    """WEAT on vectors (rows)."""
    check_sizes(name, {"X": len(X), "Y": len(Y), "A": len(A), "B": len(B)})
    sx, sy = associations(X, A, B), associations(Y, A, B)
    perm = permutation_p(sx, sy, max_exact=max_exact, n_random=n_random, seed=seed)
    return WeatResult(
        name,
        mode,
        effect_size(sx, sy),
        weat_statistic(sx, sy),
        perm.p_value,
        perm.method,
        perm.permutations,
        perm.seed,
        {"X": len(X), "Y": len(Y), "A": len(A), "B": len(B)},
    )


class MemoEncoder:
    """Wraps an encoder: each distinct text is embedded once (tests share attribute lists). The memo is
    keyed by :func:`embedlab.io.cache_key` over the encoder's weight fingerprint (its ``fingerprint()``,
    looked up on every call, so changed weights miss; an encoder without one is known by its identity)
    and the text."""

    def __init__(self, encoder: Any) -> None:
        self.inner = encoder
        self.memo: dict[str, np.ndarray] = {}

    def _model_fingerprint(self) -> str:
        fingerprint = getattr(self.inner, "fingerprint", None)
        if callable(fingerprint):
            return str(fingerprint())
        return f"{type(self.inner).__name__}@{id(self.inner):x}"  # held by the memo: the id is not reused

    def __getattr__(self, name: str) -> Any:  # ``has`` (static vocabularies) and the rest come from the encoder
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        fingerprint = self._model_fingerprint()
        keys = {t: cache_key(fingerprint, "bias-memo", t) for t in dict.fromkeys(texts)}
        new = [t for t, k in keys.items() if k not in self.memo]
        if new:
            for t, v in zip(new, encode(self.inner, new)):
                self.memo[keys[t]] = v
        return np.stack([self.memo[keys[t]] for t in texts]) if len(texts) else np.zeros((0, 0))


def _test_texts(
    encoder: Any, test: BiasTest, mode: str, templates: dict[str, list[str]] | None
) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, list[str]]]:
    """(texts per set, skipped, dropped) for one test in one mode."""
    if mode not in ("weat", "seat"):
        raise ConfigError(f"mode must be weat or seat; got {mode!r}")
    if mode == "seat" and hasattr(encoder, "has"):
        raise InputError("SEAT embeds sentences: static word vectors support WEAT only (use --mode weat)")
    words: dict[str, list[str]] = {}
    skipped: dict[str, list[str]] = {}
    for key, ws in test.sets().items():
        kept, missing = known_words(encoder, ws.words)
        words[key] = kept
        if missing:
            skipped[key] = missing
    dropped: dict[str, list[str]] = {}
    n = min(len(words["X"]), len(words["Y"]))
    for key in ("X", "Y"):
        if len(words[key]) > n:
            dropped[key] = words[key][n:]
            words[key] = words[key][:n]
    check_sizes(test.name, {k: len(v) for k, v in words.items()})
    sets = test.sets()
    texts = {k: (seat_sentences(v, sets[k].kind, templates) if mode == "seat" else list(v)) for k, v in words.items()}
    return texts, skipped, dropped


def run_test(
    encoder: Any,
    test: BiasTest,
    *,
    mode: str = "weat",
    templates: dict[str, list[str]] | None = None,
    max_exact: int = MAX_EXACT,
    n_random: int = N_RANDOM,
    seed: int = 0,
) -> WeatResult:
    """WEAT (each word embedded alone) or SEAT (each word in each template of its kind) for one test.

    Words missing from a static vocabulary are skipped and listed in ``skipped``; if that leaves
    |X| != |Y|, the last words of the longer target list are dropped (listed in ``dropped``)."""
    texts, skipped, dropped = _test_texts(encoder, test, mode, templates)
    order = [t for k in SET_KEYS for t in texts[k]]
    unique = list(dict.fromkeys(order))
    vecs = encode(encoder, unique)
    pos = {t: i for i, t in enumerate(unique)}
    mats = {k: vecs[[pos[t] for t in texts[k]]] for k in SET_KEYS}
    result = weat_from_vectors(
        mats["X"],
        mats["Y"],
        mats["A"],
        mats["B"],
        name=test.name,
        mode=mode,
        max_exact=max_exact,
        n_random=n_random,
        seed=seed,
    )
    result.skipped, result.dropped, result.title = skipped, dropped, test.title
    return result


def run_tests(
    encoder: Any,
    tests: Sequence[BiasTest],
    modes: Sequence[str] = ("weat", "seat"),
    templates: dict[str, list[str]] | None = None,
    **kwargs: Any,
) -> list[WeatResult]:
    """Every test in every mode; all distinct texts are embedded in one call first."""
    memo = MemoEncoder(encoder)
    pending = []
    for m in modes:
        for t in tests:
            texts, _, _ = _test_texts(memo, t, m, templates)
            pending += [x for k in SET_KEYS for x in texts[k]]
    memo.encode(list(dict.fromkeys(pending)))
    return [run_test(memo, t, mode=m, templates=templates, **kwargs) for m in modes for t in tests]
