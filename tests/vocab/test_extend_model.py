"""``embedlab vocab extend`` end to end on tiny random models (hand WordPiece BERT, byte-level BPE Llama):
the output is a normal embedlab model that encodes, saves and loads, trains a step, indexes and serves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import run_cli
from tests.vocab._tokenizers import BPE_CORPUS, make_bpe, make_wordpiece

CORPUS = ["abc de abc xy the cat", "the cat sat abc de", "abc de sat the", "xy abc the cat de"] * 5


def _save_tiny(tmp_path, name, tok, family):
    import transformers as t

    torch.manual_seed(0)
    common = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
    )
    if family == "bert":
        model = t.BertModel(t.BertConfig(**common, pad_token_id=0))
    else:
        model = t.LlamaModel(
            t.LlamaConfig(**common, num_key_value_heads=2, pad_token_id=0, eos_token_id=0, tie_word_embeddings=True)
        )
    path = tmp_path / name
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def wp_model(tmp_path_factory):
    return _save_tiny(tmp_path_factory.mktemp("wp"), "bert", make_wordpiece(), "bert")


@pytest.fixture(scope="module")
def bpe_model(tmp_path_factory):
    return _save_tiny(tmp_path_factory.mktemp("bpe"), "llama", make_bpe(262), "llama")


@pytest.fixture(scope="module")
def extended(wp_model, tmp_path_factory):
    """The tiny BERT extended through the CLI with FVT."""
    from _pytest.monkeypatch import MonkeyPatch

    root = tmp_path_factory.mktemp("ext")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n")
    out = root / "out"
    mp = MonkeyPatch()
    try:
        import io
        import sys
        from contextlib import redirect_stderr

        from embedlab.cli import main

        mp.setattr(
            sys,
            "argv",
            [
                "embedlab",
                "vocab",
                "extend",
                str(wp_model),
                "--corpus",
                str(corpus),
                "--add",
                "3",
                "--init",
                "fvt",
                "--out",
                str(out),
            ],
        )
        buf = io.StringIO()
        with redirect_stderr(buf):
            try:
                main()
            except SystemExit as exc:  # the console script exits with its code
                assert not exc.code, buf.getvalue()
    finally:
        mp.undo()
    return out, buf.getvalue(), corpus


def test_cli_reports_and_saves_a_normal_model_dir(extended, wp_model):
    from embedlab.models import Embedder

    out, log, _ = extended
    assert "added 3 ids (3 tokens" in log and "skipped 0" in log and "init fvt" in log
    for f in ("modules.json", "config.json", "tokenizer.json", "model.safetensors", "vocab_extension.json"):
        assert (out / f).is_file(), f
    report = json.loads((out / "vocab_extension.json").read_text())
    assert [t["form"] for t in report["tokens"]] == ["abc", "de", "xy"]  # ranked by tokens saved
    emb = Embedder.from_pretrained(out)
    base = Embedder.from_pretrained(wp_model)
    assert emb.tokenizer.tokenize("abc de") == ["abc", "de"]
    assert emb.source.model.get_input_embeddings().weight.shape[0] == len(base.tokenizer) + 3
    w_old = base.source.model.get_input_embeddings().weight
    w_new = emb.source.model.get_input_embeddings().weight
    v = base.tokenizer.get_vocab()
    torch.testing.assert_close(w_new[len(base.tokenizer)], w_old[[v["a"], v["##b"], v["##c"]]].mean(0))  # FVT
    torch.testing.assert_close(w_new[: len(base.tokenizer)], w_old, rtol=0, atol=0)


def test_extended_model_encodes_saves_loads_and_trains(extended, tmp_path):
    from embedlab.models import Embedder
    from embedlab.train import TrainConfig, run

    out, _, _ = extended
    emb = Embedder.from_pretrained(out)
    texts = ["abc de xy", "the cat sat", "abcd"]
    vecs = emb.encode(texts)
    assert vecs.shape == (3, 32) and np.isfinite(vecs).all()
    emb.save(tmp_path / "again")
    np.testing.assert_allclose(Embedder.from_pretrained(tmp_path / "again").encode(texts), vecs, rtol=1e-5, atol=1e-6)
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"query": q, "positive": p}) + "\n"
            for q, p in [("abc", "abc de"), ("the cat", "cat sat"), ("xy", "xy abc"), ("de", "de the")]
        )
    )
    trained = run(
        TrainConfig(
            model=str(out),
            data=str(data),
            output=str(tmp_path / "train"),
            steps=1,
            batch_size=2,
            lr=1e-2,
            warmup_steps=0,
        )
    )
    assert trained.tokenizer.tokenize("abc") == ["abc"]
    assert not np.allclose(trained.encode(texts), vecs)


def test_extended_model_indexes_and_serves(extended, monkeypatch, capsys, tmp_path):
    import httpx

    from embedlab.models import Embedder
    from tests.serve.conftest import running

    out, _, _ = extended
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(CORPUS[:4])))
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "index",
        "build",
        "-m",
        out,
        "--corpus",
        corpus,
        "--codec",
        "float32",
        "--out",
        tmp_path / "ix",
    )
    assert code == 0, err
    emb = Embedder.from_pretrained(out)
    with running(emb) as srv:
        r = httpx.post(srv.url + "/v1/embeddings", json={"input": ["abc de xy"]})
        assert r.status_code == 200
        served = np.asarray(r.json()["data"][0]["embedding"])
    np.testing.assert_allclose(served, emb.encode("abc de xy"), rtol=1e-4, atol=1e-5)


def test_bpe_llama_extends_with_every_init(bpe_model, tmp_path):
    from embedlab.models import Embedder
    from embedlab.vocab.extend import extend_embedder, save_extended

    base = Embedder.from_pretrained(bpe_model, pooling="mean")
    opts = {
        "cw2v": {"steps": 10, "rank": 4, "batch": 64},
        "wechsel": {"dim": 8, "epochs": 1, "min_count": 1, "workers": 1},
    }
    for method in ("random", "mean", "multivariate", "fvt", "wechsel", "cw2v"):
        emb, report = extend_embedder(base, corpus=BPE_CORPUS, method=method, add=40, options=opts.get(method))
        assert report["added"] >= 40 and report["token"] >= 2
        assert emb.tokenizer.tokenize(" mitochondria") == ["Ġmitochondria"]
        assert np.isfinite(emb.encode(["the mitochondria make protein"])).all()
    save_extended(emb, report, tmp_path / "cw2v")
    again = Embedder.from_pretrained(tmp_path / "cw2v")
    assert again.head.name == "mean" and again.tokenizer.tokenize(" mitochondria") == ["Ġmitochondria"]
    np.testing.assert_allclose(
        again.encode(["the mitochondria"]), emb.encode(["the mitochondria"]), rtol=1e-5, atol=1e-6
    )
    assert len(base.tokenizer) == 262  # the input embedder is untouched


def test_cli_bad_input_is_one_line(wp_model, monkeypatch, capsys, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(CORPUS))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    present = tmp_path / "present.txt"
    present.write_text("cat\nthe\n")
    cases = [
        (["--corpus", corpus, "--add", "0"], "greater than or equal to 1"),
        (["--corpus", empty, "--add", "5"], "no text"),
        (["--corpus", corpus, "--add", "3", "--tokens", present], "exactly one"),
        (["--corpus", corpus, "--tokens", present], "already in the vocabulary"),
        (["--corpus", corpus, "--add", "3", "--init", "magic"], "unknown init"),
        (["--corpus", corpus, "--add", "3", "--select", "magic"], "unknown selection"),
    ]
    for args, message in cases:
        code, _, err = run_cli(monkeypatch, capsys, "vocab", "extend", wp_model, *args, "--out", tmp_path / "o")
        assert code in (1, 2) and message in err and "Traceback" not in err, (args, err)  # 2: usage, 1: input
        assert len(err.strip().splitlines()) == 1, err
