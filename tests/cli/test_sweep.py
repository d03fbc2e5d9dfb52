"""Every command through the real entry point with bad arguments (issue 22's sweep).

Each run must print ONE line on stderr (no traceback, no usage panel), exit 2 for a usage or
configuration error and 1 for a runtime failure, and touch no file outside embedlab's own output: the
output folder holding a sentinel, the current folder and its parent are compared (names and mtimes)
before and after. The bulk runs in-process through ``embedlab.cli.main`` (the console script's
function); a few go through ``python -m embedlab.cli`` in a subprocess, and Ctrl-C is a real SIGINT."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ..conftest import run_cli

USAGE, RUNTIME = 2, 1


def snapshot(root: Path, recursive: bool = False) -> dict[str, int]:
    """{name: mtime_ns} of ``root``'s entries (or of every path below it)."""
    paths = root.rglob("*") if recursive else root.iterdir()
    return {str(p.relative_to(root)): p.lstat().st_mtime_ns for p in paths}


@pytest.fixture
def place(tmp_path, monkeypatch):
    """parent/work as the cwd, with inputs, a regular file and an output folder holding a sentinel."""
    work = tmp_path / "parent" / "work"
    work.mkdir(parents=True)
    (tmp_path / "parent" / "neighbour.txt").write_text("n")
    (work / "texts.txt").write_text("the cat sat\na dog ran\nthe sky is blue\ni read a book\n")
    (work / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"id": f"d{i}", "text": t}) + "\n"
            for i, t in enumerate(["the cat sat", "a dog ran", "the sky is blue"])
        )
    )
    (work / "pairs.tsv").write_text("the cat\tthe cat sat\na dog\ta dog ran\n")
    (work / "afile").write_text("a regular file")
    (work / "out").mkdir()
    (work / "out" / "sentinel.txt").write_text("mine")
    monkeypatch.chdir(work)
    return work


