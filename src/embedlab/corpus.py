"""Corpus files: the one reader of texts and documents, with the one title-join and id rule.

Two kinds of input:

- **texts** (:func:`read_texts`): one text per line; JSONL with a ``text`` field (and an optional
  ``title``); a TSV whose header has a ``text`` column; any of them gzipped (``.gz``); ``-`` for stdin.
- **documents** (:func:`read_documents`, :func:`iter_documents`): ``(id, text)`` pairs from JSONL with
  ``id`` and ``text``, BEIR corpora (``_id``, ``title``, ``text``; ``.gz`` allowed), or Parquet with the
  same columns.

The rules, applied to every row on its own (a file may mix ``id`` and ``_id`` rows, or rows with and
without a title; no rule is decided from a first row or a schema):

- the id is the row's ``id``, or its ``_id`` when it has no ``id`` (a missing or null value), as a string;
- the text is :func:`join_title` of the row's ``title`` and ``text``: ``title + " " + text`` when the
  title is non-empty, else the text as is.

Both backends of ``embed-corpus`` read through these functions: the local one with
:func:`iter_documents`, the Ray workers with :func:`parse_jsonl` (on the file's bytes) and
:func:`documents_from_arrow` (on Parquet batches), so both embed the same text for every id.

JSONL lines are split on ``\\n`` only (a JSON string may hold U+2028 and other characters that
:meth:`str.splitlines` would split on). This module is a leaf: stdlib, pyarrow (lazily) and
:mod:`embedlab.errors`.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from embedlab.errors import EmptyInput, InputError
from embedlab.validation import positive_int

__all__ = [
    "DOCUMENT_COLUMNS",
    "document_of",
    "documents_from_arrow",
    "gunzip",
    "iter_documents",
    "join_title",
    "parquet_columns",
    "parse_jsonl",
    "read_bytes",
    "read_documents",
    "read_texts",
]

DOCUMENT_COLUMNS = ("id", "_id", "title", "text")  # the columns a document row may use
BATCH_ROWS = 10_000
GZIP_MAGIC = b"\x1f\x8b"


def join_title(title: Any, text: str) -> str:
    """THE title-join rule: ``title + " " + text`` (stripped) when the title is non-empty, else ``text``."""
    return (str(title) + " " + text).strip() if title else text


def document_of(row: Mapping[str, Any], where: str) -> tuple[str, str]:
    """One row (a JSON object, or an Arrow row as a dict) -> ``(id, text)``; ``where`` names it in errors."""
    doc_id = row.get("id")
    if doc_id is None:
        doc_id = row.get("_id")
    text = row.get("text")
    if doc_id is None or not isinstance(text, str):
        raise InputError(f"{where}: a corpus row needs an 'id' (or '_id') and a string 'text'")
    if isinstance(doc_id, (dict, list, bool)) or str(doc_id) == "":
        raise InputError(f"{where}: the id must be a non-empty string or a number; got {doc_id!r}")
    title = row.get("title")
    if title is not None and not isinstance(title, (str, int, float)):
        raise InputError(f"{where}: 'title' must be a string; got {type(title).__name__}")
    return str(doc_id), join_title(title, text)


# -- bytes and lines ---------------------------------------------------------------------------------
def _stem(path: Path) -> str:
    """The file name without a ``.gz`` suffix (``corpus.jsonl.gz`` -> ``corpus.jsonl``)."""
    return path.name[:-3] if path.suffix == ".gz" else path.name


def gunzip(raw: bytes, name: str = "<data>") -> bytes:
    """``raw`` decompressed when it is gzip data (by its magic bytes, whatever the file is called), else as is."""
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read {name}: corrupt gzip data ({exc})") from None


def read_bytes(path: str | os.PathLike) -> bytes:
    """A file's bytes, gunzipped when they are gzip data; one-line errors for missing or unreadable files."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file not found: {p}")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror or exc}") from None
    return gunzip(raw, str(p))


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not valid UTF-8 (byte {exc.start}): re-encode it as UTF-8") from None


