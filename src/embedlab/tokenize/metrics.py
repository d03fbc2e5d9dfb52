"""Tokenizer quality metrics on a corpus: fertility, continued words, compression, vocabulary use,
UNK rate, Rényi efficiency, parity, and (with a Turkish lexicon) %TR / %Pure.

**Words.** Every tokenizer is measured against the same words: ``WORD_PATTERN`` splits each text into
maximal runs of word characters (``\\w``: letters, digits, underscore, any script) and single
punctuation/symbol characters; whitespace separates and is not a word. "Ankara'ya." gives
``Ankara ' ya .`` (4 words). This is the whitespace + punctuation pre-tokenisation of Rust et al.
(2021) and of UD treebanks, independent of any tokenizer.

**Tokens.** Each text (one corpus line) is encoded once, as running text, without special tokens.
A token belongs to the word holding the first non-space character of its character span; a
zero-width token (``<uppercase>``) to the word at its position; a token made only of whitespace
(a bare ``▁`` or ``Ġ``) to no word. Fertility counts *all* tokens; the continued-word share uses the
per-word counts.

Formulas (``T`` tokens, ``W`` words, ``V`` vocabulary size, ``c_i`` the count of token id ``i``,
``p_i = c_i / T``):

- fertility = T / W
- continued words = #{words with >= 2 tokens} / W
- bytes per token = UTF-8 bytes / T;  characters per token = characters / T  (whitespace included)
- vocabulary used = #{i : c_i > 0} / V
- UNK rate = c_unk / T  (0 for tokenizers that have no UNK token, e.g. byte-level BPE)
- Rényi efficiency (Zouhar et al. 2023) = H_a(p) / log V, with
  H_a(p) = log(sum_i p_i^a) / (1 - a)  (a = 2.5 by default; a = 1 is Shannon's -sum p log p)
- parity (Petrov et al. 2023), for line-aligned parallel corpora A and B:
  T_A / T_B over the whole corpus, and the mean of per-line ratios t_A / t_B (lines with t_B > 0).
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from embedlab.errors import ConfigError, EmptyInput, InputError
from embedlab.progress import ShowProgress, progress_bar
from embedlab.tokenize.loading import LoadedTokenizer, load_tokenizer
from embedlab.tokenize.turkish import TurkishLexicon, TurkishScores, turkish_scores

WORD_PATTERN = re.compile(r"\w+|[^\w\s]")
DEFAULT_ALPHA = 2.5


def split_words(text: str) -> list[tuple[int, int]]:
    """Character spans of the words of ``text`` (see the module docstring)."""
    return [m.span() for m in WORD_PATTERN.finditer(text)]


@dataclass
class CorpusCounts:
    """Raw counts of one tokenizer over one corpus; every metric is a function of these."""

    n_texts: int = 0
    n_words: int = 0
    n_chars: int = 0
    n_bytes: int = 0
    n_tokens: int = 0
    n_unattributed: int = 0  # whitespace-only tokens, attached to no word
    n_continued: int = 0  # words split into >= 2 tokens
    id_counts: Counter = field(default_factory=Counter)
    piece_counts: Counter = field(default_factory=Counter)  # surface piece -> count (filled on request)
    tokens_per_text: list[int] = field(default_factory=list)


def count_tokens(
    tokenizer: LoadedTokenizer,
    texts: Sequence[str],
    *,
    pieces: bool = False,
    batch_size: int = 512,
    show_progress: ShowProgress = False,
) -> CorpusCounts:
    """Encode ``texts`` and count tokens, words and their alignment; ``pieces=True`` also counts the
    surface pieces (for %TR / %Pure). ``show_progress`` (:mod:`embedlab.progress`): a bar over texts."""
    c = CorpusCounts()
    with progress_bar(show_progress, total=len(texts), desc=tokenizer.name, unit="text") as bar:
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            _count_batch(c, tokenizer, batch, pieces)
            bar.update(len(batch))
    return c


def _count_batch(c: CorpusCounts, tokenizer: LoadedTokenizer, batch: Sequence[str], pieces: bool) -> None:
    """Add one batch of texts to ``c``."""
    for text, enc in zip(batch, tokenizer.encode_batch(batch)):
        spans = split_words(text)
        word_of = [-1] * (len(text) + 1)
        for w, (s, e) in enumerate(spans):
            word_of[s:e] = [w] * (e - s)
        per_word = [0] * len(spans)
        for s, e in enc.offsets:
            if e <= s:  # zero-width token: the word at its position
                w = word_of[min(s, len(text))]
            else:
                w = next((word_of[i] for i in range(s, min(e, len(text))) if not text[i].isspace()), -1)
            if w >= 0:
                per_word[w] += 1
            else:
                c.n_unattributed += 1
        c.n_texts += 1
        c.n_words += len(spans)
        c.n_chars += len(text)
        c.n_bytes += len(text.encode("utf-8"))
        c.n_tokens += len(enc.ids)
        c.n_continued += sum(1 for n in per_word if n >= 2)
        c.id_counts.update(enc.ids)
        c.tokens_per_text.append(len(enc.ids))
        if pieces:
            c.piece_counts.update(enc.pieces if enc.pieces is not None else (tokenizer.piece(i) for i in enc.ids))


def renyi_entropy(counts: Iterable[int], alpha: float = DEFAULT_ALPHA) -> float:
    """Rényi entropy (natural log) of the distribution given by ``counts``; alpha = 1 is Shannon."""
    values = [float(x) for x in counts if x > 0]
    total = sum(values)
    if total <= 0:
        raise EmptyInput("Rényi entropy of an empty distribution: no tokens were counted")
    if alpha < 0:
        raise ConfigError(f"Rényi efficiency: 'alpha' must be >= 0; got {alpha!r}")
    probs = [v / total for v in values]
    if math.isclose(alpha, 1.0):
        return -sum(p * math.log(p) for p in probs)
    return math.log(sum(p**alpha for p in probs)) / (1.0 - alpha)


def renyi_efficiency(counts: Iterable[int], vocab_size: int | None = None, alpha: float = DEFAULT_ALPHA) -> float:
    """H_alpha(p) / log V. ``vocab_size=None`` uses the number of distinct tokens observed."""
    values = [x for x in counts if x > 0]
    v = len(values) if vocab_size is None else int(vocab_size)
    if v < 2:
        raise ConfigError(f"Rényi efficiency needs a vocabulary of at least 2 tokens; got {v}")
    return renyi_entropy(values, alpha) / math.log(v)


@dataclass
class TokenizerMetrics:
    """One tokenizer's report on one corpus (``to_dict`` is what ``--json`` writes)."""

    tokenizer: str
    source: str
    family: str
    vocab_size: int
    n_texts: int
    n_words: int
    n_tokens: int
    n_chars: int
    n_bytes: int
    fertility: float
    continued_words: float
    bytes_per_token: float
    chars_per_token: float
    vocab_used: float
    unk_rate: float
    renyi_efficiency: float
    renyi_efficiency_observed: float  # normalised by the observed vocabulary instead of V
    renyi_alpha: float
    unk_id: int | None = None
    n_unattributed: int = 0
    parity: float | None = None  # T(corpus) / T(corpus2)
    parity_mean_line: float | None = None
    n_tokens2: int | None = None
    turkish: TurkishScores | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["turkish"] = self.turkish.to_dict() if self.turkish is not None else None
        return d


