"""int8 inference (``dtype="int8"``): the backbone's linear layers dynamically quantised, the rest of
the chain unchanged; through encode, the CLI and the server."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embedlab.errors import ConfigError
from embedlab.models import Embedder
from embedlab.models.quantize import count_quantized, quantize_int8

from ..conftest import cosines

TEXTS = ["the cat sat on the mat", "a dog ran fast", "the sky is blue", "we read the book and write code", "the moon"]


def test_int8_encode_is_the_quantised_copy_close_to_fp32_and_leaves_the_model_alone(tiny_bert):
    emb = Embedder.from_pretrained(str(tiny_bert), pooling="mean")
    before = {k: v.clone() for k, v in emb.state_dict().items()}
    fp32 = emb.encode(TEXTS)
    int8 = emb.encode(TEXTS, dtype="int8")
    quantized = emb.quantized_int8()
    assert quantized is emb.quantized_int8()  # made once per weights
    # every nn.Linear of the tiny BERT: 2 layers x (q, k, v, attention output, intermediate, output) + the pooler
    assert count_quantized(quantized.source.model) == 2 * 6 + 1
    assert count_quantized(emb.source.model) == 0
    np.testing.assert_array_equal(int8, quantized.encode(TEXTS))
    assert int8.dtype == np.float32 and int8.shape == fp32.shape
    cos = cosines(int8, fp32)
    assert cos.min() > 0.99 and not np.array_equal(int8, fp32)  # close, and really another computation
    np.testing.assert_array_equal(emb.encode(TEXTS), fp32)  # the fp32 model is untouched
    for k, v in emb.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert quantized.fingerprint() == emb.fingerprint()  # the same model for index checks


def test_int8_copy_follows_weight_changes(tiny_bert):
    emb = Embedder.from_pretrained(str(tiny_bert), pooling="mean")
    first = emb.quantized_int8()
    with torch.no_grad():
        emb.source.model.encoder.layer[0].intermediate.dense.weight.mul_(0.5)
    assert emb.quantized_int8() is not first


def test_int8_on_a_decoder_and_errors(tiny_llama):
    emb = Embedder.from_pretrained(str(tiny_llama))  # last-token pooling, EOS appended
    with pytest.warns(UserWarning, match="int8 on a decoder backbone"):
        q = emb.encode(TEXTS, dtype="int8")
    cos = cosines(q, emb.encode(TEXTS))
    assert cos.min() > 0.99
    with pytest.raises(ConfigError, match="unknown dtype 'int4'"):
        emb.encode(TEXTS, dtype="int4")

    class NoModel:
        pass

    fake = type("E", (), {"source": NoModel(), "device": torch.device("cpu")})()
    with pytest.raises(ConfigError, match="needs a transformer backbone"):
        quantize_int8(fake)


def test_cli_encode_and_server_with_int8(tiny_bert, tmp_path, monkeypatch, capsys):
    import httpx

    from embedlab.serve import BackgroundServer, Engine, create_app
    from tests.conftest import run_cli

    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    code, _, err = run_cli(
        monkeypatch, capsys, "encode", "-m", tiny_bert, "-i", src, "-o", tmp_path / "v.npy", "--dtype", "int8"
    )
    assert code == 0, err
    emb = Embedder.from_pretrained(str(tiny_bert))
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), emb.encode(TEXTS, dtype="int8"), atol=1e-6)

    engine = Engine(emb, dtype="int8")
    assert engine.dtype == "int8" and count_quantized(engine.embedder.source.model) > 0
    with BackgroundServer(create_app(engine, model_name="tiny")) as srv:
        got = np.array(
            [d["embedding"] for d in httpx.post(srv.url + "/v1/embeddings", json={"input": TEXTS}).json()["data"]]
        )
    assert cosines(got, emb.encode(TEXTS, dtype="int8")).min() > 0.9999
