"""The trainer on tiny random models: learning, GradCache equivalence, exact resume, LoRA, stages,
NaN handling, memory foresight, config validation."""

from __future__ import annotations

import json
import math

import pytest
import torch

from embedlab.errors import EmbedlabError
from embedlab.train import TrainConfig, Trainer, TrainingDiverged, load_config, run

WORDS = [
    "the cat sat",
    "a dog ran",
    "the sky is blue",
    "i read a book",
    "the red car",
    "a big house",
    "the moon",
    "we write code",
    "the sun is big",
    "a bird sat on the mat",
    "the river ran fast",
    "we read the data",
]


@pytest.fixture()
def triplets(tmp_path):
    # negatives are not other rows' queries (a query's own text among the candidates is masked as a false negative)
    rows = [
        {
            "query": w,
            "positive": f"{w} and more",
            "negatives": [f"not {WORDS[(i + 1) % len(WORDS)]}", f"not {WORDS[(i + 2) % len(WORDS)]}"],
        }
        for i, w in enumerate(WORDS)
    ]
    path = tmp_path / "triplets.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _log(out):
    return [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]


def test_training_lowers_the_loss_and_saves(tiny_bert, triplets, tmp_path):
    cfg = TrainConfig(
        model=str(tiny_bert),
        data=str(triplets),
        output=str(tmp_path / "out"),
        steps=25,
        batch_size=8,
        lr=1e-3,
        warmup_steps=2,
        hard_negatives=1,
        matryoshka_dims=[32, 16, 8],
        log_every=1,
    )
    emb = run(cfg)
    records = [r for r in _log(tmp_path / "out") if "loss" in r]
    assert records[-1]["loss"] < records[0]["loss"]
    assert records[0]["candidates_per_query"] == 16  # 8 positives + 8 hard negatives
    event = next(r for r in _log(tmp_path / "out") if r.get("event") == "stage")
    assert event["examples"] == len(WORDS) and event["trainable_parameters"] > 0
    out = tmp_path / "out"
    assert (out / "model" / "modules.json").is_file() and (out / "train_config.json").is_file()
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 25
    assert emb.encode(["the cat sat"]).shape == (1, 32)
    with pytest.raises(EmbedlabError, match="already holds a trained model"):
        Trainer(cfg).fit()


def test_gradcache_gives_the_gradients_of_one_big_batch(tiny_llama, triplets, tmp_path):
    grads = {}
    for micro in (None, 3):
        cfg = TrainConfig(
            model=str(tiny_llama),
            pooling="mean",
            data=str(triplets),
            output=str(tmp_path / f"g{micro}"),
            steps=1,
            batch_size=8,
            hard_negatives=2,
            micro_batch_size=micro,
            symmetric=True,
        )
        trainer = Trainer(cfg, show_progress=False)
        trainer.embedder.train()
        from embedlab.train.data import load_dataset

        examples = load_dataset(str(triplets))[:8]
        stage = cfg.resolved_stages()[0]
        trainer._truncated = trainer._tokens = 0
        loss, cands = trainer._contrastive_step(examples, stage, 1.0)
        grads[micro] = (loss, {n: p.grad.clone() for n, p in trainer.embedder.named_parameters() if p.grad is not None})
        assert cands == 24
    (loss_a, ga), (loss_b, gb) = grads[None], grads[3]
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert ga.keys() == gb.keys() and len(ga) > 5
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-4, atol=1e-6, msg=name)


def test_resume_after_a_kill_gives_the_same_losses(tiny_bert, triplets, tmp_path):
    """Dropout is on (tiny BERT): exact resume needs the RNG, sampler, optimizer and schedule restored."""
    base = dict(
        model=str(tiny_bert),
        data=str(triplets),
        steps=7,
        batch_size=4,
        lr=1e-3,
        warmup_steps=2,
        hard_negatives=1,
        checkpoint_every=2,
        log_every=1,
        grad_accumulation=2,
    )
    straight = Trainer(TrainConfig(**base, output=str(tmp_path / "a")), show_progress=False).fit().losses

    class Killed(Exception):
        pass

    def kill_at_5(step, loss):
        if step == 5:
            raise Killed

    cfg = TrainConfig(**base, output=str(tmp_path / "b"))
    with pytest.raises(Killed):
        Trainer(cfg, on_step=kill_at_5, show_progress=False).fit()
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["step-0000002", "step-0000004"]
    resumed = Trainer(cfg, show_progress=False).fit(resume=True).losses
    assert resumed == straight  # bit-identical, step 5 recomputed from the step-4 checkpoint
    logged = [r["loss"] for r in _log(tmp_path / "b") if "loss" in r]
    assert logged == straight  # the log holds each step once


