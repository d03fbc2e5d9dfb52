"""``embedlab tasks``, ``eval`` and ``compare``: evaluation and its significance report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from embedlab.cli._common import (
    DEFAULT_MODEL,
    AttentionOpt,
    DType,
    DTypeOpt,
    ModelOpt,
    PoolingOpt,
    Runtime,
    RuntimeOpt,
    err,
    load_embedder,
    on_interrupt,
    output_file,
    output_folder,
    show_table,
)

TaskDirOpt = Annotated[list[Path] | None, typer.Option("--task-dir", help="a user task folder with task.json/yaml")]


def tasks(task_dir: TaskDirOpt = None) -> None:
    """The evaluation tasks over the shared data (and any --task-dir), with type, size and MTEB name."""
    from embedlab.errors import EmbedlabError
    from embedlab.eval.registry import builtin_tasks, load_task_dir

    available = builtin_tasks()
    for d in task_dir or []:
        t = load_task_dir(d)
        available[t.name] = t
    if not available:
        raise EmbedlabError("no tasks: set EMBEDLAB_DATA to the benchmark data directory")
    rows = []
    for t in available.values():
        size = sum(p.stat().st_size for p in t.all_paths() if p.is_file())
        rows.append(
            (
                t.name,
                t.type,
                t.main_metric,
                " → ".join(t.evaluation_splits),
                f"{size / 1e6:.1f} MB",
                t.mteb_name or "-",
                "yes" if t.quick else "",
            )
        )
    show_table(rows, ("task", "type", "metric", "splits", "size", "MTEB name", "quick"), title="evaluation tasks")


def eval_(
    out_dir: Annotated[Path, typer.Option("--out", help="one JSON per task is written here")],
    model: ModelOpt = DEFAULT_MODEL,
    task_names: Annotated[
        str | None,
        typer.Option("--tasks", help="NAME,NAME (any case) | all | quick; default: the --task-dir tasks, else quick"),
    ] = None,
    task_dir: TaskDirOpt = None,
    pooling: PoolingOpt = None,
    attention: AttentionOpt = None,
    query_prompt: Annotated[str | None, typer.Option(help="named prompt for queries/sentences")] = None,
    document_prompt: Annotated[str | None, typer.Option(help="named prompt for documents")] = None,
    instructions: Annotated[
        bool, typer.Option("--instructions", help="prefix query-side texts with each task's E5-style instruction")
    ] = False,
    instruction_template: Annotated[str, typer.Option(help="with --instructions")] = "Instruct: {task}\nQuery: {text}",
    dtype: DTypeOpt = DType.fp32,
    runtime: RuntimeOpt = Runtime.torch,
    bm25: Annotated[
        list[str] | None,
        typer.Option(
            "--bm25",
            help="with -m bm25: KEY=VALUE, repeatable (k1, b, method, stemmer, stopwords, delta; docs/sparse.md)",
        ),
    ] = None,
    hybrid: Annotated[
        str | None,
        typer.Option(
            "--hybrid",
            help="bm25 or a second model: retrieval tasks are scored by fusing its ranking with -m's (depth 100)",
        ),
    ] = None,
    hybrid_pooling: Annotated[
        str | None, typer.Option("--hybrid-pooling", help="with --hybrid MODEL: that model's pooling (e.g. splade)")
    ] = None,
    fusion: Annotated[
        str | None, typer.Option("--fusion", help="with --hybrid: rrf (k 60; the default) | convex (min-max)")
    ] = None,
    fusion_weight: Annotated[
        float | None,
        typer.Option("--fusion-weight", help="with --fusion convex: -m's weight A in (0, 1); --hybrid's is 1 - A"),
    ] = None,
) -> None:
    """Evaluate a model on tasks; a task that fails is reported and the others still run. ``-m bm25``
    scores retrieval tasks with BM25 instead of a model (no vectors: other task types are refused).
    ``--hybrid bm25|MODEL`` scores retrieval tasks by fusing -m's ranking with that retriever's
    (``--fusion rrf|convex``; docs/evaluation.md); other task types are refused."""
    from embedlab.errors import EmbedlabError, UsageError
    from embedlab.eval.registry import select_tasks
    from embedlab.eval.runner import EmbeddingCache, check_retrieval_tasks, run_retriever_task, run_task

    lexical = model.lower() == "bm25"
    hybrid_lexical = hybrid is not None and hybrid.lower() == "bm25"
    if bm25 and not (lexical or hybrid_lexical):
        raise UsageError("--bm25 sets BM25's parameters: use it with -m bm25 (or --hybrid bm25)")
    if hybrid is None:
        flags = {"--fusion": fusion, "--fusion-weight": fusion_weight, "--hybrid-pooling": hybrid_pooling}
        given = [flag for flag, value in flags.items() if value is not None]
        if given:
            raise UsageError(f"{given[0]} applies to a hybrid: use it with --hybrid bm25|MODEL")
    else:
        from embedlab.eval.hybrid import fusion_params, run_hybrid

        if lexical and hybrid_lexical:
            raise UsageError("-m bm25 --hybrid bm25 fuses BM25 with itself: make one of them a model")
        if hybrid_pooling and hybrid_lexical:
            raise UsageError("--hybrid-pooling applies to a --hybrid model, not to bm25")
        fusion = fusion or "rrf"
        params = fusion_params(fusion, fusion_weight)  # an unknown fusion or a bad weight: one line, exit 2
    chosen = select_tasks(task_names, task_dir)
    if hybrid is not None:
        check_retrieval_tasks(chosen, "a hybrid", "fuses rankings, so it")
    if lexical:
        model_flags = {
            "--pooling": pooling,
            "--attention": attention,
            "--query-prompt": query_prompt,
            "--document-prompt": document_prompt,
            "--instructions": instructions,
        }
        given = [flag for flag, value in model_flags.items() if value]
        if given:
            raise UsageError(f"{given[0]} applies to embedding models, not to -m bm25 (a model-free retriever)")
        check_retrieval_tasks(chosen, "BM25")
    if lexical or hybrid_lexical:
        from embedlab.index.lexical import BM25Index
        from embedlab.validation import key_values

        options = key_values("--bm25", bm25 or [])
        title = BM25Index.from_options(options).describe()  # bad parameters are refused before any work
    output_folder(out_dir, overwrite=True)  # one result file per task, replaced as it is rerun
    if not lexical:
        emb = load_embedder(model, pooling, attention)
        title = f"{model}: {emb.head.name} pooling, {emb.attention} attention"
    if hybrid is not None:
        partner = None if hybrid_lexical else load_embedder(hybrid, hybrid_pooling)
        title = f"hybrid {model} + {hybrid} ({fusion})"
    prompts = {"query": query_prompt, "document": document_prompt}
    rows = []
    failed = 0
    with on_interrupt(f"the results of the finished tasks are kept in {out_dir}"):
        for task in chosen:
            with err.status(f"{task.name}…"):
                try:
                    if hybrid is not None:
                        from embedlab.index.fusion import fuse

                        first = BM25Index.from_options(options) if lexical else emb
                        second = BM25Index.from_options(options) if hybrid_lexical else partner
                        r = run_hybrid(
                            task,
                            out_dir,
                            [(model, first, prompts), (hybrid, second, {})],
                            fusion,
                            params,
                            fuse,
                            dtype=dtype.value,
                            runtime=runtime.value,
                            instruction_template=instruction_template if instructions else None,
                        )
                    elif lexical:
                        index = BM25Index.from_options(options)
                        r = run_retriever_task(
                            task,
                            index.retrieve,
                            out_dir,
                            retriever="bm25",
                            description=index.describe(),
                            extra_metadata={"bm25": index.params()},
                        )
                    else:
                        r = run_task(
                            task,
                            emb,
                            out_dir,
                            prompts=prompts,
                            dtype=dtype.value,
                            cache=EmbeddingCache(),
                            runtime=runtime.value,
                            instruction_template=instruction_template if instructions else None,
                        )
                except EmbedlabError as exc:
                    failed += 1
                    err.print(f"[red]task {task.name} failed:[/red] {exc}", highlight=False)
                    rows.append((task.name, task.type, task.main_metric, "[red]failed[/red]", "-"))
                    continue
            rows.append(
                (
                    task.name,
                    task.type,
                    task.main_metric,
                    f"{100 * r['main_score']:.2f}",
                    f"{r['metadata']['evaluation_time_s']:.1f}",
                )
            )
    show_table(rows, ("task", "type", "metric", "score", "time s"), title=title)
    if failed:
        raise EmbedlabError(f"{failed} of {len(chosen)} tasks failed (results of the others are in {out_dir})")


def compare(
    dirs: Annotated[list[Path], typer.Argument(help="two or more result folders written by `embedlab eval`")],
    baseline: Annotated[
        Path | None, typer.Option(help="the folder others are compared with (default: the first)")
    ] = None,
    out_md: Annotated[Path, typer.Option("--out", help="markdown report")] = Path("comparison.md"),
    png: Annotated[Path, typer.Option("--png", help="category and per-task Δ chart with bootstrap CIs")] = Path(
        "comparison.png"
    ),
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the report as JSON")] = None,
    resamples: Annotated[int, typer.Option(min=100, help="bootstrap resamples (per task and per category)")] = 1000,
    seed: int = 0,
) -> None:
    """Per category: baseline score, each model's Δ, Wilcoxon p (raw and Holm-corrected) and a
    hierarchical-bootstrap 95% CI; per task: paired-bootstrap CIs (in the markdown and PNG)."""
    from embedlab.eval.report import compare as compare_results
    from embedlab.eval.report import plot, to_json_dict, to_markdown, to_rich_table
    from embedlab.io import atomic_path

    for path, flag in ((out_md, "--out"), (png, "--png"), (json_out, "--json")):
        output_file(path, flag)
    with err.status("bootstrapping…"):
        report = compare_results(list(dirs), baseline, resamples=resamples, seed=seed)
    with atomic_path(out_md) as tmp:
        tmp.write_text(to_markdown(report), encoding="utf-8")
    plot(report, png)
    if json_out is not None:
        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(to_json_dict(report), indent=2) + "\n", encoding="utf-8")
    from embedlab.cli._common import out

    out.print(to_rich_table(report))
    err.print(f"wrote {out_md}, {png}" + (f" and {json_out}" if json_out is not None else ""), highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(tasks)
    app.command("eval")(eval_)
    app.command()(compare)
