"""embedlab.io: write_json, atomic_path and check_output.

A write replaces the target whole or not at all, and never deletes what it did not create. Every case
states the expected tree by hand (names and bytes), and compares it with what is on disk."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from embedlab.errors import OutputPathError
from embedlab.io import MARKER, allow_overwrite, atomic_path, check_output, write_json


def tree(root: Path) -> dict[str, bytes]:
    """{relative path: bytes} of every file under ``root`` (hidden ones included)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_folder(target: Path, files: dict[str, str], **kw) -> None:
    with atomic_path(target, **kw) as tmp:
        tmp.mkdir()
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)


@pytest.mark.parametrize("name", [".", "", "./", ".."])
def test_the_current_folder_or_a_parent_is_refused_and_nothing_is_deleted(tmp_path, monkeypatch, name):
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep").write_text("mine")
    monkeypatch.chdir(work)
    before = tree(tmp_path)
    with pytest.raises(OutputPathError):
        with atomic_path(name) as tmp:
            tmp.mkdir(exist_ok=True)
            (tmp / "index.faiss").write_text("x")
    assert tree(tmp_path) == before
    assert sorted(os.listdir(work)) == ["keep"]  # no hidden leftovers either


def test_a_failing_writer_leaves_the_target_and_its_siblings_as_they_were(tmp_path):
    (tmp_path / "sibling").write_text("s")
    out = tmp_path / "out"
    write_folder(out, {"a.json": "1"})
    before = tree(tmp_path)
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.mkdir()
            (tmp / "a.json").write_text("2")
            raise RuntimeError("writer failed")
    assert tree(tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == ["out", "sibling"]


def test_a_new_folder_records_its_entries(tmp_path):
    write_folder(tmp_path / "m", {"config.json": "{}", "1_Pooling/config.json": "{}"})
    assert json.loads((tmp_path / "m" / MARKER).read_text())["entries"] == ["1_Pooling", "config.json"]
    assert tree(tmp_path / "m").keys() == {"config.json", "1_Pooling/config.json", MARKER}


def test_rewriting_keeps_the_users_files_and_drops_only_embedlabs_old_ones(tmp_path):
    out = tmp_path / "m"
    write_folder(out, {"config.json": "old", "stale.bin": "old"})
    (out / "notes.txt").write_text("my notes")
    write_folder(out, {"config.json": "new", "model.safetensors": "w"})
    files = tree(out)
    assert {k: v for k, v in files.items() if k != MARKER} == {
        "config.json": b"new",
        "model.safetensors": b"w",
        "notes.txt": b"my notes",
    }
    assert json.loads(files[MARKER])["entries"] == ["config.json", "model.safetensors"]
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_a_clash_with_a_users_file_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text("the user's")
    (out / "other").write_text("o")
    with pytest.raises(OutputPathError, match="--overwrite"):
        write_folder(out, {"config.json": "embedlab's"})
    assert tree(out) == {"config.json": b"the user's", "other": b"o"}
    with allow_overwrite():
        write_folder(out, {"config.json": "embedlab's"})
    assert {k: v for k, v in tree(out).items() if k != MARKER} == {"config.json": b"embedlab's", "other": b"o"}


def test_a_folder_never_replaces_a_file_and_nothing_is_hidden(tmp_path):
    f = tmp_path / "ix"
    f.write_text("a file of the user's")
    with pytest.raises(OutputPathError, match="file"):
        write_folder(f, {"manifest.json": "{}"})
    assert tree(tmp_path) == {"ix": b"a file of the user's"} and sorted(os.listdir(tmp_path)) == ["ix"]


def test_a_file_never_replaces_a_folder(tmp_path):
    (tmp_path / "r.json").mkdir()
    (tmp_path / "r.json" / "x").write_text("x")
    with pytest.raises(OutputPathError, match="folder"):
        with atomic_path(tmp_path / "r.json") as tmp:
            tmp.write_text("{}")
    assert tree(tmp_path) == {"r.json/x": b"x"}


def test_a_path_under_a_regular_file_is_one_clear_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        with atomic_path(tmp_path / "f" / "sub" / "out.json") as tmp:
            tmp.write_text("{}")
    assert tree(tmp_path) == {"f": b"x"}


def test_files_get_the_mode_open_gives(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "m") as tmp:
            tmp.mkdir()
            fd = os.open(tmp / "model.safetensors", os.O_WRONLY | os.O_CREAT, 0o600)  # as safetensors does
            os.close(fd)
            (tmp / "config.json").write_text("{}")
        with atomic_path(tmp_path / "single.safetensors") as tmp:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600))
    finally:
        os.umask(old)
    modes = {
        p.name: stat.S_IMODE(p.stat().st_mode) for p in [*(tmp_path / "m").iterdir(), tmp_path / "single.safetensors"]
    }
    assert modes == {"model.safetensors": 0o644, "config.json": 0o644, MARKER: 0o644, "single.safetensors": 0o644}
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o755


