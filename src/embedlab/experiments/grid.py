"""``embedlab grid``: the headline paper's experiment (Tang & Yang 2024) as one command.

Same base model, data, steps and seed for every design (:class:`~embedlab.experiments.design.Design`
= pooling x attention). Each design is trained (``lora``: LoRA on the backbone + the head in full,
the paper's protocol; ``frozen``: the fair screen of :mod:`embedlab.experiments.frozen`), evaluated on
the chosen tasks, and compared with the baseline per category (the paper's Wilcoxon over datasets,
Holm-corrected, plus a hierarchical bootstrap CI of the mean Δ) and per task (paired bootstrap CIs).
Results, models, a markdown report and a PNG go under ``output``; ``dry_run`` lists the designs and
their parameter counts without training, on the meta device.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from embedlab.errors import ConfigError, EmbedlabError
from embedlab.experiments.design import PAPER_MODELS, Design
from embedlab.io import atomic_path, write_json
from embedlab.progress import ShowProgress, progress_bar
from embedlab.train.config import TrainConfig, read_yaml
from embedlab.validation import format_validation_error

log = logging.getLogger(__name__)
POOLINGS = ("last_token", "mean", "latent_attention", "last_layer", "multi_layer")
ATTENTIONS = ("causal", "bidirectional")
PAPER_DESIGNS = [str(d) for d in PAPER_MODELS.values()]
# the paper's five + the parameter-free mean and NV-Embed's latent attention under bidirectional attention
CPU_DESIGNS = PAPER_DESIGNS + ["mean/causal", "mean/bidirectional", "latent_attention/bidirectional"]
# The backbone's forward over every training and evaluation text, once per attention mode, is the whole cost
# of a frozen screen (SmolLM2-135M: ~350 tokens/s in fp32 on 2 AVX2 cores; bf16 where native is ~3x faster).
_CPU_DATA = [
    {"source": "snli-triplets", "max_examples": 400},
    {"source": "trecqa-train", "max_examples": 160},
    {"source": "stsb-pairs", "max_examples": 200},
]
_CPU_TRAIN = {
    "lr": 1e-3,
    "steps": 40,
    "warmup_steps": 5,
    "temperature": 0.05,
    "hard_negatives": 1,
    "batch_size": 16,
    "max_length": 64,
    "precision": "fp32",
    "data": _CPU_DATA,
}  # the frozen screen's modules are small
_CPU_LORA = {
    "lora": {"r": 16, "alpha": 32, "dropout": 0.1, "target_modules": "all-linear"},
    "lr": 2e-4,
    "steps": 30,
    "batch_size": 16,
    "max_length": 48,
    "warmup_steps": 3,
}

# Presets are defaults under the user's config (a field the config sets wins).
PRESETS: dict[str, dict[str, Any]] = {
    # Tang & Yang (2024), docs/training.md §1.1: Mistral-7B, LoRA r16/α32/dropout 0.1 on all linear layers,
    # lr 1e-5, 1,000 steps, 100 warmup, τ 0.05, one hard negative, EOS appended, left padding, bf16, max length
    # 512; 2,048 triplets per optimizer step as 8 gathered queries x 256 accumulation steps (the paper's effective
    # contrastive pool: 8 queries, 16 candidates each). Exactly its Models 1-5. Their training set
    # (yixuantt/ir_data) is not in the shared data: the adapters below stand in for it. Every shared task.
    "paper": {
        "model": "mistralai/Mistral-7B-v0.1",
        "mode": "lora",
        "head_preset": "paper",
        "padding_side": "left",
        "eval_dtype": "bf16",
        "tasks": "all",
        "only": PAPER_DESIGNS,
        "train": {
            "lora": {"r": 16, "alpha": 32, "dropout": 0.1, "target_modules": "all-linear"},
            "lr": 1e-5,
            "steps": 1000,
            "warmup_steps": 100,
            "temperature": 0.05,
            "hard_negatives": 1,
            "batch_size": 8,
            "grad_accumulation": 256,
            "max_length": 512,
            "precision": "bf16",
            "weight_decay": 0.01,
            "data": ["snli-triplets", "trecqa-train", "scifact-train", "stsb-pairs"],
        },
    },
    # `make demo`: the fair frozen screen on the packaged SmolLM2-135M, two tasks, 40 steps (docs/grid.md has the time).
    "cpu-small": {
        "model": "smollm2-135m",
        "mode": "frozen",
        "head_preset": "small",
        "padding_side": "right",
        "eval_dtype": "auto",
        "tasks": ["STSBenchmark", "TrecQA"],
        "only": CPU_DESIGNS,
        "train": _CPU_TRAIN,
        "lora_train": _CPU_LORA,
    },
    # The same screen on every shared task that fits a category (TwitterURLCorpus excluded only when training
    # on its train split, which this preset does not): hours on a 2-core CPU (docs/grid.md).
    "cpu-full": {
        "model": "smollm2-135m",
        "mode": "frozen",
        "head_preset": "small",
        "padding_side": "right",
        "eval_dtype": "auto",
        "tasks": "all",
        "only": CPU_DESIGNS,
        "lora_train": _CPU_LORA,
        "train": {
            **_CPU_TRAIN,
            "steps": 150,
            "data": [
                {"source": "snli-triplets", "max_examples": 3000},
                {"source": "trecqa-train"},
                {"source": "stsb-pairs", "max_examples": 1000},
            ],
        },
    },
}

# training adapter -> evaluation task that contains its examples (MTEB's TwitterURLCorpus scores train + test)
CONTAMINATION = {"twitter-url-train": "TwitterURLCorpus"}


# the loss settings a sparse design takes from its own defaults (SPARSE_STAGE_DEFAULTS: dot, temperature 1) or
# from sparse_train, never from the shared train: a cosine temperature such as 0.05 on raw dot products is
# another loss altogether (the FLOPS weights, which only sparse heads read, do come from train)
SPARSE_LOSS_FIELDS = ("similarity", "temperature")


def is_sparse(design: Design) -> bool:
    """Whether a design's head gives sparse vectors over the vocabulary (``splade``, ``dupmae``): scored by
    dot products, retrieval through the exact sparse index."""
    from embedlab.models.pooling import POOLING_HEADS

    return getattr(POOLING_HEADS[design.pooling], "output_kind", "dense") == "sparse"


class GridConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: Literal["paper", "cpu-small", "cpu-full"] | None = None
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
    eval_dtype: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 where it is native, else fp32
    instructions: bool = True  # evaluate with each task's instruction on the query side
    train: dict[str, Any] = Field(default_factory=dict)  # TrainConfig fields (not model/pooling/attention/output)
    lora_train: dict[str, Any] = Field(default_factory=dict)  # overrides of train in lora mode (presets)
    sparse_train: dict[str, Any] = Field(default_factory=dict)  # overrides of train for sparse designs (splade/…)
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
    def _checks(self) -> "GridConfig":
        try:
            for d in self.only or []:
                Design.parse(d)
            Design.parse(self.baseline)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        if Design.parse(self.baseline) not in self.designs:
            raise ValueError(f"baseline {self.baseline!r} is not among the designs {[str(d) for d in self.designs]}")
        forbidden = {"model", "pooling", "attention", "output"} & (set(self.train) | set(self.sparse_train))
        if forbidden:
            raise ValueError(f"train must not set {sorted(forbidden)}: the grid sets them per design")
        sparse = [str(d) for d in self.designs if is_sparse(d)]
        if sparse and self.mode == "frozen":
            raise ValueError(
                f"mode frozen cannot screen the sparse designs {', '.join(sparse)}: its cached layer summaries "
                "drop the per-token states a sparse head reads through the MLM logits; use mode: lora"
            )
        return self

    @property
    def baseline_design(self) -> Design:
        return Design.parse(self.baseline)

    @property
    def designs(self) -> list[Design]:
        if self.only is None:
            return [Design(pooling=p, attention=a) for a in self.attentions for p in self.poolings]  # type: ignore[arg-type]
        chosen = list(dict.fromkeys(Design.parse(d) for d in self.only))
        order = {a: i for i, a in enumerate(ATTENTIONS)}
        return sorted(chosen, key=lambda d: order[d.attention])  # one backbone pass per attention mode

    def train_config(self, design: Design, output: Path) -> TrainConfig:
        fields = dict(self.train)
        if self.mode == "lora":
            fields.update(self.lora_train)
        fields.setdefault("data", "snli-triplets")
        fields.setdefault("seed", 42)
        if self.mode == "frozen":
            fields.pop("lora", None)
        if is_sparse(design):  # dot-product scores: the sparse loss defaults (dot, temperature 1), not cosine's
            for key in SPARSE_LOSS_FIELDS:
                fields.pop(key, None)
            fields.update(self.sparse_train)
        try:
            return TrainConfig(
                model=self.model,
                pooling=design.pooling,
                attention=design.attention,
                output=str(output),
                head_preset=self.head_preset if design.trainable_head else None,
                padding_side=self.padding_side,
                append_eos=None,
                **fields,
            )
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, "grid config, train")) from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "lora" else v
    return out


def grid_config(raw: dict[str, Any]) -> GridConfig:
    preset = raw.get("preset")
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown grid preset {preset!r}; choose one of {', '.join(PRESETS)}")
    merged = _merge(PRESETS[preset], raw) if preset else raw
    if preset and ("poolings" in raw or "attentions" in raw) and "only" not in raw:
        merged.pop("only", None)  # the user asked for a product of poolings x attentions
    try:
        return GridConfig(**merged)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "grid config")) from None


def load_grid_config(path: str | Path | None = None, **overrides: Any) -> GridConfig:
    raw = read_yaml(path) if path is not None else {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return grid_config(raw)


# ---------------------------------------------------------------------------------------------
# Building designs
# ---------------------------------------------------------------------------------------------
def build_design_modules(
    design: Design, hidden_size: int, num_layers: int, *, mode: str, head_preset: str
) -> list[Any]:
    """The modules a design puts after the source: its head, and in frozen mode the shared projection."""
    from embedlab.models.modules import Projection
    from embedlab.models.pooling import build_head

    head = build_head(
        design.pooling,
        hidden_size,
        num_layers=num_layers,
        attention=design.attention,
        preset=head_preset if design.trainable_head else None,
    )
    modules = [head]
    if mode == "frozen":
        modules.append(Projection(hidden_size, hidden_size, init="identity"))
    return modules


def design_parameters(
    design: Design, hidden_size: int, num_layers: int, *, mode: str, head_preset: str, lora_parameters: int
) -> dict[str, int]:
    """Trainable parameters of a design, counted on the meta device."""
    import torch

    with torch.device("meta"):
        head, *rest = build_design_modules(design, hidden_size, num_layers, mode=mode, head_preset=head_preset)
    projection = sum(m.num_parameters() for m in rest)
    lora = lora_parameters if mode == "lora" else 0
    return {
        "head_parameters": head.num_parameters(),
        "projection_parameters": projection,
        "lora_parameters": lora,
        "trainable_parameters": head.num_parameters() + projection + lora,
    }


def dry_run(grid: GridConfig) -> dict[str, Any]:
    """The designs and their parameter counts, from the model's config alone (meta device, offline)."""
    from embedlab.experiments.offline import backbone_on_meta, lora_parameter_count

    model, source = backbone_on_meta(grid.model)
    cfg = model.config
    hidden, layers = int(cfg.hidden_size), int(cfg.num_hidden_layers)
    lora_cfg = grid.train_config(grid.baseline_design, Path(grid.output)).lora if grid.mode == "lora" else None
    lora = lora_parameter_count(model, lora_cfg.r, lora_cfg.target_modules) if lora_cfg is not None else 0
    backbone = sum(p.numel() for p in model.parameters())
    rows = []
    for design in grid.designs:
        counts = design_parameters(
            design, hidden, layers, mode=grid.mode, head_preset=grid.head_preset, lora_parameters=lora
        )
        rows.append({"design": str(design), "paper_model": design.paper_model, **counts})
    base = next(r for r in rows if r["design"] == grid.baseline)
    for r in rows:
        r["more_than_baseline"] = r["trainable_parameters"] > base["trainable_parameters"]
    return {
        "model": grid.model,
        "source": source,
        "mode": grid.mode,
        "head_preset": grid.head_preset,
        "hidden_size": hidden,
        "layers": layers,
        "backbone_parameters": backbone,
        "designs": rows,
    }


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
def _eval_design(
    grid: GridConfig, tasks: list[Any], embedder: Any, out_dir: Path, extra: dict[str, Any], cache: bool
) -> None:
    from embedlab.eval.runner import EmbeddingCache, run_task

    template = TrainConfig.model_fields["instruction_template"].default
    template = grid.train.get("instruction_template", template) if grid.instructions else None
    for task in tasks:
        run_task(
            task,
            embedder,
            out_dir,
            dtype=grid.eval_dtype,
            instruction_template=template,
            cache=EmbeddingCache() if cache else None,
            extra_metadata=extra,
        )