def test_two_stages_lora_and_head(tiny_llama, triplets, tmp_path):
    cfg_text = f"""
model: {tiny_llama}
pooling: latent_attention
pooling_options: {{num_latents: 4, num_heads: 2}}
attention: bidirectional
output: {tmp_path / "two"}
batch_size: 4
lr: 0.001
lora: {{r: 4, alpha: 8, dropout: 0.0}}
precision: bf16
stages:
  - name: retrieval
    data: [{{source: {triplets}, instruction: "Retrieve the text"}}]
    steps: 3
    hard_negatives: 1
  - name: blend
    data: [{{source: {triplets}, in_batch_negatives: false}}]
    steps: 2
    hard_negatives: 2
log_every: 1
"""
    (tmp_path / "c.yaml").write_text(cfg_text)
    cfg = load_config(tmp_path / "c.yaml")
    trainer = Trainer(cfg, show_progress=False)
    before_backbone = {
        n: p.detach().clone() for n, p in trainer.embedder.backbone.named_parameters() if "lora_" not in n
    }
    before_head = {n: p.detach().clone() for n, p in trainer.embedder.head.named_parameters()}
    result = trainer.fit()
    assert result.lora_parameters > 0 and result.head_parameters > 0
    assert result.trainable_parameters == result.lora_parameters + result.head_parameters
    for n, p in trainer.embedder.backbone.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, before_backbone[n]), n  # the base weights are frozen
    assert any(not torch.equal(p, before_head[n]) for n, p in trainer.embedder.head.named_parameters())
    records = _log(tmp_path / "two")
    assert [r["stage"] for r in records if r.get("event") == "stage"] == ["retrieval", "blend"]
    steps = [r for r in records if "loss" in r]
    assert [r["candidates_per_query"] for r in steps] == [8, 8, 8, 3, 3]  # stage 2: own positive + 2 negatives
    q = trainer.embedder.encode(["the cat sat"], prompt="Instruct: Retrieve the text\nQuery: ")
    path = trainer.save()
    from embedlab.models import Embedder

    loaded = Embedder.from_pretrained(path)
    assert loaded.attention == "bidirectional" and loaded.head.name == "latent_attention"
    torch.testing.assert_close(
        torch.tensor(loaded.encode(["the cat sat"], prompt="Instruct: Retrieve the text\nQuery: ")),
        torch.tensor(q),
        atol=2e-2,
        rtol=0,
    )  # LoRA merged into the weights (trained under bf16)


def test_nan_loss_stops_and_keeps_the_checkpoint(tiny_bert, triplets, tmp_path):
    cfg = TrainConfig(
        model=str(tiny_bert),
        data=str(triplets),
        output=str(tmp_path / "nan"),
        steps=6,
        batch_size=4,
        checkpoint_every=2,
        log_every=1,
    )
    trainer = Trainer(cfg, show_progress=False)

    def poison(step, loss):
        if step == 3:
            with torch.no_grad():
                next(trainer.embedder.backbone.parameters()).fill_(float("nan"))

    trainer.on_step = poison
    with pytest.raises(TrainingDiverged, match=r"at step 3 .*last good checkpoint is .*step-0000002"):
        trainer.fit()
    assert (tmp_path / "nan" / "checkpoints" / "step-0000002" / "trainable.safetensors").is_file()
    assert not (tmp_path / "nan" / "model").exists()
    resumed = Trainer(cfg, show_progress=False).fit(resume=True)  # a fresh process resumes from step 2
    assert len(resumed.losses) == 6 and all(math.isfinite(x) for x in resumed.losses)


def test_memory_foresight_and_truncation(tiny_bert, triplets, tmp_path):
    cfg = TrainConfig(
        model=str(tiny_bert),
        data=str(triplets),
        output=str(tmp_path / "m"),
        steps=1,
        batch_size=12,
        hard_negatives=2,
        memory_limit_gb=0.0015,
    )
    with pytest.raises(EmbedlabError, match=r"48 texts .* set micro_batch_size \(GradCache\) to at most \d+"):
        Trainer(cfg, show_progress=False).fit()
    cfg = cfg.model_copy(update={"micro_batch_size": 4})
    assert Trainer(cfg, show_progress=False).fit().steps == 1  # GradCache fits the same contrastive batch
    long = tmp_path / "long.tsv"
    long.write_text("".join(f"{w} {'the cat sat on the mat ' * 12}\t{w}\n" for w in WORDS))
    cfg = TrainConfig(
        model=str(tiny_bert), data=str(long), output=str(tmp_path / "t"), steps=1, batch_size=4, max_length=16
    )
    result = Trainer(cfg, show_progress=False).fit()
    assert result.truncated_texts == 4  # the four long queries; positives fit


