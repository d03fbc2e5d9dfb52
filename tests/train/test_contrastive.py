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


def test_contrastive_loss_with_hard_negatives_brute_force():
    from embedlab.train.contrastive import contrastive_loss

    torch.manual_seed(1)
    b, k, d, tau = 3, 2, 6, 0.1
    q, p, n = torch.randn(b, d), torch.randn(b, d), torch.randn(b, k, d)

    def c(x, y):
        return float(torch.dot(x, y) / (x.norm() * y.norm())) / tau

    def ce(scores, label):
        return -(scores[label] - math.log(sum(math.exp(s) for s in scores)))

    allc = [p[j] for j in range(b)] + [n[j, m] for j in range(b) for m in range(k)]
    in_batch = sum(ce([c(q[i], x) for x in allc], i) for i in range(b)) / b
    assert float(contrastive_loss(q, p, n, temperature=tau)) == pytest.approx(in_batch, rel=1e-5)
    own = sum(ce([c(q[i], p[i])] + [c(q[i], n[i, m]) for m in range(k)], 0) for i in range(b)) / b
    assert float(contrastive_loss(q, p, n, temperature=tau, in_batch=False)) == pytest.approx(own, rel=1e-5)
    # masking candidate 1 for query 0 (a false negative) removes it from query 0's softmax only
    mask = torch.zeros(b, b + b * k, dtype=torch.bool)
    mask[0, 1] = True
    mask[1, 1] = True  # query 1's own positive: never masked
    masked = (ce([c(q[0], x) for j, x in enumerate(allc) if j != 1], 0) + sum(ce([c(q[i], x) for x in allc], i) for i in (1, 2))) / b
    assert float(contrastive_loss(q, p, n, temperature=tau, false_negative_mask=mask)) == pytest.approx(masked, rel=1e-5)
    sym = (info_nce(q, p, tau) + info_nce(p, q, tau)) / 2
    assert float(contrastive_loss(q, p, temperature=tau, symmetric=True)) == pytest.approx(float(sym), rel=1e-5)


def test_training_with_mined_hard_negatives(tiny_bert, tmp_path):
    import json

    from embedlab.errors import InputError
    from embedlab.train.contrastive import _false_negative_mask

    words = ["the cat sat", "a dog ran", "the sky is blue", "i read a book", "the red car", "a big house", "the moon", "we write code"]
    rows = [{"query": w, "positive": f"{w} and more", "negatives": [words[(i + 1) % 8], words[(i + 2) % 8]]} for i, w in enumerate(words)]
    rows[0]["negatives"][0] = rows[0]["positive"]  # a false negative: masked, not learned against
    data = tmp_path / "mined.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for in_batch in (True, False):
        cfg = TrainConfig(model=str(tiny_bert), data=str(data), output=str(tmp_path / f"o{in_batch}"), steps=20, batch_size=4, lr=1e-3,
                          hard_negatives=2, in_batch_negatives=in_batch, symmetric=True, matryoshka_dims=[32, 8])
        run(cfg)
        losses = [json.loads(x)["loss"] for x in (tmp_path / f"o{in_batch}" / "train_log.jsonl").read_text().splitlines()]
        assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    too_many = TrainConfig(model=str(tiny_bert), data=str(data), output=str(tmp_path / "x"), steps=2, batch_size=4, hard_negatives=3)
    with pytest.raises(InputError, match="hard_negatives=3"):
        run(too_many)
    assert not (tmp_path / "x").exists()
    mask = _false_negative_mask(["p0", "p1"], ["p1", "n", "p0", "m"], 2, in_batch=True)
    assert mask.tolist() == [[True, False, False, False, True, False], [False, True, True, False, False, False]]
    mask = _false_negative_mask(["p0", "p1"], ["p0", "n", "x", "p1"], 2, in_batch=False)
    assert mask.tolist() == [[False, True, False], [False, False, True]]
