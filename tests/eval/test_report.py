"""`embedlab compare`: category Wilcoxon with Holm, hierarchical bootstrap, per-task bootstrap; markdown, rich, JSON and PNG."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedlab.errors import EmbedlabError
from embedlab.eval.report import compare, plot, to_json_dict, to_markdown, to_rich_table


def write_results(folder, scores, pooling, rng):
    folder.mkdir(parents=True)
    for task, (category, score) in scores.items():
        n = 60
        values = np.clip(rng.normal(score, 0.05, n), 0, 1)
        values += score - values.mean()
        (folder / f"{task}.json").write_text(
            json.dumps(
                {
                    "task_name": task,
                    "category": category,
                    "main_score": float(values.mean()),
                    "per_example": {"kind": "mean", "ids": list(range(n)), "values": values.tolist()},
                    "metadata": {"model_source": "tiny", "pooling": pooling, "attention": "causal"},
                }
            )
        )


def test_compare_report(tmp_path):
    rng = np.random.default_rng(0)
    base = {f"sts{i}": ("STS", 0.70 + 0.01 * i) for i in range(6)} | {
        f"ret{i}": ("Retrieval", 0.40 + 0.01 * i) for i in range(6)
    }
    better_sts = {k: (c, s + (0.05 if c == "STS" else 0.0)) for k, (c, s) in base.items()}
    write_results(tmp_path / "a", base, "mean", rng)
    write_results(tmp_path / "b", better_sts, "latent_attention", rng)
    report = compare([tmp_path / "a", tmp_path / "b"])
    sts = next(r for r in report.categories if r.category == "STS")
    ret = next(r for r in report.categories if r.category == "Retrieval")
    assert sts.comparison.wins == 6 and sts.comparison.p_value == pytest.approx(0.03125)
    assert sts.p_holm == pytest.approx(min(1.0, 2 * 0.03125))  # two comparisons in the report
    assert ret.comparison.mean_delta == pytest.approx(0.0, abs=1e-9)
    sts_task = next(t for t in report.tasks if t.task == "sts0")
    assert sts_task.bootstrap.ci_low > 0 and sts_task.bootstrap.p_value < 0.05
    # hierarchical bootstrap: observed Δ = mean over datasets; STS's CI excludes 0, Retrieval's covers it
    assert sts.hier_delta == pytest.approx(0.05) and 0 < sts.hier_ci_low < 0.05 < sts.hier_ci_high
    assert ret.hier_ci_low < 0 < ret.hier_ci_high and sts.hier_resamples == 1000
    md = to_markdown(report)
    assert "| STS | 6 |" in md and "+5.00" in md and "latent_attention" in md
    sts_line = next(line for line in md.splitlines() if "| STS | 6 |" in line and "+5.00" in line)
    assert (
        f"{sts.comparison.p_value:.3g} | {sts.p_holm:.3g} | +5.00 [{100 * sts.hier_ci_low:+.2f}, {100 * sts.hier_ci_high:+.2f}]"
        in sts_line
    )
    plot(report, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_views_share_one_table_and_extra_columns(tmp_path):
    from rich.console import Console

    rng = np.random.default_rng(0)
    base = {f"sts{i}": ("STS", 0.70 + 0.01 * i) for i in range(3)}
    write_results(tmp_path / "a", base, "mean", rng)
    write_results(tmp_path / "b", {k: (c, s + 0.03) for k, (c, s) in base.items()}, "cls", rng)
    report = compare([tmp_path / "a", tmp_path / "b"], resamples=300)
    row = report.categories[0]
    # n = 3: the Wilcoxon test cannot reach 0.05 (min p = 0.25), the hierarchical CI can exclude 0
    assert row.comparison.p_value == pytest.approx(0.25) and row.hier_ci_low > 0
    extra = {"b": {"head params": "1,234"}, "a": {"head params": "0"}}
    md = to_markdown(report, extra_columns=extra)
    assert (
        "| model | head params | category |" in md and "| b | 1,234 | STS | 3 |" in md and "| a | 0 | STS | 3 |" in md
    )
    assert "‡" in md and "†" not in md.split("## Per task")[0].split("| model |")[1]
    table = to_rich_table(report, extra_columns=extra)
    titles = [c.header for c in table.columns]
    assert titles[:3] == ["model", "head params", "category"] and "p (Holm)" in titles and "hier. Δ [95% CI]" in titles
    console = Console(width=250, record=True)
    console.print(table)
    text = console.export_text()
    hier = f"+3.00 [{100 * row.hier_ci_low:+.2f}, {100 * row.hier_ci_high:+.2f}]"
    assert hier in text and "1,234" in text and f"{row.p_holm:.3g}" in text
    data = to_json_dict(report, extra_columns=extra)
    json.dumps(data)  # JSON-serialisable
    rec = next(r for r in data["categories"] if r["model"] == "b")
    assert rec["p_value"] == pytest.approx(0.25) and rec["p_holm"] == row.p_holm
    assert (rec["hier_ci_low"], rec["hier_ci_high"]) == (row.hier_ci_low, row.hier_ci_high) and rec[
        "hier_excludes_zero"
    ]
    assert data["baseline"] == "a" and data["extra_columns"] == extra and len(data["tasks"]) == 3


def test_compare_needs_common_tasks(tmp_path):
    rng = np.random.default_rng(0)
    write_results(tmp_path / "a", {"x": ("STS", 0.5)}, "mean", rng)
    write_results(tmp_path / "b", {"y": ("STS", 0.5)}, "mean", rng)
    with pytest.raises(EmbedlabError, match="no task in common"):
        compare([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(EmbedlabError, match="at least two"):
        compare([tmp_path / "a"])
    with pytest.raises(EmbedlabError, match="not found"):
        compare([tmp_path / "a", tmp_path / "zzz"])
