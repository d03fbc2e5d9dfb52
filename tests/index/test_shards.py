"""Embedding shards (local backend): vectors against direct encoding, manifest, --resume, corruption,
a changed model or corpus, duplicate ids, a failed write, shards -> index, and the CLI."""

from __future__ import annotations

import errno
import gzip
import json

import numpy as np
import pytest

from embedlab.errors import ConfigError, InputError
from embedlab.index.corpus_embed import embed_corpus, read_corpora
from embedlab.index.shards import (
    EmbeddingShards,
    ShardError,
    build_index_from_shards,
    decode_vectors,
    encode_vectors,
    read_manifest,
)
from embedlab.io import file_sha256

from ..conftest import WORDS, run_cli

N = 230
ROWS = 60  # -> 4 shards (60, 60, 60, 50)


def _write_corpus(path, n=N, start=0, beir=False, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(start, start + n):
        text = " ".join(rng.choice(WORDS, int(rng.integers(1, 25))))
        if beir:
            lines.append({"_id": f"d{i}", "title": "the red car" if i % 3 == 0 else "", "text": text, "metadata": {}})
        else:
            lines.append({"id": f"d{i}", "text": text})
    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.fixture(scope="module")
def emb(tiny_bert):
    from embedlab.models import Embedder

    return Embedder.from_pretrained(tiny_bert)


@pytest.fixture()
def corpus(tmp_path):
    return _write_corpus(tmp_path / "corpus.jsonl")


def _counting(monkeypatch, emb):
    calls = []
    real = type(emb).encode

    def encode(self, texts, **kw):
        calls.append(len(texts))
        return real(self, texts, **kw)

    monkeypatch.setattr(type(emb), "encode", encode)
    return calls


def test_precisions_round_trip():
    """Every precision through embedlab.vectors: float32 exact, float16 half, int8 SQ8 codes with the one
    set of ranges, binary the sign bits."""
    from embedlab.vectors import calibrate_int8, dequantize, quantize

    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 16)).astype(np.float32)
    col = encode_vectors(x, "float32")
    np.testing.assert_array_equal(decode_vectors(col, "float32", 16), x)
    col = encode_vectors(x, "float16")
    np.testing.assert_allclose(decode_vectors(col, "float16", 16), x, rtol=1e-3, atol=1e-3)
    ranges = calibrate_int8(x[:4])  # calibrated on part of the data: the rest may clip
    col = encode_vectors(x, "int8", ranges)
    codes = col.flatten().to_numpy().reshape(7, 16)
    np.testing.assert_array_equal(codes, quantize(x, "int8", ranges))
    np.testing.assert_array_equal(decode_vectors(col, "int8", 16, ranges), dequantize(codes, "int8", ranges))
    inside = (x >= ranges.lo) & (x <= ranges.hi)
    err = np.abs(decode_vectors(col, "int8", 16, ranges) - x)
    assert (err[inside] <= np.broadcast_to(ranges.diff / 255, x.shape)[inside] + 1e-6).all()
    with pytest.raises(ShardError, match="ranges"):
        encode_vectors(x, "int8")
    with pytest.raises(ShardError, match="ranges"):
        decode_vectors(col, "int8", 16)
    with pytest.raises(ShardError, match="read only"):
        encode_vectors(x, "int8-absmax")
    col = encode_vectors(x, "binary")
    back = decode_vectors(col, "binary", 16)
    np.testing.assert_array_equal(back > 0, x > 0)
    np.testing.assert_allclose(np.linalg.norm(back, axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ShardError, match="divisible by 8"):
        encode_vectors(x[:, :12], "binary")


def test_int8_one_set_of_ranges_in_the_manifest_and_on_resume(tmp_path, tiny_bert, emb, corpus):
    from embedlab.index.shards import CALIBRATION_ROWS
    from embedlab.vectors import Int8Ranges, calibrate_int8, dequantize, quantize

    out = tmp_path / "s"
    manifest = embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb, precision="int8")
    texts = read_corpora([corpus]).texts
    ranges = Int8Ranges.from_dict(manifest["int8_ranges"])
    rows = min(N, CALIBRATION_ROWS)
    assert manifest["int8_calibration"]["rows"] == rows and manifest["format"] == "embedlab-shards/2"
    np.testing.assert_allclose(ranges.lo, calibrate_int8(emb.encode(texts[:rows])).lo, atol=1e-5)
    assert not any("scale" in e for e in manifest["shards"])
    shards = EmbeddingShards(out)
    assert shards.precision == "int8" and shards.int8_ranges == ranges
    _, vecs, _ = shards.read_all()
    ref = emb.encode(texts)
    np.testing.assert_allclose(
        vecs, dequantize(quantize(ref, "int8", ranges), "int8", ranges), atol=2 * ranges.diff.max() / 255
    )
    # a resumed run re-encodes a lost shard with the manifest's ranges, not new ones
    (out / manifest["shards"][1]["name"]).unlink()
    again = embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb, precision="int8", resume=True)
    assert again["int8_ranges"] == manifest["int8_ranges"] and again["run"]["shards"] == 1
    np.testing.assert_array_equal(EmbeddingShards(out).read_all()[1][:ROWS], vecs[:ROWS])


