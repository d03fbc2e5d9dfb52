"""embedlab.progress: the one progress parameter (``show_progress``): off, tqdm, automatic, or a factory."""

from __future__ import annotations

import io
import logging
from typing import Any

from embedlab.progress import NullBar, ProgressBar, TqdmBar, progress_bar


class Recorder:
    """A progress factory that keeps every bar it makes (what a test or a GUI would pass)."""

    def __init__(self) -> None:
        self.bars: list[RecordedBar] = []

    def __call__(self, *, total: Any = None, desc: str = "", unit: str = "it", initial: float = 0) -> RecordedBar:
        bar = RecordedBar(total, desc, unit, initial)
        self.bars.append(bar)
        return bar


class RecordedBar:
    def __init__(self, total: Any, desc: str, unit: str, initial: float) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.lines: list[str] = []
        self.closed = False

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def write(self, msg: str) -> None:
        self.lines.append(msg)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> RecordedBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def test_a_tqdm_bar_counts_updates_and_draws_on_stderr(capsys):
    with progress_bar(True, total=10, desc="encode", unit="text") as bar:
        assert isinstance(bar, TqdmBar) and isinstance(bar, ProgressBar)
        for _ in range(3):
            bar.update(3)
        bar.update()
        bar.set_description("encode more")
        bar.write("a status line")
        assert (bar.n, bar.total) == (10, 10)
    captured = capsys.readouterr()
    assert captured.out == ""  # bars and their status lines go to stderr, never to the command's output
    assert "encode more" in captured.err and "10/10" in captured.err and "a status line" in captured.err


def test_disabled_draws_nothing_but_counts_and_logs_status_lines(capsys, caplog):
    with caplog.at_level(logging.INFO, logger="embedlab"), progress_bar(False, total=5, desc="x") as bar:
        assert isinstance(bar, NullBar) and isinstance(bar, ProgressBar)
        bar.update(2)
        bar.update(3)
        bar.set_description("y")
        bar.write("status")
    assert bar.n == 5 and bar.total == 5
    assert capsys.readouterr() == ("", "")
    assert "status" in caplog.text


def test_automatic_draws_only_on_a_terminal_and_when_the_caller_agrees(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert isinstance(progress_bar(None, total=1), NullBar)  # not a terminal
    monkeypatch.setattr("sys.stderr", Terminal())
    assert isinstance(progress_bar(None, total=1, auto=False), NullBar)  # too little work to be worth a bar
    bar = progress_bar(None, total=1)
    assert isinstance(bar, TqdmBar)
    bar.close()
    monkeypatch.setattr("sys.stderr", None)  # no stderr at all (pythonw)
    assert isinstance(progress_bar(None, total=1), NullBar)


def test_a_factory_gets_the_bar_the_library_asks_for():
    rec = Recorder()
    with progress_bar(rec, total=7, desc="train", unit="step", initial=2) as bar:
        bar.update(5)
    (made,) = rec.bars
    assert (made.total, made.desc, made.unit, made.n, made.closed) == (7, "train", "step", 7, True)
    assert isinstance(made, ProgressBar)


def test_the_cli_rich_adapter_is_a_factory():
    from rich.console import Console

    from embedlab.cli._common import RichProgress

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100)
    with RichProgress(console, transient=False) as bars:
        with progress_bar(bars, total=4, desc="[tok]enizer", unit="text") as first:
            first.update(1)
            first.update(3)
            first.write("a line above the bars")
        with progress_bar(bars, total=None, desc="second") as second:
            second.set_description("second, renamed")
            second.update(2)
        tasks = {t.description: t for t in bars.progress.tasks}
    assert isinstance(first, ProgressBar) and first.n == 4 and second.n == 2
    assert tasks[r"\[tok]enizer"].completed == 4 and tasks[r"\[tok]enizer"].finished
    assert tasks["second, renamed"].completed == 2
    text = buf.getvalue()
    assert "a line above the bars" in text and "[tok]enizer" in text  # markup in a name is printed as typed


def test_the_library_reports_through_one_parameter():
    from tokenizers import Tokenizer, models, pre_tokenizers

    from embedlab.tokenize.metrics import tokenizer_metrics

    tok = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    rec = Recorder()
    tokenizer_metrics(tok, ["a"] * 1100, show_progress=rec)
    (bar,) = rec.bars
    assert bar.n == bar.total == 1100 and bar.unit == "text" and bar.closed
