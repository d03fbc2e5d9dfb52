"""Statistical significance for design comparisons (Tang & Yang 2024 use Wilcoxon, p < 0.05).

* across the datasets of a category: two-sided Wilcoxon signed-rank (scipy; exact for small n),
  Holm correction across the comparisons of one report, effect sizes and win/tie/loss counts;
* within one dataset: a seeded paired bootstrap over queries/pairs/items, giving a CI for the
  difference and a two-sided p-value;
* per category, evidence that works with few datasets: a seeded hierarchical bootstrap that
  resamples datasets (with replacement), then items within each resampled dataset, and recomputes
  each dataset's statistic, giving a percentile CI for the category's mean Δ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy.stats import spearmanr, wilcoxon
from sklearn.metrics import average_precision_score


@dataclass
class CategoryComparison:
    n: int
    mean_delta: float
    median_delta: float
    wins: int
    ties: int
    losses: int
    p_value: float


def compare_across_datasets(
    baseline: Sequence[float], other: Sequence[float], tie_tol: float = 1e-12
) -> CategoryComparison:
    """Wilcoxon signed-rank over paired per-dataset scores (zero differences dropped, 'wilcox')."""
    a, b = np.asarray(baseline, float), np.asarray(other, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("baseline and other must be 1-d sequences of the same length")
    d = b - a
    nonzero = np.abs(d) > tie_tol
    p = 1.0
    if nonzero.sum() > 0:
        p = float(wilcoxon(b[nonzero], a[nonzero], alternative="two-sided", zero_method="wilcox").pvalue)
    return CategoryComparison(
        n=len(d),
        mean_delta=float(d.mean()) if len(d) else 0.0,
        median_delta=float(np.median(d)) if len(d) else 0.0,
        wins=int((d > tie_tol).sum()),
        ties=int((~nonzero).sum()),
        losses=int((d < -tie_tol).sum()),
        p_value=p,
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(p_values, float)
    m = len(p)
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted.tolist()


def _statistic(per: dict[str, Any], idx: np.ndarray | None = None) -> float:
    kind = per["kind"]
    if kind in ("mean", "repeats"):
        v = np.asarray(per["values"], float)
        w = np.asarray(per["weights"], float) if per.get("weights") is not None else np.ones_like(v)
        if idx is not None:
            v, w = v[idx], w[idx]
        return float((v * w).sum() / w.sum())
    pred, gold = np.asarray(per["pred"], float), np.asarray(per["gold"], float)
    if idx is not None:
        pred, gold = pred[idx], gold[idx]
    if kind == "spearman":
        if np.ptp(pred) == 0 or np.ptp(gold) == 0:
            return float("nan")  # a degenerate resample (tiny sets): dropped by the bootstrap
        return float(spearmanr(gold, pred).statistic)
    if kind == "ap":
        return float(average_precision_score(gold, pred))
    raise ValueError(f"unknown per-example kind {kind!r}")


@dataclass
class BootstrapResult:
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    resamples: int


def paired_bootstrap(
    per_a: dict[str, Any], per_b: dict[str, Any], resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> BootstrapResult:
    """Resample items with replacement (the same indices for both models) and recompute the statistic.

    p is the two-sided bootstrap p-value of the shifted null: 2·min(P(Δ* <= 0), P(Δ* >= 0)).
    """
    _check_pair(per_a, per_b)
    n = _n_items(per_a)
    observed = _statistic(per_b) - _statistic(per_a)
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for r in range(resamples):
        idx = rng.integers(0, n, n)
        deltas[r] = _statistic(per_b, idx) - _statistic(per_a, idx)
    deltas = deltas[np.isfinite(deltas)]
    if not len(deltas):
        raise ValueError("every bootstrap resample was degenerate (too few items)")
    alpha = (1 - confidence) / 2
    p = min(1.0, 2 * min((deltas <= 0).mean(), (deltas >= 0).mean()))
    return BootstrapResult(
        observed, float(np.quantile(deltas, alpha)), float(np.quantile(deltas, 1 - alpha)), float(p), n, len(deltas)
    )


@dataclass
class HierarchicalResult:
    delta: float  # observed mean over datasets of (model − baseline)
    ci_low: float
    ci_high: float
    n_datasets: int
    resamples: int  # non-degenerate resamples behind the CI


def _n_items(per: dict[str, Any]) -> int:
    return len(per["values"] if per["kind"] in ("mean", "repeats") else per["pred"])


def _check_pair(per_a: dict[str, Any], per_b: dict[str, Any]) -> None:
    if per_a["kind"] != per_b["kind"]:
        raise ValueError("per-example records of different kinds cannot be paired")
    if per_a["kind"] != "repeats" and per_a.get("ids") != per_b.get("ids"):
        raise ValueError("per-example records are over different items: cannot pair them")
    if _n_items(per_a) != _n_items(per_b):
        raise ValueError("per-example records of different lengths cannot be paired")


def hierarchical_bootstrap(
    pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]],
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> HierarchicalResult:
    """Two-level paired bootstrap for a category's mean Δ (model − baseline) over its datasets.

    ``pairs`` holds one ``(per_example baseline, per_example model)`` per dataset. Each resample draws
    D datasets with replacement, then, for each drawn dataset (each draw independently, so a dataset
    drawn twice gets two item resamples), n items with replacement (the same indices for both
    models) and recomputes the statistic as ``paired_bootstrap`` does (mean, Spearman, AP, ...);
    Δ* is the mean over the D drawn datasets. The CI is the percentile interval of Δ*.

    Random stream: ``numpy.random.default_rng(seed)``; per resample the D dataset indices come first
    (``integers(0, D, D)``), then each drawn dataset's item indices in draw order (``integers(0, n, n)``).
    With one dataset the dataset draw is skipped (it can only pick that dataset), so the result
    equals ``paired_bootstrap`` with the same seed. A resample where some dataset's statistic is
    undefined (e.g. a constant Spearman input) is dropped, as in ``paired_bootstrap``.
    """
    if not pairs:
        raise ValueError("a hierarchical bootstrap needs at least one dataset")
    for a, b in pairs:
        _check_pair(a, b)
    d = len(pairs)
    sizes = [_n_items(a) for a, _ in pairs]
    observed = float(np.mean([_statistic(b) - _statistic(a) for a, b in pairs]))
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for r in range(resamples):
        drawn = rng.integers(0, d, d) if d > 1 else np.zeros(1, dtype=int)
        total = 0.0
        for j in drawn:
            a, b = pairs[j]
            idx = rng.integers(0, sizes[j], sizes[j])
            total += _statistic(b, idx) - _statistic(a, idx)
        deltas[r] = total / d
    deltas = deltas[np.isfinite(deltas)]
    if not len(deltas):
        raise ValueError("every bootstrap resample was degenerate (too few items)")
    alpha = (1 - confidence) / 2
    return HierarchicalResult(
        observed, float(np.quantile(deltas, alpha)), float(np.quantile(deltas, 1 - alpha)), d, len(deltas)
    )
