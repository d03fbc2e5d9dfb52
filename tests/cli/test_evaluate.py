"""The CLI: `embedlab tasks`, `eval` and `compare`. Clear one-line errors with the error's exit code, never a traceback."""

from __future__ import annotations

import json

from ..conftest import run_cli

run = run_cli


def test_tasks_and_eval_with_a_user_task(tiny_bert, tmp_path, monkeypatch, capsys):
    good = tmp_path / "good"
    good.mkdir()
    (good / "task.json").write_text(json.dumps({"name": "mysts", "type": "sts", "files": {"test": "t.tsv"}}))
    (good / "t.tsv").write_text(
        "sentence1\tsentence2\tscore\nthe cat\tthe dog\t4\na sky\tthe sun\t1\nread a book\ti read\t3\n"
    )
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "task.json").write_text(json.dumps({"name": "broken", "type": "sts", "files": {"test": "missing.tsv"}}))
    code, out, _ = run(monkeypatch, capsys, "tasks", "--task-dir", good)
    assert code == 0 and "mysts" in out
    code, out, err = run(
        monkeypatch,
        capsys,
        "eval",
        "-m",
        tiny_bert,
        "--tasks",
        "mysts,broken",
        "--task-dir",
        good,
        "--task-dir",
        bad,
        "--out",
        tmp_path / "res",
    )
    assert code == 1 and "missing.tsv" in err and "1 of 2 tasks failed" in err
    assert (tmp_path / "res" / "mysts.json").is_file() and "mysts" in out
    (bad / "task.json").write_text(json.dumps({"name": "broken", "type": "sts", "file": {}}))
    code, _, err = run(monkeypatch, capsys, "tasks", "--task-dir", bad)
    assert code == 2 and "field 'file'" in err  # an invalid manifest is a usage error


def test_eval_then_compare_writes_markdown_and_png(tiny_bert, tmp_path, monkeypatch, capsys):
    for name in ("s1", "s2", "s3"):
        d = tmp_path / "tasks" / name
        d.mkdir(parents=True)
        (d / "task.json").write_text(json.dumps({"name": name, "type": "sts", "files": {"test": "t.tsv"}}))
        rows = [
            "the cat\tthe dog\t4",
            "a sky\tthe sun\t1",
            "read a book\ti read\t3",
            "the red car\ta big car\t2",
            "we write\ti write code\t5",
        ]
        (d / "t.tsv").write_text("sentence1\tsentence2\tscore\n" + "\n".join(rows[hash(name) % 2 :]) + "\n")
    dirs = [str(tmp_path / "tasks" / n) for n in ("s1", "s2", "s3")]
    flags = [x for d in dirs for x in ("--task-dir", d)]
    for pooling in ("mean", "cls"):
        code, _, err = run(
            monkeypatch,
            capsys,
            "eval",
            "-m",
            tiny_bert,
            "--pooling",
            pooling,
            "--tasks",
            "s1,s2,s3",
            *flags,
            "--out",
            tmp_path / pooling,
        )
        assert code == 0, err
    code, out, err = run(
        monkeypatch,
        capsys,
        "compare",
        tmp_path / "mean",
        tmp_path / "cls",
        "--out",
        tmp_path / "r.md",
        "--png",
        tmp_path / "r.png",
        "--resamples",
        "100",
    )
    assert code == 0, err
    assert "STS" in out and (tmp_path / "r.md").read_text().startswith("# Comparison against `mean`")
    assert (tmp_path / "r.png").stat().st_size > 1000
