"""Sparse embeddings: written from a features dict, round-tripped through npz, JSON and Arrow, and
rejected with one-line errors when malformed (bad shapes, NaN, unsorted or repeated indices)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedlab.errors import ConfigError, InputError
from embedlab.vectors import (
    SparseEmbeddings,
    concat,
    from_arrow,
    from_features,
    from_json,
    load_npz,
)

V = 10


def _features():
    # two texts, K = 3 slots; row 0 is given unsorted with a padding slot, row 1 has a zero weight (absent)
    return {
        "sparse_embedding": {
            "indices": np.array([[7, 2, -1], [0, 4, 9]]),
            "values": np.array([[0.5, 1.5, 0.0], [2.0, 0.0, 0.25]], dtype=np.float32),
            "vocab_size": V,
        }
    }


def test_from_features_hand_checked():
    s = from_features(_features(), "sparse")
    assert s.kind == "sparse" and len(s) == 2
    np.testing.assert_array_equal(s.indptr, [0, 2, 4])
    np.testing.assert_array_equal(s.indices, [2, 7, 0, 9])
    np.testing.assert_array_equal(s.values, [1.5, 0.5, 2.0, 0.25])
    dense = np.zeros((2, V), dtype=np.float32)
    dense[0, 2], dense[0, 7], dense[1, 0], dense[1, 9] = 1.5, 0.5, 2.0, 0.25
    np.testing.assert_array_equal(s.to_dense(), dense)
    assert s.to_json() == [{"indices": [2, 7], "values": [1.5, 0.5]}, {"indices": [0, 9], "values": [2.0, 0.25]}]


def test_round_trips(tmp_path):
    s = concat([from_features(_features(), "sparse"), SparseEmbeddings.from_rows([([], []), ([3], [1.0])], V)])
    assert len(s) == 4 and s.row(2)[0].size == 0
    again = load_npz(_saved(s, tmp_path / "s.npz"))
    assert isinstance(again, SparseEmbeddings) and again.vocab_size == V
    for other in (
        again,
        from_json("sparse", json.loads(json.dumps(s.to_json())), vocab_size=V),
        from_arrow(s.to_arrow()),
    ):
        np.testing.assert_array_equal(other.to_dense(), s.to_dense())
        np.testing.assert_array_equal(other.indptr, s.indptr)
    np.testing.assert_array_equal(s.take([3, 0]).to_dense(), s.to_dense()[[3, 0]])


def _saved(s, path):
    s.save_npz(path)
    return path


@pytest.mark.parametrize(
    "indices, values, message",
    [
        ([3, 1], [1.0, 1.0], "row 0 has unsorted indices"),
        ([1, 1], [1.0, 1.0], "row 0 has duplicate indices"),
        ([1, 10], [1.0, 1.0], r"0\.\.9"),
        ([-2, 1], [1.0, 1.0], r"0\.\.9"),
        ([1, 2], [1.0, np.nan], "NaN"),
        ([1, 2], [1.0], "2 indices but 1 values"),
    ],
)
def test_bad_rows_are_rejected(indices, values, message):
    with pytest.raises(InputError, match=message):
        SparseEmbeddings(np.array([0, len(indices)]), np.array(indices), np.array(values, dtype=np.float64), V)


def test_bad_layouts_are_rejected():
    with pytest.raises(InputError, match="row 1 has unsorted"):  # each row may restart low; within a row not
        SparseEmbeddings(np.array([0, 2, 4]), np.array([1, 5, 6, 2]), np.ones(4), V)
    with pytest.raises(InputError, match="indptr"):
        SparseEmbeddings(np.array([0, 3]), np.array([1, 2]), np.ones(2), V)
    with pytest.raises(InputError, match="1-d"):
        SparseEmbeddings(np.array([0, 2]), np.array([[1, 2]]), np.ones(2), V)
    with pytest.raises(InputError, match="integers"):
        SparseEmbeddings(np.array([0, 2]), np.array([1.0, 2.0]), np.ones(2), V)
    with pytest.raises(InputError, match="row 1 has duplicate"):  # a head that wrote one index twice
        f = _features()
        f["sparse_embedding"]["indices"][1] = [4, 4, 9]
        f["sparse_embedding"]["values"][1] = [1.0, 1.0, 1.0]
        from_features(f, "sparse")
    with pytest.raises(InputError, match="must be an object with indices, values"):
        from_json("sparse", [{"indices": [1]}], vocab_size=V)
    with pytest.raises(ConfigError, match="sparse_embedding"):
        from_features({"sentence_embedding": np.ones((1, 4))}, "sparse")
