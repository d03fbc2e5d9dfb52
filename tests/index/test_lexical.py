"""BM25 (embedlab.index.lexical) against hand computations of its formulas, the tie rule, persistence
and refusals; SciFact against the figures measured with bm25s (docs/sparse.md); ``embedlab eval -m bm25``."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from embedlab.errors import ConfigError, IndexStoreError
from embedlab.index.lexical import BM25Index

from ..conftest import run_cli

# a toy corpus with stemming and stopwords off, so every token below is an index term as written
DOCS = {
    "d1": "cat sat on mat",
    "d2": "cat cat dog",
    "d3": "dog ran to the park",
    "d4": "bird in sky",
}
# term counts by hand (the tokens are the words: two or more letters, lower case)
TF = {
    "d1": {"cat": 1, "sat": 1, "on": 1, "mat": 1},
    "d2": {"cat": 2, "dog": 1},
    "d3": {"dog": 1, "ran": 1, "to": 1, "the": 1, "park": 1},
    "d4": {"bird": 1, "in": 1, "sky": 1},
}
LENGTH = {"d1": 4, "d2": 3, "d3": 5, "d4": 3}
AVG_LENGTH = 15 / 4
N = 4
DF = {"cat": 2, "dog": 2, "sky": 1, "the": 1}

IDF = {
    "lucene": lambda df: math.log(1 + (N - df + 0.5) / (df + 0.5)),
    "robertson": lambda df: math.log(max(1.0, (N - df + 0.5) / (df + 0.5))),  # clipped at 0
    "atire": lambda df: math.log(N / df),
}


def tf_part(method, tf, length, k1, b):
    norm = k1 * (1 - b + b * length / AVG_LENGTH)
    if method == "atire":
        return tf * (k1 + 1) / (tf + norm)
    return tf / (norm + tf)  # lucene and robertson


def hand_score(method, query_terms, doc, k1=1.5, b=0.75):
    return sum(
        IDF[method](DF[t]) * tf_part(method, TF[doc][t], LENGTH[doc], k1, b) for t in query_terms if t in TF[doc]
    )


def toy(**kw):
    return BM25Index(stemmer=None, stopwords=None, **kw).build(list(DOCS), list(DOCS.values()))


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
@pytest.mark.parametrize("k1,b", [(1.5, 0.75), (0.9, 0.4), (1.2, 0.0), (2.0, 1.0)])
def test_scores_equal_a_hand_computation_of_the_formula(method, k1, b):
    index = toy(method=method, k1=k1, b=b)
    for query in (["cat", "dog"], ["cat"], ["dog", "sky"], ["the", "cat", "cat"]):
        got = index.score(" ".join(query))
        want = [hand_score(method, query, d, k1, b) for d in DOCS]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_lucene_defaults_by_hand_with_numbers():
    """One case written out: idf(cat) = ln(1 + 2.5/2.5) = ln 2; d2 has tf 2 and length 3 of avg 3.75."""
    index = toy()
    assert (index.k1, index.b, index.method) == (1.5, 0.75, "lucene")
    norm_d2 = 1.5 * (0.25 + 0.75 * 3 / 3.75)  # 1.275
    norm_d1 = 1.5 * (0.25 + 0.75 * 4 / 3.75)  # 1.575
    hits = index.search("cat", k=10)[0]
    assert hits[0] == ["d2", "d1"]  # only the documents holding "cat"
    np.testing.assert_allclose(hits[1], [math.log(2) * 2 / (norm_d2 + 2), math.log(2) * 1 / (norm_d1 + 1)], rtol=1e-6)


def test_search_ranks_by_score_returns_only_matching_documents_and_cuts_at_k():
    index = toy()
    ids, scores = index.search(["cat dog"], k=10)[0]
    want = {d: hand_score("lucene", ["cat", "dog"], d) for d in DOCS if hand_score("lucene", ["cat", "dog"], d) > 0}
    assert ids == sorted(want, key=want.get, reverse=True)  # d2 (both words) first; d4 (neither) absent
    assert "d4" not in ids and len(ids) == 3
    assert np.all(np.diff(scores) <= 0)
    assert index.search("cat dog", k=1)[0][0] == ["d2"]
    # k larger than the corpus: every matching document
    assert index.search("cat dog", k=1000)[0][0] == ids


def test_ties_are_broken_by_id_descending_exactly_at_the_cut():
    texts = ["apple pie", "apple pie", "apple pie", "banana"]
    for ids in (["a", "b", "c", "z"], ["c", "a", "b", "z"], ["b", "c", "a", "z"]):
        index = BM25Index(stemmer=None, stopwords=None).build(ids, texts)
        assert index.search("apple", k=10)[0][0] == ["c", "b", "a"]
        assert index.search("apple", k=1)[0][0] == ["c"]  # the tie at the cut is decided by id, not by row order
        assert index.search("apple", k=2)[0][0] == ["c", "b"]


def test_empty_and_unmatched_queries_give_no_hits():
    index = BM25Index().build(list(DOCS), list(DOCS.values()))
    for q in ("", "   ", "the and of", "zebra quantum", "a b c"):  # empty, blank, stopwords, unknown, one-letter
        ids, scores = index.search(q, k=5)[0]
        assert ids == [] and scores.shape == (0,)
    assert len(index.search(["", "cat"], k=5)) == 2  # one empty query does not fail the batch
    assert not index.score("").any()


def test_stemming_maps_inflections_to_one_term_and_stopwords_are_dropped():
    index = BM25Index()
    assert index.tokens("running runs run") == ["run", "run", "run"]
    assert index.tokens("The cats are running") == ["cat", "run"]
    assert BM25Index(stemmer=None).tokens("running runs") == ["running", "runs"]
    assert BM25Index(stopwords=None, stemmer=None).tokens("The cat") == ["the", "cat"]
    stemmed = BM25Index().build(["x", "y"], ["a dog running in the park", "a cat sleeping"])
    assert stemmed.search("runs", k=5)[0][0] == ["x"]
    plain = BM25Index(stemmer=None).build(["x", "y"], ["a dog running in the park", "a cat sleeping"])
    assert plain.search("runs", k=5)[0][0] == []


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"k1": 0}, "k1"),
        ({"k1": -1.0}, "k1"),
        ({"k1": float("nan")}, "k1"),
        ({"k1": True}, "k1"),
        ({"k1": "fast"}, "k1"),
        ({"b": 1.5}, "b"),
        ({"b": -0.1}, "b"),
        ({"method": "bm26"}, "method"),
        ({"method": "Lucene"}, "method"),
        ({"stemmer": "porter"}, "stemmer"),
        ({"stopwords": "french"}, "stopwords"),
        ({"delta": 0}, "delta"),
    ],
)
def test_bad_parameters_are_config_errors_in_one_line(kw, match):
    with pytest.raises(ConfigError, match=match) as exc:
        BM25Index(**kw)
    assert exc.value.exit_code == 2 and "\n" not in str(exc.value)


def test_options_from_the_command_line():
    index = BM25Index.from_options({"k1": 0.9, "b": 0.4, "stemmer": "none", "stopwords": None, "method": "atire"})
    assert index.params() == {"method": "atire", "k1": 0.9, "b": 0.4, "stemmer": None, "stopwords": None}
    with pytest.raises(ConfigError, match="unknown BM25 option 'kl'"):
        BM25Index.from_options({"kl": 1.2})


def test_every_method_builds_and_searches_the_documents_holding_a_query_term():
    for method in ("lucene", "robertson", "atire", "bm25l", "bm25+"):
        index = toy(method=method)
        ids, scores = index.search("cat dog", k=4)[0]
        assert sorted(ids) == ["d1", "d2", "d3"], method  # d4 holds neither word, even under bm25l/bm25+'s floor
        assert np.all(np.diff(scores) <= 0), method


def test_empty_corpus_and_bad_documents_are_refused():
    with pytest.raises(IndexStoreError, match="empty corpus"):
        BM25Index().build([], [])
    with pytest.raises(IndexStoreError, match="no document has an indexable word"):
        BM25Index().build(["a", "b"], ["the", ""])
    with pytest.raises(IndexStoreError, match="duplicate ids: a"):
        BM25Index().build(["a", "a"], ["cat", "dog"])
    with pytest.raises(IndexStoreError, match="2 ids but 1 texts"):
        BM25Index().build(["a", "b"], ["cat"])
    with pytest.raises(IndexStoreError, match="build"):
        BM25Index().search("cat")
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        toy().search("cat", k=0)


def test_vectors_are_refused_in_one_line():
    index = toy()
    for call in (index.vectors, lambda: index.reconstruct(0), lambda: index.encode(["cat"])):
        with pytest.raises(IndexStoreError, match="stores no vectors") as exc:
            call()
        assert "\n" not in str(exc.value)


def test_save_load_round_trip_with_a_manifest_of_checksums(tmp_path):
    index = BM25Index(k1=1.2, b=0.6, method="bm25+", stemmer="english").build(list(DOCS), list(DOCS.values()))
    index.save(tmp_path / "bm25")
    manifest = json.loads((tmp_path / "bm25" / "manifest.json").read_text())
    assert manifest["count"] == 4
    assert manifest["params"] == {
        "method": "bm25+",
        "k1": 1.2,
        "b": 0.6,
        "stemmer": "english",
        "stopwords": "english",
    } | {"delta": 0.5}
    for name, digest in manifest["files"].items():  # checked with hashlib, not with embedlab's own helper
        assert hashlib.sha256((tmp_path / "bm25" / name).read_bytes()).hexdigest() == digest
    assert "ids.json" in manifest["files"] and len(manifest["files"]) >= 5
    loaded = BM25Index.load(tmp_path / "bm25")
    assert loaded.params() == index.params() and loaded.ids == index.ids
    for q in ("cat dog", "running cats", "sky", ""):
        (a_ids, a_s), (b_ids, b_s) = index.search(q, 4)[0], loaded.search(q, 4)[0]
        assert a_ids == b_ids
        np.testing.assert_array_equal(a_s, b_s)
    index.save(tmp_path / "bm25")  # saving over an index replaces it
    assert BM25Index.load(tmp_path / "bm25").ids == index.ids


def one_line_error(path):
    with pytest.raises(IndexStoreError) as exc:
        BM25Index.load(path)
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_tampered_missing_or_foreign_files_are_refused_in_one_line(tmp_path):
    toy().save(tmp_path / "i")
    d = tmp_path / "i"
    data = d / "data.csc.index.npy"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF  # one flipped byte of a score
    data.write_bytes(bytes(raw))
    assert "corrupt" in one_line_error(d) and "data.csc.index.npy" in one_line_error(d)

    toy().save(tmp_path / "j")
    (tmp_path / "j" / "ids.json").write_text('["d4", "d3", "d2", "d1"]')  # reordered ids: a tampered file
    assert "ids.json" in one_line_error(tmp_path / "j")

    toy().save(tmp_path / "k")
    (tmp_path / "k" / "vocab.index.json").unlink()
    assert "missing" in one_line_error(tmp_path / "k")

    toy().save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    manifest["params"]["stemmer"] = "english"  # the index was built unstemmed: a tampered manifest
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    assert "manifest corrupt" in one_line_error(tmp_path / "m")

    def resealed(m):  # a manifest edited and its own checksum recomputed (by hand, with hashlib)
        body = {k: v for k, v in m.items() if k != "manifest_sha256"}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        return json.dumps(m | {"manifest_sha256": digest})

    manifest["params"] |= {"stemmer": None, "k1": 0.9}  # the scores on disk were made with k1 1.5
    (tmp_path / "m" / "manifest.json").write_text(resealed(manifest))
    assert "inconsistent" in one_line_error(tmp_path / "m")

    manifest["params"]["k1"] = -1
    (tmp_path / "m" / "manifest.json").write_text(resealed(manifest))
    assert "corrupt" in one_line_error(tmp_path / "m")

    (tmp_path / "m" / "manifest.json").write_text("{not json")
    assert "not valid JSON" in one_line_error(tmp_path / "m")

    (tmp_path / "empty").mkdir()
    assert "not an embedlab BM25 index" in one_line_error(tmp_path / "empty")
    (tmp_path / "dense").mkdir()
    (tmp_path / "dense" / "manifest.json").write_text(json.dumps({"codec": "float32", "files": {}}))
    assert "dense index" in one_line_error(tmp_path / "dense")


# ---------------------------------------------------------------------------------------------
# evaluation: SciFact, and `embedlab eval -m bm25` on user task folders
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("options,measured", [({}, 0.6863), ({"stemmer": None}, 0.6617)])
def test_scifact_ndcg_at_10_equals_the_figure_measured_with_bm25s(tmp_path, options, measured):
    """0.6863 stemmed / 0.6617 unstemmed: bm25s on this machine (../shared/notes/methods-3.md, section 3);
    BEIR's published BM25 is 0.665 (Elasticsearch, multi-field; docs/sparse.md explains the gap)."""
    from embedlab.eval.registry import builtin_tasks
    from embedlab.eval.runner import run_retriever_task
    from embedlab.settings import data_dir

    if data_dir() is None or "SciFact" not in builtin_tasks():
        pytest.skip("no shared data directory")
    index = BM25Index(**options)
    task = builtin_tasks()["SciFact"]
    result = run_retriever_task(task, index.retrieve, tmp_path, retriever="bm25", description=index.describe())
    assert abs(result["main_score"] - measured) <= 0.001, result["main_score"]
    assert result["per_example"]["metric"] == "ndcg_at_10" and len(result["per_example"]["values"]) == 300
    assert np.isclose(np.mean(result["per_example"]["values"]), result["main_score"])
    assert (tmp_path / "SciFact.json").is_file()


