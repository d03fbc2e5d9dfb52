"""Fusion against ranx (an independent implementation) on toy and random runs, and a 2-run,
3-document case by hand."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.errors import ConfigError, InputError
from embedlab.index.fusion import convex, fuse, rrf

ranx = pytest.importorskip("ranx")


def _ranx(runs, **kwargs):
    fused = ranx.fuse(runs=[ranx.Run(r) for r in runs], **kwargs)
    return {q: dict(d) for q, d in fused.to_dict().items()}


def _random_runs(seed, n_runs=2, n_queries=15, pool=60, depth=(1, 40)):
    """Runs retrieving overlapping random subsets of a pool, continuous scores (no ties within a list)."""
    rng = np.random.default_rng(seed)
    runs = []
    for r in range(n_runs):
        run = {}
        for q in range(n_queries):
            m = int(rng.integers(depth[0], depth[1] + 1))
            docs = rng.choice(pool, m, replace=False)
            scale = [1.0, 40.0, 0.01][r % 3]  # runs on different scales, as dense and lexical scores are
            run[f"q{q}"] = {f"d{d}": float(s) for d, s in zip(docs, scale * rng.normal(size=m) + 3 * r)}
        runs.append(run)
    return runs


def assert_runs_close(got, ref):
    assert set(got) == set(ref)
    for q in ref:
        assert set(got[q]) == set(ref[q]), q
        for d in ref[q]:
            assert got[q][d] == pytest.approx(ref[q][d], rel=1e-9, abs=1e-12), (q, d)


TOY_A = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"a": 0.2, "d": 0.9}}
TOY_B = {"q1": {"c": 10.0, "a": 5.0, "e": 4.0}, "q2": {"d": 1.5, "e": 2.5, "a": -1.0}}


def test_rrf_equals_ranx_on_toy_runs():
    assert_runs_close(rrf([TOY_A, TOY_B], k=60), _ranx([TOY_A, TOY_B], method="rrf", params={"k": 60}))


@pytest.mark.parametrize("seed, n_runs, k", [(0, 2, 60), (1, 3, 60), (2, 2, 1), (3, 4, 10)])
def test_rrf_equals_ranx_on_random_runs(seed, n_runs, k):
    runs = _random_runs(seed, n_runs)
    assert_runs_close(rrf(runs, k=k), _ranx(runs, method="rrf", params={"k": k}))


@pytest.mark.parametrize("seed, n_runs", [(0, 2), (5, 3)])
def test_convex_min_max_equals_ranx_wsum(seed, n_runs):
    runs = _random_runs(seed, n_runs)
    weights = [0.45, 0.55, 0.3][:n_runs]  # need not sum to 1
    assert_runs_close(convex(runs, weights), _ranx(runs, norm="min-max", method="wsum", params={"weights": weights}))


def test_convex_min_max_equals_ranx_on_toy_runs_with_missing_docs():
    """ranx's wsum gives a document absent from a run 0 from that run (res.get(doc, 0.0) after the
    normalization), as convex does with its default missing=0."""
    w = [0.7, 0.3]
    assert_runs_close(
        convex([TOY_A, TOY_B], w), _ranx([TOY_A, TOY_B], norm="min-max", method="wsum", params={"weights": w})
    )


def test_convex_z_score_equals_ranx_zmuv():
    runs = _random_runs(9, 2, depth=(2, 40))
    w = [0.45, 0.55]
    assert_runs_close(convex(runs, w, norm="z-score"), _ranx(runs, norm="zmuv", method="wsum", params={"weights": w}))


def test_hand_computed_two_runs_three_documents():
    dense = {"q": {"x": 0.9, "y": 0.5, "z": 0.1}}
    lexical = {"q": {"z": 12.0, "x": 4.0}}  # y not retrieved
    # RRF, k = 60: dense ranks x1 y2 z3, lexical z1 x2
    got = rrf([dense, lexical])
    assert got["q"] == pytest.approx({"x": 1 / 61 + 1 / 62, "z": 1 / 63 + 1 / 61, "y": 1 / 62})
    assert list(got["q"]) == ["x", "z", "y"]  # 0.032522 > 0.032266 > 0.016129
    # convex, min-max: dense x 1, y 0.5, z 0; lexical z 1, x 0, y missing -> 0
    got = convex([dense, lexical], [0.6, 0.4])
    assert got["q"] == pytest.approx({"x": 0.6, "y": 0.3, "z": 0.4})
    assert list(got["q"]) == ["x", "z", "y"]
    got = convex([dense, lexical], [0.2, 0.8])
    assert got["q"] == pytest.approx({"x": 0.2, "y": 0.1, "z": 0.8})
    assert list(got["q"]) == ["z", "x", "y"]
    # z-score: dense mean 0.5, std sqrt(0.32/3); lexical mean 8, std 4; y missing from lexical -> -3
    sd = np.sqrt(0.32 / 3)
    got = convex([dense, lexical], [0.5, 0.5], norm="z-score", missing=-3)
    assert got["q"] == pytest.approx({"x": 0.5 * 0.4 / sd - 0.5, "y": -1.5, "z": -0.5 * 0.4 / sd + 0.5})


def test_ties_and_degenerate_lists():
    # a tie in a run is ranked by doc id descending (b before a); a fused tie likewise
    got = rrf([{"q": {"a": 1.0, "b": 1.0}}])
    assert list(got["q"]) == ["b", "a"] and got["q"]["b"] == pytest.approx(1 / 61)
    # one retrieved document (max == min) normalizes to 0, as ranx's min-max does
    one = {"q": {"a": 5.0}}
    other = {"q": {"a": 1.0, "b": 2.0}}
    assert convex([one, other], [0.5, 0.5])["q"] == {"b": 0.5, "a": 0.0}
    assert_runs_close(
        convex([one, other], [0.5, 0.5]),
        _ranx([one, other], norm="min-max", method="wsum", params={"weights": [0.5, 0.5]}),
    )


def test_query_missing_from_a_run_is_an_empty_list():
    """ranx asserts identical query sets; here a query one run lacks is fused from the others."""
    got = rrf([{"q1": {"a": 1.0}}, {"q2": {"b": 1.0}}])
    assert got == {"q1": {"a": pytest.approx(1 / 61)}, "q2": {"b": pytest.approx(1 / 61)}}
    assert convex([{"q1": {"a": 1.0, "b": 0.0}}, {}], [1, 1]) == {"q1": {"a": 1.0, "b": 0.0}}


def test_dispatcher_and_refusals():
    assert fuse("rrf", [TOY_A, TOY_B], k=10) == rrf([TOY_A, TOY_B], k=10)
    assert fuse("convex", [TOY_A, TOY_B], weights=[1, 2], norm="z-score") == convex([TOY_A, TOY_B], [1, 2], "z-score")
    with pytest.raises(ConfigError, match=r"^fusion method must be one of rrf, convex; got 'combsum'$"):
        fuse("combsum", [TOY_A])
    with pytest.raises(ConfigError, match="unknown parameter"):
        fuse("rrf", [TOY_A], weights=[1])
    with pytest.raises(ConfigError, match="needs weights"):
        fuse("convex", [TOY_A, TOY_B])
    with pytest.raises(ConfigError, match=r"2 runs but 1 weights"):
        convex([TOY_A, TOY_B], [1.0])
    with pytest.raises(ConfigError, match=r"weights\[1\] must be a finite number > 0"):
        convex([TOY_A, TOY_B], [0.5, 0.0])
    with pytest.raises(ConfigError, match=r"weights\[0\] must be a finite number > 0"):
        convex([TOY_A, TOY_B], [-1, 2])
    with pytest.raises(ConfigError, match="norm must be one of min-max, z-score"):
        convex([TOY_A, TOY_B], [1, 1], norm="max")
    with pytest.raises(ConfigError, match=r"k must be in \[0"):
        rrf([TOY_A], k=-1)
    with pytest.raises(InputError, match="score must be a finite number"):
        rrf([{"q": {"a": float("nan")}}])
    with pytest.raises(InputError, match="non-empty list of runs"):
        rrf(TOY_A)
