"""Tokenizer extension on hand-built tokenizers: new entries used when encoding ordinary text (WordPiece
and byte-level BPE), bad input as one-line errors."""

from __future__ import annotations

import json

import pytest

from embedlab.errors import ConfigError, InputError
from embedlab.vocab.extend import extend_tokenizer
from embedlab.vocab.selection import Candidate, forms_from_surface, read_corpus, read_token_file
from tests.vocab._tokenizers import make_bpe, make_wordpiece


# -- the tokenizers use the new entries ------------------------------------------------------------
def test_wordpiece_extension_is_used_on_ordinary_text():
    tok = make_wordpiece()
    ext = extend_tokenizer(tok, [Candidate("abc", 3, 3), Candidate("##xy", 1, 2), Candidate("cat", 1, 1)])
    new = ext.tokenizer
    assert ext.skipped == ["cat"] and [t.form for t in ext.added] == ["abc", "##xy"]
    assert [t.id for t in ext.added] == [len(tok), len(tok) + 1] and len(new) == len(tok) + 2
    assert new.tokenize("ABC abcd the qxy") == ["abc", "abc", "##d", "the", "q", "##xy"]
    assert ext.added[1].surface == "xy" and ext.added[1].continuation
    assert new("abc")["input_ids"] == [2, len(tok), 3]  # [CLS] abc [SEP]


def test_bpe_extension_adds_merge_chains_and_keeps_other_words():
    tok = make_bpe(262)
    before = {w: tok.tokenize(w) for w in (" protein", " divides", "energy")}
    assert len(tok.tokenize(" mitochondria")) >= 3
    ext = extend_tokenizer(tok, forms_from_surface(tok, ["mitochondria", "ribosomes"]))
    new = ext.tokenizer
    assert new.tokenize("the mitochondria and ribosomes") == (
        tok.tokenize("the") + ["Ġmitochondria"] + tok.tokenize(" and") + ["Ġribosomes"]
    )
    assert new.decode(new("the mitochondria")["input_ids"]) == "the mitochondria"
    assert {t.form for t in ext.added if t.role == "token"} == {"Ġmitochondria", "Ġribosomes"}
    inter = [t for t in ext.added if t.role == "intermediate"]
    assert inter and all(t.form in new.get_vocab() for t in inter)  # chain steps are real entries, counted
    assert not ext.unreachable
    assert {w: new.tokenize(w) for w in before} == before  # appended merges never change other words
    old_merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    new_merges = json.loads(new.backend_tokenizer.to_str())["model"]["merges"]
    assert new_merges[: len(old_merges)] == old_merges  # lowest priority: appended after the old ones


def test_competing_bpe_chains_are_completed():
    tok = make_bpe(262)
    words = ["mitochondria", "mitochondrial", "chondria", "ribosomes", "ribosome", "somes"]
    ext = extend_tokenizer(tok, forms_from_surface(tok, words))
    new = ext.tokenizer
    assert not ext.unreachable
    for w in words:
        assert new.tokenize(" " + w) == ["Ġ" + w]


def test_multiword_added_tokens_match_in_text():
    wp, bpe = make_wordpiece(), make_bpe()
    ext = extend_tokenizer(wp, [Candidate("amino acid", 3, 9, multiword=True)])
    assert ext.tokenizer.tokenize("Amino Acid, amino acids") == [
        "amino acid",
        ",",
        "a",
        "##m",
        "##i",
        "##n",
        "##o",
        "a",
        "##c",
        "##i",
        "##d",
        "##s",
    ]
    ext = extend_tokenizer(bpe, forms_from_surface(bpe, ["the cell"]))
    assert ext.added[0].role == "multiword" and ext.added[0].surface == " the cell"
    ids = ext.tokenizer("divides the cell")["input_ids"]
    assert ids[-1] == ext.added[0].id and ids[:-1] == bpe("divides")["input_ids"]  # the space is inside the match


def test_budget_counts_every_new_id():
    tok = make_bpe(262)
    ext = extend_tokenizer(tok, forms_from_surface(tok, ["mitochondria", "ribosomes", "protein", "divides"]), max_new=3)
    assert 3 <= len(ext.added) <= 3 + 12  # stops adding targets once 3 ids are used; a started chain completes
    assert ext.summary()["added"] == len(ext.added) == len(ext.tokenizer) - len(tok)


# -- bad input ---------------------------------------------------------------------------------------
def test_bad_input_is_one_line(tmp_path):
    from embedlab.vocab.extend import choose_candidates
    from embedlab.vocab.selection import backend

    class Slow:
        is_fast = False

    with pytest.raises(ConfigError, match="no fast"):
        backend(Slow())
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(InputError, match="no text"):
        read_corpus(empty)
    with pytest.raises(InputError, match="not found"):
        read_corpus(tmp_path / "missing.txt")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(InputError, match="bad.jsonl:2"):
        read_corpus(bad)
    with pytest.raises(InputError, match="lists no token"):
        read_token_file(empty)
    tok = make_wordpiece()
    with pytest.raises(ConfigError, match=r"^--add must be a positive integer; got 0$"):
        choose_candidates(tok, corpus=["abc"], add=0, tokens=None)
    with pytest.raises(InputError, match="empty"):
        choose_candidates(tok, corpus=[], add=5, tokens=None)
    ext = extend_tokenizer(tok, forms_from_surface(tok, ["cat", "the", "abc"]))
    assert ext.skipped == ["cat", "the"] and ext.summary()["skipped_present"] == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"add": 0}, "--add must be a positive integer; got 0"),
        ({"add": -3}, "--add must be a positive integer; got -3"),
        ({"add": 5, "min_count": 0}, "--min-count must be a positive integer; got 0"),
    ],
)
def test_extend_model_checks_counts_before_loading(kwargs, message, tmp_path):
    from embedlab.vocab.extend import extend_model

    with pytest.raises(ConfigError) as err:  # the model name is never resolved
        extend_model("no-such-model", None, tmp_path / "out", method="mean", **kwargs)
    assert str(err.value) == message


# -- the packaged tokenizers (realism: 30k WordPiece entries, 49k byte-level merges) -------------------
@pytest.mark.slow
@pytest.mark.parametrize("alias", ["minilm-l6", "smollm2-135m"])
def test_packaged_tokenizers_use_new_domain_words(alias):
    from transformers import AutoTokenizer

    from embedlab.models.backbone import resolve_source

    tok = AutoTokenizer.from_pretrained(resolve_source(alias)[0])
    words = ["glycosylation", "phosphorylates", "immunohistochemistry", "cardiomyocytes", "tumorigenesis"]
    sentence = "In mice, cardiomyocytes show glycosylation and tumorigenesis (p < 0.05)."
    control = "The results were not significant, and the mice were healthy."
    ext = extend_tokenizer(tok, forms_from_surface(tok, words))
    new = ext.tokenizer
    assert not ext.unreachable and ext.summary()["token"] == len(words)
    for w in words:
        assert len(new(" " + w, add_special_tokens=False)["input_ids"]) == 1, w
    assert len(new(sentence)["input_ids"]) < len(tok(sentence)["input_ids"])
    assert new(control)["input_ids"] == tok(control)["input_ids"]  # other text is cut exactly as before
    assert new.decode(new(sentence, add_special_tokens=False)["input_ids"]) == tok.decode(
        tok(sentence, add_special_tokens=False)["input_ids"]
    )
