"""%TR / %Pure on a tiny hand lexicon (both variants), through a tokenizer, and the lexicon loader."""

from __future__ import annotations

from collections import Counter

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from embedlab.errors import ConfigError
from embedlab.tokenize import TurkishLexicon, tokenizer_metrics, turkish_scores
from embedlab.tokenize.turkish import tr_lower

LEX = TurkishLexicon.from_words(valid=["evler", "kitaplar"], pure=["kitap", "lar", "ımız", "ev"])


def test_methods_note_example_types_and_tokens():
    # methods-2.md: tokens kitap, lar, ımız, xq, kita with kitap/lar/ımız in the lexicon -> 3/5 and 3/5
    s = turkish_scores(Counter(["kitap", "lar", "ımız", "xq", "kita"]), LEX)
    assert (s.tr_types, s.pure_types, s.tr_tokens, s.pure_tokens) == (3 / 5, 3 / 5, 3 / 5, 3 / 5)


def test_token_and_type_variants_differ_by_hand():
    # kitap x3, lar x2, evler x1 (valid, not pure), xq x4, "" x2 (bare markers, left out)
    pieces = Counter({"kitap": 3, "lar": 2, "evler": 1, "xq": 4, "": 2})
    s = turkish_scores(pieces, LEX)
    assert (s.n_tokens, s.n_types, s.n_empty) == (10, 4, 2)
    assert s.tr_tokens == pytest.approx(6 / 10) and s.pure_tokens == pytest.approx(5 / 10)
    assert s.tr_types == pytest.approx(3 / 4) and s.pure_types == pytest.approx(2 / 4)
    assert (s.n_tr_tokens, s.n_pure_tokens, s.n_tr_types, s.n_pure_types) == (6, 5, 3, 2)


def test_turkish_casing_rules():
    assert tr_lower("IŞIK") == "ışık" and tr_lower("İzmir") == "izmir"
    lex = TurkishLexicon.from_words(valid=["ışık"], pure=["izmir"])
    assert lex.is_valid("IŞIK") and lex.is_pure("İZMİR") and not lex.is_pure("ışık")
    assert lex.is_valid("izmir")  # pure implies valid


def test_through_a_wordpiece_tokenizer_continuation_marker_removed():
    vocab = {"[UNK]": 0, "kitap": 1, "##lar": 2, "ev": 3, "##ler": 4, "##ımız": 5, "q": 6}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    # kitap ##lar ##ımız | ev ##ler | q  -> pieces kitap lar ımız ev ler q
    m = tokenizer_metrics(tok, ["kitaplarımız evler q"], lexicon=LEX)
    s = m.turkish
    assert s.n_tokens == 6 and s.n_types == 6
    # valid: kitap lar ımız ev (ler and q are in neither set)
    assert s.tr_tokens == pytest.approx(4 / 6) and s.pure_types == pytest.approx(4 / 6)
    assert m.to_dict()["turkish"]["tr_types"] == pytest.approx(4 / 6)


def test_lexicon_loader_reads_each_list(tmp_path):
    d = tmp_path / "morphemes"
    d.mkdir()
    (d / "tokenizer_benchmark_ekler_kokler.txt").write_text("kitap\nKitap\nlar\n", encoding="utf-8")
    (d / "turkce_kokler_roots_filtered.txt").write_text("ev\n", encoding="utf-8")
    (d / "turkish_tokenizer_roots.tsv").write_text(
        "root\tid\n<uppercase>\t0\n \t2\n\\n\t3\nspecial_7\t7\ngöz\t100\n", encoding="utf-8"
    )
    (d / "turkish_tokenizer_suffixes.tsv").write_text("suffix\tid\nler\t20000\n", encoding="utf-8")
    (d / "turkce_kokler_ekler.json").write_text(
        '{"case_suffixes": ["dan", "den"], "conjunctions": ["ve"]}', encoding="utf-8"
    )
    (d / "tdk_kelimeler.txt").write_text("evler\n", encoding="utf-8")
    lex = TurkishLexicon.load(d)
    assert lex.pure == {"kitap", "lar", "ev", "göz", "ler", "dan", "den", "ve"}
    assert lex.valid == lex.pure | {"evler"}
    (d / "tdk_kelimeler.txt").unlink()
    with pytest.raises(ConfigError, match="lacks tdk_kelimeler.txt"):
        TurkishLexicon.load(d)


def test_missing_shared_data_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDLAB_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError) as info:
        TurkishLexicon.load()
    assert "\n" not in str(info.value)


def test_shared_lexicon_when_present():
    from embedlab.settings import data_dir

    base = data_dir()
    if base is None or not (base / "turkish" / "morphemes").is_dir():
        pytest.skip("../shared/data/turkish is not here")
    lex = TurkishLexicon.load()
    assert lex.is_pure("kitap") and lex.is_pure("lar") and lex.is_valid("Kitap")
    assert not lex.is_valid("xq") and lex.pure <= lex.valid
