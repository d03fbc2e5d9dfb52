"""sentence-transformers compatibility: the ``type`` strings its ``modules.json`` uses and their mapping
to embedlab's module kinds (the only place these strings live), and how it counts a prompt's tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ST_TRANSFORMER = "sentence_transformers.base.modules.transformer.Transformer"
ST_POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
ST_DENSE = "sentence_transformers.base.modules.dense.Dense"
ST_NORMALIZE = "sentence_transformers.base.modules.normalize.Normalize"
ST_IDENTITY = "torch.nn.modules.linear.Identity"
ST_SPLADE_POOLING = "sentence_transformers.sparse_encoder.modules.splade_pooling.SpladePooling"
# a static model's modules.json: the names model2vec writes (and sentence-transformers 2.x-6.x loads)
ST_STATIC_EMBEDDING = "sentence_transformers.models.StaticEmbedding"
ST_NORMALIZE_LEGACY = "sentence_transformers.models.Normalize"
MODEL2VEC = "model2vec"  # config.json's model_type in model2vec's layout

ST_TYPES: dict[str, str] = {
    ST_TRANSFORMER: "transformer",
    "sentence_transformers.models.Transformer": "transformer",
    "sentence_transformers.models.Transformer.Transformer": "transformer",
    ST_POOLING: "pooling",
    "sentence_transformers.models.Pooling": "pooling",
    "sentence_transformers.models.Pooling.Pooling": "pooling",
    ST_DENSE: "projection",
    "sentence_transformers.models.Dense": "projection",
    "sentence_transformers.models.Dense.Dense": "projection",
    ST_NORMALIZE: "normalize",
    "sentence_transformers.models.Normalize": "normalize",
    "sentence_transformers.models.Normalize.Normalize": "normalize",
    ST_SPLADE_POOLING: "splade",
    "sentence_transformers.sparse_encoder.models.SpladePooling": "splade",
    ST_STATIC_EMBEDDING: "static",
    "sentence_transformers.models.StaticEmbedding.StaticEmbedding": "static",
    "sentence_transformers.sentence_transformer.modules.static_embedding.StaticEmbedding": "static",
}

# a folder without modules.json: its config.json's model_type names the source kind (model2vec < 0.4 wrote none)
CONFIG_MODEL_TYPES: dict[str, str] = {MODEL2VEC: "static"}

# embedlab < 0.2 wrote the trainable heads' class path
_LEGACY = {
    "embedlab.models.pooling.LatentAttentionPooling": "pooling",
    "embedlab.models.pooling.MultiLayerPooling": "pooling",
}


def kind_for_type(st_type: str) -> str | None:
    if st_type in ST_TYPES:
        return ST_TYPES[st_type]
    if st_type in _LEGACY:
        return _LEGACY[st_type]
    if st_type.startswith("embedlab.") and st_type.count(".") == 1:
        return st_type.split(".", 1)[1]
    return None


# -- prompt lengths --------------------------------------------------------------------------------
PROBES = ("the", "What")  # texts a prompt is measured in front of (a lower-case word, a capitalised one)


@dataclass(frozen=True)
class PromptCount:
    """A prompt whose token count sentence-transformers computes differently from embedlab."""

    name: str
    alone: int  # sentence-transformers: the prompt tokenized alone, less a trailing special token
    in_context: int  # embedlab: the tokens the prompt covers in front of a text (from the full text's offsets)
    fix: str | None  # the prompt without its trailing whitespace, when that makes the two agree here


def st_prompt_length(tokenizer: Any, prompt: str) -> int:
    """The prompt's length in tokens as sentence-transformers' ``Transformer`` measures it for pooling with
    ``include_prompt=False``: the prompt tokenized alone with its special tokens, less a trailing special
    token (its [SEP] or EOS)."""
    ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    special = set(getattr(tokenizer, "all_special_ids", None) or [])
    return len(ids) - 1 if ids and ids[-1] in special else len(ids)


def in_context_prompt_length(tokenizer: Any, prompt: str, text: str) -> int:
    """The tokens ``prompt`` covers in ``prompt + text``, as embedlab counts them (:mod:`embedlab.tokenize.prompted`)."""
    from embedlab.tokenize.prompted import tokenize_prompted

    return tokenize_prompted(tokenizer, [text], prompt, max_length=10**6).prompt_lengths[0]


def prompt_count_mismatches(tokenizer: Any, prompts: dict[str, str]) -> list[PromptCount]:
    """The prompts whose standalone token count (sentence-transformers') differs from their count in front of
    a text (embedlab's) for any of :data:`PROBES`. A model that leaves its instruction out of pooling then
    gives other vectors in ``SentenceTransformer(path)`` with that prompt: byte-level BPE and SentencePiece
    attach a prompt's trailing space to the text's first word, so the prompt alone has one token more."""
    out = []
    for name, prompt in prompts.items():
        if not prompt:
            continue
        alone = st_prompt_length(tokenizer, prompt)
        counts = {in_context_prompt_length(tokenizer, prompt, probe) for probe in PROBES}
        if counts == {alone}:
            continue
        stripped = prompt.rstrip()
        fix = None
        if stripped and stripped != prompt:
            n = st_prompt_length(tokenizer, stripped)
            if {in_context_prompt_length(tokenizer, stripped, probe) for probe in PROBES} == {n}:
                fix = stripped
        out.append(PromptCount(name, alone, min(counts), fix))
    return out
