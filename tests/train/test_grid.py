"""The design grid end to end on a tiny random decoder and hand-made tasks (frozen and LoRA modes)."""
from __future__ import annotations

import json
import random

import pytest

from embedlab.errors import EmbedlabError
from embedlab.train.grid import grid_config, run_grid

WORDS = "the a cat dog bird sat on mat rug ran fast slow big small red blue green house car tree river sky sun moon star book".split()


def _sentence(rng):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7)))


@pytest.fixture()
def setup(tmp_path):
    rng = random.Random(0)
    tasks = []
    for name in ("stsA", "stsB"):
        d = tmp_path / name
        d.mkdir()
        rows = ["sentence1\tsentence2\tscore"]
        for _ in range(40):
            a = _sentence(rng)
            b = a if rng.random() < 0.3 else _sentence(rng)
            rows.append(f"{a}\t{b}\t{5.0 if a == b else rng.uniform(0, 4):.2f}")
        (d / "test.tsv").write_text("\n".join(rows) + "\n")
        (d / "task.json").write_text(json.dumps({"name": name, "type": "sts", "files": {"test": "test.tsv"},
                                                 "instruction": "Retrieve semantically similar text."}))
        tasks.append(str(d))
    d = tmp_path / "rerank"
    d.mkdir()
    with open(d / "test.jsonl", "w") as f:
        for _ in range(15):
            q = _sentence(rng)
            f.write(json.dumps({"query": q, "positive": [q + " and more"], "negative": [_sentence(rng) for _ in range(4)]}) + "\n")
    (d / "task.json").write_text(json.dumps({"name": "rerank", "type": "reranking", "files": {"test": "test.jsonl"}}))
    tasks.append(str(d))
    data = tmp_path / "train.jsonl"
    with open(data, "w") as f:
        for _ in range(40):
            q = _sentence(rng)
            f.write(json.dumps({"query": q, "positive": q + " and more", "negatives": [_sentence(rng)]}) + "\n")
    return tasks, data


def test_frozen_grid_reports_every_design(tiny_llama, setup, tmp_path):
    task_dirs, data = setup
    raw = {"model": str(tiny_llama), "mode": "frozen", "tasks": "stsA,stsB,rerank", "task_dirs": task_dirs,
           "output": str(tmp_path / "grid"), "resamples": 200, "head_preset": "small",
           "train": {"data": [{"source": str(data), "instruction": "Find the text"}], "steps": 4, "batch_size": 8, "lr": 1e-3,
                     "hard_negatives": 1, "max_length": 32}}
    report = run_grid(grid_config(raw))
    designs = report["designs"]
    assert len(designs) == 8
    assert designs["last_token/causal"]["head_parameters"] == 0 and designs["last_token/causal"]["steps"] == 0
    assert designs["multi_layer/bidirectional"]["head_parameters"] > 0 and designs["multi_layer/bidirectional"]["steps"] == 4
    text = (tmp_path / "grid" / "report.md").read_text()
    assert "NOT the paper's protocol" in text and "Wilcoxon" in text and "95% CI" in text and "n=2: 0.5" in text
    assert (tmp_path / "grid" / "report.png").stat().st_size > 1000
    cats = {(r["design"], r["category"]) for r in report["categories"]}
    assert ("multi_layer-bidirectional", "STS") in cats and ("mean-causal", "Reranking") in cats
    result = json.loads((tmp_path / "grid" / "results" / "mean-causal" / "stsA.json").read_text())
    assert result["metadata"]["instruction"] == "Instruct: Retrieve semantically similar text.\nQuery: "
    assert result["metadata"]["grid_mode"] == "frozen"
    # the frozen features give the same vectors as a full forward pass of the same head
    from embedlab.models import Embedder

    emb = Embedder.from_pretrained(tiny_llama, pooling="mean", attention="bidirectional", max_length=32, append_eos=True)
    from embedlab.train.frozen import FeatureCache

    cache = FeatureCache(emb)
    texts = ["the cat sat on the mat", "a dog", "blue sky and a big red car"]
    import numpy as np

    np.testing.assert_allclose(cache.encode(emb.head, texts), emb.encode(texts, dtype="bf16"), atol=2e-2)
    again = run_grid(grid_config(raw))  # finished designs are skipped
    assert again["designs"] == designs


def test_lora_grid_and_config_errors(tiny_llama, setup, tmp_path):
    task_dirs, data = setup
    raw = {"model": str(tiny_llama), "mode": "lora", "only": ["latent_attention/causal", "last_token/causal"],
           "tasks": "stsA,rerank", "task_dirs": task_dirs, "output": str(tmp_path / "lora"), "resamples": 100,
           "train": {"data": str(data), "steps": 2, "batch_size": 4, "lr": 1e-3, "max_length": 32,
                     "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}}
    report = run_grid(grid_config(raw))
    d = report["designs"]["latent_attention/causal"]
    assert d["lora_parameters"] > 0 and d["head_parameters"] > 0 and d["steps"] == 2
    assert (tmp_path / "lora" / "models" / "latent_attention-causal" / "model" / "modules.json").is_file()
    assert list(report["designs"]) == ["latent_attention/causal", "last_token/causal"]
    first = json.loads((tmp_path / "lora" / "results" / "latent_attention-causal" / "stsA.json").read_text())["main_score"]
    (tmp_path / "lora" / "results" / "latent_attention-causal" / "stsA.json").unlink()  # an interrupted evaluation
    messages = []
    again = run_grid(grid_config(raw), progress=messages.append)
    assert any("trained earlier" in m for m in messages)
    for design, info in report["designs"].items():
        assert {k: v for k, v in again["designs"][design].items() if k != "eval_seconds"} == \
            {k: v for k, v in info.items() if k != "eval_seconds"}
    assert json.loads((tmp_path / "lora" / "results" / "latent_attention-causal" / "stsA.json").read_text())["main_score"] == \
        pytest.approx(first, abs=1e-6)  # the saved (merged) model scores like the one that was trained
    for bad, msg in [({**raw, "poolings": ["maxx"]}, "unknown pooling"), ({**raw, "only": ["mean/sideways"]}, "pooling/attention"), ({**raw, "baseline": "cls/causal"}, "baseline"),
                     ({**raw, "train": {"pooling": "mean"}}, "must not set"), ({**raw, "preset": "huge"}, "unknown grid preset"),
                     ({**raw, "modee": "x"}, "field 'modee'")]:
        with pytest.raises(EmbedlabError, match=msg):
            grid_config(bad)
    from embedlab.settings import data_dir

    leak = grid_config({**raw, "tasks": "TwitterURLCorpus", "train": {**raw["train"], "data": "twitter-url-train"}})
    if data_dir() is not None:  # the task lives in the shared data
        with pytest.raises(EmbedlabError, match="contains it"):
            run_grid(leak)
    paper = grid_config({"preset": "paper", "model": "x"})
    cfg = paper.train_config("multi_layer", "bidirectional", tmp_path / "p")
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lr, cfg.steps, cfg.temperature, cfg.hard_negatives) == (16, 32, 0.1, 1e-5, 1000, 0.05, 1)
    assert cfg.head_preset == "paper" and cfg.padding_side == "left"
