"""Process-wide settings read from the environment (data and cache directories)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where converted models and embedding caches live: ``$EMBEDLAB_CACHE`` or ``~/.cache/embedlab``."""
    return Path(os.environ.get("EMBEDLAB_CACHE", Path.home() / ".cache" / "embedlab")).expanduser()


def data_dir() -> Path | None:
    """The benchmark data directory: ``$EMBEDLAB_DATA``, else ``../shared/data`` next to the checkout if it exists."""
    env = os.environ.get("EMBEDLAB_DATA")
    if env:
        return Path(env).expanduser()
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    candidate = Path.cwd().parent / "shared" / "data"
    return candidate if candidate.is_dir() else None
