"""``embedlab grid``: the headline paper's experiment (Tang & Yang 2024) as one command.

Same base model, data, steps and seed for every design; designs = pooling x attention. Each design
is trained (``lora``: LoRA on the backbone + the head in full, the paper's protocol; ``frozen``: heads
only, on cached backbone features, a fast screen), evaluated on the chosen tasks, and compared with
the baseline design per category (Wilcoxon over datasets, Holm-corrected) and per task (paired
bootstrap CIs). Results, models, a markdown report and a PNG go under ``output``.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from embedlab.errors import EmbedlabError
from embedlab.io import atomic_path, write_json
from embedlab.train.config import TrainConfig, format_validation_error, read_yaml

log = logging.getLogger(__name__)
POOLINGS = ("last_token", "mean", "latent_attention", "multi_layer")
ATTENTIONS = ("causal", "bidirectional")

# Presets are defaults under the user's config (a field the config sets wins).
PRESETS: dict[str, dict[str, Any]] = {
    # Tang & Yang (2024), §1.1 of docs/training.md: Mistral-7B, LoRA r16/α32/dropout 0.1 on all linear
    # layers, lr 1e-5, 1,000 steps, 100 warmup, τ 0.05, one hard negative, EOS appended, left padding,
    # bf16, max length 512; 2,048 triplets per optimizer step as 8 gathered queries x 256 accumulation
    # steps (the paper's effective contrastive pool: 8 queries, 16 candidates each). Their training
    # set (yixuantt/ir_data) is not in the shared data: the adapters below stand in for it.
    "paper": {
        "model": "mistralai/Mistral-7B-v0.1", "mode": "lora", "head_preset": "paper", "padding_side": "left",
        "eval_dtype": "bf16", "tasks": "all",
        "train": {"lora": {"r": 16, "alpha": 32, "dropout": 0.1, "target_modules": "all-linear"}, "lr": 1e-5, "steps": 1000,
                  "warmup_steps": 100, "temperature": 0.05, "hard_negatives": 1, "batch_size": 8, "grad_accumulation": 256,
                  "max_length": 512, "precision": "bf16", "weight_decay": 0.01,
                  "data": ["snli-triplets", "trecqa-train", "scifact-train", "stsb-pairs"]},
    },
    # Runs end to end on a 2-core CPU with the packaged SmolLM2-135M (measured in docs/grid.md).
    "cpu-small": {
        "model": "smollm2-135m", "mode": "frozen", "head_preset": "small", "padding_side": "right", "eval_dtype": "bf16",
        "tasks": ["STSBenchmark", "STS15", "TrecQA"],
        "train": {"lr": 1e-3, "steps": 60, "warmup_steps": 10, "temperature": 0.05, "hard_negatives": 1, "batch_size": 16,
                  "max_length": 64, "precision": "bf16",
                  "data": [{"source": "snli-triplets", "max_examples": 3000}, {"source": "trecqa-train", "max_examples": 1000},
                           {"source": "stsb-pairs", "max_examples": 1000}]},
        "lora_train": {"lora": {"r": 16, "alpha": 32, "dropout": 0.1, "target_modules": "all-linear"}, "lr": 2e-4, "steps": 30,
                       "batch_size": 16, "max_length": 48, "warmup_steps": 3},
    },
}


# training adapter -> evaluation task that contains its examples (MTEB's TwitterURLCorpus scores train + test)
CONTAMINATION = {"twitter-url-train": "TwitterURLCorpus"}


class GridConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: Literal["paper", "cpu-small"] | None = None
    model: str = "smollm2-135m"
    mode: Literal["lora", "frozen"] = "frozen"
    poolings: list[str] = Field(default_factory=lambda: list(POOLINGS))
    attentions: list[Literal["causal", "bidirectional"]] = Field(default_factory=lambda: list(ATTENTIONS))
    only: list[str] | None = None  # an explicit subset of "pooling/attention" designs (default: the full product)
    baseline: str = "last_token/causal"
    head_preset: Literal["small", "paper"] = "small"
    padding_side: Literal["left", "right"] = "right"
    tasks: str | list[str] = "quick"
    task_dirs: list[str] = Field(default_factory=list)  # user tasks (folders with a task.json manifest)
    eval_dtype: Literal["fp32", "bf16"] = "bf16"
    instructions: bool = True  # evaluate with each task's instruction on the query side
    train: dict[str, Any] = Field(default_factory=dict)  # TrainConfig fields (not model/pooling/attention/output)
    lora_train: dict[str, Any] = Field(default_factory=dict)  # overrides of train in lora mode (presets)
    output: str = "runs/grid"
    resamples: int = Field(default=1000, gt=0)

    @field_validator("poolings")
    @classmethod
    def _poolings(cls, v: list[str]) -> list[str]:
        from embedlab.models.pooling import POOLING_HEADS

        bad = [p for p in v if p not in POOLING_HEADS]
        if bad or not v:
            raise ValueError(f"unknown pooling {bad}; choose from {', '.join(POOLING_HEADS)}")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _baseline(self) -> "GridConfig":
        if self.only is not None:
            from embedlab.models.pooling import POOLING_HEADS

            for d in self.only:
                pooling, _, attention = d.partition("/")
                if pooling not in POOLING_HEADS or attention not in ATTENTIONS:
                    raise ValueError(f"design {d!r} is not 'pooling/attention' with a known pooling and causal|bidirectional")
        if self.baseline not in self.designs:
            raise ValueError(f"baseline {self.baseline!r} is not among the designs {self.designs}")
        forbidden = {"model", "pooling", "attention", "output"} & set(self.train)
        if forbidden:
            raise ValueError(f"train must not set {sorted(forbidden)}: the grid sets them per design")
        return self

    @property
    def designs(self) -> list[str]:
        full = [f"{p}/{a}" for a in self.attentions for p in self.poolings]
        if self.only is None:
            return full
        order = {a: i for i, a in enumerate(ATTENTIONS)}
        return sorted(dict.fromkeys(self.only), key=lambda d: order[d.partition("/")[2]])  # one backbone pass per attention

    def train_config(self, pooling: str, attention: str, output: Path) -> TrainConfig:
        fields = dict(self.train)
        if self.mode == "lora":
            fields.update(self.lora_train)
        fields.setdefault("data", "snli-triplets")
        fields.setdefault("seed", 42)
        if self.mode == "frozen":
            fields.pop("lora", None)
        try:
            return TrainConfig(model=self.model, pooling=pooling, attention=attention, output=str(output),
                               head_preset=self.head_preset if pooling in ("latent_attention", "multi_layer") else None,
                               padding_side=self.padding_side, append_eos=None, **fields)
        except ValidationError as exc:
            raise EmbedlabError(format_validation_error(exc, "grid config, train")) from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "lora" else v
    return out


def grid_config(raw: dict[str, Any]) -> GridConfig:
    preset = raw.get("preset")
    if preset is not None and preset not in PRESETS:
        raise EmbedlabError(f"unknown grid preset {preset!r}; choose one of {', '.join(PRESETS)}")
    merged = _merge(PRESETS[preset], raw) if preset else raw
    try:
        return GridConfig(**merged)
    except ValidationError as exc:
        raise EmbedlabError(format_validation_error(exc, "grid config")) from None


def load_grid_config(path: str | Path | None = None, **overrides: Any) -> GridConfig:
    raw = read_yaml(path) if path is not None else {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return grid_config(raw)


def design_dir_name(design: str) -> str:
    return design.replace("/", "-")


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
def _eval_design(grid: GridConfig, tasks: list[Any], embedder: Any, out_dir: Path, encode_fn: Any, extra: dict[str, Any]) -> None:
    from embedlab.eval.runner import EmbeddingCache, run_task

    template = TrainConfig.model_fields["instruction_template"].default
    template = grid.train.get("instruction_template", template) if grid.instructions else None
    for task in tasks:
        run_task(task, embedder, out_dir, dtype=grid.eval_dtype, instruction_template=template, encode_fn=encode_fn,
                 cache=None if encode_fn else EmbeddingCache(), extra_metadata=extra)


def run_grid(grid: GridConfig, *, progress: Any = None) -> dict[str, Any]:
    """Train and evaluate every design, then write the report. ``progress(msg)`` receives status lines."""
    from embedlab.eval.registry import select_tasks

    say = progress or (lambda msg: log.info(msg))
    tasks = select_tasks(grid.tasks if isinstance(grid.tasks, str) else ",".join(grid.tasks), grid.task_dirs)
    sources = {d.source for st in grid.train_config("mean", "causal", Path(grid.output)).resolved_stages() for d in st.data}
    for source, task in CONTAMINATION.items():
        if source in sources and task in {t.name for t in tasks}:
            raise EmbedlabError(f"the grid trains on {source} and evaluates {task}, which contains it; drop one of them")
    out = Path(grid.output)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "grid_config.json") as tmp:
        tmp.write_text(grid.model_dump_json(indent=2) + "\n")
    summary_path = out / "designs.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    started = time.perf_counter()
    by_attention: dict[str, list[str]] = {}
    for d in grid.designs:
        by_attention.setdefault(d.partition("/")[2], []).append(d.partition("/")[0])
    for attention, poolings in by_attention.items():
        cache: list[Any] = []  # the frozen mode's feature cache for this attention mode, built on first use
        for pooling in poolings:
            design = f"{pooling}/{attention}"
            results = out / "results" / design_dir_name(design)
            if design in summary and all((results / f"{t.name}.json").is_file() for t in tasks):
                say(f"{design}: done earlier, skipped")
                continue
            cfg = grid.train_config(pooling, attention, out / "models" / design_dir_name(design))
            run = _run_frozen_design if grid.mode == "frozen" else _run_lora_design
            summary[design] = run(grid, cfg, design, tasks, results, say, cache)
            write_json(summary_path, summary)
    report = write_report(grid)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _run_frozen_design(grid: GridConfig, cfg: TrainConfig, design: str, tasks: list[Any], results: Path, say: Any,
                       cache: list[Any]) -> dict[str, Any]:
    """Train the head on cached backbone features (if it has parameters) and evaluate it."""
    import torch

    from embedlab.models import Embedder
    from embedlab.models.pooling import build_head
    from embedlab.train.frozen import FROZEN_NOTE, FeatureCache, FrozenHeadTrainer

    pooling, _, attention = design.partition("/")
    t0 = time.perf_counter()
    if not cache:
        base = Embedder.from_pretrained(grid.model, pooling="mean", attention=attention, max_length=cfg.max_length,
                                        padding_side=grid.padding_side)
        base.append_eos = base.backbone.is_decoder  # the paper appends EOS for every design
        cache.append(FeatureCache(base.to(cfg.torch_device())))
    features: FeatureCache = cache[0]
    torch.manual_seed(cfg.seed)  # every design's head starts from the same draws
    backbone = features.embedder.backbone
    head = _head(build_head, pooling, backbone, attention, grid.head_preset)
    emb = Embedder(backbone, head, append_eos=features.embedder.append_eos, padding_side=grid.padding_side).to(cfg.torch_device())
    info: dict[str, Any] = {"pooling": pooling, "attention": attention, "mode": "frozen",
                            "head_parameters": head.num_parameters(), "lora_parameters": 0}
    if head.num_parameters():
        say(f"{design}: training the head ({head.num_parameters():,} parameters) on cached features")
        result = FrozenHeadTrainer(cfg, emb, features, show_progress=True).fit()
        info.update(final_loss=result.losses[-1], steps=result.steps, candidates_per_query=result.candidates_per_query)
        head.save(Path(cfg.output) / "head")
    else:
        info.update(final_loss=None, steps=0, note="no trainable parameters: evaluated as is")
    info["train_seconds"] = round(time.perf_counter() - t0, 1)
    say(f"{design}: evaluating {len(tasks)} tasks")
    t_eval = time.perf_counter()
    emb.eval()
    _eval_design(grid, tasks, emb, results, lambda texts, prompt: features.encode(head, texts, prompt),
                 {"grid_mode": "frozen", "grid_design": design, "note": FROZEN_NOTE})
    info["eval_seconds"] = round(time.perf_counter() - t_eval, 1)
    return info


def _run_lora_design(grid: GridConfig, cfg: TrainConfig, design: str, tasks: list[Any], results: Path, say: Any,
                     cache: list[Any]) -> dict[str, Any]:
    """LoRA + head training through the full trainer (resuming an interrupted run), then evaluation."""
    from embedlab.models import Embedder
    from embedlab.train.checkpoint import list_checkpoints
    from embedlab.train.trainer import Trainer, load_embedder

    pooling, _, attention = design.partition("/")
    done = Path(cfg.output) / "train_summary.json"
    if done.is_file() and (Path(cfg.output) / "model").is_dir():  # trained earlier, evaluation interrupted
        say(f"{design}: trained earlier, loading {cfg.output}/model")
        trained = Embedder.from_pretrained(Path(cfg.output) / "model")
    else:
        say(f"{design}: LoRA training")
        emb = load_embedder(cfg)
        emb.append_eos = emb.backbone.is_decoder  # the paper appends EOS for every design
        trainer = Trainer(cfg, emb, show_progress=True)
        trainer.fit(resume=bool(list_checkpoints(trainer.ckpt_dir)))  # continue an interrupted design
        trainer.save()
        trained = trainer.embedder
    saved = json.loads(done.read_text())
    info: dict[str, Any] = {
        "pooling": pooling, "attention": attention, "mode": "lora", "head_parameters": saved["head_parameters"],
        "lora_parameters": saved["lora_parameters"], "final_loss": saved["final_loss"], "steps": saved["steps"],
        "candidates_per_query": saved["candidates_per_query"], "train_seconds": round(saved["seconds"], 1),
        "tokens_per_s": round(saved["tokens"] / max(saved["seconds"], 1e-9), 1)}
    say(f"{design}: evaluating {len(tasks)} tasks")
    t_eval = time.perf_counter()
    _eval_design(grid, tasks, trained, results, None, {"grid_mode": "lora", "grid_design": design})
    info["eval_seconds"] = round(time.perf_counter() - t_eval, 1)
    return info


def _head(build_head: Any, pooling: str, backbone: Any, attention: str, preset: str) -> Any:
    options: dict[str, Any] = {}
    if pooling == "multi_layer":
        options["layer_summary"] = "last_token" if attention == "causal" else "mean"
    trainable = pooling in ("latent_attention", "multi_layer")
    return build_head(pooling, backbone.hidden_size, num_layers=backbone.num_layers, preset=preset if trainable else None, **options)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def write_report(grid: GridConfig) -> dict[str, Any]:
    """report.md + report.png + report.json from the result folders (can be rerun alone)."""
    from embedlab.eval.report import compare, plot, to_markdown
    from embedlab.train.frozen import FROZEN_NOTE

    out = Path(grid.output)
    summary = json.loads((out / "designs.json").read_text()) if (out / "designs.json").is_file() else {}
    dirs = [out / "results" / design_dir_name(d) for d in grid.designs if (out / "results" / design_dir_name(d)).is_dir()]
    base = out / "results" / design_dir_name(grid.baseline)
    if base not in dirs or len(dirs) < 2:
        raise EmbedlabError(f"the grid in {out} has fewer than two evaluated designs (or lacks the baseline {grid.baseline})")
    cmp = compare(dirs, baseline=base, resamples=grid.resamples)
    lines = [f"# Design grid: {grid.model}, mode `{grid.mode}`", ""]
    if grid.mode == "frozen":
        lines += [f"> **{FROZEN_NOTE}.**", ""]
    lines += [f"Baseline: `{grid.baseline}`. Same data, steps and seed for every design; "
              f"tasks: {', '.join(sorted({t.task for t in cmp.tasks}))}.", "",
              "| design | head parameters | LoRA parameters | head / LoRA | steps | final loss | train s | eval s |",
              "|---|---|---|---|---|---|---|---|"]
    for d in grid.designs:
        s = summary.get(d, {})
        hp, lp = s.get("head_parameters", 0), s.get("lora_parameters", 0)
        ratio = f"{hp / lp:.1f}×" if lp and hp else "–"
        loss = f"{s['final_loss']:.4f}" if s.get("final_loss") is not None else "–"
        lines.append(f"| {d} | {hp:,} | {lp:,} | {ratio} | {s.get('steps', 0)} | {loss} | {s.get('train_seconds', 0)} | "
                     f"{s.get('eval_seconds', 0)} |")
    ns = sorted({r.comparison.n for r in cmp.categories})
    lines += ["", "Minimum attainable two-sided Wilcoxon p per category size: " +
              ", ".join(f"n={n}: {2 / 2 ** n:.3g}" for n in ns if n) +
              " — a category with n ≤ 5 datasets can never reach p < 0.05; read its per-task bootstrap CIs instead.", ""]
    body = to_markdown(cmp).split("\n", 1)[1]
    lines.append(body)
    text = "\n".join(lines)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(text)
    plot(cmp, out / "report.png")
    data = {
        "baseline": grid.baseline, "mode": grid.mode, "designs": summary,
        "categories": [{"category": r.category, "design": r.model, "n": r.comparison.n, "baseline": r.baseline_score,
                        "mean_delta": r.comparison.mean_delta, "p": r.comparison.p_value, "p_holm": r.p_holm,
                        "wins": r.comparison.wins, "ties": r.comparison.ties, "losses": r.comparison.losses} for r in cmp.categories],
        "tasks": [{"task": t.task, "design": t.model, "baseline": t.baseline_score, "score": t.score,
                   "ci": None if t.bootstrap is None else [t.bootstrap.ci_low, t.bootstrap.ci_high]} for t in cmp.tasks],
    }
    write_json(out / "report.json", data)
    return {"markdown": text, "comparison": cmp, "report": str(out / "report.md"), "plot": str(out / "report.png"), **data}
