"""``runtime="onnx"``: the backbone exported to ONNX and run by ONNX Runtime gives torch's vectors; the
graph is cached on disk by fingerprint, reused, and rebuilt when corrupt; the CLI and the server take it."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from embedlab.errors import ConfigError  # noqa: E402
from embedlab.models import (
    Embedder,  # noqa: E402
    onnx_runtime,  # noqa: E402
)

from ..conftest import cosines  # noqa: E402

TEXTS = [
    "the cat sat on the mat",
    "a dog ran fast",
    "the sky is blue and the sun is big and the moon is small tonight",
    "we read the book and write code",
    "the moon",
    "",
    "why is the river blue",
    "find similar text for this query please",
]


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path_factory, monkeypatch):
    """One cache directory for the module (the tiny exports are made once), never the user's."""
    root = tmp_path_factory.getbasetemp() / "onnx-cache"
    monkeypatch.setenv("EMBEDLAB_CACHE", str(root))
    return root / "onnx"


def test_onnx_vectors_equal_torch_over_batches_of_other_shapes(tiny_bert):
    emb = Embedder.from_pretrained(str(tiny_bert), pooling="mean")
    want = emb.encode(TEXTS, max_batch_size=3)  # several batches, none of the export's shape (2 x 8)
    got = emb.encode(TEXTS, runtime="onnx", max_batch_size=3)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert cosines(got, want).min() >= 0.99999
    assert np.abs(got - want).max() < 1e-4
    copy = emb.onnx()
    assert copy is emb.onnx() and copy.runtime == "onnx" and emb.runtime == "torch"
    assert type(copy.source.model).__name__ == "OnnxModel" and not copy.source.model.int8
    # the BERT graph really is ORT's fused one: one Attention op per layer, embeddings + LayerNorm fused
    assert copy.source.model.fused.get("Attention") == 2 and copy.source.model.fused.get("EmbedLayerNormalization") == 1
    assert copy.fingerprint() == emb.fingerprint()  # the same model for index and cache checks
    np.testing.assert_array_equal(copy.encode(TEXTS, max_batch_size=3), got)
    # a single text of a length no batch had, through the session directly against the torch model
    ids = torch.tensor([[2, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 3]])
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        ref = emb.source.model(input_ids=ids, attention_mask=mask).last_hidden_state
    out = copy.source.model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(out, ref, atol=1e-4)


def test_cache_file_is_reused_and_a_corrupt_one_rebuilt(tiny_bert, onnx_cache, monkeypatch):
    emb = Embedder.from_pretrained(str(tiny_bert), pooling="mean")
    want = emb.encode(TEXTS, runtime="onnx")
    path = emb.onnx().source.model.path
    assert path.parent == onnx_cache and path.is_file() and path.with_suffix(".json").is_file()
    assert path.name.startswith(emb.fingerprint())

    exports = []
    real_export = onnx_runtime._export
    monkeypatch.setattr(onnx_runtime, "_export", lambda *a: (exports.append(1), real_export(*a)))
    again = Embedder.from_pretrained(str(tiny_bert), pooling="mean")  # a new object: no in-memory copy
    np.testing.assert_array_equal(again.encode(TEXTS, runtime="onnx"), want)
    assert exports == []  # loaded from the cache, not exported again

    path.write_bytes(b"not an onnx graph")  # unloadable
    third = Embedder.from_pretrained(str(tiny_bert), pooling="mean")
    np.testing.assert_allclose(third.encode(TEXTS, runtime="onnx"), want, atol=1e-6)
    assert exports == [1]

    data = bytearray(path.read_bytes())  # loadable size, but not the bytes written: the digest catches it
    data[-20:] = b"\x00" * 20
    path.write_bytes(bytes(data))
    fourth = Embedder.from_pretrained(str(tiny_bert), pooling="mean")
    np.testing.assert_allclose(fourth.encode(TEXTS, runtime="onnx"), want, atol=1e-6)
    assert exports == [1, 1]

    import json

    from embedlab.io import file_sha256

    path.write_bytes(b"\x08\x07garbage")  # the digest matches (a file written so), but ONNX Runtime cannot load it
    side = path.with_suffix(".json")
    side.write_text(json.dumps({**json.loads(side.read_text()), "sha256": file_sha256(path)}))
    fifth = Embedder.from_pretrained(str(tiny_bert), pooling="mean")
    np.testing.assert_allclose(fifth.encode(TEXTS, runtime="onnx"), want, atol=1e-6)
    assert exports == [1, 1, 1]


def test_a_weight_change_gives_a_new_graph(tiny_bert):
    emb = Embedder.from_pretrained(str(tiny_bert), pooling="mean")
    first = emb.onnx()
    with torch.no_grad():
        emb.source.model.encoder.layer[0].intermediate.dense.weight.mul_(0.5)
    second = emb.onnx()
    assert second is not first and second.source.model.path != first.source.model.path
    assert cosines(emb.encode(TEXTS, runtime="onnx"), emb.encode(TEXTS)).min() >= 0.99999


def test_int8_on_onnx_runtime(tiny_bert):
    emb = Embedder.from_pretrained(str(tiny_bert), pooling="mean")
    fp32 = emb.encode(TEXTS)
    q = emb.encode(TEXTS, runtime="onnx", dtype="int8")
    copy = emb.onnx(int8=True)
    assert copy.source.model.int8 and copy.source.model.path.name.endswith("-int8.onnx")
    assert cosines(q, fp32).min() > 0.99 and not np.allclose(q, fp32, atol=1e-6)  # close, and really quantised