def test_legacy_absmax_int8_shards_stay_readable(tmp_path, tiny_bert, emb, corpus):
    """A format /1 directory (int8 with one abs-max scale per shard) reads as the read-only int8-absmax;
    resuming it as int8 is refused; an index builds from it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embedlab.index.shards import write_manifest

    out = tmp_path / "old"
    manifest = embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb)  # float32, then rewrite
    ids, ref, texts = EmbeddingShards(out).read_all()
    for e in manifest["shards"]:  # what format /1 wrote: round(127 x / max|x|), the scale in the entry
        lo = e["index"] * ROWS
        x = ref[lo : lo + e["rows"]]
        scale = float(np.abs(x).max())
        q = np.clip(np.rint(x * (127.0 / scale)), -127, 127).astype(np.int8)
        col = pa.FixedSizeListArray.from_arrays(pa.array(q.ravel()), x.shape[1])
        pq.write_table(
            pa.table({"id": ids[lo : lo + e["rows"]], "vector": col, "text": texts[lo : lo + e["rows"]]}),
            out / e["name"],
        )
        e.update(sha256=file_sha256(out / e["name"]), scale=scale)
    manifest.update(format="embedlab-shards/1", precision="int8")
    write_manifest(out, manifest)
    assert read_manifest(out)["precision"] == "int8-absmax"
    shards = EmbeddingShards(out)
    assert shards.precision == "int8-absmax" and shards.int8_ranges is None
    _, vecs, _ = shards.read_all()
    assert np.abs(vecs - ref).max() <= max(e["scale"] for e in manifest["shards"]) / 254 + 1e-6
    with pytest.raises(ConfigError, match="precision was 'int8-absmax', now 'int8'"):
        embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb, precision="int8", resume=True)
    with pytest.raises(ShardError, match="read only"):
        embed_corpus(str(tiny_bert), [corpus], tmp_path / "new", embedder=emb, precision="int8-absmax")
    index = build_index_from_shards(out, "float32")
    assert index.ids == ids and index.model["shard_precision"] == "int8-absmax"


def test_int8_manifest_without_ranges_is_refused(tmp_path, tiny_bert, emb, corpus):
    from embedlab.index.shards import write_manifest

    out = tmp_path / "s"
    manifest = embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb, precision="int8")
    del manifest["int8_ranges"]
    write_manifest(out, manifest)
    with pytest.raises(ShardError, match="int8_ranges"):
        EmbeddingShards(out)


def test_local_shards_match_direct_encoding(tmp_path, tiny_bert, emb, corpus):
    out = tmp_path / "shards"
    manifest = embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb)
    ids, texts = read_corpora([corpus]).ids, read_corpora([corpus]).texts
    ref = emb.encode(texts)
    got_ids, vecs, got_texts = EmbeddingShards(out).read_all()
    assert got_ids == ids and got_texts == texts
    np.testing.assert_allclose(vecs, ref, atol=1e-5)
    assert manifest["complete"] and manifest["num_shards"] == 4
    assert [s["rows"] for s in manifest["shards"]] == [60, 60, 60, 50]
    assert [s["first_id"] for s in manifest["shards"]] == ["d0", "d60", "d120", "d180"]
    for s in manifest["shards"]:
        assert file_sha256(out / s["name"]) == s["sha256"]
    assert manifest["corpus"]["files"][0]["sha256"] == file_sha256(corpus)
    m = manifest["model"]
    assert m["fingerprint"] == emb.fingerprint() and m["dim"] == emb.output_dim and m["pooling"] == emb.head.name
    assert read_manifest(out) == manifest
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_beir_gz_parquet_and_several_files(tmp_path, tiny_bert, emb):
    import pyarrow as pa
    import pyarrow.parquet as pq

    a = _write_corpus(tmp_path / "a.jsonl.gz", n=40, beir=True)
    pq.write_table(
        pa.table(
            {"id": [f"p{i}" for i in range(5)], "text": ["the cat sat"] * 5, "title": ["a dog", None, "", "red", None]}
        ),
        tmp_path / "b.parquet",
    )
    c = read_corpora([a, tmp_path / "b.parquet"])
    assert c.ids[:2] == ["d0", "d1"] and c.ids[-1] == "p4" and len(c) == 45
    assert c.texts[0].startswith("the red car ") and c.texts[40] == "a dog the cat sat" and c.texts[41] == "the cat sat"
    out = tmp_path / "s"
    embed_corpus(str(tiny_bert), [a, tmp_path / "b.parquet"], out, shard_rows=20, embedder=emb, store_texts=False)
    ids, vecs, texts = EmbeddingShards(out).read_all()
    assert ids == c.ids and texts is None
    np.testing.assert_allclose(vecs, emb.encode(c.texts), atol=1e-5)


@pytest.mark.parametrize("precision", ["float16", "int8", "binary"])
def test_lower_precisions(tmp_path, tiny_bert, emb, corpus, precision):
    out = tmp_path / precision
    embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb, precision=precision)
    _, vecs, _ = EmbeddingShards(out).read_all()
    ref = emb.encode(read_corpora([corpus]).texts)
    cos = (vecs * ref).sum(1) / np.linalg.norm(vecs, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > {"float16": 0.9999, "int8": 0.99, "binary": 0.5}[precision]


def test_resume_skips_finished_and_redoes_corrupt_shards(tmp_path, tiny_bert, emb, corpus, monkeypatch):
    out = tmp_path / "s"
    embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb)
    ref_ids, ref_vecs, _ = EmbeddingShards(out).read_all()
    with pytest.raises(ConfigError, match="--resume"):
        embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb)
    calls = _counting(monkeypatch, emb)
    embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb, resume=True)
    assert calls == []  # every shard verified, none re-encoded
    shard = out / "shard-00002.parquet"
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(ShardError, match="shard corrupt: .*shard-00002.parquet"):
        EmbeddingShards(out).read_all()
    embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb, resume=True)
    assert calls == [60]  # only the corrupt shard
    ids, vecs, _ = EmbeddingShards(out).read_all()
    assert ids == ref_ids
    np.testing.assert_allclose(vecs, ref_vecs, atol=1e-6)


def test_resume_refuses_a_changed_model_or_corpus(tmp_path, tiny_bert, emb, corpus):
    from embedlab.models import Embedder

    out = tmp_path / "s"
    embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb)
    cls = Embedder.from_pretrained(tiny_bert, pooling="cls")
    with pytest.raises(ConfigError, match="the model changed \\(fingerprint"):
        embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=cls, resume=True)
    with pytest.raises(ConfigError, match="shard_rows was 60, now 50"):
        embed_corpus(str(tiny_bert), [corpus], out, shard_rows=50, embedder=emb, resume=True)
    _write_corpus(corpus, seed=5)
    with pytest.raises(ConfigError, match=f"corpus file {corpus} changed"):
        embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb, resume=True)
    other = _write_corpus(tmp_path / "other.jsonl")
    with pytest.raises(
        ConfigError, match="the corpus files changed \\(corpus.jsonl in the manifest, other.jsonl now\\)"
    ):
        embed_corpus(str(tiny_bert), [other], out, shard_rows=ROWS, embedder=emb, resume=True)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backend": "spark"}, "backend must be one of local, ray; got 'spark'"),
        ({"shard_rows": 0}, "--shard-rows must be a positive integer; got 0"),
        ({"actors": -1}, "--actors must be a positive integer; got -1"),
        ({"batch_rows": 0}, "batch_rows must be a positive integer; got 0"),
    ],
)
def test_job_arguments_are_checked_before_anything_loads(tmp_path, corpus, kwargs, message):
    with pytest.raises(ConfigError) as info:
        embed_corpus("no-such-model", [corpus], tmp_path / "s", **kwargs)
    assert str(info.value) == message
    assert not (tmp_path / "s").exists()


def test_duplicate_ids_name_the_first(tmp_path):
    a = _write_corpus(tmp_path / "a.jsonl", n=10)
    b = _write_corpus(tmp_path / "b.jsonl", n=10, start=7)
    with pytest.raises(InputError) as exc:
        read_corpora([a, b])
    msg = str(exc.value)
    assert "\n" not in msg and "'d7'" in msg and "document 1 of" in msg and "document 8 of" in msg
    c = tmp_path / "c.jsonl"
    c.write_text('{"id": "x", "text": "a"}\n{"id": "y", "text": "b"}\n{"id": "x", "text": "c"}\n')
    with pytest.raises(InputError, match="duplicate id 'x': document 3 of .* repeats document 1"):
        read_corpora([c])


def test_failed_write_keeps_the_last_good_shard(tmp_path, tiny_bert, emb, corpus, monkeypatch):
    """Disk full while writing shard 2: shards 0-1 stay listed and valid, nothing partial is left, --resume finishes."""
    import pyarrow.parquet as pq

    real = pq.write_table
    count = {"n": 0}

    def full(table, where, *a, **k):
        count["n"] += 1
        if count["n"] == 3:
            with open(where, "wb") as f:
                f.write(b"PAR1 partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, *a, **k)

    monkeypatch.setattr(pq, "write_table", full)
    out = tmp_path / "s"
    with pytest.raises(ShardError, match="cannot write shard 2 .*No space left on device; the 2 finished shard"):
        embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb)
    manifest = read_manifest(out)
    assert not manifest["complete"] and [s["name"] for s in manifest["shards"]] == [
        "shard-00000.parquet",
        "shard-00001.parquet",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-00000.parquet", "shard-00001.parquet"]
    for s in manifest["shards"]:
        assert file_sha256(out / s["name"]) == s["sha256"]
    with pytest.raises(ShardError, match="incomplete \\(120 of 230 rows\\)"):
        EmbeddingShards(out)
    monkeypatch.setattr(pq, "write_table", real)
    calls = _counting(monkeypatch, emb)
    embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb, resume=True)
    assert calls == [60, 50]
    ids, vecs, _ = EmbeddingShards(out).read_all()
    assert ids == read_corpora([corpus]).ids and len(set(ids)) == N


def test_index_from_shards_equals_index_from_encoding(tmp_path, tiny_bert, emb, corpus):
    from embedlab.index import VectorIndex
    from embedlab.models import Embedder

    out = tmp_path / "s"
    embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb)
    c = read_corpora([corpus])
    direct = VectorIndex.build(emb.encode(c.texts), c.ids, "float32", texts=c.texts)
    index = build_index_from_shards(out, "float32", load_model=lambda *a: emb)
    assert index.ids == c.ids and index.texts == c.texts
    assert index.model["fingerprint"] == emb.fingerprint() and index.model["name"] == str(tiny_bert)
    q = emb.encode(["the cat sat on the mat", "a big red car"])
    got, ref = index.search(q, 10)[0], direct.search(q, 10)[0]  # the same vectors up to batching's float noise
    assert [g[0] for g in got] == [r[0] for r in ref] and all(len(set(g) & set(r)) >= 9 for g, r in zip(got, ref))
    other = Embedder.from_pretrained(tiny_bert, pooling="cls")
    with pytest.raises(ShardError, match="fingerprint .*queries would not match"):
        build_index_from_shards(out, "float32", load_model=lambda *a: other)


def test_cli_embed_corpus_index_and_search(tmp_path, tiny_bert, corpus, monkeypatch, capsys):
    out, idx = tmp_path / "s", tmp_path / "idx"
    code, _, err = run_cli(
        monkeypatch, capsys, "embed-corpus", tiny_bert, "--corpus", corpus, "--out", out, "--shard-rows", 100
    )
    assert code == 0, err
    assert "embedded 230 of 230 documents into 3 shard(s)" in err
    code, _, err = run_cli(
        monkeypatch, capsys, "index", "build", "--from-embeddings", out, "--codec", "float32", "--out", idx
    )
    assert code == 0, err
    code, stdout, err = run_cli(monkeypatch, capsys, "search", idx, "the cat sat", "-k", 3)
    assert code == 0, err
    assert "d" in stdout
    code, _, err = run_cli(monkeypatch, capsys, "embed-corpus", tiny_bert, "--corpus", corpus, "--out", out)
    assert code == 2 and "--resume" in err and "Traceback" not in err  # a configuration error
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    code, _, err = run_cli(monkeypatch, capsys, "embed-corpus", tiny_bert, "--corpus", dup, "--out", tmp_path / "d")
    assert code == 1 and "duplicate id 'a'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(
        monkeypatch, capsys, "index", "build", "--from-embeddings", tmp_path / "nothing", "--out", idx
    )
    assert code == 1 and "no manifest.json" in err


def test_onnx_runtime_shards_equal_torch_shards(tmp_path, tiny_bert, emb, corpus, monkeypatch, capsys):
    texts = read_corpora([corpus]).texts
    ref = emb.encode(texts)
    manifest = embed_corpus(str(tiny_bert), [corpus], tmp_path / "s", shard_rows=ROWS, embedder=emb, runtime="onnx")
    assert manifest["runtime"] == "onnx" and manifest["dtype"] == "fp32"
    _, vecs, _ = EmbeddingShards(tmp_path / "s").read_all()
    np.testing.assert_allclose(vecs, ref, atol=1e-4)
    assert ((vecs * ref).sum(1)).min() >= 0.99999
    with pytest.raises(ConfigError, match="unknown runtime 'tpu'"):
        embed_corpus(str(tiny_bert), [corpus], tmp_path / "t", embedder=emb, runtime="tpu")
    with pytest.raises(ConfigError, match="fp32 or int8"):
        embed_corpus(str(tiny_bert), [corpus], tmp_path / "u", embedder=emb, runtime="onnx", dtype="bf16")
    code, _, err = run_cli(
        monkeypatch, capsys, "embed-corpus", tiny_bert, "--corpus", corpus, "--out", tmp_path / "c", "--runtime", "onnx"
    )
    assert code == 0, err
    assert read_manifest(tmp_path / "c")["runtime"] == "onnx"


def test_resume_refuses_another_runtime_and_records_it_per_shard(tmp_path, tiny_bert, emb, corpus):
    """Issue 22.12: shards made by torch must not be finished by ONNX Runtime (or the reverse)."""
    from embedlab.index.shards import write_manifest

    out = tmp_path / "s"
    manifest = embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb)
    assert {s["runtime"] for s in manifest["shards"]} == {"torch"} and {s["dtype"] for s in manifest["shards"]} == {
        "fp32"
    }
    manifest["shards"], manifest["complete"] = manifest["shards"][:2], False  # as if killed after two shards
    write_manifest(out, manifest)
    with pytest.raises(ConfigError, match="shard 0 was embedded with runtime torch .*this run uses runtime onnx"):
        embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb, resume=True, runtime="onnx")


def test_resume_reports_the_rows_it_embedded(tmp_path, tiny_bert, emb, corpus):
    """Issue 22.8: the run's count and rate are over the documents this run embedded, not the corpus."""
    from embedlab.index.corpus_embed import run_summary
    from embedlab.index.shards import write_manifest

    out = tmp_path / "s"
    manifest = embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb)
    assert manifest["run"]["rows"] == N and manifest["run"]["reused_shards"] == 0
    manifest["shards"], manifest["complete"] = manifest["shards"][:3], False  # only the last shard (50 rows) is left
    write_manifest(out, manifest)
    manifest = embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb, resume=True)
    assert (manifest["run"]["rows"], manifest["run"]["shards"], manifest["run"]["reused_shards"]) == (50, 1, 3)
    assert run_summary(manifest, out).startswith(
        f"embedded 50 of {N} documents into 1 shard(s); 3 finished shard(s) kept"
    )
    manifest = embed_corpus(str(tiny_bert), [corpus], out, shard_rows=ROWS, embedder=emb, resume=True)
    assert manifest["run"]["rows"] == 0 and manifest["run"]["texts_per_second"] is None
    assert run_summary(manifest, out).startswith("nothing to embed: all 4 shard(s)")
    assert len(manifest["runs"]) == 3
