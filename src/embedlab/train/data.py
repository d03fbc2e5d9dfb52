"""Training examples: (query, positive, [negatives…]) from JSONL/TSV files or named adapters over the
shared data, each dataset with its own instruction (E5 / NV-Embed style).

The query side gets ``template.format(task=instruction, text=query)`` (default
``"Instruct: {task}\\nQuery: {text}"``); documents get none unless ``instruct_documents`` (NV-Embed adds
the instruction to both sides of symmetric STS data).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field

from embedlab.errors import EmbedlabError, InputError
from embedlab.readers import read_jsonl, read_tsv

log = logging.getLogger(__name__)
DEFAULT_TEMPLATE = "Instruct: {task}\nQuery: {text}"


@dataclass(frozen=True)
class Example:
    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    dataset: str = ""
    instruction: str = ""
    instruct_documents: bool = False
    in_batch: bool = True


@dataclass
class DataStats:
    """What loading did to the data (reported in the training log)."""

    examples: dict[str, int] = field(default_factory=dict)
    duplicates_dropped: dict[str, int] = field(default_factory=dict)
    duplicate_queries: dict[str, int] = field(default_factory=dict)


class DataSpec(BaseModel):
    """One training dataset of a stage."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        description="a .jsonl/.tsv file or an adapter: "
        + ", ".join(["snli-triplets", "scifact-train", "stsb-pairs", "twitter-url-train", "trecqa-train"])
    )
    instruction: str | None = None  # None: the adapter's default task definition ('' for files); '': no instruction
    instruct_documents: bool | None = None  # also instruct positives/negatives (symmetric tasks)
    in_batch_negatives: bool | None = None  # None: the stage's setting
    max_examples: int | None = Field(default=None, gt=0)  # a seeded random sample


# ---------------------------------------------------------------------------------------------
# Adapters over ../shared/data
# ---------------------------------------------------------------------------------------------
Rows = list[tuple[str, str, list[str]]]


def _root(folder: str) -> Path:
    from embedlab.settings import data_dir

    root = data_dir()
    if root is None or not (Path(root) / folder).is_dir():
        raise EmbedlabError(
            f"this adapter reads {folder}/ in the shared data directory; set EMBEDLAB_DATA (now: {root})"
        )
    return Path(root) / folder


def _snli() -> Rows:
    rows = read_tsv(_root("snli") / "triplets_from_validation_and_test.tsv", ("anchor", "positive", "negative"))
    return [(r["anchor"].strip(), r["positive"].strip(), [r["negative"].strip()]) for r in rows]


def _scifact() -> Rows:
    root = _root("scifact")
    queries = {str(r["_id"]): r["text"] for r in read_jsonl(root / "queries.jsonl")}
    corpus = {
        str(d["_id"]): (d.get("title", "") + " " + d.get("text", "")).strip()
        for d in read_jsonl(root / "corpus.jsonl.gz")
    }
    out = []
    for r in read_tsv(root / "qrels" / "train.tsv", ("query-id", "corpus-id", "score")):
        if int(r["score"]) > 0 and r["query-id"] in queries and r["corpus-id"] in corpus:
            out.append((queries[r["query-id"]], corpus[r["corpus-id"]], []))
    return out


def _stsb() -> Rows:
    rows = read_tsv(_root("stsbenchmark") / "train.tsv", ("sentence1", "sentence2", "score"))
    good = [(r["sentence1"], r["sentence2"]) for r in rows if float(r["score"]) >= 4.0]
    return [(a, b, []) for a, b in good] + [(b, a, []) for a, b in good]  # NV-Embed: both directions


def _twitter_url() -> Rows:
    rows = read_tsv(
        _root("twitter-url-corpus") / "train_tokenized_lowercased.tsv.gz", ("sentence1", "sentence2", "label")
    )
    pos: dict[str, list[str]] = {}
    neg: dict[str, list[str]] = {}
    for r in rows:
        (pos if r["label"] == "1" else neg).setdefault(r["sentence1"], []).append(r["sentence2"])
    return [(q, p, neg.get(q, [])) for q, ps in pos.items() for p in ps]  # negatives: same tweet, label 0


def _trecqa() -> Rows:
    out = []
    for r in read_jsonl(_root("trecqa-wang") / "train.jsonl"):
        negatives = [n for n in r.get("negative", []) if n]
        for i, p in enumerate(r.get("positive", [])):
            out.append(
                (r["query"], p, negatives[i:] + negatives[:i])
            )  # rotate so each pair leads with another negative
    return out


@dataclass(frozen=True)
class Adapter:
    load: Callable[[], Rows]
    instruction: str
    instruct_documents: bool = False
    note: str = ""


ADAPTERS: dict[str, Adapter] = {
    "snli-triplets": Adapter(
        _snli,
        "Given a premise, retrieve a hypothesis that is entailed by the premise",
        note="SNLI validation+test triplets (contradiction = hard negative); don't evaluate on SNLI after",
    ),
    "scifact-train": Adapter(
        _scifact,
        "Given a scientific claim, retrieve documents that support or refute the claim",
        note="SciFact train queries -> relevant abstracts (no negatives: run embedlab mine)",
    ),
    "stsb-pairs": Adapter(
        _stsb,
        "Retrieve semantically similar text.",
        instruct_documents=True,
        note="STS-B train pairs scored >= 4, both directions",
    ),
    "twitter-url-train": Adapter(
        _twitter_url,
        "Retrieve tweets that are semantically similar to the given tweet",
        note="Twitter URL train paraphrases; negatives = same tweet's non-paraphrases. "
        "MTEB's TwitterURLCorpus evaluates on train+test: don't evaluate on it after",
    ),
    "trecqa-train": Adapter(
        _trecqa,
        "Given a question, retrieve sentences that answer the question",
        note="TrecQA train: each (question, answer) with the question's wrong answers as negatives",
    ),
}