def parity(tokens_a: Sequence[int], tokens_b: Sequence[int]) -> tuple[float, float]:
    """(total ratio, mean per-line ratio) of token counts on line-aligned parallel corpora."""
    if len(tokens_a) != len(tokens_b):
        raise InputError(f"parity needs line-aligned parallel corpora; got {len(tokens_a)} and {len(tokens_b)} lines")
    total_b = sum(tokens_b)
    if total_b == 0:
        raise EmptyInput("parity: the second corpus produced no tokens")
    ratios = [a / b for a, b in zip(tokens_a, tokens_b) if b > 0]
    return sum(tokens_a) / total_b, sum(ratios) / len(ratios)


def _check_texts(texts: Sequence[str], what: str) -> list[str]:
    if isinstance(texts, str):
        raise InputError(f"{what}: pass a list of texts, not one string")
    texts = list(texts)
    if not texts or not any(t.strip() for t in texts):
        raise EmptyInput(f"{what} is empty: give at least one non-blank line of text")
    return texts


def tokenizer_metrics(
    tokenizer: LoadedTokenizer | str | Any,
    texts: Sequence[str],
    *,
    texts2: Sequence[str] | None = None,
    alpha: float = DEFAULT_ALPHA,
    lexicon: TurkishLexicon | None = None,
    show_progress: ShowProgress = False,
) -> TokenizerMetrics:
    """Measure ``tokenizer`` (anything ``load_tokenizer`` accepts) on ``texts``.

    ``texts2``: a line-aligned parallel corpus for parity. ``lexicon``: adds %TR / %Pure."""
    tok = load_tokenizer(tokenizer)
    texts = _check_texts(texts, "corpus")
    t0 = time.perf_counter()
    c = count_tokens(tok, texts, pieces=lexicon is not None, show_progress=show_progress)
    if c.n_tokens == 0 or c.n_words == 0:
        raise EmptyInput(f"corpus gave {c.n_tokens} tokens and {c.n_words} words with {tok.name}: nothing to measure")
    m = TokenizerMetrics(
        tokenizer=tok.name,
        source=tok.source,
        family=tok.family,
        vocab_size=tok.vocab_size,
        n_texts=c.n_texts,
        n_words=c.n_words,
        n_tokens=c.n_tokens,
        n_chars=c.n_chars,
        n_bytes=c.n_bytes,
        fertility=c.n_tokens / c.n_words,
        continued_words=c.n_continued / c.n_words,
        bytes_per_token=c.n_bytes / c.n_tokens,
        chars_per_token=c.n_chars / c.n_tokens,
        vocab_used=len(c.id_counts) / tok.vocab_size,
        unk_rate=(c.id_counts.get(tok.unk_id, 0) / c.n_tokens) if tok.unk_id is not None else 0.0,
        renyi_efficiency=renyi_efficiency(c.id_counts.values(), tok.vocab_size, alpha),
        renyi_efficiency_observed=renyi_efficiency(c.id_counts.values(), None, alpha)
        if len(c.id_counts) > 1
        else float("nan"),
        renyi_alpha=alpha,
        unk_id=tok.unk_id,
        n_unattributed=c.n_unattributed,
    )
    if lexicon is not None:
        m.turkish = turkish_scores(c.piece_counts, lexicon)
    if texts2 is not None:
        texts2 = _check_texts(texts2, "parallel corpus")
        c2 = count_tokens(tok, texts2)
        m.parity, m.parity_mean_line = parity(c.tokens_per_text, c2.tokens_per_text)
        m.n_tokens2 = c2.n_tokens
    m.seconds = time.perf_counter() - t0
    return m


