"""InfoNCE and Matryoshka loss against brute force; a tiny training run; config validation."""
from __future__ import annotations

import math

import pytest
import torch

from embedlab.errors import EmbedlabError
from embedlab.train import TrainConfig, info_nce, load_config, matryoshka_info_nce
from embedlab.train.contrastive import run


def brute_info_nce(q, d, tau):
    total = 0.0
    for i in range(len(q)):
        sims = [float(torch.dot(q[i], d[j]) / (q[i].norm() * d[j].norm())) / tau for j in range(len(d))]
        total += -(sims[i] - math.log(sum(math.exp(s) for s in sims)))
    return total / len(q)


def test_info_nce_brute_force():
    torch.manual_seed(0)
    q, d = torch.randn(5, 8), torch.randn(5, 8)
    assert float(info_nce(q, d, 0.05)) == pytest.approx(brute_info_nce(q, d, 0.05), rel=1e-5)
    expected = brute_info_nce(q, d, 0.1) + 0.5 * brute_info_nce(q[:, :4], d[:, :4], 0.1)
    assert float(matryoshka_info_nce(q, d, [8, 4], [1.0, 0.5], 0.1)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(EmbedlabError, match="exceeds"):
        matryoshka_info_nce(q, d, [16])


def test_tiny_training_run_lowers_the_loss(tiny_bert, tmp_path):
    words = ["the cat sat", "a dog ran", "the sky is blue", "i read a book", "the red car", "a big house", "the moon", "we write code"]
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{w}\t{w} and more\n" for w in words))
    cfg = TrainConfig(model=str(tiny_bert), data=str(data), output=str(tmp_path / "out"), steps=30, batch_size=8, lr=1e-3,
                      warmup_steps=2, matryoshka_dims=[32, 16, 8])
    emb = run(cfg)
    log = [line for line in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    first, last = (float(__import__("json").loads(log[i])["loss"]) for i in (0, -1))
    assert last < first
    assert (tmp_path / "out" / "model" / "modules.json").is_file() and (tmp_path / "out" / "train_config.json").is_file()
    assert emb.encode(["the cat sat"]).shape == (1, 32)


def test_config_validation_names_the_field(tmp_path):
    (tmp_path / "c.yaml").write_text("data: x.tsv\noutput: out\nstepz: 3\n")
    with pytest.raises(EmbedlabError, match="field 'stepz'"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text("data: x.tsv\noutput: out\nmatryoshka_dims: [0, 8]\n")
    with pytest.raises(EmbedlabError, match="matryoshka_dims"):
        load_config(tmp_path / "c.yaml")
