"""Readers for the shared benchmark layouts (TSV without quoting, JSONL, BEIR), with errors naming the file."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

from embedlab.errors import DatasetError


def _open_text(path: Path) -> str:
    if not path.is_file():
        raise DatasetError(f"dataset file missing: {path}")
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise DatasetError(f"dataset file corrupt: {path} ({exc})") from None


def read_tsv(path: Path, required: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Header + tab-separated rows, no quoting (the shared data's convention)."""
    lines = _open_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise DatasetError(f"dataset file corrupt: {path} is empty")
    header = lines[0].split("\t")
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(f"dataset file corrupt: {path} lacks column(s) {', '.join(missing)}")
    rows = []
    for n, line in enumerate(lines[1:], 2):
        cells = line.split("\t")
        if len(cells) != len(header):
            raise DatasetError(f"dataset file corrupt: {path}:{n} has {len(cells)} fields, expected {len(header)}")
        rows.append(dict(zip(header, cells)))
    return rows


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(_open_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"dataset file corrupt: {path}:{n} is not JSON ({exc.msg})") from None
    return rows


def files_digest(paths: list[Path]) -> str:
    """SHA-256 over the files' bytes (the dataset hash stored with every result)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]
