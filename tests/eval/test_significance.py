"""embedlab.eval.significance against independent references: scipy (Wilcoxon, binomial sign test,
Spearman), exact enumeration of the signed-rank and bootstrap distributions on tiny cases, Holm's
step-down procedure run by hand, hand-computed cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import binomtest, spearmanr, wilcoxon

from embedlab.eval.significance import compare_across_datasets, hierarchical_bootstrap, holm, paired_bootstrap


def test_wilcoxon_matches_scipy_and_hand_case():
    a = [0.80, 0.75, 0.70, 0.65, 0.60, 0.55]
    b = [0.81, 0.77, 0.73, 0.69, 0.65, 0.61]  # all six better: exact two-sided p = 2/2^6
    c = compare_across_datasets(a, b)
    assert c.p_value == pytest.approx(0.03125) and (c.wins, c.ties, c.losses) == (6, 0, 0)
    rng = np.random.default_rng(1)
    x, y = rng.random(12), rng.random(12)
    assert compare_across_datasets(x, y).p_value == pytest.approx(wilcoxon(y, x).pvalue)
    assert compare_across_datasets([0.5, 0.5], [0.5, 0.5]).p_value == 1.0


def test_holm_hand_case():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # monotone: never below an earlier step
    assert holm([0.02, 0.5]) == pytest.approx([0.04, 0.5])


def test_paired_bootstrap():
    a = {"kind": "mean", "ids": list(range(200)), "values": [0.5] * 200}
    b = {"kind": "mean", "ids": list(range(200)), "values": [0.6] * 200}
    r = paired_bootstrap(a, b, resamples=200)
    assert r.delta == pytest.approx(0.1) and r.ci_low == pytest.approx(0.1) and r.p_value == 0.0
    rng = np.random.default_rng(0)
    gold = rng.random(300)
    sa = {
        "kind": "spearman",
        "ids": list(range(300)),
        "pred": (gold + rng.normal(0, 0.5, 300)).tolist(),
        "gold": gold.tolist(),
    }
    r = paired_bootstrap(sa, sa, resamples=100)
    assert r.delta == 0.0 and r.p_value == 1.0
    w = {"kind": "mean", "ids": [0, 1, 2], "values": [1.0, 0.0, 0.0], "weights": [0.5, 0.25, 0.25]}
    assert paired_bootstrap(dict(w, values=[0.0, 0.0, 0.0]), w, resamples=10).delta == pytest.approx(0.5)
    with pytest.raises(ValueError, match="different items"):
        paired_bootstrap(a, dict(b, ids=list(range(1, 201))))


def _mean_record(values):
    return {"kind": "mean", "ids": list(range(len(values))), "values": list(values)}


def test_hierarchical_bootstrap_with_one_dataset_is_the_paired_bootstrap():
    rng = np.random.default_rng(3)
    gold = rng.random(40)
    a = {
        "kind": "spearman",
        "ids": list(range(40)),
        "pred": (gold + rng.normal(0, 0.6, 40)).tolist(),
        "gold": gold.tolist(),
    }
    b = dict(a, pred=(gold + rng.normal(0, 0.3, 40)).tolist())
    for seed in (0, 7):
        h = hierarchical_bootstrap([(a, b)], resamples=300, seed=seed)
        p = paired_bootstrap(a, b, resamples=300, seed=seed)
        assert (h.delta, h.ci_low, h.ci_high, h.resamples) == (p.delta, p.ci_low, p.ci_high, p.resamples)
        assert h.n_datasets == 1


def test_hierarchical_bootstrap_matches_exact_enumeration_on_two_datasets_of_two_items():
    # dataset 1: per-item Δ 0 and 1; dataset 2: per-item Δ 2 and 3 (baseline all 0)
    deltas = [[0.0, 1.0], [2.0, 3.0]]
    pairs = [(_mean_record([0.0, 0.0]), _mean_record(d)) for d in deltas]
    # exact distribution of Δ*: 2 dataset draws (4 ordered pairs), then 2 item draws per drawn dataset
    dist: dict[float, float] = {}
    for j1, j2 in itertools.product(range(2), repeat=2):
        for e1 in itertools.product(range(2), repeat=2):
            for e2 in itertools.product(range(2), repeat=2):
                v = (np.mean([deltas[j1][i] for i in e1]) + np.mean([deltas[j2][i] for i in e2])) / 2
                dist[v] = dist.get(v, 0.0) + 1 / 4 * 1 / 4 * 1 / 4
    values = sorted(dist)
    cdf = np.cumsum([dist[v] for v in values])
    lo = values[int(np.argmax(cdf >= 0.025))]
    hi = values[int(np.argmax(cdf >= 0.975))]
    assert (lo, hi) == (0.25, 2.75)  # by hand: P(0) = 1/64 < 2.5% < P(<= 0.25) = 5/64, symmetric on top
    h = hierarchical_bootstrap(pairs, resamples=20_000, seed=1)
    assert h.delta == pytest.approx(1.5) and h.n_datasets == 2
    assert (h.ci_low, h.ci_high) == pytest.approx((lo, hi))
    # resampling only items (datasets fixed) could never go below (0 + 2) / 2 = 1: the dataset level matters
    assert h.ci_low < 1.0


def test_hierarchical_bootstrap_follows_its_documented_random_stream():
    pairs = [(_mean_record([0.0, 0.0]), _mean_record([0.0, 1.0])), (_mean_record([0.0, 0.0]), _mean_record([2.0, 3.0]))]
    resamples = 4000
    rng = np.random.default_rng(5)
    # replay the documented stream by hand: per resample, the dataset indices, then item indices per draw
    draws = []
    for _ in range(resamples):
        ds = rng.integers(0, 2, 2)
        total = 0.0
        for j in ds:
            idx = rng.integers(0, 2, 2)
            total += np.mean(np.asarray(pairs[j][1]["values"])[idx])
        draws.append(total / 2)
    h = hierarchical_bootstrap(pairs, resamples=resamples, seed=5)
    assert (h.ci_low, h.ci_high) == pytest.approx((np.quantile(draws, 0.025), np.quantile(draws, 0.975)))
    assert np.mean(np.asarray(draws) < 1.0) > 0.1  # both draws on dataset 1 happen about a quarter of the time


def test_hierarchical_bootstrap_rejects_unpaired_records():
    with pytest.raises(ValueError, match="at least one dataset"):
        hierarchical_bootstrap([])
    with pytest.raises(ValueError, match="different items"):
        hierarchical_bootstrap([(_mean_record([1.0, 2.0]), dict(_mean_record([1.0, 2.0]), ids=[5, 6]))])


def exact_signed_rank_p(d) -> float:
    """Two-sided exact Wilcoxon p by enumerating every sign assignment of the ranks of |d| (no ties)."""
    d = np.asarray(d, float)
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    observed = ranks[d > 0].sum()
    stats = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product((0, 1), repeat=len(d))]
    stats = np.asarray(stats)
    return min(1.0, 2 * min((stats <= observed).mean(), (stats >= observed).mean()))


def test_wilcoxon_is_the_exact_signed_rank_enumeration():
    rng = np.random.default_rng(4)
    for _ in range(5):
        a = rng.random(9)
        b = a + rng.normal(0.05, 0.1, 9)
        assert compare_across_datasets(a, b).p_value == pytest.approx(exact_signed_rank_p(b - a))


def test_all_datasets_one_way_is_the_sign_test():
    for n in (5, 6, 8):
        a = np.linspace(0.5, 0.9, n)
        c = compare_across_datasets(a, a - 0.01 * np.arange(1, n + 1))  # every one worse, distinct sizes
        assert c.p_value == pytest.approx(binomtest(0, n, 0.5).pvalue)
        assert (c.wins, c.ties, c.losses) == (0, 0, n)


def test_ties_are_dropped_and_counted():
    a = [0.5, 0.6, 0.7, 0.8, 0.9, 0.4, 0.3]
    d = [0.0, 0.03, -0.01, 0.0, 0.05, 0.02, 0.04]
    c = compare_across_datasets(a, np.add(a, d))
    nonzero = [x for x in d if x != 0]
    assert (c.n, c.wins, c.ties, c.losses) == (7, 4, 2, 1)
    assert c.p_value == pytest.approx(exact_signed_rank_p(nonzero), abs=1e-9)
    assert c.mean_delta == pytest.approx(sum(d) / 7) and c.median_delta == pytest.approx(0.02)
    with pytest.raises(ValueError, match="same length"):
        compare_across_datasets([1.0, 2.0], [1.0])


def holm_step_down(p, alpha) -> set[int]:
    """Holm (1979): reject the smallest p's while p_(k) <= alpha / (m - k + 1), stop at the first failure."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    rejected = set()
    for k, i in enumerate(order):
        if p[i] > alpha / (len(p) - k):
            break
        rejected.add(i)
    return rejected


