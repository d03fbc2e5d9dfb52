"""The ``embedlab`` command line: a thin typer layer that parses, calls the library, and prints."""
from __future__ import annotations

import json
import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from embedlab.errors import EmbedlabError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Build, evaluate and serve LLM-based text embedders.")
out = Console()
err = Console(stderr=True, soft_wrap=True)


class Attention(str, Enum):
    causal = "causal"
    bidirectional = "bidirectional"


class DType(str, Enum):
    auto = "auto"  # bf16 where the hardware runs it natively, else fp32
    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"  # the backbone's linear layers dynamically quantised to int8 (CPU); see docs/encode_throughput.md


class Runtime(str, Enum):
    torch = "torch"
    onnx = "onnx"  # the backbone exported to ONNX and run by ONNX Runtime (CPU; embedlab.models.onnx_runtime)


RUNTIME_HELP = "torch, or onnx: the backbone in ONNX Runtime (CPU, fp32 or int8; exported once and cached; pip install 'embedlab[onnx]')"


def _embedder(model: str, pooling: Optional[str], attention: Optional[Attention], **kw: Any) -> Any:
    from embedlab.models import Embedder

    with err.status(f"loading {model}…"):
        return Embedder.from_pretrained(model, pooling=pooling, attention=attention.value if attention else None, **kw)


@app.command()
def models() -> None:
    """List the packaged model aliases and where each comes from."""
    from embedlab.models.aliases import ALIASES, DEFAULT_MODEL

    table = Table(title="packaged models (any local HF directory, saved embedder, .gguf file or hub id also works)")
    for col in ("alias", "model", "package", "status", "hub id"):
        table.add_column(col)
    for alias in ALIASES.values():
        try:
            where = str(alias.locate())
            status = "installed"
        except EmbedlabError:
            where, status = alias.install, "[red]missing[/red]"
        name = alias.name + (" (default)" if alias.name == DEFAULT_MODEL else "")
        table.add_row(name, alias.description, f"{alias.package}\n{where}", status, alias.hub_id)
    out.print(table)


@app.command()
def info(
    model: str = typer.Argument(..., help="alias, saved embedder, HF directory, .gguf file or hub id"),
    pooling: Optional[str] = typer.Option(None, help="override the pooling head"),
    attention: Optional[Attention] = typer.Option(None, help="override the attention mode (decoders)"),
) -> None:
    """Architecture, layers, dims, parameters, attention mode, pooling and prompts of a model."""
    emb = _embedder(model, pooling, attention)
    table = Table(show_header=False, title=model)
    for key, value in emb.describe().items():
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    out.print(table)


@app.command()
def encode(
    input: str = typer.Option(..., "--input", "-i", help="a text file (one text per line), JSONL with 'text', or - for stdin"),
    output: Path = typer.Option(..., "--output", "-o", help="OUT.npy or OUT.jsonl"),
    model: str = typer.Option("minilm-l6", "--model", "-m", help="alias, saved embedder, HF directory, .gguf or hub id"),
    pooling: Optional[str] = typer.Option(None, help="cls|mean|weighted_mean|last_token|latent_attention|multi_layer"),
    attention: Optional[Attention] = typer.Option(None, help="decoders only"),
    prompt: Optional[str] = typer.Option(None, help="a named prompt of the model (e.g. query, document)"),
    instruction: Optional[str] = typer.Option(None, help="a free prompt prepended to every text"),
    dtype: DType = typer.Option(DType.fp32, help="bf16 autocast is ~3x faster on CPUs with native bf16 (AVX-512 BF16, AMX) and ~5x slower without; auto picks; int8 = dynamic int8 linear layers (CPU, approximate: see docs/encode_throughput.md)"),
    dim: Optional[int] = typer.Option(None, help="Matryoshka truncation to the first DIM dimensions"),
    max_length: Optional[int] = typer.Option(None, help="truncate texts to this many tokens"),
    runtime: Runtime = typer.Option(Runtime.torch, help=RUNTIME_HELP),
) -> None:
    """Embed texts into a .npy matrix or JSONL file."""
    import numpy as np

    from embedlab.io import atomic_path, read_texts

    suffix = output.suffix.lower()
    if suffix not in (".npy", ".jsonl"):
        raise EmbedlabError(f"--output must end in .npy or .jsonl, got {output}")
    texts = read_texts(input, stdin_text=sys.stdin.read() if input == "-" else None)
    emb = _embedder(model, pooling, attention, dim=dim, max_length=max_length)
    vectors = emb.encode(texts, prompt_name=prompt, prompt=instruction, dtype=dtype.value, show_progress=True,
                         runtime=runtime.value)
    with atomic_path(output) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, vectors)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for i, vec in enumerate(vectors):
                    f.write(json.dumps({"index": i, "embedding": [round(float(x), 7) for x in vec]}) + "\n")
    stats = emb.last_stats
    err.print(
        f"encoded {stats.texts} texts -> {output} ({vectors.shape[1]}-d, {stats.tokens} tokens, "
        f"{stats.texts / max(stats.seconds, 1e-9):.1f} texts/s); {stats.truncated} truncated to {stats.max_length} tokens"
    )


@app.command()
def tasks(task_dir: Optional[list[Path]] = typer.Option(None, "--task-dir", help="a user task folder with task.json/yaml")) -> None:
    """The evaluation tasks over the shared data (and any --task-dir), with type, size and MTEB name."""
    from embedlab.eval.registry import builtin_tasks, load_task_dir

    available = builtin_tasks()
    for d in task_dir or []:
        t = load_task_dir(d)
        available[t.name] = t
    if not available:
        raise EmbedlabError("no tasks: set EMBEDLAB_DATA to the benchmark data directory")
    table = Table(title="evaluation tasks")
    for col in ("task", "type", "metric", "splits", "size", "MTEB name", "quick"):
        table.add_column(col)
    for t in available.values():
        size = sum(p.stat().st_size for p in t.all_paths() if p.is_file())
        table.add_row(t.name, t.type, t.main_metric, " → ".join(t.evaluation_splits), f"{size / 1e6:.1f} MB", t.mteb_name or "-",
                      "yes" if t.quick else "")
    out.print(table)


