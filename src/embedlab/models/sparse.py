"""Sparse lexical heads: token states -> weights over the vocabulary (``sparse_embedding``).

:class:`SpladeHead` is SPLADE v2 ("SPLADE-max", Formal et al. 2021, arXiv 2109.10086): the masked-LM
logits ``w_ij`` of every real token i over every vocabulary entry j give ``w_j = max_i log(1 + ReLU(w_ij))``
(``pooling_strategy="sum"`` is SPLADE v1's sum over i). The score of a query and a document is the dot
product of their vectors.

Where the vocabulary logits come from:

* **An encoder (BERT, MiniLM)**: the model's own MLM head (transform = dense + activation + LayerNorm,
  then a decoder tied to the word embeddings, plus a bias), built by ``AutoModelForMaskedLM`` from the
  backbone's config, so its arithmetic is transformers' own. When the checkpoint holds the head's weights
  (``cls.*`` in its safetensors: a ``BertForMaskedLM``, or a model saved by this head) they are loaded;
  the packaged all-MiniLM-L6-v2 ships only ``BertModel`` weights, so there the head is initialised:
  **a named deviation**, the transform's dense layer starts as the identity (transformers' own N(0, 0.02)
  init would make every logit noise), so ``logits = LayerNorm(GELU(h)) · Eᵀ + b`` with the LayerNorm at 1/0
  and the decoder tied to the word-embedding matrix, close to the training-free "tied surrogate" ``h · Eᵀ``
  (methods-3 §1); the bias starts at ``b_j = -4·‖e_j‖`` (:data:`INIT_BIAS_NORMS`) so the vectors are sparse
  from the first step: measured on two SciFact-like claims, 102 and 188 active entries led by the claims' own
  words ("vitamin", "multiple", "deficiency", ...), against ~29,700 of 30,522 with a zero bias. Every load gives the same head (the rest of transformers' init is drawn with
  seed 0). It must still be trained before its vectors mean much (a warning says so).
* **A decoder (SmolLM2, Llama, ...)**: the tied LM head, ``logits = h · Eᵀ`` over the final-normed states,
  with the tokenizer's special and added tokens masked out. These logits predict the *next* token, not
  the token at i (methods-3 §1): the deviation is named ``splade`` on a causal backbone and is the
  measured-cost case of docs/sparse.md.

Saved in sentence-transformers' ``SparseEncoder`` layout for an encoder: the root holds the whole
``*ForMaskedLM`` checkpoint (written by :meth:`SpladeHead.save_root`) with ``transformer_task: fill-mask``
in ``sentence_bert_config.json``, and ``1_SpladePooling/config.json`` is ST's ``SpladePooling`` config, so
``SparseEncoder(path)`` loads it and gives the same vectors.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from embedlab.errors import PoolingError
from embedlab.io import atomic_path, read_json
from embedlab.models import st_compat
from embedlab.models.modules import CONFIG_NAME, WEIGHTS_NAME, load_weights, register
from embedlab.models.pooling import POOLING_HEADS, PoolingHead
from embedlab.validation import choice, positive_int

log = logging.getLogger(__name__)

POOLING_STRATEGIES = ("max", "sum")
# A fresh MLM head's bias: -4 times each vocabulary row's norm. With the identity transform on all-MiniLM-L6-v2
# this leaves ~100-200 active entries per sentence, led by its own words (0 would leave ~29,700 of 30,522).
INIT_BIAS_NORMS = 4.0


def sparse_slots(dense: torch.Tensor) -> dict[str, Any]:
    """``sparse_embedding`` (:mod:`embedlab.models.features`) of (B, V) non-negative weights: the K = most
    non-zeros of any row, index -1 in the unused slots."""
    k = max(int((dense != 0).sum(dim=1).max()), 1) if dense.numel() else 1
    values, indices = dense.float().topk(min(k, dense.shape[1]), dim=1)
    indices = torch.where(values != 0, indices, torch.full_like(indices, -1))
    return {"indices": indices, "values": values, "vocab_size": int(dense.shape[1])}


def _checkpoint_head_state(model: Any, prefix: str) -> dict[str, torch.Tensor]:
    """The ``prefix``-named tensors (the MLM head's) of the checkpoint ``model`` was loaded from, if any."""
    from safetensors import safe_open

    root = Path(str(getattr(model, "name_or_path", "") or ""))
    if not root.is_dir():
        return {}
    files = [root / "model.safetensors"]
    index = root / "model.safetensors.index.json"
    if index.is_file():
        files = sorted({root / f for f in json.loads(index.read_text()).get("weight_map", {}).values()})
    state: dict[str, torch.Tensor] = {}
    for f in files:
        if not f.is_file():
            continue
        with safe_open(str(f), "pt") as handle:
            for key in handle.keys():
                if key.startswith(prefix):
                    state[key[len(prefix) :]] = handle.get_tensor(key)
    return state


@register
class SpladeHead(PoolingHead):
    """SPLADE's max-pooled ``log(1 + ReLU(logits))`` over the vocabulary (see the module docstring).

    Writes ``sentence_embedding`` (B, V) (what the training losses and a dot product read) and, outside
    training, ``sparse_embedding`` (the slots :func:`embedlab.vectors.from_features` reads). It ends the
    chain: a projection, truncation or normalisation after it is refused."""

    kind = "splade"
    folder_name = "SpladePooling"
    name = "splade"
    trainable = True
    output_kind: ClassVar[str] = "sparse"
    st_model_type: ClassVar[str] = "SparseEncoder"
    similarity: ClassVar[str] = "dot"
    description = "SPLADE v2: max over tokens of log(1+ReLU(MLM logits)), a weight per vocabulary entry"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "small": {},
        "paper": {},
    }  # no widths: the MLM head's are the model's

    def __init__(self, input_dim: int, pooling_strategy: str = "max") -> None:
        super().__init__(input_dim)
        self.pooling_strategy = choice("splade: 'pooling_strategy'", pooling_strategy, POOLING_STRATEGIES)
        self.mlm: nn.Module | None = None  # an encoder's MLM head (transformers' own module), bound in check()
        self.mode: str | None = None  # "mlm" (encoder) or "tied" (a decoder's tied LM head)
        self.vocab_size: int | None = None
        self._embeddings: list[nn.Parameter] = []  # the tied decoder matrix (not registered twice)
        self.register_buffer("masked_ids", torch.empty(0, dtype=torch.long), persistent=False)

    # -- binding to the backbone ---------------------------------------------------------------
    def check(self, source: Any, input_dim: int) -> None:
        super().check(source, input_dim)
        model = getattr(source, "model", None)
        if model is None or not hasattr(model, "get_input_embeddings"):
            raise PoolingError(f"pooling 'splade' needs a transformer backbone with word embeddings; got {source.kind}")
        embeddings = model.get_input_embeddings().weight
        self.vocab_size = int(embeddings.shape[0])
        if source.is_decoder:
            self.mode = "tied"
            self._embeddings = [embeddings]
            tok = source.tokenizer
            special = set(getattr(tok, "all_special_ids", None) or []) | set(
                getattr(tok, "added_tokens_decoder", {}) or {}
            )
            self.masked_ids = torch.tensor(sorted(i for i in special if i < self.vocab_size), dtype=torch.long)
            return
        self.mode = "mlm"
        if self.mlm is None:
            self.mlm = self._build_mlm_head(source, model)
        mlm: Any = self.mlm
        mlm.predictions.decoder.weight = embeddings  # tied, as in BERT pre-training

    def _build_mlm_head(self, source: Any, model: Any) -> nn.Module:
        from transformers import AutoModelForMaskedLM

        try:
            with torch.random.fork_rng(devices=[]):  # a fresh head is the same on every load (seed 0)
                torch.manual_seed(0)
                full = AutoModelForMaskedLM.from_config(model.config)
        except ValueError as exc:
            raise PoolingError(
                f"pooling 'splade': {model.config.model_type} has no masked-LM head in transformers ({exc})"
            ) from None
        head = getattr(full, "cls", None)
        if head is None or not hasattr(head, "predictions"):
            raise PoolingError(
                f"pooling 'splade' supports BERT-style MLM heads (cls.predictions); {type(full).__name__} has none"
            )
        state = _checkpoint_head_state(model, "cls.")
        state.pop("predictions.decoder.weight", None)  # tied to the word embeddings
        if state:
            missing, unexpected = head.load_state_dict(state, strict=False)
            tied = ("predictions.decoder.weight", "predictions.decoder.bias")  # = word embeddings, predictions.bias
            missing = [k for k in missing if k not in tied]
            if missing or unexpected:
                raise PoolingError(f"splade: the checkpoint's MLM head does not fit ({missing or unexpected})")
        else:
            # transformers' N(0, 0.02) transform would turn every state into noise; the identity keeps
            # logits = LayerNorm(GELU(h)) · Eᵀ, close to the training-free tied surrogate h · Eᵀ (methods-3 §1)
            dense = head.predictions.transform.dense
            rows = model.get_input_embeddings().weight.detach()
            with torch.no_grad():
                dense.weight.copy_(torch.eye(dense.weight.shape[0], dtype=dense.weight.dtype))
                dense.bias.zero_()
                # an entry fires only where its logit exceeds INIT_BIAS_NORMS of its row's norm: sparse from step 0
                head.predictions.bias.copy_(-INIT_BIAS_NORMS * rows.norm(dim=1).to(head.predictions.bias.dtype))
            log.warning(
                "splade on %s: the checkpoint has no MLM head, so it starts as the identity transform (then GELU and "
                "LayerNorm), the decoder tied to the word embeddings and a bias of -%g row norms; train it before use",
                source.source,
                INIT_BIAS_NORMS,
            )
        return head.to(model.get_input_embeddings().weight.device)

    @property
    def embedding_dim(self) -> int:
        if self.vocab_size is None:
            raise PoolingError("pooling 'splade' is not bound to a backbone yet")
        return self.vocab_size

    def get_config(self) -> dict[str, Any]:
        return {"input_dim": self.input_dim, "pooling_strategy": self.pooling_strategy}

    # -- forward -------------------------------------------------------------------------------
    def logits(self, features: dict[str, Any]) -> torch.Tensor:
        h = features["token_embeddings"]
        if self.mode == "mlm":
            assert self.mlm is not None
            return self.mlm(h)
        if self.mode == "tied":
            logits = h @ self._embeddings[0].to(h.dtype).T
            if self.masked_ids.numel():
                logits[..., self.masked_ids] = float("-inf")
            return logits
        raise PoolingError("pooling 'splade' is not bound to a backbone yet")

    def pool(self, features: dict[str, Any]) -> torch.Tensor:
        weights = torch.log1p(torch.relu(self.logits(features)))
        weights = weights * features["attention_mask"].unsqueeze(-1).to(weights.dtype)  # padding gives 0
        return weights.amax(dim=1) if self.pooling_strategy == "max" else weights.sum(dim=1)

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        dense = self.pool(features)
        features["sentence_embedding"] = dense
        if not self.training:
            features["sparse_embedding"] = sparse_slots(dense)
        return features

    def vocabulary(self, tokenizer: Any) -> list[str]:
        """The names of the vector's entries: the token strings."""
        return list(tokenizer.convert_ids_to_tokens(list(range(self.embedding_dim))))

    # -- save / load ---------------------------------------------------------------------------
    def st_type(self) -> str:
        return st_compat.ST_SPLADE_POOLING if self.mode == "mlm" else "embedlab.splade"

    def saved_config(self) -> dict[str, Any]:
        return {
            "pooling_strategy": self.pooling_strategy,
            "activation_function": "relu",  # sentence-transformers' name for log(1 + ReLU(x))
            "embedding_dimension": self.vocab_size,
        }

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            tmp.mkdir(parents=True)
            (tmp / CONFIG_NAME).write_text(json.dumps(self.saved_config(), indent=2) + "\n")

    def save_root(self, root: Path, source: Any) -> None:
        """Rewrite the root (the backbone's folder, already written) as the whole ``*ForMaskedLM``
        checkpoint with this head, and mark it ``fill-mask`` for sentence-transformers."""
        if self.mode != "mlm":
            return
        from transformers import AutoModelForMaskedLM

        full = AutoModelForMaskedLM.from_config(source.model.config)
        setattr(full, full.base_model_prefix, source.model)
        full.cls = self.mlm
        full.save_pretrained(str(root))
        st_file = root / "sentence_bert_config.json"
        st_config = json.loads(st_file.read_text()) if st_file.is_file() else {}
        st_config.update(
            {
                "transformer_task": "fill-mask",
                "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
                "module_output_name": "token_embeddings",
            }
        )
        st_file.write_text(json.dumps(st_config, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "SpladeHead":
        """From sentence-transformers' ``SpladePooling`` folder (or embedlab's); the MLM head's weights are
        read from the backbone's checkpoint when the head is bound (:meth:`check`)."""
        path = Path(path)
        config = read_json(path / CONFIG_NAME, PoolingError, "splade config")
        if config.get("activation_function", "relu") != "relu":
            raise PoolingError(
                f"{path}: splade activation {config.get('activation_function')!r} is not supported (relu = log1p(relu))"
            )
        root_config = read_json(path.parent / "config.json", PoolingError, "backbone config")
        width = root_config.get("hidden_size") or root_config.get("n_embd") or root_config.get("d_model")
        if not isinstance(width, int):
            raise PoolingError(f"{path.parent}/config.json names no hidden size")
        return cls(width, pooling_strategy=config.get("pooling_strategy", "max"))


DENSE_TOKEN = "[dense:{}]"  # the name of the dense part's i-th entry in a DupMAE vector's vocabulary


@register
class DupMAEHead(SpladeHead):
    """DupMAE's fine-tuning representation (RetroMAE v2, Xiao & Liu 2022, Eq. 10-12), as one sparse vector.

    * dense part ``ĥ = W·h_[CLS]`` (``dense_dim``, 384 in the paper; ``W`` starts as the identity when square);
    * sparse part: the raw MLM logits (no ReLU, no log: the paper's) of the ordinary tokens (every real token
      but [CLS]), max-pooled over the tokens into ``μ``, of which the ``top_k`` largest entries are kept (384
      in the paper, so the two parts are about the same size);
    * the vector is ``[ĥ ; top_k(μ)]`` over ``dense_dim + V`` entries, written as ``sentence_embedding`` (dense,
      zeros outside the kept entries; what training reads) and ``sparse_embedding`` (its non-zeros); scored by
      the dot product, ``ĥ_qᵀĥ_d + Σ μ_q[i] μ_d[i]``.

    **A named deviation**: the paper's sum runs over the document's top-k indices with the query's *full* μ;
    here both sides keep their top-k, so it runs over the indices in both sets. Queries and documents are then
    encoded alike, as every other embedlab model, and training sees the score it is served with. The MLM head
    is the encoder's own (as for :class:`SpladeHead`); ``W`` is this module's weight. Encoders only (it reads
    [CLS]). Saved as ``embedlab.dupmae``: sentence-transformers has no such module."""

    kind = "dupmae"
    folder_name = "DupMAE"
    name = "dupmae"
    needs_cls_token = True
    st_model_type: ClassVar[str] = "SentenceTransformer"
    description = "DupMAE: [CLS] reduced to dense_dim, plus the top-k of the max-pooled raw MLM logits (RetroMAE v2)"

    def __init__(self, input_dim: int, dense_dim: int = 384, top_k: int = 384) -> None:
        super().__init__(input_dim)
        self.dense_dim = positive_int("dupmae: 'dense_dim'", dense_dim)
        self.top_k = positive_int("dupmae: 'top_k'", top_k)
        self.reduce = nn.Linear(input_dim, dense_dim, bias=False)
        if dense_dim == input_dim:
            with torch.no_grad():
                self.reduce.weight.copy_(torch.eye(input_dim))

    def check(self, source: Any, input_dim: int) -> None:
        super().check(source, input_dim)  # PoolingHead.check refuses a decoder: there is no [CLS]
        assert self.vocab_size is not None
        self.vocab_size = self.dense_dim + self.vocab_size  # [ĥ ; μ]

    @property
    def vocabulary_size(self) -> int:
        assert self.vocab_size is not None
        return self.vocab_size - self.dense_dim

    def get_config(self) -> dict[str, Any]:
        return {"input_dim": self.input_dim, "dense_dim": self.dense_dim, "top_k": self.top_k}

    def pool(self, features: dict[str, Any]) -> torch.Tensor:
        h = features["token_embeddings"]
        dense = self.reduce(h[:, 0])
        ordinary = features["attention_mask"].bool().clone()
        ordinary[:, 0] = False  # the [CLS] position is not an ordinary token
        logits = self.logits(features).masked_fill(~ordinary.unsqueeze(-1), -1000.0)  # as RetroMAE's code masks
        mu = logits.amax(dim=1)
        values, indices = mu.topk(min(self.top_k, mu.shape[1]), dim=1)
        kept = torch.zeros_like(mu).scatter(1, indices, values)
        return torch.cat([dense.to(kept.dtype), kept], dim=1)

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        full = self.pool(features)
        features["sentence_embedding"] = full
        if not self.training:
            k = min(self.top_k, full.shape[1] - self.dense_dim)
            values, indices = full[:, self.dense_dim :].float().abs().topk(k, dim=1)
            values = full[:, self.dense_dim :].float().gather(1, indices)
            dense_idx = torch.arange(self.dense_dim, device=full.device).expand(len(full), -1)
            features["sparse_embedding"] = {
                "indices": torch.cat([dense_idx, indices + self.dense_dim], dim=1),
                "values": torch.cat([full[:, : self.dense_dim].float(), values], dim=1),
                "vocab_size": int(full.shape[1]),
            }
        return features

    def vocabulary(self, tokenizer: Any) -> list[str]:
        """The names of the vector's entries: ``[dense:i]`` for the dense part, then the token strings."""
        tokens = tokenizer.convert_ids_to_tokens(list(range(self.vocabulary_size)))
        return [DENSE_TOKEN.format(i) for i in range(self.dense_dim)] + list(tokens)

    def st_type(self) -> str:
        return "embedlab.dupmae"

    def saved_config(self) -> dict[str, Any]:
        return self.get_config()

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        with atomic_path(path) as tmp:
            tmp.mkdir(parents=True)
            (tmp / CONFIG_NAME).write_text(json.dumps(self.saved_config(), indent=2) + "\n")
            save_file({"reduce.weight": self.reduce.weight.detach().contiguous().cpu()}, str(tmp / WEIGHTS_NAME))

    @classmethod
    def load(cls, path: str | Path) -> "DupMAEHead":
        path = Path(path)
        config = read_json(path / CONFIG_NAME, PoolingError, "dupmae config")
        if not isinstance(config, dict) or set(config) - {"input_dim", "dense_dim", "top_k"}:
            raise PoolingError(f"{path}: a dupmae config has input_dim, dense_dim and top_k; got {config!r}")
        head = cls(**config)
        state = load_weights(path / WEIGHTS_NAME, "dupmae", PoolingError)
        if tuple(state.get("reduce.weight", torch.empty(0)).shape) != tuple(head.reduce.weight.shape):
            raise PoolingError(f"{path}: the dupmae weights do not fit dense_dim {head.dense_dim}")
        head.reduce.load_state_dict({"weight": state["reduce.weight"]})
        return head


POOLING_HEADS[SpladeHead.name] = SpladeHead
POOLING_HEADS[DupMAEHead.name] = DupMAEHead

__all__ = ["DENSE_TOKEN", "POOLING_STRATEGIES", "DupMAEHead", "SpladeHead", "sparse_slots"]
