"""Retrieval with sparse models (exact dot-product index), ties at the top-k cut, and hybrid (fused) retrieval:
every score checked against a brute-force numpy ranking or a hand fusion computed here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedlab.eval.evaluators import rank_documents, retrieval_metrics
from embedlab.eval.registry import load_task_dir

DOCS = [
    ("d1", "Volcanoes", "lava flows from an eruption"),
    ("d2", "Glaciers", "ice sheets move slowly"),
    ("d3", "", "deserts are dry and hot"),
    ("d4", "Rivers", "water runs to the sea"),
    ("d5", "", "the moon circles the earth"),
    ("d6", "Forests", "trees grow tall in the rain"),
]
QUERIES = [
    ("q1", "what comes out of an eruption"),
    ("q2", "glaciers"),
    ("q3", "where does river water go"),
    ("q4", "tall trees"),
]
QRELS = [("q1", "d1", 1), ("q2", "d2", 1), ("q3", "d4", 2), ("q3", "d2", 1), ("q4", "d6", 1)]


def retrieval_task(root, name="ToyRetrieval"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in DOCS)
    )
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in QUERIES))
    (root / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in QRELS))
    files = {"corpus": "corpus.jsonl", "queries": "queries.jsonl", "qrels": "qrels.tsv"}
    (root / "task.json").write_text(json.dumps({"name": name, "type": "retrieval", "files": files}))
    return root


def doc_texts():
    return [f"{t} {x}".strip() if t else x for _, t, x in DOCS]  # BEIR's title join (read_documents)


def qrels():
    out: dict[str, dict[str, int]] = {}
    for q, d, s in QRELS:
        out.setdefault(q, {})[d] = s
    return out


def ndcg10(rankings: dict[str, list[str]]) -> float:
    rel = qrels()
    return float(np.mean([retrieval_metrics(rankings[q], rel[q])["ndcg_at_10"] for q, _ in QUERIES]))


def _by_hand_rank(scores: dict[str, float]) -> list[str]:
    """Doc ids by score descending, ties by id descending."""
    return sorted(sorted(scores, reverse=True), key=lambda d: -scores[d])


def brute_force_ranking(scores: np.ndarray, ids: list[str]) -> list[str]:
    """Every document by score descending, ties by id descending (pytrec_eval's order), by plain sorting."""
    by_id = sorted(range(len(ids)), key=lambda i: ids[i], reverse=True)
    return [ids[i] for i in sorted(by_id, key=lambda i: -scores[i])]  # stable: ties keep the id order


# ---------------------------------------------------------------------------------------------
# rank_documents: ties at the cut
# ---------------------------------------------------------------------------------------------
def test_rank_documents_breaks_ties_at_the_cut_by_id_descending():
    scores = np.array([1, 2, 2, 2, 2, 0.5])
    ids = list("abcdef")
    full = rank_documents(scores, ids, len(ids))
    assert full == ["e", "d", "c", "b", "a", "f"]
    for k in range(1, len(ids) + 1):
        assert rank_documents(scores, ids, k) == full[:k], k  # argpartition picked c, b for k=2 before the fix
    assert rank_documents(scores, ids, 0) == []


def test_rank_documents_is_a_prefix_of_the_full_ranking_with_many_ties():
    rng = np.random.default_rng(0)
    ids = [f"doc{i:03d}" for i in range(300)]
    for _ in range(20):
        scores = rng.integers(0, 5, len(ids)).astype(np.float64)  # heavy ties
        scores[rng.integers(len(ids))] = -np.inf  # an identical id dropped by the dense path
        full = brute_force_ranking(scores, ids)
        for k in (1, 7, 60, 299):
            assert rank_documents(scores, ids, k) == full[:k]


# ---------------------------------------------------------------------------------------------
# sparse models
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def splade(tiny_splade):
    from embedlab.models import Embedder

    return Embedder.from_pretrained(tiny_splade)


def sparse_run(emb) -> dict[str, dict[str, float]]:
    """Brute force: per query, the dot product with every document sharing an active dimension with it."""
    d = emb.encode(doc_texts()).astype(np.float64)
    q = emb.encode([t for _, t in QUERIES]).astype(np.float64)
    dots = q @ d.T
    shared = (q != 0).astype(np.float64) @ (d != 0).astype(np.float64).T > 0
    ids = [i for i, _, _ in DOCS]
    return {
        qid: {ids[j]: float(dots[i, j]) for j in range(len(ids)) if shared[i, j]} for i, (qid, _) in enumerate(QUERIES)
    }


def test_sparse_retrieval_scores_equal_a_brute_force_dot_product_ranking(splade, tmp_path):
    from embedlab.eval.runner import EmbeddingCache, run_task

    task = load_task_dir(retrieval_task(tmp_path / "task"))
    assert splade.output_kind == "sparse" and splade.head.similarity == "dot"
    run = sparse_run(splade)  # from the (n, V) dense weights
    assert all(run.values())
    rankings = {qid: _by_hand_rank(run[qid]) for qid, _ in QUERIES}
    assert len({tuple(r) for r in rankings.values()}) > 1
    want = ndcg10(rankings)
    cache = EmbeddingCache(tmp_path / "cache")
    result = run_task(task, splade, tmp_path / "res", cache=cache)
    assert result["main_score"] == pytest.approx(want, abs=1e-12)
    assert result["per_example"]["values"] == pytest.approx(
        [retrieval_metrics(rankings[qid], qrels()[qid])["ndcg_at_10"] for qid, _ in QUERIES], abs=1e-12
    )
    assert result["metadata"]["retrieval"] == "sparse" and result["metadata"]["similarity"] == "dot"
    # the cache keeps sparse weights as their own kind, and a rerun reads them back (nothing encoded)
    stored = sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert stored and all(n.endswith(".sparse.npz") for n in stored)
    again = run_task(task, splade, tmp_path / "res2", cache=cache)
    assert again["metadata"]["texts_encoded"] == 0 and again["main_score"] == result["main_score"]


def test_exact_sparse_hits_equal_the_sparse_index_with_planted_ties():
    """eval's exact search (the evaluation layer may not import embedlab.index) returns exactly what
    SparseIndex.search returns: the same hits, scores bit for bit, ties at the cut by id descending."""
    from embedlab.eval.evaluators import exact_sparse_hits
    from embedlab.index.sparse import SparseIndex
    from embedlab.vectors import SparseEmbeddings

    rng = np.random.default_rng(3)

    def draw(n, vocab=40, active=4):
        rows = []
        for _ in range(n):
            idx = np.sort(rng.choice(vocab, size=rng.integers(0, active + 1), replace=False))
            rows.append((idx, rng.choice([0.5, 1.0, 2.0, -1.0], size=len(idx)).astype(np.float32)))
        return SparseEmbeddings.from_rows(rows, vocab)

    docs, queries = draw(200), draw(60)  # few distinct weights: many tied scores, some cancelling to 0
    ids = [f"d{i:03d}" for i in rng.permutation(200)]
    index = SparseIndex.build(ids, docs)
    for k in (1, 5, 17, 300):
        ours = exact_sparse_hits(docs, queries, ids, k)
        theirs = index.search(queries, k)
        assert [h[0] for h in ours] == [h[0] for h in theirs], k
        assert all(a[1] == b[1].tolist() for a, b in zip(ours, theirs)), k
    assert any(not h[0] for h in exact_sparse_hits(docs, queries, ids, 5))  # an empty query: no hits


def test_sparse_model_on_other_task_types_uses_the_dense_weights(splade, tmp_path):
    from embedlab.eval.runner import EmbeddingCache, run_task

    root = tmp_path / "sts"
    root.mkdir()
    rows = ["sentence1\tsentence2\tscore"] + [
        f"{a}\t{b}\t{s}"
        for a, b, s in (
            ("a cat sat", "a cat sat", 5),
            ("a dog ran", "the sky", 0),
            ("red car", "a red car", 4),
            ("sun", "moon", 1),
        )
    ]
    (root / "test.tsv").write_text("\n".join(rows) + "\n")
    (root / "task.json").write_text(json.dumps({"name": "ToySTS", "type": "sts", "files": {"test": "test.tsv"}}))
    cache = EmbeddingCache(tmp_path / "cache")
    result = run_task(load_task_dir(root), splade, tmp_path / "res", cache=cache)
    a = splade.encode(["a cat sat", "a dog ran", "red car", "sun"]).astype(np.float64)
    b = splade.encode(["a cat sat", "the sky", "a red car", "moon"]).astype(np.float64)
    from scipy.stats import spearmanr

    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert result["main_score"] == pytest.approx(spearmanr([5, 0, 4, 1], cos).statistic, abs=1e-6)
    assert "retrieval" not in result["metadata"]
    assert all(p.name.endswith(".npy") for p in (tmp_path / "cache").rglob("*") if p.is_file())


def test_sparse_cache_entries_never_mix_with_dense_ones(tmp_path):
    from embedlab.eval.runner import EmbeddingCache
    from embedlab.vectors import SparseEmbeddings

    cache = EmbeddingCache(tmp_path)
    dense, sparse = cache.path("fp", "", "fp32", ["x"]), cache.path("fp", "", "fp32", ["x"], "sparse")
    assert dense != sparse and dense.stem != sparse.name.split(".")[0]
    emb = SparseEmbeddings.from_rows([([1, 3], [0.5, 2.0])], vocab_size=5)
    cache.put(sparse, emb)
    got = cache.get(sparse, 1)
    assert isinstance(got, SparseEmbeddings) and (got.to_dense() == emb.to_dense()).all()
    assert cache.get(sparse, 2) is None and cache.get(dense, 1) is None
    sparse.write_bytes(b"not an npz")
    assert cache.get(sparse, 1) is None  # corrupt entry: re-encode


# ---------------------------------------------------------------------------------------------
# hybrid retrieval (`embedlab eval --hybrid`)
# ---------------------------------------------------------------------------------------------
def _cosine_run(emb, depth=100):
    d = emb.encode(doc_texts()).astype(np.float64)
    q = emb.encode([t for _, t in QUERIES]).astype(np.float64)
    cos = (q @ d.T) / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(d, axis=1))
    ids = [i for i, _, _ in DOCS]
    return {qid: {ids[j]: float(cos[i, j]) for j in range(len(ids))} for i, (qid, _) in enumerate(QUERIES)}