def retrieval_dir(root, name="MyRetrieval"):
    """Three titled documents, two queries; the relevant document of q2 shares a word with it only in its title."""
    root.mkdir(parents=True)
    docs = [
        {"_id": "d1", "title": "Volcanoes", "text": "lava flows from an eruption"},
        {"_id": "d2", "title": "Glaciers", "text": "ice sheets move slowly"},
        {"_id": "d3", "title": "", "text": "deserts are dry and hot"},
    ]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": "q1", "text": "what comes out of an eruption"}, {"_id": "q2", "text": "glaciers"}]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    files = {"corpus": "corpus.jsonl", "queries": "queries.jsonl", "qrels": "qrels.tsv"}
    (root / "task.json").write_text(json.dumps({"name": name, "type": "retrieval", "files": files}))
    return root


def test_cli_eval_bm25_scores_a_retrieval_task_dir(tmp_path, monkeypatch, capsys):
    d = retrieval_dir(tmp_path / "task")
    code, out, err = run_cli(monkeypatch, capsys, "eval", "-m", "bm25", "--task-dir", d, "--out", tmp_path / "res")
    assert code == 0, err
    result = json.loads((tmp_path / "res" / "MyRetrieval.json").read_text())
    # both queries find their document first (q2 through the title, joined as BEIR does): nDCG@10 = 1
    assert result["main_metric"] == "ndcg_at_10" and result["main_score"] == 1.0
    assert result["per_example"] == {"kind": "mean", "metric": "ndcg_at_10", "ids": ["q1", "q2"], "values": [1.0, 1.0]}
    assert result["metadata"]["retriever"] == "bm25" and result["metadata"]["bm25"]["method"] == "lucene"
    assert "100.00" in out
    # parameters through --bm25
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "eval",
        "-m",
        "bm25",
        "--bm25",
        "k1=0.9",
        "--bm25",
        "b=0.4",
        "--bm25",
        "stemmer=none",
        "--task-dir",
        d,
        "--out",
        tmp_path / "res2",
    )
    assert code == 0, err
    assert json.loads((tmp_path / "res2" / "MyRetrieval.json").read_text())["metadata"]["bm25"] == {
        "method": "lucene",
        "k1": 0.9,
        "b": 0.4,
        "stemmer": None,
        "stopwords": "english",
    }


