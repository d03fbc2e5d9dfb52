"""Compare result folders the way the headline paper does: per category, the baseline's score and
each model's Δ with a Wilcoxon p-value over the category's datasets (Holm-corrected across the
report) next to a hierarchical-bootstrap CI for the category's mean Δ (datasets, then items, are
resampled), plus per-task paired-bootstrap confidence intervals.

One typed table (``category_table``) has four views: ``to_markdown``, ``to_rich_table``,
``to_json_dict`` and ``plot`` (PNG).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.errors import EmbedlabError
from embedlab.eval.runner import load_results
from embedlab.eval.significance import (
    BootstrapResult,
    CategoryComparison,
    HierarchicalResult,
    compare_across_datasets,
    hierarchical_bootstrap,
    holm,
    paired_bootstrap,
)
from embedlab.io import atomic_path

log = logging.getLogger(__name__)
ALPHA = 0.05
ExtraColumns = dict[str, dict[str, str]]  # model name -> {column title: value}


@dataclass
class CategoryRow:
    category: str
    model: str
    tasks: list[str]
    baseline_score: float
    comparison: CategoryComparison
    p_holm: float = 1.0
    # hierarchical bootstrap (datasets, then items) for the category's mean Δ; None when some task
    # lacks pairable per-example records
    hier_delta: float | None = None
    hier_ci_low: float | None = None
    hier_ci_high: float | None = None
    hier_resamples: int = 0

    @property
    def score(self) -> float:
        """The model's category score (mean over the category's tasks)."""
        return self.baseline_score + self.comparison.mean_delta

    @property
    def hier_excludes_zero(self) -> bool:
        return (
            self.hier_ci_low is not None
            and self.hier_ci_high is not None
            and (self.hier_ci_low > 0 or self.hier_ci_high < 0)
        )


@dataclass
class TaskRow:
    task: str
    category: str
    model: str
    baseline_score: float
    score: float
    bootstrap: BootstrapResult | None


@dataclass
class Comparison:
    baseline: str
    models: list[str]
    categories: list[CategoryRow] = field(default_factory=list)
    tasks: list[TaskRow] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    descriptions: dict[str, str] = field(default_factory=dict)
    resamples: int = 1000
    seed: int = 0


def _describe(results: dict[str, dict[str, Any]]) -> str:
    meta = next(iter(results.values()))["metadata"]
    parts = [str(meta.get("model_source", "?")), f"{meta.get('pooling', '?')} pooling"]
    if meta.get("attention") is not None or "attention" not in meta:  # a static model has no attention at all
        parts.append(f"{meta.get('attention', '?')} attention")
    return ", ".join(parts)


def compare(
    dirs: list[str | Path], baseline: str | Path | None = None, resamples: int = 1000, seed: int = 0
) -> Comparison:
    """Compare two or more result folders against ``baseline`` (default: the first)."""
    if len(dirs) < 2:
        raise EmbedlabError("compare needs at least two result folders")
    paths = [Path(d) for d in dirs]
    base_path = Path(baseline) if baseline is not None else paths[0]
    if base_path not in paths:
        paths.insert(0, base_path)
    names = [p.name or str(p) for p in paths]
    if len(set(names)) != len(names):
        names = [str(p) for p in paths]
    loaded = {n: load_results(p) for n, p in zip(names, paths)}
    base = names[paths.index(base_path)]
    others = [n for n in names if n != base]
    report = Comparison(
        baseline=base,
        models=others,
        descriptions={n: _describe(r) for n, r in loaded.items()},
        resamples=resamples,
        seed=seed,
    )
    common = sorted(set.intersection(*(set(r) for r in loaded.values())))
    report.skipped = sorted(set.union(*(set(r) for r in loaded.values())) - set(common))
    if not common:
        raise EmbedlabError("the result folders have no task in common")
    by_category: dict[str, list[str]] = {}
    for task in common:
        by_category.setdefault(loaded[base][task]["category"], []).append(task)
    for model in others:
        for task in common:
            a, b = loaded[base][task], loaded[model][task]
            boot = None
            try:
                boot = paired_bootstrap(a["per_example"], b["per_example"], resamples=resamples, seed=seed)
            except (ValueError, KeyError) as exc:
                log.warning("no bootstrap for %s (%s vs %s): %s", task, base, model, exc)
            report.tasks.append(TaskRow(task, a["category"], model, a["main_score"], b["main_score"], boot))
        for category, tasks in sorted(by_category.items()):
            cmp = compare_across_datasets(
                [loaded[base][t]["main_score"] for t in tasks], [loaded[model][t]["main_score"] for t in tasks]
            )
            row = CategoryRow(
                category, model, tasks, float(np.mean([loaded[base][t]["main_score"] for t in tasks])), cmp
            )
            hier: HierarchicalResult | None = None
            try:
                hier = hierarchical_bootstrap(
                    [(loaded[base][t]["per_example"], loaded[model][t]["per_example"]) for t in tasks],
                    resamples=resamples,
                    seed=seed,
                )
            except (ValueError, KeyError) as exc:
                log.warning("no hierarchical bootstrap for %s (%s vs %s): %s", category, base, model, exc)
            if hier is not None:
                row.hier_delta, row.hier_ci_low, row.hier_ci_high, row.hier_resamples = (
                    hier.delta,
                    hier.ci_low,
                    hier.ci_high,
                    hier.resamples,
                )
            report.categories.append(row)
    for row, p in zip(report.categories, holm([r.comparison.p_value for r in report.categories])):
        row.p_holm = p
    return report


# ---------------------------------------------------------------------------------------------
# The typed table and its views
# ---------------------------------------------------------------------------------------------
def _mark(p_raw: float, p_holm: float) -> str:
    return "†" if p_holm < ALPHA else ("*" if p_raw < ALPHA else "")


def _signs(row: CategoryRow) -> str:
    return _mark(row.comparison.p_value, row.p_holm) + ("‡" if row.hier_excludes_zero else "")


def _pct(x: float, signed: bool = True) -> str:
    return f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}"


def _hier_cell(row: CategoryRow) -> str:
    if row.hier_delta is None or row.hier_ci_low is None or row.hier_ci_high is None:
        return "n/a"
    return f"{_pct(row.hier_delta)} [{_pct(row.hier_ci_low)}, {_pct(row.hier_ci_high)}]"


LEGEND = (
    "Scores ×100. p: two-sided Wilcoxon signed-rank over the category's datasets; p (Holm): Holm-corrected "
    "across this table. hier. Δ [95% CI]: hierarchical bootstrap (datasets resampled, then items within each). "
    "† = significant after Holm (p < 0.05); * = p < 0.05 before correction only (the headline paper's criterion); "
    "‡ = the hierarchical 95% CI excludes 0."
)


@dataclass
class ReportTable:
    """The per-category table every view renders: ``columns`` titles, ``rows`` of cell strings
    (one row per model × category, the baseline first), ``section_starts`` = indices of the rows that
    open a model's block, ``records`` = the numeric record behind each row (``to_json_dict``)."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    section_starts: list[int]
    records: list[dict[str, Any]]
    legend: str = LEGEND


