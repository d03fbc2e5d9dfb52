from __future__ import annotations

import random
from pathlib import Path

import pytest

from embedlab.io import MARKER, atomic_path, write_json
from embedlab.models.batching import pad_batch, padding_aware_batches, token_budget_batches


def test_token_budget_batches_brute_force():
    rng = random.Random(0)
    for _ in range(50):
        lengths = [rng.randint(1, 40) for _ in range(rng.randint(1, 60))]
        budget, cap = rng.randint(10, 200), rng.randint(1, 16)
        batches = list(token_budget_batches(lengths, budget, cap))
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for b in batches:
            assert len(b) <= cap
            assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= budget
        flat = [lengths[i] for b in batches for i in b]
        assert flat == sorted(flat, reverse=True)


def _set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _set_partitions(rest):
        for k in range(len(part)):
            yield part[:k] + [[first] + part[k]] + part[k + 1 :]
        yield [[first]] + part


def test_padding_aware_batches_is_optimal_over_all_partitions():
    """Brute force: no partition of the inputs into feasible batches (any grouping, not only contiguous
    runs of the sorted lengths) costs less than the DP's."""
    rng = random.Random(1)

    def cost(batches, lengths, overhead):
        return sum(overhead + len(b) * max(lengths[i] for i in b) for b in batches)

    def feasible(b, lengths, budget, cap):
        return len(b) <= cap and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= budget)

    for _trial in range(60):
        lengths = [rng.randint(1, 30) for _ in range(rng.randint(1, 7))]
        budget, cap, overhead = rng.randint(20, 120), rng.randint(1, 5), rng.choice([0, 3, 10, 40])
        got = padding_aware_batches(lengths, budget, cap, overhead)
        assert sorted(i for b in got for i in b) == list(range(len(lengths)))
        assert all(feasible(b, lengths, budget, cap) for b in got)
        best = min(
            cost(p, lengths, overhead)
            for p in _set_partitions(list(range(len(lengths))))
            if all(feasible(b, lengths, budget, cap) for b in p)
        )
        assert cost(got, lengths, overhead) == best, (lengths, budget, cap, overhead, got)


def test_padding_aware_batches_extremes():
    lengths = [10, 12, 11, 50, 52, 200]
    assert padding_aware_batches(lengths, 2048, 64, 10**6) == [[0, 2, 1, 3, 4, 5]]  # one batch when passes are dear
    assert padding_aware_batches(lengths, 2048, 64, 0) == [[0], [2], [1], [3], [4], [5]]  # no padding when free
    assert padding_aware_batches(lengths, 2048, 64, 20) == [[0, 2, 1], [3, 4], [5]]
    assert padding_aware_batches([300], 100, 4, 5) == [[0]]  # over the budget alone: its own batch
    assert padding_aware_batches([], 100, 4, 5) == []
    with pytest.raises(ValueError):
        padding_aware_batches([1], 100, 4, -1)


def test_pad_batch_sides():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0, side="right")
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0, side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


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
