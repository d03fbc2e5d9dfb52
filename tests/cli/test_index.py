"""The CLI: `embedlab index ...` and `search`. Clear one-line errors with the error's exit code, never a traceback."""

from __future__ import annotations

import json

from ..conftest import run_cli

run = run_cli


def _table_rows(text: str) -> dict[str, str]:
    """{first cell: second cell} of a two-column rich table (continuation lines of wrapped cells joined)."""
    rows: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃|").split("│")]
        if len(cells) != 2:
            continue
        if cells[0]:
            key = cells[0]
            rows[key] = cells[1]
        elif key is not None:
            rows[key] += cells[1]
    return rows


def test_index_build_search_add_delete(tiny_bert, tmp_path, monkeypatch, capsys):
    words = [
        "the cat sat on the mat",
        "a dog ran fast",
        "the sky is blue",
        "i read a book",
        "the red car",
        "a big house",
        "the moon and the sun",
        "we write code",
        "the bird is small",
        "my tree is green",
    ]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(words[:8])))
    ix = tmp_path / "ix"
    code, _, err = run(
        monkeypatch, capsys, "index", "build", "-m", tiny_bert, "--corpus", corpus, "--codec", "int8", "--out", ix
    )
    assert code == 0, err
    code, out, err = run(monkeypatch, capsys, "search", ix, "the cat sat on the mat", "-k", "3", "--json")
    assert code == 0, err
    hit = json.loads(out)["hits"][0]
    assert hit["id"] == "d0" and hit["text"] == words[0]
    more = tmp_path / "more.jsonl"
    more.write_text("".join(json.dumps({"id": f"d{i}", "text": words[i]}) + "\n" for i in (8, 9)))
    assert run(monkeypatch, capsys, "index", "add", ix, "--corpus", more)[0] == 0
    (tmp_path / "del.txt").write_text("d0\n")
    assert run(monkeypatch, capsys, "index", "delete", ix, "--ids", tmp_path / "del.txt")[0] == 0
    code, out, _ = run(monkeypatch, capsys, "index", "info", ix)
    rows = _table_rows(out)
    assert code == 0 and rows["count"] == "9" and rows["codec"] == "int8" and rows["dim"] == "32"
    assert rows["bytes_per_vector"] == "32" and rows["has_texts"] == "True"
    code, out, _ = run(monkeypatch, capsys, "search", ix, "the cat sat on the mat", "-k", "9", "--json")
    assert "d0" not in [h["id"] for h in json.loads(out)["hits"]]
    code, _, err = run(monkeypatch, capsys, "search", ix, "cat", "-k", "50")
    assert code == 1 and "larger than the number of documents in the index" in err
    code, _, err = run(
        monkeypatch,
        capsys,
        "index",
        "build",
        "-m",
        tiny_bert,
        "--corpus",
        corpus,
        "--codec",
        "int4",
        "--out",
        tmp_path / "x",
    )
    assert code == 2 and "allowed: float32" in err  # a codec that does not parse: a configuration error
    code, _, err = run(monkeypatch, capsys, "index", "add", ix, "--corpus", more)
    assert code == 1 and "duplicate ids" in err
