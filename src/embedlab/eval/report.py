"""Compare result folders the way the headline paper does: per category, the baseline's score and
each model's Δ with a Wilcoxon p-value over the category's datasets (Holm-corrected across the
report), plus per-task paired-bootstrap confidence intervals."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.errors import EmbedlabError
from embedlab.eval.runner import load_results
from embedlab.eval.significance import BootstrapResult, CategoryComparison, compare_across_datasets, holm, paired_bootstrap
from embedlab.io import atomic_path

log = logging.getLogger(__name__)
ALPHA = 0.05


@dataclass
class CategoryRow:
    category: str
    model: str
    tasks: list[str]
    baseline_score: float
    comparison: CategoryComparison
    p_holm: float = 1.0


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


def _describe(results: dict[str, dict[str, Any]]) -> str:
    meta = next(iter(results.values()))["metadata"]
    return f"{meta.get('model_source', '?')}, {meta.get('pooling', '?')} pooling, {meta.get('attention', '?')} attention"


def compare(dirs: list[str | Path], baseline: str | Path | None = None, resamples: int = 1000, seed: int = 0) -> Comparison:
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
    report = Comparison(baseline=base, models=others, descriptions={n: _describe(r) for n, r in loaded.items()})
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
            cmp = compare_across_datasets([loaded[base][t]["main_score"] for t in tasks], [loaded[model][t]["main_score"] for t in tasks])
            report.categories.append(CategoryRow(category, model, tasks, float(np.mean([loaded[base][t]["main_score"] for t in tasks])), cmp))
    for row, p in zip(report.categories, holm([r.comparison.p_value for r in report.categories])):
        row.p_holm = p
    return report


def _mark(p_raw: float, p_holm: float) -> str:
    return "†" if p_holm < ALPHA else ("*" if p_raw < ALPHA else "")


def to_markdown(report: Comparison) -> str:
    lines = [f"# Comparison against `{report.baseline}`", ""]
    for name, desc in report.descriptions.items():
        lines.append(f"- `{name}`: {desc}")
    lines += ["", "## Per category (Wilcoxon signed-rank over the category's datasets, two-sided)", "",
              "Scores ×100. † = significant after Holm correction across this table (p < 0.05); "
              "* = p < 0.05 before correction only (the headline paper's criterion).", "",
              "| category | n | baseline | model | mean Δ | median Δ | W/T/L | p | p (Holm) | |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report.categories:
        c = r.comparison
        lines.append(f"| {r.category} | {c.n} | {100 * r.baseline_score:.2f} | {r.model} | {100 * c.mean_delta:+.2f} | "
                     f"{100 * c.median_delta:+.2f} | {c.wins}/{c.ties}/{c.losses} | {c.p_value:.3g} | {r.p_holm:.3g} | "
                     f"{_mark(c.p_value, r.p_holm)} |")
    lines += ["", "## Per task (paired bootstrap over queries / pairs / items)", "",
              "| task | category | baseline | model | score | Δ | 95% CI | p |", "|---|---|---|---|---|---|---|---|"]
    for t in report.tasks:
        b = t.bootstrap
        ci = f"[{100 * b.ci_low:+.2f}, {100 * b.ci_high:+.2f}]" if b else "n/a"
        p = (f"<{1 / b.resamples:.0g}" if b.p_value == 0 else f"{b.p_value:.3g}") if b else "n/a"
        lines.append(f"| {t.task} | {t.category} | {100 * t.baseline_score:.2f} | {t.model} | {100 * t.score:.2f} | "
                     f"{100 * (t.score - t.baseline_score):+.2f} | {ci} | {p} |")
    if report.skipped:
        lines += ["", f"Not compared (missing from some folder): {', '.join(report.skipped)}"]
    return "\n".join(lines) + "\n"


def plot(report: Comparison, path: str | Path) -> None:
    """Per-task Δ vs the baseline with 95% bootstrap CIs, one colour per model (PNG, atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({t.task for t in report.tasks}, key=lambda n: (next(r.category for r in report.tasks if r.task == n), n))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(tasks) * max(1, len(report.models)) + 1.5))
    height = 0.8 / max(1, len(report.models))
    for k, model in enumerate(report.models):
        rows = {t.task: t for t in report.tasks if t.model == model}
        y = np.arange(len(tasks)) + k * height
        delta = np.array([100 * (rows[t].score - rows[t].baseline_score) for t in tasks])
        lo = np.array([100 * rows[t].bootstrap.ci_low if rows[t].bootstrap else d for t, d in zip(tasks, delta)])
        hi = np.array([100 * rows[t].bootstrap.ci_high if rows[t].bootstrap else d for t, d in zip(tasks, delta)])
        ax.barh(y, delta, height=height, label=model, xerr=np.vstack([delta - lo, hi - delta]).clip(min=0), capsize=2)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(np.arange(len(tasks)) + 0.4 - height / 2)
    ax.set_yticklabels([f"{t} ({next(r.category for r in report.tasks if r.task == t)})" for t in tasks])
    ax.invert_yaxis()
    ax.set_xlabel(f"Δ main score ×100 vs {report.baseline} (95% paired-bootstrap CI)")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
