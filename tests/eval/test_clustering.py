"""Clustering follows mteb 1.12's ClusteringFast protocol (AbsTaskClusteringFast /
evaluate_clustering_bootstrapped): downsample with random.Random(42) before embedding, k from the
full label set of each level, 10 draws of 2,048 documents with replacement from the same
random.Random, MiniBatchKMeans(k, batch_size=512, n_init="auto") on numpy's seeded stream, V-measure.

The expected values below are rebuilt from the rule by hand (a brute-force replay of the random
streams), never by calling the evaluator's helpers."""

from __future__ import annotations

import random

import numpy as np
import pytest
from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics import v_measure_score

from embedlab.eval import evaluators as ev
from embedlab.eval.registry import TaskSpec


def make_task(tmp_path, texts, labels, **fields):
    (tmp_path / "t.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in zip(texts, labels)))
    return TaskSpec(name="clu", type="clustering", files={"test": "t.tsv"}, root=tmp_path, **fields)


class Recorder:
    """Stands in for MiniBatchKMeans: records its settings and inputs, assigns i % k."""

    fits: list[dict] = []

    def __init__(self, n_clusters, batch_size, n_init, random_state):
        self.settings = {"k": n_clusters, "batch_size": batch_size, "n_init": n_init, "random_state": random_state}

    def fit_predict(self, x):
        Recorder.fits.append({**self.settings, "x": np.array(x)})
        return np.arange(len(x)) % self.settings["k"]


@pytest.fixture
def recorder(monkeypatch):
    Recorder.fits = []
    monkeypatch.setattr(ev, "MiniBatchKMeans", Recorder)
    return Recorder


def one_hot_encoder(texts_seen):
    def encode(texts, role):
        texts_seen.append(list(texts))
        return np.array([[float(t.split("-")[1])] for t in texts])  # the document number as its vector

    return encode


def test_k_comes_from_the_full_label_set_even_when_a_draw_misses_a_label(tmp_path, recorder):
    labels = ["a"] * 6 + ["b"] * 5 + ["z"]  # 'z' has one document: most draws of 4 miss it
    texts = [f"doc-{i}" for i in range(12)]
    task = make_task(tmp_path, texts, labels, max_documents_per_cluster=4, n_bootstrap=5)
    scores, per = ev.evaluate_clustering(task, one_hot_encoder([]))
    # brute force: no downsampling (12 <= 16,384); five draws of 4 with replacement from random.Random(42)
    rng = random.Random(42)
    draws = [rng.choices(range(12), k=4) for _ in range(5)]
    assert any(11 not in d for d in draws), "the case must contain a draw without label 'z'"
    assert [f["k"] for f in recorder.fits] == [3] * 5  # the old rule (k from the draw) gives 2 on those draws
    assert all(f["batch_size"] == 512 and f["n_init"] == "auto" for f in recorder.fits)
    for fit, d in zip(recorder.fits, draws):
        assert fit["x"][:, 0].tolist() == [float(i) for i in d]
    expected = [v_measure_score([labels[i] for i in d], np.arange(4) % 3) for d in draws]
    assert per["values"] == pytest.approx(expected)
    assert scores["v_measure"] == pytest.approx(np.mean(expected))


def test_downsampling_happens_before_embedding_and_shares_the_stream(tmp_path, recorder):
    labels = ["a", "b", "c"] * 9 + ["z"] * 3
    texts = [f"doc-{i}" for i in range(30)]
    task = make_task(tmp_path, texts, labels, max_documents_to_embed=10, max_documents_per_cluster=6, n_bootstrap=3)
    seen: list[list[str]] = []
    scores, _ = ev.evaluate_clustering(task, one_hot_encoder(seen))
    rng = random.Random(42)
    keep = rng.sample(range(30), k=10)  # without replacement, before anything is embedded
    assert seen == [[texts[i] for i in keep]]  # only the downsampled documents are embedded, in sample order
    k = len({labels[i] for i in keep})
    draws = [rng.choices(range(10), k=6) for _ in range(3)]  # the same Random continues
    assert [f["k"] for f in recorder.fits] == [k] * 3
    for fit, d in zip(recorder.fits, draws):
        assert fit["x"][:, 0].tolist() == [float(keep[i]) for i in d]


def test_hierarchical_labels_are_scored_level_by_level(tmp_path, recorder):
    labels = ["sci/space", "sci/med", "rec", "rec", "sci/space", "sci/med", "rec", "sci/space"]
    texts = [f"doc-{i}" for i in range(8)]
    task = make_task(tmp_path, texts, labels, label_separator="/", max_documents_per_cluster=5, n_bootstrap=2)
    scores, per = ev.evaluate_clustering(task, one_hot_encoder([]))
    assert [f["k"] for f in recorder.fits] == [2, 2, 2, 2]  # level 0: sci, rec; level 1: space, med
    two_level = [i for i, lab in enumerate(labels) if "/" in lab]
    rng = random.Random(42)
    level0 = [rng.choices(range(8), k=5) for _ in range(2)]
    level1 = [rng.choices(range(len(two_level)), k=5) for _ in range(2)]
    assert [f["x"][:, 0].tolist() for f in recorder.fits] == (
        [[float(i) for i in d] for d in level0] + [[float(two_level[i]) for i in d] for d in level1]
    )
    assert len(per["values"]) == 4 and scores["v_measure"] == pytest.approx(np.mean(per["values"]))
    assert scores["v_measure_level_1"] == pytest.approx(np.mean(per["values"][2:]))
    Recorder.fits = []
    ev.evaluate_clustering(task.model_copy(update={"max_depth": 1}), one_hot_encoder([]))
    assert len(Recorder.fits) == 2  # max_depth=1: level 0 only


def test_real_kmeans_uses_one_seeded_numpy_stream(tmp_path):
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    labels = [str(i % 3) for i in range(45)]
    x = centres[[int(lab) for lab in labels]] + rng.normal(0, 1.2, (45, 2))
    texts = [f"doc-{i}" for i in range(45)]
    task = make_task(tmp_path, texts, labels, max_documents_per_cluster=30, n_bootstrap=4)
    scores, per = ev.evaluate_clustering(task, lambda ts, role: x[[int(t.split("-")[1]) for t in ts]])
    # brute force with sklearn: numpy's RNG seeded 42 once (as MTEB seeds the global RNG) and shared by the fits
    py, nprs = random.Random(42), np.random.RandomState(42)
    expected = []
    for _ in range(4):
        d = py.choices(range(45), k=30)
        km = MiniBatchKMeans(n_clusters=3, batch_size=512, n_init="auto", random_state=nprs)
        expected.append(v_measure_score([labels[i] for i in d], km.fit_predict(x[d])))
    assert per["values"] == pytest.approx(expected, abs=1e-12)
    assert 0 < scores["v_measure"] <= 1
