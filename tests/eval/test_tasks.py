"""Each task type end to end on small hand-made fixtures with a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from embedlab.eval.registry import load_task_dir
from embedlab.eval.runner import EmbeddingCache, load_results, run_task
from embedlab.models import Embedder
from embedlab.readers import DatasetError

SENTS = [
    "the cat sat on the mat",
    "a dog ran fast",
    "the sky is blue",
    "i read a book",
    "the red car",
    "a big house",
    "the moon and the sun",
    "we write code",
    "the bird is small",
    "my tree is green",
]


@pytest.fixture(scope="module")
def emb(tiny_bert):
    return Embedder.from_pretrained(tiny_bert)


def write_task(root, manifest, files):
    root.mkdir(parents=True, exist_ok=True)
    (root / "task.json").write_text(json.dumps(manifest))
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return load_task_dir(root)


def test_every_task_type_runs_and_is_cached(emb, tmp_path):
    rng = np.random.default_rng(0)
    pairs = "sentence1\tsentence2\tscore\n" + "".join(
        f"{SENTS[i]}\t{SENTS[(i + 1) % 10]}\t{rng.uniform(0, 5):.2f}\n" for i in range(10)
    )
    labelled = "text\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(SENTS * 2))
    pair_cls = "sentence1\tsentence2\tlabel\n" + "".join(
        f"{SENTS[i]}\t{SENTS[(i + 1) % 10]}\t{i % 2}\n" for i in range(10)
    )
    corpus = "".join(json.dumps({"_id": f"d{i}", "title": "", "text": s}) + "\n" for i, s in enumerate(SENTS))
    queries = "".join(json.dumps({"_id": f"q{i}", "text": s}) + "\n" for i, s in enumerate(SENTS[:3]))
    qrels = "query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td1\t1\nq2\td5\t1\n"
    rerank = json.dumps({"query": SENTS[0], "positive": [SENTS[0]], "negative": SENTS[1:4]}) + "\n"
    tasks = [
        write_task(tmp_path / "sts", {"name": "s", "type": "sts", "files": {"test": "t.tsv"}}, {"t.tsv": pairs}),
        write_task(
            tmp_path / "cls",
            {
                "name": "c",
                "type": "classification",
                "files": {"train": "t.tsv", "test": "t.tsv"},
                "samples_per_label": 4,
                "n_experiments": 2,
            },
            {"t.tsv": labelled},
        ),
        write_task(
            tmp_path / "cv",
            {
                "name": "cv",
                "type": "classification",
                "files": {"all": "t.tsv"},
                "cv_folds": 2,
                "samples_per_label": None,
            },
            {"t.tsv": labelled},
        ),
        write_task(
            tmp_path / "clu", {"name": "k", "type": "clustering", "files": {"test": "t.tsv"}}, {"t.tsv": labelled}
        ),
        write_task(
            tmp_path / "pc",
            {"name": "p", "type": "pair_classification", "files": {"test": "t.tsv"}},
            {"t.tsv": pair_cls},
        ),
        write_task(
            tmp_path / "ret",
            {
                "name": "r",
                "type": "retrieval",
                "files": {"corpus": "c.jsonl", "queries": "q.jsonl", "qrels": "qrels.tsv"},
            },
            {"c.jsonl": corpus, "q.jsonl": queries, "qrels.tsv": qrels},
        ),
        write_task(
            tmp_path / "rr", {"name": "rr", "type": "reranking", "files": {"test": "t.jsonl"}}, {"t.jsonl": rerank}
        ),
    ]
    cache = EmbeddingCache(tmp_path / "cache")
    first = {t.name: run_task(t, emb, tmp_path / "out", cache=cache) for t in tasks}
    for name, r in first.items():
        lo = -1.0 if r["type"] == "sts" else 0.0  # Spearman lies in [-1, 1]; every other main metric in [0, 1]
        assert lo <= r["main_score"] <= 1, (name, r["main_score"])
        assert r["metadata"]["model_fingerprint"] == emb.fingerprint()
    # STS's main score is Spearman(gold, cosine) over the pairs, recomputed here with scipy from the model
    rows = [line.split("\t") for line in pairs.splitlines()[1:]]
    a = emb.encode([r[0] for r in rows])
    b = emb.encode([r[1] for r in rows])
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert first["s"]["main_score"] == pytest.approx(spearmanr([float(r[2]) for r in rows], cos).statistic, abs=1e-6)
    # classification: accuracy = mean per-item correctness over the experiments (hand identity)
    assert first["c"]["main_score"] == pytest.approx(np.mean(first["c"]["per_example"]["values"]))
    # retrieval: the query text equals its relevant document's text -> perfect for q0, q1
    assert first["r"]["per_example"]["values"][:2] == [1.0, 1.0]
    assert first["rr"]["main_score"] == 1.0
    again = {t.name: run_task(t, emb, tmp_path / "out", cache=cache) for t in tasks}
    assert all(r["metadata"]["texts_encoded"] == 0 for r in again.values())  # served from the cache
    assert {k: v["main_score"] for k, v in again.items()} == {k: v["main_score"] for k, v in first.items()}
    assert set(load_results(tmp_path / "out")) == set(first)


def test_missing_and_corrupt_files_name_the_file(emb, tmp_path):
    task = write_task(tmp_path / "sts", {"name": "s", "type": "sts", "files": {"test": "t.tsv"}}, {})
    with pytest.raises(DatasetError, match="t.tsv"):
        run_task(task, emb, tmp_path / "out")
    (tmp_path / "sts" / "t.tsv").write_text("sentence1\tsentence2\tscore\na\tb\n")
    with pytest.raises(DatasetError, match="t.tsv:2 has 2 fields"):
        run_task(task, emb, tmp_path / "out")


def test_beir_corpus_is_read_by_the_one_corpus_reader(tmp_path):
    from embedlab.corpus import join_title
    from embedlab.eval.evaluators import load_beir

    docs = [
        {"_id": "d1", "title": "Cats", "text": "sit on mats "},
        {"_id": 2, "title": "", "text": "  untitled, spaces kept"},
        {"_id": "d3", "title": None, "text": "a null title"},
        {"_id": "d4", "text": "no title key"},
    ]
    task = write_task(
        tmp_path / "ret",
        {"name": "r", "type": "retrieval", "files": {"corpus": "c.jsonl", "queries": "q.jsonl", "qrels": "qrels.tsv"}},
        {
            "c.jsonl": "".join(json.dumps(d) + "\n" for d in docs),
            "q.jsonl": json.dumps({"_id": "q1", "text": "cats"}) + "\n",
            "qrels.tsv": "query-id\tcorpus-id\tscore\nq1\td1\t1\n",
        },
    )
    corpus, queries, qrels = load_beir(task)
    assert corpus == {
        "d1": "Cats sit on mats",
        "2": "  untitled, spaces kept",
        "d3": "a null title",
        "d4": "no title key",
    }
    assert all(corpus[str(d["_id"])] == join_title(d.get("title"), d["text"]) for d in docs)
    assert queries == {"q1": "cats"} and qrels == {"q1": {"d1": 1}}
    (tmp_path / "ret" / "c.jsonl").write_text('{"_id": "d1"}\n')  # no text
    with pytest.raises(DatasetError, match="c.jsonl:1"):
        load_beir(task)


def test_builtin_sts_benchmark_matches_reference():
    """all-MiniLM-L6-v2 on STSBenchmark test vs MTEB's published 82.03 (±0.5)."""
    from embedlab.eval.registry import builtin_tasks
    from embedlab.settings import data_dir

    if data_dir() is None:
        pytest.skip("no shared data directory")
    ref = next(
        r["main_score"]
        for r in json.loads((data_dir().parent / "reference" / "mteb_scores.json").read_text())["scores"]
        if r["task"] == "STSBenchmark" and "MiniLM-L6" in r["model"]
    )
    import tempfile

    result = run_task(builtin_tasks()["STSBenchmark"], Embedder.from_pretrained("minilm-l6"), tempfile.mkdtemp())
    assert abs(result["main_score"] - ref) * 100 < 0.5


def test_nan_model_fails_its_task_clearly(tiny_bert, tmp_path):
    import torch

    from embedlab.errors import EmbedlabError

    bad = Embedder.from_pretrained(tiny_bert)
    with torch.no_grad():
        bad.backbone.model.embeddings.word_embeddings.weight[:] = float("nan")
    task = write_task(
        tmp_path / "sts",
        {"name": "s", "type": "sts", "files": {"test": "t.tsv"}},
        {"t.tsv": "sentence1\tsentence2\tscore\nthe cat\tthe dog\t3\na sky\tthe sun\t1\n"},
    )
    with pytest.raises(EmbedlabError, match="NaN"):
        run_task(task, bad, tmp_path / "out")
    assert not (tmp_path / "out" / "s.json").exists()
