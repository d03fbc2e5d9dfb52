"""``embedlab bias report|weat|seat|direction|debias``: WEAT/SEAT, the gender direction and hard debiasing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from embedlab.cli._common import (
    Attention,
    AttentionOpt,
    OverwriteOpt,
    PoolingOpt,
    check_model,
    err,
    input_file,
    out,
    output_file,
    output_folder,
    show_table,
    wide,
)

bias_app = typer.Typer(
    no_args_is_help=True, help="Bias: WEAT/SEAT with exact permutation tests, the gender direction, hard debiasing."
)
TESTS_HELP = (
    "weat,seat (WEAT 1-10 on words and in SEAT templates) | weat | seat | weat3,weat6 | a YAML/JSON file of tests"
)
WORDS_MODEL_HELP = "alias, saved embedder, HF directory, .gguf, hub id, or a word2vec/GloVe .txt/.vec file"


def _encoder(model: str, pooling: str | None, attention: Attention | None) -> Any:
    from embedlab.analysis.bias import open_encoder

    with err.status(f"loading {model}…"):
        return open_encoder(model, pooling=pooling, attention=attention.value if attention else None)


def _report(
    model: str,
    tests: str,
    mode: str | None,
    compare: str | None,
    json_out: Path | None,
    png: Path | None,
    pooling: str | None,
    attention: Attention | None,
    seed: int,
    n_random: int,
) -> None:
    from embedlab.analysis.bias import plot_effect_sizes, results_table, run_tests
    from embedlab.analysis.bias_tests_spec import select
    from embedlab.io import write_json

    chosen, modes = select(tests, mode)
    names = [model] + ([compare] if compare else [])
    for name in names:  # every name and path is checked before the first model loads
        check_model(name, word_vectors=True)
    output_file(json_out, "--json")
    output_file(png, "--png")
    results: dict[str, list[Any]] = {}
    for name in names:
        enc = _encoder(name, pooling, attention)
        if hasattr(enc, "has") and "seat" in modes and mode is None:
            modes = [m for m in modes if m != "seat"] or ["weat"]
            err.print(f"[yellow]{name} holds static word vectors: running WEAT only (SEAT embeds sentences)[/yellow]")
        with err.status(f"{name}: {len(chosen)} test(s) x {'+'.join(modes)}…"):
            results[name] = run_tests(enc, chosen, modes, seed=seed, n_random=n_random)
        for r in results[name]:
            if r.skipped or r.dropped:
                miss = ", ".join(f"{k}: {len(v)}" for k, v in r.skipped.items())
                drop = ", ".join(f"{k}: {len(v)}" for k, v in r.dropped.items())
                err.print(
                    f"[yellow]{name} {r.test}:[/yellow] skipped (not in the vocabulary) {miss or 'none'}; "
                    f"dropped to make |X| = |Y| {drop or 'none'}",
                    highlight=False,
                )
    columns: list[Any] = ["mode", "test", "targets / attributes"]
    for m in results:
        label = "" if len(results) == 1 else f" {m}"
        columns += [(f"d{label}", "right"), (f"p{label}", "right")]
    columns.append(("p from", "right"))
    rows = []
    for r in results_table(results):
        cells = [r["mode"].upper(), r["test"], r["title"]]
        for m in results:
            c = r.get(m)
            cells += [f"{c['d']:+.3f}", f"{c['p']:.3g}"] if c else ["-", "-"]
        first = r[next(iter(results))]
        cells.append(f"{first['p_method']} ({first['permutations']:,})")
        rows.append(cells)
    show_table(
        rows,
        columns,
        console=wide(),
        title=("bias: " + " vs ".join(results)) + " (d = effect size, p one-sided; exact = every partition)",
    )
    if json_out is not None:
        write_json(
            json_out,
            {
                "models": list(results),
                "modes": modes,
                "seed": seed,
                "n_random": n_random,
                "results": {m: [r.to_dict() for r in rs] for m, rs in results.items()},
            },
        )
    if png is not None:
        plot_effect_sizes(results, png)
    if json_out is not None or png is not None:
        err.print("wrote " + " and ".join(str(p) for p in (json_out, png) if p is not None), highlight=False)


@bias_app.command("report")
def bias_report(
    model: Annotated[str, typer.Argument(help=WORDS_MODEL_HELP)],
    tests: Annotated[str, typer.Option("--tests", help=TESTS_HELP)] = "weat,seat",
    mode: Annotated[str | None, typer.Option(help="weat, seat or both (default: from --tests, else both)")] = None,
    compare: Annotated[
        str | None, typer.Option("--compare", help="a second model, shown side by side (e.g. the debiased one)")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write every result as JSON")] = None,
    png: Annotated[Path | None, typer.Option("--png", help="bar chart of the effect sizes with their p-values")] = None,
    pooling: PoolingOpt = None,
    attention: AttentionOpt = None,
    seed: Annotated[
        int, typer.Option(help="seed of the random permutations (used when a test has over 1e5 partitions)")
    ] = 0,
    n_random: Annotated[
        int, typer.Option("--n-random", min=1, help="random permutations when exact enumeration is too large")
    ] = 100_000,
) -> None:
    """WEAT and SEAT effect sizes with one-sided permutation p-values (exact up to 1e5 partitions)."""
    _report(model, tests, mode, compare, json_out, png, pooling, attention, seed, n_random)


@bias_app.command("weat")
def bias_weat(
    model: Annotated[str, typer.Argument(help=WORDS_MODEL_HELP)],
    tests: Annotated[str, typer.Option("--tests", help=TESTS_HELP)] = "weat",
    compare: Annotated[str | None, typer.Option("--compare")] = None,
    json_out: Annotated[Path | None, typer.Option("--json")] = None,
    png: Annotated[Path | None, typer.Option("--png")] = None,
    seed: int = 0,
) -> None:
    """WEAT only (each word embedded alone): `bias report --mode weat`."""
    _report(model, tests, "weat", compare, json_out, png, None, None, seed, 100_000)


@bias_app.command("seat")
def bias_seat(
    model: Annotated[str, typer.Argument(help=WORDS_MODEL_HELP)],
    tests: Annotated[str, typer.Option("--tests", help=TESTS_HELP)] = "seat",
    compare: Annotated[str | None, typer.Option("--compare")] = None,
    json_out: Annotated[Path | None, typer.Option("--json")] = None,
    png: Annotated[Path | None, typer.Option("--png")] = None,
    seed: int = 0,
) -> None:
    """SEAT only (words in bleached sentence templates): `bias report --mode seat`."""
    _report(model, tests, "seat", compare, json_out, png, None, None, seed, 100_000)


def _pairs_and_lists(lists_dir: Path | None, pairs: Path | None) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    from embedlab.analysis.bias import debiaswe_lists, read_pairs

    input_file(pairs, "--pairs")
    lists = debiaswe_lists(lists_dir)
    return lists, read_pairs(pairs) if pairs else [tuple(p) for p in lists["definitional_pairs"]]


def _print_direction(name: str, rep: dict[str, Any]) -> None:
    show_table(
        [
            (f"{i}{' (kept)' if i <= rep['k'] else ''}", f"{100 * v:.1f}%")
            for i, v in enumerate(rep["explained_variance_ratio"], 1)
        ],
        (("component", "right"), ("variance explained", "right")),
        title=f"{name}: bias subspace from {rep['pairs_used']} definitional pairs, k = {rep['k']}",
    )
    out.print(
        f"DirectBias_{rep['c']:g} over {rep['neutral_words']} gender-neutral professions: {rep['direct_bias']:.4f}",
        highlight=False,
    )
    out.print(
        f"most on the '{rep.get('positive', 'first word')}' side: {', '.join(rep['most_positive'])}", highlight=False
    )
    out.print(f"most on the other side: {', '.join(rep['most_negative'])}", highlight=False)
    if rep["pairs_skipped"]:
        err.print(f"[yellow]skipped {len(rep['pairs_skipped'])} pair(s) with a word not in the vocabulary[/yellow]")


@bias_app.command("direction")
def bias_direction(
    model: Annotated[str, typer.Argument(help="a model, or a word2vec/GloVe .txt/.vec file")],
    k: Annotated[int, typer.Option("-k", min=1, help="dimensions of the bias subspace")] = 1,
    c: Annotated[float, typer.Option("-c", min=0.0, help="DirectBias strictness")] = 1.0,
    pairs: Annotated[
        Path | None, typer.Option(help="definitional pairs, JSON [[a, b], ...] (default: debiaswe's 10)")
    ] = None,
    lists_dir: Annotated[
        Path | None, typer.Option("--lists", help="the debiaswe lists folder (default $EMBEDLAB_DATA/debiaswe)")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json")] = None,
    pooling: PoolingOpt = None,
    attention: AttentionOpt = None,
) -> None:
    """The gender subspace (PCA over centred definitional pairs, variance per component) and DirectBias."""
    from embedlab.analysis.bias import direction_report
    from embedlab.io import write_json
    from embedlab.validation import finite_float

    finite_float("-c", c, low=0.0)
    output_file(json_out, "--json")
    check_model(model, word_vectors=True)
    lists, pair_list = _pairs_and_lists(lists_dir, pairs)
    enc = _encoder(model, pooling, attention)
    with err.status("estimating the subspace…"):
        rep = direction_report(enc, lists, k=k, c=c, pairs=pair_list)
    rep["positive"] = pair_list[0][0]
    _print_direction(model, rep)
    if json_out is not None:
        write_json(
            json_out, {**{k_: v for k_, v in rep.items() if k_ != "subspace"}, "subspace": rep["subspace"].to_dict()}
        )


@bias_app.command("debias")
def bias_debias(
    model: Annotated[str, typer.Argument(help="alias, saved embedder, HF directory, .gguf or hub id")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="where the debiased model is written (sentence-transformers layout)")
    ],
    k: Annotated[int, typer.Option("-k", min=1)] = 1,
    pairs: Annotated[
        Path | None, typer.Option(help="definitional pairs, JSON [[a, b], ...] (default: debiaswe's 10)")
    ] = None,
    lists_dir: Annotated[Path | None, typer.Option("--lists")] = None,
    renormalize: Annotated[
        bool, typer.Option("--renormalize/--no-renormalize", help="unit-normalise after the projection")
    ] = True,
    pooling: PoolingOpt = None,
    attention: AttentionOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write MODEL with a projection that removes its gender subspace (hard debiasing's neutralise step)."""
    from embedlab.analysis.bias import StaticVectors, direction_report
    from embedlab.errors import UsageError
    from embedlab.io import allow_overwrite
    from embedlab.models.debias import debias_embedder

    if Path(model).suffix.lower() in (".txt", ".vec"):
        raise UsageError(
            "bias debias writes a sentence embedder; for word vectors use embedlab.analysis.bias.hard_debias"
        )
    output_folder(out_dir, overwrite)
    check_model(model)
    lists, pair_list = _pairs_and_lists(lists_dir, pairs)
    emb = _encoder(model, pooling, attention)
    if isinstance(emb, StaticVectors):
        raise UsageError(
            "bias debias writes a sentence embedder; for word vectors use embedlab.analysis.bias.hard_debias"
        )
    with err.status("estimating the subspace…"):
        before = direction_report(emb, lists, k=k, pairs=pair_list)
    sub = before["subspace"]
    info = {
        "source_model": str(model),
        "k": sub.k,
        "pairs": [list(p) for p in pair_list],
        "explained_variance_ratio": before["explained_variance_ratio"],
        "renormalize": renormalize,
        "method": "Bolukbasi et al. 2016 hard debiasing, neutralise step as a linear projection",
    }
    debiased = debias_embedder(emb, sub.basis, renormalize=renormalize, info=info)
    after = direction_report(debiased, lists, subspace=sub)
    with err.status(f"saving {out_dir}…"), allow_overwrite(overwrite):
        debiased.save(out_dir)
    err.print(
        f"wrote {out_dir} ({' -> '.join(m.kind for m in debiased.chain)}); variance of component 1: "
        f"{100 * sub.explained_variance_ratio[0]:.1f}%; DirectBias over {before['neutral_words']} professions "
        f"{before['direct_bias']:.4f} -> {after['direct_bias']:.2e}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(bias_app, name="bias")
