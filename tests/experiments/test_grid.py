"""The design grid end to end on a tiny random decoder and hand-made tasks (frozen and LoRA modes)."""

from __future__ import annotations

import json
import random

import pytest

from embedlab.errors import EmbedlabError
from embedlab.experiments.design import PAPER_MODELS, Design
from embedlab.experiments.grid import dry_run, grid_config, run_grid
from embedlab.progress import NullBar

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
        (d / "task.json").write_text(
            json.dumps(
                {
                    "name": name,
                    "type": "sts",
                    "files": {"test": "test.tsv"},
                    "instruction": "Retrieve semantically similar text.",
                }
            )
        )
        tasks.append(str(d))
    d = tmp_path / "rerank"
    d.mkdir()
    with open(d / "test.jsonl", "w") as f:
        for _ in range(15):
            q = _sentence(rng)
            f.write(
                json.dumps({"query": q, "positive": [q + " and more"], "negative": [_sentence(rng) for _ in range(4)]})
                + "\n"
            )
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
    raw = {
        "model": str(tiny_llama),
        "mode": "frozen",
        "tasks": "stsA,stsB,rerank",
        "task_dirs": task_dirs,
        "output": str(tmp_path / "grid"),
        "resamples": 200,
        "head_preset": "small",
        "train": {
            "data": [{"source": str(data), "instruction": "Find the text"}],
            "steps": 4,
            "batch_size": 8,
            "lr": 1e-3,
            "hard_negatives": 1,
            "max_length": 32,
        },
    }
    report = run_grid(grid_config(raw))
    designs = report["designs"]
    assert len(designs) == 10  # 5 poolings x 2 attentions
    # fair screen: the baseline is trained like every design, with the same projection
    base = designs["last_token/causal"]
    assert base["steps"] == 4 and base["projection_parameters"] == 32 * 32 + 32 and base["head_parameters"] == 0
    assert base["trainable_parameters"] == base["projection_parameters"]
    assert designs["mean/causal"]["trainable_parameters"] == base["trainable_parameters"]
    ml = designs["multi_layer/bidirectional"]
    assert ml["head_parameters"] > 0 and ml["steps"] == 4
    assert ml["trainable_parameters"] == ml["head_parameters"] + ml["projection_parameters"]
    text = (tmp_path / "grid" / "report.md").read_text()
    assert "NOT the paper's protocol" in text and "Wilcoxon" in text and "n=2: 0.5" in text
    assert "hier. Δ [95% CI]" in text
    row = next(line for line in text.splitlines() if line.startswith("| multi_layer/bidirectional |"))
    assert "▲" in row and "Model 5" in row  # more trainable parameters than the baseline, marked
    row = next(line for line in text.splitlines() if line.startswith("| mean/causal |"))
    assert "▲" not in row
    assert (tmp_path / "grid" / "report.png").stat().st_size > 1000
    cats = {(r["model"], r["category"]) for r in report["comparison"]["categories"] if not r["baseline"]}
    assert ("multi_layer-bidirectional", "STS") in cats and ("mean-causal", "Reranking") in cats
    sts = next(r for r in report["comparison"]["categories"] if r["model"] == "mean-causal" and r["category"] == "STS")
    assert sts["hier_ci_low"] <= sts["hier_delta"] <= sts["hier_ci_high"]
    result = json.loads((tmp_path / "grid" / "results" / "mean-causal" / "stsA.json").read_text())
    assert result["metadata"]["instruction"] == "Instruct: Retrieve semantically similar text.\nQuery: "
    assert result["metadata"]["grid_mode"] == "frozen"
    again = run_grid(grid_config(raw))  # finished designs are skipped
    assert again["designs"] == designs


def test_paper_dry_run_lists_exactly_models_1_to_5():
    """Offline, on the meta device, from the model's config: the paper's five designs and their counts
    (methods notes: LoRA r16 on all Mistral linears about 42 M, the multi-layer head about 1.28 B)."""
    plan = dry_run(grid_config({"preset": "paper"}))
    assert [r["design"] for r in plan["designs"]] == [str(d) for d in PAPER_MODELS.values()]
    assert [r["paper_model"] for r in plan["designs"]] == [1, 2, 3, 4, 5]
    lora = 32 * (16 * (4096 + 4096) * 2 + 16 * (4096 + 1024) * 2 + 16 * (4096 + 14336) * 3)  # q,o + k,v + gate,up,down
    assert lora == 41_943_040
    rows = {r["design"]: r for r in plan["designs"]}
    assert all(r["lora_parameters"] == lora for r in rows.values())
    assert rows["last_token/causal"]["head_parameters"] == 0 and not rows["last_token/causal"]["more_than_baseline"]
    assert 1.25e9 < rows["multi_layer/causal"]["head_parameters"] < 1.31e9
    assert rows["multi_layer/causal"]["head_parameters"] - rows["last_layer/causal"]["head_parameters"] == 32 * 4096
    assert rows["multi_layer/bidirectional"]["more_than_baseline"]
    assert plan["layers"] == 32 and plan["hidden_size"] == 4096 and 7.0e9 < plan["backbone_parameters"] < 7.2e9


