"""Choosing new vocabulary entries from a domain corpus.

Two selection modes, both in the tokenizer's own alphabet (after its normalizer and pre-tokenizer, so a
BERT word is lower-cased and a byte-level BPE word carries its ``Ġ`` space marker):

* ``tokens-saved`` (domain words by tokens saved): the corpus's frequent words that the tokenizer splits
  into two or more pieces, ranked by the tokens they would save, ``count × (pieces − 1)``; with
  ``multiword`` also frequent two-word concepts (both words content words of ≥ 3 letters, normalised PMI
  ≥ 0.3), which become added tokens because a pre-tokenizer never lets a vocabulary entry span a space.
  A frequency heuristic *motivated by* K-Tokeniser (Hasan et al. 2024), not its method: no semantic
  types of domain concepts and no context-dependent choice among segmentations. ``words``, the old
  name, is still accepted (deprecated).
* ``bpe``: the merges of a tokenizer trained on the corpus with HF ``tokenizers`` (a byte-level BPE for
  a BPE tokenizer, a WordPiece for a WordPiece tokenizer, with the old normalizer and pre-tokenizer)
  whose results are missing from the vocabulary, in the trained order (most frequent first).

A token list from a file (``--tokens``) is read by :func:`read_token_file`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from embedlab.errors import ConfigError, InputError

SELECT_MODES = ("tokens-saved", "bpe")
DEPRECATED_MODES = {"words": "tokens-saved"}  # old name -> new name
STOPWORDS = frozenset(
    "the a an and or of to in on at by for with from into onto as is are was were be been being this that these those "
    "it its we our they their he she his her you your not no but than then there here which who whom whose what when "
    "where why how all any both each few more most other some such only own same so too very can will just should "
    "may might must also between after before during under over about against among within without via per".split()
)


@dataclass(frozen=True)
class Candidate:
    """A proposed entry: ``form`` in the tokenizer's alphabet (``Ġcell``, ``mitochondria``, ``##ase``, or
    the content of a multiword added token), the corpus count, the old tokenizer's piece count and the
    tokens it would save."""

    form: str
    count: int
    pieces: int
    multiword: bool = False

    @property
    def saved(self) -> int:
        return self.count * (self.pieces - 1)


def read_corpus(path: str | Path, limit: int | None = None) -> list[str]:
    """Texts of a corpus file: plain text (one text per line), JSONL with ``text`` (and optional
    ``title``, BEIR-style), or either gzipped. Texts are stripped and blank ones dropped; no text at all
    is an error (:func:`embedlab.corpus.read_texts`, the one text reader)."""
    from embedlab.corpus import read_texts

    return read_texts(path, limit=limit, drop_blank=True)


def read_token_file(path: str | Path) -> list[str]:
    """New tokens from a file, one per line, as surface text (``mitochondria``, ``amino acid``); blank
    lines and duplicates are dropped, order kept."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"token file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, OSError) as exc:
        raise InputError(f"cannot read token file {path}: {exc}") from None
    tokens = list(dict.fromkeys(t.strip() for t in lines if t.strip()))
    if not tokens:
        raise InputError(f"token file {path} lists no token")
    return tokens


def backend(tokenizer: Any) -> Any:
    """The ``tokenizers.Tokenizer`` behind a transformers tokenizer; a one-line error without one."""
    tok = getattr(tokenizer, "backend_tokenizer", None)
    if not getattr(tokenizer, "is_fast", False) or tok is None:
        raise ConfigError(
            f"{type(tokenizer).__name__} has no fast (Rust) backend: vocabulary extension edits a "
            "tokenizers.Tokenizer; convert the tokenizer to a fast one (tokenizer.json) first"
        )
    return tok


def model_kind(tokenizer: Any) -> str:
    """``wordpiece`` or ``bpe`` (the two model kinds supported); an error for anything else."""
    kind = json.loads(backend(tokenizer).to_str())["model"]["type"]
    if kind not in ("WordPiece", "BPE"):
        raise ConfigError(f"vocabulary extension supports WordPiece and BPE tokenizers; this one is {kind}")
    return kind.lower()


def pre_tokens(tokenizer: Any, text: str) -> list[str]:
    """The words the model part of the tokenizer sees for ``text`` (normalized, pre-tokenized)."""
    tok = backend(tokenizer)
    if tok.normalizer is not None:
        text = tok.normalizer.normalize_str(text)
    if tok.pre_tokenizer is None:
        return text.split()
    return [w for w, _ in tok.pre_tokenizer.pre_tokenize_str(text)]


def word_counts(tokenizer: Any, texts: Iterable[str]) -> tuple[Counter, Counter]:
    """Counts of pre-tokenized words and of adjacent word pairs (a pair never spans a punctuation mark)."""
    words: Counter = Counter()
    pairs: Counter = Counter()
    for text in texts:
        seq = pre_tokens(tokenizer, text)
        words.update(seq)
        for a, b in zip(seq, seq[1:]):
            if _content(a) and _content(b):
                pairs[(a, b)] += 1
    return words, pairs


def _plain(word: str) -> str:
    return word.lstrip("Ġ▁")


def _content(word: str) -> bool:
    w = _plain(word)
    return len(w) >= 3 and w.isalpha() and w.lower() not in STOPWORDS


def piece_count(tokenizer: Any, form: str) -> int:
    """How many pieces the tokenizer's model cuts one pre-tokenized word into."""
    return len(backend(tokenizer).model.tokenize(form))


