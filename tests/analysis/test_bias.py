"""WEAT/SEAT statistics against hand computation and brute force; the bias subspace, DirectBias,
neutralise and equalise against their defining properties; word lists and bad input."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from embedlab.analysis import bias
from embedlab.errors import ConfigError, InputError


# ------------------------------------------------------------------------------------------------
# statistics
# ------------------------------------------------------------------------------------------------
def test_effect_size_and_exact_p_match_hand_computation():
    # 2-d unit vectors, A = {e1, e1}, B = {e2, e2}: s(w) = w1 - w2
    X = np.array([[1.0, 0.0], [0.8, 0.6]])  # s = 1, 0.2
    Y = np.array([[0.0, 1.0], [0.6, 0.8]])  # s = -1, -0.2
    A = np.array([[1.0, 0.0], [2.0, 0.0]])  # norms do not matter (cosines)
    B = np.array([[0.0, 1.0], [0.0, 3.0]])
    r = bias.weat_from_vectors(X, Y, A, B)
    assert r.statistic == pytest.approx(2.4)
    # d = (0.6 - (-0.6)) / sample std of [1, .2, -1, -.2] = 1.2 / sqrt(2.08 / 3)
    assert r.effect_size == pytest.approx(1.2 / math.sqrt(2.08 / 3))
    # the 6 ordered halves of {1, .2, -1, -.2} have S = 2.4, 0, 1.6, -1.6, 0, -2.4: one reaches 2.4
    assert r.p_method == "exact" and r.permutations == 6
    assert r.p_value == pytest.approx(1 / 6)


def _brute_force_p(sx, sy):
    """Every permutation of the pooled values (not combinations): the fraction with S_i >= S."""
    pool = list(sx) + list(sy)
    n = len(sx)
    observed = sum(sx) - sum(sy)
    hits = total = 0
    for perm in itertools.permutations(pool):
        total += 1
        hits += sum(perm[:n]) - sum(perm[n:]) >= observed - 1e-12
    return hits / total


@pytest.mark.parametrize("n,seed", [(2, 0), (3, 1), (3, 2), (4, 3)])
def test_exact_p_equals_brute_force_enumeration(n, seed):
    rng = np.random.default_rng(seed)
    sx, sy = rng.normal(0.3, 1, n), rng.normal(0, 1, n)
    r = bias.permutation_p(sx, sy)
    assert r.method == "exact" and r.permutations == math.comb(2 * n, n)
    assert r.p_value == pytest.approx(_brute_force_p(sx, sy), abs=1e-12)


def test_exact_p_counts_ties():
    # every s equal: every partition ties the observed statistic, p = 1
    assert bias.permutation_p(np.zeros(3), np.zeros(3)).p_value == 1.0


def test_random_permutations_are_seeded_counted_and_close_to_exact():
    rng = np.random.default_rng(5)
    sx, sy = rng.normal(0.4, 1, 7), rng.normal(0, 1, 7)  # C(14, 7) = 3432 partitions
    exact = bias.permutation_p(sx, sy)
    sampled = bias.permutation_p(sx, sy, max_exact=100, n_random=20_000, seed=3)
    again = bias.permutation_p(sx, sy, max_exact=100, n_random=20_000, seed=3)
    assert sampled.method == "random" and sampled.permutations == 20_000 and sampled.seed == 3
    assert sampled.p_value == again.p_value
    assert abs(sampled.p_value - exact.p_value) < 0.02


def test_large_sets_use_random_permutations_by_default():
    rng = np.random.default_rng(0)
    r = bias.permutation_p(rng.normal(1, 1, 10), rng.normal(0, 1, 10), n_random=1000)
    assert math.comb(20, 10) > bias.MAX_EXACT
    assert r.method == "random" and r.permutations == 1000
    assert 0 < r.p_value < 0.05


def _planted(rng, n, d=50, strength=0.6):
    """Targets X lean toward A's direction, Y toward B's; plus isotropic noise."""
    a_dir, b_dir = np.eye(d)[0], np.eye(d)[1]
    A = a_dir + 0.3 * rng.normal(size=(n, d))
    B = b_dir + 0.3 * rng.normal(size=(n, d))
    X = strength * a_dir + rng.normal(size=(n, d)) * 0.3
    Y = strength * b_dir + rng.normal(size=(n, d)) * 0.3
    return X, Y, A, B


def test_planted_bias_gives_large_d_and_small_p_and_none_without_it():
    rng = np.random.default_rng(0)
    X, Y, A, B = _planted(rng, 8)
    r = bias.weat_from_vectors(X, Y, A, B)
    assert r.effect_size > 1.5 and r.p_value < 0.01 and r.p_method == "exact"
    Xn, Yn, _, _ = _planted(rng, 8, strength=0.0)
    r0 = bias.weat_from_vectors(Xn, Yn, A, B)
    assert abs(r0.effect_size) < 1.0 and r0.p_value > 0.01


def test_swapping_targets_flips_d():
    rng = np.random.default_rng(1)
    X, Y, A, B = _planted(rng, 5)
    r1, r2 = bias.weat_from_vectors(X, Y, A, B), bias.weat_from_vectors(Y, X, A, B)
    assert r1.effect_size == pytest.approx(-r2.effect_size)
    assert r1.statistic == pytest.approx(-r2.statistic)


# ------------------------------------------------------------------------------------------------
# word lists, tests, templates, bad input
# ------------------------------------------------------------------------------------------------
def test_builtin_weat_lists_are_complete_and_balanced():
    tests = bias.builtin_tests()
    assert list(tests) == [f"weat{i}" for i in range(1, 11)]
    sizes = {name: (len(t.X.words), len(t.A.words)) for name, t in tests.items()}
    assert sizes["weat1"] == (25, 25) and sizes["weat3"] == (32, 25) and sizes["weat6"] == (8, 8)
    assert sizes["weat9"] == (6, 7)
    for t in tests.values():
        assert len(t.X.words) == len(t.Y.words) and t.source.startswith("Caliskan")
    assert "Shakespeare" in tests["weat8"].Y.words and "short-term" in tests["weat9"].A.words


def test_seat_sentences_use_templates_and_articles():
    s = bias.seat_sentences(["aster", "rose"], "noun")
    assert "This is an aster." in s and "This is a rose." in s and "An aster is a thing." in s
    assert len(s) == 2 * len(bias.seat_templates()["noun"])
    assert "Adam is a person." in bias.seat_sentences(["Adam"], "name")


def test_user_tests_from_yaml_and_json(tmp_path):
    y = tmp_path / "mine.yaml"
    y.write_text("X: [a, b]\nY: [c, d]\nA: {name: good, words: [e, f], kind: noun}\nB: [g, h, i]\n")
    (t,) = bias.load_tests(y)
    assert t.name == "mine" and t.A.name == "good" and t.A.kind == "noun" and t.B.words == ("g", "h", "i")
    j = tmp_path / "two.json"
    j.write_text(
        json.dumps(
            {
                "tests": {
                    "t1": {"X": ["a", "b"], "Y": ["c", "d"], "A": ["e", "f"], "B": ["g", "h"]},
                    "t2": {"X": ["a", "b"], "Y": ["c", "d"], "A": ["e", "f"], "B": ["g", "h"]},
                }
            }
        )
    )
    assert [t.name for t in bias.select_tests(j)] == ["t1", "t2"]
    assert [t.name for t in bias.select_tests("WEAT1, weat7")] == ["weat1", "weat7"]


@pytest.mark.parametrize(
    "content,match",
    [
        ("X: [a]\nY: [c]\nA: [e, f]\nB: [g, h]\n", "at least 2 words; got X=1, Y=1"),
        ("X: [a, b, z]\nY: [c, d]\nA: [e, f]\nB: [g, h]\n", "X and Y must be the same size for WEAT; got 3 and 2"),
        ("X: [a, b]\nY: [c, d]\nA: [e, f]\n", "missing set"),
        ("X: [a, b]\nY: [c, d]\nA: [e, f]\nB: [g, h]\nextra: [", "not valid YAML"),
        ("X: [a, b]\nY: [c, d]\nA: {words: [e, f], kind: verb}\nB: [g, h]\n", "kind must be one of"),
    ],
)
def test_bad_test_files_give_one_line_errors(tmp_path, content, match):
    p = tmp_path / "bad.yaml"
    p.write_text(content)
    with pytest.raises(InputError, match=match) as info:
        bias.load_tests(p)
    assert "\n" not in str(info.value)


def test_unknown_builtin_test_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown bias test 'weat11'"):
        bias.select_tests("weat11")


def test_static_vocabulary_missing_words_are_reported_and_skipped():
    rng = np.random.default_rng(0)
    vocab = ["a", "b", "c", "d", "e", "f", "g", "h", "x"]
    sv = bias.StaticVectors(vocab, rng.normal(size=(len(vocab), 8)))
    t = bias.make_test(
        "t", {"X": ["a", "b", "x"], "Y": ["c", "d", "missing1"], "A": ["e", "f", "missing2"], "B": ["g", "h"]}
    )
    r = bias.run_test(sv, t)
    assert r.skipped == {"Y": ["missing1"], "A": ["missing2"]}
    assert r.dropped == {"X": ["x"]} and r.sizes == {"X": 2, "Y": 2, "A": 2, "B": 2}
    t2 = bias.make_test("t2", {"X": ["a", "zz"], "Y": ["c", "d"], "A": ["e", "f"], "B": ["g", "h"]})
    with pytest.raises(InputError, match="at least 2 words"):
        bias.run_test(sv, t2)


def test_static_vectors_from_word2vec_text(tmp_path):
    p = tmp_path / "v.txt"
    p.write_text("3 2\nhe 1 0\nshe 0 1\nnurse 0.5 0.5\n")
    sv = bias.StaticVectors.from_file(p)
    assert sv.words == ["he", "she", "nurse"] and sv.vectors.shape == (3, 2)
    (tmp_path / "bad.txt").write_text("he 1 0\nshe 0\n")
    with pytest.raises(InputError, match="bad.txt:2"):
        bias.StaticVectors.from_file(tmp_path / "bad.txt")


# ------------------------------------------------------------------------------------------------
# subspace, DirectBias, neutralise, equalise (Bolukbasi et al.)
# ------------------------------------------------------------------------------------------------
def _gendered_space(rng, d=50, pairs=10, neutral=40, leak=0.5):
    g = np.eye(d)[0]
    base = rng.normal(size=(pairs, d))
    base[:, 0] = 0
    a = base + 1.0 * g + 0.05 * rng.normal(size=(pairs, d))
    b = base - 1.0 * g + 0.05 * rng.normal(size=(pairs, d))
    N = rng.normal(size=(neutral, d))
    N[:, 0] = leak * rng.choice([-1, 1], neutral) * np.abs(rng.normal(1, 0.2, neutral))
    return g, a, b, N


def test_subspace_recovers_the_planted_direction_and_reports_variance():
    rng = np.random.default_rng(0)
    g, a, b, _ = _gendered_space(rng)
    sub = bias.subspace_from_pairs(a, b, k=1)
    assert abs(sub.basis[0] @ g) > 0.99
    ratios = sub.explained_variance_ratio
    assert len(ratios) == 10 and ratios[0] > 0.8 and ratios == sorted(ratios, reverse=True)
    assert sum(ratios) <= 1 + 1e-9
    assert bias.subspace_from_pairs(a, b, k=3).basis.shape == (3, 50)


def test_degenerate_subspace_is_a_one_line_error():
    a = np.random.default_rng(0).normal(size=(4, 6))
    with pytest.raises(InputError, match="degenerate bias subspace"):
        bias.subspace_from_pairs(a, a.copy())
    with pytest.raises(InputError, match="span only 1 direction"):
        bias.subspace_from_pairs(np.array([[1.0, 0, 0], [1, 0, 0]]), np.array([[0.0, 1, 0], [0, 1, 0]]), k=2)
    with pytest.raises(ConfigError, match="'k' must be a positive integer"):
        bias.subspace_from_pairs(a, a + 1, k=0)


def test_direct_bias_by_hand():
    sub = bias.Subspace(np.array([[1.0, 0.0]]), [1.0], 1)
    V = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # |cos| = 1, 0, 1/sqrt(2)
    assert bias.direct_bias(V, sub, c=1) == pytest.approx((1 + 0 + 2**-0.5) / 3)
    assert bias.direct_bias(V, sub, c=2) == pytest.approx((1 + 0 + 0.5) / 3)


def test_indirect_bias_by_hand():
    sub = bias.Subspace(np.array([[1.0, 0.0, 0.0]]), [1.0], 1)
    # w = (0.6, 0.8, 0), v = (0.6, 0, 0.8): w·v = 0.36; w⊥ = (0, .8, 0), v⊥ = (0, 0, .8): cos = 0 -> β = 1
    assert bias.indirect_bias([0.6, 0.8, 0], [0.6, 0, 0.8], sub) == pytest.approx(1.0)
    # w = (0.6, 0.8, 0), v = (0.6, 0.8, 0): w⊥ ∥ v⊥, cos = 1 -> β = (1 - 1) / 1 = 0
    assert bias.indirect_bias([0.6, 0.8, 0], [0.6, 0.8, 0], sub) == pytest.approx(0.0)
    # w = (0.6, 0.8, 0), v = (0, 0.6, 0.8): w·v = 0.48; w⊥ = (0, 1, 0) direction, v⊥ = v: cos = 0.6 -> β = (0.48 - 0.6) / 0.48
    assert bias.indirect_bias([0.6, 0.8, 0], [0, 0.6, 0.8], sub) == pytest.approx((0.48 - 0.6) / 0.48)


@pytest.mark.parametrize("k", [1, 2])
def test_neutralise_zeroes_the_projection(k):
    rng = np.random.default_rng(k)
    _, a, b, N = _gendered_space(rng, leak=3.0)
    sub = bias.subspace_from_pairs(a, b, k=k)
    assert bias.direct_bias(N, sub) > 0.2
    out = bias.neutralise(N, sub)
    assert np.abs(out @ sub.basis.T).max() < 1e-6
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-12)
    assert bias.direct_bias(out, sub) < 1e-6


@pytest.mark.parametrize("k", [1, 2])
def test_equalise_makes_each_pair_equidistant_from_neutral_words(k):
    rng = np.random.default_rng(10 + k)
    _, a, b, N = _gendered_space(rng)
    sub = bias.subspace_from_pairs(a, b, k=k)
    neutral = bias.neutralise(N, sub)
    for i in range(len(a)):
        ea, eb = bias.equalise(a[i], b[i], sub)
        assert np.linalg.norm(ea) == pytest.approx(1) and np.linalg.norm(eb) == pytest.approx(1)
        np.testing.assert_allclose(
            np.linalg.norm(neutral - ea, axis=1), np.linalg.norm(neutral - eb, axis=1), atol=1e-9
        )
        np.testing.assert_allclose(neutral @ ea, neutral @ eb, atol=1e-9)
        if k == 1:  # a·g = -b·g and a - b is parallel to g
            g = sub.basis[0]
            assert ea @ g == pytest.approx(-(eb @ g))
            diff = ea - eb
            assert abs(diff @ g) == pytest.approx(np.linalg.norm(diff))


def test_hard_debias_of_static_vectors_and_weat_drops():
    rng = np.random.default_rng(3)
    d = 30
    g = np.eye(d)[0]
    words, vecs = [], []
    for m, f in [("he", "she"), ("man", "woman"), ("king", "queen")]:
        base = rng.normal(size=d) * 0.3
        for w, sign in ((m, 1), (f, -1)):
            v = base + 0.02 * rng.normal(size=d)
            v[0] = sign
            words.append(w)
            vecs.append(v)
    # careers lean male, family words lean female: a planted WEAT 6-like bias
    for w, sign in [
        ("career", 1),
        ("office", 1),
        ("salary", 1),
        ("home", -1),
        ("wedding", -1),
        ("parents", -1),
        ("doctor", 0),
        ("nurse", 0),
    ]:
        v = rng.normal(size=d) * 0.5
        v[0] = 2.0 * sign
        words.append(w)
        vecs.append(v)
    sv = bias.StaticVectors(words, np.array(vecs))
    sub, skipped = bias.bias_subspace(sv, [("he", "she"), ("man", "woman"), ("missing", "nope")])
    assert skipped == [("missing", "nope")] and abs(sub.basis[0] @ g) > 0.95
    t = bias.make_test(
        "t",
        {
            "X": ["he", "man"],
            "Y": ["she", "woman"],
            "A": ["career", "office", "salary"],
            "B": ["home", "wedding", "parents"],
        },
    )
    before = bias.run_test(sv, t)
    out, report = bias.hard_debias(
        sv,
        sub,
        gender_specific=["he", "she", "man", "woman", "king", "queen"],
        equalize_pairs=[("king", "queen"), ("absent", "gone")],
    )
    assert report.neutralised == 8 and report.equalised == 1 and ("absent", "gone") in report.skipped_pairs
    neutral = out.encode(["career", "office", "doctor", "nurse", "home"])
    assert np.abs(neutral @ sub.basis.T).max() < 1e-6
    after = bias.run_test(out, t)
    assert before.effect_size > 1.2 and abs(after.effect_size) < 0.5 * before.effect_size
    k, q = out.encode(["king", "queen"])
    np.testing.assert_allclose(np.linalg.norm(neutral - k, axis=1), np.linalg.norm(neutral - q, axis=1), atol=1e-9)


def test_gonen_goldberg_recovers_residual_bias():
    """Bias kept in directions other than g (here dimension 1 correlates with dimension 0) is still
    clustered by gender after g is removed, as Gonen & Goldberg found."""
    rng = np.random.default_rng(0)
    n, d = 200, 20
    side = rng.choice([-1.0, 1.0], n)
    V = rng.normal(size=(n, d)) * 0.3
    V[:, 0] += side  # the direction
    V[:, 1] += 0.8 * side  # an indirect trace
    sub = bias.Subspace(np.eye(d)[:1], [1.0], 1)
    after = bias.neutralise(V, sub)
    check = bias.gonen_goldberg(V, after, sub, n=50)
    assert check.alignment_before > 0.95 and check.alignment_after > 0.9
    clean = after.copy()
    clean[:, 1] = rng.normal(size=n) * 0.3
    assert bias.gonen_goldberg(V, clean, sub, n=50).alignment_after < 0.75


def test_vocabulary_words_from_wordpiece_and_bpe():
    class Tok:
        def __init__(self, vocab):
            self.vocab = vocab

        def get_vocab(self):
            return self.vocab

    wp = Tok({"[CLS]": 0, "the": 1, "##ing": 2, "nurse": 3, "he": 4, "Paris": 5, "doctor": 6})
    assert bias.vocabulary_words(wp, exclude=["doctor"]) == ["the", "nurse"]
    bpe = Tok({"Ġthe": 0, "ing": 1, "Ġnurse": 2, "Ġhe": 3})
    assert bias.vocabulary_words(bpe) == ["the", "nurse"]


def test_most_biased_ranks_by_cosine_on_the_direction_hand_computed():
    V = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.2], [2.0, -1.0], [0.5, 3.0]])
    # cosines with (1, -1)/sqrt2: 0.71, -0.71, 0, -0.82, 0.95, -0.58 -> lowest two: rows 3, 1; highest two: 0, 4
    idx, labels = bias.most_biased(V, np.array([1.0, -1.0]), 2)
    assert idx.tolist() == [3, 1, 0, 4] and labels.tolist() == [0, 0, 1, 1]


def test_gonen_goldberg_ranks_words_on_he_minus_she_not_the_pca_direction():
    """Gonen & Goldberg take the words most biased by their projection on he - she. Here gender lives
    on dimension 0 (he - she) while the subspace's first direction (dimension 1) holds noise: words
    ranked on he - she cluster by side perfectly, words ranked on the subspace do not."""
    rng = np.random.default_rng(0)
    n, d = 120, 6
    side = rng.choice([-1.0, 1.0], n)
    V = rng.normal(size=(n, d)) * 0.2
    V[:, 0] += 2 * side
    V[:, 1] += rng.normal(size=n) * 2
    V[:, 2] += 3.0
    he, she = np.eye(d)[0] + 3 * np.eye(d)[2], -np.eye(d)[0] + 3 * np.eye(d)[2]
    direction = bias.unit(he[None])[0] - bias.unit(she[None])[0]
    sub = bias.Subspace(np.eye(d)[1:2], [1.0], 1)
    check = bias.gonen_goldberg(V, V, sub, n=30, direction=direction)
    assert check.ranked_by == "he - she" and check.alignment_before == 1.0
    idx, labels = bias.most_biased(V, direction, 30)
    assert (np.sign(V[idx, 0]) == np.where(labels == 1, 1, -1)).all()  # the chosen sides are the genders
    assert bias.gonen_goldberg(V, V, sub, n=30).ranked_by == "subspace"


def test_gender_direction_is_he_minus_she():
    vec = bias.StaticVectors.from_dict({"he": [3.0, 4.0], "she": [0.0, 2.0]})
    np.testing.assert_allclose(bias.gender_direction(vec), [0.6, 0.8 - 1.0])


def test_vocabulary_words_skips_sentencepiece_continuations():
    class Tok:
        def __init__(self, vocab):
            self.vocab = vocab

        def get_vocab(self):
            return self.vocab

    sp = Tok({"<s>": 0, "▁the": 1, "ing": 2, "▁nurse": 3, "ment": 4, "▁he": 5})
    assert bias.vocabulary_words(sp) == ["the", "nurse"]  # "ing", "ment" continue a word


def test_memo_encoder_keys_on_the_weight_fingerprint():
    class Encoder:
        def __init__(self) -> None:
            self.scale, self.calls = 1.0, 0

        def fingerprint(self) -> str:
            return f"w{self.scale}"

        def encode(self, texts):
            self.calls += len(texts)
            return np.array([[self.scale * len(t), 1.0] for t in texts])

    inner = Encoder()
    memo = bias.MemoEncoder(inner)
    first = memo.encode(["ab", "abc", "ab"])
    assert inner.calls == 2 and np.array_equal(memo.encode(["abc", "ab"]), first[[1, 0]]) and inner.calls == 2
    inner.scale = 2.0  # other weights: every text misses, and the new vectors are returned
    assert np.array_equal(memo.encode(["ab"]), [[4.0, 1.0]]) and inner.calls == 3