def test_hybrid_rrf_with_bm25_equals_a_hand_fusion(tiny_bert, tmp_path, monkeypatch, capsys):
    from embedlab.index.lexical import BM25Index
    from embedlab.models import Embedder
    from tests.conftest import run_cli

    d = retrieval_task(tmp_path / "task")
    code, out, err = run_cli(
        monkeypatch, capsys, "eval", "-m", tiny_bert, "--pooling", "mean", "--hybrid", "bm25",
        "--fusion", "rrf", "--task-dir", d, "--out", tmp_path / "res",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads((tmp_path / "res" / "ToyRetrieval.json").read_text())
    dense = _cosine_run(Embedder.from_pretrained(tiny_bert, pooling="mean"))
    index = BM25Index().build([i for i, _, _ in DOCS], doc_texts())
    lexical = {
        qid: dict(zip(ids, s.tolist()))
        for (qid, _), (ids, s) in zip(QUERIES, index.search([t for _, t in QUERIES], 100))
    }
    assert all(lexical[q] for q, _ in QUERIES)
    rankings = {}
    for qid, _ in QUERIES:
        fused: dict[str, float] = {}
        for run in (dense[qid], lexical[qid]):
            for rank, doc in enumerate(_by_hand_rank(run), start=1):
                fused[doc] = fused.get(doc, 0.0) + 1 / (60 + rank)
        rankings[qid] = _by_hand_rank(fused)
    assert result["main_score"] == pytest.approx(ndcg10(rankings), abs=1e-12)
    hybrid = result["metadata"]["hybrid"]
    assert result["metadata"]["retriever"] == "hybrid"
    assert hybrid["fusion"] == "rrf" and hybrid["fusion_params"] == {"k": 60} and hybrid["depth"] == 100
    assert [p["retriever"] for p in hybrid["parts"]] == ["dense", "bm25"]
    assert hybrid["parts"][0]["pooling"] == "mean" and hybrid["parts"][1]["bm25"]["method"] == "lucene"


def test_hybrid_convex_dense_plus_sparse_equals_a_hand_fusion(
    tiny_bert, tiny_splade, splade, tmp_path, monkeypatch, capsys
):
    from embedlab.models import Embedder
    from tests.conftest import run_cli

    d = retrieval_task(tmp_path / "task")
    code, out, err = run_cli(
        monkeypatch, capsys, "eval", "-m", tiny_bert, "--pooling", "mean", "--hybrid", tiny_splade,
        "--fusion", "convex", "--fusion-weight", "0.3",
        "--task-dir", d, "--out", tmp_path / "res",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads((tmp_path / "res" / "ToyRetrieval.json").read_text())
    dense = _cosine_run(Embedder.from_pretrained(tiny_bert, pooling="mean"))
    sparse = sparse_run(splade)

    def minmax(run):
        lo, hi = min(run.values()), max(run.values())
        return {k: (v - lo) / (hi - lo) if hi > lo else 0.0 for k, v in run.items()}

    rankings = {}
    for qid, _ in QUERIES:
        a, b = minmax(dense[qid]), minmax(sparse[qid]) if sparse[qid] else {}
        docs = set(a) | set(b)
        rankings[qid] = _by_hand_rank({doc: 0.3 * a.get(doc, 0.0) + 0.7 * b.get(doc, 0.0) for doc in docs})
    assert result["main_score"] == pytest.approx(ndcg10(rankings), abs=1e-12)
    hybrid = result["metadata"]["hybrid"]
    assert hybrid["fusion"] == "convex" and hybrid["fusion_params"] == {"weights": [0.3, 0.7], "norm": "min-max"}
    assert [(p["retriever"], p["similarity"], p["pooling"]) for p in hybrid["parts"]] == [
        ("dense", "cosine", "mean"),
        ("sparse", "dot", "splade"),
    ]


def test_hybrid_refusals_are_one_line_exit_2(tiny_bert, tmp_path, monkeypatch, capsys):
    from tests.conftest import run_cli

    d = retrieval_task(tmp_path / "task")
    sts = tmp_path / "sts"
    sts.mkdir()
    (sts / "t.tsv").write_text("sentence1\tsentence2\tscore\na\tb\t1\nc\td\t2\n")
    (sts / "task.json").write_text(json.dumps({"name": "ToySTS", "type": "sts", "files": {"test": "t.tsv"}}))
    m = ("-m", tiny_bert, "--pooling", "mean")
    for args, message in (
        ((*m, "--hybrid", "bm25", "--fusion", "max", "--task-dir", d), "unknown fusion 'max'"),
        ((*m, "--hybrid", "bm25", "--fusion", "convex", "--fusion-weight", "1", "--task-dir", d), "in (0, 1)"),
        ((*m, "--hybrid", "bm25", "--fusion", "convex", "--fusion-weight", "0", "--task-dir", d), "in (0, 1)"),
        ((*m, "--hybrid", "bm25", "--fusion", "convex", "--task-dir", d), "needs --fusion-weight"),
        ((*m, "--hybrid", "bm25", "--fusion-weight", "0.5", "--task-dir", d), "not rrf"),
        ((*m, "--fusion", "rrf", "--task-dir", d), "use it with --hybrid"),
        ((*m, "--fusion-weight", "0.5", "--task-dir", d), "use it with --hybrid"),
        ((*m, "--hybrid-pooling", "splade", "--task-dir", d), "use it with --hybrid"),
        ((*m, "--hybrid", "bm25", "--hybrid-pooling", "splade", "--task-dir", d), "not to bm25"),
        ((*m, "--hybrid", "bm25", "--task-dir", sts), "ToySTS (sts)"),
        (("-m", "bm25", "--hybrid", "bm25", "--task-dir", d), "fuses BM25 with itself"),
    ):
        code, _, err = run_cli(monkeypatch, capsys, "eval", *args, "--out", tmp_path / "r")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
        assert not (tmp_path / "r").exists()  # refused before anything is written
