"""``embedlab train``, ``mine``, ``grid`` and ``distill``: making models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from embedlab.cli._common import (
    DEFAULT_MODEL,
    AttentionOpt,
    OverwriteOpt,
    PoolingOpt,
    err,
    input_file,
    load_embedder,
    on_interrupt,
    output_file,
    output_folder,
    show_table,
    wide,
)


def train(
    config: Annotated[Path, typer.Argument(help="a YAML training config (see docs/training.md)")],
    output: Annotated[str | None, typer.Option(help="override the config's output directory")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue from the newest checkpoint in OUTPUT/checkpoints")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="discard the model, checkpoints and log already in OUTPUT and start over"),
    ] = False,
) -> None:
    """Contrastive fine-tuning (InfoNCE with in-batch and hard negatives, GradCache, LoRA, stages) from a validated config.
    Launch with torchrun --nproc-per-node N for data parallelism."""
    from embedlab.train import Trainer, load_config

    cfg = load_config(config, output=output)
    trainer = Trainer(cfg)
    with on_interrupt(f"checkpoints so far are kept in {trainer.out}; rerun with --resume to continue"):
        result = trainer.fit(resume=resume, overwrite=overwrite)
    loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
    if result.already_finished:
        if trainer.rank == 0:
            err.print(
                f"{trainer.out} already holds a finished run ({result.steps} steps, final loss {loss}): nothing to resume; "
                f"pass --overwrite to train it again",
                highlight=False,
            )
        return
    path = trainer.save()
    if trainer.rank == 0:
        resumed = f", resumed at step {result.resumed_from_step}" if result.resumed_from_step else ""
        err.print(
            f"trained {cfg.model} for {result.steps} steps in {result.seconds:.0f} s{resumed} "
            f"(final loss {loss}, {result.candidates_per_query:.0f} candidates per query, "
            f"{result.tokens / max(result.seconds, 1e-9):.0f} tokens/s, {result.truncated_texts} texts truncated) -> {path}",
            highlight=False,
        )


def mine(
    data: Annotated[
        str, typer.Option(help="(query, positive) pairs: JSONL, TSV, or an adapter (stsb-pairs, scifact-train, …)")
    ],
    out_file: Annotated[Path, typer.Option("--out", help="JSONL rows {query, positive, negatives}")],
    model: Annotated[str, typer.Option("--model", "-m", help="the teacher")] = DEFAULT_MODEL,
    corpus: Annotated[
        Path | None, typer.Option(help="candidate documents (JSONL id/text); default: every positive")
    ] = None,
    num_negatives: Annotated[int, typer.Option(min=1)] = 4,
    margin: Annotated[
        float, typer.Option(help="keep a negative only if its score < (1 - margin) x the positive's")
    ] = 0.05,
    strategy: Annotated[
        str, typer.Option(help="topk (NV-Retriever TopK-PercPos) or lemon (cluster neighbourhoods)")
    ] = "topk",
    clusters: Annotated[
        int | None, typer.Option(min=1, help="k-means clusters for lemon (default sqrt(corpus))")
    ] = None,
    probe: Annotated[int, typer.Option(min=1, help="nearest clusters pooled for lemon")] = 3,
) -> None:
    """Mine hard negatives with a teacher, never returning a known positive."""
    from embedlab.corpus import read_documents as read_corpus
    from embedlab.io import atomic_path
    from embedlab.train.data import load_pairs
    from embedlab.train.mining import mine_texts
    from embedlab.validation import finite_float

    finite_float("--margin", margin, low=0.0, high=1.0, high_open=True)
    output_file(out_file, "--out")
    input_file(corpus, "--corpus")
    pairs = load_pairs(data)
    docs = read_corpus(corpus)[1] if corpus else None
    teacher = load_embedder(model)
    with err.status("mining…"):
        rows = mine_texts(
            teacher,
            pairs,
            docs,
            num_negatives=num_negatives,
            relative_margin=margin,
            strategy=strategy,
            n_clusters=clusters,
            probe=probe,
        )
    with atomic_path(out_file) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    found = sum(len(r["negatives"]) for r in rows)
    err.print(
        f"mined {found} negatives for {len(rows)} pairs ({found / max(1, len(rows)):.2f} each) -> {out_file}",
        highlight=False,
    )


def grid(
    config: Annotated[
        Path | None, typer.Argument(help="a YAML grid config (see docs/grid.md); optional with --preset")
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help="paper (GPU, Mistral-7B, Models 1-5), cpu-small (make demo) or cpu-full")
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="lora (the paper's protocol) or frozen (a fair screen on cached features)")
    ] = None,
    output: Annotated[str | None, typer.Option(help="where models, results and the report go")] = None,
    tasks: Annotated[str | None, typer.Option(help="all, quick or comma-separated task names")] = None,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="rebuild the report from existing results")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the designs and parameter counts; train nothing (offline)")
    ] = False,
) -> None:
    """The headline paper's experiment: train every pooling x attention design the same way, evaluate,
    and report which differences are significant."""
    from embedlab.errors import UsageError
    from embedlab.eval.report import to_rich_table
    from embedlab.experiments.grid import dry_run as grid_dry_run
    from embedlab.experiments.grid import load_grid_config, run_grid, write_report

    if config is None and preset is None:
        raise UsageError("give a grid config file or --preset (paper, cpu-small, cpu-full)")
    cfg = load_grid_config(config, preset=preset, mode=mode, output=output, tasks=tasks)
    console = wide()
    if dry_run:
        plan = grid_dry_run(cfg)
        rows = [
            (
                r["design"],
                f"Model {r['paper_model']}" if r["paper_model"] else "–",
                f"{r['head_parameters']:,}",
                f"{r['projection_parameters']:,}",
                f"{r['lora_parameters']:,}",
                f"{r['trainable_parameters']:,}" + (" ▲" if r["more_than_baseline"] else ""),
            )
            for r in plan["designs"]
        ]
        show_table(
            rows,
            ("design", "paper", ("head", "right"), ("projection", "right"), ("LoRA", "right"), ("trainable", "right")),
            title=f"{plan['source']}: {plan['layers']} layers x {plan['hidden_size']}, "
            f"{plan['backbone_parameters']:,} backbone parameters; mode {plan['mode']}, head preset {plan['head_preset']}",
            caption="▲ = more trainable parameters than the baseline",
            console=console,
            no_wrap=True,
        )
        return
    with on_interrupt("finished designs are kept in the grid's output; rerun the same command to continue"):
        report = write_report(cfg) if report_only else run_grid(cfg, show_progress=True)
    console.print(to_rich_table(report["table"], extra_columns=report["columns"]))
    if cfg.mode == "frozen":
        from embedlab.experiments.frozen import FROZEN_NOTE

        err.print(f"[yellow]{FROZEN_NOTE}[/yellow]")
    took = f" in {report['seconds']:.0f} s" if "seconds" in report else ""
    err.print(f"report{took}: {report['report']} (per-task bootstrap CIs) and {report['plot']}", highlight=False)


def distill(
    model: Annotated[
        str, typer.Argument(help="the teacher: alias, saved embedder, HF directory, .gguf file or hub id")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="the static model's folder (model2vec's layout)")],
    dims: Annotated[
        int | None, typer.Option(min=1, help="PCA width (default: 256, or the teacher's width if smaller)")
    ] = None,
    corpus: Annotated[
        Path | None,
        typer.Option(
            help="texts (one a line, or JSONL with 'text') for SIF weights from real token frequencies; default: Zipf by token rank"
        ),
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="a named prompt of the teacher, put before every token")] = None,
    pooling: PoolingOpt = None,
    attention: AttentionOpt = None,
    sif_coefficient: Annotated[float, typer.Option("--sif-a", help="a in a/(a + p(w))")] = 1e-4,
    no_pca: Annotated[bool, typer.Option("--no-pca", help="keep the teacher's width and axes")] = False,
    prefix_space: Annotated[
        bool | None,
        typer.Option(
            "--prefix-space/--no-prefix-space",
            help="byte-level BPE teachers: the student's tokenizer adds (or not) a space before a text, so its "
            "first word is cut into word-start pieces (model2vec always adds one); default: the teacher's setting",
        ),
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Distil MODEL into a static embedder (Model2Vec-style): ~100x faster encoding, loadable by embedlab,
    model2vec and sentence-transformers (see docs/static.md)."""
    from embedlab.errors import UsageError
    from embedlab.io import allow_overwrite
    from embedlab.models.static import DEFAULT_DIMS
    from embedlab.models.static import distill as run_distill
    from embedlab.validation import at_most, finite_float

    finite_float("--sif-a", sif_coefficient, low=0.0, low_open=True)
    if no_pca and dims is not None:
        raise UsageError("give --dims or --no-pca, not both")
    input_file(corpus, "--corpus")
    if corpus is not None:
        read_texts_check(corpus)
    output_folder(out_dir, overwrite)
    teacher = load_embedder(model, pooling, attention)
    if dims is not None:
        at_most("--dims", dims, teacher.output_dim, "the teacher's width")
    width = None if no_pca else dims if dims is not None else min(DEFAULT_DIMS, teacher.output_dim)
    with on_interrupt(f"nothing was written to {out_dir} (the model is written at the end)"):
        student, provenance = run_distill(
            teacher,
            dims=width,
            corpus=corpus,
            sif_coefficient=sif_coefficient,
            prompt_name=prompt,
            prefix_space=prefix_space,
            show_progress=True,
        )
    provenance["teacher_name"] = model
    with allow_overwrite(overwrite):
        student.save(out_dir, provenance=provenance)
    err.print(
        f"distilled {provenance['vocabulary']} tokens -> {out_dir} ({student.output_dim}-d, "
        f"{provenance['weighting']} weights, PCA keeps {100 * provenance['explained_variance']:.1f}% of the variance) "
        f"in {provenance['seconds']:.1f} s",
        highlight=False,
    )


def read_texts_check(corpus: Path) -> None:
    """Read the SIF corpus once before the teacher loads, so a bad file fails in a second, not after the load."""
    from embedlab.cli._common import read_texts

    read_texts(corpus)


def register(app: typer.Typer) -> None:
    for fn in (train, mine, grid, distill):
        app.command()(fn)