def category_table(cmp: Comparison, extra_columns: ExtraColumns | None = None) -> ReportTable:
    """The one typed table: per model (baseline first) and category: n, score, mean/median Δ,
    W/T/L, Wilcoxon p raw and Holm, the hierarchical-bootstrap Δ with its 95% CI, and marks.

    ``extra_columns`` (model name -> {column title: value}) adds columns after ``model``, shown on
    the first row of each model's block (e.g. the grid's trainable-parameter counts)."""
    extra_columns = extra_columns or {}
    extra_titles = list(dict.fromkeys(t for cols in extra_columns.values() for t in cols))
    columns = [
        "model",
        *extra_titles,
        "category",
        "n",
        "score",
        "mean Δ",
        "median Δ",
        "W/T/L",
        "p",
        "p (Holm)",
        "hier. Δ [95% CI]",
        "sig.",
    ]
    rows: list[list[str]] = []
    records: list[dict[str, Any]] = []
    starts: list[int] = []
    base_rows = {r.category: r for r in cmp.categories if r.model == cmp.models[0]} if cmp.models else {}
    for model in [cmp.baseline, *cmp.models]:
        starts.append(len(rows))
        extras = extra_columns.get(model, {})
        first = True
        if model == cmp.baseline:
            for category, r in base_rows.items():
                rows.append(
                    [
                        model if first else "",
                        *[extras.get(t, "") if first else "" for t in extra_titles],
                        category,
                        str(r.comparison.n),
                        _pct(r.baseline_score, False),
                        "–",
                        "–",
                        "–",
                        "–",
                        "–",
                        "–",
                        "",
                    ]
                )
                records.append(
                    {
                        "model": model,
                        "category": category,
                        "tasks": r.tasks,
                        "n": r.comparison.n,
                        "score": r.baseline_score,
                        "baseline": True,
                    }
                )
                first = False
            continue
        for r in (r for r in cmp.categories if r.model == model):
            c = r.comparison
            rows.append(
                [
                    model if first else "",
                    *[extras.get(t, "") if first else "" for t in extra_titles],
                    r.category,
                    str(c.n),
                    _pct(r.score, False),
                    _pct(c.mean_delta),
                    _pct(c.median_delta),
                    f"{c.wins}/{c.ties}/{c.losses}",
                    f"{c.p_value:.3g}",
                    f"{r.p_holm:.3g}",
                    _hier_cell(r),
                    _signs(r),
                ]
            )
            records.append(
                {
                    "model": model,
                    "category": r.category,
                    "tasks": r.tasks,
                    "n": c.n,
                    "score": r.score,
                    "baseline": False,
                    "baseline_score": r.baseline_score,
                    "mean_delta": c.mean_delta,
                    "median_delta": c.median_delta,
                    "wins": c.wins,
                    "ties": c.ties,
                    "losses": c.losses,
                    "p_value": c.p_value,
                    "p_holm": r.p_holm,
                    "hier_delta": r.hier_delta,
                    "hier_ci_low": r.hier_ci_low,
                    "hier_ci_high": r.hier_ci_high,
                    "hier_resamples": r.hier_resamples,
                    "significant_holm": r.p_holm < ALPHA,
                    "significant_raw": c.p_value < ALPHA,
                    "hier_excludes_zero": r.hier_excludes_zero,
                }
            )
            first = False
    return ReportTable(f"Per category vs `{cmp.baseline}`", columns, rows, starts, records)


