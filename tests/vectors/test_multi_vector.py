"""Multi-vector (late-interaction) embeddings: written from token_vectors + token_mask, round-tripped
through npz, JSON and Arrow, and rejected with one-line errors when malformed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embedlab.errors import ConfigError, InputError
from embedlab.vectors import (
    MultiVectorEmbeddings,
    concat,
    from_arrow,
    from_features,
    from_json,
    load_npz,
)


def _features():
    tv = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)  # B=2, T=3, d=2
    return {"token_vectors": tv, "token_mask": torch.tensor([[1, 0, 1], [0, 0, 1]])}


def test_from_features_keeps_the_masked_in_vectors_in_order():
    m = from_features(_features(), "multi_vector")
    assert m.kind == "multi_vector" and len(m) == 2 and m.dim == 2
    np.testing.assert_array_equal(m.lengths, [2, 1])
    np.testing.assert_array_equal(m.row(0), [[0, 1], [4, 5]])
    np.testing.assert_array_equal(m.row(1), [[10, 11]])
    assert m.to_json() == [{"vectors": [[0.0, 1.0], [4.0, 5.0]], "length": 2}, {"vectors": [[10.0, 11.0]], "length": 1}]


def test_round_trips(tmp_path):
    m = concat([from_features(_features(), "multi_vector"), MultiVectorEmbeddings.from_rows([np.zeros((0, 2))], 2)])
    assert len(m) == 3 and m.lengths.tolist() == [2, 1, 0]
    m.save_npz(tmp_path / "m.npz")
    for other in (
        load_npz(tmp_path / "m.npz"),
        from_json("multi_vector", json.loads(json.dumps(m.to_json())), dim=2),
        from_arrow(m.to_arrow()),
    ):
        assert isinstance(other, MultiVectorEmbeddings)
        np.testing.assert_array_equal(other.vectors, m.vectors)
        np.testing.assert_array_equal(other.lengths, m.lengths)
    np.testing.assert_array_equal(m.take([1]).vectors, [[10, 11]])


def test_bad_inputs_are_rejected():
    with pytest.raises(InputError, match="sum to 3 but there are 2"):
        MultiVectorEmbeddings(np.ones((2, 4)), np.array([1, 2]))
    with pytest.raises(InputError, match=">= 0"):
        MultiVectorEmbeddings(np.ones((2, 4)), np.array([3, -1]))
    with pytest.raises(InputError, match="NaN"):
        MultiVectorEmbeddings(np.array([[1.0, np.inf]]), np.array([1]))
    with pytest.raises(InputError, match="2-d"):
        MultiVectorEmbeddings(np.ones(4), np.array([4]))
    with pytest.raises(InputError, match="one width"):
        MultiVectorEmbeddings.from_rows([np.ones((1, 2)), np.ones((1, 3))])
    with pytest.raises(InputError, match="length 2 but 1 vectors"):
        from_json("multi_vector", [{"vectors": [[1.0]], "length": 2}])
    with pytest.raises(InputError, match="do not match"):
        from_features({"token_vectors": np.ones((2, 3, 4)), "token_mask": np.ones((2, 2))}, "multi_vector")
    with pytest.raises(ConfigError, match="token_mask"):
        from_features({"token_vectors": np.ones((2, 3, 4))}, "multi_vector")
