"""embedlab.io.write_json and atomic_path: a write replaces the target whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedlab.io import MARKER, atomic_path, write_json


def test_write_json_is_atomic(tmp_path, monkeypatch):
    """The new content arrives whole, by one rename of a finished sibling file over the target; until
    then the target holds the old content."""
    import json
    import os

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
