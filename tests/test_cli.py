"""The CLI: clear one-line errors with a non-zero exit, never a traceback."""
from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import run_cli


run = run_cli


def _table_rows(text: str) -> dict[str, str]:
    """{first cell: second cell} of a two-column rich table (continuation lines of wrapped cells joined)."""
    rows: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃|").split("│")]
        if len(cells) != 2:
            continue
        if cells[0]:
            key = cells[0]
            rows[key] = cells[1]
        elif key is not None:
            rows[key] += cells[1]
    return rows


def test_encode_npy_and_jsonl(tiny_llama, tmp_path, monkeypatch, capsys):
    src = tmp_path / "in.txt"
    src.write_text("the cat sat\na dog ran\n")
    code, _, err = run(monkeypatch, capsys, "encode", "-m", tiny_llama, "-i", src, "-o", tmp_path / "v.npy", "--pooling", "mean")
    assert code == 0, err
    assert np.load(tmp_path / "v.npy").shape == (2, 32) and "encoded 2 texts" in err
    code, _, err = run(monkeypatch, capsys, "encode", "-m", tiny_llama, "-i", "-", "-o", tmp_path / "v.jsonl", "--attention", "bidirectional", "--dim", "8", stdin="a b\n")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and len(rows[0]["embedding"]) == 8


@pytest.mark.parametrize(
    "setup,args,message",
    [
        (None, ["-i", "{missing}"], "not found"),
        ("empty", ["-i", "{file}"], "empty"),
        ("latin", ["-i", "{file}"], "UTF-8"),
        ("ok", ["-i", "{file}", "-m", "no-such-model"], "minilm-l6, smollm2-135m"),
        ("ok", ["-i", "{file}", "-m", "{llama}", "--pooling", "cls"], "decoder"),
        ("ok", ["-i", "{file}", "-m", "{llama}", "--pooling", "max"], "unknown pooling"),
        ("ok", ["-i", "{file}", "-m", "{llama}", "--prompt", "query"], "unknown prompt"),
        ("blank", ["-i", "{file}", "-m", "{llama}", "--pooling", "mean"], "gives no tokens"),
        ("ok", ["-i", "{file}", "-m", "someorg/not-cached"], "not reachable"),
    ],
)
def test_bad_input_gives_one_line_error(tiny_llama, tmp_path, monkeypatch, capsys, setup, args, message):
    f = tmp_path / "in.txt"
    if setup == "empty":
        f.write_text("\n")
    elif setup == "latin":
        f.write_bytes("caf\xe9\n".encode("latin-1"))
    elif setup == "ok":
        f.write_text("the cat\n")
    elif setup == "blank":
        f.write_text("the cat\n\nthe dog\n")
    args = [a.format(missing=tmp_path / "nope.txt", file=f, llama=tiny_llama) for a in args]
    code, out, err = run(monkeypatch, capsys, "encode", *args, "-o", tmp_path / "o.npy")
    assert code == 1
    assert message in err and "Traceback" not in err and err.startswith("error:")
    assert not (tmp_path / "o.npy").exists()


def test_bad_output_suffix(tiny_llama, tmp_path, monkeypatch, capsys):
    (tmp_path / "in.txt").write_text("x\n")
    code, _, err = run(monkeypatch, capsys, "encode", "-i", tmp_path / "in.txt", "-o", tmp_path / "o.csv")
    assert code == 1 and ".npy or .jsonl" in err


def test_models_and_info(tiny_llama, monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "models")
    assert code == 0 and "minilm-l6" in out and "smollm2-135m" in out
    code, out, _ = run(monkeypatch, capsys, "info", tiny_llama, "--pooling", "multi_layer", "--attention", "bidirectional")
    assert code == 0 and "LlamaModel" in out and "multi_layer" in out and "bidirectional" in out


def test_demo_runs_on_the_default_model(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "demo", "-k", "1")
    assert code == 0, err
    # the shipped sample has one obvious neighbour per query
    assert "central bank" in out and "Knead the dough" in out


