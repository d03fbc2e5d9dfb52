"""Atomic file writes and reading of text inputs."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from embedlab.errors import InputError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path`` (file or directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if tmp.is_dir():
            old = None
            if path.exists():
                old = path.parent / f".{path.name}.old-{os.getpid()}"
                os.rename(path, old)
            os.rename(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (temp file, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: str | os.PathLike, error: type[Exception], what: str) -> Any:
    """Parse a JSON file, raising ``error`` with a message naming ``what`` when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} missing: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is corrupt: not valid JSON ({exc})") from None


def read_texts(path: str | os.PathLike | None, *, stdin_text: str | None = None) -> list[str]:
    """Read one text per line, or JSONL objects with a ``text`` field. ``-`` reads ``stdin_text``.

    Raises InputError for a missing, empty or non-UTF-8 file and for JSONL lines without ``text``.
    """
    if str(path) == "-":
        raw = stdin_text if stdin_text is not None else ""
        name = "<stdin>"
    else:
        p = Path(path)  # type: ignore[arg-type]
        if not p.is_file():
            raise InputError(f"input file not found: {p}")
        try:
            raw = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{p} is not valid UTF-8 (byte {exc.start}): re-encode it as UTF-8") from None
        name = str(p)
    lines = raw.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputError(f"{name} is empty: give one text per line, or JSONL with a 'text' field")
    is_jsonl = name.endswith(".jsonl") or lines[0].lstrip().startswith("{")
    if not is_jsonl:
        return lines
    texts = []
    for i, line in enumerate(lines, 1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}:{i}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise InputError(f"{name}:{i}: a JSONL line needs a string 'text' field")
        texts.append(obj["text"])
    return texts