def test_config_validation_names_the_field(tmp_path):
    cases = [
        ("data: x.tsv\noutput: out\nstepz: 3\n", "field 'stepz'"),
        ("data: x.tsv\noutput: out\nmatryoshka_dims: [0, 8]\n", "matryoshka_dims"),
        ("output: out\n", "either data"),
        ("data: x.tsv\noutput: out\nlora: {r: 0}\n", "field 'lora.r'"),
        ("data: x.tsv\noutput: out\ninstruction_template: 'no text'\n", "instruction_template"),
        ("data: x.tsv\noutput: out\nbatch_size: 4\nmicro_batch_size: 8\n", "micro_batch_size"),
        (
            "data: x.tsv\noutput: out\nbatch_size: 1\n",
            r"c.yaml: field 'batch_size': batch_size must be an integer >= 2; got 1$",
        ),
        ("data: x.tsv\noutput: out\nmicro_batch_size: 0\n", "micro_batch_size must be a positive integer; got 0$"),
        ("data: x.tsv\noutput: out\ngrad_accumulation: 0\n", "grad_accumulation must be a positive integer; got 0$"),
        (
            "data: x.tsv\noutput: out\nmatryoshka_dims: [8, -2]\n",
            r"matryoshka_dims\[1\] must be a positive integer; got -2$",
        ),
        ("output: out\nstages: [{data: x.tsv, stepz: 2}]\n", "field 'stages.0.stepz'"),
        ("data: x.tsv\noutput: out\nprecision: fp8\n", "field 'precision'"),
    ]
    for text, msg in cases:
        (tmp_path / "c.yaml").write_text(text)
        with pytest.raises(EmbedlabError, match=msg):
            load_config(tmp_path / "c.yaml")
    cfg = TrainConfig(data="x", output="o", steps=5, stages=None)
    assert cfg.resolved_stages()[0].steps == 5 and cfg.resolved_stages()[0].temperature == 0.05


def test_unknown_pooling_and_data(tiny_bert, tmp_path):
    with pytest.raises(EmbedlabError, match="unknown pooling"):
        Trainer(TrainConfig(model=str(tiny_bert), pooling="maxx", data="x", output=str(tmp_path / "o")))
    with pytest.raises(EmbedlabError, match="training data not found"):
        Trainer(
            TrainConfig(model=str(tiny_bert), data="nope.jsonl", output=str(tmp_path / "o")), show_progress=False
        ).fit()


@pytest.mark.slow
def test_lora_on_the_packaged_smollm2(tmp_path, triplets):
    """LoRA r16 on every linear layer of SmolLM2-135M: r·(in+out) per layer, hand-computed —
    q 576→576, k/v 576→192, o 576→576, gate/up 576→1536, down 1536→576, 30 layers."""
    per_layer = 16 * ((576 + 576) + 2 * (576 + 192) + (576 + 576) + 2 * (576 + 1536) + (1536 + 576))
    cfg = TrainConfig(
        model="smollm2-135m",
        pooling="multi_layer",
        attention="bidirectional",
        data=str(triplets),
        output=str(tmp_path / "s"),
        steps=2,
        batch_size=4,
        max_length=24,
        lr=1e-4,
        precision="bf16",
        lora={"r": 16, "alpha": 32, "dropout": 0.1},
        hard_negatives=1,
        micro_batch_size=4,
    )
    result = Trainer(cfg, show_progress=False).fit()
    assert result.lora_parameters == 30 * per_layer == 4_884_480
    assert all(math.isfinite(x) for x in result.losses) and result.candidates_per_query == 8


