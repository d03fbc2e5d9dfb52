"""Evaluation arithmetic against hand-computed cases, brute force and scipy."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import wilcoxon

from embedlab.errors import EmbedlabError
from embedlab.eval.evaluators import best_accuracy_and_f1, rank_documents, retrieval_metrics, undersample
from embedlab.eval.registry import load_task_dir
from embedlab.eval.significance import compare_across_datasets, holm, paired_bootstrap


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


def test_undersample_is_mtebs_rule():
    labels = ["a", "b", "a", "a", "b", "c"]
    idxs = np.arange(6)
    keep = undersample(labels, 1, idxs, np.random.RandomState(42))
    expected = np.arange(6)
    np.random.RandomState(42).shuffle(expected)
    first = {}
    for i in expected:
        first.setdefault(labels[i], int(i))
    assert sorted(keep) == sorted(first.values())


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
    sa = {"kind": "spearman", "ids": list(range(300)), "pred": (gold + rng.normal(0, 0.5, 300)).tolist(), "gold": gold.tolist()}
    r = paired_bootstrap(sa, sa, resamples=100)
    assert r.delta == 0.0 and r.p_value == 1.0
    w = {"kind": "mean", "ids": [0, 1, 2], "values": [1.0, 0.0, 0.0], "weights": [0.5, 0.25, 0.25]}
    assert paired_bootstrap(dict(w, values=[0.0, 0.0, 0.0]), w, resamples=10).delta == pytest.approx(0.5)
    with pytest.raises(ValueError, match="different items"):
        paired_bootstrap(a, dict(b, ids=list(range(1, 201))))


def test_manifest_validation_names_the_field(tmp_path):
    (tmp_path / "task.json").write_text(json.dumps({"name": "mine", "type": "sts", "files": {"test": "t.tsv"}, "splt": "x"}))
    with pytest.raises(EmbedlabError, match="field 'splt'"):
        load_task_dir(tmp_path)
    (tmp_path / "task.json").write_text(json.dumps({"name": "mine", "type": "stss", "files": {"test": "t.tsv"}}))
    with pytest.raises(EmbedlabError, match="field 'type'"):
        load_task_dir(tmp_path)
