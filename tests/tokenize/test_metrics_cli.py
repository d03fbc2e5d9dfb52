"""`embedlab tokenizer report`: table, JSON, PNG, Turkish columns, parity, and one-line errors."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from tests.conftest import run_cli


@pytest.fixture()
def files(tmp_path):
    vocab = {"[UNK]": 0, "kitap": 1, "##lar": 2, "ev": 3, "##ler": 4, ".": 5}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "corpus.tsv").write_text("sent_id\ttext\n1\tkitaplar evler.\n2\tev q\n", encoding="utf-8")
    (tmp_path / "en.txt").write_text("kitap\nev\n", encoding="utf-8")
    lex = tmp_path / "lex"
    lex.mkdir()
    (lex / "tokenizer_benchmark_ekler_kokler.txt").write_text("kitap\nlar\nev\n", encoding="utf-8")
    for name in ("turkce_kokler_roots_filtered.txt", "tdk_kelimeler.txt"):
        (lex / name).write_text("evler\n", encoding="utf-8")
    (lex / "turkish_tokenizer_roots.tsv").write_text("root\tid\n", encoding="utf-8")
    (lex / "turkish_tokenizer_suffixes.tsv").write_text("suffix\tid\n", encoding="utf-8")
    (lex / "turkce_kokler_ekler.json").write_text("{}", encoding="utf-8")
    return tmp_path


def test_report_table_json_png(monkeypatch, capsys, files):
    tj = files / "tokenizer.json"
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "tokenizer",
        "report",
        tj,
        str(files),
        "--corpus",
        files / "corpus.tsv",
        "--corpus2",
        files / "en.txt",
        "--lang",
        "tr",
        "--lexicon",
        files / "lex",
        "--json",
        files / "r.json",
        "--png",
        files / "r.png",
    )
    assert code == 0, err
    assert "fertility" in out and "%TR types" in out and "parity" in out
    data = json.loads((files / "r.json").read_text())
    rows = data["tokenizers"]
    assert len(rows) == 2 and data["n_texts"] == 2
    # kitap ##lar | ev ##ler | . | ev | [UNK]  -> 7 tokens, 5 words; en.txt: 2 tokens
    assert rows[0]["n_tokens"] == 7 and rows[0]["fertility"] == pytest.approx(7 / 5)
    assert rows[0]["parity"] == pytest.approx(7 / 2)
    # pieces: kitap lar ev ler . ev [UNK] -> valid kitap, lar, ev (x2) of 7 tokens, 3 of 6 types
    assert rows[0]["turkish"]["tr_tokens"] == pytest.approx(4 / 7)
    assert rows[0]["turkish"]["tr_types"] == pytest.approx(3 / 6)
    assert (files / "r.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args, message",
    [
        (["no-such-tokenizer"], "unknown tokenizer"),
        (["{tj}", "--lang", "de"], "--lang must be one of tr"),
        (["{tj}", "--corpus2", "{dir}/missing.txt"], "missing.txt: not found"),
        (["{tj}", "--corpus2", "{dir}/en.txt", "--limit", "0"], "greater than or equal to 1"),
    ],
)
def test_bad_input_is_one_line(monkeypatch, capsys, files, args, message):
    args = [a.format(tj=files / "tokenizer.json", dir=files) for a in args]
    code, out, err = run_cli(monkeypatch, capsys, "tokenizer", "report", *args, "--corpus", files / "corpus.tsv")
    assert code != 0 and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_empty_corpus_and_parity_mismatch(monkeypatch, capsys, files):
    (files / "empty.txt").write_text("\n\n", encoding="utf-8")
    code, _, err = run_cli(
        monkeypatch, capsys, "tokenizer", "report", files / "tokenizer.json", "--corpus", files / "empty.txt"
    )
    assert code != 0 and "empty" in err and "Traceback" not in err
    (files / "three.txt").write_text("a\nb\nc\n", encoding="utf-8")
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "tokenizer",
        "report",
        files / "tokenizer.json",
        "--corpus",
        files / "corpus.tsv",
        "--corpus2",
        files / "three.txt",
    )
    assert code != 0 and "line-aligned" in err