# ---------------------------------------------------------------------------------------------
# One report table, several views (terminal, markdown, JSON, PNG)


@dataclass(frozen=True)
class Column:
    key: str  # dotted path into TokenizerMetrics.to_dict()
    header: str
    fmt: str  # "int", "f2", "f3", "pct"
    higher_is_better: bool | None = None


COLUMNS: tuple[Column, ...] = (
    Column("vocab_size", "V", "int"),
    Column("n_tokens", "tokens", "int"),
    Column("fertility", "fertility", "f3", False),
    Column("continued_words", "split words", "pct", False),
    Column("bytes_per_token", "bytes/tok", "f2", True),
    Column("chars_per_token", "chars/tok", "f2", True),
    Column("vocab_used", "vocab used", "pct"),
    Column("unk_rate", "UNK", "pct", False),
    Column("renyi_efficiency", "Rényi eff.", "f3", True),
)
PARITY_COLUMNS = (
    Column("parity", "parity", "f3", False),
    Column("parity_mean_line", "parity (line mean)", "f3", False),
)
TURKISH_COLUMNS = (
    Column("turkish.tr_tokens", "%TR tokens", "pct", True),
    Column("turkish.tr_types", "%TR types", "pct", True),
    Column("turkish.pure_tokens", "%Pure tokens", "pct", True),
    Column("turkish.pure_types", "%Pure types", "pct", True),
)


