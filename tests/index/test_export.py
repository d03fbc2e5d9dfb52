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
from embedlab.vectors import calibrate_int8

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
    assert meta["precision"] == "float32" and "int8" not in meta
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
    assert target_metadata(uri)["codec"] == "int8" and target_metadata(uri)["precision"] == "float32"
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


# -- issue 22: Milvus targets and limits, Lance's partitions and log, the precision record ------------
def _write_shards(d: Path, ids, vecs, texts, precision="float32", **extra) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    ranges = calibrate_int8(vecs) if precision == "int8" else None
    if ranges is not None:
        extra = {"int8_ranges": ranges.to_dict(), **extra}
    entries = [write_shard(d, 0, ids, vecs, texts, precision, ranges)]
    manifest = {
        "format": FORMAT,
        "model": MODEL,
        "precision": precision,
        "has_texts": texts is not None,
        "corpus": {"rows": len(ids), "files": []},
        "shards": entries,
        "complete": True,
        **extra,
    }
    write_manifest(d, manifest)
    return d


def test_a_milvus_server_target_is_refused_in_one_line(tmp_path, shards, monkeypatch, capsys):
    for uri in ("milvus://localhost:19530", f"milvus://{tmp_path}/no-suffix"):
        with pytest.raises(ConfigError, match="Milvus Lite files only: give milvus://FILE.db"):
            parse_target(uri)
        code, _, err = run_cli(monkeypatch, capsys, "export", shards, "--to", uri)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert (
        "Milvus server (gRPC) is not an export target"
        in run_cli(monkeypatch, capsys, "export", shards, "--to", "milvus://localhost:19530")[2]
    )
    assert not (tmp_path / "no-suffix").exists()


def test_milvus_export_logs_no_grpc_traceback(tmp_path, shards, monkeypatch, capsys, caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        code, _, err = run_cli(monkeypatch, capsys, "export", shards, "--to", f"milvus://{tmp_path}/m.db")
    assert code == 0 and "exported 700 rows" in err
    assert not [r for r in caplog.records if "Method not implemented" in r.getMessage() or r.exc_info], [
        r.getMessage() for r in caplog.records
    ]
    assert "Traceback" not in err and "NotImplementedError" not in err


def test_milvus_refuses_over_long_texts_and_ids_before_writing(tmp_path, monkeypatch, capsys):
    ids = [f"d{i}" for i in range(5)]
    long_text = "é" * 40_000  # 40,000 characters, 80,000 bytes: Milvus Lite would take it, a server would not
    texts = ["a", "b", "c", long_text, "e"]
    src = _write_shards(tmp_path / "long-text", ids, X[:5], texts)
    db = tmp_path / "m.db"
    with pytest.raises(
        ExportError, match=r"row 3 \(id 'd3'\): text is 80,000 bytes, over Milvus's VARCHAR limit of 65,535"
    ):
        export(src, f"milvus://{db}")
    assert not db.exists()  # checked before anything was written
    code, _, err = run_cli(monkeypatch, capsys, "export", src, "--to", f"milvus://{db}")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "--truncate-texts" in err, err
    # the explicit option: cut at a character boundary, and say so
    result = export(src, f"milvus://{db}", truncate_texts=True)
    assert result["rows"] == 5 and result["texts_cut"] == 1 and "1 text(s) cut at 65,535 bytes" in result["index"]
    from pymilvus import MilvusClient

    mc = MilvusClient(str(db))
    stored = mc.query("embedlab", filter='id == "d3"', output_fields=["text"])[0]["text"]
    mc.close()
    assert long_text.startswith(stored) and len(stored.encode()) == 65_534  # 2-byte characters: no half one
    with pytest.raises(ConfigError, match="Milvus Lite targets only"):
        export(src, f"lancedb://{tmp_path}/l", truncate_texts=True)
    # ids: up to Milvus's 65,535 bytes they work (they were refused over 1,024); over it, refused by row
    ok = _write_shards(tmp_path / "long-id", ["x" * 2000, "y"], X[:2], ["t0", "t1"])
    assert export(ok, f"milvus://{tmp_path}/ok.db")["rows"] == 2
    assert search_target(f"milvus://{tmp_path}/ok.db", X[:1], 1) == [["x" * 2000]]
    bad = _write_shards(tmp_path / "huge-id", ["y", "z" * 70_000], X[:2], None)
    with pytest.raises(ExportError, match=r"row 1: id 'z+'\.\.\. is 70,000 bytes, over Milvus's VARCHAR limit"):
        export(bad, f"milvus://{tmp_path}/bad.db", truncate_texts=True)  # an id is never cut
    assert not (tmp_path / "bad.db").exists()


def _cli_subprocess(*args, env_extra=None):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "LANCEDB_LOG"}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "embedlab.cli", *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def test_lancedb_prints_the_partitions_it_built_and_no_lance_warnings(tmp_path, shards):
    from embedlab.index.export import lance_partitions

    assert [lance_partitions(n) for n in (256, 511, 700, 5183, 20000)] == [1, 1, 2, 20, 78]  # Lance: rows // 256
    # Lance's own log (Rust, on fd 2) is quieted by default: one line, ours, naming the 2 partitions built
    proc = _cli_subprocess("export", shards, "--to", f"lancedb://{tmp_path}/a")
    assert proc.returncode == 0, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "IVF_PQ (cosine, 2 partitions" in lines[0], proc.stderr
    # with Lance's warnings on (the user's LANCEDB_LOG wins), Lance does not say it trained fewer than asked
    proc = _cli_subprocess("export", shards, "--to", f"lancedb://{tmp_path}/b", env_extra={"LANCEDB_LOG": "warn"})
    assert proc.returncode == 0 and "requested IVF partitions" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("template", TARGETS)