def test_gradcache_empty_group_follows_the_model_device_and_dtype():
    """No hard negatives: the empty group must live where the representations live (a CPU tensor
    next to CUDA representations is a device error); the meta device stands in for a GPU."""
    from embedlab.train.gradcache import cached_backward

    lin = torch.nn.Linear(4, 3, device="meta", dtype=torch.float64)
    seen = {}

    def embed(texts):
        return lin(torch.ones(len(texts), 4, device="meta", dtype=torch.float64))

    def loss_fn(q, p, n):
        seen["n"] = (n.device, n.dtype, tuple(n.shape))
        return (q * p).sum()

    cached_backward(embed, [["a", "b", "c"], ["d", "e", "f"], []], loss_fn, micro_batch_size=2)
    assert seen["n"] == (torch.device("meta"), torch.float64, (0, 3))
    assert lin.weight.grad is not None and lin.weight.grad.device.type == "meta"


@pytest.fixture()
def tiny_llama_dropout(tiny_llama, tmp_path):
    """The tiny Llama with attention dropout on (Llama has no other dropout)."""
    import shutil

    path = tmp_path / "llama-dropout"
    shutil.copytree(tiny_llama, path)
    config = json.loads((path / "config.json").read_text())
    config["attention_dropout"] = 0.2
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_gradcache_with_lora_and_dropout_gives_the_gradients_of_one_big_batch(tiny_llama_dropout, triplets, tmp_path):
    """Dropout on (attention 0.2, LoRA 0.1): GradCache's re-forward must replay the dropout masks of its
    first pass. The reference is one graph over the whole batch, embedded in the same (length-sorted)
    micro-batches in the same order from the same RNG state (so the same masks), with one backward."""
    from embedlab.train.data import load_dataset
    from embedlab.train.gradcache import length_sorted_chunks

    examples = load_dataset(str(triplets))[:8]
    results = {}
    for mode, micro in (("gradcache", 3), ("one_graph", None), ("gradcache_whole", 8), ("plain", None)):
        cfg = TrainConfig(
            model=str(tiny_llama_dropout),
            pooling="mean",
            data=str(triplets),
            output=str(tmp_path / mode),
            steps=1,
            batch_size=8,
            hard_negatives=1 if mode in ("gradcache_whole", "plain") else 2,
            micro_batch_size=micro,
            symmetric=True,
            lora={"r": 4, "alpha": 8, "dropout": 0.1},
        )
        trainer = Trainer(cfg, show_progress=False)
        assert trainer.lora_parameters > 0
        assert trainer.embedder.backbone.config.attention_dropout == 0.2
        gen = torch.Generator().manual_seed(7)
        with torch.no_grad():  # LoRA B starts at zero: make the adapters (and their dropout) change the forward pass
            for n, p in trainer.embedder.backbone.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        trainer.embedder.train()
        if mode in ("one_graph", "plain"):  # with a graph throughout, over GradCache's micro-batches
            size = 3 if mode == "one_graph" else 8
            trainer._plan = lambda lengths, size=size: length_sorted_chunks(lengths, size)
        stage = cfg.resolved_stages()[0]
        trainer._truncated = trainer._tokens = 0
        torch.manual_seed(123)
        loss, _ = trainer._contrastive_step(examples, stage, 1.0)
        results[mode] = (
            loss,
            {n: p.grad.clone() for n, p in trainer.embedder.named_parameters() if p.grad is not None},
        )
    for a, b in (("gradcache", "one_graph"), ("gradcache_whole", "plain")):
        (loss_a, ga), (loss_b, gb) = results[a], results[b]
        assert loss_a == pytest.approx(loss_b, rel=1e-6), (a, b)
        assert (
            ga.keys() == gb.keys() and any("lora_A" in n for n in ga) and any("head" in n or "lora_B" in n for n in ga)
        )
        for name in ga:
            torch.testing.assert_close(ga[name], gb[name], rtol=1e-4, atol=1e-6, msg=f"{a} vs {b}: {name}")
    # dropout is really on: another RNG state gives another loss
    assert results["gradcache"][0] != pytest.approx(results["gradcache_whole"][0], rel=1e-3)


