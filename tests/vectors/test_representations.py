"""Dense and binary results, the dispatch helper, and Embedder.encode(output=kind) on a tiny model
(dense is the plain encode's array; numpy/torch output unchanged)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedlab.errors import ConfigError, InputError
from embedlab.vectors import (
    KINDS,
    TYPES,
    BinaryEmbeddings,
    DenseEmbeddings,
    from_arrow,
    from_features,
    from_json,
    load_npz,
)

TEXTS = ["the cat sat on the mat", "a dog ran", "why is the sky blue"]


def test_every_kind_has_one_type():
    assert KINDS == ("dense", "sparse", "multi_vector", "binary")
    assert {k: t.kind for k, t in TYPES.items()} == {k: k for k in KINDS}


def test_dense_and_binary_round_trips(tmp_path):
    x = np.array([[0.5, -1.0, 0.0, 2.0, 1.0, -0.5, 0.25, -3.0], [1.0] * 8], dtype=np.float32)
    d = from_features({"sentence_embedding": x}, "dense")
    b = from_features({"sentence_embedding": x}, "binary")
    assert isinstance(d, DenseEmbeddings) and isinstance(b, BinaryEmbeddings)
    np.testing.assert_array_equal(b.codes, [[0b10011010], [0b11111111]])  # signs > 0, most significant bit first
    for r in (d, b):
        r.save_npz(tmp_path / f"{r.kind}.npz")
        again = [
            load_npz(tmp_path / f"{r.kind}.npz"),
            from_arrow(r.to_arrow()),
            from_json(r.kind, json.loads(json.dumps(r.to_json()))),
        ]
        for other in again:
            assert type(other) is type(r)
            np.testing.assert_array_equal(
                other.to_arrays()[next(iter(r.to_arrays()))], r.to_arrays()[next(iter(r.to_arrays()))]
            )
    assert d.to_json()[0] == {"embedding": x[0].tolist()}
    with pytest.raises(InputError, match="NaN"):
        DenseEmbeddings(np.array([[np.nan]]))
    with pytest.raises(InputError, match="one width"):
        from_json("dense", [{"embedding": [1.0]}, {"embedding": [1.0, 2.0]}])
    with pytest.raises(InputError, match="bytes"):
        from_json("binary", [{"embedding": [256]}])
    with pytest.raises(ConfigError, match="output kind"):
        from_features({"sentence_embedding": x}, "colbert")


def test_encode_output_kinds(tiny_bert):
    import torch

    from embedlab.models import Embedder

    emb = Embedder.from_pretrained(tiny_bert, pooling="mean")
    plain = emb.encode(TEXTS)
    assert type(plain) is np.ndarray  # the default stays an array
    assert isinstance(emb.encode(TEXTS, output="torch"), torch.Tensor)
    dense = emb.encode(TEXTS, output="dense")
    assert isinstance(dense, DenseEmbeddings)
    np.testing.assert_array_equal(dense.vectors, plain)
    one = emb.encode(TEXTS[0], output="dense")
    assert one.vectors.shape == (1, plain.shape[1])
    binary = emb.encode(TEXTS, output="binary")
    np.testing.assert_array_equal(np.unpackbits(binary.codes, axis=1).astype(bool), plain > 0)
    with pytest.raises(ConfigError, match="sparse_embedding"):
        emb.encode(TEXTS, output="sparse")
    with pytest.raises(ConfigError, match="token_vectors"):
        emb.encode(TEXTS, output="multi_vector")
    with pytest.raises(ConfigError, match="output must be"):
        emb.encode(TEXTS, output="list")
