"""Static embeddings distilled from any embedlab model (Model2Vec-style), and the static model itself.

Distillation (:func:`distill`), after Model2Vec (MinishLab) and SIF (Arora et al. 2017):

1. every vocabulary token goes alone through the teacher's *own* chain: its special tokens, its named
   prompt (``prompt_name``), its attention mode, its pooling head and any projection or Matryoshka
   truncation (the final L2 normalisation is left out), one short sequence per token;
2. PCA to ``dims`` (centred; ``dims`` equal to the width still rotates; ``dims=None`` skips it), fitted on
   the tokens a text can produce (:func:`emittable_tokens`) and applied to every row;
3. each row is scaled by ``a / (a + p(w))``: ``p`` from Zipf's law over the id order of the tokens a
   text can produce (``p_r`` proportional to ``1 / (r + 2)``, Model2Vec's rule) when no corpus is given,
   or from the token frequencies of a real corpus (SIF) when one is; tokens the corpus never shows get
   weight 1.

The result is a plain :class:`~embedlab.models.embedder.Embedder` whose chain is
``StaticSource -> mean pooling [-> truncate] [-> normalize]``, so ``encode``, ``eval``, ``index`` and
``serve`` use it like any model. :class:`StaticSource` is registered under sentence-transformers'
``StaticEmbedding`` type and answers the embedder's source hooks: its ``encode`` is a tokenizer pass and
a mean over table rows in numpy (no torch), and it is saved in Model2Vec's own layout (``config.json``
with ``model_type: model2vec``, ``model.safetensors`` holding ``embeddings``, ``tokenizer.json``), plus a
``modules.json`` naming sentence-transformers' ``StaticEmbedding``, so the same folder loads in
``model2vec.StaticModel.from_pretrained``, ``SentenceTransformer`` and ``embedlab.load``.

Tokenization matches ``model2vec.StaticModel.encode``: no special tokens; each text is first cut to
``max_length * median token length`` characters, then to ``max_length`` tokens; unknown tokens are
dropped. A text left with no token (empty, or only unknown tokens) gets the zero vector, never NaN. The
student's tokenizer is the teacher's, prefix-space setting included; for a byte-level BPE teacher
``distill(prefix_space=True)`` makes it add a space before each text, as model2vec 0.10 always does, so a
text's first word is cut into word-start pieces (docs/static.md measures both on SmolLM2).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from embedlab import vectors
from embedlab._version import __version__
from embedlab.errors import ConfigError, EmbedlabError, InputError
from embedlab.io import atomic_path, file_sha256, read_json
from embedlab.models import st_compat
from embedlab.models.batching import pad_batch
from embedlab.models.embedder import Embedder
from embedlab.models.modules import Module, Normalize, Truncate, register
from embedlab.models.pooling import MeanPooling
from embedlab.progress import ShowProgress, progress_bar
from embedlab.tokenize.prompted import Tokenized, expand_prompts
from embedlab.validation import at_most, choice, finite_float, positive_int

log = logging.getLogger(__name__)

MODEL_TYPE = st_compat.MODEL2VEC  # config.json's model_type: what makes a folder a static model
PROVENANCE = "embedlab_static.json"  # how it was distilled (informational)
DEFAULT_DIMS = 256
DEFAULT_SIF = 1e-4  # Model2Vec's sif_coefficient
DEFAULT_MAX_LENGTH = 512  # model2vec.StaticModel's default when config.json gives none
ENCODE_CHUNK = 8192  # texts per numpy pass (bounds the gathered rows' memory)


# ---------------------------------------------------------------------------------------------
# Tokenizer helpers
# ---------------------------------------------------------------------------------------------
def backend_tokenizer(tokenizer: Any, what: str = "the teacher") -> Any:
    """A private copy of a fast tokenizer's ``tokenizers.Tokenizer`` with padding and truncation off.
    A tokenizer without one (a slow, Python-only tokenizer) has no vocabulary a static model can use."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        backend = tokenizer
    else:
        backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        raise ConfigError(
            f"{what} has no fast tokenizer (tokenizer.json), so its vocabulary cannot be read: "
            "static distillation needs a Hugging Face fast tokenizer"
        )
    copy = Tokenizer.from_str(backend.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


def vocabulary_size(backend: Any) -> int:
    """Rows of the static table: every id of the vocabulary (added tokens included), which must be 0..n-1."""
    vocab = backend.get_vocab(with_added_tokens=True)
    if not vocab:
        raise ConfigError("the tokenizer has an empty vocabulary")
    n = len(vocab)
    if max(vocab.values()) != n - 1:
        raise ConfigError(
            f"the tokenizer's ids are not 0..{n - 1} (largest id {max(vocab.values())}): "
            "a static table needs one row per id"
        )
    return n


def unknown_token_id(backend: Any) -> int | None:
    """The id a word-level or WordPiece/BPE/Unigram model gives unknown text, if any (dropped when encoding)."""
    model = backend.model
    if hasattr(model, "unk_token"):
        token = model.unk_token
        return None if token is None else backend.token_to_id(token)
    return json.loads(backend.to_str())["model"].get("unk_id")


def emittable_tokens(backend: Any) -> np.ndarray:
    """(vocabulary,) bool: the tokens a text can be tokenized into (special tokens excluded, so are WordPiece
    entries such as BERT's ``[unused0]`` or accented letters of an uncased vocabulary, which its normaliser
    and pre-tokenizer never let through whole). The Zipf ranks count only these: BERT's vocabulary starts
    with ~1,000 such entries, which would otherwise push every real token ~1,000 ranks down (measured on
    minilm-l6: STS-B 61.2 instead of 66.1)."""
    n = vocabulary_size(backend)
    mask = np.ones(n, dtype=bool)
    for token_id, added in backend.get_added_tokens_decoder().items():
        if added.special and token_id < n:
            mask[token_id] = False
    model = json.loads(backend.to_str())["model"]
    if model.get("type") == "WordPiece":
        prefix = model.get("continuing_subword_prefix") or "##"
        normalizer, pre = backend.normalizer, backend.pre_tokenizer
        for token, token_id in backend.get_vocab(with_added_tokens=False).items():
            if not mask[token_id]:
                continue
            body = token[len(prefix) :] if token.startswith(prefix) and len(token) > len(prefix) else token
            text = normalizer.normalize_str(body) if normalizer is not None else body
            pieces = [p for p, _ in pre.pre_tokenize_str(text)] if pre is not None else [text]
            mask[token_id] = pieces == [body]
    return mask


def median_token_length(backend: Any) -> int:
    """Median character length of the vocabulary's token strings (model2vec's character pre-cut)."""
    return int(np.median([len(t) for t in backend.get_vocab(with_added_tokens=True)]))


def _byte_level_nodes(node: Any) -> list[dict[str, Any]]:
    """The ByteLevel entries of a tokenizer.json ``pre_tokenizer`` (itself, or inside a ``Sequence``)."""
    if not isinstance(node, dict):
        return []
    if node.get("type") == "ByteLevel":
        return [node]
    if node.get("type") == "Sequence":
        return [n for child in node.get("pretokenizers") or [] for n in _byte_level_nodes(child)]
    return []


def adds_prefix_space(backend: Any) -> bool | None:
    """Whether the tokenizer's byte-level pre-tokenizer adds a space before a text (so its first word is
    cut into word-start pieces, ``Ġword``); None when it has no byte-level pre-tokenizer."""
    nodes = _byte_level_nodes(json.loads(backend.to_str()).get("pre_tokenizer"))
    return bool(nodes[0].get("add_prefix_space", False)) if nodes else None


def with_prefix_space(backend: Any, value: bool, what: str = "the teacher") -> Any:
    """A copy of ``backend`` whose byte-level pre-tokenizer(s) have ``add_prefix_space = value`` (model2vec
    0.10 sets it to true for every byte-level BPE teacher). The change is in the tokenizer's own JSON, so
    the saved tokenizer.json carries it and model2vec, sentence-transformers and embedlab read it alike."""
    from tokenizers import Tokenizer

    spec = json.loads(backend.to_str())
    nodes = _byte_level_nodes(spec.get("pre_tokenizer"))
    if not nodes:
        kind = (spec.get("pre_tokenizer") or {}).get("type", "none")
        raise ConfigError(
            f"prefix_space applies to a byte-level BPE tokenizer (GPT-2 style); {what}'s pre-tokenizer is {kind}"
        )
    for node in nodes:
        node["add_prefix_space"] = bool(value)
    copy = Tokenizer.from_str(json.dumps(spec))
    copy.no_padding()
    copy.no_truncation()
    return copy


# ---------------------------------------------------------------------------------------------
# The static source module
# ---------------------------------------------------------------------------------------------
@register
class StaticSource(Module):
    """A chain source made of a (vocabulary x dim) table: ``token_embeddings`` are table rows.

    Registered as kind ``static``, which :mod:`embedlab.models.st_compat` maps sentence-transformers'
    ``StaticEmbedding`` type to, so :meth:`Embedder.from_pretrained` finds it through the registry like any
    source. Besides the source protocol it answers the embedder's optional source hooks:
    ``builtin_pooling`` (the saved form pools by itself: no pooling module is saved, the mean head is
    rebuilt on load and no other head may follow), :meth:`from_source`, :meth:`pad`, :meth:`encode_rows`
    (the numpy path of ``encode``: a tokenizer pass and a sparse mean of rows, no torch), :meth:`check_runtime`,
    :meth:`save_embedder` (model2vec's layout) and :meth:`describe_embedder`. ``tokenize`` follows
    model2vec (see the module docstring); ``forward`` looks rows up for the torch path (the server's batches)."""

    kind = "static"
    folder_name = "StaticEmbedding"
    config_keys = ("max_length",)
    is_source = True
    is_decoder = False
    attention = None  # no attention at all: a text is the mean of its tokens' rows
    append_eos = False
    padding_side = "right"
    num_layers = 0
    builtin_pooling = "mean"

    def __init__(
        self,
        vectors: np.ndarray | torch.Tensor,
        tokenizer: Any,
        *,
        source: str,
        max_length: int | None = DEFAULT_MAX_LENGTH,
        hf_tokenizer: Any = None,
        normalize_by_default: bool = False,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        table = (
            torch.as_tensor(np.asarray(vectors, dtype=np.float32))
            if not isinstance(vectors, torch.Tensor)
            else vectors.detach().float()
        )
        if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] == 0:
            raise ConfigError(f"a static table must be a non-empty 2-D matrix; got shape {tuple(table.shape)}")
        if max_length is not None:
            positive_int("max_length", max_length)
        self.backend = backend_tokenizer(tokenizer, source)
        n = vocabulary_size(self.backend)
        if n != table.shape[0]:
            raise ConfigError(f"{source}: the table has {table.shape[0]} rows but the tokenizer {n} tokens")
        self.embedding = nn.Embedding.from_pretrained(table, freeze=True)
        self.source = source
        self.max_length = max_length
        self.unk_id = unknown_token_id(self.backend)
        self.median_token_length = median_token_length(self.backend)
        self._hf_tokenizer = hf_tokenizer
        self.normalize_by_default = normalize_by_default  # what a folder without saved modules means (config.json)
        self.provenance = provenance  # how it was distilled (embedlab_static.json), kept across load and save
        self.config = SimpleNamespace(model_type=MODEL_TYPE, vocab_size=n, max_position_embeddings=None)

    @classmethod
    def from_source(
        cls,
        target: str,
        where: str,
        *,
        attention: str | None = None,
        max_length: int | None = None,
        padding_side: str | None = None,
        **ignored: Any,
    ) -> "StaticSource":
        """Load a static model folder (written by embedlab or by model2vec: its ``weights`` and vocabulary
        ``mapping`` are folded into the table). Options a static model cannot have are one-line errors."""
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        path = Path(target)
        if attention is not None:
            raise ConfigError(f"{where} is a static model: it has no attention mode to set")
        if padding_side is not None:
            raise ConfigError(f"{where} is a static model: padding_side does not apply")
        config = read_json(path / "config.json", ConfigError, "static model config")
        for name in ("model.safetensors", "tokenizer.json"):
            if not (path / name).is_file():
                raise ConfigError(f"{where}: {name} is missing")
        try:
            tensors = load_file(str(path / "model.safetensors"))
            backend = Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception as exc:  # safetensors/tokenizers raise their own error types for corrupt files
            raise ConfigError(f"{where} is corrupt: {str(exc).splitlines()[0]}") from None
        key = "embeddings" if "embeddings" in tensors else "embedding.weight"
        if key not in tensors:
            raise ConfigError(f"{where}: model.safetensors holds no 'embeddings' tensor (found {sorted(tensors)})")
        table = tensors[key].astype(np.float32)
        if "mapping" in tensors:  # model2vec's vocabulary quantization: one shared row per cluster
            table = table[tensors["mapping"].astype(np.int64)]
        if "weights" in tensors:
            table = table * tensors["weights"].astype(np.float32)[:, None]
        provenance = (
            read_json(path / PROVENANCE, ConfigError, "static model provenance")
            if (path / PROVENANCE).is_file()
            else None
        )
        return cls(
            table,
            backend,
            source=where,
            max_length=max_length if max_length is not None else config.get("max_length", DEFAULT_MAX_LENGTH),
            normalize_by_default=bool(config.get("normalize", False)),
            provenance=provenance,
        )

    @property
    def tokenizer(self) -> Any:
        """A transformers fast tokenizer over the same vocabulary (for the server's /tokenize)."""
        if self._hf_tokenizer is None:
            from transformers import PreTrainedTokenizerFast

            unk = self.backend.id_to_token(self.unk_id) if self.unk_id is not None else None
            self._hf_tokenizer = PreTrainedTokenizerFast(
                tokenizer_object=backend_tokenizer(self.backend), unk_token=unk
            )
        return self._hf_tokenizer

    @property
    def hidden_size(self) -> int:
        return int(self.embedding.weight.shape[1])

    @property
    def table(self) -> np.ndarray:
        """The (vocabulary x dim) float32 table as a numpy view (CPU)."""
        return self.embedding.weight.detach().cpu().numpy()

    def num_parameters(self) -> int:
        return int(self.embedding.weight.numel())

    def st_type(self) -> str:
        return st_compat.ST_STATIC_EMBEDDING

    def with_options(self, **changes: Any) -> "StaticSource":
        unknown = set(changes) - {"max_length"}
        if unknown:
            raise ConfigError(f"a static model has no option(s) {sorted(unknown)}; it has: max_length")
        return StaticSource(
            self.embedding.weight,
            self.backend,
            source=self.source,
            max_length=changes.get("max_length", self.max_length),
            hf_tokenizer=self._hf_tokenizer,
            normalize_by_default=self.normalize_by_default,
            provenance=self.provenance,
        )

    def check_runtime(self, runtime: str, dtype: str) -> str:
        """The dtype this source runs at: the table is float32 (``dtype`` is accepted for the common signature
        and ignored); only the torch runtime applies (there is no backbone to run on ONNX Runtime)."""
        if runtime != "torch":
            raise ConfigError(
                f"runtime '{runtime}' needs a transformer backbone; a static model is a lookup table (use runtime torch)"
            )
        return "fp32"

    # -- texts -> ids ----------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], prompts: Sequence[str] | str | None = None) -> Tokenized:
        """Token ids of ``prompts[i] + texts[i]`` as ``model2vec.StaticModel.encode`` makes them. The prompt's
        tokens are averaged like the text's (``prompt_lengths`` are 0): a static model has no instruction
        to leave out, its distillation prompt is already in its rows."""
        n = len(texts)
        prompts = expand_prompts(prompts, n)
        full = [p + t for p, t in zip(prompts, texts)]
        limit = self.max_length
        if limit is not None:
            chars = limit * self.median_token_length
            full = [t[:chars] for t in full]
        ids = [e.ids for e in self.backend.encode_batch_fast(full, add_special_tokens=False)]
        truncated = 0
        if limit is not None:
            truncated = sum(len(x) > limit for x in ids)
            if truncated:
                ids = [x[:limit] for x in ids]
        if self.unk_id is not None:
            unk = self.unk_id
            ids = [[i for i in x if i != unk] if unk in x else x for x in ids]
        return Tokenized(ids=ids, prompt_lengths=[0] * n, truncated=truncated)

    def pad(self, ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids (pad id 0: padding is masked, so any row will do; a tokenizer may have no pad token)."""
        ids = [list(x) for x in ids]
        if (
            max((len(x) for x in ids), default=0) == 0
        ):  # only empty texts: one masked position each, so the mean is the zero vector
            return torch.zeros((len(ids), 1), dtype=torch.long), torch.zeros((len(ids), 1), dtype=torch.long)
        return pad_batch(ids, 0, "right")

    # -- ids -> vectors ------------------------------------------------------------------------
    def forward(self, features: dict[str, Any], output_hidden_states: bool = False) -> dict[str, Any]:
        if output_hidden_states:
            raise ConfigError("a static model has no hidden layers (a head that needs hidden_states cannot follow it)")
        features["token_embeddings"] = self.embedding(features["input_ids"])
        features["pool_mask"] = features["attention_mask"]
        return features

    def mean_rows(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """(len(ids), dim) float32: the mean of each id list's rows; the zero vector for an empty list.
        One sparse (texts x vocabulary) averaging matrix times the table: no (tokens x dim) gather."""
        from scipy.sparse import csr_matrix

        table = self.table
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        indptr = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(indptr[-1]))
        weights = np.repeat((1.0 / np.maximum(lengths, 1)).astype(np.float32), lengths)
        averaging = csr_matrix((weights, flat, indptr), shape=(len(ids), table.shape[0]))
        return np.asarray(averaging @ table, dtype=np.float32)

    def encode_rows(
        self, embedder: Any, texts: Sequence[str], prompt: str, stats: Any, show_progress: ShowProgress
    ) -> np.ndarray:
        """``encode``'s numpy path: (len(texts), output_dim) float32, the chain's modules after the mean
        applied in numpy (:func:`_post`); fills ``stats``. A text with no known token gets the zero vector.
        The torch chain (``forward``) gives the same vectors."""
        n = len(texts)
        stats.max_length = self.max_length or 0
        result = np.zeros((n, embedder.output_dim), dtype=np.float32)
        with progress_bar(show_progress, total=n, desc="encode", unit="text", auto=n >= 100_000) as bar:
            for lo in range(0, n, ENCODE_CHUNK):
                chunk = list(texts[lo : lo + ENCODE_CHUNK])
                tok = self.tokenize(chunk, prompt)
                stats.tokens += sum(tok.lengths)
                stats.truncated += tok.truncated
                stats.batches += 1
                result[lo : lo + len(chunk)] = _post(embedder.chain[2:], self.mean_rows(tok.ids))
                bar.update(len(chunk))
        if stats.truncated:
            log.warning("%d of %d texts were truncated to %d tokens", stats.truncated, n, self.max_length)
        return result

    # -- files -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:  # pragma: no cover - saved by save_embedder
        raise ConfigError("a static source is saved with its embedder (Embedder.save)")

    def save_embedder(
        self, embedder: Any, path: str | os.PathLike, *, provenance: dict[str, Any] | None = None
    ) -> None:
        """Write ``embedder`` in model2vec's layout atomically: config.json, model.safetensors (``embeddings``),
        tokenizer.json, modules.json (sentence-transformers' StaticEmbedding [+ Normalize]), and
        embedlab_static.json (``provenance``, default: the one it was distilled or loaded with)."""
        from safetensors.numpy import save_file

        if embedder.prompts:
            log.warning(
                "the prompts of a static model are not saved (model2vec has none); its rows carry the "
                "distillation prompt already"
            )
        table = saved_table(embedder)
        provenance = provenance if provenance is not None else self.provenance
        with atomic_path(Path(path)) as tmp:
            tmp.mkdir(parents=True)
            save_file({"embeddings": table}, str(tmp / "model.safetensors"))
            self.backend.save(str(tmp / "tokenizer.json"), pretty=False)
            config = {
                "model_type": MODEL_TYPE,
                "architectures": ["StaticModel"],
                "tokenizer_name": (provenance or {}).get("teacher", self.source),
                "apply_pca": (provenance or {}).get("dims"),
                "sif_coefficient": (provenance or {}).get("sif_coefficient"),
                "hidden_dim": int(table.shape[1]),
                "seq_length": 1000000,
                "normalize": embedder.normalize,
                "max_length": self.max_length,
                "pooling": "mean",
                "embedding_dtype": "float32",
            }
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            modules = [{"idx": 0, "name": "0", "path": ".", "type": st_compat.ST_STATIC_EMBEDDING}]
            if embedder.normalize:
                modules.append({"idx": 1, "name": "1", "path": "1_Normalize", "type": st_compat.ST_NORMALIZE_LEGACY})
                (tmp / "1_Normalize").mkdir()
            (tmp / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
            (tmp / "config_sentence_transformers.json").write_text(
                json.dumps(
                    {
                        "__version__": {"embedlab": __version__},
                        "model_type": "SentenceTransformer",
                        "prompts": {},
                        "default_prompt_name": None,
                        "similarity_fn_name": "cosine",
                    },
                    indent=2,
                )
                + "\n"
            )
            if provenance is not None:
                (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")

    def describe_embedder(self, embedder: Any) -> dict[str, Any]:
        """A summary for ``embedlab info``."""
        return {
            "source": self.source,
            "architecture": "static (model2vec): mean of token rows",
            "kind": "static",
            "vocabulary": self.config.vocab_size,
            "output dim": embedder.output_dim,
            "table parameters": f"{self.num_parameters():,}",
            "modules": " -> ".join(m.kind if m.kind != "pooling" else f"pooling:{m.name}" for m in embedder.chain),
            "normalize": embedder.normalize,
            "truncate dim": embedder.truncate_dim,
            "max length": self.max_length,
        }


def _post(modules: Sequence[Module], x: np.ndarray) -> np.ndarray:
    """The modules after the pooling head, on a numpy batch (truncate, normalize; others via torch)."""
    for module in modules:
        if isinstance(module, Truncate):
            x = vectors.truncate(x, module.truncate_dim)
        elif isinstance(module, Normalize):
            x = vectors.normalize(x)
        else:
            with torch.inference_mode():
                x = (
                    module({"sentence_embedding": torch.from_numpy(np.ascontiguousarray(x))})["sentence_embedding"]
                    .float()
                    .numpy()
                )
    return np.ascontiguousarray(x, dtype=np.float32)


def saved_table(embedder: Any) -> np.ndarray:
    """The table a saved static folder holds: the chain's truncation is applied to its columns (the mean
    commutes with it); other modules after pooling, except normalisation, cannot be saved."""
    table = embedder.source.table
    for module in embedder.chain[2:]:
        if isinstance(module, Truncate):
            table = table[:, : module.truncate_dim]
        elif not isinstance(module, Normalize):
            raise ConfigError(f"a static model with a {module.kind!r} module cannot be saved in model2vec's format")
    return np.ascontiguousarray(table, dtype=np.float32)


def is_static(embedder: Any) -> bool:
    """Whether ``embedder``'s source is a static table."""
    return isinstance(getattr(embedder, "source", None), StaticSource)


def build_static(
    vectors: np.ndarray,
    tokenizer: Any,
    *,
    source: str,
    normalize: bool = True,
    max_length: int | None = DEFAULT_MAX_LENGTH,
    truncate_dim: int | None = None,
) -> Embedder:
    """A static embedder over ``vectors`` (one row per token id of ``tokenizer``)."""
    src = StaticSource(vectors, tokenizer, source=source, max_length=max_length)
    return Embedder.build(src, MeanPooling(src.hidden_size), normalize=normalize, truncate_dim=truncate_dim).eval()


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def is_static_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder in model2vec's layout (config.json with ``model_type: model2vec``)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == MODEL_TYPE
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def load_static(path: str | os.PathLike, **options: Any) -> Embedder:
    """Load a static model folder: :meth:`Embedder.from_pretrained` (which finds :class:`StaticSource`
    through the registry), refusing a folder that is not one."""
    if not is_static_dir(path):
        raise ConfigError(f"{path} is not a static model (config.json with model_type {MODEL_TYPE!r})")
    return Embedder.from_pretrained(path, **options)


# ---------------------------------------------------------------------------------------------
# Distillation
# ---------------------------------------------------------------------------------------------
def token_sequences(teacher: Embedder, prompt: str = "") -> tuple[list[list[int]], int]:
    """One id sequence per vocabulary token: the teacher's leading special tokens, the prompt's tokens, the
    token, the trailing special tokens (and EOS where the teacher appends it). Returns the sequences and
    the prompt's length in tokens (leading specials included, as :mod:`embedlab.tokenize` counts it;
    0 without a prompt)."""
    tokenizer = teacher.tokenizer
    backend = backend_tokenizer(tokenizer)
    n = vocabulary_size(backend)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    probe = "a"
    enc = tokenizer(probe, add_special_tokens=True)["input_ids"]
    content = [i for i, t in enumerate(enc) if t not in special]
    if not content:  # "a" is unknown/special here: probe with the first ordinary vocabulary token
        probe = next(tok for tok, i in sorted(backend.get_vocab().items(), key=lambda kv: kv[1]) if i not in special)
        enc = tokenizer(probe, add_special_tokens=True)["input_ids"]
        content = [i for i, t in enumerate(enc) if t not in special] or [len(enc)]
    left, right = list(enc[: content[0]]), list(enc[content[-1] + 1 :])
    prompt_ids = list(tokenizer(prompt.rstrip(), add_special_tokens=False)["input_ids"]) if prompt.strip() else []
    eos = tokenizer.eos_token_id if teacher.append_eos else None
    sequences = []
    for token_id in range(n):
        seq = [*left, *prompt_ids, token_id, *right]
        if eos is not None and seq[-1] != eos:
            seq.append(eos)
        sequences.append(seq)
    return sequences, (len(left) + len(prompt_ids)) if prompt_ids else 0


def token_vectors(
    teacher: Embedder,
    *,
    prompt_name: str | None = None,
    batch_size: int = 512,
    show_progress: ShowProgress = False,
    rows: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """(vocabulary, width) float32: each token alone through the teacher's chain without its final
    normalisation (prompt, attention, pooling head, projection and truncation included). ``rows`` (token
    ids) computes only those rows, in that order (a long pass split into resumable parts)."""
    prompt = teacher.resolve_prompt(prompt_name)
    sequences, prompt_length = token_sequences(teacher, prompt)
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(sequences)):
            raise ConfigError(f"token rows must be ids in 0..{len(sequences) - 1}")
        sequences = [sequences[i] for i in rows]
    chain = teacher.with_modules([m for m in teacher.chain if not isinstance(m, Normalize)])
    out = np.zeros((len(sequences), chain.output_dim), dtype=np.float32)
    order = np.argsort([len(s) for s in sequences], kind="stable")
    device = teacher.device
    was_training = teacher.training
    teacher.eval()
    try:
        with (
            torch.inference_mode(),
            progress_bar(show_progress, total=len(sequences), desc="distil", unit="token") as bar,
        ):
            for lo in range(0, len(order), batch_size):
                idx = order[lo : lo + batch_size]
                features = chain.batch_features([sequences[i] for i in idx], [prompt_length] * len(idx), device)
                out[idx] = chain.forward(features)["sentence_embedding"].float().cpu().numpy()
                bar.update(len(idx))
    finally:
        teacher.train(was_training)
    if not np.isfinite(out).all():
        raise EmbedlabError("the teacher produced NaN/inf token vectors: check its weights and dtype")
    return out


def pca_reduce(vectors: np.ndarray, dims: int | None, fit_rows: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Centre and project on the top ``dims`` principal axes (eigenvectors of the covariance, largest
    first), fitted on the rows ``fit_rows`` selects (default: all) and applied to every row; ``dims=None``
    returns the vectors unchanged. Returns (reduced, explained variance ratio of the fitted rows)."""
    if dims is None:
        return np.asarray(vectors, dtype=np.float32), 1.0
    n, width = vectors.shape
    at_most("dims", positive_int("dims", dims), width, "the teacher's width")
    fit = np.asarray(vectors, dtype=np.float64)
    fit = fit if fit_rows is None else fit[fit_rows]
    at_most("dims", dims, fit.shape[0], "the number of tokens in the vocabulary")
    from sklearn.decomposition import PCA

    pca = PCA(n_components=dims, svd_solver="covariance_eigh").fit(fit)
    reduced = pca.transform(np.asarray(vectors, dtype=np.float64))
    return reduced.astype(np.float32), float(pca.explained_variance_ratio_.sum())


def zipf_weights(n: int, sif_coefficient: float = DEFAULT_SIF, ranked: np.ndarray | None = None) -> np.ndarray:
    """a / (a + p_r) with p_r proportional to 1/(r+2), r the token's rank in id order (Zipf's law on a
    frequency-sorted vocabulary). With ``ranked`` (a bool mask) only those tokens are ranked (r = 0, 1, ...
    over them); the others, which no text produces, get weight 1."""
    _check_sif(sif_coefficient)
    ranked = np.ones(n, dtype=bool) if ranked is None else np.asarray(ranked, dtype=bool)
    inv = 1.0 / np.arange(2, int(ranked.sum()) + 2, dtype=np.float64)
    weights = np.ones(n, dtype=np.float64)
    weights[ranked] = sif_coefficient / (sif_coefficient + inv / inv.sum())
    return weights


def token_counts(backend: Any, texts: Sequence[str], vocab: int) -> np.ndarray:
    """How often each token id occurs in ``texts`` (tokenized without special tokens)."""
    counts = np.zeros(vocab, dtype=np.int64)
    for lo in range(0, len(texts), ENCODE_CHUNK):
        for enc in backend.encode_batch_fast(list(texts[lo : lo + ENCODE_CHUNK]), add_special_tokens=False):
            if enc.ids:
                counts += np.bincount(np.asarray(enc.ids, dtype=np.int64), minlength=vocab)[:vocab]
    return counts


def sif_weights(counts: np.ndarray, sif_coefficient: float = DEFAULT_SIF) -> np.ndarray:
    """a / (a + p(w)) with p(w) the token's relative frequency in a corpus (Arora et al. 2017)."""
    _check_sif(sif_coefficient)
    total = int(counts.sum())
    if total == 0:
        raise InputError("the SIF corpus gives no tokens: it needs real text")
    return sif_coefficient / (sif_coefficient + counts.astype(np.float64) / total)


def _check_sif(a: float) -> None:
    if isinstance(a, str):  # finite_float reads strings; a setting here is a number
        raise ConfigError(f"sif_coefficient must be a number; got {a!r}")
    finite_float("sif_coefficient", a, low=0.0, high=1.0, low_open=True, high_open=True)


def distill(
    teacher: Embedder | str,
    *,
    dims: int | None = DEFAULT_DIMS,
    corpus: Sequence[str] | str | os.PathLike | None = None,
    weighting: str | None = None,
    sif_coefficient: float = DEFAULT_SIF,
    prompt_name: str | None = None,
    normalize: bool | None = None,
    prefix_space: bool | None = None,
    vectors: np.ndarray | None = None,
    batch_size: int = 512,
    show_progress: ShowProgress = False,
) -> tuple[Embedder, dict[str, Any]]:
    """Distil ``teacher`` (an Embedder or a model name) into a static embedder (a :class:`StaticSource` chain).

    ``dims``: PCA width (None: no PCA). ``weighting``: ``zipf`` (default without a corpus), ``sif`` (default
    with ``corpus``: texts, or a file of one text per line / JSONL with ``text``) or ``none``.
    ``normalize`` defaults to the teacher's. ``prefix_space`` (byte-level BPE teachers only): whether the
    student's tokenizer adds a space before a text, so its first word is cut into word-start pieces (``Ġword``)
    like every other word (model2vec 0.10 always sets it); None keeps the teacher tokenizer's own setting.
    It changes only the student's tokenizer, never the token vectors. ``vectors`` reuses token vectors from
    :func:`token_vectors` (e.g. a cache). Returns the model and its provenance (saved as ``embedlab_static.json``)."""
    from embedlab.corpus import read_texts

    start = time.perf_counter()
    if isinstance(teacher, (str, os.PathLike)):
        teacher = Embedder.from_pretrained(teacher)
    if is_static(teacher):
        raise ConfigError("the teacher is already a static model: distil the model it came from")
    if teacher.output_kind != "dense":
        raise ConfigError(
            f"the teacher gives {teacher.output_kind} vectors (pooling '{teacher.head.name}'): static distillation "
            "averages dense token vectors, so it needs a dense teacher"
        )
    weighting = weighting or ("sif" if corpus is not None else "zipf")
    choice("weighting", weighting, ("zipf", "sif", "none"))
    if weighting == "sif" and corpus is None:
        raise ConfigError("SIF weighting needs a corpus (--corpus FILE)")
    if weighting != "none":
        _check_sif(sif_coefficient)
    if prefix_space is not None and not isinstance(prefix_space, bool):
        raise ConfigError(f"prefix_space must be true, false or None (the teacher's setting); got {prefix_space!r}")
    backend = backend_tokenizer(teacher.tokenizer)
    teacher_prefix_space = adds_prefix_space(backend)
    if prefix_space is not None:
        backend = with_prefix_space(backend, prefix_space)  # fails before the long pass for a non-byte-level teacher
    vocab = vocabulary_size(backend)
    width = teacher.output_dim
    if dims is not None:
        at_most("dims", positive_int("dims", dims), width, "the teacher's width")
    corpus_info: dict[str, Any] | None = None
    texts: list[str] | None = None
    if corpus is not None:
        if isinstance(corpus, (str, os.PathLike)):
            texts = read_texts(corpus)
            corpus_info = {"path": str(corpus), "sha256": file_sha256(corpus)}
        else:
            texts = list(corpus)
            if not texts:
                raise InputError("the SIF corpus is empty: give at least one text")
            corpus_info = {"path": None}
    prompt = teacher.resolve_prompt(prompt_name)  # an unknown name fails before the long pass
    if vectors is None:
        vectors = token_vectors(teacher, prompt_name=prompt_name, batch_size=batch_size, show_progress=show_progress)
    elif vectors.shape != (vocab, width):
        raise ConfigError(f"cached token vectors have shape {vectors.shape}, the teacher gives ({vocab}, {width})")
    emittable = emittable_tokens(backend)
    reduced, explained = pca_reduce(vectors, dims, fit_rows=emittable)
    if weighting == "zipf":
        weights = zipf_weights(vocab, sif_coefficient, ranked=emittable)
    elif weighting == "sif":
        counts = token_counts(backend, texts or [], vocab)
        weights = sif_weights(counts, sif_coefficient)
        corpus_info.update(texts=len(texts or []), tokens=int(counts.sum()), tokens_seen=int((counts > 0).sum()))
    else:
        weights = np.ones(vocab)
    table = (reduced * weights[:, None]).astype(np.float32)
    norm = teacher.normalize if normalize is None else bool(normalize)
    student = build_static(table, backend, source=f"static distillation of {teacher.source.source}", normalize=norm)
    provenance = {
        "embedlab_version": __version__,
        "teacher": teacher.source.source,
        "teacher_fingerprint": teacher.fingerprint(),
        "teacher_pooling": teacher.head.name,
        "teacher_attention": teacher.attention,
        "prompt_name": prompt_name,
        "prompt": prompt,
        "dims": dims,
        "explained_variance": round(explained, 6),
        "weighting": weighting,
        "sif_coefficient": sif_coefficient if weighting != "none" else None,
        "corpus": corpus_info,
        "vocabulary": vocab,
        "emittable_tokens": int(emittable.sum()),
        "normalize": norm,
        "prefix_space": prefix_space if prefix_space is not None else teacher_prefix_space,
        "teacher_prefix_space": teacher_prefix_space,
        "seconds": round(time.perf_counter() - start, 2),
    }
    student.source.provenance = provenance  # saved with it (embedlab_static.json)
    return student, provenance


__all__ = [
    "StaticSource",
    "adds_prefix_space",
    "build_static",
    "distill",
    "emittable_tokens",
    "is_static",
    "is_static_dir",
    "load_static",
    "pca_reduce",
    "saved_table",
    "sif_weights",
    "token_counts",
    "token_sequences",
    "token_vectors",
    "with_prefix_space",
    "zipf_weights",
]
