"""embedlab.validation: the one wording of each check, one line naming the setting as the user gave it."""

from __future__ import annotations

import pytest

from embedlab.errors import ConfigError
from embedlab.validation import (
    at_most,
    cluster_count,
    finite_float,
    int_range,
    non_negative_int,
    positive_int,
    positive_number,
)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: positive_int("--k", 0), "--k must be a positive integer; got 0"),
        (lambda: positive_int("k", True), "k must be a positive integer; got True"),
        (lambda: positive_int("k", 2.0), "k must be a positive integer; got 2.0"),
        (lambda: non_negative_int("rescore", -1), "rescore must be an integer >= 0; got -1"),
        (lambda: int_range("batch_size", 1, 2), "batch_size must be an integer >= 2; got 1"),
        (lambda: int_range("dimensions", 0, 1, 384), "dimensions must be an integer in 1..384; got 0"),
        (lambda: int_range("dimensions", 385, 1, 384), "dimensions must be an integer in 1..384; got 385"),
        (lambda: int_range("dimensions", "8", 1, 384), "dimensions must be an integer in 1..384; got '8'"),
        (lambda: int_range("dimensions", False, 0, 384), "dimensions must be an integer in 0..384; got False"),
        (lambda: finite_float("m", 1.0, low=0.0, high=1.0, high_open=True), "m must be in [0, 1); got 1.0"),
        (lambda: finite_float("f", 0, low=0.0, high=1.0, low_open=True), "f must be in (0, 1]; got 0"),
        (lambda: cluster_count(5, 4), "--k 5 is larger than the number of texts (4)"),
        (lambda: at_most("--dims", 64, 32, "the teacher's width"), "--dims 64 is larger than the teacher's width (32)"),
        (lambda: positive_number("max_queue_wait", 0), "max_queue_wait must be a finite number > 0; got 0"),
        (lambda: positive_number("t", -0.5), "t must be a finite number > 0; got -0.5"),
        (lambda: positive_number("t", float("nan")), "t must be a finite number > 0; got nan"),
        (lambda: positive_number("t", "2"), "t must be a finite number > 0; got '2'"),
        (lambda: positive_number("t", True), "t must be a finite number > 0; got True"),
    ],
)
def test_messages(call, message):
    with pytest.raises(ConfigError) as err:
        call()
    assert str(err.value) == message


def test_int_range_returns_the_value_at_both_ends():
    assert int_range("n", 2, 2) == 2
    assert int_range("n", 10**9, 2) == 10**9
    assert int_range("d", 1, 1, 384) == 1 and int_range("d", 384, 1, 384) == 384
    assert at_most("n", 4, 4, "four") == 4
    assert positive_number("t", 3) == 3.0 and isinstance(positive_number("t", 3), float)


def test_checks_routed_here_keep_their_setting_names(tmp_path):
    """A few of the library's checks that now go through this module: same wording, the setting's own name."""
    from embedlab.analysis.bias.subspace import subspace_from_pairs
    from embedlab.corpus import read_texts
    from embedlab.models.modules import Projection, Truncate
    from embedlab.vectors.ops import check_dim

    (tmp_path / "t.txt").write_text("a\nb\n")
    cases = [
        (lambda: read_texts(tmp_path / "t.txt", limit=0), "corpus: 'limit' must be a positive integer; got 0"),
        (lambda: Truncate(0), "truncate: 'truncate_dim' must be a positive integer; got 0"),
        (lambda: Truncate(16).check(None, 12), "truncate_dim must be an integer in 1..12; got 16"),
        (lambda: Projection(8, -1), "projection: 'out_features' must be a positive integer; got -1"),
        (lambda: check_dim(0, what="mrl"), "mrl must be a positive integer; got 0"),
        (
            lambda: subspace_from_pairs([[1.0, 0.0]], [[0.0, 1.0]], k=0),
            "subspace: 'k' must be a positive integer; got 0",
        ),
    ]
    for call, message in cases:
        with pytest.raises(ConfigError) as err:
            call()
        assert str(err.value) == message
    from embedlab.errors import PoolingError
    from embedlab.models.pooling import _resolve_widths

    with pytest.raises(PoolingError, match=r"^latent: 'num_heads' must be a positive integer; got True$"):
        _resolve_widths(16, True, None, "latent")  # a pooling head's settings stay PoolingErrors
    import numpy as np

    assert check_dim(np.int64(3)) == 3