def test_an_output_with_checkpoints_is_refused_without_resume_or_overwrite(tiny_bert, triplets, tmp_path):
    base = dict(
        model=str(tiny_bert), data=str(triplets), batch_size=4, lr=1e-3, warmup_steps=0, checkpoint_every=2, log_every=1
    )
    cfg = TrainConfig(**base, steps=6, output=str(tmp_path / "o"))

    class Killed(Exception):
        pass

    def kill_at_5(step, loss):
        if step == 5:
            raise Killed

    with pytest.raises(Killed):
        Trainer(cfg, on_step=kill_at_5, show_progress=False).fit()
    ckpts = tmp_path / "o" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-0000002", "step-0000004"]
    log_before = (tmp_path / "o" / "train_log.jsonl").read_text()
    with pytest.raises(EmbedlabError, match=r"already holds checkpoints .*step-0000004.*--resume.*--overwrite") as info:
        Trainer(cfg, show_progress=False).fit()
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-0000002", "step-0000004"]  # left as they were
    assert (tmp_path / "o" / "train_log.jsonl").read_text() == log_before
    with pytest.raises(EmbedlabError, match="one of them"):
        Trainer(cfg, show_progress=False).fit(resume=True, overwrite=True)
    # --overwrite discards the old run: a 3-step run leaves only its own checkpoint and log
    short = TrainConfig(**base, steps=3, output=str(tmp_path / "o"))
    fresh = Trainer(short, show_progress=False).fit(overwrite=True)
    assert fresh.steps == 3 and fresh.resumed_from_step == 0
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-0000002"]
    assert [r["step"] for r in _log(tmp_path / "o") if "loss" in r] == [1, 2, 3]
    alone = Trainer(TrainConfig(**base, steps=3, output=str(tmp_path / "p")), show_progress=False).fit()
    assert fresh.losses == alone.losses  # started over from the initial weights


def test_resume_of_a_finished_run_says_so_and_trains_nothing(tiny_bert, triplets, tmp_path):
    cfg = TrainConfig(
        model=str(tiny_bert),
        data=str(triplets),
        output=str(tmp_path / "f"),
        steps=3,
        batch_size=4,
        lr=1e-3,
        warmup_steps=0,
        checkpoint_every=2,
        log_every=1,
    )
    run(cfg)
    out = tmp_path / "f"
    summary = json.loads((out / "train_summary.json").read_text())
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    steps_seen = []
    trainer = Trainer(cfg, on_step=lambda step, loss: steps_seen.append(step), show_progress=False)
    result = trainer.fit(resume=True)
    assert result.already_finished and steps_seen == []
    assert result.steps == 3 and result.final_loss == summary["final_loss"] and result.seconds == summary["seconds"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before  # nothing rewritten
    emb = run(cfg, resume=True)  # the library call returns the saved model
    assert emb.encode(["the cat sat"]).shape[0] == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    # more steps in the config: --resume continues from the newest checkpoint (step 2) and saves again
    longer = cfg.model_copy(update={"steps": 4})
    more = Trainer(longer, show_progress=False).fit(resume=True)
    assert not more.already_finished and more.resumed_from_step == 2 and more.steps == 4
    assert (
        more.seconds >= torch.load(out / "checkpoints" / "step-0000002" / "state.pt", weights_only=False)["seconds"] > 0
    )


@pytest.mark.parametrize("native, expected", [(False, "fp32"), (True, "bf16")])
def test_precision_auto_is_bf16_only_where_native(tiny_bert, triplets, tmp_path, monkeypatch, native, expected):
    """Emulated bf16 (an AVX2 CPU) is several times slower than fp32, so ``auto`` must not pick it."""
    import embedlab.models.embedder as embedder_module

    monkeypatch.setattr(embedder_module, "native_bf16", lambda device="cpu": native)
    cfg = TrainConfig(model=str(tiny_bert), data=str(triplets), output=str(tmp_path / "o"), precision="auto")
    assert Trainer(cfg, show_progress=False).precision == expected


def test_splade_trains_with_dot_scores_and_flops_and_saves_a_sparse_encoder(tiny_splade, triplets, tmp_path):
    from sentence_transformers import SparseEncoder

    cfg = TrainConfig(
        model=str(tiny_splade),
        pooling="splade",
        data=str(triplets),
        output=str(tmp_path / "out"),
        steps=12,
        batch_size=6,
        lr=1e-3,
        warmup_steps=1,
        hard_negatives=1,
        flops_query_weight=1e-2,
        flops_document_weight=1e-2,
        log_every=1,
    )
    stage = cfg.resolved_stages(sparse=True)[0]
    assert (stage.similarity, stage.temperature) == ("dot", 1.0)  # a sparse head's defaults
    assert cfg.resolved_stages()[0].similarity == "cosine"
    emb = run(cfg)
    losses = [r["loss"] for r in _log(tmp_path / "out") if "loss" in r]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    texts = ["the cat sat", "the river ran fast"]
    ours = emb.encode(texts)
    theirs = SparseEncoder(str(tmp_path / "out" / "model"), device="cpu").encode(texts, convert_to_tensor=True)
    assert float((theirs.to_dense() - torch.from_numpy(ours)).abs().max()) <= 1e-5