@app.command("eval")
def eval_(
    model: str = typer.Option("minilm-l6", "--model", "-m"),
    task_names: Optional[str] = typer.Option(None, "--tasks", help="NAME,NAME (any case) | all | quick; default: the --task-dir tasks, else quick"),
    out_dir: Path = typer.Option(..., "--out", help="one JSON per task is written here"),
    task_dir: Optional[list[Path]] = typer.Option(None, "--task-dir"),
    pooling: Optional[str] = typer.Option(None),
    attention: Optional[Attention] = typer.Option(None),
    query_prompt: Optional[str] = typer.Option(None, help="named prompt for queries/sentences"),
    document_prompt: Optional[str] = typer.Option(None, help="named prompt for documents"),
    instructions: bool = typer.Option(False, "--instructions", help="prefix query-side texts with each task's E5-style instruction"),
    instruction_template: str = typer.Option("Instruct: {task}\nQuery: {text}", help="with --instructions"),
    dtype: DType = typer.Option(DType.fp32),
    runtime: Runtime = typer.Option(Runtime.torch, help=RUNTIME_HELP),
) -> None:
    """Evaluate a model on tasks; a task that fails is reported and the others still run."""
    from embedlab.eval.registry import select_tasks
    from embedlab.eval.runner import EmbeddingCache, run_task

    chosen = select_tasks(task_names, task_dir)
    emb = _embedder(model, pooling, attention)
    prompts = {"query": query_prompt, "document": document_prompt}
    table = Table(title=f"{model}: {emb.head.name} pooling, {emb.attention} attention")
    for col in ("task", "type", "metric", "score", "time s"):
        table.add_column(col)
    failed = 0
    for task in chosen:
        with err.status(f"{task.name}…"):
            try:
                r = run_task(task, emb, out_dir, prompts=prompts, dtype=dtype.value, cache=EmbeddingCache(), runtime=runtime.value,
                             instruction_template=instruction_template if instructions else None)
            except EmbedlabError as exc:
                failed += 1
                err.print(f"[red]task {task.name} failed:[/red] {exc}", highlight=False)
                table.add_row(task.name, task.type, task.main_metric, "[red]failed[/red]", "-")
                continue
        table.add_row(task.name, task.type, task.main_metric, f"{100 * r['main_score']:.2f}", f"{r['metadata']['evaluation_time_s']:.1f}")
    out.print(table)
    if failed:
        raise EmbedlabError(f"{failed} of {len(chosen)} tasks failed (results of the others are in {out_dir})")


@app.command()
def compare(
    dirs: list[Path] = typer.Argument(..., help="two or more result folders written by `embedlab eval`"),
    baseline: Optional[Path] = typer.Option(None, help="the folder others are compared with (default: the first)"),
    out_md: Path = typer.Option(Path("comparison.md"), "--out", help="markdown report"),
    png: Path = typer.Option(Path("comparison.png"), "--png", help="category and per-task Δ chart with bootstrap CIs"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the report as JSON"),
    resamples: int = typer.Option(1000, min=100, help="bootstrap resamples (per task and per category)"),
    seed: int = typer.Option(0),
) -> None:
    """Per category: baseline score, each model's Δ, Wilcoxon p (raw and Holm-corrected) and a
    hierarchical-bootstrap 95% CI; per task: paired-bootstrap CIs (in the markdown and PNG)."""
    from embedlab.eval.report import compare as compare_results
    from embedlab.eval.report import plot, to_json_dict, to_markdown, to_rich_table
    from embedlab.io import atomic_path

    with err.status("bootstrapping…"):
        report = compare_results(list(dirs), baseline, resamples=resamples, seed=seed)
    with atomic_path(out_md) as tmp:
        tmp.write_text(to_markdown(report), encoding="utf-8")
    plot(report, png)
    if json_out is not None:
        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(to_json_dict(report), indent=2) + "\n", encoding="utf-8")
    out.print(to_rich_table(report))
    err.print(f"wrote {out_md}, {png}" + (f" and {json_out}" if json_out is not None else ""))


index_app = typer.Typer(no_args_is_help=True, help="Build and maintain compressed vector indexes.")
app.add_typer(index_app, name="index")


def _index_model(emb: Any, name: str, query_prompt: Optional[str], document_prompt: Optional[str]) -> dict[str, Any]:
    from embedlab.index.shards import model_record

    return model_record(emb, name, query_prompt, document_prompt)


def _model_for_index(index: Any) -> Any:
    m = index.model
    if not m.get("name"):
        raise EmbedlabError("this index records no model: search it from Python with your own query vectors")
    emb = _embedder(m["name"], m.get("pooling"), Attention(m["attention"]) if m.get("attention") else None)
    index.check_model(_index_model(emb, m["name"], m.get("query_prompt"), m.get("document_prompt")))
    return emb


@index_app.command("build")
def index_build(
    corpus: Optional[Path] = typer.Option(None, help="JSONL with id and text, or a BEIR corpus.jsonl[.gz]"),
    out_dir: Path = typer.Option(..., "--out"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="default minilm-l6, or the shards' model"),
    codec: str = typer.Option("int8", help="float32|float16|int8|binary|pq<M>|ivf<N>,pq<M>|hnsw[,int8], optional mrl<D>: prefix"),
    from_embeddings: Optional[Path] = typer.Option(None, "--from-embeddings", help="a shard directory from embed-corpus (no re-encoding)"),
    rescore_copy: str = typer.Option("float32", "--rescore-copy", help="float32 or int8 copy kept on disk for rescoring"),
    pooling: Optional[str] = typer.Option(None),
    attention: Optional[Attention] = typer.Option(None),
    query_prompt: Optional[str] = typer.Option(None),
    document_prompt: Optional[str] = typer.Option(None),
    dtype: DType = typer.Option(DType.fp32),
    runtime: Runtime = typer.Option(Runtime.torch, help=RUNTIME_HELP),
) -> None:
    """Embed a corpus and write a compressed index directory (atomically)."""
    from embedlab.index import VectorIndex, parse_codec, read_corpus

    parse_codec(codec)  # fail on a bad codec before encoding anything
    if from_embeddings is not None:
        from embedlab.index.shards import build_index_from_shards

        if corpus is not None:
            raise EmbedlabError("give --corpus or --from-embeddings, not both")
        index = build_index_from_shards(from_embeddings, codec, rescore=rescore_copy, model=model, query_prompt=query_prompt,
                                        load_model=lambda name, pool, att: _embedder(name, pool, Attention(att) if att else None))
        index.save(out_dir)
        err.print(f"indexed {len(index)} documents from {from_embeddings} with {codec} -> {out_dir}")
        return
    if corpus is None:
        raise EmbedlabError("give --corpus FILE (or --from-embeddings DIR)")
    model = model or "minilm-l6"
    ids, texts = read_corpus(corpus)
    emb = _embedder(model, pooling, attention)
    vectors = emb.encode(texts, prompt_name=document_prompt, dtype=dtype.value, show_progress=True, runtime=runtime.value)
    with err.status("building the index…"):
        index = VectorIndex.build(vectors, ids, codec, texts=texts, rescore=rescore_copy,
                                  model=_index_model(emb, model, query_prompt, document_prompt))
        index.save(out_dir)
    err.print(f"indexed {len(index)} documents with {codec} ({index.codec.bytes_per_vector(index.dim):g} bytes/vector) -> {out_dir}")


