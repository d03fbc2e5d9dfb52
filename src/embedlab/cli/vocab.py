"""``embedlab vocab extend`` and ``embedlab tokenizer report``: vocabulary expansion and tokenizer quality."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from embedlab.cli._common import (
    ModelArg,
    OverwriteOpt,
    RichProgress,
    err,
    input_file,
    on_interrupt,
    output_file,
    output_folder,
    wide,
)

vocab_app = typer.Typer(
    no_args_is_help=True, help="Vocabulary expansion: domain tokens and six embedding initialisations."
)
tokenizer_app = typer.Typer(
    no_args_is_help=True, help="Measure tokenizers: fertility, compression, Rényi efficiency, parity, %TR/%Pure."
)


@vocab_app.command("extend")
def vocab_extend(
    model: ModelArg,
    out_dir: Annotated[Path, typer.Option("--out", help="directory for the extended model")],
    corpus: Annotated[
        Path | None, typer.Option("--corpus", help="domain text: one text per line, or JSONL with 'text' (.gz ok)")
    ] = None,
    add: Annotated[int | None, typer.Option("--add", min=1, help="new ids to add, chosen from the corpus")] = None,
    tokens: Annotated[
        Path | None, typer.Option("--tokens", help="a file of new tokens, one per line (instead of --add)")
    ] = None,
    init: Annotated[str, typer.Option("--init", help="random | mean | multivariate | fvt | wechsel | cw2v")] = "fvt",
    select: Annotated[
        str | None,
        typer.Option(
            "--select",
            help="tokens-saved (domain words by tokens saved; the default) | bpe (merges of a BPE trained on the corpus)",
        ),
    ] = None,
    multiword: Annotated[
        bool, typer.Option("--multiword", help="also add frequent two-word concepts (as added tokens)")
    ] = False,
    min_count: Annotated[int, typer.Option("--min-count", min=1, help="corpus count a word needs to be chosen")] = 3,
    pooling: Annotated[str | None, typer.Option(help="override the pooling head of the saved model")] = None,
    seed: Annotated[int, typer.Option(help="seed of the random, multivariate, wechsel and cw2v inits")] = 0,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", help="init option KEY=VALUE (e.g. scale=1e-5, k=10, steps=300, rank=64)"),
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Add domain tokens to a model's tokenizer and embeddings; saves a normal embedlab model directory."""
    from embedlab.errors import UsageError
    from embedlab.io import allow_overwrite
    from embedlab.validation import key_values

    options = key_values("--option", option or [])
    if (add is None) == (tokens is None):
        raise UsageError("give exactly one of --add N (tokens chosen from --corpus) or --tokens FILE")
    if add is not None and corpus is None:
        raise UsageError(
            "--add N chooses the new tokens from a domain corpus: give --corpus FILE (or list them with --tokens FILE)"
        )
    input_file(corpus, "--corpus")
    input_file(tokens, "--tokens")
    output_folder(out_dir, overwrite)
    try:
        from embedlab.vocab.extend import extend_model
    except ImportError:  # pragma: no cover - trees before the vocab package
        from embedlab.vocab.extend import extend_model

    with (
        on_interrupt(f"nothing was written to {out_dir} (the model is written at the end)"),
        allow_overwrite(overwrite),
        err.status(f"loading {model} and choosing tokens…"),
    ):
        report = extend_model(
            model,
            corpus,
            out_dir,
            method=init,
            add=add,
            tokens_file=tokens,
            multiword=multiword,
            min_count=min_count,
            seed=seed,
            pooling=pooling,
            options=options,
            overwrite=overwrite,
            show_progress=True,  # tqdm bars under rich's status line (one rich live display at a time)
            **({"select": select} if select is not None else {}),
        )
    err.print(
        f"added {report['added']} ids ({report['token']} tokens, {report['intermediate']} BPE merge steps, "
        f"{report['multiword']} multiword); skipped {report['skipped_present']} already in the vocabulary"
        + (f"; {report['unreachable']} unreachable by merges" if report["unreachable"] else "")
        + f"; vocabulary {report['old_size']} -> {report['new_size']}; init {init}; saved {out_dir}",
        highlight=False,
    )


@tokenizer_app.command("report")
def tokenizer_report(
    tokenizers: Annotated[
        list[str],
        typer.Argument(
            help="Aliases, HF dirs, tokenizer.json/.model/.gguf files, pypi:turkish-tokenizer, pypi:mistral-common[:FILE]."
        ),
    ],
    corpus: Annotated[
        Path, typer.Option("--corpus", help="One text per line, JSONL with 'text', or a .tsv with a 'text' column.")
    ],
    corpus2: Annotated[
        Path | None,
        typer.Option(
            "--corpus2", help="A line-aligned parallel corpus: adds parity (tokens on --corpus / tokens here)."
        ),
    ] = None,
    lang: Annotated[
        str | None, typer.Option("--lang", help="'tr' adds %TR and %Pure (Bayram et al.) from offline lexicons.")
    ] = None,
    lexicon: Annotated[
        Path | None,
        typer.Option(
            "--lexicon", help="Folder of the Turkish word/morpheme lists (default ../shared/data/turkish/morphemes)."
        ),
    ] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Rényi order (a finite number > 0).")] = 2.5,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Use only the first N texts of each corpus.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write every number (and the counts behind it) as JSON.")
    ] = None,
    png: Annotated[Path | None, typer.Option("--png", help="Write a bar chart per metric.")] = None,
) -> None:
    """Tokenizer quality report: fertility, split words, bytes/chars per token, vocabulary use, UNK rate,
    Rényi efficiency, parity, and with --lang tr %TR/%Pure over tokens and over types. See docs/tokenizers.md."""
    from embedlab.tokenize import metrics as tm
    from embedlab.tokenize.loading import load_tokenizer
    from embedlab.tokenize.turkish import TurkishLexicon
    from embedlab.validation import choice, finite_float

    if lang is not None:
        choice("--lang", lang, ("tr",))
    finite_float("--alpha", alpha, low=0.0, low_open=True)
    for path, flag in ((corpus, "--corpus"), (corpus2, "--corpus2"), (lexicon, "--lexicon")):
        input_file(path, flag)
    output_file(json_out, "--json")
    output_file(png, "--png")
    texts = tm.read_corpus(corpus, limit)
    texts2 = tm.read_corpus(corpus2, limit) if corpus2 is not None else None
    lex = TurkishLexicon.load(lexicon) if lang == "tr" or lexicon is not None else None
    results = []
    with RichProgress(err) as bars:
        for spec in tokenizers:
            tok = load_tokenizer(spec)
            results.append(
                tm.tokenizer_metrics(tok, texts, texts2=texts2, alpha=alpha, lexicon=lex, show_progress=bars)
            )
    title = f"{corpus.name}: {len(texts):,} texts, {results[0].n_words:,} words; Rényi α={alpha}"
    wide().print(tm.to_rich_table(results, title=title))
    if lex is not None:
        err.print(
            f"%TR/%Pure lexicon: {lex.description} (offline stand-in for the paper's ITU web services)", highlight=False
        )
    meta = {
        "corpus": str(corpus),
        "corpus2": str(corpus2) if corpus2 else None,
        "n_texts": len(texts),
        "alpha": alpha,
        "lexicon": lex.description if lex else None,
    }
    if json_out is not None:
        tm.write_json(json_out, results, meta)
        err.print(f"wrote {json_out}", highlight=False)
    if png is not None:
        tm.plot(results, png, title=title)
        err.print(f"wrote {png}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(vocab_app, name="vocab")
    app.add_typer(tokenizer_app, name="tokenizer")
