"""One progress interface for the whole library.

Every function or class of embedlab that can report progress takes one parameter,
``show_progress: ShowProgress``, and draws through :func:`progress_bar`:

* ``False``: nothing is drawn (a :class:`NullBar` still counts; its :meth:`~NullBar.write` logs at INFO);
* ``True``: a tqdm bar on stderr, drawn even when stderr is not a terminal (the CLI's choice);
* ``None``: automatic: a tqdm bar when stderr is a terminal and the caller's ``auto`` condition holds
  (``Embedder.encode`` draws one from 512 texts), else nothing;
* a :class:`ProgressFactory`: any callable ``factory(total=, desc=, unit=, initial=)`` returning a
  :class:`ProgressBar`; the CLI's rich adapter (``embedlab.cli._common.RichProgress``) is one.

A :class:`ProgressBar` is the subset of tqdm's interface the library uses: ``total``, ``n``,
``update(n)``, ``set_description(desc)``, ``write(msg)`` (a status line printed above the bar),
``close()``, and use as a context manager (which closes it). A tqdm bar satisfies it as it is.

This is a leaf: it imports nothing from embedlab, so every layer may use it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Protocol, Union, runtime_checkable

log = logging.getLogger("embedlab")

__all__ = ["NullBar", "ProgressBar", "ProgressFactory", "ShowProgress", "TqdmBar", "progress_bar"]


@runtime_checkable
class ProgressBar(Protocol):
    """What a progress bar offers (tqdm-compatible)."""

    @property
    def total(self) -> float | None: ...

    @property
    def n(self) -> float: ...

    def update(self, n: float = 1) -> Any: ...

    def set_description(self, desc: str) -> Any: ...

    def write(self, msg: str) -> Any: ...

    def close(self) -> Any: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: Any) -> Any: ...


class ProgressFactory(Protocol):
    """Makes one :class:`ProgressBar`; ``total=None`` is a bar of unknown length."""

    def __call__(self, *, total: float | None, desc: str, unit: str, initial: float) -> ProgressBar: ...


ShowProgress = Union[bool, None, ProgressFactory]
"""The one progress parameter's type: ``show_progress: ShowProgress`` (see the module docstring)."""


class NullBar:
    """The bar of ``show_progress=False``: draws nothing, counts, and logs :meth:`write`'s lines at INFO."""

    def __init__(self, total: float | None = None, desc: str = "", initial: float = 0) -> None:
        self.total = total
        self.n = initial
        self.desc = desc

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def write(self, msg: str) -> None:
        log.info("%s", msg)

    def close(self) -> None:
        pass

    def __enter__(self) -> NullBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class TqdmBar:
    """A tqdm bar on stderr (``tqdm.auto``: a widget in notebooks) whose :meth:`write` goes to stderr too,
    above the bar."""

    def __init__(self, total: float | None = None, desc: str = "", unit: str = "it", initial: float = 0) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr)

    @property
    def total(self) -> float | None:
        return self.bar.total

    @property
    def n(self) -> float:
        return self.bar.n

    def update(self, n: float = 1) -> None:
        self.bar.update(n)

    def set_description(self, desc: str) -> None:
        self.bar.set_description(desc)

    def write(self, msg: str) -> None:
        self._tqdm.write(msg, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> TqdmBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(
    show_progress: ShowProgress,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    initial: float = 0,
    auto: bool = True,
) -> ProgressBar:
    """The bar ``show_progress`` asks for (see the module docstring); ``auto`` is the caller's condition for
    drawing one when ``show_progress`` is ``None`` (e.g. enough work to be worth a bar)."""
    if callable(show_progress):
        return show_progress(total=total, desc=desc, unit=unit, initial=initial)
    if show_progress is None:
        show_progress = auto and _stderr_is_terminal()
    return TqdmBar(total, desc, unit, initial) if show_progress else NullBar(total, desc, initial)


def _stderr_is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)  # None: no stderr at all (pythonw), or a replaced stream
    return bool(isatty and isatty())