def report_columns(metrics: Sequence[TokenizerMetrics]) -> list[Column]:
    cols = list(COLUMNS)
    if any(m.parity is not None for m in metrics):
        cols += PARITY_COLUMNS
    if any(m.turkish is not None for m in metrics):
        cols += TURKISH_COLUMNS
    return cols


def _get(d: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        d = d.get(part) if isinstance(d, dict) else None  # type: ignore[assignment]
    return d


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if fmt == "int":
        return f"{int(value):,}"
    if fmt == "pct":
        return f"{100 * value:.1f}%"
    return f"{value:.{fmt[1:]}f}"


def report_table(metrics: Sequence[TokenizerMetrics]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows of formatted cells): the one table behind the terminal and markdown views."""
    cols = report_columns(metrics)
    headers = ["tokenizer", "family"] + [c.header for c in cols]
    rows = []
    for m in metrics:
        d = m.to_dict()
        rows.append([m.tokenizer, m.family] + [_fmt(_get(d, c.key), c.fmt) for c in cols])
    return headers, rows


def to_markdown(metrics: Sequence[TokenizerMetrics]) -> list[str]:
    headers, rows = report_table(metrics)
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def to_rich_table(metrics: Sequence[TokenizerMetrics], title: str = "") -> Any:
    from rich.table import Table

    headers, rows = report_table(metrics)
    table = Table(title=title or None)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i < 2 else "right")
    for r in rows:
        table.add_row(*r)
    return table


def report_json(metrics: Sequence[TokenizerMetrics], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "words": f"regex {WORD_PATTERN.pattern} (whitespace + punctuation), the same for every tokenizer",
        **(meta or {}),
        "tokenizers": [m.to_dict() for m in metrics],
    }


def write_json(path: str | Any, metrics: Sequence[TokenizerMetrics], meta: dict[str, Any] | None = None) -> None:
    from embedlab.io import write_json as _write

    _write(path, report_json(metrics, meta))


def plot(metrics: Sequence[TokenizerMetrics], path: str | Any, title: str = "") -> None:
    """One horizontal bar panel per metric (tokenizers on the y axis), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from embedlab.io import atomic_path

    panels = [c for c in report_columns(metrics) if c.higher_is_better is not None or c.key == "vocab_used"]
    panels = [c for c in panels if any(_get(m.to_dict(), c.key) is not None for m in metrics)]
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    names = [m.tokenizer for m in metrics]
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.2 * ncols, 0.35 * len(names) * nrows + 1.6 * nrows), squeeze=False
    )
    for ax, col in zip(axes.flat, panels):
        vals = [_get(m.to_dict(), col.key) for m in metrics]
        vals = [float("nan") if v is None else (100 * v if col.fmt == "pct" else v) for v in vals]
        ax.barh(range(len(names)), vals, color="#4c72b0")
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names if ax in axes[:, 0] else [""] * len(names), fontsize=8)
        ax.invert_yaxis()
        arrow = (
            "" if col.higher_is_better is None else (" (higher better)" if col.higher_is_better else " (lower better)")
        )
        ax.set_title(col.header + (" %" if col.fmt == "pct" else "") + arrow, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def read_corpus(path: str | Any, limit: int | None = None) -> list[str]:
    """Texts of a corpus file: one per line, JSONL with ``text``, or a TSV with a header that has a
    ``text`` column (the shared UD sentence files). ``limit`` keeps the first N texts
    (:func:`embedlab.corpus.read_texts`, the one text reader)."""
    from embedlab.corpus import read_texts

    return read_texts(path, limit=limit)
