"""``embedlab cluster``: goal-driven explainable clustering (GoalEx), or k-means as the unexplained baseline."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from embedlab.cli._common import (
    DEFAULT_MODEL,
    err,
    input_file,
    load_embedder,
    output_folder,
    read_texts,
    show_table,
    wide,
)


class ClusterMethod(str, Enum):
    goalex = "goalex"
    kmeans = "kmeans"


class ClusterProposer(str, Enum):
    auto = "auto"  # the LLM proposer with an endpoint or a local LLM of >= 1B parameters, else the extractive one
    llm = "llm"
    extractive = "extractive"


class ClusterAssigner(str, Enum):
    auto = "auto"
    llm = "llm"
    embedding = "embedding"


def cluster(
    corpus: Annotated[
        Path | None,
        typer.Option(
            "--corpus",
            help="one text a line, or JSONL with 'text'; default: the shipped sample (bank customer messages)",
        ),
    ] = None,
    goal: Annotated[
        str | None,
        typer.Option(
            "--goal", help="what the clusters should be about (default with the sample: by what the customer wants)"
        ),
    ] = None,
    k: Annotated[int | None, typer.Option("--k", min=1, help="number of clusters (default with the sample: 4)")] = None,
    model: Annotated[
        str, typer.Option("--model", "-m", help="the embedder: k-means, the embedding assigner and the PNG")
    ] = DEFAULT_MODEL,
    llm: Annotated[
        str | None,
        typer.Option("--llm", help="alias, .gguf or causal-LM directory; with --llm-endpoint, the model name sent"),
    ] = "smollm2-135m",
    llm_endpoint: Annotated[
        str | None, typer.Option("--llm-endpoint", help="an OpenAI-compatible chat API, e.g. http://127.0.0.1:8000/v1")
    ] = None,
    llm_key_env: Annotated[
        str, typer.Option("--llm-key-env", help="the environment variable holding the endpoint's API key")
    ] = "OPENAI_API_KEY",
    method: Annotated[ClusterMethod, typer.Option("--method")] = ClusterMethod.goalex,
    proposer: Annotated[
        ClusterProposer,
        typer.Option(
            "--proposer",
            help="llm: the paper's LLM proposer; extractive: c-TF-IDF terms of embedding groups (a deviation, docs/goalex.md); auto: llm with --llm-endpoint or a local LLM of >= 1B parameters, else extractive",
        ),
    ] = ClusterProposer.auto,
    assigner: Annotated[
        ClusterAssigner,
        typer.Option(
            "--assigner",
            help="llm: yes/no log-odds (the paper); embedding: standardised cosine (faster, a deviation); auto: follows the proposer",
        ),
    ] = ClusterAssigner.auto,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help="calibrated score a pair must exceed (default: 0 for llm; for embedding the (1 - 1/K) quantile of the round's standardised scores)",
        ),
    ] = None,
    rounds: Annotated[
        int, typer.Option("--rounds", min=1, help="propose/assign/select rounds (re-proposing for uncovered texts)")
    ] = 3,
    sample_size: Annotated[int, typer.Option("--sample-size", min=1, help="texts shown to the proposer per call")] = 25,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="where clusters.json, report.md and clusters.png go")] = Path(
        "clusters"
    ),
    prompts: Annotated[
        Path | None, typer.Option("--prompts", help="a prompts file like embedlab/analysis/goalex_prompts.toml")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="do not read or write the LLM call cache")] = False,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="the LLM call cache (default: $EMBEDLAB_CACHE/goalex-llm)")
    ] = None,
) -> None:
    """Cluster texts by a goal, each cluster explained by a sentence (GoalEx), or k-means as the unexplained baseline."""
    from embedlab.analysis import goalex as gx
    from embedlab.errors import UsageError
    from embedlab.validation import finite_float

    if threshold is not None:
        finite_float("--threshold", threshold)
    if corpus is None:
        corpus = gx.sample_corpus_path()
        goal = gx.SAMPLE_GOAL if goal is None else goal
        k = gx.SAMPLE_K if k is None else k
    input_file(corpus, "--corpus")
    input_file(prompts, "--prompts")
    output_folder(out_dir, overwrite=True)  # the path only: the three files embedlab writes there are replaced
    texts = read_texts(corpus)
    if k is None:
        raise UsageError("give --k, the number of clusters")
    cfg = gx.GoalExConfig(k=k, goal=goal or "", threshold=threshold, rounds=rounds, sample_size=sample_size, seed=seed)
    if method is ClusterMethod.goalex:
        from embedlab.analysis.goalex_plan import estimate_seconds, plan_cluster

        if goal is None:
            raise UsageError("give --goal, what the clusters should be about (e.g. 'by topic')")
        # bad input fails before any model loads, named by its flag
        cfg.check(len(texts), names={"k": "--k", "rounds": "--rounds", "sample_size": "--sample-size"})
        loaded_prompts = gx.load_prompts(prompts)
        plan = plan_cluster(llm, llm_endpoint, proposer=proposer.value, assigner=assigner.value)
        backend = None
        if plan.load_llm:  # an unreachable endpoint fails here, in one line, before the plan is printed
            from embedlab.analysis.goalex_llm import open_llm

            with err.status(f"loading {llm_endpoint or llm}…"):
                backend = open_llm(
                    llm,
                    endpoint=llm_endpoint,
                    key_env=llm_key_env,
                    cache=not no_cache,
                    cache_dir=cache_dir,
                    show_progress=True,
                )
        for message in plan.messages:
            err.print(message, highlight=False)
        seconds = estimate_seconds(plan, len(texts), k, rounds=rounds, endpoint=bool(llm_endpoint))
        if seconds > 60:
            err.print(f"estimated time: about {seconds / 60:.0f} min", highlight=False)
    else:
        from embedlab.validation import cluster_count

        cluster_count(k, len(texts))
    emb = load_embedder(model)
    with err.status(f"embedding {len(texts)} texts…"):
        vectors = emb.encode(texts, show_progress=False)
    if method is ClusterMethod.kmeans:
        result = gx.kmeans_clusters(vectors, k, seed=seed)
    else:
        runner = gx.GoalEx(
            backend,
            proposer=plan.proposer,
            assigner=plan.assigner,
            embedder=emb,
            prompts=loaded_prompts,
            show_progress=True,
        )
        result = runner.fit(texts, cfg, text_embeddings=vectors)
        if backend is not None and hasattr(backend, "hits"):
            err.print(f"LLM calls: {backend.misses} sent, {backend.hits} from the cache", highlight=False)
    paths = gx.write_outputs(result, texts, out_dir, vectors)
    rows = [
        (
            str(c["id"]),
            str(c["size"]),
            c["explanation"] or "(k-means: none)",
            (texts[c["members"][0]] if c["members"] else "")[:80],
        )
        for c in result.clusters()
    ]
    rows.append(
        ("-", str(len(result.unassigned)), "unassigned", texts[result.unassigned[0]][:80] if result.unassigned else "")
    )
    show_table(
        rows,
        (("#", "right"), ("size", "right"), "explanation", "example"),
        console=wide(),
        title=f"{result.method}: {len(texts)} texts, K={k}"
        + (f" — {goal}" if goal and method is ClusterMethod.goalex else ""),
    )
    for note in result.notes:
        err.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    err.print("wrote " + ", ".join(str(p) for p in paths.values()), highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(cluster)