def test_holm_rejects_exactly_the_step_down_set():
    rng = np.random.default_rng(2)
    for _ in range(200):
        p = (rng.random(rng.integers(1, 8)) ** 3).tolist()
        adjusted = holm(p)
        for alpha in (0.01, 0.05, 0.1, 0.3):
            assert {i for i, q in enumerate(adjusted) if q <= alpha} == holm_step_down(p, alpha)
        assert all(q >= x for q, x in zip(adjusted, p)) and max(adjusted) <= 1.0


def test_paired_bootstrap_matches_the_exact_resampling_distribution():
    deltas = [-1.0, 0.0, 2.0, 5.0]
    a, b = _mean_record([0.0] * 4), _mean_record(deltas)
    means = np.array([np.mean([deltas[i] for i in idx]) for idx in itertools.product(range(4), repeat=4)])
    exact_p = 2 * min((means <= 0).mean(), (means >= 0).mean())  # 256 equally likely resamples
    values, counts = np.unique(means, return_counts=True)
    cdf = np.cumsum(counts) / len(means)

    def exact_quantile(q):
        return values[np.argmax(cdf >= q)]

    r = paired_bootstrap(a, b, resamples=20_000, seed=3)
    assert r.delta == pytest.approx(1.5) and (r.n, r.resamples) == (4, 20_000)
    # percentile CI of 20,000 draws: within the exact quantiles at 2.5% and 97.5% +- 0.6% (over 5 standard errors)
    assert exact_quantile(0.019) <= r.ci_low <= exact_quantile(0.031) < 0
    assert exact_quantile(0.969) <= r.ci_high <= exact_quantile(0.981)
    assert r.p_value == pytest.approx(exact_p, abs=0.01)
    assert paired_bootstrap(b, a, resamples=20_000, seed=3).ci_low == pytest.approx(-r.ci_high)  # same draws, mirrored