def _timed_eval(
    grid: GridConfig,
    design: Design,
    tasks: list[Any],
    embedder: Any,
    results: Path,
    say: Any,
    mode: str,
    *,
    cache: bool,
    note: str | None = None,
) -> float:
    """Evaluate a trained design on every task, its results tagged with ``grid_mode``, ``grid_design`` (and
    ``note``); the seconds it took, rounded to 0.1."""
    extra: dict[str, Any] = {"grid_mode": mode, "grid_design": str(design)}
    if note is not None:
        extra["note"] = note
    say(f"{design.label}: evaluating {len(tasks)} tasks")
    t_eval = time.perf_counter()
    _eval_design(grid, tasks, embedder, results, extra, cache=cache)
    return round(time.perf_counter() - t_eval, 1)


def run_grid(grid: GridConfig, *, show_progress: ShowProgress = False) -> dict[str, Any]:
    """Train and evaluate every design, then write the report. ``show_progress`` (:mod:`embedlab.progress`):
    a bar over the designs, whose ``write`` gets the status lines (logged at INFO without a bar), and the
    trainers' bars."""
    from embedlab.eval.registry import select_tasks

    tasks = select_tasks(grid.tasks if isinstance(grid.tasks, str) else ",".join(grid.tasks), grid.task_dirs)
    sources = {
        d.source for st in grid.train_config(grid.baseline_design, Path(grid.output)).resolved_stages() for d in st.data
    }
    for source, task in CONTAMINATION.items():
        if source in sources and task in {t.name for t in tasks}:
            raise EmbedlabError(
                f"the grid trains on {source} and evaluates {task}, which contains it; drop one of them"
            )
    out = Path(grid.output)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "grid_config.json") as tmp:
        tmp.write_text(grid.model_dump_json(indent=2) + "\n")
    summary_path = out / "designs.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    started = time.perf_counter()
    sources_by_attention: dict[str, Any] = {}  # the frozen screen's cached features, one per attention mode
    with progress_bar(show_progress, total=len(grid.designs), desc="grid", unit="design") as bar:

        def say(msg: str) -> None:
            bar.write(f"grid {msg}")

        for design in grid.designs:
            results = out / "results" / design.dir_name
            if str(design) in summary and all((results / f"{t.name}.json").is_file() for t in tasks):
                say(f"{design.label}: done earlier, skipped")
                bar.update(1)
                continue
            cfg = grid.train_config(design, out / "models" / design.dir_name)
            if grid.mode == "frozen":
                summary[str(design)] = _run_frozen_design(
                    grid, cfg, design, tasks, results, say, sources_by_attention, show_progress
                )
            else:
                summary[str(design)] = _run_lora_design(grid, cfg, design, tasks, results, say, show_progress)
            write_json(summary_path, summary)
            bar.update(1)
    report = write_report(grid)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _frozen_source(grid: GridConfig, cfg: TrainConfig, attention: str, cache: dict[str, Any]) -> Any:
    from embedlab.experiments.frozen import CachedFeatureSource
    from embedlab.models.backbone import Backbone

    if attention not in cache:
        cache.clear()  # designs are sorted by attention: the other mode's features are no longer needed
        backbone = Backbone.from_name(grid.model, attention=attention, max_length=cfg.max_length)
        backbone = backbone.with_options(
            padding_side=grid.padding_side, append_eos=backbone.is_decoder
        )  # EOS for every design
        cache[attention] = CachedFeatureSource(backbone.to(cfg.torch_device()))
    return cache[attention]


