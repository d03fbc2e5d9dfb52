"""The one place for checks of user-given values and their messages.

Each check returns the value when it is fine and raises :class:`~embedlab.errors.ConfigError` (exit 2,
HTTP 422) with one line naming the setting otherwise, so the CLI, the configs and the library word the
same mistake the same way. ``name`` is what the user typed: a flag (``--k``) or a config field (``k``)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from embedlab.errors import ConfigError


def format_validation_error(exc: Any, where: str = "") -> str:
    """A pydantic ``ValidationError`` as one line: ``where: field 'a.b': message; field 'c': ...`` (pydantic's
    ``Value error, `` prefix dropped; a model-level problem is field 'config')."""
    problems = []
    for e in exc.errors():
        msg = str(e["msg"]).removeprefix("Value error, ")
        loc = ".".join(str(x) for x in e["loc"])
        problems.append(f"field '{loc or 'config'}': {msg}")
    text = "; ".join(problems)
    return f"{where}: {text}" if where else text


def positive_int(name: str, value: Any) -> int:
    """An integer >= 1 (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}")
    return value


def int_range(name: str, value: Any, low: int, high: int | None = None) -> int:
    """An integer in ``low..high`` (both included; ``high=None``: no upper end). Bools are refused."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        want = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"
        raise ConfigError(f"{name} must be {want}; got {value!r}")
    return value


def non_negative_int(name: str, value: Any) -> int:
    """An integer >= 0 (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0; got {value!r}")
    return value


def finite_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite number, optionally within [low, high] (``*_open``: that end excluded)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number; got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(x):
        raise ConfigError(f"{name} must be a finite number; got {value!r}")
    if (
        low is not None
        and (x < low or (low_open and x == low))
        or high is not None
        and (x > high or (high_open and x == high))
    ):
        lo = "" if low is None else f"{'(' if low_open else '['}{low:g}"
        hi = "" if high is None else f"{high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{name} must be in {lo or '(-inf'}, {hi or 'inf)'}; got {value!r}")
    return x


def positive_number(name: str, value: Any) -> float:
    """A finite number > 0 given as a number (an int or a float; bools and strings are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number > 0; got {value!r}")
    return float(value)


def port(name: str, value: Any) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(f"{name} must be a TCP port from 0 to 65535; got {value!r}")
    return value


def choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of ``choices`` (compared as given)."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def at_most(name: str, value: int, limit: int, what: str) -> int:
    """``value`` (already checked to be a number) no larger than ``limit``, which ``what`` names (``"the number
    of texts"``): refused as ``{name} {value} is larger than {what} ({limit})``."""
    if value > limit:
        raise ConfigError(f"{name} {value} is larger than {what} ({limit})")
    return value


def cluster_count(k: Any, n: int, name: str = "--k") -> int:
    """A number of clusters for ``n`` texts: 1 to n."""
    positive_int(name, k)
    return at_most(name, k, n, "the number of texts")


def non_empty_list(name: str, items: Iterable[str], *, example: str) -> list[str]:
    """A comma-separated value split into its non-blank items; refused when there are none."""
    out = [t.strip() for t in items if t.strip()]
    if not out:
        raise ConfigError(f"{name} is empty: give at least one item, e.g. {name} {example}")
    return out


def key_values(name: str, items: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` items to a dict; a VALUE that parses as JSON (a number, true, a list) is that value."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{name} must be KEY=VALUE; got {item!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


__all__ = [
    "at_most",
    "choice",
    "cluster_count",
    "finite_float",
    "int_range",
    "key_values",
    "non_empty_list",
    "non_negative_int",
    "port",
    "positive_int",
    "positive_number",
]