def cases(tiny: str) -> list[tuple[list[str], int, str]]:
    """(arguments, exit code, a word the one line must hold)."""
    return [
        (["distil"], USAGE, "distill"),
        (["models", "--bogus"], USAGE, "--bogus"),
        (["info"], USAGE, "'model'"),
        (["info", "no-such-model"], RUNTIME, "unknown model"),
        (["encode", "-i", "texts.txt", "-o", "v.csv"], USAGE, ".npy, .npz, .jsonl"),
        (["encode", "-i", "texts.txt", "-o", "afile/v.npy", "-m", tiny], USAGE, "is a file"),
        (["encode", "-i", "nope.txt", "-o", "v.npy", "-m", tiny], RUNTIME, "not found"),
        (["encode", "-i", "texts.txt", "-o", "v.npy", "--dim", "0"], USAGE, "--dim"),
        (["encode", "-i", "texts.txt", "-o", "v.npy", "--runtime", "tensorrt"], USAGE, "--runtime"),
        (["tasks", "--task-dir"], USAGE, "--task-dir"),
        (["eval", "-m", tiny, "--tasks", "x"], USAGE, "--out"),
        (["compare", "a", "b", "--resamples", "5"], USAGE, "--resamples"),
        (["index", "build", "--corpus", "corpus.jsonl", "--out", "out", "-m", tiny], USAGE, "--overwrite"),
        (["index", "build", "--corpus", "corpus.jsonl", "--out", ".", "-m", tiny], USAGE, "current folder"),
        (["index", "build", "--corpus", "corpus.jsonl", "--out", "afile", "-m", tiny], USAGE, "existing file"),
        (["index", "build", "--out", "ix"], USAGE, "--corpus"),
        (["index", "build", "--corpus", "corpus.jsonl", "--codec", "int4", "--out", "ix"], USAGE, "allowed"),
        (["index", "add"], USAGE, "'directory'"),
        (["index", "delete", "ix", "--ids"], USAGE, "--ids"),
        (["index", "info", "nope"], RUNTIME, "index build"),
        (["search", "nope", "q", "-k", "0"], USAGE, "-k"),
        (["search", "nope"], USAGE, "--queries"),
        (["train"], USAGE, "'config'"),
        (["train", "nope.yaml"], RUNTIME, "not found"),
        (["mine", "--data", "pairs.tsv", "--out", "m.jsonl", "--num-negatives", "0"], USAGE, "--num-negatives"),
        (["mine", "--data", "pairs.tsv", "--out", "m.jsonl", "--margin", "1.5"], USAGE, "--margin"),
        (["grid"], USAGE, "--preset"),
        (["demo", "-k", "0"], USAGE, "-k"),
        (["serve", tiny, "--port", "99999"], USAGE, "--port"),
        (["serve", tiny, "--api-key-file", "nope.key"], RUNTIME, "not found"),
        (["serve", "no-such-model"], RUNTIME, "unknown model"),
        (["distill", tiny, "--out", "out"], USAGE, "--overwrite"),
        (["distill", tiny, "--out", "d", "--dims", "0"], USAGE, "--dims"),
        (["distill", tiny, "--out", "d", "--corpus", "nope.txt"], RUNTIME, "not found"),
        (["distill", tiny, "--out", "d", "--no-pca", "--dims", "8"], USAGE, "not both"),
        (["bias", "report", tiny, "--tests", ""], USAGE, "--tests"),
        (["bias", "report", tiny, "--tests", " , "], USAGE, "--tests"),
        (["bias", "report", tiny, "--compare", "no-such-model"], RUNTIME, "unknown model"),
        (["bias", "report", tiny, "--n-random", "0"], USAGE, "--n-random"),
        (["bias", "report", tiny, "--mode", "both3"], USAGE, "--mode"),
        (["bias", "weat"], USAGE, "'model'"),
        (["bias", "seat", tiny, "--json", "afile/r.json"], USAGE, "is a file"),
        (["bias", "direction", tiny, "-k", "0"], USAGE, "-k"),
        (["bias", "debias", tiny, "--out", "out"], USAGE, "--overwrite"),
        (["bias", "debias", tiny, "--out", "d", "-k", "0"], USAGE, "-k"),
        (["embed-corpus", tiny, "--corpus", "nope.jsonl", "--out", "sh"], RUNTIME, "not found"),
        (["embed-corpus", tiny, "--corpus", "corpus.jsonl", "--out", "afile/sh"], USAGE, "is a file"),
        (["embed-corpus", tiny, "--corpus", "corpus.jsonl", "--out", "sh", "--shard-rows", "0"], USAGE, "--shard-rows"),
        (
            ["embed-corpus", tiny, "--corpus", "corpus.jsonl", "--out", "sh", "--precision", "int4"],
            USAGE,
            "--precision",
        ),
        (["export", "nope", "--to", "lancedb://"], USAGE, "names no path"),
        (["export", "nope", "--to", "ftp://host/x"], USAGE, "unknown export target"),
        (["cluster", "--sample-size", "0"], USAGE, "--sample-size"),
        (["cluster", "--method", "dbscan"], USAGE, "--method"),
        (["cluster", "--corpus", "texts.txt", "--k", "2", "--threshold", "nan"], USAGE, "--threshold must be a finite"),
        (["serve", tiny, "--request-timeout", "inf"], USAGE, "--request-timeout must be a finite number > 0"),
        (["serve", tiny, "--max-queue-wait", "inf"], USAGE, "--max-queue-wait must be a finite number > 0"),
        (["cluster", "--corpus", "texts.txt", "--k", "99", "--method", "kmeans", "-m", tiny], USAGE, "larger than"),
        (["cluster", "--corpus", "texts.txt", "--k", "2", "--goal", "g", "--out", "afile/c"], USAGE, "is a file"),
        (["vocab", "extend", tiny, "--out", "v", "--add", "5"], USAGE, "--corpus"),
        (["vocab", "extend", tiny, "--out", "out", "--tokens", "texts.txt"], USAGE, "--overwrite"),
        (["vocab", "extend", tiny, "--out", "v", "--tokens", "texts.txt", "--option", "bad"], USAGE, "KEY=VALUE"),
        (["vocab", "extend", tiny, "--out", "afile", "--tokens", "texts.txt"], USAGE, "existing file"),
        (["tokenizer", "report", tiny, "--corpus", "texts.txt", "--alpha", "nan"], USAGE, "--alpha"),
        (["tokenizer", "report", tiny, "--corpus", "texts.txt", "--json", "afile/x.json"], USAGE, "is a file"),
        (["tokenizer", "report", tiny, "--corpus", "texts.txt", "--json", ""], USAGE, "--json"),
        (["tokenizer", "report", tiny, "--corpus", "texts.txt", "--lang", "de"], USAGE, "--lang"),
    ]