def _run_frozen_design(
    grid: GridConfig,
    cfg: TrainConfig,
    design: Design,
    tasks: list[Any],
    results: Path,
    say: Any,
    cache: dict[str, Any],
    show_progress: ShowProgress = False,
) -> dict[str, Any]:
    """Train the design's head and the shared projection on cached features, then evaluate the chain."""
    import torch

    from embedlab.experiments.frozen import FROZEN_NOTE
    from embedlab.models import Embedder, Normalize
    from embedlab.train.trainer import Trainer

    t0 = time.perf_counter()
    source = _frozen_source(grid, cfg, design.attention, cache)
    torch.manual_seed(cfg.seed)  # every design's trainable modules start from the same draws
    modules = build_design_modules(
        design, source.hidden_size, source.num_layers, mode="frozen", head_preset=grid.head_preset
    )
    emb = Embedder([source, *modules, Normalize()]).to(cfg.torch_device())
    head, projection = modules
    say(
        f"{design.label}: training {head.num_parameters():,} head + {projection.num_parameters():,} projection "
        "parameters on cached features"
    )
    result = Trainer(cfg, emb, show_progress=show_progress).fit(
        overwrite=True
    )  # an interrupted screen design restarts: it is cheap
    for i, module in enumerate(modules, start=1):
        module.save(Path(cfg.output) / f"{i}_{module.folder_name}")
    info: dict[str, Any] = {
        "pooling": design.pooling,
        "attention": design.attention,
        "mode": "frozen",
        "paper_model": design.paper_model,
        "head_parameters": head.num_parameters(),
        "projection_parameters": projection.num_parameters(),
        "lora_parameters": 0,
        "trainable_parameters": result.trainable_parameters,
        "final_loss": result.losses[-1],
        "steps": result.steps,
        "candidates_per_query": result.candidates_per_query,
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    emb.eval()
    info["eval_seconds"] = _timed_eval(grid, design, tasks, emb, results, say, "frozen", cache=False, note=FROZEN_NOTE)
    return info


def _run_lora_design(
    grid: GridConfig,
    cfg: TrainConfig,
    design: Design,
    tasks: list[Any],
    results: Path,
    say: Any,
    show_progress: ShowProgress = False,
) -> dict[str, Any]:
    """LoRA + head training through the full trainer (resuming an interrupted run), then evaluation."""
    from embedlab.models import Embedder
    from embedlab.train.checkpoint import list_checkpoints
    from embedlab.train.trainer import Trainer, load_embedder

    done = Path(cfg.output) / "train_summary.json"
    if done.is_file() and (Path(cfg.output) / "model").is_dir():  # trained earlier, evaluation interrupted
        say(f"{design.label}: trained earlier, loading {cfg.output}/model")
        trained = Embedder.from_pretrained(Path(cfg.output) / "model")
    else:
        say(f"{design.label}: LoRA training")
        emb = load_embedder(cfg)
        emb = emb.with_options(append_eos=emb.source.is_decoder)  # the paper appends EOS for every design
        trainer = Trainer(cfg, emb, show_progress=show_progress)
        trainer.fit(resume=bool(list_checkpoints(trainer.ckpt_dir)))  # continue an interrupted design
        trainer.save()
        trained = trainer.embedder
    saved = json.loads(done.read_text())
    info: dict[str, Any] = {
        "pooling": design.pooling,
        "attention": design.attention,
        "mode": "lora",
        "paper_model": design.paper_model,
        "head_parameters": saved["head_parameters"],
        "projection_parameters": 0,
        "lora_parameters": saved["lora_parameters"],
        "trainable_parameters": saved["trainable_parameters"],
        "final_loss": saved["final_loss"],
        "steps": saved["steps"],
        "candidates_per_query": saved["candidates_per_query"],
        "train_seconds": round(saved["seconds"], 1),
        "tokens_per_s": round(saved["tokens"] / max(saved["seconds"], 1e-9), 1),
    }
    info["eval_seconds"] = _timed_eval(grid, design, tasks, trained, results, say, "lora", cache=True)
    return info


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def _design_columns(grid: GridConfig, summary: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per-design columns for the report and the CLI table: trainable parameters, marked when above the baseline's."""
    base = summary.get(grid.baseline, {}).get("trainable_parameters", 0)
    columns: dict[str, dict[str, str]] = {}
    for d in grid.designs:
        s = summary.get(str(d), {})
        n = s.get("trainable_parameters", 0)
        columns[d.dir_name] = {"design": d.label, "trainable": f"{n:,}" + (" ▲" if n > base else "")}
    return columns


def write_report(grid: GridConfig) -> dict[str, Any]:
    """report.md + report.png + report.json from the result folders (can be rerun alone)."""
    from embedlab.eval.report import compare, plot, to_json_dict, to_markdown
    from embedlab.experiments.frozen import FROZEN_NOTE

    out = Path(grid.output)
    summary = json.loads((out / "designs.json").read_text()) if (out / "designs.json").is_file() else {}
    dirs = [out / "results" / d.dir_name for d in grid.designs if (out / "results" / d.dir_name).is_dir()]
    base = out / "results" / grid.baseline_design.dir_name
    if base not in dirs or len(dirs) < 2:
        raise EmbedlabError(
            f"the grid in {out} has fewer than two evaluated designs (or lacks the baseline {grid.baseline})"
        )
    cmp = compare(dirs, baseline=base, resamples=grid.resamples)
    columns = _design_columns(grid, summary)
    lines = [f"# Design grid: {grid.model}, mode `{grid.mode}`", ""]
    if grid.mode == "frozen":
        lines += [f"> **{FROZEN_NOTE}.**", ""]
    lines += [
        f"Baseline: `{grid.baseline}`. Same data, steps and seed for every design; "
        f"tasks: {', '.join(sorted({t.task for t in cmp.tasks}))}. "
        "▲ = more trainable parameters than the baseline: a gain may come from capacity, not design.",
        "",
        "| design | paper | head | projection | LoRA | trainable | head / LoRA | steps | final loss | train s | eval s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base_n = summary.get(grid.baseline, {}).get("trainable_parameters", 0)
    for d in grid.designs:
        s = summary.get(str(d), {})
        hp, pp, lp, tp = (
            s.get(k, 0) for k in ("head_parameters", "projection_parameters", "lora_parameters", "trainable_parameters")
        )
        ratio = f"{hp / lp:.1f}×" if lp and hp else "–"
        loss = f"{s['final_loss']:.4f}" if s.get("final_loss") is not None else "–"
        mark = " ▲" if tp > base_n else ""
        lines.append(
            f"| {d} | {'Model ' + str(d.paper_model) if d.paper_model else '–'} | {hp:,} | {pp:,} | {lp:,} | "
            f"{tp:,}{mark} | {ratio} | {s.get('steps', 0)} | {loss} | {s.get('train_seconds', 0)} | "
            f"{s.get('eval_seconds', 0)} |"
        )
    ns = sorted({r.comparison.n for r in cmp.categories})
    lines += [
        "",
        "Minimum attainable two-sided Wilcoxon p per category size: "
        + ", ".join(f"n={n}: {2 / 2**n:.3g}" for n in ns if n)
        + " — a category with n ≤ 5 datasets can never reach p < 0.05 by Wilcoxon; the hierarchical bootstrap "
        "(datasets, then examples within each) gives a CI of the category's mean Δ that can.",
        "",
    ]
    lines.append(to_markdown(cmp, extra_columns={k: {"trainable": v["trainable"]} for k, v in columns.items()}))
    text = "\n".join(lines)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(text)
    plot(cmp, out / "report.png")
    data = {"baseline": grid.baseline, "mode": grid.mode, "designs": summary, "comparison": to_json_dict(cmp)}
    write_json(out / "report.json", data)
    return {
        **data,
        "markdown": text,
        "comparison": data["comparison"],
        "table": cmp,
        "columns": columns,
        "report": str(out / "report.md"),
        "plot": str(out / "report.png"),
    }
