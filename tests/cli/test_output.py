"""Output folders through the CLI: refuse a non-empty one naming --overwrite, and with --overwrite replace
only what embedlab wrote (issue 22, item 2); files get open()'s mode (item 8)."""

from __future__ import annotations

import json
import os
import stat

from ..conftest import run_cli

WORDS = ["the cat sat on the mat", "a dog ran fast", "the sky is blue", "i read a book", "the red car", "a big house"]


def test_index_build_refuses_then_overwrites_only_its_own_files(tiny_bert, tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(WORDS)))
    ix = tmp_path / "ix"
    build = ["index", "build", "-m", tiny_bert, "--corpus", corpus, "--codec", "float32", "--out", ix]
    assert run_cli(monkeypatch, capsys, *build)[0] == 0
    (ix / "notes.txt").write_text("the user's notes")
    code, _, err = run_cli(monkeypatch, capsys, *build)
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(monkeypatch, capsys, *build, "--overwrite")
    assert code == 0, err
    assert (ix / "notes.txt").read_text() == "the user's notes"
    code, out, err = run_cli(monkeypatch, capsys, "search", ix, WORDS[2], "-k", "1", "--json")
    assert code == 0 and json.loads(out)["hits"][0]["id"] == "d2", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "ix"]  # nothing hidden beside it


def test_index_build_never_replaces_a_file(tiny_bert, tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(WORDS)))
    target = tmp_path / "taken"
    target.write_text("a file")
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(
            monkeypatch, capsys, "index", "build", "-m", tiny_bert, "--corpus", corpus, "--out", target, *extra
        )
        assert code == 2 and "existing file" in err
    assert target.read_text() == "a file" and sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "taken"]


def test_search_on_a_shard_folder_says_what_to_run(tiny_bert, tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(WORDS)))
    code, _, err = run_cli(monkeypatch, capsys, "embed-corpus", tiny_bert, "--corpus", corpus, "--out", tmp_path / "sh")
    assert code == 0, err
    code, _, err = run_cli(monkeypatch, capsys, "search", tmp_path / "sh", "cat")
    line = " ".join(err.split())
    assert code == 1 and "shard folder" in line and "--from-embeddings" in line


def test_distilled_files_have_the_normal_mode(tiny_llama, tmp_path, monkeypatch, capsys):
    old = os.umask(0o022)
    try:
        code, _, err = run_cli(monkeypatch, capsys, "distill", tiny_llama, "--out", tmp_path / "s", "--dims", "8")
    finally:
        os.umask(old)
    assert code == 0, err
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "s").iterdir() if p.is_file()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}, modes


def test_runtime_help_names_the_extra(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "encode", "--help")
    assert code == 0 and "pip install 'embedlab[onnx]'" in " ".join(out.replace("│", " ").split())