def test_check_output_before_the_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("k")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    assert check_output("empty", folder=True) == Path("empty")
    assert check_output("new/deeper", folder=True) == Path("new/deeper")
    assert check_output("full", folder=True, overwrite=True) == Path("full")
    cases = [
        (("full",), True, "is not empty: pass --overwrite"),
        (("afile",), True, "is an existing file"),
        (("afile/x",), True, "afile is a file"),
        ((".",), True, "the current folder"),
        (("",), False, "is empty"),
        (("empty",), False, "is a folder"),
    ]
    for (path,), folder, message in cases:
        with pytest.raises(OutputPathError, match=message):
            check_output(path, folder=folder)
    assert tree(tmp_path) == {"full/keep": b"k", "afile": b"x"} and not (tmp_path / "new").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputPathError, match="no permission"):
            check_output(ro / "out", folder=True)
        with pytest.raises(OutputPathError):
            with atomic_path(ro / "out.json") as tmp:
                tmp.write_text("{}")
    finally:
        ro.chmod(0o700)


def test_write_json_is_atomic(tmp_path, monkeypatch):
    """The new content arrives whole, by one rename of a finished sibling file over the target; until
    then the target holds the old content."""

    target = tmp_path / "x.json"
    write_json(target, {"a": 1})
    old = target.read_text()
    new_obj = {"a": 2, "rows": list(range(1000))}
    renames = []
    real_replace, real_rename = os.replace, os.rename

    def spy(real):
        def move(src, dst):
            src, dst = Path(src), Path(dst)
            if dst == target:
                assert target.read_text() == old  # nothing written into the target before the rename
                assert json.loads(src.read_text()) == new_obj  # the temporary file is complete
                assert os.stat(src).st_dev == os.stat(target.parent).st_dev  # same filesystem: the rename is atomic
                renames.append(src)
            return real(src, dst)

        return move

    monkeypatch.setattr(os, "replace", spy(real_replace))
    monkeypatch.setattr(os, "rename", spy(real_rename))
    write_json(target, new_obj)
    assert len(renames) == 1 and renames[0] != target
    assert json.loads(target.read_text()) == new_obj
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary left


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    write_json(target, {"a": 1})
    old = target.read_text()

    class Unserialisable:
        pass

    with pytest.raises(TypeError):  # fails midway through serialising
        write_json(target, {"a": 2, "rows": list(range(1000)), "z": Unserialisable()})
    assert target.read_text() == old

    def half_then_fail(self, data, *args, **kwargs):  # e.g. the disk fills up halfway through the write
        with open(self, "w") as f:
            f.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        write_json(target, {"a": 3, "rows": list(range(1000))})
    assert target.read_text() == old
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_atomic_directory_replacement_fails_cleanly(tmp_path):
    target = tmp_path / "index"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "b.txt").write_text("new")
            raise RuntimeError("killed while writing")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "a.txt"] and (target / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["index"]
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "b.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "b.txt"]  # embedlab's old a.txt is replaced
    assert [p.name for p in tmp_path.iterdir()] == ["index"]
