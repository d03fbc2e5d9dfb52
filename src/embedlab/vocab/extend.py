"""Vocabulary expansion: add domain tokens to a fast tokenizer and new rows to the model's embeddings.

``transformers``' ``add_tokens`` makes *added tokens*: strings matched whole before the WordPiece/BPE
model runs, with no merges (methods notes 3h). Real expansion, as in the papers, edits the model part of
``tokenizer.json`` so that ordinary text is cut with the new entries:

* **WordPiece** (BERT): new entries go into the vocabulary; greedy longest-match-first then takes a
  whole new word (word-start form ``cell``) or continuation (``##ase``) wherever it fits.
* **byte-level BPE** (GPT-2, Llama-3, SmolLM2): a vocabulary entry is only produced by a merge, so each
  new word-start form ``Ġword`` gets a chain of merges from the old tokenizer's segmentation, appended
  after the old merges (lowest priority: old behaviour is unchanged on every other word). A chain's
  intermediate results (``Ġmitoch`` on the way to ``Ġmitochondria``) become entries too and are counted.
  Merges of different new words can compete for the same pair, so segmentations are re-checked and
  chains completed until every new word encodes as one token (or reported unreachable).
* **multiword concepts** (``amino acid``) cannot be vocabulary entries, since the pre-tokenizer splits on
  spaces; they become added tokens (``single_word``; ``lstrip`` for byte-level BPE so the leading space is
  part of the match; ``normalized`` for WordPiece so lower-casing applies).

The embedding table is resized to the new tokenizer (``resize_token_embeddings(mean_resizing=False)``;
tied input/output embeddings stay tied, an untied output matrix gets its own rows), and the new rows are
set by one of six initialisations (:mod:`embedlab.vocab.inits`). :func:`extend_embedder` does
all of it on an :class:`~embedlab.models.Embedder` and saves a normal embedlab model directory
(sentence-transformers layout) plus ``vocab_extension.json`` (what was added, how, from what).
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from embedlab.errors import ConfigError, InputError
from embedlab.io import write_json
from embedlab.progress import ShowProgress, progress_bar
from embedlab.validation import positive_int
from embedlab.vocab.inits import INIT_METHODS, PAPERS, InitContext, initialize
from embedlab.vocab.selection import (
    DEPRECATED_MODES,
    SELECT_MODES,
    Candidate,
    backend,
    forms_from_surface,
    model_kind,
    read_corpus,
    read_token_file,
    select_bpe,
    select_tokens_saved,
)

log = logging.getLogger(__name__)

EXTENSION_FILE = "vocab_extension.json"
MAX_FIX_ROUNDS = 8


@dataclass
class NewToken:
    """One new id: ``form`` as stored (vocabulary entry or added-token content), ``surface`` its text,
    ``role`` ``token`` (asked for), ``intermediate`` (a BPE merge step) or ``multiword`` (added token)."""

    form: str
    id: int
    surface: str
    role: str = "token"
    continuation: bool = False
    count: int = 0
    old_pieces: int = 0


@dataclass
class Extension:
    """The result of :func:`extend_tokenizer`."""

    tokenizer: Any
    added: list[NewToken]
    skipped: list[str]  # asked for but already in the vocabulary
    unreachable: list[str] = field(default_factory=list)  # BPE forms no merge chain could produce
    n_old: int = 0

    @property
    def new_ids(self) -> list[int]:
        return [t.id for t in self.added]

    def summary(self) -> dict[str, Any]:
        roles = {r: sum(t.role == r for t in self.added) for r in ("token", "intermediate", "multiword")}
        return {
            "old_size": self.n_old,
            "new_size": len(self.tokenizer),
            "added": len(self.added),
            **roles,
            "skipped_present": len(self.skipped),
            "unreachable": len(self.unreachable),
        }


# ----------------------------------------------------------------------------------------------
def _rebuild(tokenizer: Any, spec: dict[str, Any]) -> Any:
    """A transformers tokenizer like ``tokenizer`` (class, special tokens, chat template) over ``spec``."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for extra in ("vocab.txt", "vocab.json", "merges.txt"):  # slow-tokenizer files would disagree with spec
            (Path(tmp) / extra).unlink(missing_ok=True)
        (Path(tmp) / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        new = AutoTokenizer.from_pretrained(tmp)
    if new.pad_token is None and tokenizer.pad_token is not None:
        new.pad_token = tokenizer.pad_token
    return new


def surface_of(tokenizer: Any, form: str, kind: str) -> tuple[str, bool]:
    """(text, is_continuation) of a vocabulary form: ``Ġcell`` -> `` cell``; ``##ase`` -> ``ase``, True."""
    if kind == "wordpiece":
        prefix = json.loads(backend(tokenizer).to_str())["model"].get("continuing_subword_prefix", "##")
        if form.startswith(prefix) and len(form) > len(prefix):
            return form[len(prefix) :], True
        return form, False
    return backend(tokenizer).decoder.decode([form]) if backend(tokenizer).decoder else form, False


def extend_tokenizer(
    tokenizer: Any,
    candidates: Sequence[Candidate],
    *,
    max_new: int | None = None,
    show_progress: ShowProgress = False,
) -> Extension:
    """Add ``candidates`` (in order) until ``max_new`` new ids; see the module docstring for how.
    ``show_progress`` (:mod:`embedlab.progress`): a bar over the tokens added."""
    from tokenizers import AddedToken, Tokenizer

    kind = model_kind(tokenizer)
    spec = json.loads(backend(tokenizer).to_str())
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    present = set(tokenizer.get_vocab())
    added_contents = {a["content"] for a in spec.get("added_tokens", [])}
    n_old = len(tokenizer)
    next_id = max([n_old, max(vocab.values(), default=-1) + 1] + [a["id"] + 1 for a in spec.get("added_tokens", [])])
    start = next_id
    limit = max_new if max_new is not None else 10**9
    added: list[NewToken] = []
    skipped: list[str] = []
    multi: list[Candidate] = []
    merges: list[Any] = model.get("merges", []) if kind == "bpe" else []
    string_merges = bool(merges) and isinstance(merges[0], str)
    merge_set = {tuple(m.split(" ", 1)) if string_merges else tuple(m) for m in merges}
    current = backend(tokenizer)
    targets: list[str] = []
    bars: list[Any] = []  # the bar starts with the first token added: no empty bar before an error

    def tick() -> None:
        if not bars:
            bars.append(progress_bar(show_progress, total=min(len(candidates), limit), desc="add tokens", unit="tok"))
        bars[0].update(1)

    def new_entry(form: str, role: str, cand: Candidate | None = None) -> None:
        nonlocal next_id
        vocab[form] = next_id
        surface, cont = surface_of(tokenizer, form, kind)
        added.append(
            NewToken(form, next_id, surface, role, cont, cand.count if cand else 0, cand.pieces if cand else 0)
        )
        next_id += 1

    def chain(form: str, seg: list[str]) -> None:
        """Merges turning ``seg`` into ``form``: pairs whose result already exists first, else left to right."""
        pieces = list(seg)
        while len(pieces) > 1:
            j = next((i for i in range(len(pieces) - 1) if pieces[i] + pieces[i + 1] in vocab), 0)
            a, b = pieces[j], pieces[j + 1]
            if a + b not in vocab:
                new_entry(a + b, "intermediate")
            if (a, b) not in merge_set:
                merge_set.add((a, b))
                merges.append(f"{a} {b}" if string_merges else [a, b])
            pieces[j : j + 2] = [a + b]

    for cand in candidates:
        if next_id - start + len(multi) >= limit:
            break
        if cand.multiword:
            if cand.form in present or cand.form in added_contents:
                skipped.append(cand.form)
            else:
                multi.append(cand)  # its id is assigned by add_tokens, after every vocabulary entry
                added_contents.add(cand.form)
            continue
        if cand.form in present or cand.form in vocab:
            skipped.append(cand.form)
            continue
        if kind == "bpe":
            seg = [t.value for t in current.model.tokenize(cand.form)]
            new_entry(cand.form, "token", cand)
            chain(cand.form, seg)
            targets.append(cand.form)
        else:
            new_entry(cand.form, "token", cand)
        tick()
    unreachable: list[str] = []
    if kind == "bpe" and targets:
        model["merges"] = merges
        for _ in range(MAX_FIX_ROUNDS):
            current = Tokenizer.from_str(json.dumps(spec))
            pending = [(t, [p.value for p in current.model.tokenize(t)]) for t in targets]
            pending = [(t, seg) for t, seg in pending if seg != [t]]
            if not pending:
                break
            for t, seg in pending:
                chain(t, seg)
            model["merges"] = merges
        else:
            current = Tokenizer.from_str(json.dumps(spec))
            unreachable = [t for t in targets if [p.value for p in current.model.tokenize(t)] != [t]]
    new_tok = _rebuild(tokenizer, spec)
    if multi:
        tokens = [
            AddedToken(c.form, single_word=True, lstrip=kind == "bpe", normalized=kind == "wordpiece") for c in multi
        ]
        first = len(new_tok)
        new_tok.add_tokens(tokens)
        for i, c in enumerate(multi):
            tid = new_tok.convert_tokens_to_ids(c.form)
            if tid != first + i:
                raise ConfigError(
                    f"added token {c.form!r} got id {tid}, expected {first + i}: the tokenizer's ids are not contiguous"
                )
            surface = (" " + c.form) if kind == "bpe" else c.form
            added.append(NewToken(c.form, tid, surface, "multiword", False, c.count, c.pieces))
            tick()
    for bar in bars:
        bar.close()
    if len(new_tok) != n_old + len(added):
        raise ConfigError(f"the extended tokenizer has {len(new_tok)} entries, expected {n_old} + {len(added)}")
    return Extension(new_tok, added, skipped, unreachable, n_old)


# ----------------------------------------------------------------------------------------------
def resize_and_init(
    model: Any,
    ext: Extension,
    method: str,
    *,
    corpus: Sequence[str] = (),
    seed: int = 0,
    options: dict[str, Any] | None = None,
    old_tokenizer: Any = None,
    show_progress: ShowProgress = False,
) -> dict[str, Any]:
    """Resize ``model``'s embeddings to the extended tokenizer and write the new rows with ``method``.

    Works on a base model (``AutoModel``, input embeddings only) or a model with an LM/MLM head: tied
    output embeddings stay the same tensor; untied ones get rows from the same method. Returns what the
    method recorded (sizes, losses, weights)."""
    if method not in INIT_METHODS:
        raise ConfigError(f"unknown init '{method}'; choose one of {', '.join(INIT_METHODS)}")
    emb_in = model.get_input_embeddings()
    rows_before = emb_in.weight.shape[0]
    n_real = min(ext.n_old, rows_before)
    old_in = emb_in.weight.detach()[:n_real].clone()
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    tied = out_emb is not None and out_emb.weight.data_ptr() == emb_in.weight.data_ptr()
    old_out = out_emb.weight.detach()[:n_real].clone() if out_emb is not None and not tied else None
    ctx = InitContext(
        old_tokenizer=old_tokenizer,
        surfaces=[t.surface for t in ext.added],
        continuation=[t.continuation for t in ext.added],
        new_ids=ext.new_ids,
        model=model,
        corpus=corpus,
        new_tokenizer=ext.tokenizer,
        seed=seed,
        options=dict(options or {}),
        show_progress=show_progress,
    )
    new_in, new_out = initialize(method, old_in, ctx, old_out)
    size = max(rows_before, len(ext.tokenizer))
    if size != rows_before:
        model.resize_token_embeddings(size, pad_to_multiple_of=None, mean_resizing=False)
    ids = torch.as_tensor(ext.new_ids, dtype=torch.long)
    with torch.no_grad():
        w = model.get_input_embeddings().weight
        w[ids] = new_in.to(w.dtype)
        if new_out is not None:
            wo = model.get_output_embeddings().weight
            wo[ids] = new_out.to(wo.dtype)
    if tied and model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        raise ConfigError("resizing untied the input and output embeddings")  # guarded: transformers keeps them tied
    info = {k: v for k, v in ctx.info.items() if k not in ("weights", "support_ids")}
    info["tied_output"] = bool(tied)
    info["_ctx"] = ctx
    return info


# ----------------------------------------------------------------------------------------------
def choose_candidates(
    tokenizer: Any,
    *,
    corpus: Sequence[str] | None,
    add: int | None,
    tokens: Sequence[str] | None,
    select: str = "tokens-saved",
    multiword: bool = False,
    min_count: int = 3,
) -> list[Candidate]:
    """The candidates to add: from a token list, or ``add`` chosen from the corpus by ``select``."""
    if tokens is not None:
        return forms_from_surface(tokenizer, tokens)
    if add is None:
        raise ConfigError("give --add N (tokens chosen from the corpus) or --tokens FILE")
    positive_int("--add", add)
    if not corpus:
        raise InputError("the corpus is empty: no text to choose tokens from")
    select = check_select(select)
    if select == "tokens-saved":
        return select_tokens_saved(
            tokenizer, corpus, add * 2, min_count=min_count, multiword=multiword
        )  # 2x: BPE chains
    return select_bpe(tokenizer, corpus, add * 2)


def check_select(select: str) -> str:
    """The selection mode's current name (a deprecated name is accepted with a warning)."""
    if select in DEPRECATED_MODES:
        new = DEPRECATED_MODES[select]
        warnings.warn(
            f"--select {select} is deprecated; it is now called --select {new} (domain words by tokens saved)",
            FutureWarning,
            stacklevel=3,
        )
        return new
    if select not in SELECT_MODES:
        raise ConfigError(f"unknown selection '{select}'; choose one of {', '.join(SELECT_MODES)}")
    return select


def extend_embedder(
    embedder: Any,
    *,
    corpus: Sequence[str],
    method: str,
    add: int | None = None,
    tokens: Sequence[str] | None = None,
    select: str = "tokens-saved",
    multiword: bool = False,
    min_count: int = 3,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    show_progress: ShowProgress = False,
    candidates: Sequence[Candidate] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """A new :class:`Embedder` whose backbone has the extended tokenizer and embeddings (the input
    embedder is not changed: its model is deep-copied), and a report of what was done. ``show_progress``
    (:mod:`embedlab.progress`): bars over the tokens added and the init's training steps (cw2v)."""
    import copy

    from embedlab.models.backbone import Backbone

    if method not in INIT_METHODS:
        raise ConfigError(f"unknown init '{method}'; choose one of {', '.join(INIT_METHODS)}")
    if tokens is None and candidates is None:
        select = check_select(select)
    source = embedder.source
    if not isinstance(source, Backbone):
        raise ConfigError(f"vocabulary extension needs a transformer backbone; this model's source is {source.kind}")
    old_tok = source.tokenizer
    backend(old_tok)  # one-line error for a slow tokenizer, before any work
    if not corpus and method in ("wechsel", "cw2v"):
        raise InputError(f"the {method} init needs a non-empty corpus")
    if candidates is None:
        candidates = choose_candidates(
            old_tok, corpus=corpus, add=add, tokens=tokens, select=select, multiword=multiword, min_count=min_count
        )
    budget = add if tokens is None else None
    ext = extend_tokenizer(old_tok, candidates, max_new=budget, show_progress=show_progress)
    if not ext.added:
        raise InputError(
            f"nothing to add: all {len(ext.skipped)} requested tokens are already in the vocabulary"
            if ext.skipped
            else "no token to add: the corpus has no word the tokenizer splits"
        )
    model = copy.deepcopy(source.model)
    info = resize_and_init(
        model,
        ext,
        method,
        corpus=corpus,
        seed=seed,
        options=options,
        old_tokenizer=old_tok,
        show_progress=show_progress,
    )
    info.pop("_ctx", None)
    new_source = Backbone(
        model,
        ext.tokenizer,
        source=f"{source.source} + vocab {method}",
        max_length=source.max_length,
        append_eos=source.append_eos,
        padding_side=source.padding_side,
    )
    report = {
        "method": method,
        "paper": PAPERS[method],
        "select": "tokens file" if tokens is not None else select,
        "seed": seed,
        **ext.summary(),
        "init": _jsonable(info),
        "skipped_forms": ext.skipped[:100],
        "unreachable_forms": ext.unreachable[:100],
        "tokens": [asdict(t) for t in ext.added],
    }
    return embedder.with_source(new_source), report


def save_extended(embedder: Any, report: dict[str, Any], out: str | Path) -> Path:
    """Save the extended embedder (sentence-transformers layout) and its ``vocab_extension.json``."""
    out = Path(out)
    embedder.save(out)
    write_json(out / EXTENSION_FILE, report)
    return out


def extend_model(
    model: str,
    corpus_file: str | Path | None,
    out: str | Path,
    *,
    method: str,
    add: int | None = None,
    tokens_file: str | Path | None = None,
    select: str = "tokens-saved",
    multiword: bool = False,
    min_count: int = 3,
    seed: int = 0,
    pooling: str | None = None,
    options: dict[str, Any] | None = None,
    corpus_limit: int | None = None,
    overwrite: bool = False,
    show_progress: ShowProgress = False,
) -> dict[str, Any]:
    """``embedlab vocab extend``: load, extend, save; returns the report."""
    from embedlab.models import Embedder

    if (add is None) == (tokens_file is None):
        raise ConfigError("give exactly one of --add N or --tokens FILE")
    if add is not None:
        positive_int("--add", add)
    positive_int("--min-count", min_count)
    if method not in INIT_METHODS:
        raise ConfigError(f"unknown init '{method}'; choose one of {', '.join(INIT_METHODS)}")
    if tokens_file is None:
        select = check_select(select)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; pass --overwrite to replace it")
    tokens = read_token_file(tokens_file) if tokens_file is not None else None
    corpus = read_corpus(corpus_file, limit=corpus_limit) if corpus_file is not None else []
    embedder = Embedder.from_pretrained(model, pooling=pooling)
    extended, report = extend_embedder(
        embedder,
        corpus=corpus,
        method=method,
        add=add,
        tokens=tokens,
        select=select,
        multiword=multiword,
        min_count=min_count,
        seed=seed,
        options=options,
        show_progress=show_progress,
    )
    report["base_model"] = str(model)
    report["corpus"] = str(corpus_file) if corpus_file is not None else None
    from embedlab.io import allow_overwrite

    with allow_overwrite(overwrite):  # replaces only what embedlab wrote in ``out``; the user's other files stay
        save_extended(extended, report, out)
    return report


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.tolist() if x.numel() < 64 else f"tensor{tuple(x.shape)}"
    if hasattr(x, "item"):
        return x.item()
    return x


__all__ = [
    "EXTENSION_FILE",
    "Extension",
    "NewToken",
    "check_select",
    "choose_candidates",
    "extend_embedder",
    "extend_model",
    "extend_tokenizer",
    "resize_and_init",
    "save_extended",
    "surface_of",
]
