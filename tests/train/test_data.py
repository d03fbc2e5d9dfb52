"""Training data: adapters over the shared data, instruction templates, bad input."""

from __future__ import annotations

import json

import pytest

from embedlab.errors import EmbedlabError, InputError
from embedlab.settings import data_dir
from embedlab.train.data import (
    ADAPTERS,
    DataSpec,
    DataStats,
    check_template,
    format_document,
    format_query,
    load_dataset,
)

needs_data = pytest.mark.skipif(data_dir() is None, reason="shared data directory not found")


@needs_data
@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_adapters_read_the_shared_data(name):
    stats = DataStats()
    examples = load_dataset(name, stats=stats)
    assert len(examples) > 50 and all(e.query.strip() and e.positive.strip() for e in examples)
    assert all(e.instruction == ADAPTERS[name].instruction for e in examples)
    assert stats.examples[name] == len(examples)
    if name in ("snli-triplets", "trecqa-train"):
        assert sum(len(e.negatives) >= 1 for e in examples) > 0.9 * len(examples)
    if name == "stsb-pairs":  # both directions of every pair scored >= 4
        pairs = {(e.query, e.positive) for e in examples}
        assert all((b, a) in pairs for a, b in pairs)


@needs_data
def test_adapter_counts_match_the_sources():
    assert len(load_dataset("snli-triplets")) == 5883  # SOURCE.md: 5,883 triplets
    assert len(load_dataset("scifact-train")) == 916  # 919 qrels/train.tsv rows, 3 of them repeated
    trec = load_dataset("trecqa-train")
    assert (
        len({e.query for e in trec}) == 83 and len(trec) == 348
    )  # one per correct answer; 10 of 93 questions have none


def test_files_instructions_duplicates_and_errors(tmp_path):
    f = tmp_path / "d.jsonl"
    rows = [
        {"query": "q1", "positive": "p1", "negatives": ["n1"]},
        {"query": "q1", "positive": "p1", "negatives": ["n1"]},
        {"query": "q1", "positive": "p2"},
        {"query": "q3", "positive": "p3", "negative": "n3"},
    ]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stats = DataStats()
    ex = load_dataset(DataSpec(source=str(f), instruction="Find it", in_batch_negatives=False), stats=stats)
    assert len(ex) == 3 and stats.duplicates_dropped[str(f)] == 1 and stats.duplicate_queries[str(f)] == 1
    assert ex[2].negatives == ("n3",) and not ex[0].in_batch
    template = "Instruct: {task}\nQuery: {text}"
    assert format_query(ex[0], template) == ("Instruct: Find it\nQuery: ", "q1")  # (prefix, text)
    assert format_document("p1", ex[0], template) == ("", "p1")  # documents get no instruction by default
    assert format_query(load_dataset(str(f))[0], template) == ("", "q1")  # files have no default instruction
    assert format_query(ex[0], "{task}: {text} (end)") == ("Find it: ", "q1 (end)")  # a suffix stays with the text
    for bad, msg in [
        ({"query": "q", "positive": ""}, "empty or missing positive"),
        ({"query": "q"}, "missing positive"),
        ({"query": "", "positive": "p"}, "missing query"),
        ({"query": "q", "positive": "p", "negatives": [""]}, "negatives"),
    ]:
        f.write_text(json.dumps(bad) + "\n")
        with pytest.raises(InputError, match=msg):
            load_dataset(str(f))
    f.write_text("{not json\n")
    with pytest.raises(InputError, match=r"d.jsonl:1: not valid JSON"):
        load_dataset(str(f))
    with pytest.raises(InputError, match="adapter"):
        load_dataset("no-such-dataset")
    tsv = tmp_path / "d.tsv"
    tsv.write_text("a\tb\tc\td\nx\ty\n")
    assert [e.negatives for e in load_dataset(str(tsv))] == [("c", "d"), ()]
    with pytest.raises(EmbedlabError, match="text"):
        check_template("Instruct: {task}")
    with pytest.raises(EmbedlabError, match="valid template"):
        check_template("{oops} {text}")