def npmi(pair_count: int, count_a: int, count_b: int, n: int) -> float:
    """Normalised PMI of a bigram (Bouma 2009), every probability over the same ``n`` word positions
    (as gensim's ``npmi_scorer``): ``log(p_ab / (p_a p_b)) / −log p_ab``, in [−1, 1]."""
    if not 0 < pair_count <= min(count_a, count_b) <= n:
        raise ValueError(f"npmi needs 0 < pair count <= word counts <= n; got {pair_count}, {count_a}, {count_b}, {n}")
    p_ab, p_a, p_b = pair_count / n, count_a / n, count_b / n
    if p_ab == 1.0:
        return 1.0
    return math.log(p_ab / (p_a * p_b)) / -math.log(p_ab)


def select_tokens_saved(
    tokenizer: Any, texts: Sequence[str], n: int, *, min_count: int = 3, multiword: bool = False, min_npmi: float = 0.3
) -> list[Candidate]:
    """The ``n`` candidates saving the most tokens, ``count × (pieces − 1)``: split words and (with
    ``multiword``) associated two-word concepts (see the module docstring)."""
    words, pairs = word_counts(tokenizer, texts)
    vocab = tokenizer.get_vocab()
    cands: list[Candidate] = []
    for w, c in words.items():
        if c < min_count or w in vocab or not any(ch.isalnum() for ch in w):
            continue
        k = piece_count(tokenizer, w)
        if k >= 2:
            cands.append(Candidate(w, c, k))
    if multiword:
        total = sum(words.values())
        for (a, b), c in pairs.items():
            if c < min_count or npmi(c, words[a], words[b], total) < min_npmi:
                continue
            form = f"{_plain(a)} {_plain(b)}"
            k = piece_count(tokenizer, a) + piece_count(tokenizer, b)
            cands.append(Candidate(form, c, k, multiword=True))
    cands.sort(key=lambda x: (-x.saved, x.form))
    return cands[:n]


select_words = select_tokens_saved  # the name before issue 22.14


def select_bpe(tokenizer: Any, texts: Sequence[str], n: int, *, vocab_size: int | None = None) -> list[Candidate]:
    """Entries of a tokenizer trained on ``texts`` that the old vocabulary lacks, in trained order.

    The trained vocabulary has ``len(old) // 4`` entries by default (a domain tokenizer need not be
    large: its frequent merges come first). ``count`` and ``pieces`` are measured on the corpus.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    kind = model_kind(tokenizer)
    old = backend(tokenizer)
    vocab = tokenizer.get_vocab()
    size = vocab_size or max(n + 1000, len(vocab) // 4)
    if kind == "bpe":
        new = Tokenizer(models.BPE())
        alphabet = pre_tokenizers.ByteLevel.alphabet() if _is_byte_level(old) else []
        trainer = trainers.BpeTrainer(vocab_size=size, initial_alphabet=alphabet, show_progress=False)
    else:
        prefix = json.loads(old.to_str())["model"].get("continuing_subword_prefix", "##")
        new = Tokenizer(models.WordPiece(unk_token=tokenizer.unk_token or "[UNK]", continuing_subword_prefix=prefix))
        trainer = trainers.WordPieceTrainer(vocab_size=size, continuing_subword_prefix=prefix, show_progress=False)
    new.normalizer = old.normalizer
    new.pre_tokenizer = old.pre_tokenizer
    new.train_from_iterator(texts, trainer=trainer)
    trained = json.loads(new.to_str())["model"]
    if kind == "bpe":
        order = ["".join(m) if isinstance(m, list) else m.replace(" ", "") for m in trained["merges"]]
    else:
        order = [t for t, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1])]
    words, _ = word_counts(tokenizer, texts)
    seen: set[str] = set()
    cands: list[Candidate] = []
    for form in order:
        if form in vocab or form in seen or len(_plain(form).replace("##", "")) < 2:
            continue
        seen.add(form)
        k = piece_count(tokenizer, form)
        if k < 2:
            continue
        cands.append(Candidate(form, words.get(form, 0), k))
        if len(cands) >= n:
            break
    return cands


def _is_byte_level(tok: Any) -> bool:
    spec = json.loads(tok.to_str()).get("pre_tokenizer") or {}
    parts = spec.get("pretokenizers", [spec])
    return any(p.get("type") == "ByteLevel" for p in parts if isinstance(p, dict))


def forms_from_surface(tokenizer: Any, surfaces: Sequence[str]) -> list[Candidate]:
    """Candidates for tokens given as text: one word becomes its word-start vocabulary form (``Ġword`` in
    a byte-level BPE, the normalized word in WordPiece); a text of several words becomes a multiword
    added token. ``pieces`` is the old tokenizer's count; ``count`` is 0 (not measured)."""
    out: list[Candidate] = []
    for s in surfaces:
        words = pre_tokens(
            tokenizer, " " + s if model_kind(tokenizer) == "bpe" and _is_byte_level(backend(tokenizer)) else s
        )
        if len(words) == 1:
            out.append(Candidate(words[0], 0, piece_count(tokenizer, words[0])))
        elif words:
            out.append(
                Candidate(
                    " ".join(_plain(w) for w in words) if model_kind(tokenizer) == "bpe" else s.strip(),
                    0,
                    sum(piece_count(tokenizer, w) for w in words),
                    multiword=True,
                )
            )
    return out


__all__ = [
    "Candidate",
    "DEPRECATED_MODES",
    "SELECT_MODES",
    "backend",
    "forms_from_surface",
    "model_kind",
    "npmi",
    "piece_count",
    "pre_tokens",
    "read_corpus",
    "read_token_file",
    "select_bpe",
    "select_tokens_saved",
    "select_words",
    "word_counts",
]
