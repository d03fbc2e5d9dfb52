"""Choosing new vocabulary entries: counts, piece counts and association scores computed by hand."""

from __future__ import annotations

import math

import pytest

from embedlab.vocab.selection import forms_from_surface, npmi, select_bpe, select_tokens_saved, select_words
from tests.vocab._tokenizers import BPE_CORPUS, make_bpe, make_wordpiece


# -- selection ------------------------------------------------------------------------------------
def test_select_words_ranks_by_tokens_saved_counted_by_hand():
    tok = make_wordpiece()
    corpus = ["abc abc abc de de de de cat", "Cat xy xy"]
    # abc: 3 x (3 - 1) = 6; de: 4 x (2 - 1) = 4; xy: count 2 < min_count 3; cat: one piece (in vocab)
    got = select_words(tok, corpus, 10, min_count=3)
    assert [(c.form, c.count, c.pieces, c.saved) for c in got] == [("abc", 3, 3, 6), ("de", 4, 2, 4)]
    assert [c.form for c in select_words(tok, corpus, 1, min_count=3)] == ["abc"]
    assert [c.form for c in select_words(tok, corpus, 10, min_count=2)] == ["abc", "de", "xy"]


def test_multiword_concepts_need_content_words_and_association():
    tok = make_wordpiece()
    corpus = ["amino acid binds", "amino acid folds", "the amino acid", "of the cell of the cell of the"]
    got = {c.form: c for c in select_words(tok, corpus, 50, min_count=3, multiword=True)}
    assert got["amino acid"].multiword and got["amino acid"].count == 3
    assert got["amino acid"].pieces == 5 + 4  # a-m-i-n-o + a-c-i-d
    assert not any(c.multiword and "the" in c.form.split() for c in got.values())  # stopwords never form concepts


def test_select_bpe_returns_trained_merges_missing_from_the_vocabulary():
    tok = make_bpe(262)  # few merges: the domain words are still split
    cands = select_bpe(tok, BPE_CORPUS, 5, vocab_size=400)
    vocab = tok.get_vocab()
    assert cands and all(c.form not in vocab and c.pieces >= 2 for c in cands)
    assert "Ġmitochondria" in {c.form for c in select_bpe(tok, BPE_CORPUS, 200, vocab_size=400)}


def test_forms_from_surface_word_start_and_multiword():
    wp, bpe = make_wordpiece(), make_bpe()
    assert [(c.form, c.multiword) for c in forms_from_surface(wp, ["Abc", "amino acid"])] == [
        ("abc", False),
        ("amino acid", True),
    ]
    assert [c.form for c in forms_from_surface(bpe, ["mitochondria"])] == ["Ġmitochondria"]


def test_npmi_uses_one_denominator_hand_computed():
    # p_ab = 2/20, p_a = 4/20, p_b = 5/20: log(0.1 / 0.05) / -log(0.1) = log 2 / log 10
    assert npmi(2, 4, 5, 20) == pytest.approx(math.log(2) / math.log(10))
    assert npmi(3, 3, 3, 17) == pytest.approx(1.0)  # the words never occur apart: perfect association
    assert npmi(3, 3, 3, 3) == 1.0  # the pair is the whole corpus
    with pytest.raises(ValueError):
        npmi(5, 4, 5, 20)  # a pair cannot be more frequent than its words


def test_multiword_npmi_counts_pairs_over_word_positions():
    tok = make_wordpiece()
    # "gamma delta" 3 times; gamma and delta 30 times each, mostly next to a stopword (no content pair);
    # one other content pair; 118 words in all. One denominator, by hand:
    # log((3/118) / (30/118)^2) / -log(3/118) = log(354/900) / log(118/3) = -0.254: no concept.
    # The old mix (the pair over the 4 content pairs, the words over 118 words) gave 8.5 (> 1!): a concept.
    corpus = ["gamma delta"] * 3 + [" ".join(["gamma the"] * 27), " ".join(["delta the"] * 27), "omega sigma"]
    expected = math.log((3 / 118) / (30 / 118) ** 2) / -math.log(3 / 118)
    assert expected == pytest.approx(-0.254, abs=1e-3)
    got = {c.form: c for c in select_words(tok, corpus, 50, min_count=3, multiword=True)}
    assert "gamma delta" not in got and got["gamma"].count == 30
    # strongly associated: "amino acid" 3 times, its words never apart (npmi 1)
    corpus = ["amino acid binds", "amino acid folds", "the amino acid", "of the cell of the cell of the"]
    assert {c.form for c in select_words(tok, corpus, 50, min_count=3, multiword=True) if c.multiword} == {"amino acid"}


def test_select_mode_is_named_for_what_it_does_and_the_old_name_still_works():
    from embedlab.errors import ConfigError
    from embedlab.vocab.extend import choose_candidates

    tok = make_wordpiece()
    corpus = ["abc abc abc de de de de cat"]
    assert select_words is select_tokens_saved
    new = choose_candidates(tok, corpus=corpus, add=5, tokens=None, select="tokens-saved")
    with pytest.warns(FutureWarning, match="tokens-saved"):
        old = choose_candidates(tok, corpus=corpus, add=5, tokens=None, select="words")
    assert [c.form for c in new] == [c.form for c in old] == ["abc", "de"]
    with pytest.raises(ConfigError, match="tokens-saved, bpe"):
        choose_candidates(tok, corpus=corpus, add=5, tokens=None, select="concepts")