def test_cli_eval_bm25_refuses_a_classification_task_and_bad_parameters_in_one_line(tmp_path, monkeypatch, capsys):
    root = tmp_path / "cls"
    root.mkdir()
    rows = "text\tlabel\n" + "".join(f"doc {i}\t{i % 2}\n" for i in range(8))
    (root / "train.tsv").write_text(rows)
    (root / "test.tsv").write_text(rows)
    files = {"train": "train.tsv", "test": "test.tsv"}
    (root / "task.json").write_text(json.dumps({"name": "MyCls", "type": "classification", "files": files}))
    code, out, err = run_cli(monkeypatch, capsys, "eval", "-m", "bm25", "--task-dir", root, "--out", tmp_path / "r")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "BM25 has no vectors" in err and "MyCls (classification)" in err
    assert not (tmp_path / "r").exists()  # refused before anything is written
    d = retrieval_dir(tmp_path / "task")
    for args, message in (
        (("--bm25", "k1=0"), "k1"),
        (("--bm25", "b=2"), "b must be in"),
        (("--bm25", "method=bm26"), "method must be one of"),
        (("--bm25", "colour=red"), "unknown BM25 option"),
        (("--pooling", "mean"), "--pooling applies to embedding models"),
    ):
        code, _, err = run_cli(
            monkeypatch, capsys, "eval", "-m", "bm25", *args, "--task-dir", d, "--out", tmp_path / "r"
        )
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--bm25", "k1=1", "--task-dir", d, "--out", tmp_path / "r")
    assert code == 2 and "use it with -m bm25" in err