def test_metadata_records_the_precision_and_int8_record(tmp_path, template):
    src = _write_shards(tmp_path / "int8", IDS, X, TEXTS, "int8", int8_calibration={"rows": N})
    manifest = json.loads((src / "manifest.json").read_text())
    uri = template.format(d=tmp_path)
    export(src, uri)
    meta = target_metadata(uri)
    assert meta["precision"] == "int8" and meta["exported_as"] == "float32"
    # the per-dimension ranges the vectors were quantised with, as the manifest stores them
    lo, hi = X.min(axis=0), X.max(axis=0)
    np.testing.assert_allclose(meta["int8"]["int8_ranges"]["lo"], lo, rtol=1e-6)
    np.testing.assert_allclose(meta["int8"]["int8_ranges"]["hi"], hi, rtol=1e-6)
    assert meta["int8"]["int8_ranges"] == manifest["int8_ranges"] and meta["int8"]["int8_calibration"] == {"rows": N}
    assert "shards" not in meta["int8"]  # one set of ranges for the directory, no per-shard scale


def test_legacy_absmax_shards_export_their_scales(tmp_path):
    """A format /1 directory (int8 with one abs-max scale per shard, read only as int8-absmax) exports the
    vectors it decodes to and records each shard's scale."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embedlab.io import file_sha256

    d = tmp_path / "old"
    d.mkdir()
    scale = float(np.abs(X).max())
    codes = np.clip(np.rint(X * (127.0 / scale)), -127, 127).astype(np.int8)  # the /1 encoding, by hand
    table = pa.table(
        {
            "id": pa.array(IDS, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(codes.ravel()), D),
            "text": pa.array(TEXTS, pa.string()),
        }
    )
    pq.write_table(table, d / "shard-00000.parquet")
    entry = {"index": 0, "name": "shard-00000.parquet", "rows": N, "first_id": IDS[0], "scale": scale}
    entry["sha256"] = file_sha256(d / "shard-00000.parquet")
    manifest = {
        "format": "embedlab-shards/1",
        "model": MODEL,
        "precision": "int8",
        "has_texts": True,
        "corpus": {"rows": N, "files": []},
        "shards": [entry],
        "complete": True,
    }
    (d / "manifest.json").write_text(json.dumps(manifest))
    uri = f"qdrant://{tmp_path}/q"
    assert export(d, uri)["rows"] == N
    meta = target_metadata(uri)
    assert meta["precision"] == "int8-absmax" and meta["int8"]["shards"] == {"shard-00000.parquet": {"scale": scale}}
    decoded = codes.astype(np.float32) * (scale / 127.0)
    vn = decoded / np.linalg.norm(decoded, axis=1, keepdims=True)
    qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    ref = [[IDS[i] for i in row] for row in np.argsort(-(qn @ vn.T), axis=1, kind="stable")[:, :K]]
    assert recall(search_target(uri, Q, K), ref) == 1.0


@pytest.mark.parametrize("template", TARGETS[:2])
def test_int8_shards_round_trip_against_brute_force(tmp_path, template):
    """LanceDB and Qdrant local mode, real libraries: the exported DB's top-10 is brute force's over the
    vectors the shards decode to."""
    from embedlab.index.shards import EmbeddingShards

    src = _write_shards(tmp_path / "int8", IDS, X, TEXTS, "int8")
    ids, vecs, _ = EmbeddingShards(src).read_all(texts=False)
    uri = template.format(d=tmp_path)
    assert export(src, uri)["rows"] == N
    vn = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    ref = [[ids[i] for i in row] for row in np.argsort(-(qn @ vn.T), axis=1, kind="stable")[:, :K]]
    got = search_target(uri, Q, K)
    assert recall(got, ref) == 1.0 and [g[0] for g in got] == [r[0] for r in ref]
    assert target_metadata(uri)["precision"] == "int8"
