"""`embedlab compare`: category Wilcoxon with Holm, per-task bootstrap, markdown and PNG."""
from __future__ import annotations

import json

import numpy as np
import pytest

from embedlab.errors import EmbedlabError
from embedlab.eval.report import compare, plot, to_markdown


def write_results(folder, scores, pooling, rng):
    folder.mkdir(parents=True)
    for task, (category, score) in scores.items():
        n = 60
        values = np.clip(rng.normal(score, 0.05, n), 0, 1)
        values += score - values.mean()
        (folder / f"{task}.json").write_text(json.dumps({
            "task_name": task, "category": category, "main_score": float(values.mean()),
            "per_example": {"kind": "mean", "ids": list(range(n)), "values": values.tolist()},
            "metadata": {"model_source": "tiny", "pooling": pooling, "attention": "causal"},
        }))


def test_compare_report(tmp_path):
    rng = np.random.default_rng(0)
    base = {f"sts{i}": ("STS", 0.70 + 0.01 * i) for i in range(6)} | {f"ret{i}": ("Retrieval", 0.40 + 0.01 * i) for i in range(6)}
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
    md = to_markdown(report)
    assert "| STS | 6 |" in md and "+5.00" in md and "latent_attention" in md
    plot(report, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
