"""Evaluation arithmetic against hand-computed cases, brute force and scipy."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy.stats import wilcoxon

from embedlab.errors import EmbedlabError
from embedlab.eval.evaluators import best_accuracy_and_f1, rank_documents, retrieval_metrics, undersample
from embedlab.eval.registry import load_task_dir
from embedlab.eval.significance import compare_across_datasets, hierarchical_bootstrap, holm, paired_bootstrap


def test_retrieval_metrics_hand_case():
    # relevant: a, c (of 3 relevant in total: a, c, z); ranking a b c d
    m = retrieval_metrics(["a", "b", "c", "d"], {"a": 1, "c": 1, "z": 1})
    dcg = 1 + 1 / np.log2(4)
    idcg = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert m["ndcg_at_10"] == pytest.approx(dcg / idcg)
    assert m["map_at_10"] == pytest.approx((1 + 2 / 3) / 3)
    assert m["recall_at_3"] == pytest.approx(2 / 3)
    assert m["mrr_at_10"] == 1.0 and m["ndcg_at_1"] == 1.0
    assert retrieval_metrics(["b"], {"a": 1})["mrr_at_10"] == 0.0


def test_rank_documents_ties_by_doc_id_descending():
    scores = np.array([0.5, 0.9, 0.5, 0.1])
    assert rank_documents(scores, ["d1", "d2", "d3", "d4"], 3) == ["d2", "d3", "d1"]


def test_best_accuracy_and_f1_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = np.round(rng.random(30), 1)
        y = rng.integers(0, 2, 30)
        best_acc, best_f1 = 0.0, 0.0
        for t in np.r_[np.unique(s), np.inf]:
            pred = (s >= t).astype(int)
            best_acc = max(best_acc, (pred == y).mean())
            tp = ((pred == 1) & (y == 1)).sum()
            f1 = 2 * tp / (pred.sum() + y.sum()) if pred.sum() + y.sum() else 0.0
            best_f1 = max(best_f1, f1)
        acc, f1 = best_accuracy_and_f1(s, y)
        assert acc == pytest.approx(best_acc) and f1 == pytest.approx(best_f1)


class Reverser:
    """An RNG whose shuffle reverses the array in place: makes the undersampling rule hand-checkable."""

    def shuffle(self, a):
        a[:] = a[::-1].copy()


def test_undersample_hand_cases():
    labels = ["a", "b", "a", "a", "b", "c"]
    idxs = np.arange(6)
    # reversed order 5 4 3 2 1 0 -> first of each label: c=5, b=4, a=3
    assert undersample(labels, 1, idxs, Reverser()) == [5, 4, 3]
    # MTEB shuffles the same index array again on the next experiment (cumulative): back to 0..5,
    # two per label -> 0(a) 1(b) 2(a) [3 is a third a] 4(b) 5(c)
    assert undersample(labels, 2, idxs, Reverser()) == [0, 1, 2, 4, 5]
    assert idxs.tolist() == [0, 1, 2, 3, 4, 5]
    # with numpy's RandomState(42), arange(6) shuffles to [0, 1, 5, 2, 4, 3] (MTEB's first draw):
    # first a, b, c in that order are 0, 1, 5
    assert undersample(labels, 1, np.arange(6), np.random.RandomState(42)) == [0, 1, 5]


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


def test_manifest_validation_names_the_field(tmp_path):
    (tmp_path / "task.json").write_text(
        json.dumps({"name": "mine", "type": "sts", "files": {"test": "t.tsv"}, "splt": "x"})
    )
    with pytest.raises(EmbedlabError, match="field 'splt'"):
        load_task_dir(tmp_path)
    (tmp_path / "task.json").write_text(json.dumps({"name": "mine", "type": "stss", "files": {"test": "t.tsv"}}))
    with pytest.raises(EmbedlabError, match="field 'type'"):
        load_task_dir(tmp_path)


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
