"""Texts with an instruction prefix -> token ids and the number of tokens the prefix occupies.

One mechanism for evaluation, training and serving: the prefix length is read from the character
offsets of the *full* text's tokens (fast tokenizers), never from tokenizing the prefix alone. The
latter is off by one when the prefix ends in a space, because byte-level BPE and SentencePiece attach
that space to the first word of the text ("Query: " + "cat" gives "Query", ":", "Ġcat", while
"Query: " alone gives "Query", ":", "Ġ"). A token counts as part of the prefix when it ends at or
before the prefix's last character; the leading special tokens ([CLS], BOS) count with it, as in
sentence-transformers' ``include_prompt=False``. Slow tokenizers (no offsets) fall back to the longest
common prefix of the full text's ids and the prefix's own ids, which is exact for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from embedlab.errors import InputError


@dataclass
class Tokenized:
    """Token ids per text (special tokens, truncation and the optional EOS applied)."""

    ids: list[list[int]]
    prompt_lengths: list[int]  # leading tokens that belong to the prefix (0 where there is none)
    truncated: int  # how many texts were cut to max_length

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.ids]


def _prefix_from_offsets(offsets: Sequence[tuple[int, int]], prefix_chars: int) -> int:
    n = 0
    for _start, end in offsets:
        if end > prefix_chars:
            break
        n += 1
    return n


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def expand_prompts(prompts: Sequence[str] | str | None, n: int) -> list[str]:
    """One prefix per text from one prefix for all, one per text, or None."""
    if prompts is None or isinstance(prompts, str):
        return [prompts or ""] * n
    if len(prompts) != n:
        raise InputError(f"{len(prompts)} prompts for {n} texts")
    return list(prompts)


def check_texts(texts: Any) -> tuple[list[str], bool]:
    """(texts as a list, whether one string was given); a one-line InputError for anything else."""
    single = isinstance(texts, str)
    if single:
        texts = [texts]
    if not isinstance(texts, Sequence):
        raise InputError(f"texts must be a string or a sequence of strings, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(f"text {i} is {type(t).__name__}, not str")
    return list(texts), single


def tokenize_prompted(
    tokenizer: Any,
    texts: Sequence[str],
    prompts: Sequence[str] | str | None = None,
    *,
    max_length: int,
    append_eos: bool = False,
) -> Tokenized:
    """Tokenize ``prompts[i] + texts[i]`` and count the prefix's tokens in each.

    ``prompts`` is one prefix for every text, one per text, or None. With ``append_eos`` the EOS id is
    added after truncation to ``max_length - 1`` (decoders whose tokenizer does not add it).
    """
    n = len(texts)
    prompts = expand_prompts(prompts, n)
    full = [p + t for p, t in zip(prompts, texts)]
    limit = max_length - (1 if append_eos else 0)
    fast = bool(getattr(tokenizer, "is_fast", False))
    want_offsets = fast and any(prompts)
    enc = tokenizer(full, add_special_tokens=True, truncation=False, verbose=False, return_offsets_mapping=want_offsets)
    ids = [list(x) for x in enc["input_ids"]]
    offsets = enc["offset_mapping"] if want_offsets else None
    too_long = [i for i, seq in enumerate(ids) if len(seq) > limit]
    if too_long:
        cut = tokenizer(
            [full[i] for i in too_long],
            add_special_tokens=True,
            truncation=True,
            max_length=limit,
            return_offsets_mapping=want_offsets,
        )
        for j, i in enumerate(too_long):
            ids[i] = list(cut["input_ids"][j])
            if offsets is not None:
                offsets[i] = cut["offset_mapping"][j]
    prompt_lengths = [0] * n
    if any(prompts):
        alone: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            if not p:
                continue
            if offsets is not None:
                prompt_lengths[i] = _prefix_from_offsets(offsets[i], len(p))
            else:
                if p not in alone:
                    alone[p] = list(tokenizer(p, add_special_tokens=True)["input_ids"])
                prompt_lengths[i] = min(_common_prefix(ids[i], alone[p]), len(ids[i]))
    if append_eos:
        eos = tokenizer.eos_token_id
        ids = [seq if seq and seq[-1] == eos else [*seq, eos] for seq in ids]
    for i, seq in enumerate(ids):
        if not seq:
            raise InputError(
                f"text {i} gives no tokens ({full[i]!r}): this model adds no special tokens to an empty text; "
                "drop it or enable append_eos"
            )
    return Tokenized(ids=ids, prompt_lengths=prompt_lengths, truncated=len(too_long))