def _read_file(path: Path) -> Rows:
    if not path.is_file():
        known = ", ".join(ADAPTERS)
        raise InputError(f"training data not found: {path} (a .jsonl/.tsv file, or an adapter: {known})")
    rows: Rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{n}: expected an object with query/positive[/negatives]")
            q, p = obj.get("query"), obj.get("positive")
            negs = obj.get("negatives", obj.get("negative", []))
            negs = [negs] if isinstance(negs, str) else (negs or [])
        else:
            cells = line.split("\t")
            q, p, negs = cells[0], (cells[1] if len(cells) > 1 else None), [c for c in cells[2:] if c]
        if not isinstance(q, str) or not q.strip():
            raise InputError(f"{path}:{n}: empty or missing query")
        if not isinstance(p, str) or not p.strip():
            raise InputError(f"{path}:{n}: empty or missing positive")
        if not isinstance(negs, list) or not all(isinstance(x, str) and x.strip() for x in negs):
            raise InputError(f"{path}:{n}: negatives must be a list of non-empty strings")
        rows.append((q, p, list(negs)))
    return rows


def load_dataset(
    spec: DataSpec | str, *, in_batch_default: bool = True, seed: int = 0, stats: DataStats | None = None
) -> list[Example]:
    """Examples of one dataset: read, instruction attached, exact duplicates dropped (counted)."""
    spec = DataSpec(source=spec) if isinstance(spec, str) else spec
    adapter = ADAPTERS.get(spec.source)
    if adapter is not None:
        rows, instruction, instruct_docs = adapter.load(), adapter.instruction, adapter.instruct_documents
    else:
        rows, instruction, instruct_docs = _read_file(Path(spec.source)), "", False
    rows = [(q, p, n) for q, p, n in rows if q.strip() and p.strip()]
    if spec.instruction is not None:
        instruction = spec.instruction
    if spec.instruct_documents is not None:
        instruct_docs = spec.instruct_documents
    in_batch = in_batch_default if spec.in_batch_negatives is None else spec.in_batch_negatives
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    examples, dropped = [], 0
    for q, p, negs in rows:
        key = (q, p, tuple(negs))
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        examples.append(Example(q, p, tuple(negs), spec.source, instruction, instruct_docs, in_batch))
    if spec.max_examples is not None and len(examples) > spec.max_examples:
        keep = sorted(random.Random(seed).sample(range(len(examples)), spec.max_examples))
        examples = [examples[i] for i in keep]
    if not examples:
        raise InputError(f"training data {spec.source}: no usable (query, positive) example")
    queries = [e.query for e in examples]
    repeated = len(queries) - len(set(queries))
    if stats is not None:
        stats.examples[spec.source] = len(examples)
        stats.duplicates_dropped[spec.source] = dropped
        stats.duplicate_queries[spec.source] = repeated
    if dropped:
        log.warning("%s: dropped %d exact duplicate examples", spec.source, dropped)
    return examples


def load_datasets(
    specs: list[DataSpec], *, in_batch_default: bool = True, seed: int = 0, stats: DataStats | None = None
) -> list[Example]:
    examples = [e for s in specs for e in load_dataset(s, in_batch_default=in_batch_default, seed=seed, stats=stats)]
    if len(examples) < 2:
        raise InputError("need at least two training examples")
    return examples


Prompted = tuple[str, str]  # (instruction prefix, text): the model sees prefix + text


def split_template(template: str, task: str) -> tuple[str, str]:
    """The instruction prefix and suffix around ``{text}`` in ``template``, with the task filled in."""
    head, _, tail = template.partition("{text}")
    return head.format(task=task), tail.format(task=task)


def _apply(template: str, task: str, text: str) -> Prompted:
    prefix, suffix = split_template(template, task)
    return prefix, text + suffix


def format_query(example: Example, template: str) -> Prompted:
    """(prefix, text) of the query: the dataset's instruction in ``template`` (no prefix without one)."""
    return _apply(template, example.instruction, example.query) if example.instruction else ("", example.query)


def format_document(text: str, example: Example, template: str) -> Prompted:
    if example.instruction and example.instruct_documents:
        return _apply(template, example.instruction, text)
    return "", text


def check_template(template: str) -> str:
    try:
        template.format(task="t", text="x")
    except (KeyError, IndexError, ValueError) as exc:
        raise EmbedlabError(
            f"instruction_template {template!r} is not a valid template ({exc}); use {{task}} and {{text}}"
        ) from None
    if "{text}" not in template:
        raise EmbedlabError(f"instruction_template {template!r} must contain {{text}}")
    return template


def load_pairs(source: str) -> list[tuple[str, str]]:
    """(query, positive) pairs of a file or adapter, without instructions (for mining)."""
    return [(e.query, e.positive) for e in load_dataset(DataSpec(source=source, instruction=""))]
