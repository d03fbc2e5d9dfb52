"""embedlab.corpus: the one reader of texts and documents, checked against hand-written expectations
(per-row id and title rules, gzip, Parquet, TSV, stdin, and one-line errors)."""

from __future__ import annotations

import gzip
import json

import pytest

from embedlab.corpus import iter_documents, join_title, parse_jsonl, read_documents, read_texts
from embedlab.errors import ConfigError, InputError

MIXED = [  # the first row has no title and uses "id"; later rows mix _id, titles, number ids, U+2028
    {"id": "a", "text": "first doc"},
    {"_id": "b", "title": "Title B", "text": "second doc"},
    {"id": 7, "title": "", "text": "third doc"},
    {"_id": "d", "title": "T\u2028D", "text": "line\u2028sep doc", "metadata": {}},
    {"id": "e", "_id": "ignored", "title": None, "text": "fifth doc"},
]
MIXED_IDS = ["a", "b", "7", "d", "e"]
MIXED_TEXTS = ["first doc", "Title B second doc", "third doc", "T\u2028D line\u2028sep doc", "fifth doc"]


def _jsonl(rows) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def test_join_title_rule():
    assert join_title("Title", "text") == "Title text"
    assert join_title("", "text") == "text"
    assert join_title(None, " text ") == " text "  # no title: the text as is
    assert join_title("T ", "") == "T"


def test_texts_plain_jsonl_stdin(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\ntwo\n\n")
    assert read_texts(tmp_path / "a.txt") == ["one", "", "two"]  # inner blank lines are texts
    assert read_texts(tmp_path / "a.txt", drop_blank=True) == ["one", "two"]
    (tmp_path / "b.jsonl").write_text('{"text": "x"}\n\n{"text": "y", "id": 1, "title": "T"}\n')
    assert read_texts(tmp_path / "b.jsonl") == ["x", "T y"]
    assert read_texts("-", stdin_text="p\nq\n") == ["p", "q"]
    assert read_texts("-", stdin_text='{"text": "j"}\n') == ["j"]  # a first "{" makes it JSONL
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress(_jsonl(MIXED).encode()))
    assert read_texts(tmp_path / "c.jsonl.gz") == MIXED_TEXTS
    assert read_texts(tmp_path / "c.jsonl.gz", limit=2) == MIXED_TEXTS[:2]
    (tmp_path / "w.txt").write_text("a\u2028b\r\nc\n")  # plain text splits on \n only; \r\n is one break
    assert read_texts(tmp_path / "w.txt") == ["a\u2028b", "c"]


def test_texts_tsv(tmp_path):
    (tmp_path / "s.tsv").write_text("sent_id\ttext\n1\tkitaplar evler.\n2\tev\n")
    assert read_texts(tmp_path / "s.tsv") == ["kitaplar evler.", "ev"]
    (tmp_path / "n.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(InputError, match="'text' column"):
        read_texts(tmp_path / "n.tsv")
    (tmp_path / "h.tsv").write_text("id\ttext\n")
    with pytest.raises(InputError, match="header but no rows"):
        read_texts(tmp_path / "h.tsv")


def test_texts_errors_are_one_line(tmp_path):
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(InputError, match="empty"):
        read_texts(tmp_path / "empty.txt")
    (tmp_path / "blank.jsonl").write_text('{"text": " "}\n{"title": "", "text": ""}\n')
    with pytest.raises(InputError, match="no text"):
        read_texts(tmp_path / "blank.jsonl", drop_blank=True)
    (tmp_path / "latin.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="UTF-8"):
        read_texts(tmp_path / "latin.txt")
    with pytest.raises(InputError, match="not found"):
        read_texts(tmp_path / "missing.txt")
    (tmp_path / "bad.jsonl").write_text('{"txt": "x"}\n')
    with pytest.raises(InputError, match="'text' field"):
        read_texts(tmp_path / "bad.jsonl")
    (tmp_path / "bad2.jsonl").write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(InputError, match="bad2.jsonl:2"):
        read_texts(tmp_path / "bad2.jsonl")
    (tmp_path / "trunc.txt.gz").write_bytes(gzip.compress(b"abc\n" * 100)[:20])
    with pytest.raises(InputError, match="corrupt gzip"):
        read_texts(tmp_path / "trunc.txt.gz")
    with pytest.raises(ConfigError, match="limit"):
        read_texts(tmp_path / "blank.jsonl", limit=0)


def test_documents_per_row_rules_jsonl_and_gzip(tmp_path):
    plain = tmp_path / "mixed.jsonl"
    plain.write_text(_jsonl(MIXED), encoding="utf-8")
    assert read_documents(plain) == (MIXED_IDS, MIXED_TEXTS)
    gz = tmp_path / "corpus.jsonl.gz"
    gz.write_bytes(gzip.compress(_jsonl(MIXED).encode()))
    assert read_documents(gz) == (MIXED_IDS, MIXED_TEXTS)
    batches = list(iter_documents(plain, batch_rows=2))
    assert [len(b[0]) for b in batches] == [2, 2, 1]
    assert [i for b in batches for i in b[0]] == MIXED_IDS
    kept = list(parse_jsonl(_jsonl(MIXED).encode(), "x", keep={"b", "e"}))
    assert kept == [(["b", "e"], ["Title B second doc", "fifth doc"])]


def test_documents_parquet_same_rules(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": r.get("id"), "_id": r.get("_id"), "title": r.get("title"), "text": r["text"]} for r in MIXED]
    rows = [{**r, "id": None if r["id"] is None else str(r["id"])} for r in rows]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet", row_group_size=2)
    assert read_documents(tmp_path / "c.parquet") == (MIXED_IDS, MIXED_TEXTS)
    pq.write_table(pa.table({"_id": ["x", "y"], "text": ["t1", "t2"]}), tmp_path / "beir.parquet")
    assert read_documents(tmp_path / "beir.parquet") == (["x", "y"], ["t1", "t2"])
    pq.write_table(pa.table({"key": ["x"], "text": ["t"]}), tmp_path / "noid.parquet")
    with pytest.raises(InputError, match="needs an 'id'"):
        read_documents(tmp_path / "noid.parquet")
    pq.write_table(pa.table({"id": ["x", "y"], "text": ["t", None]}), tmp_path / "null.parquet")
    with pytest.raises(InputError, match="row 2"):
        read_documents(tmp_path / "null.parquet")


def test_documents_errors_name_file_and_line(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text('{"id": "a", "text": "x"}\n{"text": "no id"}\n')
    with pytest.raises(InputError, match=r"c.jsonl:2: a corpus row needs an 'id'"):
        read_documents(f)
    f.write_text('{"id": "a", "text": 3}\n')
    with pytest.raises(InputError, match="c.jsonl:1"):
        read_documents(f)
    f.write_text('{"id": "", "text": "x"}\n')
    with pytest.raises(InputError, match="non-empty"):
        read_documents(f)
    f.write_text('["a", "b"]\n')
    with pytest.raises(InputError, match="JSON object"):
        read_documents(f)
    f.write_text("\n\n")
    with pytest.raises(InputError, match="empty"):
        read_documents(f)
    with pytest.raises(InputError, match="not found"):
        read_documents(tmp_path / "missing.jsonl")