@pytest.mark.filterwarnings("ignore:No positive class found")  # AP resamples without a positive
def test_the_per_item_statistics_against_scipy_and_hand_values():
    gold, pred_a, pred_b = [1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 3.0, 2.0, 5.0, 4.0], [2.0, 1.0, 3.0, 4.0, 5.0]
    a = {"kind": "spearman", "ids": list(range(5)), "gold": gold, "pred": pred_a}
    b = dict(a, pred=pred_b)
    expected = spearmanr(gold, pred_b).statistic - spearmanr(gold, pred_a).statistic
    assert paired_bootstrap(a, b, resamples=50).delta == pytest.approx(expected) == pytest.approx(0.9 - 0.8)
    # AP of gold 1 0 1 0 ranked as given: (1/1 + 2/3) / 2; reversed ranking: (1/2 + 2/4) / 2
    ap_a = {"kind": "ap", "ids": [0, 1, 2, 3], "gold": [1, 0, 1, 0], "pred": [0.9, 0.8, 0.7, 0.1]}
    ap_b = dict(ap_a, pred=[0.1, 0.7, 0.8, 0.9])
    assert paired_bootstrap(ap_b, ap_a, resamples=50).delta == pytest.approx((1 + 2 / 3) / 2 - 0.5)
    repeats = {"kind": "repeats", "values": [0.5, 0.7], "ids": None}
    assert paired_bootstrap(repeats, dict(repeats, values=[0.6, 0.9]), resamples=10).delta == pytest.approx(0.15)


def test_degenerate_resamples_are_dropped_or_refused():
    a = {"kind": "spearman", "ids": [0, 1], "gold": [1.0, 2.0], "pred": [1.0, 2.0]}
    r = paired_bootstrap(a, dict(a, pred=[2.0, 1.0]), resamples=400, seed=0)
    # with two items only the two resamples using both (half of them) are defined: Δ* = -1 - 1 = -2
    assert 150 < r.resamples < 250 and r.ci_low == r.ci_high == r.delta == pytest.approx(-2.0) and r.p_value == 0.0
    one = {"kind": "spearman", "ids": [0], "gold": [1.0], "pred": [1.0]}
    with pytest.raises(ValueError, match="degenerate"):
        paired_bootstrap(one, one, resamples=10)
    with pytest.raises(ValueError, match="different kinds"):
        paired_bootstrap(_mean_record([1.0]), dict(one, kind="ap"))
    with pytest.raises(ValueError, match="different lengths"):
        paired_bootstrap({"kind": "repeats", "values": [1.0]}, {"kind": "repeats", "values": [1.0, 2.0]})
    with pytest.raises(ValueError, match="unknown per-example kind"):
        paired_bootstrap(dict(one, kind="auc"), dict(one, kind="auc"))