@index_app.command("add")
def index_add(directory: Path = typer.Argument(...), corpus: Path = typer.Option(...), dtype: DType = typer.Option(DType.fp32),
              runtime: Runtime = typer.Option(Runtime.torch, help=RUNTIME_HELP)) -> None:
    """Embed and append documents to an index."""
    from embedlab.index import VectorIndex, read_corpus

    index = VectorIndex.load(directory)
    ids, texts = read_corpus(corpus)
    emb = _model_for_index(index)
    vectors = emb.encode(texts, prompt_name=index.model.get("document_prompt"), dtype=dtype.value, show_progress=True,
                         runtime=runtime.value)
    index.add(vectors, ids, texts if index.texts is not None else None)
    index.save(directory)
    err.print(f"added {len(ids)} documents; the index holds {len(index)}")


@index_app.command("delete")
def index_delete(directory: Path = typer.Argument(...), ids: Path = typer.Option(..., help="a file with one id per line")) -> None:
    """Delete documents by id."""
    from embedlab.index import VectorIndex
    from embedlab.io import read_texts

    index = VectorIndex.load(directory)
    removed = index.delete([line.strip() for line in read_texts(ids) if line.strip()])
    index.save(directory)
    err.print(f"deleted {removed} documents; the index holds {len(index)}")


@index_app.command("info")
def index_info(directory: Path = typer.Argument(...)) -> None:
    """The manifest of an index: codec, count, sizes, model."""
    from embedlab.index import VectorIndex

    index = VectorIndex.load(directory)
    table = Table(show_header=False, title=str(directory))
    for key, value in index.manifest().items():
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    out.print(table)