def to_markdown(cmp: Comparison, extra_columns: ExtraColumns | None = None) -> str:
    """The full report as markdown: model descriptions, ``category_table`` (with ``extra_columns``:
    model name -> {column title: value}, shown on each model's first row) and the per-task
    paired-bootstrap table."""
    table = category_table(cmp, extra_columns)
    lines = [f"# Comparison against `{cmp.baseline}`", ""]
    for name, desc in cmp.descriptions.items():
        lines.append(f"- `{name}`: {desc}")
    lines += [
        "",
        "## Per category (Wilcoxon signed-rank and hierarchical bootstrap over the category's datasets)",
        "",
        table.legend + f" {cmp.resamples} resamples, seed {cmp.seed}.",
        "",
        "| " + " | ".join(table.columns) + " |",
        "|" + "---|" * len(table.columns),
    ]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table.rows]
    lines += [
        "",
        "## Per task (paired bootstrap over queries / pairs / items)",
        "",
        "| task | category | baseline | model | score | Δ | 95% CI | p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in cmp.tasks:
        b = t.bootstrap
        ci = f"[{100 * b.ci_low:+.2f}, {100 * b.ci_high:+.2f}]" if b else "n/a"
        p = (f"<{1 / b.resamples:.0g}" if b.p_value == 0 else f"{b.p_value:.3g}") if b else "n/a"
        lines.append(
            f"| {t.task} | {t.category} | {100 * t.baseline_score:.2f} | {t.model} | {100 * t.score:.2f} | "
            f"{100 * (t.score - t.baseline_score):+.2f} | {ci} | {p} |"
        )
    if cmp.skipped:
        lines += ["", f"Not compared (missing from some folder): {', '.join(cmp.skipped)}"]
    return "\n".join(lines) + "\n"


def to_rich_table(cmp: Comparison, extra_columns: ExtraColumns | None = None) -> Any:
    """``category_table`` as a ``rich.table.Table`` (one section per model; ``extra_columns``: model
    name -> {column title: value}, shown on each model's first row)."""
    from rich.table import Table

    table = category_table(cmp, extra_columns)
    rich_table = Table(title=table.title.replace("`", ""), caption=table.legend, caption_justify="left")
    numeric = {"n", "score", "mean Δ", "median Δ", "p", "p (Holm)"}
    for col in table.columns:
        rich_table.add_column(col, justify="right" if col in numeric else "left")
    for i, row in enumerate(table.rows):
        rich_table.add_row(*row, end_section=(i + 1) in table.section_starts)
    return rich_table


def to_json_dict(cmp: Comparison, extra_columns: ExtraColumns | None = None) -> dict[str, Any]:
    """The report as JSON-ready data (scores on MTEB's 0–1 scale, not ×100): ``categories`` = the
    records of ``category_table`` (Wilcoxon p raw and Holm, hierarchical Δ and CI), ``tasks`` = the
    per-task paired bootstrap, plus baseline, models, descriptions, settings and ``extra_columns``."""
    table = category_table(cmp, extra_columns)
    tasks = []
    for t in cmp.tasks:
        b = t.bootstrap
        tasks.append(
            {
                "task": t.task,
                "category": t.category,
                "model": t.model,
                "baseline_score": t.baseline_score,
                "score": t.score,
                "delta": t.score - t.baseline_score,
                "ci_low": b.ci_low if b else None,
                "ci_high": b.ci_high if b else None,
                "p_value": b.p_value if b else None,
                "resamples": b.resamples if b else 0,
            }
        )
    return {
        "baseline": cmp.baseline,
        "models": cmp.models,
        "descriptions": cmp.descriptions,
        "alpha": ALPHA,
        "resamples": cmp.resamples,
        "seed": cmp.seed,
        "columns": table.columns,
        "categories": table.records,
        "tasks": tasks,
        "skipped": cmp.skipped,
        "extra_columns": extra_columns or {},
    }


def _delta_bars(
    ax: Any, y: np.ndarray, delta: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, height: float, label: str, colour: Any
) -> None:
    """One model's horizontal Δ bars at rows ``y``, with the ``lo``..``hi`` interval as error bars."""
    ax.barh(
        y,
        delta,
        height=height,
        label=label,
        color=colour,
        xerr=np.vstack([delta - lo, hi - delta]).clip(min=0),
        capsize=2,
    )


def plot(report: Comparison, path: str | Path) -> None:
    """PNG (atomic): top, per category and model the hierarchical-bootstrap mean Δ with its 95% CI,
    labelled with the Wilcoxon p (raw and Holm); bottom, per task Δ with paired-bootstrap 95% CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = sorted({r.category for r in report.categories})
    tasks = sorted(
        {t.task for t in report.tasks}, key=lambda n: (next(r.category for r in report.tasks if r.task == n), n)
    )
    n_models = max(1, len(report.models))
    height = 0.8 / n_models
    top_h, bottom_h = 0.45 * len(categories) * n_models + 1.0, 0.45 * len(tasks) * n_models + 1.0
    fig, (ax_c, ax_t) = plt.subplots(
        2, 1, figsize=(9, top_h + bottom_h), gridspec_kw={"height_ratios": [top_h, bottom_h]}
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, model in enumerate(report.models):
        colour = colours[k % len(colours)]
        rows = {r.category: r for r in report.categories if r.model == model}
        y = np.arange(len(categories)) + k * height
        delta = np.array(
            [
                100 * (rows[c].hier_delta if rows[c].hier_delta is not None else rows[c].comparison.mean_delta)
                for c in categories
            ]
        )
        lo = np.array(
            [100 * rows[c].hier_ci_low if rows[c].hier_ci_low is not None else d for c, d in zip(categories, delta)]
        )
        hi = np.array(
            [100 * rows[c].hier_ci_high if rows[c].hier_ci_high is not None else d for c, d in zip(categories, delta)]
        )
        _delta_bars(ax_c, y, delta, lo, hi, height=height, label=model, colour=colour)
        for yi, c, h in zip(y, categories, hi):
            r = rows[c]
            ax_c.annotate(
                f"p={r.comparison.p_value:.2g} (Holm {r.p_holm:.2g}){_signs(r)}",
                (max(h, 0), yi),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize="x-small",
            )
        rows_t = {t.task: t for t in report.tasks if t.model == model}
        y = np.arange(len(tasks)) + k * height
        delta = np.array([100 * (rows_t[t].score - rows_t[t].baseline_score) for t in tasks])
        lo = np.array([100 * rows_t[t].bootstrap.ci_low if rows_t[t].bootstrap else d for t, d in zip(tasks, delta)])
        hi = np.array([100 * rows_t[t].bootstrap.ci_high if rows_t[t].bootstrap else d for t, d in zip(tasks, delta)])
        _delta_bars(ax_t, y, delta, lo, hi, height=height, label=model, colour=colour)
    for ax, labels in (
        (ax_c, categories),
        (ax_t, [f"{t} ({next(r.category for r in report.tasks if r.task == t)})" for t in tasks]),
    ):
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(np.arange(len(labels)) + 0.4 - height / 2)
        ax.set_yticklabels(labels)
        ax.invert_yaxis()
        ax.legend(loc="best", fontsize="small")
    ax_c.margins(x=0.3)  # room for the p-value labels
    ax_c.set_xlabel(f"category mean Δ ×100 vs {report.baseline} (95% hierarchical-bootstrap CI; Wilcoxon p)")
    ax_t.set_xlabel(f"Δ main score ×100 vs {report.baseline} (95% paired-bootstrap CI)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