def test_tasks_and_eval_with_a_user_task(tiny_bert, tmp_path, monkeypatch, capsys):
    good = tmp_path / "good"
    good.mkdir()
    (good / "task.json").write_text(json.dumps({"name": "mysts", "type": "sts", "files": {"test": "t.tsv"}}))
    (good / "t.tsv").write_text("sentence1\tsentence2\tscore\nthe cat\tthe dog\t4\na sky\tthe sun\t1\nread a book\ti read\t3\n")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "task.json").write_text(json.dumps({"name": "broken", "type": "sts", "files": {"test": "missing.tsv"}}))
    code, out, _ = run(monkeypatch, capsys, "tasks", "--task-dir", good)
    assert code == 0 and "mysts" in out
    code, out, err = run(monkeypatch, capsys, "eval", "-m", tiny_bert, "--tasks", "mysts,broken", "--task-dir", good,
                         "--task-dir", bad, "--out", tmp_path / "res")
    assert code == 1 and "missing.tsv" in err and "1 of 2 tasks failed" in err
    assert (tmp_path / "res" / "mysts.json").is_file() and "mysts" in out
    (bad / "task.json").write_text(json.dumps({"name": "broken", "type": "sts", "file": {}}))
    code, _, err = run(monkeypatch, capsys, "tasks", "--task-dir", bad)
    assert code == 1 and "field 'file'" in err


def test_eval_then_compare_writes_markdown_and_png(tiny_bert, tmp_path, monkeypatch, capsys):
    for name in ("s1", "s2", "s3"):
        d = tmp_path / "tasks" / name
        d.mkdir(parents=True)
        (d / "task.json").write_text(json.dumps({"name": name, "type": "sts", "files": {"test": "t.tsv"}}))
        rows = ["the cat\tthe dog\t4", "a sky\tthe sun\t1", "read a book\ti read\t3", "the red car\ta big car\t2", "we write\ti write code\t5"]
        (d / "t.tsv").write_text("sentence1\tsentence2\tscore\n" + "\n".join(rows[hash(name) % 2:]) + "\n")
    dirs = [str(tmp_path / "tasks" / n) for n in ("s1", "s2", "s3")]
    flags = [x for d in dirs for x in ("--task-dir", d)]
    for pooling in ("mean", "cls"):
        code, _, err = run(monkeypatch, capsys, "eval", "-m", tiny_bert, "--pooling", pooling, "--tasks", "s1,s2,s3", *flags, "--out", tmp_path / pooling)
        assert code == 0, err
    code, out, err = run(monkeypatch, capsys, "compare", tmp_path / "mean", tmp_path / "cls", "--out", tmp_path / "r.md", "--png", tmp_path / "r.png", "--resamples", "100")
    assert code == 0, err
    assert "STS" in out and (tmp_path / "r.md").read_text().startswith("# Comparison against `mean`")
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_index_build_search_add_delete(tiny_bert, tmp_path, monkeypatch, capsys):
    words = ["the cat sat on the mat", "a dog ran fast", "the sky is blue", "i read a book", "the red car", "a big house",
             "the moon and the sun", "we write code", "the bird is small", "my tree is green"]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(words[:8])))
    ix = tmp_path / "ix"
    code, _, err = run(monkeypatch, capsys, "index", "build", "-m", tiny_bert, "--corpus", corpus, "--codec", "int8", "--out", ix)
    assert code == 0, err
    code, out, err = run(monkeypatch, capsys, "search", ix, "the cat sat on the mat", "-k", "3", "--json")
    assert code == 0, err
    hit = json.loads(out)["hits"][0]
    assert hit["id"] == "d0" and hit["text"] == words[0]
    more = tmp_path / "more.jsonl"
    more.write_text("".join(json.dumps({"id": f"d{i}", "text": words[i]}) + "\n" for i in (8, 9)))
    assert run(monkeypatch, capsys, "index", "add", ix, "--corpus", more)[0] == 0
    (tmp_path / "del.txt").write_text("d0\n")
    assert run(monkeypatch, capsys, "index", "delete", ix, "--ids", tmp_path / "del.txt")[0] == 0
    code, out, _ = run(monkeypatch, capsys, "index", "info", ix)
    rows = _table_rows(out)
    assert code == 0 and rows["count"] == "9" and rows["codec"] == "int8" and rows["dim"] == "32"
    assert rows["bytes_per_vector"] == "32" and rows["has_texts"] == "True"
    code, out, _ = run(monkeypatch, capsys, "search", ix, "the cat sat on the mat", "-k", "9", "--json")
    assert "d0" not in [h["id"] for h in json.loads(out)["hits"]]
    code, _, err = run(monkeypatch, capsys, "search", ix, "cat", "-k", "50")
    assert code == 1 and "larger than the index" in err
    code, _, err = run(monkeypatch, capsys, "index", "build", "-m", tiny_bert, "--corpus", corpus, "--codec", "int4", "--out", tmp_path / "x")
    assert code == 1 and "allowed: float32" in err
    code, _, err = run(monkeypatch, capsys, "index", "add", ix, "--corpus", more)
    assert code == 1 and "duplicate ids" in err


