"""Shared fixtures: tiny random models of each family, built from configs (no hub, no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = (
    "the a an cat dog bird sat on mat rug ran fast slow big small red blue green house car tree "
    "river sky sun moon star book read write code data model text word query document instruct "
    "find similar retrieve answer question why how what when where who is are was were be of to "
    "in and or not with for by at from this that these those it he she they we you i my your"
).split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "</s>", "<s>"]
FAMILIES = ("bert", "llama", "mistral", "qwen2", "qwen3", "gemma")
DECODERS = FAMILIES[1:]


def make_tokenizer(encoder: bool):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL + WORDS)}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    if encoder:
        tok.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            model_max_length=64,
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        eos_token="</s>",
        bos_token="<s>",
        model_max_length=64,
    )


def make_config(family: str):
    import transformers as t

    vocab = len(SPECIAL) + len(WORDS)
    common = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
    )
    if family == "bert":
        return t.BertConfig(**common, pad_token_id=0)
    dec = dict(common, num_key_value_heads=2, pad_token_id=0, eos_token_id=4, bos_token_id=5)
    if family == "llama":
        return t.LlamaConfig(**dec)
    if family == "mistral":
        return t.MistralConfig(**dec, sliding_window=4096)
    if family == "qwen2":
        return t.Qwen2Config(**dec)
    if family == "qwen3":
        return t.Qwen3Config(**dec, head_dim=8)
    if family == "gemma":
        return t.GemmaConfig(**dec, head_dim=8)
    raise ValueError(family)


def build_tiny(family: str, path: Path) -> Path:
    from transformers import AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_config(make_config(family))
    model.save_pretrained(path)
    make_tokenizer(family == "bert").save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {f: build_tiny(f, root / f) for f in FAMILIES}


@pytest.fixture(scope="session")
def tiny_bert(tiny_models) -> Path:
    return tiny_models["bert"]


@pytest.fixture(scope="session")
def tiny_llama(tiny_models) -> Path:
    return tiny_models["llama"]


@pytest.fixture(scope="session")
def tiny_splade(tiny_bert, tmp_path_factory) -> Path:
    """A saved SPLADE model on the tiny random BERT, its MLM bias zeroed: a fresh head's -4‖e‖ bias (right for a
    real model, whose states match their tokens' embeddings) leaves a random model's vectors empty."""
    from embedlab.models import Embedder

    emb = Embedder.from_pretrained(tiny_bert, pooling="splade")
    with torch.no_grad():
        emb.head.mlm.predictions.bias.zero_()
    path = tmp_path_factory.mktemp("tiny-splade") / "model"
    emb.save(path)
    return path


def run_cli(monkeypatch, capsys, *args, stdin: str = ""):
    """Run ``embedlab ARGS`` in-process; returns (exit code, stdout, stderr)."""
    import io
    import sys

    from embedlab.cli import main

    monkeypatch.setattr(sys, "argv", ["embedlab", *map(str, args)])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, d) arrays, in float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
