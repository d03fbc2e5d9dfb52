"""The CLI: `embedlab models`, `info`, `encode` and `demo`. Clear one-line errors with the error's exit code, never a traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ..conftest import run_cli

run = run_cli


def test_encode_npy_and_jsonl(tiny_llama, tmp_path, monkeypatch, capsys):
    src = tmp_path / "in.txt"
    src.write_text("the cat sat\na dog ran\n")
    code, _, err = run(
        monkeypatch, capsys, "encode", "-m", tiny_llama, "-i", src, "-o", tmp_path / "v.npy", "--pooling", "mean"
    )
    assert code == 0, err
    assert np.load(tmp_path / "v.npy").shape == (2, 32) and "encoded 2 texts" in err
    code, _, err = run(
        monkeypatch,
        capsys,
        "encode",
        "-m",
        tiny_llama,
        "-i",
        "-",
        "-o",
        tmp_path / "v.jsonl",
        "--attention",
        "bidirectional",
        "--dim",
        "8",
        stdin="a b\n",
    )
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and len(rows[0]["embedding"]) == 8


@pytest.mark.parametrize(
    "setup,args,message,exit_code",
    [
        (None, ["-i", "{missing}"], "not found", 1),
        ("empty", ["-i", "{file}"], "empty", 1),
        ("latin", ["-i", "{file}"], "UTF-8", 1),
        ("ok", ["-i", "{file}", "-m", "no-such-model"], "minilm-l6, smollm2-135m", 1),
        ("ok", ["-i", "{file}", "-m", "{llama}", "--pooling", "cls"], "decoder", 2),
        ("ok", ["-i", "{file}", "-m", "{llama}", "--pooling", "max"], "unknown pooling", 2),
        ("ok", ["-i", "{file}", "-m", "{llama}", "--prompt", "query"], "unknown prompt", 2),
        ("blank", ["-i", "{file}", "-m", "{llama}", "--pooling", "mean"], "gives no tokens", 1),
        ("ok", ["-i", "{file}", "-m", "someorg/not-cached"], "not reachable", 1),
    ],
)
def test_bad_input_gives_one_line_error(tiny_llama, tmp_path, monkeypatch, capsys, setup, args, message, exit_code):
    """Exit 1 for data and model-lookup failures, 2 for a setting that cannot apply (errors.ConfigError)."""
    f = tmp_path / "in.txt"
    if setup == "empty":
        f.write_text("\n")
    elif setup == "latin":
        f.write_bytes("caf\xe9\n".encode("latin-1"))
    elif setup == "ok":
        f.write_text("the cat\n")
    elif setup == "blank":
        f.write_text("the cat\n\nthe dog\n")
    args = [a.format(missing=tmp_path / "nope.txt", file=f, llama=tiny_llama) for a in args]
    code, _, err = run(monkeypatch, capsys, "encode", *args, "-o", tmp_path / "o.npy")
    assert code == exit_code
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err and err.startswith("error:")
    assert not (tmp_path / "o.npy").exists()


def test_bad_output_suffix(tiny_llama, tmp_path, monkeypatch, capsys):
    (tmp_path / "in.txt").write_text("x\n")
    code, _, err = run(monkeypatch, capsys, "encode", "-i", tmp_path / "in.txt", "-o", tmp_path / "o.csv")
    assert code == 2 and ".npy, .npz, .jsonl" in err  # a usage error


def test_models_and_info(tiny_llama, monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "models")
    assert code == 0 and "minilm-l6" in out and "smollm2-135m" in out
    code, out, _ = run(
        monkeypatch, capsys, "info", tiny_llama, "--pooling", "multi_layer", "--attention", "bidirectional"
    )
    assert code == 0 and "LlamaModel" in out and "multi_layer" in out and "bidirectional" in out


def test_demo_runs_on_the_default_model(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "demo", "-k", "1")
    assert code == 0, err
    # the shipped sample has one obvious neighbour per query
    assert "central bank" in out and "Knead the dough" in out


def test_encode_sparse_writes_token_strings_and_weights(tiny_bert, tiny_splade, tmp_path, monkeypatch, capsys):
    from embedlab.models import Embedder

    src = tmp_path / "in.txt"
    src.write_text("the cat sat\na dog ran\n")
    code, _, err = run(monkeypatch, capsys, "encode", "-m", tiny_splade, "-i", src, "-o", tmp_path / "s.jsonl")
    assert code == 0, err
    assert "sparse over" in err
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    emb = Embedder.from_pretrained(tiny_splade)
    dense = emb.encode(["the cat sat", "a dog ran"])
    assert (dense > 0).sum(axis=1).min() > 0
    for i, row in enumerate(rows):
        assert row["index"] == i and row["indices"] == sorted(row["indices"])
        assert row["tokens"] == emb.tokenizer.convert_ids_to_tokens(row["indices"])
        assert np.allclose(row["values"], dense[i, row["indices"]], atol=1e-6)
        assert np.count_nonzero(dense[i]) == len(row["indices"])
    code, _, err = run(monkeypatch, capsys, "encode", "-m", tiny_splade, "-i", src, "-o", tmp_path / "s.npy")
    assert code == 2 and ".jsonl or .npz" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(
        monkeypatch, capsys, "encode", "-m", tiny_bert, "--kind", "sparse", "-i", src, "-o", tmp_path / "d.jsonl"
    )
    assert code == 2 and "sparse_embedding" in err and len(err.strip().splitlines()) == 1
