"""`embedlab index build|add|delete|info` and `search` over BM25, sparse (SPLADE) and hybrid indexes, checked
against brute force and a hand-computed fusion; the one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedlab.index.lexical import BM25Index

from ..conftest import run_cli

DOCS = {
    "d1": "the cat sat on the mat",
    "d2": "a dog ran in the house",
    "d3": "the big red car",
    "d4": "why is the sky blue",
    "d5": "she read a book by the river",
    "d6": "the cat and the dog",
    "d7": "a small green tree",
    "d8": "the moon and the star",
}


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in DOCS.items()))
    return path


@pytest.fixture(scope="module")
def splade_dir(tiny_splade):
    return tiny_splade


def _search(monkeypatch, capsys, *args):
    code, out, err = run_cli(monkeypatch, capsys, "search", *args, "--json")
    assert code == 0, err
    decoder, rows, at = json.JSONDecoder(), [], 0
    while at < len(out.strip()):  # one JSON object per query, as rich prints them
        obj, end = decoder.raw_decode(out.strip(), at)
        rows.append(obj)
        at = end + len(out.strip()[end:]) - len(out.strip()[end:].lstrip())
    return rows


def _top(scores: dict[str, float], k: int) -> list[str]:
    return sorted(sorted(scores, reverse=True), key=lambda d: -scores[d])[:k]


def test_bm25_index_from_the_cli_equals_the_library(corpus, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(
        monkeypatch, capsys, "index", "build", "--codec", "bm25", "--corpus", corpus, "--out", tmp_path / "b"
    )
    assert code == 0 and "BM25" in err, err
    (hits,) = _search(monkeypatch, capsys, tmp_path / "b", "the cat and a dog", "-k", "3")
    ref_ids, ref_scores = BM25Index().build(list(DOCS), list(DOCS.values())).search(["the cat and a dog"], 3)[0]
    assert [h["id"] for h in hits["hits"]] == list(ref_ids)
    assert np.allclose([h["score"] for h in hits["hits"]], ref_scores, atol=1e-5)


def test_sparse_index_search_add_delete_and_info_equal_brute_force(splade_dir, corpus, tmp_path, monkeypatch, capsys):
    from embedlab.models import Embedder

    out = tmp_path / "s"
    code, _, err = run_cli(monkeypatch, capsys, "index", "build", "-m", splade_dir, "--corpus", corpus, "--out", out)
    assert code == 0 and "sparse" in err, err
    emb = Embedder.from_pretrained(splade_dir)
    d = emb.encode(list(DOCS.values()))
    query = "the cat on the mat"
    scores = dict(zip(DOCS, d @ emb.encode([query])[0]))  # the dot product, by brute force
    (hits,) = _search(monkeypatch, capsys, out, query, "-k", "4")
    assert [h["id"] for h in hits["hits"]] == _top(scores, 4)
    assert np.allclose([h["score"] for h in hits["hits"]], [scores[i] for i in _top(scores, 4)], atol=1e-4)
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": "d9", "text": "the cat on the mat again"}) + "\n")
    code, _, err = run_cli(monkeypatch, capsys, "index", "add", out, "--corpus", extra)
    assert code == 0 and "holds 9" in err, err
    (hits,) = _search(monkeypatch, capsys, out, query, "-k", "1")
    assert hits["hits"][0]["id"] == "d9"
    ids = tmp_path / "ids.txt"
    ids.write_text("d9\nd1\n")
    code, _, err = run_cli(monkeypatch, capsys, "index", "delete", out, "--ids", ids)
    assert code == 0 and "holds 7" in err, err
    (hits,) = _search(monkeypatch, capsys, out, query, "-k", "7")
    assert {h["id"] for h in hits["hits"]} <= set(DOCS) - {"d1"}
    code, info, _ = run_cli(monkeypatch, capsys, "index", "info", out)
    assert code == 0 and "sparse" in info and "p50_ms" in info and "mean_active_dims" in info


def test_hybrid_search_is_the_rrf_of_the_two_runs_by_hand(tiny_bert, corpus, tmp_path, monkeypatch, capsys):
    from embedlab.models import Embedder

    out = tmp_path / "h"
    code, _, err = run_cli(
        monkeypatch, capsys, "index", "build", "-m", tiny_bert, "--codec", "float32", "--hybrid", "bm25",
        "--corpus", corpus, "--out", out,
    )  # fmt: skip
    assert code == 0 and "hybrid" in err, err
    query = "the cat and the dog ran"
    emb = Embedder.from_pretrained(tiny_bert)
    dense = dict(zip(DOCS, emb.encode(list(DOCS.values())) @ emb.encode([query])[0]))
    lexical = dict(zip(*BM25Index().build(list(DOCS), list(DOCS.values())).search([query], 100)[0]))
    fused: dict[str, float] = {}
    for run in (dense, lexical):
        for rank, doc in enumerate(_top(run, 100), start=1):
            fused[doc] = fused.get(doc, 0.0) + 1 / (60 + rank)
    (hits,) = _search(monkeypatch, capsys, out, query, "-k", "5", "--fusion", "rrf")
    assert [h["id"] for h in hits["hits"]] == _top(fused, 5)
    assert np.allclose([h["score"] for h in hits["hits"]], [fused[i] for i in _top(fused, 5)], atol=1e-6)
    (convex,) = _search(monkeypatch, capsys, out, query, "-k", "3", "--fusion", "convex", "--fusion-weight", "0.7")
    assert len(convex["hits"]) == 3


def test_what_the_index_commands_refuse_in_one_line(splade_dir, tiny_bert, corpus, tmp_path, monkeypatch, capsys):
    run_cli(monkeypatch, capsys, "index", "build", "--codec", "bm25", "--corpus", corpus, "--out", tmp_path / "b")
    run_cli(monkeypatch, capsys, "index", "build", "-m", splade_dir, "--corpus", corpus, "--out", tmp_path / "s")
    cases = [
        (("search", tmp_path / "s", "cat", "--fusion", "rrf"), "needs a hybrid index"),
        (("search", tmp_path / "b", "cat", "--fusion", "nope"), "--fusion must be one of rrf, convex"),
        (("search", tmp_path / "b", " "), "a query is empty"),
        (("index", "add", tmp_path / "b", "--corpus", corpus), "cannot add documents in place"),
        (("index", "build", "--codec", "bm25", "-m", tiny_bert, "--corpus", corpus, "--out", tmp_path / "x"), "indexes the texts alone"),
        (("index", "build", "-m", splade_dir, "--codec", "int8", "--corpus", corpus, "--out", tmp_path / "y"), "gives sparse vectors"),
        (("index", "build", "-m", tiny_bert, "--codec", "sparse", "--corpus", corpus, "--out", tmp_path / "z"), "needs a sparse model"),
        (("index", "build", "-m", tiny_bert, "--hybrid", tiny_bert, "--corpus", corpus, "--out", tmp_path / "w"), "a dense model"),
        (("index", "build", "-m", tiny_bert, "--fusion", "rrf", "--corpus", corpus, "--out", tmp_path / "v"), "give --hybrid"),
    ]  # fmt: skip
    for args, message in cases:
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, code, err)