def test_lora_count_matches_peft(tiny_llama):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    from embedlab.experiments.offline import lora_parameter_count

    for targets in ("all-linear", ["q_proj", "v_proj"]):
        model = AutoModel.from_pretrained(tiny_llama)
        ours = lora_parameter_count(model, 4, targets)
        peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
        assert ours == sum(p.numel() for p in peft_model.parameters() if p.requires_grad) > 0


def test_lora_grid_and_config_errors(tiny_llama, setup, tmp_path):
    task_dirs, data = setup
    raw = {
        "model": str(tiny_llama),
        "mode": "lora",
        "only": ["latent_attention/causal", "last_token/causal"],
        "tasks": "stsA,rerank",
        "task_dirs": task_dirs,
        "output": str(tmp_path / "lora"),
        "resamples": 100,
        "train": {
            "data": str(data),
            "steps": 2,
            "batch_size": 4,
            "lr": 1e-3,
            "max_length": 32,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        },
    }
    report = run_grid(grid_config(raw))
    d = report["designs"]["latent_attention/causal"]
    assert d["trainable_parameters"] == d["lora_parameters"] + d["head_parameters"] and d["projection_parameters"] == 0
    assert d["lora_parameters"] > 0 and d["head_parameters"] > 0 and d["steps"] == 2
    assert (tmp_path / "lora" / "models" / "latent_attention-causal" / "model" / "modules.json").is_file()
    assert list(report["designs"]) == ["latent_attention/causal", "last_token/causal"]
    first = json.loads((tmp_path / "lora" / "results" / "latent_attention-causal" / "stsA.json").read_text())[
        "main_score"
    ]
    (tmp_path / "lora" / "results" / "latent_attention-causal" / "stsA.json").unlink()  # an interrupted evaluation
    messages = []

    class Bar(NullBar):
        def write(self, msg: str) -> None:
            messages.append(msg)

    again = run_grid(grid_config(raw), show_progress=lambda **kw: Bar(kw["total"]))
    assert any("trained earlier" in m for m in messages)
    for design, info in report["designs"].items():
        assert {k: v for k, v in again["designs"][design].items() if k != "eval_seconds"} == {
            k: v for k, v in info.items() if k != "eval_seconds"
        }
    assert json.loads((tmp_path / "lora" / "results" / "latent_attention-causal" / "stsA.json").read_text())[
        "main_score"
    ] == pytest.approx(first, abs=1e-6)  # the saved (merged) model scores like the one that was trained
    for bad, msg in [
        ({**raw, "poolings": ["maxx"]}, "unknown pooling"),
        ({**raw, "only": ["mean/sideways"]}, "pooling/attention"),
        ({**raw, "baseline": "cls/causal"}, "baseline"),
        ({**raw, "only": ["max/causal"]}, "unknown pooling"),
        ({**raw, "train": {"pooling": "mean"}}, "must not set"),
        ({**raw, "preset": "huge"}, "unknown grid preset"),
        ({**raw, "modee": "x"}, "field 'modee'"),
    ]:
        with pytest.raises(EmbedlabError, match=msg):
            grid_config(bad)
    # contamination is refused whatever the shared data holds: a user task with the contaminated name
    twitter = tmp_path / "twitter"
    twitter.mkdir()
    (twitter / "test.tsv").write_text("sentence1\tsentence2\tlabel\na b\ta b\t1\n")
    (twitter / "task.json").write_text(
        json.dumps({"name": "TwitterURLCorpus", "type": "pair_classification", "files": {"test": "test.tsv"}})
    )
    leak = grid_config(
        {
            **raw,
            "tasks": "TwitterURLCorpus",
            "task_dirs": [str(twitter)],
            "train": {**raw["train"], "data": "twitter-url-train"},
        }
    )
    with pytest.raises(EmbedlabError, match="contains it"):
        run_grid(leak)
    paper = grid_config({"preset": "paper", "model": "x"})
    assert [str(d) for d in paper.designs] == [
        "last_token/causal",
        "last_layer/causal",
        "multi_layer/causal",
        "last_layer/bidirectional",
        "multi_layer/bidirectional",
    ]
    assert paper.tasks == "all"
    cfg = paper.train_config(Design.parse("multi_layer/bidirectional"), tmp_path / "p")
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lr, cfg.steps, cfg.temperature, cfg.hard_negatives) == (
        16,
        32,
        0.1,
        1e-5,
        1000,
        0.05,
        1,
    )
    assert cfg.head_preset == "paper" and cfg.padding_side == "left"


