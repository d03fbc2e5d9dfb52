"""``embedlab models``, ``info``, ``encode`` and ``demo``: the packaged models and plain encoding."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated

import typer

from embedlab.cli._common import (
    DEFAULT_MODEL,
    AttentionOpt,
    DType,
    DTypeOpt,
    ModelArg,
    ModelOpt,
    PoolingOpt,
    Runtime,
    RuntimeOpt,
    err,
    load_embedder,
    output_file,
    read_texts,
    show_mapping,
    show_table,
)


class OutputKind(str, enum.Enum):
    auto = "auto"
    dense = "dense"
    sparse = "sparse"


def models() -> None:
    """List the packaged model aliases and where each comes from."""
    from embedlab.errors import EmbedlabError
    from embedlab.models.aliases import ALIASES

    rows = []
    for alias in ALIASES.values():
        try:
            where, status = str(alias.locate()), "installed"
        except EmbedlabError:
            where, status = alias.install, "[red]missing[/red]"
        name = alias.name + (" (default)" if alias.name == DEFAULT_MODEL else "")
        rows.append((name, alias.description, f"{alias.package}\n{where}", status, alias.hub_id))
    show_table(
        rows,
        ("alias", "model", "package", "status", "hub id"),
        title="packaged models (any local HF directory, saved embedder, .gguf file or hub id also works)",
    )


def info(model: ModelArg, pooling: PoolingOpt = None, attention: AttentionOpt = None) -> None:
    """Architecture, layers, dims, parameters, attention mode, pooling and prompts of a model."""
    show_mapping(load_embedder(model, pooling, attention).describe(), title=model)


def encode(
    input: Annotated[
        str, typer.Option("--input", "-i", help="a text file (one text per line), JSONL with 'text', or - for stdin")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="OUT.npy, OUT.npz or OUT.jsonl")],
    model: ModelOpt = DEFAULT_MODEL,
    pooling: PoolingOpt = None,
    attention: AttentionOpt = None,
    prompt: Annotated[str | None, typer.Option(help="a named prompt of the model (e.g. query, document)")] = None,
    instruction: Annotated[str | None, typer.Option(help="a free prompt prepended to every text")] = None,
    dtype: DTypeOpt = DType.fp32,
    dim: Annotated[int | None, typer.Option(min=1, help="Matryoshka truncation to the first DIM dimensions")] = None,
    max_length: Annotated[int | None, typer.Option(min=1, help="truncate texts to this many tokens")] = None,
    runtime: RuntimeOpt = Runtime.torch,
    kind: Annotated[
        OutputKind,
        typer.Option(
            help="auto: what the model gives; sparse: token weights (a SPLADE model; JSONL rows hold the token strings)"
        ),
    ] = OutputKind.auto,
) -> None:
    """Embed texts into a .npy matrix, an .npz of any kind, or a JSONL file."""
    from embedlab import vectors
    from embedlab.errors import UsageError

    suffix = output.suffix.lower()
    if suffix not in vectors.SAVE_SUFFIXES:
        raise UsageError(f"--output must end in {', '.join(vectors.SAVE_SUFFIXES)}, got {output}")
    output_file(output, "--output")
    texts = read_texts(input, stdin_text=sys.stdin.read() if input == "-" else None)
    emb = load_embedder(model, pooling, attention, dim=dim, max_length=max_length)
    want = emb.output_kind if kind is OutputKind.auto else kind.value
    if want == "sparse" and suffix == ".npy":
        raise UsageError(f"sparse vectors are written as .jsonl or .npz, not .npy ({output})")
    result = emb.encode(
        texts,
        prompt_name=prompt,
        prompt=instruction,
        dtype=dtype.value,
        show_progress=True,
        runtime=runtime.value,
        output="numpy" if want == "dense" else want,
    )
    vocabulary = emb.head.vocabulary(emb.tokenizer) if want == "sparse" else None
    vectors.save_embeddings(output, result, vocabulary)
    stats = emb.last_stats
    width = f"{emb.output_dim}-d" if want == "dense" else f"sparse over {emb.output_dim:,} tokens"
    err.print(
        f"encoded {stats.texts} texts -> {output} ({width}, {stats.tokens} tokens, "
        f"{stats.texts / max(stats.seconds, 1e-9):.1f} texts/s); {stats.truncated} truncated to {stats.max_length} tokens",
        highlight=False,
    )


def demo(
    model: ModelOpt = DEFAULT_MODEL,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1)] = 3,
) -> None:
    """Encode the shipped sample corpus and show each sample query's nearest neighbours."""
    from embedlab.demo import nearest_neighbours

    emb = load_embedder(model)
    rows, ends = [], []
    for query, hits in nearest_neighbours(emb, top_k=top_k):
        for rank, (text, score) in enumerate(hits):
            rows.append((query if rank == 0 else "", text, f"{score:.3f}"))
            ends.append(rank == len(hits) - 1)
    show_table(
        rows,
        ("query", "neighbour", ("cosine", "right")),
        sections=ends,
        title=f"nearest neighbours with {model} ({emb.head.name} pooling, {emb.attention} attention)",
    )


def register(app: typer.Typer) -> None:
    for fn in (models, info, encode, demo):
        app.command()(fn)