@app.command()
def search(
    directory: Path = typer.Argument(..., help="an index directory"),
    query: Optional[str] = typer.Argument(None),
    queries: Optional[str] = typer.Option(None, "--queries", help="a file of queries (one per line or JSONL)"),
    k: int = typer.Option(10, "-k"),
    rescore: int = typer.Option(4, "--rescore", help="oversampling factor r: rescore k*r candidates (0: off)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Search an index with one query or a file of queries."""
    from embedlab.index import VectorIndex
    from embedlab.io import read_texts

    if (query is None) == (queries is None):
        raise EmbedlabError("give one query, or --queries FILE")
    texts = [query] if query is not None else read_texts(queries, stdin_text=sys.stdin.read() if queries == "-" else None)
    index = VectorIndex.load(directory)
    emb = _model_for_index(index)
    qv = emb.encode(texts, prompt_name=index.model.get("query_prompt"))
    ids, scores = index.search(qv, k=k, rescore=rescore)
    docs = {i: t for i, t in zip(index.ids, index.texts)} if index.texts is not None else {}
    if as_json:
        for q, row, sc in zip(texts, ids, scores):
            hits = [{"id": d, "score": round(float(s), 6), **({"text": docs[d]} if docs else {})} for d, s in zip(row, sc)]
            out.print_json(json.dumps({"query": q, "hits": hits}))
        return
    for q, row, sc in zip(texts, ids, scores):
        table = Table(title=q)
        for col in ("rank", "id", "score", "text"):
            table.add_column(col)
        for rank, (d, s) in enumerate(zip(row, sc), 1):
            table.add_row(str(rank), d, f"{s:.4f}", (docs.get(d, "") or "")[:100])
        out.print(table)


@app.command()
def train(
    config: Path = typer.Argument(..., help="a YAML training config (see docs/training.md)"),
    output: Optional[str] = typer.Option(None, help="override the config's output directory"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest checkpoint in OUTPUT/checkpoints"),
    overwrite: bool = typer.Option(False, "--overwrite", help="discard the model, checkpoints and log already in OUTPUT and start over"),
) -> None:
    """Contrastive fine-tuning (InfoNCE with in-batch and hard negatives, GradCache, LoRA, stages) from a validated config.
    Launch with torchrun --nproc-per-node N for data parallelism."""
    from embedlab.train import Trainer, load_config

    cfg = load_config(config, output=output)
    trainer = Trainer(cfg)
    result = trainer.fit(resume=resume, overwrite=overwrite)
    loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
    if result.already_finished:
        if trainer.rank == 0:
            err.print(f"{trainer.out} already holds a finished run ({result.steps} steps, final loss {loss}): nothing to resume; "
                      f"pass --overwrite to train it again")
        return
    path = trainer.save()
    if trainer.rank == 0:
        resumed = f", resumed at step {result.resumed_from_step}" if result.resumed_from_step else ""
        err.print(f"trained {cfg.model} for {result.steps} steps in {result.seconds:.0f} s{resumed} "
                  f"(final loss {loss}, {result.candidates_per_query:.0f} candidates per query, "
                  f"{result.tokens / max(result.seconds, 1e-9):.0f} tokens/s, {result.truncated_texts} texts truncated) -> {path}")


@app.command()
def mine(
    data: str = typer.Option(..., help="(query, positive) pairs: JSONL, TSV, or an adapter (stsb-pairs, scifact-train, …)"),
    out_file: Path = typer.Option(..., "--out", help="JSONL rows {query, positive, negatives}"),
    model: str = typer.Option("minilm-l6", "--model", "-m", help="the teacher"),
    corpus: Optional[Path] = typer.Option(None, help="candidate documents (JSONL id/text); default: every positive"),
    num_negatives: int = typer.Option(4, min=1),
    margin: float = typer.Option(0.05, help="keep a negative only if its score < (1 - margin) x the positive's"),
    strategy: str = typer.Option("topk", help="topk (NV-Retriever TopK-PercPos) or lemon (cluster neighbourhoods)"),
    clusters: Optional[int] = typer.Option(None, help="k-means clusters for lemon (default sqrt(corpus))"),
    probe: int = typer.Option(3, help="nearest clusters pooled for lemon"),
) -> None:
    """Mine hard negatives with a teacher, never returning a known positive."""
    from embedlab.index import read_corpus
    from embedlab.io import atomic_path
    from embedlab.train.data import load_pairs
    from embedlab.train.mining import mine_texts

    pairs = load_pairs(data)
    docs = read_corpus(corpus)[1] if corpus else None
    teacher = _embedder(model, None, None)
    with err.status("mining…"):
        rows = mine_texts(teacher, pairs, docs, num_negatives=num_negatives, relative_margin=margin, strategy=strategy,
                          n_clusters=clusters, probe=probe)
    with atomic_path(out_file) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    found = sum(len(r["negatives"]) for r in rows)
    err.print(f"mined {found} negatives for {len(rows)} pairs ({found / max(1, len(rows)):.2f} each) -> {out_file}")


@app.command()
def grid(
    config: Optional[Path] = typer.Argument(None, help="a YAML grid config (see docs/grid.md); optional with --preset"),
    preset: Optional[str] = typer.Option(None, help="paper (GPU, Mistral-7B, Models 1-5), cpu-small (make demo) or cpu-full"),
    mode: Optional[str] = typer.Option(None, help="lora (the paper's protocol) or frozen (a fair screen on cached features)"),
    output: Optional[str] = typer.Option(None, help="where models, results and the report go"),
    tasks: Optional[str] = typer.Option(None, help="all, quick or comma-separated task names"),
    report_only: bool = typer.Option(False, "--report-only", help="rebuild the report from existing results"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the designs and parameter counts; train nothing (offline)"),
) -> None:
    """The headline paper's experiment: train every pooling x attention design the same way, evaluate,
    and report which differences are significant."""
    from embedlab.eval.report import to_rich_table
    from embedlab.experiments.grid import dry_run as grid_dry_run
    from embedlab.experiments.grid import load_grid_config, run_grid, write_report

    if config is None and preset is None:
        raise EmbedlabError("give a grid config file or --preset (paper, cpu-small, cpu-full)")
    cfg = load_grid_config(config, preset=preset, mode=mode, output=output, tasks=tasks)
    console = out if out.is_terminal else Console(width=200)  # pipes get 80 columns by default
    if dry_run:
        plan = grid_dry_run(cfg)
        table = Table(title=f"{plan['source']}: {plan['layers']} layers x {plan['hidden_size']}, "
                            f"{plan['backbone_parameters']:,} backbone parameters; mode {plan['mode']}, "
                            f"head preset {plan['head_preset']}",
                      caption="▲ = more trainable parameters than the baseline")
        for col in ("design", "paper", "head", "projection", "LoRA", "trainable"):
            table.add_column(col, justify="left" if col in ("design", "paper") else "right", no_wrap=True)
        for r in plan["designs"]:
            table.add_row(r["design"], f"Model {r['paper_model']}" if r["paper_model"] else "–", f"{r['head_parameters']:,}",
                          f"{r['projection_parameters']:,}", f"{r['lora_parameters']:,}",
                          f"{r['trainable_parameters']:,}" + (" ▲" if r["more_than_baseline"] else ""))
        console.print(table)
        return
    report = write_report(cfg) if report_only else run_grid(cfg, progress=lambda msg: err.print(f"[bold]grid[/bold] {msg}"))
    console.print(to_rich_table(report["table"], extra_columns=report["columns"]))
    if cfg.mode == "frozen":
        from embedlab.experiments.frozen import FROZEN_NOTE

        err.print(f"[yellow]{FROZEN_NOTE}[/yellow]")
    took = f" in {report['seconds']:.0f} s" if "seconds" in report else ""
    err.print(f"report{took}: {report['report']} (per-task bootstrap CIs) and {report['plot']}")


@app.command()
def demo(
    model: str = typer.Option("minilm-l6", "--model", "-m"),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1),
) -> None:
    """Encode the shipped sample corpus and show each sample query's nearest neighbours."""
    from embedlab.demo import nearest_neighbours

    emb = _embedder(model, None, None)
    results = nearest_neighbours(emb, top_k=top_k)
    table = Table(title=f"nearest neighbours with {model} ({emb.head.name} pooling, {emb.attention} attention)")
    table.add_column("query", style="bold")
    table.add_column("neighbour")
    table.add_column("cosine", justify="right")
    for query, hits in results:
        for rank, (text, score) in enumerate(hits):
            table.add_row(query if rank == 0 else "", text, f"{score:.3f}", end_section=rank == len(hits) - 1)
    out.print(table)


@app.command()
def serve(
    model: str = typer.Argument(..., help="alias, saved embedder, HF directory, .gguf file or hub id"),
    index: Optional[list[str]] = typer.Option(None, "--index", help="an index directory to search (name = its directory name, or NAME=DIR); repeatable"),
    host: str = typer.Option("127.0.0.1", help="the address to bind (0.0.0.0 exposes the server to the network)"),
    port: int = typer.Option(8080),
    dtype: DType = typer.Option(DType.auto, help="auto = bf16 where the hardware runs it natively, else fp32"),
    runtime: Runtime = typer.Option(Runtime.torch, help=RUNTIME_HELP + "; with onnx, auto is fp32"),
    device: Optional[str] = typer.Option(None, help="cpu or cuda[:N] (default: cuda if available)"),
    max_batch_tokens: Optional[int] = typer.Option(None, min=1, help="padded tokens (rows x longest) per forward pass; default 512 on CPU, 32768 on GPU"),
    max_batch_size: Optional[int] = typer.Option(None, min=1, help="rows per forward pass; default 64 on CPU, 512 on GPU"),
    batch_overhead_tokens: Optional[int] = typer.Option(None, min=0, help="a forward pass's fixed cost in padded tokens, which sets how finely inputs are split by length; default: measured at start-up"),
    max_queue_tokens: Optional[int] = typer.Option(None, min=1, help="tokens admitted and not yet answered before new requests get 429; default 32 batches"),
    max_input_tokens: Optional[int] = typer.Option(None, min=1, help="tokens per input; default the model's max length"),
    truncate: bool = typer.Option(True, "--truncate/--no-truncate", help="cut longer inputs (usage reports how many), or answer 413"),
    api_key_file: Optional[Path] = typer.Option(None, help="a file holding the key clients send as 'Authorization: Bearer KEY'"),
    request_timeout: float = typer.Option(30.0, min=0.001, help="seconds a request may wait for the model, then 503"),
    model_name: Optional[str] = typer.Option(None, help="the model id shown in /v1/models and responses (default: MODEL)"),
    log_level: str = typer.Option("info", help="uvicorn's log level"),
) -> None:
    """Serve MODEL over HTTP: OpenAI /v1/embeddings, TEI /embed /similarity /rerank /tokenize, /v1/search over
    --index directories, /health, /metrics and a search page at / (see docs/serving.md). SIGTERM drains."""
    from embedlab.serve import serve as run_server

    run_server(model, indexes=index or [], host=host, port=port, dtype=dtype.value, device=device, runtime=runtime.value,
               max_batch_tokens=max_batch_tokens, max_batch_size=max_batch_size, batch_overhead_tokens=batch_overhead_tokens,
               max_queue_tokens=max_queue_tokens, max_input_tokens=max_input_tokens, truncate=truncate, api_key_file=api_key_file, request_timeout=request_timeout,
               model_name=model_name or model, log_level=log_level)


@app.command()
def distill(
    model: str = typer.Argument(..., help="the teacher: alias, saved embedder, HF directory, .gguf file or hub id"),
    out_dir: Path = typer.Option(..., "--out", help="the static model's folder (model2vec's layout)"),
    dims: Optional[int] = typer.Option(None, help="PCA width (default: 256, or the teacher's width if smaller)"),
    corpus: Optional[Path] = typer.Option(None, help="texts (one a line, or JSONL with 'text') for SIF weights from real token frequencies; default: Zipf by token rank"),
    prompt: Optional[str] = typer.Option(None, help="a named prompt of the teacher, put before every token"),
    pooling: Optional[str] = typer.Option(None, help="override the teacher's pooling head"),
    attention: Optional[Attention] = typer.Option(None, help="override the teacher's attention mode (decoders)"),
    sif_coefficient: float = typer.Option(1e-4, "--sif-a", help="a in a/(a + p(w))"),
    no_pca: bool = typer.Option(False, "--no-pca", help="keep the teacher's width and axes"),
) -> None:
    """Distil MODEL into a static embedder (Model2Vec-style): ~100x faster encoding, loadable by embedlab,
    model2vec and sentence-transformers (see docs/static.md)."""
    from embedlab.models.static import DEFAULT_DIMS
    from embedlab.models.static import distill as run_distill

    if no_pca and dims is not None:
        raise EmbedlabError("give --dims or --no-pca, not both")
    teacher = _embedder(model, pooling, attention)
    if no_pca:
        width = None
    else:
        width = dims if dims is not None else min(DEFAULT_DIMS, teacher.output_dim)
    student, provenance = run_distill(teacher, dims=width, corpus=corpus, sif_coefficient=sif_coefficient,
                                      prompt_name=prompt, show_progress=True)
    provenance["teacher_name"] = model
    student.save(out_dir, provenance=provenance)
    err.print(f"distilled {provenance['vocabulary']} tokens -> {out_dir} ({student.output_dim}-d, "
              f"{provenance['weighting']} weights, PCA keeps {100 * provenance['explained_variance']:.1f}% of the variance) "
              f"in {provenance['seconds']:.1f} s")


bias_app = typer.Typer(no_args_is_help=True, help="Bias: WEAT/SEAT with exact permutation tests, the gender direction, hard debiasing.")
app.add_typer(bias_app, name="bias")


def _bias_tests(spec: str, mode: Optional[str]) -> tuple[list[Any], list[str]]:
    """--tests weat,seat | weat | seat | weat3,weat6 | FILE, and --mode, to (tests, modes)."""
    from embedlab.analysis.bias import select_tests

    tokens = [t.strip() for t in spec.split(",") if t.strip()]
    modes = [t.lower() for t in tokens if t.lower() in ("weat", "seat")]
    rest = [t for t in tokens if t.lower() not in ("weat", "seat")]
    if len(rest) == 1 and Path(rest[0]).suffix.lower() in (".json", ".yaml", ".yml"):
        tests = select_tests(Path(rest[0]))
    else:
        tests = select_tests(",".join(rest) if rest else None)
    if mode is not None:
        if mode not in ("weat", "seat", "both"):
            raise EmbedlabError(f"--mode must be weat, seat or both; got {mode!r}")
        modes = ["weat", "seat"] if mode == "both" else [mode]
    return tests, modes or ["weat", "seat"]


def _bias_encoder(model: str, pooling: Optional[str], attention: Optional[Attention]) -> Any:
    from embedlab.analysis.bias import open_encoder

    with err.status(f"loading {model}…"):
        return open_encoder(model, pooling=pooling, attention=attention.value if attention else None)


def _bias_report(model: str, tests: str, mode: Optional[str], compare: Optional[str], json_out: Optional[Path],
                 png: Optional[Path], pooling: Optional[str], attention: Optional[Attention], seed: int, n_random: int) -> None:
    from embedlab.analysis.bias import plot_effect_sizes, results_table, run_tests
    from embedlab.io import write_json

    chosen, modes = _bias_tests(tests, mode)
    results: dict[str, list[Any]] = {}
    for name in [model] + ([compare] if compare else []):
        enc = _bias_encoder(name, pooling, attention)
        if hasattr(enc, "has") and "seat" in modes and mode is None:
            modes = [m for m in modes if m != "seat"] or ["weat"]
            err.print(f"[yellow]{name} holds static word vectors: running WEAT only (SEAT embeds sentences)[/yellow]")
        with err.status(f"{name}: {len(chosen)} test(s) x {'+'.join(modes)}…"):
            results[name] = run_tests(enc, chosen, modes, seed=seed, n_random=n_random)
        for r in results[name]:
            if r.skipped or r.dropped:
                miss = ", ".join(f"{k}: {len(v)}" for k, v in r.skipped.items())
                drop = ", ".join(f"{k}: {len(v)}" for k, v in r.dropped.items())
                err.print(f"[yellow]{name} {r.test}:[/yellow] skipped (not in the vocabulary) {miss or 'none'}; "
                          f"dropped to make |X| = |Y| {drop or 'none'}", highlight=False)
    rows = results_table(results)
    table = Table(title=("bias: " + " vs ".join(results)) + " (d = effect size, p one-sided; exact = every partition)")
    for col in ("mode", "test", "targets / attributes"):
        table.add_column(col)
    for m in results:
        label = "" if len(results) == 1 else f" {m}"
        table.add_column(f"d{label}", justify="right")
        table.add_column(f"p{label}", justify="right")
    table.add_column("p from", justify="right")
    for r in rows:
        cells = [r["mode"].upper(), r["test"], r["title"]]
        for m in results:
            c = r.get(m)
            cells += [f"{c['d']:+.3f}", f"{c['p']:.3g}"] if c else ["-", "-"]
        first = r[next(iter(results))]
        cells.append(f"{first['p_method']} ({first['permutations']:,})")
        table.add_row(*cells)
    (out if out.is_terminal else Console(width=200)).print(table)  # pipes get 80 columns by default
    if json_out is not None:
        write_json(json_out, {"models": list(results), "modes": modes, "seed": seed, "n_random": n_random,
                              "results": {m: [r.to_dict() for r in rs] for m, rs in results.items()}})
    if png is not None:
        plot_effect_sizes(results, png)
    if json_out is not None or png is not None:
        err.print("wrote " + " and ".join(str(p) for p in (json_out, png) if p is not None))


_TESTS_HELP = "weat,seat (WEAT 1-10 on words and in SEAT templates) | weat | seat | weat3,weat6 | a YAML/JSON file of tests"


@bias_app.command("report")
def bias_report(
    model: str = typer.Argument(..., help="alias, saved embedder, HF directory, .gguf, hub id, or a word2vec/GloVe .txt/.vec file"),
    tests: str = typer.Option("weat,seat", "--tests", help=_TESTS_HELP),
    mode: Optional[str] = typer.Option(None, help="weat, seat or both (default: from --tests, else both)"),
    compare: Optional[str] = typer.Option(None, "--compare", help="a second model, shown side by side (e.g. the debiased one)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write every result as JSON"),
    png: Optional[Path] = typer.Option(None, "--png", help="bar chart of the effect sizes with their p-values"),
    pooling: Optional[str] = typer.Option(None),
    attention: Optional[Attention] = typer.Option(None),
    seed: int = typer.Option(0, help="seed of the random permutations (used when a test has over 1e5 partitions)"),
    n_random: int = typer.Option(100_000, "--n-random", min=1, help="random permutations when exact enumeration is too large"),
) -> None:
    """WEAT and SEAT effect sizes with one-sided permutation p-values (exact up to 1e5 partitions)."""
    _bias_report(model, tests, mode, compare, json_out, png, pooling, attention, seed, n_random)


@bias_app.command("weat")
def bias_weat(
    model: str = typer.Argument(...),
    tests: str = typer.Option("weat", "--tests", help=_TESTS_HELP),
    compare: Optional[str] = typer.Option(None, "--compare"),
    json_out: Optional[Path] = typer.Option(None, "--json"),
    png: Optional[Path] = typer.Option(None, "--png"),
    seed: int = typer.Option(0),
) -> None:
    """WEAT only (each word embedded alone): `bias report --mode weat`."""
    _bias_report(model, tests, "weat", compare, json_out, png, None, None, seed, 100_000)


@bias_app.command("seat")
def bias_seat(
    model: str = typer.Argument(...),
    tests: str = typer.Option("seat", "--tests", help=_TESTS_HELP),
    compare: Optional[str] = typer.Option(None, "--compare"),
    json_out: Optional[Path] = typer.Option(None, "--json"),
    png: Optional[Path] = typer.Option(None, "--png"),
    seed: int = typer.Option(0),
) -> None:
    """SEAT only (words in bleached sentence templates): `bias report --mode seat`."""
    _bias_report(model, tests, "seat", compare, json_out, png, None, None, seed, 100_000)


def _pairs_and_lists(lists_dir: Optional[Path], pairs: Optional[Path]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    from embedlab.analysis.bias import debiaswe_lists, read_pairs

    lists = debiaswe_lists(lists_dir)
    return lists, read_pairs(pairs) if pairs else [tuple(p) for p in lists["definitional_pairs"]]


def _print_direction(name: str, rep: dict[str, Any]) -> None:
    table = Table(title=f"{name}: bias subspace from {rep['pairs_used']} definitional pairs, k = {rep['k']}")
    table.add_column("component", justify="right")
    table.add_column("variance explained", justify="right")
    for i, v in enumerate(rep["explained_variance_ratio"], 1):
        table.add_row(f"{i}{' (kept)' if i <= rep['k'] else ''}", f"{100 * v:.1f}%")
    out.print(table)
    out.print(f"DirectBias_{rep['c']:g} over {rep['neutral_words']} gender-neutral professions: {rep['direct_bias']:.4f}", highlight=False)
    out.print(f"most on the '{rep.get('positive', 'first word')}' side: {', '.join(rep['most_positive'])}", highlight=False)
    out.print(f"most on the other side: {', '.join(rep['most_negative'])}", highlight=False)
    if rep["pairs_skipped"]:
        err.print(f"[yellow]skipped {len(rep['pairs_skipped'])} pair(s) with a word not in the vocabulary[/yellow]")


@bias_app.command("direction")
def bias_direction(
    model: str = typer.Argument(..., help="a model, or a word2vec/GloVe .txt/.vec file"),
    k: int = typer.Option(1, "-k", min=1, help="dimensions of the bias subspace"),
    c: float = typer.Option(1.0, "-c", min=0.0, help="DirectBias strictness"),
    pairs: Optional[Path] = typer.Option(None, help="definitional pairs, JSON [[a, b], ...] (default: debiaswe's 10)"),
    lists_dir: Optional[Path] = typer.Option(None, "--lists", help="the debiaswe lists folder (default $EMBEDLAB_DATA/debiaswe)"),
    json_out: Optional[Path] = typer.Option(None, "--json"),
    pooling: Optional[str] = typer.Option(None),
    attention: Optional[Attention] = typer.Option(None),
) -> None:
    """The gender subspace (PCA over centred definitional pairs, variance per component) and DirectBias."""
    from embedlab.analysis.bias import direction_report
    from embedlab.io import write_json

    lists, pair_list = _pairs_and_lists(lists_dir, pairs)
    enc = _bias_encoder(model, pooling, attention)
    with err.status("estimating the subspace…"):
        rep = direction_report(enc, lists, k=k, c=c, pairs=pair_list)
    rep["positive"] = pair_list[0][0]
    _print_direction(model, rep)
    if json_out is not None:
        write_json(json_out, {**{k_: v for k_, v in rep.items() if k_ != "subspace"}, "subspace": rep["subspace"].to_dict()})


@bias_app.command("debias")
def bias_debias(
    model: str = typer.Argument(..., help="alias, saved embedder, HF directory, .gguf or hub id"),
    out_dir: Path = typer.Option(..., "--out", help="where the debiased model is written (sentence-transformers layout)"),
    k: int = typer.Option(1, "-k", min=1),
    pairs: Optional[Path] = typer.Option(None, help="definitional pairs, JSON [[a, b], ...] (default: debiaswe's 10)"),
    lists_dir: Optional[Path] = typer.Option(None, "--lists"),
    renormalize: bool = typer.Option(True, "--renormalize/--no-renormalize", help="unit-normalise after the projection"),
    pooling: Optional[str] = typer.Option(None),
    attention: Optional[Attention] = typer.Option(None),
) -> None:
    """Write MODEL with a projection that removes its gender subspace (hard debiasing's neutralise step)."""
    from embedlab.analysis.bias import StaticVectors, direction_report
    from embedlab.models.debias import debias_embedder

    lists, pair_list = _pairs_and_lists(lists_dir, pairs)
    emb = _bias_encoder(model, pooling, attention)
    if isinstance(emb, StaticVectors):
        raise EmbedlabError("bias debias writes a sentence embedder; for word vectors use embedlab.analysis.bias.hard_debias")
    with err.status("estimating the subspace…"):
        before = direction_report(emb, lists, k=k, pairs=pair_list)
    sub = before["subspace"]
    info = {"source_model": str(model), "k": sub.k, "pairs": [list(p) for p in pair_list],
            "explained_variance_ratio": before["explained_variance_ratio"], "renormalize": renormalize,
            "method": "Bolukbasi et al. 2016 hard debiasing, neutralise step as a linear projection"}
    debiased = debias_embedder(emb, sub.basis, renormalize=renormalize, info=info)
    after = direction_report(debiased, lists, subspace=sub)
    with err.status(f"saving {out_dir}…"):
        debiased.save(out_dir)
    err.print(f"wrote {out_dir} ({' -> '.join(m.kind for m in debiased.chain)}); variance of component 1: "
              f"{100 * sub.explained_variance_ratio[0]:.1f}%; DirectBias over {before['neutral_words']} professions "
              f"{before['direct_bias']:.4f} -> {after['direct_bias']:.2e}", highlight=False)


class Backend(str, Enum):
    local = "local"
    ray = "ray"


class Precision(str, Enum):
    float32 = "float32"
    float16 = "float16"
    int8 = "int8"
    binary = "binary"


@app.command("embed-corpus")
def embed_corpus_cmd(
    model: str = typer.Argument(..., help="alias, directory or hub id (Ray workers load it themselves)"),
    corpus: list[Path] = typer.Option(..., "--corpus", help="JSONL (id, text), BEIR corpus.jsonl[.gz] or Parquet; repeatable"),
    out_dir: Path = typer.Option(..., "--out", help="the shard directory"),
    backend: Backend = typer.Option(Backend.local),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="host:port or ray://host:port of a running cluster; default: a local runtime"),
    actors: int = typer.Option(1, help="Ray actors, each loading the model once"),
    shard_rows: int = typer.Option(10_000, "--shard-rows"),
    dtype: DType = typer.Option(DType.fp32),
    runtime: Runtime = typer.Option(Runtime.torch, help=RUNTIME_HELP),
    precision: Precision = typer.Option(Precision.float32, help="how vectors are stored in the shards"),
    resume: bool = typer.Option(False, "--resume", help="skip finished shards (checksums verified); refuse a changed model or corpus"),
    no_texts: bool = typer.Option(False, "--no-texts", help="do not store the texts in the shards"),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="the model's document prompt name"),
    query_prompt: Optional[str] = typer.Option(None, "--query-prompt", help="recorded for searches of indexes built from these shards"),
    pooling: Optional[str] = typer.Option(None),
    attention: Optional[Attention] = typer.Option(None),
) -> None:
    """Embed a corpus into Parquet shards with a manifest (local, or a Ray Data actor pool)."""
    from embedlab.index.corpus_embed import embed_corpus

    emb = _embedder(model, pooling, attention)  # the driver needs the fingerprint on both backends
    manifest = embed_corpus(model, corpus, out_dir, backend=backend.value, ray_address=ray_address, actors=actors,
                            shard_rows=shard_rows, dtype=dtype.value, runtime=runtime.value, precision=precision.value,
                            resume=resume, store_texts=not no_texts, prompt=prompt, query_prompt=query_prompt, pooling=pooling,
                            attention=attention.value if attention else None, embedder=emb, progress=True)
    rows = manifest["corpus"]["rows"]
    err.print(f"embedded {rows} documents into {manifest['num_shards']} shard(s) ({precision.value}) with {backend.value} "
              f"in {manifest['seconds']:.1f} s ({rows / max(manifest['seconds'], 1e-9):.1f} texts/s) -> {out_dir}", highlight=False)


@app.command("export")
def export_cmd(
    directory: Path = typer.Argument(..., help="a shard directory (embed-corpus) or an embedlab index"),
    to: str = typer.Option(..., "--to", help="lancedb://PATH | qdrant://PATH | http://HOST:PORT (Qdrant) | milvus://FILE.db"),
    collection: str = typer.Option("embedlab", help="table / collection name"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing table / collection"),
    no_ann: bool = typer.Option(False, "--no-ann", help="LanceDB: skip building the ANN index"),
) -> None:
    """Export vectors, ids, texts and the model record to a vector database."""
    from embedlab.index.export import export

    with err.status(f"exporting to {to}…"):
        result = export(directory, to, collection=collection, overwrite=overwrite, ann=not no_ann)
    err.print(f"exported {result['rows']} rows ({result['source']}) to {result['target']} collection "
              f"{result['collection']!r}; index: {result['index']}", highlight=False)


class ClusterMethod(str, Enum):
    goalex = "goalex"
    kmeans = "kmeans"


class ClusterAssigner(str, Enum):
    llm = "llm"
    embedding = "embedding"


@app.command()
def cluster(
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="one text a line, or JSONL with 'text'; default: the shipped sample (bank customer messages)"),
    goal: Optional[str] = typer.Option(None, "--goal", help="what the clusters should be about (default with the sample: by what the customer wants)"),
    k: Optional[int] = typer.Option(None, "--k", help="number of clusters (default with the sample: 4)"),
    model: str = typer.Option("minilm-l6", "--model", "-m", help="the embedder: k-means, the embedding assigner and the PNG"),
    llm: Optional[str] = typer.Option("smollm2-135m", "--llm", help="alias, .gguf or causal-LM directory; with --llm-endpoint, the model name sent"),
    llm_endpoint: Optional[str] = typer.Option(None, "--llm-endpoint", help="an OpenAI-compatible chat API, e.g. http://127.0.0.1:8000/v1"),
    llm_key_env: str = typer.Option("OPENAI_API_KEY", "--llm-key-env", help="the environment variable holding the endpoint's API key"),
    method: ClusterMethod = typer.Option(ClusterMethod.goalex, "--method"),
    assigner: ClusterAssigner = typer.Option(ClusterAssigner.llm, "--assigner", help="llm: yes/no log-odds (the paper); embedding: cosine (faster, a deviation)"),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="calibrated score a pair must exceed (default: 0 for llm, 0.05 for embedding)"),
    rounds: int = typer.Option(3, "--rounds", help="propose/assign/select rounds (re-proposing for uncovered texts)"),
    sample_size: int = typer.Option(25, "--sample-size", help="texts shown to the proposer per call"),
    seed: int = typer.Option(0, "--seed"),
    out_dir: Path = typer.Option(Path("clusters"), "--out", help="where clusters.json, report.md and clusters.png go"),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="a prompts file like embedlab/analysis/goalex_prompts.toml"),
    no_cache: bool = typer.Option(False, "--no-cache", help="do not read or write the LLM call cache"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="the LLM call cache (default: $EMBEDLAB_CACHE/goalex-llm)"),
) -> None:
    """Cluster texts by a goal, each cluster explained by a sentence (GoalEx), or k-means as the unexplained baseline."""
    from embedlab.analysis import goalex as gx
    from embedlab.io import read_texts

    if corpus is None:
        corpus = gx.sample_corpus_path()
        goal = gx.SAMPLE_GOAL if goal is None else goal
        k = gx.SAMPLE_K if k is None else k
    texts = read_texts(corpus)
    if k is None:
        raise EmbedlabError("give --k, the number of clusters")
    if method is ClusterMethod.goalex:
        if goal is None:
            raise EmbedlabError("give --goal, what the clusters should be about (e.g. 'by topic')")
        gx.GoalExConfig(k=k, goal=goal).check(len(texts))  # bad input fails before any model loads
    elif k < 1 or k > len(texts):
        raise EmbedlabError(f"K={k} must be between 1 and the number of texts ({len(texts)})")
    emb = _embedder(model, None, None)
    with err.status(f"embedding {len(texts)} texts…"):
        vectors = emb.encode(texts, show_progress=False)
    if method is ClusterMethod.kmeans:
        result = gx.kmeans_clusters(vectors, k, seed=seed)
    else:
        from embedlab.analysis.goalex_llm import open_llm

        with err.status(f"loading {llm_endpoint or llm}…"):
            backend = open_llm(llm, endpoint=llm_endpoint, key_env=llm_key_env, cache=not no_cache, cache_dir=cache_dir,
                               show_progress=True)
        runner = gx.GoalEx(backend, assigner=assigner.value, embedder=emb, prompts=gx.load_prompts(prompts),
                           show_progress=True)
        cfg = gx.GoalExConfig(k=k, goal=goal or "", threshold=threshold, rounds=rounds, sample_size=sample_size, seed=seed)
        result = runner.fit(texts, cfg, text_embeddings=vectors)
        if hasattr(backend, "hits"):
            err.print(f"LLM calls: {backend.misses} sent, {backend.hits} from the cache", highlight=False)
    paths = gx.write_outputs(result, texts, out_dir, vectors)
    table = Table(title=f"{result.method}: {len(texts)} texts, K={k}" + (f" — {goal}" if goal and method is ClusterMethod.goalex else ""))
    for col, just in (("#", "right"), ("size", "right"), ("explanation", "left"), ("example", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for c in result.clusters():
        example = texts[c["members"][0]] if c["members"] else ""
        table.add_row(str(c["id"]), str(c["size"]), c["explanation"] or "(k-means: none)", example[:80])
    table.add_row("-", str(len(result.unassigned)), "unassigned", texts[result.unassigned[0]][:80] if result.unassigned else "")
    (out if out.is_terminal else Console(width=200)).print(table)
    for note in result.notes:
        err.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    err.print("wrote " + ", ".join(str(p) for p in paths.values()), highlight=False)


vocab_app = typer.Typer(no_args_is_help=True, help="Vocabulary expansion: domain tokens and six embedding initialisations.")
app.add_typer(vocab_app, name="vocab")


@vocab_app.command("extend")
def vocab_extend(
    model: str = typer.Argument(..., help="alias, saved embedder, HF directory, .gguf file or hub id"),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="domain text: one text per line, or JSONL with 'text' (.gz ok)"),
    out_dir: Path = typer.Option(..., "--out", help="directory for the extended model"),
    add: Optional[int] = typer.Option(None, "--add", help="new ids to add, chosen from the corpus"),
    tokens: Optional[Path] = typer.Option(None, "--tokens", help="a file of new tokens, one per line (instead of --add)"),
    init: str = typer.Option("fvt", "--init", help="random | mean | multivariate | fvt | wechsel | cw2v"),
    select: str = typer.Option("words", "--select", help="words (K-Tokeniser domain words) | bpe (merges of a BPE trained on the corpus)"),
    multiword: bool = typer.Option(False, "--multiword", help="also add frequent two-word concepts (as added tokens)"),
    min_count: int = typer.Option(3, "--min-count", help="corpus count a word needs to be chosen"),
    pooling: Optional[str] = typer.Option(None, help="override the pooling head of the saved model"),
    seed: int = typer.Option(0, help="seed of the random, multivariate, wechsel and cw2v inits"),
    option: list[str] = typer.Option([], "--option", help="init option KEY=VALUE (e.g. scale=1e-5, k=10, steps=300, rank=64)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a non-empty --out directory"),
) -> None:
    """Add domain tokens to a model's tokenizer and embeddings; saves a normal embedlab model directory."""
    from embedlab.tokenize.vocab import extend_model

    options: dict[str, Any] = {}
    for item in option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EmbedlabError(f"--option must be KEY=VALUE; got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    from tqdm.auto import tqdm

    bars: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "add":
            bar = bars.get(stage) or bars.setdefault(stage, tqdm(total=total, desc="add tokens", unit="tok", file=sys.stderr))
            bar.n = done
            bar.refresh()
        elif total == 0:
            err.print(stage, highlight=False)

    try:
        with err.status(f"loading {model} and choosing tokens…"):
            report = extend_model(model, corpus, out_dir, method=init, add=add, tokens_file=tokens, select=select,
                                  multiword=multiword, min_count=min_count, seed=seed, pooling=pooling, options=options,
                                  overwrite=overwrite, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    err.print(f"added {report['added']} ids ({report['token']} tokens, {report['intermediate']} BPE merge steps, "
              f"{report['multiword']} multiword); skipped {report['skipped_present']} already in the vocabulary"
              + (f"; {report['unreachable']} unreachable by merges" if report["unreachable"] else "")
              + f"; vocabulary {report['old_size']} -> {report['new_size']}; init {init}; saved {out_dir}", highlight=False)


tokenizer_app = typer.Typer(no_args_is_help=True, help="Measure tokenizers: fertility, compression, Rényi efficiency, parity, %TR/%Pure.")
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command("report")
def tokenizer_report(
    tokenizers: list[str] = typer.Argument(..., help="Aliases, HF dirs, tokenizer.json/.model/.gguf files, pypi:turkish-tokenizer, pypi:mistral-common[:FILE]."),
    corpus: Path = typer.Option(..., "--corpus", help="One text per line, JSONL with 'text', or a .tsv with a 'text' column."),
    corpus2: Optional[Path] = typer.Option(None, "--corpus2", help="A line-aligned parallel corpus: adds parity (tokens on --corpus / tokens here)."),
    lang: Optional[str] = typer.Option(None, "--lang", help="'tr' adds %TR and %Pure (Bayram et al.) from offline lexicons."),
    lexicon: Optional[Path] = typer.Option(None, "--lexicon", help="Folder of the Turkish word/morpheme lists (default ../shared/data/turkish/morphemes)."),
    alpha: float = typer.Option(2.5, "--alpha", help="Rényi order."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N texts of each corpus."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every number (and the counts behind it) as JSON."),
    png: Optional[Path] = typer.Option(None, "--png", help="Write a bar chart per metric."),
) -> None:
    """Tokenizer quality report: fertility, split words, bytes/chars per token, vocabulary use, UNK rate,
    Rényi efficiency, parity, and with --lang tr %TR/%Pure over tokens and over types. See docs/tokenizers.md."""
    from rich.progress import Progress

    from embedlab.errors import ConfigError
    from embedlab.tokenize import metrics as tm
    from embedlab.tokenize.loading import load_tokenizer
    from embedlab.tokenize.turkish import TurkishLexicon

    if lang not in (None, "tr"):
        raise ConfigError(f"tokenizer report: '--lang' must be 'tr' (the only language with a lexicon); got {lang!r}")
    texts = tm.read_corpus(corpus, limit)
    texts2 = tm.read_corpus(corpus2, limit) if corpus2 is not None else None
    lex = TurkishLexicon.load(lexicon) if lang == "tr" or lexicon is not None else None
    results = []
    with Progress(console=err, transient=True) as progress:
        for spec in tokenizers:
            task = progress.add_task(f"{spec}: loading", total=len(texts))
            tok = load_tokenizer(spec)
            progress.update(task, description=spec)
            results.append(tm.tokenizer_metrics(tok, texts, texts2=texts2, alpha=alpha, lexicon=lex,
                                                progress=lambda n, t=task: progress.advance(t, n)))
    title = f"{corpus.name}: {len(texts):,} texts, {results[0].n_words:,} words; Rényi α={alpha}"
    (out if out.is_terminal else Console(width=220)).print(tm.to_rich_table(results, title=title))
    if lex is not None:
        err.print(f"%TR/%Pure lexicon: {lex.description} (offline stand-in for the paper's ITU web services)", highlight=False)
    meta = {"corpus": str(corpus), "corpus2": str(corpus2) if corpus2 else None, "n_texts": len(texts), "alpha": alpha,
            "lexicon": lex.description if lex else None}
    if json_out is not None:
        tm.write_json(json_out, results, meta)
        err.print(f"wrote {json_out}", highlight=False)
    if png is not None:
        tm.plot(results, png, title=title)
        err.print(f"wrote {png}", highlight=False)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        app(standalone_mode=False)
    except EmbedlabError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
