"""Export of sparse shards (issue 24): Qdrant local mode (a named sparse vector; query_points against a
brute-force numpy dot product), LanceDB (list columns read back equal the shards), Milvus refused, and
dense exports unchanged by the sparse path."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.errors import ConfigError
from embedlab.index.corpus_embed import embed_corpus, read_corpora
from embedlab.index.export import SPARSE_VECTOR, export, point_id, target_metadata
from embedlab.index.shards import EmbeddingShards

from ..conftest import run_cli
from .test_shards import _write_corpus

ROWS = 60
K = 10
QUERIES = ["the red car", "a cat sat on the mat", "dog", "blue house by the sea", "the"]


@pytest.fixture(scope="module")
def semb(tiny_splade):
    from embedlab.models import Embedder

    return Embedder.from_pretrained(tiny_splade)


@pytest.fixture(scope="module")
def sparse_shards(tmp_path_factory, tiny_splade, semb):
    d = tmp_path_factory.mktemp("sx")
    corpus = _write_corpus(d / "corpus.jsonl")
    embed_corpus(str(tiny_splade), [corpus], d / "shards", shard_rows=ROWS, embedder=semb)
    return corpus, d / "shards"


@pytest.fixture(scope="module")
def docs(sparse_shards, semb):
    """The documents encoded directly, ROWS a call as the shards were (the reference, independent of the
    shards and the export): (ids, texts, (n, V) dense matrix)."""
    from embedlab.vectors import concat

    c = read_corpora([sparse_shards[0]])
    rows = concat([semb.encode(c.texts[lo : lo + ROWS], output="sparse") for lo in range(0, len(c), ROWS)])
    return c.ids, c.texts, rows.to_dense()


def test_qdrant_local_sparse_top_k_equals_brute_force(tmp_path, sparse_shards, semb, docs):
    from qdrant_client import QdrantClient, models

    ids, texts, matrix = docs
    result = export(sparse_shards[1], f"qdrant://{tmp_path}/q", collection="sp")
    assert result["rows"] == len(ids) and "sparse" in result["index"]
    queries = semb.encode(QUERIES, output="sparse")
    brute = queries.to_dense().astype(np.float64) @ matrix.astype(np.float64).T  # (q, n) dot products
    client = QdrantClient(path=f"{tmp_path}/q")
    ordered = 0  # queries whose top-k order is checked id by id
    try:
        info = client.get_collection("sp")
        assert SPARSE_VECTOR in (info.config.params.sparse_vectors or {})
        assert not info.config.params.vectors  # no dense vector in a sparse export
        for qi in range(len(queries)):
            idx, val = queries.row(qi)
            assert len(idx), "a query with no weights would test nothing"
            hits = client.query_points(
                "sp",
                query=models.SparseVector(indices=idx.tolist(), values=val.tolist()),
                using=SPARSE_VECTOR,
                limit=K,
                with_payload=True,
            ).points
            order = np.argsort(-brute[qi], kind="stable")[:K]
            ref_scores = brute[qi][order]
            got_scores = np.array([h.score for h in hits])
            assert len(hits) == K
            np.testing.assert_allclose(got_scores, ref_scores, atol=1e-5, rtol=0)
            got_ids = [h.payload["id"] for h in hits]
            for h in hits:  # each hit's score is its document's brute-force score; the point id convention
                j = ids.index(h.payload["id"])
                assert abs(h.score - brute[qi][j]) <= 1e-5
                assert h.id == point_id(ids[j]) and h.payload["text"] == texts[j]
            # the same top-k ids (ties within 1e-5 may swap places)
            separated = np.all(np.abs(np.diff(np.sort(brute[qi])[::-1][: K + 1])) > 1e-5)
            if separated:
                assert got_ids == [ids[j] for j in order]
                ordered += 1
            else:
                assert set(got_ids) <= {ids[j] for j in np.flatnonzero(brute[qi] >= ref_scores[-1] - 1e-5)}
    finally:
        client.close()
    assert ordered >= 3, ordered
    meta = target_metadata(f"qdrant://{tmp_path}/q", collection="sp")
    assert meta["kind"] == "sparse" and meta["vocab_size"] == semb.output_dim and meta["metric"] == "dot"
    assert meta["model"]["pooling"] == "splade"


def test_lancedb_sparse_rows_read_back_equal_the_shards(tmp_path, sparse_shards, semb):
    import lancedb

    result = export(sparse_shards[1], f"lancedb://{tmp_path}/l")
    assert result["rows"] == 230 and "no sparse vector index" in result["index"]
    table = lancedb.connect(f"{tmp_path}/l").open_table("embedlab").to_arrow()
    assert set(table.column_names) == {"id", "indices", "values", "text"}
    ids, rows, texts = EmbeddingShards(sparse_shards[1]).read_sparse()
    assert table.column("id").to_pylist() == ids and table.column("text").to_pylist() == texts
    got_idx, got_val = table.column("indices").to_pylist(), table.column("values").to_pylist()
    for i in range(len(rows)):
        ri, rv = rows.row(i)
        assert got_idx[i] == ri.tolist()
        np.testing.assert_array_equal(np.asarray(got_val[i], np.float32), rv)  # float32 both sides: exact
    meta = target_metadata(f"lancedb://{tmp_path}/l")
    assert meta["kind"] == "sparse" and meta["vocab_size"] == semb.output_dim


def test_milvus_refuses_sparse_sources_in_one_line(tmp_path, sparse_shards, monkeypatch, capsys):
    with pytest.raises(ConfigError, match="holds sparse shards: the Milvus Lite export takes dense vectors only"):
        export(sparse_shards[1], f"milvus://{tmp_path}/m.db")
    assert not (tmp_path / "m.db").exists()
    code, _, err = run_cli(monkeypatch, capsys, "export", sparse_shards[1], "--to", f"milvus://{tmp_path}/m.db")
    assert code != 0 and "Milvus Lite export takes dense vectors only" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_exports_sparse_shards_to_qdrant(tmp_path, sparse_shards, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "export", sparse_shards[1], "--to", f"qdrant://{tmp_path}/q")
    assert code == 0, err
    assert "exported 230 rows (shards)" in err and "sparse vector 'sparse'" in err


def test_dense_qdrant_export_is_unchanged(tmp_path, tiny_bert, sparse_shards):
    """A dense shard folder still exports one unnamed cosine vector per point (no sparse config)."""
    from qdrant_client import QdrantClient

    from embedlab.models import Embedder

    emb = Embedder.from_pretrained(tiny_bert)
    embed_corpus(str(tiny_bert), [sparse_shards[0]], tmp_path / "d", shard_rows=ROWS, embedder=emb)
    export(tmp_path / "d", f"qdrant://{tmp_path}/q")
    client = QdrantClient(path=f"{tmp_path}/q")
    try:
        params = client.get_collection("embedlab").config.params
        assert params.vectors.size == emb.output_dim and not params.sparse_vectors
    finally:
        client.close()
    meta = target_metadata(f"qdrant://{tmp_path}/q")
    assert meta["metric"] == "cosine" and "kind" not in meta
