"""The server's tokenization: one tokenizer pass per input, as TEI's tokenization workers do.

Each text becomes what ``Embedder.tokenize`` gives with ``max_length = max_input_tokens`` (special tokens,
prompt, truncation and the optional EOS applied): its ids, the prompt's token count (from the same pass's
offsets, :mod:`embedlab.tokenize.prompted`'s rule), the character span of each token in the text (for
``/tokenize``) and whether the limit cut it. For a fast (Rust) tokenizer that is one call over the request,
asking the tokenizer for its overflow: an input is cut exactly when it overflows. Other sources (static
models, slow tokenizers) have no overflow report: their own ``tokenize`` runs once, and only a request in
which some input was cut is looked at input by input to tell which.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

from embedlab.errors import ConfigError, EmptyInput, InputError
from embedlab.serve.errors import BadRequest, InputTooLong
from embedlab.tokenize.prompted import _prefix_from_offsets

Span = tuple[int, int]


@dataclass
class Prepared:
    """Token ids ready to embed (special tokens, prompt, truncation and EOS applied), per input."""

    ids: list[list[int]]
    prompt_lengths: list[int]
    cut: list[bool] = field(default_factory=list)  # per input: cut to max_input_tokens
    offsets: list[list[Span | None]] | None = None  # per token: its span in the text (None: special/prompt/EOS)

    @property
    def truncated(self) -> int:
        """How many inputs were cut to max_input_tokens."""
        return sum(self.cut)

    @property
    def tokens(self) -> int:
        return sum(len(x) for x in self.ids)

    def __len__(self) -> int:
        return len(self.ids)


class Tokenization:
    """Texts or token ids -> :class:`Prepared` for one served embedder, under ``max_input_tokens`` and the
    ``truncate`` policy (cut, or :class:`InputTooLong`: 413). Thread-safe: a fast tokenizer's truncation
    setting is shared state, so calls are serialised."""

    def __init__(self, embedder: Any, max_input_tokens: int, *, truncate: bool = True) -> None:
        self.embedder = embedder
        self.max_input_tokens = max_input_tokens
        self.truncate = bool(truncate)
        source = embedder.source
        self._tokenizer = getattr(source, "tokenizer", None)
        self._append_eos = bool(getattr(source, "append_eos", False))
        # the one-pass path needs an HF fast tokenizer behind a transformer backbone (a static source has a
        # tokenizer too, but its own tokenize: no special tokens, no overflow report)
        from embedlab.models.backbone import Backbone

        self._fast = isinstance(source, Backbone) and bool(getattr(self._tokenizer, "is_fast", False))
        self._limited = (
            embedder if max_input_tokens == embedder.max_length else embedder.with_options(max_length=max_input_tokens)
        )
        config = getattr(source, "config", None)
        self.vocab_size = int(getattr(config, "vocab_size", 0) or len(embedder.tokenizer))
        self._lock = threading.Lock()

    # -- texts ----------------------------------------------------------------------------------------
    def texts(self, texts: Sequence[str], input_type: str | None = None, *, truncate: bool | None = None) -> Prepared:
        """``texts`` with the named prompt (None: the model's default): cut to ``max_input_tokens``
        (``truncate``) or :class:`InputTooLong`."""
        if not texts:
            raise EmptyInput("no inputs: give at least one")
        for i, text in enumerate(texts):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError(f"input {i} is not valid Unicode (it holds a lone surrogate)") from None
        try:
            prompt = self.embedder.resolve_prompt(input_type)
        except ConfigError as exc:
            raise BadRequest(str(exc), param="input_type") from None
        with self._lock:
            out = self._one_pass(list(texts), prompt) if self._fast else self._by_source(list(texts), prompt)
        truncate = self.truncate if truncate is None else truncate
        if out.truncated and not truncate:
            first = out.cut.index(True)
            raise InputTooLong(
                f"input {first} has more than {self.max_input_tokens} tokens ({out.truncated} of "
                f"{len(texts)} inputs do); shorten it, or let the server truncate (--truncate)"
            )
        return out

    def _one_pass(self, texts: list[str], prompt: str) -> Prepared:
        """One call of the fast tokenizer: the first window of each input is its truncated encoding, and an
        input is cut iff the tokenizer reports an overflow window for it."""
        tok = self._tokenizer
        limit = self.max_input_tokens - (1 if self._append_eos else 0)
        full = [prompt + t for t in texts]
        enc = tok(
            full,
            add_special_tokens=True,
            truncation=True,
            max_length=limit,
            return_overflowing_tokens=True,
            stride=0,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            verbose=False,
        )
        n, skip = len(texts), len(prompt)
        rows: list[int | None] = [None] * n
        cut = [False] * n
        for row, i in enumerate(enc["overflow_to_sample_mapping"]):
            if rows[i] is None:
                rows[i] = row
            else:
                cut[i] = True
        ids: list[list[int]] = []
        prompt_lengths: list[int] = []
        offsets: list[list[Span | None]] = []
        eos = tok.eos_token_id
        for i, row in enumerate(rows):
            seq = list(enc["input_ids"][row])
            spans, special = enc["offset_mapping"][row], enc["special_tokens_mask"][row]
            prompt_lengths.append(_prefix_from_offsets(spans, skip) if prompt else 0)
            offsets.append(
                [(a - skip, b - skip) if not sp and a >= skip else None for (a, b), sp in zip(spans, special)]
            )
            if self._append_eos and not (seq and seq[-1] == eos):
                seq.append(eos)
                offsets[-1].append(None)
            if not seq:
                raise InputError(
                    f"text {i} gives no tokens ({full[i]!r}): this model adds no special tokens to an "
                    "empty text; drop it or enable append_eos"
                )
            ids.append(seq)
        return Prepared(ids=ids, prompt_lengths=prompt_lengths, cut=cut, offsets=offsets)

    def _by_source(self, texts: list[str], prompt: str) -> Prepared:
        """The source's own tokenize (static models, slow tokenizers): one pass; when it reports cuts,
        each input of this request alone, to tell which."""
        tok = self._limited.tokenize(texts, prompt)
        cut = [False] * len(texts)
        if tok.truncated:
            cut = [bool(self._limited.tokenize([t], prompt).truncated) for t in texts]
        return Prepared(ids=tok.ids, prompt_lengths=tok.prompt_lengths, cut=cut)

    def calibration(self, texts: Sequence[str]) -> Any:
        """The calibration texts as ``Embedder.tokenize`` gives them (no prompt), for the warm-up."""
        with self._lock:
            return self._limited.tokenize(list(texts))

    # -- token ids ------------------------------------------------------------------------------------
    def ids(self, sequences: Sequence[Sequence[int]], *, truncate: bool | None = None) -> Prepared:
        """Token-id inputs are used as they are (no special tokens or prompt added): send what /tokenize
        returns. Ids must be in the model's vocabulary."""
        if not sequences:
            raise EmptyInput("no inputs: give at least one")
        truncate = self.truncate if truncate is None else truncate
        limit = self.max_input_tokens
        ids: list[list[int]] = []
        cut: list[bool] = []
        for i, seq in enumerate(sequences):
            seq = list(seq)
            if not seq:
                raise EmptyInput(f"input {i} is an empty list of token ids")
            bad = next((t for t in seq if not 0 <= t < self.vocab_size), None)
            if bad is not None:
                raise InputError(f"input {i}: token id {bad} is outside the vocabulary (0..{self.vocab_size - 1})")
            cut.append(len(seq) > limit)
            if cut[-1]:
                if not truncate:
                    raise InputTooLong(
                        f"input {i} has {len(seq)} tokens, more than {limit}; shorten it or let the "
                        "server truncate (--truncate)"
                    )
                seq = seq[:limit]
            ids.append(seq)
        return Prepared(ids=ids, prompt_lengths=[0] * len(ids), cut=cut)


__all__ = ["Prepared", "Tokenization"]
