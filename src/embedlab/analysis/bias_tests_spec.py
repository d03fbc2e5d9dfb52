"""The grammar of a bias-test selection, as ``embedlab bias report --tests`` and ``--mode`` take it.

``--tests`` is a comma-separated list of modes (``weat``, ``seat``), built-in test names (``weat3``) or one
YAML/JSON file of tests; ``--mode`` (``weat``, ``seat`` or ``both``) overrides the modes the list names.
A list with no item at all (``--tests ''``) is refused rather than read as "every test"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embedlab.errors import ConfigError

MODES = ("weat", "seat")
MODE_CHOICES = ("weat", "seat", "both")
TESTS_HELP = (
    "weat,seat (WEAT 1-10 on words and in SEAT templates) | weat | seat | weat3,weat6 | a YAML/JSON file of tests"
)


def parse_tests_spec(spec: str, mode: str | None = None) -> tuple[str | Path | None, list[str]]:
    """(what :func:`embedlab.analysis.bias.select_tests` takes, the modes to run).

    >>> parse_tests_spec("weat3,seat")
    ('weat3', ['seat'])
    >>> parse_tests_spec("weat,seat")
    (None, ['weat', 'seat'])
    """
    tokens = [t.strip() for t in str(spec).split(",") if t.strip()]
    if not tokens:
        raise ConfigError(f"--tests is empty: give {TESTS_HELP}")
    modes = list(dict.fromkeys(t.lower() for t in tokens if t.lower() in MODES))  # 'weat,WEAT' runs once
    rest = [t for t in tokens if t.lower() not in MODES]
    selection: str | Path | None
    if len(rest) == 1 and Path(rest[0]).suffix.lower() in (".json", ".yaml", ".yml"):
        selection = Path(rest[0])
    else:
        selection = ",".join(rest) if rest else None
    if mode is not None:
        if mode not in MODE_CHOICES:
            raise ConfigError(f"--mode must be weat, seat or both; got {mode!r}")
        modes = list(MODES) if mode == "both" else [mode]
    return selection, modes or list(MODES)


def select(spec: str, mode: str | None = None) -> tuple[list[Any], list[str]]:
    """The tests and modes of a ``--tests``/``--mode`` pair (unknown test names fail here, before any model)."""
    from embedlab.analysis.bias import select_tests

    selection, modes = parse_tests_spec(spec, mode)
    return select_tests(selection), modes


__all__ = ["MODES", "MODE_CHOICES", "TESTS_HELP", "parse_tests_spec", "select"]