def test_mine_command(tiny_bert, tmp_path, monkeypatch, capsys):
    pairs = tmp_path / "p.tsv"
    pairs.write_text("the cat sat\tthe cat sat on the mat\na dog ran\ta dog ran fast\nthe sky\tthe sky is blue\ni read\ti read a book\n")
    code, _, err = run(monkeypatch, capsys, "mine", "--data", pairs, "--out", tmp_path / "m.jsonl", "-m", tiny_bert, "--num-negatives", "2", "--margin", "0")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["positive"] not in r["negatives"] for r in rows)
    code, _, err = run(monkeypatch, capsys, "mine", "--data", tmp_path / "nope.tsv", "--out", tmp_path / "x.jsonl", "-m", tiny_bert)
    assert code == 1 and "not found" in err


def test_train_resume_and_grid_commands(tiny_llama, tmp_path, monkeypatch, capsys):
    rows = [{"query": f"the {w} sat", "positive": f"a {w} sat on the mat", "negatives": ["the sky is blue"]}
            for w in ("cat", "dog", "bird", "star", "moon", "sun", "car", "tree")]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"model: {tiny_llama}\npooling: mean\ndata: {data}\noutput: {tmp_path / 'o'}\nsteps: 4\nbatch_size: 4\n"
                   f"hard_negatives: 1\ncheckpoint_every: 2\nmicro_batch_size: 2\n")
    code, _, err = run(monkeypatch, capsys, "train", cfg)
    assert code == 0, err
    assert "trained" in err and "8 candidates per query" in err.replace("\n", " ")  # 4 positives + 4 negatives
    code, _, err = run(monkeypatch, capsys, "train", cfg)
    assert code == 1 and "already holds a trained model" in err
    code, _, err = run(monkeypatch, capsys, "train", cfg, "--resume")
    assert code == 0, err
    (tmp_path / "bad.yaml").write_text(f"data: {data}\noutput: x\nbatch_sise: 4\n")
    code, _, err = run(monkeypatch, capsys, "train", tmp_path / "bad.yaml")
    assert code == 1 and "field 'batch_sise'" in err
    code, _, err = run(monkeypatch, capsys, "grid")
    assert code == 1 and "--preset" in err
    code, _, err = run(monkeypatch, capsys, "grid", "--preset", "cpu-small", "--output", tmp_path / "g", "--report-only")
    assert code == 1 and "fewer than two evaluated designs" in err


def test_train_refuses_old_checkpoints_and_says_a_run_is_finished(tiny_llama, tmp_path, monkeypatch, capsys):
    import shutil

    rows = [{"query": f"the {w} sat", "positive": f"a {w} sat on the mat", "negatives": ["the sky is blue"]}
            for w in ("cat", "dog", "bird", "star", "moon", "sun", "car", "tree")]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "t.yaml"
    out_dir = tmp_path / "o"
    cfg.write_text(f"model: {tiny_llama}\npooling: mean\ndata: {data}\noutput: {out_dir}\nsteps: 3\nbatch_size: 4\n"
                   f"hard_negatives: 1\ncheckpoint_every: 2\n")
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
    assert [r["step"] for r in map(json.loads, (out_dir / "train_log.jsonl").read_text().splitlines()) if "loss" in r] == [1, 3]  # log_every 10: the first and last step, once
