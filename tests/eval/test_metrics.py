"""Evaluation arithmetic against hand-computed cases and brute force (significance: test_significance.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedlab.errors import EmbedlabError
from embedlab.eval.evaluators import best_accuracy_and_f1, rank_documents, retrieval_metrics, undersample
from embedlab.eval.registry import load_task_dir


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


def test_manifest_validation_names_the_field(tmp_path):
    (tmp_path / "task.json").write_text(
        json.dumps({"name": "mine", "type": "sts", "files": {"test": "t.tsv"}, "splt": "x"})
    )
    with pytest.raises(EmbedlabError, match="field 'splt'"):
        load_task_dir(tmp_path)
    (tmp_path / "task.json").write_text(json.dumps({"name": "mine", "type": "stss", "files": {"test": "t.tsv"}}))
    with pytest.raises(EmbedlabError, match="field 'type'"):
        load_task_dir(tmp_path)
