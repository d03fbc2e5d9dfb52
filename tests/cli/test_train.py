"""The CLI: `embedlab train`, `mine` and `grid`. Clear one-line errors with the error's exit code, never a traceback."""

from __future__ import annotations

import json

from ..conftest import run_cli

run = run_cli


def test_mine_command(tiny_bert, tmp_path, monkeypatch, capsys):
    pairs = tmp_path / "p.tsv"
    pairs.write_text(
        "the cat sat\tthe cat sat on the mat\na dog ran\ta dog ran fast\nthe sky\tthe sky is blue\ni read\ti read a book\n"
    )
    code, _, err = run(
        monkeypatch,
        capsys,
        "mine",
        "--data",
        pairs,
        "--out",
        tmp_path / "m.jsonl",
        "-m",
        tiny_bert,
        "--num-negatives",
        "2",
        "--margin",
        "0",
    )
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["positive"] not in r["negatives"] for r in rows)
    code, _, err = run(
        monkeypatch, capsys, "mine", "--data", tmp_path / "nope.tsv", "--out", tmp_path / "x.jsonl", "-m", tiny_bert
    )
    assert code == 1 and "not found" in err


def test_train_resume_and_grid_commands(tiny_llama, tmp_path, monkeypatch, capsys):
    rows = [
        {"query": f"the {w} sat", "positive": f"a {w} sat on the mat", "negatives": ["the sky is blue"]}
        for w in ("cat", "dog", "bird", "star", "moon", "sun", "car", "tree")
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "t.yaml"
    cfg.write_text(
        f"model: {tiny_llama}\npooling: mean\ndata: {data}\noutput: {tmp_path / 'o'}\nsteps: 4\nbatch_size: 4\n"
        f"hard_negatives: 1\ncheckpoint_every: 2\nmicro_batch_size: 2\n"
    )
    code, _, err = run(monkeypatch, capsys, "train", cfg)
    assert code == 0, err
    assert "trained" in err and "8 candidates per query" in err.replace("\n", " ")  # 4 positives + 4 negatives
    code, _, err = run(monkeypatch, capsys, "train", cfg)
    assert code == 1 and "already holds a trained model" in err
    code, _, err = run(monkeypatch, capsys, "train", cfg, "--resume")
    assert code == 0, err
    (tmp_path / "bad.yaml").write_text(f"data: {data}\noutput: x\nbatch_sise: 4\n")
    code, _, err = run(monkeypatch, capsys, "train", tmp_path / "bad.yaml")
    assert code == 2 and "field 'batch_sise'" in err  # an invalid config is a usage error
    code, _, err = run(monkeypatch, capsys, "grid")
    assert code == 2 and "--preset" in err  # a usage error
    code, _, err = run(
        monkeypatch, capsys, "grid", "--preset", "cpu-small", "--output", tmp_path / "g", "--report-only"
    )
    assert code == 1 and "fewer than two evaluated designs" in err


def test_train_refuses_old_checkpoints_and_says_a_run_is_finished(tiny_llama, tmp_path, monkeypatch, capsys):
    import shutil

    rows = [
        {"query": f"the {w} sat", "positive": f"a {w} sat on the mat", "negatives": ["the sky is blue"]}
        for w in ("cat", "dog", "bird", "star", "moon", "sun", "car", "tree")
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "t.yaml"
    out_dir = tmp_path / "o"
    cfg.write_text(
        f"model: {tiny_llama}\npooling: mean\ndata: {data}\noutput: {out_dir}\nsteps: 3\nbatch_size: 4\n"
        f"hard_negatives: 1\ncheckpoint_every: 2\n"
    )
    code, _, err = run(monkeypatch, capsys, "train", cfg)
    assert code == 0, err
    assert "trained" in err and "resumed" not in err
    # --resume on the finished run: one line saying so, nothing trained or rewritten
    model_mtime = (out_dir / "model" / "config.json").stat().st_mtime_ns
    code, _, err = run(monkeypatch, capsys, "train", cfg, "--resume")
    assert code == 0, err
    line = " ".join(err.split())
    assert "already holds a finished run (3 steps" in line and "nothing to resume" in line and "--overwrite" in line
    assert "tokens/s" not in line and "trained" not in line
    assert (out_dir / "model" / "config.json").stat().st_mtime_ns == model_mtime
    # a killed run (checkpoints, no model) is not silently restarted over its checkpoints
    shutil.rmtree(out_dir / "model")
    (out_dir / "train_summary.json").unlink()
    code, _, err = run(monkeypatch, capsys, "train", cfg)
    line = " ".join(err.split())
    assert code == 1 and line.startswith("error:") and "Traceback" not in err
    assert "already holds checkpoints" in line and "--resume" in line and "--overwrite" in line
    assert [p.name for p in (out_dir / "checkpoints").iterdir()] == ["step-0000002"]
    code, _, err = run(monkeypatch, capsys, "train", cfg, "--resume", "--overwrite")
    assert code == 1 and "one of them" in err
    code, _, err = run(monkeypatch, capsys, "train", cfg, "--resume")
    assert code == 0, err
    assert "resumed at step 2" in " ".join(err.split()) and (out_dir / "model").is_dir()
    code, _, err = run(monkeypatch, capsys, "train", cfg, "--overwrite")
    assert code == 0, err
    assert "trained" in err and "resumed" not in err
    assert [
        r["step"] for r in map(json.loads, (out_dir / "train_log.jsonl").read_text().splitlines()) if "loss" in r
    ] == [1, 3]  # log_every 10: the first and last step, once
