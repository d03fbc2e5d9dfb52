"""Atomic file writes, the output-folder rule, and reading of text inputs.

The rule every writer follows (:func:`atomic_path`):

- a write never deletes anything it did not create: it works in a fresh hidden folder beside the target
  and, on failure, removes only that folder;
- an output folder records what embedlab wrote in it (:data:`MARKER`, a JSON listing of its entries);
  replacing the folder replaces only those entries and keeps every other file of the user's;
- a file of the user's that the new output would replace is refused unless ``overwrite`` is given
  (the CLI's ``--overwrite``; :func:`allow_overwrite` sets it for library writers called below a command);
- the target can never be the current folder, one of its parents, or the filesystem root;
- files get the mode a normal ``open()`` gives (0666 less the umask), whatever the library that wrote
  them chose (safetensors writes 0600).

:func:`check_output` applies the same rules before any work starts, and adds the CLI's stricter one: an
existing non-empty output folder is refused without ``--overwrite``.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embedlab.errors import OutputPathError

#: The listing of the entries embedlab wrote in an output folder (read by the next write to that folder).
MARKER = ".embedlab-output.json"

_OVERWRITE: contextvars.ContextVar[bool] = contextvars.ContextVar("embedlab_overwrite", default=False)


@contextmanager
def allow_overwrite(overwrite: bool = True) -> Iterator[None]:
    """Within this block, atomic writes may replace files of the user's that clash with their output
    (the CLI's ``--overwrite``, reaching library writers that do not take the flag themselves)."""
    token = _OVERWRITE.set(bool(overwrite))
    try:
        yield
    finally:
        _OVERWRITE.reset(token)


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _normal_modes(root: Path) -> None:
    """Give every file under ``root`` (or ``root`` itself) the mode ``open()`` would (0666 less the umask)."""
    mask = _umask()
    paths = [root] if not root.is_dir() else [Path(d) / f for d, _, files in os.walk(root) for f in files]
    for f in paths:
        st = f.lstat()
        if f.is_symlink() or not f.is_file():
            continue
        mode = (0o777 if st.st_mode & 0o111 else 0o666) & ~mask
        if st.st_mode & 0o777 != mode:
            os.chmod(f, mode)
    if root.is_dir():
        for d, dirs, _ in os.walk(root):
            for name in dirs:
                os.chmod(Path(d) / name, 0o777 & ~mask)


def _target(path: str | os.PathLike, flag: str | None) -> Path:
    """``path`` as an absolute path, refused when it is empty, the cwd, a parent of it, or the root."""
    what = flag or "the output path"
    raw = os.fspath(path)
    if not str(raw).strip():
        raise OutputPathError(f"{what} is empty: name a file or folder to write")
    target = Path(os.path.abspath(raw))
    cwd = Path(os.path.abspath(os.getcwd()))
    if target == Path(target.anchor) or target == cwd or target in cwd.parents:
        place = (
            "the current folder"
            if target == cwd
            else "a parent of the current folder"
            if target != Path(target.anchor)
            else "the filesystem root"
        )
        raise OutputPathError(f"{what} {raw!s} is {place}: name a new folder (e.g. {what} ./out)")
    return target


def _check_parent(target: Path, flag: str | None) -> None:
    """Refuse a target whose folder cannot be made or written: under a regular file, or unwritable."""
    what = f"{flag} {target}" if flag else str(target)
    up = target.parent
    while not up.exists():
        if up.is_symlink():  # a dangling link
            raise OutputPathError(f"cannot write {what}: {up} is a broken symbolic link")
        up = up.parent
    if not up.is_dir():
        raise OutputPathError(f"cannot write {what}: {up} is a file, not a folder")
    if not os.access(up, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {what}: no permission to write in {up}")


def check_output(path: str | os.PathLike, *, folder: bool, overwrite: bool = False, flag: str = "--out") -> Path:
    """Check an output path before any work starts; the path as given (``Path``).

    Refuses (:class:`OutputPathError`, one line naming ``flag``): an empty path, the current folder or a
    parent of it, a path under a regular file or in a folder that cannot be written; for ``folder`` outputs
    an existing file, or an existing non-empty folder without ``overwrite``; for file outputs a folder.
    """
    target = _target(path, flag)
    _check_parent(target, flag)
    if folder:
        if target.exists() and not target.is_dir():
            raise OutputPathError(f"{flag} {path} is an existing file; {flag} names a folder: choose another name")
        if target.is_dir():
            if not os.access(target, os.W_OK | os.X_OK):
                raise OutputPathError(f"cannot write {flag} {path}: no permission to write in it")
            if any(target.iterdir()) and not overwrite:
                raise OutputPathError(
                    f"{flag} {path} is not empty: pass --overwrite to replace what embedlab wrote "
                    f"there (your other files are kept), or choose a new folder"
                )
    elif target.is_dir():
        raise OutputPathError(f"{flag} {path} is a folder; {flag} names a file: give a file name")
    return Path(path)


def _owned(folder: Path) -> set[str]:
    """The entries of ``folder`` that embedlab's last write there listed in its :data:`MARKER`."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        return {
            str(e) for e in data.get("entries", []) if isinstance(e, str) and "/" not in e and e not in ("", ".", "..")
        }
    except (OSError, ValueError, AttributeError):
        return set()


def _commit_folder(tmp: Path, target: Path, scratch: Path, overwrite: bool) -> None:
    """Move the finished folder ``tmp`` to ``target`` by the rule in the module docstring."""
    new = sorted(e for e in os.listdir(tmp) if e != MARKER)
    (tmp / MARKER).write_text(json.dumps({"written_by": "embedlab", "entries": new}, indent=1) + "\n", encoding="utf-8")
    _normal_modes(tmp)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise OutputPathError(f"{target} is an existing file, not a folder: choose another name")
    if not target.exists():
        os.rename(tmp, target)
        return
    existing = set(os.listdir(target))
    if not existing:
        os.rmdir(target)
        os.rename(tmp, target)
        return
    owned = _owned(target) & existing
    if not owned and MARKER not in existing and existing == set(new):
        owned = existing  # an output of an older embedlab (no listing) being rewritten with the same entries
    foreign = existing - owned - {MARKER}
    clash = foreign & set(new)
    if clash and not (overwrite or _OVERWRITE.get()):
        names = ", ".join(sorted(clash)[:3]) + (", …" if len(clash) > 3 else "")
        raise OutputPathError(
            f"{target} holds {names}, which embedlab did not write: pass --overwrite to replace "
            f"{'it' if len(clash) == 1 else 'them'}, or choose a new folder"
        )
    if not foreign:  # everything there is embedlab's: swap the whole folder (two renames)
        os.rename(target, scratch / "old")
        os.rename(tmp, target)
        return
    trash = scratch / "old"
    trash.mkdir()
    moved: list[str] = []
    try:
        for name in sorted((owned | set(new) | {MARKER}) & existing):
            os.rename(target / name, trash / name)
            moved.append(name)
        for name in [*new, MARKER]:
            os.rename(tmp / name, target / name)
    except BaseException:
        for name in moved:  # put the old entries back where they can be
            if not (target / name).exists():
                os.rename(trash / name, target / name)
        raise


@contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it to ``path`` (a file or a folder).

    A file replaces a file; a folder is merged into an existing one by the rule in the module docstring
    (``overwrite``: also replace the user's clashing files; default: :func:`allow_overwrite`'s setting).
    On failure only the temporary folder made here is removed. Raises :class:`OutputPathError` for a
    target that cannot be written (see :func:`check_output`).
    """
    target = _target(path, None)
    _check_parent(target, None)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        raise OutputPathError(f"cannot write {target}: {exc.strerror or exc}") from None
    tmp = scratch / target.name
    try:
        yield tmp
        try:
            if tmp.is_dir() and not tmp.is_symlink():
                _commit_folder(tmp, target, scratch, overwrite if overwrite is not None else _OVERWRITE.get())
            elif tmp.exists():
                if target.is_dir() and not target.is_symlink():
                    raise OutputPathError(f"{target} is a folder; cannot replace it with a file")
                _normal_modes(tmp)
                os.replace(tmp, target)
        except OSError as exc:
            raise OutputPathError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


#: bumped when :func:`cache_key`'s encoding changes: every key changes with it, so old entries miss
CACHE_KEY_FORMAT = 1


def cache_key(model_fingerprint: str, *parts: Any) -> str:
    """The one cache key (docs/architecture.md, "Caches"): SHA-256 over the model's weight fingerprint
    (:meth:`Embedder.fingerprint`, or :func:`embedlab.models.fingerprint.weights_fingerprint` for other
    weights) and the content that cache depends on (texts, prompt, precision, request...), as 32 hex digits.

    Each part is encoded as canonical JSON (sorted keys, lists for tuples) behind its length, so no two
    different part lists give the same bytes; a part that is not JSON (``bytes`` aside) is refused."""
    h = hashlib.sha256(f"embedlab-cache-key/{CACHE_KEY_FORMAT}".encode())
    for part in (model_fingerprint, *parts):
        if isinstance(part, bytes | bytearray):
            data = b"b" + bytes(part)
        else:
            data = b"j" + json.dumps(part, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:32]


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
