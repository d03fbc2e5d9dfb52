from __future__ import annotations

import random

import pytest

from embedlab.errors import InputError
from embedlab.io import read_texts, write_json
from embedlab.models.batching import pad_batch, token_budget_batches


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


def test_pad_batch_sides():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0, side="right")
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0, side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_read_texts(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\ntwo\n\n")
    assert read_texts(tmp_path / "a.txt") == ["one", "", "two"]  # inner blank lines are texts
    (tmp_path / "b.jsonl").write_text('{"text": "x"}\n{"text": "y", "id": 1}\n')
    assert read_texts(tmp_path / "b.jsonl") == ["x", "y"]
    assert read_texts("-", stdin_text="p\nq\n") == ["p", "q"]
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(InputError, match="empty"):
        read_texts(tmp_path / "empty.txt")
    (tmp_path / "latin.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="UTF-8"):
        read_texts(tmp_path / "latin.txt")
    with pytest.raises(InputError, match="not found"):
        read_texts(tmp_path / "missing.txt")
    (tmp_path / "bad.jsonl").write_text('{"txt": "x"}\n')
    with pytest.raises(InputError, match="'text' field"):
        read_texts(tmp_path / "bad.jsonl")


def test_write_json_is_atomic(tmp_path):
    write_json(tmp_path / "x.json", {"a": 1})
    write_json(tmp_path / "x.json", {"a": 2})
    assert (tmp_path / "x.json").read_text().strip().endswith("}")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