def _lines(text: str) -> list[str]:
    """Lines split on ``\\n`` (a trailing ``\\r`` dropped), trailing blank lines removed."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _json_row(line: str, where: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg})") from None


# -- texts -------------------------------------------------------------------------------------------
def read_texts(
    path: str | os.PathLike | None, *, stdin_text: str | None = None, limit: int | None = None, drop_blank: bool = False
) -> list[str]:
    """Texts of a file: one per line, JSONL objects with a ``text`` field (title joined by :func:`join_title`),
    or a ``.tsv`` with a header that has a ``text`` column; ``.gz`` for any of them. ``-`` reads ``stdin_text``.

    A file is JSONL when its name ends in ``.jsonl`` (before ``.gz``) or its first line starts with ``{``.
    Inner blank lines of a plain file are texts (a JSONL file's are skipped); ``drop_blank`` strips every text and drops the blank ones.
    ``limit`` keeps the first N texts. Raises InputError for a missing, empty or non-UTF-8 file, a JSONL
    line without ``text`` and a TSV without a ``text`` column."""
    if limit is not None:
        positive_int("corpus: 'limit'", limit)
    if str(path) == "-":
        raw, name, stem = stdin_text if stdin_text is not None else "", "<stdin>", "<stdin>"
    else:
        p = Path(path)  # type: ignore[arg-type]
        raw, name, stem = _decode(read_bytes(p), str(p)), str(p), _stem(p)
    lines = _lines(raw)
    if not lines:
        raise EmptyInput(
            f"{name} has no text (it is empty or blank): give one text per line, or JSONL with a 'text' field"
        )
    if stem.endswith(".jsonl") or lines[0].lstrip().startswith("{"):
        texts = []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            obj = _json_row(line, f"{name}:{i}")
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise InputError(f"{name}:{i}: a JSONL line needs a string 'text' field")
            texts.append(join_title(obj.get("title"), obj["text"]))
            if limit is not None and not drop_blank and len(texts) >= limit:
                break
    elif stem.endswith(".tsv"):
        header = lines[0].split("\t")
        if "text" not in header:
            raise InputError(f"{name}: a .tsv corpus needs a header line with a 'text' column; got {header}")
        col = header.index("text")
        rows = [line.split("\t") for line in lines[1:]]
        bad = next((n for n, r in enumerate(rows, 2) if len(r) <= col), None)
        if bad is not None:
            raise InputError(f"{name}:{bad}: fewer than {col + 1} tab-separated columns")
        texts = [r[col] for r in rows]
        if not texts:
            raise EmptyInput(f"{name} has a header but no rows")
    else:
        texts = lines
    if drop_blank:
        texts = [t.strip() for t in texts if t.strip()]
        if not texts:
            raise EmptyInput(f"{name} has no text (it is empty or blank lines only)")
    return texts[:limit] if limit is not None else texts


# -- documents ---------------------------------------------------------------------------------------
def parse_jsonl(
    raw: bytes | str, name: str, *, keep: set[str] | None = None, batch_rows: int = BATCH_ROWS
) -> Iterator[tuple[list[str], list[str]]]:
    """``(ids, texts)`` batches of a JSONL document file's content (already gunzipped); blank lines are
    skipped, and errors name ``name:line``. ``keep`` keeps only those ids."""
    text = _decode(raw, name) if isinstance(raw, bytes) else raw
    ids: list[str] = []
    texts: list[str] = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{name}:{n}"
        obj = _json_row(line, where)
        if not isinstance(obj, dict):
            raise InputError(f"{where}: a corpus line must be a JSON object")
        doc_id, doc = document_of(obj, where)
        if keep is not None and doc_id not in keep:
            continue
        ids.append(doc_id)
        texts.append(doc)
        if len(ids) >= batch_rows:
            yield ids, texts
            ids, texts = [], []
    if ids:
        yield ids, texts


def documents_from_arrow(
    batch: Any, name: str, *, offset: int = 0, keep: set[str] | None = None
) -> tuple[list[str], list[str]]:
    """``(ids, texts)`` of an Arrow table or record batch (Parquet), row by row with :func:`document_of`.
    ``offset`` is the batch's first row in the file (for error messages)."""
    names = [c for c in DOCUMENT_COLUMNS if c in batch.schema.names]
    if "text" not in names or not ({"id", "_id"} & set(names)):
        raise InputError(
            f"{name}: a Parquet corpus needs an 'id' (or '_id') and a 'text' column; it has "
            f"{', '.join(batch.schema.names)}"
        )
    columns = {c: batch.column(c).to_pylist() for c in names}
    ids: list[str] = []
    texts: list[str] = []
    for r in range(batch.num_rows):
        doc_id, doc = document_of({c: columns[c][r] for c in names}, f"{name}: row {offset + r + 1}")
        if keep is None or doc_id in keep:
            ids.append(doc_id)
            texts.append(doc)
    return ids, texts


def parquet_columns(path: str | os.PathLike) -> list[str]:
    """The document columns a Parquet file has (to read only those)."""
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise InputError(f"cannot read corpus {path}: {exc}") from None
    return [c for c in DOCUMENT_COLUMNS if c in names]


def iter_documents(path: str | os.PathLike, *, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[list[str], list[str]]]:
    """``(ids, texts)`` batches of a document file (JSONL or BEIR, ``.gz`` allowed, or ``.parquet``), in file order."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"corpus file not found: {p}")
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        columns = parquet_columns(p)
        offset = 0
        try:
            for batch in pq.ParquetFile(p).iter_batches(batch_size=batch_rows, columns=columns):
                yield documents_from_arrow(batch, str(p), offset=offset)
                offset += batch.num_rows
        except InputError:
            raise
        except Exception as exc:  # pyarrow raises several types for unreadable files
            raise InputError(f"cannot read corpus {p}: {exc}") from None
        return
    yield from parse_jsonl(read_bytes(p), str(p), batch_rows=batch_rows)


def read_documents(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """``(ids, texts)`` of a whole document file (see :func:`iter_documents`); an empty file is an error."""
    ids: list[str] = []
    texts: list[str] = []
    for i, t in iter_documents(path):
        ids += i
        texts += t
    if not ids:
        raise EmptyInput(f"corpus {path} is empty")
    return ids, texts
