"""The ``embedlab`` command line: a thin typer layer that parses, calls the library, and prints.

One module per command group (as MTEB splits its CLI): :mod:`.models` (models, info, encode, demo),
:mod:`.evaluate` (tasks, eval, compare), :mod:`.index` (index, search, embed-corpus, export), :mod:`.train`
(train, mine, grid, distill), :mod:`.serve`, :mod:`.cluster`, :mod:`.vocab` (vocab, tokenizer) and
:mod:`.bias`; :mod:`._common` holds the shared options, the model loader and the table helper.

:func:`main` turns every failure into one line on stderr and an exit code: the error's ``exit_code``
(2 for usage and configuration errors, 1 for runtime failures; see :mod:`embedlab.errors`), 2 for
click's usage errors, and 130 for Ctrl-C, with a line saying what was kept.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import typer

from embedlab.cli import bias, cluster, evaluate, index, models, serve, train, vocab
from embedlab.cli._common import _interrupt_note, err, interrupt_note

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Build, evaluate and serve LLM-based text embedders."
)
for _group in (models, evaluate, index, train, serve, cluster, vocab, bias):
    _group.register(app)


def _click_exceptions() -> tuple[type[BaseException], ...]:
    """typer 0.29 bundles its own click (typer._click); older ones use click itself: catch both."""
    found: list[type[BaseException]] = []
    try:
        from typer._click.exceptions import ClickException as Bundled

        found.append(Bundled)
    except ImportError:  # pragma: no cover
        pass
    try:
        from click.exceptions import ClickException

        found.append(ClickException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(found)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _usage_line(exc: BaseException) -> str:
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return _one_line(message) + where


def run(args: Sequence[str] | None = None) -> int:
    """Run ``embedlab ARGS`` and return its exit code (what :func:`main` exits with)."""
    from embedlab.errors import EmbedlabError, exit_code_of

    _interrupt_note.clear()
    click_errors = _click_exceptions()
    try:
        rv = app(args=list(sys.argv[1:] if args is None else args), prog_name="embedlab", standalone_mode=False)
    except EmbedlabError as exc:
        err.print(f"[red]error:[/red] {_one_line(str(exc))}", highlight=False, markup=True)
        return exit_code_of(exc)
    except KeyboardInterrupt:
        rv = 130
    except click_errors as exc:  # type: ignore[misc]
        if (
            type(exc).__name__ == "NoArgsIsHelpError"
        ):  # `embedlab` or `embedlab index` alone: the help, as click shows it
            ctx = getattr(exc, "ctx", None)
            text = ctx.get_help() if ctx is not None else ""  # typer's rich help prints itself and returns ""
            if text.strip():
                print(text)
            return 2
        err.print(f"[red]error:[/red] {_usage_line(exc)}", highlight=False)
        return int(getattr(exc, "exit_code", 2) or 2)
    except (typer.Abort, EOFError):
        err.print("[red]error:[/red] aborted", highlight=False)
        return 1
    except typer.Exit as exc:
        rv = exc.exit_code
    code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    if code == 130:
        err.print(f"interrupted: {interrupt_note()}", highlight=False)
    return code


def main() -> None:
    """The ``embedlab`` console script."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    sys.exit(run())


__all__ = ["app", "main", "run"]