def _retrieval_dir(root, rng):
    """A retrieval task: 12 queries, each with one relevant document (the query and more words) among 30."""
    root.mkdir()
    docs, queries, qrels = [], [], []
    for i in range(12):
        q = _sentence(rng)
        queries.append({"_id": f"q{i}", "text": q})
        docs.append({"_id": f"d{i}", "title": "", "text": q + " and more"})
        qrels.append(f"q{i}\td{i}\t1")
    docs += [{"_id": f"n{i}", "title": "", "text": _sentence(rng)} for i in range(18)]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    files = {"corpus": "corpus.jsonl", "queries": "queries.jsonl", "qrels": "qrels.tsv"}
    (root / "task.json").write_text(json.dumps({"name": "toyret", "type": "retrieval", "files": files}))
    return str(root)


def test_lora_grid_compares_sparse_designs_with_a_dense_one(tiny_bert, setup, tmp_path):
    """splade/bidirectional and dupmae/bidirectional train and evaluate like any design (same data, steps and
    seed), their retrieval through the exact sparse index, and the report compares them with mean/bidirectional."""
    task_dirs, data = setup
    retrieval = _retrieval_dir(tmp_path / "toyret", random.Random(1))
    raw = {
        "model": str(tiny_bert),
        "mode": "lora",
        "only": ["mean/bidirectional", "splade/bidirectional", "dupmae/bidirectional"],
        "baseline": "mean/bidirectional",
        "tasks": "stsA,toyret",
        "task_dirs": [*task_dirs, retrieval],
        "output": str(tmp_path / "sparse"),
        "resamples": 100,
        "train": {
            "data": str(data),
            "steps": 2,
            "batch_size": 4,
            "lr": 1e-3,
            "max_length": 32,
            "temperature": 0.05,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        },
    }
    grid = grid_config(raw)
    # the sparse designs keep the shared data/steps/seed but score by dot product at their own temperature
    dense_cfg = grid.train_config(Design.parse("mean/bidirectional"), tmp_path / "x")
    sparse_cfg = grid.train_config(Design.parse("splade/bidirectional"), tmp_path / "y")
    d_stage, s_stage = dense_cfg.resolved_stages()[0], sparse_cfg.resolved_stages(sparse=True)[0]
    assert (d_stage.similarity, d_stage.temperature) == ("cosine", 0.05)
    assert (s_stage.similarity, s_stage.temperature) == ("dot", 1.0)
    assert (s_stage.steps, s_stage.data, sparse_cfg.seed) == (d_stage.steps, d_stage.data, dense_cfg.seed)
    report = run_grid(grid)
    designs = report["designs"]
    assert list(designs) == ["mean/bidirectional", "splade/bidirectional", "dupmae/bidirectional"]
    assert all(d["steps"] == 2 and d["mode"] == "lora" for d in designs.values())
    for name in ("splade-bidirectional", "dupmae-bidirectional"):
        result = json.loads((tmp_path / "sparse" / "results" / name / "toyret.json").read_text())
        assert result["metadata"]["retrieval"] == "sparse" and result["metadata"]["similarity"] == "dot"
        assert 0 <= result["main_score"] <= 1 and len(result["per_example"]["values"]) == 12
    base = json.loads((tmp_path / "sparse" / "results" / "mean-bidirectional" / "toyret.json").read_text())
    assert "retrieval" not in base["metadata"]
    cats = {(r["model"], r["category"]) for r in report["comparison"]["categories"] if not r["baseline"]}
    assert {("splade-bidirectional", "Retrieval"), ("dupmae-bidirectional", "STS")} <= cats
    text = (tmp_path / "sparse" / "report.md").read_text()
    assert "| splade/bidirectional |" in text and "| dupmae/bidirectional |" in text and "Wilcoxon" in text


def test_frozen_mode_refuses_sparse_designs_in_one_line(tiny_bert):
    with pytest.raises(EmbedlabError, match="mode frozen cannot screen the sparse designs splade/bidirectional") as e:
        grid_config(
            {
                "model": str(tiny_bert),
                "mode": "frozen",
                "only": ["mean/bidirectional", "splade/bidirectional"],
                "baseline": "mean/bidirectional",
            }
        )
    assert "use mode: lora" in str(e.value) and "dupmae" not in str(e.value)
