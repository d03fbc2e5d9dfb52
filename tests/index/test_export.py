"""Export to LanceDB, Qdrant local mode and Milvus Lite: rows, ids, texts, model metadata, top-10 against
brute force; bad targets; and (slow) the SciFact parity test against embedlab's exact float search."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedlab.errors import ConfigError
from embedlab.index import VectorIndex
from embedlab.index.export import ExportError, export, parse_target, search_target, target_metadata
from embedlab.index.shards import FORMAT, write_manifest, write_shard

from ..conftest import run_cli

rng = np.random.default_rng(0)
N, D, K = 700, 32, 10
CENTERS = rng.normal(size=(40, D))
X = (CENTERS[rng.integers(0, 40, N)] + 0.3 * rng.normal(size=(N, D))).astype(np.float32)
Q = (CENTERS[rng.integers(0, 40, 12)] + 0.3 * rng.normal(size=(12, D))).astype(np.float32)
IDS = [f"doc-{i}" for i in range(N)]
TEXTS = [f"text of document {i} ✓" for i in range(N)]
MODEL = {"name": "tiny", "fingerprint": "0123456789abcdef", "pooling": "mean", "attention": "bidirectional", "dim": D}


def brute_force(q, k=K):
    xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    return [[IDS[i] for i in row] for row in np.argsort(-(qn @ xn.T), axis=1, kind="stable")[:, :k]]


def recall(got, ref):
    return float(np.mean([len(set(g) & set(r)) / len(r) for g, r in zip(got, ref)]))


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("shards")
    entries = [
        write_shard(d, k, IDS[lo : lo + 300], X[lo : lo + 300], TEXTS[lo : lo + 300], "float32")
        for k, lo in enumerate(range(0, N, 300))
    ]
    write_manifest(
        d,
        {
            "format": FORMAT,
            "model": MODEL,
            "precision": "float32",
            "has_texts": True,
            "corpus": {"rows": N, "files": []},
            "shards": entries,
            "complete": True,
        },
    )
    return d


TARGETS = ["lancedb://{d}/lance", "qdrant://{d}/qdrant", "milvus://{d}/milvus.db"]


@pytest.mark.parametrize("template", TARGETS)
def test_export_shards_exact_top10(tmp_path, shards, template):
    uri = template.format(d=tmp_path)
    result = export(shards, uri)
    assert result["rows"] == N and result["source"] == "shards"
    meta = target_metadata(uri)
    assert meta["model"] == MODEL and meta["dim"] == D and meta["metric"] == "cosine"
    ref = brute_force(Q)
    got = search_target(uri, Q, K)
    assert recall(got, ref) == 1.0
    assert [g[0] for g in got] == [r[0] for r in ref]
    with pytest.raises(ExportError, match="--overwrite"):
        export(shards, uri)
    assert export(shards, uri, overwrite=True)["rows"] == N


def test_texts_and_ids_are_carried(tmp_path, shards):
    import lancedb
    from qdrant_client import QdrantClient

    export(shards, f"lancedb://{tmp_path}/l")
    t = lancedb.connect(f"{tmp_path}/l").open_table("embedlab").to_arrow()
    assert dict(zip(t.column("id").to_pylist(), t.column("text").to_pylist())) == dict(zip(IDS, TEXTS))
    export(shards, f"qdrant://{tmp_path}/q", collection="docs")
    client = QdrantClient(path=f"{tmp_path}/q")
    points, _ = client.scroll("docs", limit=N + 1, with_payload=True)
    assert {p.payload["id"]: p.payload["text"] for p in points} == dict(zip(IDS, TEXTS))
    client.close()
    from pymilvus import MilvusClient

    export(shards, f"{tmp_path}/m.db")
    mc = MilvusClient(str(tmp_path / "m.db"))
    rows = mc.query("embedlab", filter='id == "doc-5"', output_fields=["id", "text", "vector"])
    assert rows[0]["text"] == TEXTS[5]
    np.testing.assert_allclose(rows[0]["vector"], X[5], rtol=1e-6)
    mc.close()


def test_lancedb_ann_index_is_built(tmp_path, shards):
    uri = f"lancedb://{tmp_path}/lance"
    result = export(shards, uri)
    assert result["index"].startswith("IVF_PQ")
    import lancedb

    assert lancedb.connect(f"{tmp_path}/lance").open_table("embedlab").list_indices()
    assert recall(search_target(uri, Q, K, exact=False, refine_factor=10), brute_force(Q)) >= 0.8


def test_export_an_index(tmp_path):
    idx = VectorIndex.build(X, IDS, "int8", texts=TEXTS, model=MODEL)
    idx.save(tmp_path / "idx")
    uri = f"qdrant://{tmp_path}/q"
    assert export(tmp_path / "idx", uri)["source"] == "index"
    assert target_metadata(uri)["model"] == MODEL
    assert recall(search_target(uri, Q, K), brute_force(Q)) == 1.0


def test_bad_targets(tmp_path, shards, monkeypatch, capsys):
    with pytest.raises(ConfigError, match="unknown export target 'pg://x'"):
        parse_target("pg://x")
    with pytest.raises(ExportError, match="cannot reach Qdrant at http://127.0.0.1:1"):
        export(shards, "http://127.0.0.1:1")
    with pytest.raises(ExportError, match="neither an embedding shard directory nor an embedlab index"):
        export(tmp_path, f"lancedb://{tmp_path}/l")
    code, _, err = run_cli(monkeypatch, capsys, "export", shards, "--to", "http://127.0.0.1:1")
    assert code == 1 and "cannot reach Qdrant at http://127.0.0.1:1" in err and "Traceback" not in err
    code, _, err = run_cli(monkeypatch, capsys, "export", shards, "--to", f"lancedb://{tmp_path}/cli")
    assert code == 0 and "exported 700 rows" in err and "IVF_PQ" in err


# -- SciFact parity (packaged model) ------------------------------------------------------------------
SCIFACT = Path(__file__).resolve().parents[3] / "shared" / "data" / "scifact"


@pytest.mark.slow
def test_scifact_parity(tmp_path):
    """Each target's top-10 against embedlab's exact float search (minilm-l6, SciFact corpus and test queries)."""
    if not (SCIFACT / "corpus.jsonl.gz").is_file():
        pytest.skip("SciFact not found in the shared data")
    from embedlab.index.corpus_embed import embed_corpus
    from embedlab.index.shards import build_index_from_shards
    from embedlab.models import Embedder

    emb = Embedder.from_pretrained("minilm-l6")
    out = tmp_path / "shards"
    embed_corpus("minilm-l6", [SCIFACT / "corpus.jsonl.gz"], out, shard_rows=2000, embedder=emb)
    index = build_index_from_shards(out, "float32")
    test_ids = {line.split("\t")[0] for line in (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    queries = [json.loads(x) for x in (SCIFACT / "queries.jsonl").read_text().splitlines()]
    qtexts = [q["text"] for q in queries if q["_id"] in test_ids]
    qv = emb.encode(qtexts)
    ref, _ = index.search(qv, K)
    figures = {}
    for template in TARGETS:
        uri = template.format(d=tmp_path)
        export(out, uri)
        figures[uri.split(":")[0]] = recall(search_target(uri, qv, K), ref)
    figures["lancedb-ann"] = recall(search_target(TARGETS[0].format(d=tmp_path), qv, K, exact=False), ref)
    print("scifact recall@10 vs exact float search:", figures)
    assert all(figures[k] >= 0.99 for k in ("lancedb", "qdrant", "milvus")), figures
    assert figures["lancedb-ann"] >= 0.5, figures  # the ANN figure is reported in docs/scale.md
