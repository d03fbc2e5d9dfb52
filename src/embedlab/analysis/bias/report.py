"""Whole-model helpers for the CLI and bench/bias_cost.py: open an encoder, the direction report, tables and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from embedlab.analysis.bias.data import phrase
from embedlab.analysis.bias.encoders import StaticVectors, encode
from embedlab.analysis.bias.subspace import Subspace, bias_subspace, direct_bias
from embedlab.analysis.bias.weat import WeatResult, unit
from embedlab.errors import ConfigError

STATIC_SUFFIXES = (".txt", ".vec")


def open_encoder(model: str | Path, **embedder_options: Any) -> Any:
    """A word-vector text file (``.txt``/``.vec``) as :class:`StaticVectors`, anything else as an Embedder."""
    p = Path(model)
    if p.suffix.lower() in STATIC_SUFFIXES and p.is_file():
        if any(v is not None for v in embedder_options.values()):
            raise ConfigError("pooling/attention options apply to embedders, not to a word-vector file")
        return StaticVectors.from_file(p)
    from embedlab.models import Embedder

    return Embedder.from_pretrained(model, **{k: v for k, v in embedder_options.items() if v is not None})


def neutral_words(lists: dict[str, Any], encoder: Any | None = None) -> list[str]:
    """The professions that are not gender-specific (DirectBias's N), as the encoder will see them."""
    specific = {w.lower() for w in lists["gender_specific_full"]}
    words = [w for w in lists["professions"] if w.lower() not in specific]
    if encoder is not None and hasattr(encoder, "has"):
        return [w for w in words if encoder.has(w)]
    return [phrase(w) for w in words]


def direction_report(
    encoder: Any,
    lists: dict[str, Any],
    *,
    k: int = 1,
    c: float = 1.0,
    pairs: Sequence[tuple[str, str]] | None = None,
    subspace: Subspace | None = None,
) -> dict[str, Any]:
    """The bias subspace of ``encoder`` (from the definitional pairs unless given) and DirectBias_c
    over the neutral professions, with the professions most aligned with the first direction."""
    skipped: list[tuple[str, str]] = []
    if subspace is None:
        pairs = pairs if pairs is not None else [tuple(p) for p in lists["definitional_pairs"]]
        subspace, skipped = bias_subspace(encoder, pairs, k)
        first = next(p for p in pairs if tuple(p) not in skipped)
        subspace = oriented(subspace, encoder, (first[0], first[1]))
    words = neutral_words(lists, encoder)
    V = encode(encoder, words)
    proj = unit(V) @ subspace.basis[0]
    order = np.argsort(proj)
    return {
        "k": subspace.k,
        "explained_variance_ratio": [round(float(x), 6) for x in subspace.explained_variance_ratio],
        "pairs_used": subspace.pairs,
        "pairs_skipped": [list(p) for p in skipped],
        "neutral_words": len(words),
        "c": c,
        "direct_bias": direct_bias(V, subspace, c),
        # a principal component's sign is arbitrary: it is oriented so that the first pair's first word
        # (woman, in debiaswe's list) is on the positive side
        "most_positive": [words[i] for i in order[::-1][:10]],
        "most_negative": [words[i] for i in order[:10]],
        "subspace": subspace,
    }


def oriented(subspace: Subspace, encoder: Any, pair: tuple[str, str]) -> Subspace:
    """The same subspace with its first direction pointing from ``pair[1]`` to ``pair[0]``."""
    a, b = encode(encoder, [phrase(pair[0]), phrase(pair[1])] if not hasattr(encoder, "has") else list(pair))
    if float((unit(a[None]) - unit(b[None]))[0] @ subspace.basis[0]) < 0:
        basis = subspace.basis.copy()
        basis[0] = -basis[0]
        return Subspace(basis, subspace.explained_variance_ratio, subspace.pairs)
    return subspace


def results_table(results: dict[str, Sequence[WeatResult]]) -> list[dict[str, Any]]:
    """One row per (mode, test) with each model's d and p side by side."""
    models = list(results)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for m in models:
        for r in results[m]:
            row = rows.setdefault((r.mode, r.test), {"mode": r.mode, "test": r.test, "title": r.title})
            row[m] = {
                "d": r.effect_size,
                "p": r.p_value,
                "p_method": r.p_method,
                "permutations": r.permutations,
                "n": r.sizes["X"],
            }
    return list(rows.values())


def plot_effect_sizes(results: dict[str, Sequence[WeatResult]], path: str | Path, title: str = "") -> None:
    """Bars of each test's effect size per model, labelled with its p-value (atomic PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embedlab.io import atomic_path

    rows = results_table(results)
    models = list(results)
    labels = [f"{r['mode'].upper()} {r['test']}" for r in rows]
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(min(14, max(6, 0.3 * len(rows) * len(models) + 2)), 4.5))
    for j, m in enumerate(models):
        xs = [i + (j - (len(models) - 1) / 2) * width for i in range(len(rows))]
        ds = [r[m]["d"] if m in r else np.nan for r in rows]
        bars = ax.bar(xs, ds, width, label=m)
        for x, r, bar in zip(xs, rows, bars):
            if m in r:
                p = r[m]["p"]
                h = bar.get_height()
                ax.annotate(
                    f"p={p:.2g}" + ("*" if p < 0.05 else ""),
                    (x, h),
                    ha="center",
                    va="bottom" if h >= 0 else "top",
                    fontsize=6,
                    rotation=90,
                )
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("effect size d")
    ax.set_ylim(-2.2, 2.2)
    ax.set_title(title or "WEAT/SEAT effect sizes (* p < 0.05, one-sided permutation test)", fontsize=9)
    if len(models) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