def test_decoder_exports_unfused_and_matches_torch(tiny_llama):
    for side in ("right", "left"):
        emb = Embedder.from_pretrained(str(tiny_llama), padding_side=side)  # last-token pooling, EOS appended
        want = emb.encode(TEXTS[:5], max_batch_size=3)
        got = emb.encode(TEXTS[:5], runtime="onnx", max_batch_size=3)
        assert emb.onnx().source.model.fused == {}
        assert cosines(got, want).min() >= 0.99999, side


def test_one_line_errors(tiny_bert, monkeypatch):
    emb = Embedder.from_pretrained(str(tiny_bert), pooling="mean")
    with pytest.raises(ConfigError, match="unknown runtime 'tensorrt'"):
        emb.encode(TEXTS, runtime="tensorrt")
    with pytest.raises(ConfigError, match="runtime 'onnx' runs fp32 or int8; got dtype 'bf16'"):
        emb.encode(TEXTS, runtime="onnx", dtype="bf16")
    with pytest.raises(ConfigError, match="use the original for runtime 'torch'"):
        emb.onnx().encode(TEXTS, runtime="torch")
    multi = Embedder.from_pretrained(str(tiny_bert), pooling="multi_layer")
    with pytest.raises(ConfigError, match="the multi_layer head needs every layer's hidden states"):
        multi.encode(TEXTS, runtime="onnx")

    fake = type("E", (), {"source": object(), "device": torch.device("cpu"), "chain": []})()
    with pytest.raises(ConfigError, match="needs a transformer backbone; this model's source is object"):
        onnx_runtime.check_exportable(fake)

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    fresh = Embedder.from_pretrained(str(tiny_bert), pooling="cls")
    with pytest.raises(ConfigError, match=r"pip install 'embedlab\[onnx\]'") as info:
        fresh.encode(TEXTS, runtime="onnx")
    assert "\n" not in str(info.value)


def test_cli_encode_and_server_with_runtime_onnx(tiny_bert, tmp_path, monkeypatch, capsys):
    import httpx

    from embedlab.serve import BackgroundServer, Engine, create_app
    from tests.conftest import run_cli

    src = tmp_path / "in.txt"
    src.write_text("\n".join(t for t in TEXTS if t) + "\n")
    texts = [t for t in TEXTS if t]
    code, _, err = run_cli(
        monkeypatch, capsys, "encode", "-m", tiny_bert, "-i", src, "-o", tmp_path / "v.npy", "--runtime", "onnx"
    )
    assert code == 0, err
    emb = Embedder.from_pretrained(str(tiny_bert))
    want = emb.encode(texts)
    assert cosines(np.load(tmp_path / "v.npy"), want).min() >= 0.99999

    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "encode",
        "-m",
        tiny_bert,
        "-i",
        src,
        "-o",
        tmp_path / "w.npy",
        "--runtime",
        "onnx",
        "--dtype",
        "bf16",
    )
    assert code == 2 and "runtime 'onnx' runs fp32 or int8" in err and "Traceback" not in err

    engine = Engine(emb, dtype="auto", runtime="onnx")  # auto is fp32 on ONNX Runtime
    assert engine.runtime == "onnx" and engine.dtype == "fp32" and engine.embedder.runtime == "onnx"
    with BackgroundServer(create_app(engine, model_name="tiny")) as srv:
        got = np.array(
            [d["embedding"] for d in httpx.post(srv.url + "/v1/embeddings", json={"input": texts}).json()["data"]]
        )
    assert cosines(got, want).min() >= 0.99999
    assert np.abs(got - want).max() < 1e-4


def test_graph_key_is_the_source_weights_fingerprint_and_precision(tiny_bert, tmp_path, monkeypatch):
    import shutil

    emb = Embedder.from_pretrained(str(tiny_bert), pooling="mean")
    fp32, int8 = onnx_runtime.cache_path(emb), onnx_runtime.cache_path(emb, int8=True)
    assert fp32 != int8 and fp32.name.startswith(emb.fingerprint()) and int8.name.startswith(emb.fingerprint())
    ort = onnx_runtime.require_onnxruntime()
    assert fp32.name != f"{emb.fingerprint()}-ort{ort.__version__}.onnx"  # the old layout is never read
    emb.encode(TEXTS, runtime="onnx")

    exports = []
    real_export = onnx_runtime._export
    monkeypatch.setattr(onnx_runtime, "_export", lambda *a: (exports.append(1), real_export(*a)))
    moved = Embedder.from_pretrained(str(shutil.copytree(tiny_bert, tmp_path / "elsewhere")), pooling="mean")
    assert onnx_runtime.cache_path(moved) == fp32  # the same weights from another path: the same graph
    moved.encode(TEXTS, runtime="onnx")
    assert exports == []

    changed = Embedder.from_pretrained(str(tiny_bert), pooling="mean")
    with torch.no_grad():
        changed.source.model.encoder.layer[1].output.dense.weight[0, 0] += 1e-3  # one weight
    assert onnx_runtime.cache_path(changed) != fp32
    assert changed.quantized_int8() is not emb.quantized_int8()
