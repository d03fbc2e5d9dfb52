"""The bias subspace, DirectBias, IndirectBias, neutralise/equalise and hard debiasing (Bolukbasi et al. 2016)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from embedlab.analysis.bias.data import phrase
from embedlab.analysis.bias.encoders import StaticVectors, encode
from embedlab.analysis.bias.weat import unit
from embedlab.errors import InputError
from embedlab.validation import positive_int


@dataclass
class Subspace:
    """An orthonormal basis (k, d) of the bias subspace, and the variance share of each principal
    component of the centred definitional pairs (all of them, not only the k kept)."""

    basis: np.ndarray
    explained_variance_ratio: list[float]
    pairs: int

    @property
    def k(self) -> int:
        return int(self.basis.shape[0])

    @property
    def dim(self) -> int:
        return int(self.basis.shape[1])

    def project(self, V: np.ndarray) -> np.ndarray:
        """The component of each row inside the subspace (w_B)."""
        V = np.asarray(V, float)
        return (V @ self.basis.T) @ self.basis

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "dim": self.dim,
            "pairs": self.pairs,
            "explained_variance_ratio": [round(float(x), 6) for x in self.explained_variance_ratio],
            "basis": self.basis.tolist(),
        }


def subspace_from_pairs(a: np.ndarray, b: np.ndarray, k: int = 1, n_components: int = 10) -> Subspace:
    """PCA over the centred pairs: for each pair (a, b) with mean μ, the rows a − μ and b − μ (vectors
    unit-normalised first, as in the paper); the top ``k`` components are the subspace."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 2 or not len(a):
        raise InputError("the bias subspace needs at least one pair of equal-width vectors")
    positive_int("subspace: 'k'", k)
    a, b = unit(a), unit(b)
    mu = (a + b) / 2
    rows = np.concatenate([a - mu, b - mu])
    _, s, vt = np.linalg.svd(rows, full_matrices=False)
    var = s**2
    total = var.sum()
    scale = max(1.0, float(np.abs(rows).max()))
    rank = int(np.count_nonzero(s > 1e-8 * scale * max(rows.shape)))
    if total <= 0 or rank == 0:
        raise InputError(
            "degenerate bias subspace: every pair's two vectors are identical, so the pairs span no direction"
        )
    if k > rank:
        raise InputError(
            f"the definitional pairs span only {rank} direction(s); cannot take a {k}-dimensional subspace"
        )
    m = min(n_components, len(s))
    return Subspace(vt[:k].copy(), (var[:m] / total).tolist(), len(a))


def bias_subspace(
    encoder: Any,
    pairs: Sequence[tuple[str, str]],
    k: int = 1,
    *,
    templates: Sequence[str] | None = None,
    n_components: int = 10,
) -> tuple[Subspace, list[tuple[str, str]]]:
    """The subspace from definitional word pairs embedded alone (or in each of ``templates``, with
    ``{w}`` for the word: every (pair, template) becomes one pair). Pairs with a word missing from
    a static vocabulary are skipped and returned."""
    pairs = [(phrase(x), phrase(y)) if not hasattr(encoder, "has") else (x, y) for x, y in pairs]
    kept = [(x, y) for x, y in pairs if not hasattr(encoder, "has") or (encoder.has(x) and encoder.has(y))]
    skipped = [p for p in pairs if p not in kept]
    if not kept:
        raise InputError("no definitional pair has both words in the vocabulary")
    forms = list(templates) if templates else ["{w}"]
    left = [t.format(w=x) for x, _ in kept for t in forms]
    right = [t.format(w=y) for _, y in kept for t in forms]
    vecs = encode(encoder, left + right)
    return subspace_from_pairs(vecs[: len(left)], vecs[len(left) :], k, n_components), skipped


def subspace_cosines(V: np.ndarray, subspace: Subspace) -> np.ndarray:
    """|cos(w, B)| = ||w_B|| / ||w|| per row (for k = 1, |cos(w, g)|)."""
    V = unit(V)
    return np.linalg.norm(V @ subspace.basis.T, axis=1)


