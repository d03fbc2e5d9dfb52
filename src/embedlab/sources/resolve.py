"""Model names -> what ``from_pretrained`` loads.

Tried in order: a packaged alias (``minilm-l6``, ``smollm2-135m``), a GGUF file (converted once and
cached, :mod:`embedlab.sources.gguf`), a local directory (HF layout, a saved embedder or a static
model), then a hub id (the local HF cache first; the network only when it answers, failing fast
otherwise).
"""

from __future__ import annotations

import difflib
import os
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from embedlab.errors import ModelNotFoundError
from embedlab.sources import gguf
from embedlab.sources.aliases import ALIASES, alias_names

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def hub_reachable(timeout: float = 3.0) -> bool:
    """True if the hub's host answers a TCP connection within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_source(name: str | os.PathLike) -> tuple[str, str]:
    """Map a model name to (what to pass to from_pretrained, a human description of the source)."""
    name = str(name)
    if name in ALIASES:
        alias = ALIASES[name]
        path = alias.locate()
        if alias.is_gguf:
            return str(gguf.converted_dir(path)), f"alias {name} ({alias.package}, GGUF)"
        return str(path), f"alias {name} ({alias.package})"
    try:
        path = Path(name).expanduser()
    except RuntimeError:  # '~nosuchuser/...': no such home directory
        path = Path(name)
    if path.is_file() and path.suffix == ".gguf":
        return str(gguf.converted_dir(path)), f"GGUF file {path}"
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{path} is a directory without config.json: not a Hugging Face model or saved embedder"
            )
        return str(path.resolve()), f"directory {path}"
    if path.exists() or name.startswith((".", "/", "~")) or not _HUB_ID.match(name):
        raise ModelNotFoundError(
            f"unknown model '{name}': not an alias ({alias_names()}), a directory, or a hub id{_did_you_mean(name)}"
        )
    return name, f"hub id {name}"


def _did_you_mean(name: str) -> str:
    """``; did you mean 'minilm-l6'?`` when ``name`` is a near miss of an alias, else nothing."""
    close = difflib.get_close_matches(name.lower(), list(ALIASES), n=1, cutoff=0.75)
    return f"; did you mean '{close[0]}'?" if close else ""


def from_hub_or_cache(loader: Any, name: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(name)`` from the local HF cache, else from the hub if it answers, else a
    one-line :class:`ModelNotFoundError` (transformers alone retries for ~25 s without a network)."""
    try:
        return loader.from_pretrained(name, local_files_only=True, **kwargs)
    except OSError:
        pass
    if not hub_reachable():
        raise ModelNotFoundError(
            f"unknown model '{name}': not an alias ({alias_names()}) or directory, and the Hugging Face hub "
            f"is not reachable (no network, or HF_HUB_OFFLINE=1) and it is not in the local cache{_did_you_mean(name)}"
        )
    try:
        return loader.from_pretrained(name, **kwargs)
    except OSError as exc:
        raise ModelNotFoundError(f"could not load '{name}' from the hub: {str(exc).splitlines()[0]}") from None


__all__ = ["from_hub_or_cache", "hub_reachable", "resolve_source"]
