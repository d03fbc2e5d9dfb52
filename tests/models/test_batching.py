"""embedlab.models.batching: token-budget and padding-aware batches against brute force, pad_batch sides."""

from __future__ import annotations

import random

import pytest

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