def test_every_command_with_bad_arguments(place, tiny_llama, monkeypatch, capsys):
    tiny = str(tiny_llama)
    before = (snapshot(place), snapshot(place.parent), snapshot(place / "out", recursive=True))
    failures = []
    for args, code, word in cases(tiny):
        got, _, err = run_cli(monkeypatch, capsys, *args)
        lines = err.strip().splitlines()
        if got != code or len(lines) != 1 or not lines[0].startswith("error:") or word not in lines[0]:
            failures.append(f"embedlab {' '.join(args)!s}: exit {got} (want {code}), stderr {err.strip()[:300]!r}")
    assert not failures, "\n".join(failures)
    assert (snapshot(place), snapshot(place.parent), snapshot(place / "out", recursive=True)) == before


def test_every_command_is_in_the_sweep(tiny_llama):
    """A new command without a bad-argument case here fails this test."""
    from embedlab.cli import app

    def names(typer_app, prefix=()):
        for cmd in typer_app.registered_commands:
            yield (*prefix, cmd.name or cmd.callback.__name__.replace("_", "-"))
        for group in typer_app.registered_groups:
            yield from names(group.typer_instance, (*prefix, group.name))

    covered = {
        tuple(a[: 2 if a[0] in ("index", "bias", "vocab", "tokenizer") else 1]) for a, _, _ in cases(str(tiny_llama))
    }
    assert set(names(app)) - covered == set()


def _python_m(*args: str, cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "100"}
    return subprocess.Popen(
        [sys.executable, "-m", "embedlab.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


@pytest.mark.parametrize(
    "args,code,word",
    [
        (["distil"], USAGE, "Did you mean 'distill'"),
        (["index", "build", "--corpus", "corpus.jsonl"], USAGE, "Missing option '--out'"),
        (["cluster", "--method", "dbscan"], USAGE, "'dbscan' is not one of"),
        (["search", "ix", "q", "-k", "abc"], USAGE, "valid integer"),
        (["index", "build", "--corpus", "corpus.jsonl", "--out", "."], USAGE, "current folder"),
        (["index", "build", "--from-embeddings", "corpus.jsonl", "--out", "ix"], RUNTIME, "no embedding shards"),
        (["index", "info", "nope"], RUNTIME, "no index at nope"),
    ],
)
def test_the_console_entry_point_in_a_subprocess(place, args, code, word):
    before = (snapshot(place), snapshot(place.parent), snapshot(place / "out", recursive=True))
    proc = _python_m(*args, cwd=place)
    _, err = proc.communicate(timeout=120)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == code and len(lines) == 1 and word in lines[0], err.decode()
    assert (snapshot(place), snapshot(place.parent), snapshot(place / "out", recursive=True)) == before


def test_ctrl_c_exits_130_and_says_what_was_kept(place, tiny_llama):
    words = [
        "the",
        "a",
        "cat",
        "dog",
        "bird",
        "sat",
        "on",
        "mat",
        "rug",
        "ran",
        "fast",
        "slow",
        "big",
        "small",
        "red",
        "blue",
        "green",
        "house",
        "car",
        "tree",
    ]
    rows = [
        {"id": f"d{i}", "text": " ".join(words[(i * 7 + j) % len(words)] for j in range(12))} for i in range(200_000)
    ]
    (place / "big.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for attempt in range(3):  # noqa: B007 - a run that finished before the signal landed proves nothing: rerun
        shutil.rmtree(place / "shards", ignore_errors=True)
        proc = _python_m(
            "embed-corpus",
            str(tiny_llama),
            "--corpus",
            "big.jsonl",
            "--out",
            "shards",
            "--shard-rows",
            "2000",
            cwd=place,
            # a shell starts background jobs with SIGINT ignored, and Python then keeps it ignored in the child:
            # Ctrl-C is what this test sends, so the child gets the default handling a terminal's command has
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        seen = threading.Event()
        chunks: list[bytes] = []

        def read() -> None:
            while block := proc.stderr.read1(4096):  # type: ignore[union-attr]  # noqa: B023
                chunks.append(block)  # noqa: B023
                if b"embed (local)" in b"".join(chunks):  # noqa: B023
                    seen.set()  # noqa: B023

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert seen.wait(timeout=300), b"".join(chunks).decode()[-2000:]  # the progress bar: it is embedding now
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
        reader.join(timeout=30)
        manifest = place / "shards" / "manifest.json"
        finished = code == 0 and manifest.is_file() and len(json.loads(manifest.read_text()).get("shards", [])) == 100
        if not finished:
            break
    text = b"".join(chunks).decode()
    assert code == 130, (attempt, code, text[-2000:])
    last = text.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("interrupted:") and "--resume" in last and "shards" in last, last
    assert "Traceback" not in b"".join(chunks).decode()