def direct_bias(V: np.ndarray, subspace: Subspace, c: float = 1.0) -> float:
    """DirectBias_c = mean over the (neutral) words of |cos(w, g)|^c (Bolukbasi et al., eq. in §5)."""
    V = np.asarray(V, float)
    if not len(V):
        raise InputError("DirectBias needs at least one neutral word")
    return float(np.mean(subspace_cosines(V, subspace) ** c))


def indirect_bias(w: np.ndarray, v: np.ndarray, subspace: Subspace) -> float:
    """β(w, v) = (w·v − w⊥·v⊥ / (||w⊥|| ||v⊥||)) / (w·v) for unit w, v, with w⊥ = w − w_B: the share of
    the similarity of w and v that the bias subspace accounts for (Bolukbasi et al., §5)."""
    w, v = unit(np.asarray(w, float)[None])[0], unit(np.asarray(v, float)[None])[0]
    wp, vp = w - subspace.project(w[None])[0], v - subspace.project(v[None])[0]
    dot = float(w @ v)
    if dot == 0:
        raise InputError("indirect bias is undefined for orthogonal vectors (w·v = 0)")
    if np.linalg.norm(wp) == 0 or np.linalg.norm(vp) == 0:
        raise InputError("indirect bias is undefined for a vector inside the bias subspace")
    return float((dot - (wp @ vp) / (np.linalg.norm(wp) * np.linalg.norm(vp))) / dot)


def neutralise(V: np.ndarray, subspace: Subspace) -> np.ndarray:
    """w ← (w − w_B) / ||w − w_B||: neutral words lose their component in the subspace."""
    V = np.asarray(V, float)
    return unit(V - subspace.project(V))


def equalise(a: np.ndarray, b: np.ndarray, subspace: Subspace) -> tuple[np.ndarray, np.ndarray]:
    """Equalise one family {a, b}: μ = (a+b)/2, ν = μ − μ_B, and each w ← ν + sqrt(1 − ||ν||²) ·
    (w_B − μ_B)/||w_B − μ_B||, so both are unit vectors equidistant from every neutral word."""
    pair = unit(np.stack([np.asarray(a, float), np.asarray(b, float)]))
    mu = pair.mean(axis=0)
    mu_b = subspace.project(mu[None])[0]
    nu = mu - mu_b
    z = math.sqrt(max(0.0, 1.0 - float(nu @ nu)))
    out = []
    for w in pair:
        d = subspace.project(w[None])[0] - mu_b
        norm = np.linalg.norm(d)
        if norm == 0:
            raise InputError("cannot equalise a pair whose words do not differ inside the bias subspace")
        out.append(nu + z * d / norm)
    return out[0], out[1]


def expand_case(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """lower, Title and UPPER variants of each pair (as the debiaswe code does)."""
    out: list[tuple[str, str]] = []
    for a, b in pairs:
        for f in (str.lower, str.title, str.upper):
            p = (f(a), f(b))
            if p not in out:
                out.append(p)
    return out


@dataclass
class HardDebiasReport:
    neutralised: int
    equalised: int
    skipped_pairs: list[tuple[str, str]]


def hard_debias(
    vectors: StaticVectors,
    subspace: Subspace,
    gender_specific: Iterable[str],
    equalize_pairs: Iterable[tuple[str, str]],
) -> tuple[StaticVectors, HardDebiasReport]:
    """Bolukbasi's hard debiasing of static word vectors: unit-normalise everything, neutralise every
    word not in ``gender_specific``, then equalise each pair (case variants included) whose two
    words are in the vocabulary."""
    specific = set(gender_specific)
    V = unit(vectors.vectors)
    neutral = np.array([w not in specific for w in vectors.words])
    V[neutral] = neutralise(V[neutral], subspace)
    out = StaticVectors(vectors.words, V)
    updates, done, skipped = {}, 0, []
    for a, b in expand_case(equalize_pairs):
        if out.has(a) and out.has(b):
            ea, eb = equalise(out.encode([a])[0], out.encode([b])[0], subspace)
            updates[a], updates[b] = ea, eb
            done += 1
        else:
            skipped.append((a, b))
    return out.replace(updates), HardDebiasReport(int(neutral.sum()), done, skipped)
