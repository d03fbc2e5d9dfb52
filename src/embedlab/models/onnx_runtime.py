"""ONNX Runtime for the backbone: ``encode(..., runtime="onnx")``, ``--runtime onnx`` in the CLI and server.

The source's Hugging Face model is exported once to ONNX (``torch.onnx.export`` with the TorchScript
exporter, ``dynamo=False``, opset 17; inputs ``input_ids`` and ``attention_mask`` with dynamic batch and
sequence axes, output ``last_hidden_state``) from a deep copy switched to *eager* attention: the eager
attention graph is the pattern ONNX Runtime's transformer optimizer recognises, while the SDPA graph
is not fused. Then:

- **BERT family** (``model_type`` in :data:`BERT_FAMILY`: BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA,
  DistilBERT): ``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")`` fuses the
  embeddings + LayerNorm, each self-attention block (one ``Attention`` op), residual + LayerNorm
  (``SkipLayerNormalization``) and bias + GELU; on minilm-l6 that is 1 EmbedLayerNorm, 6 Attention,
  12 SkipLayerNorm and 6 BiasGelu. With right padding the fused attention reads the sequence lengths
  (mask index); a left-padded encoder keeps the raw 2-D mask.
- **Every other architecture** (decoders such as Llama/SmolLM2, bidirectional or causal): the raw export,
  with only ONNX Runtime's own graph optimisations (``ORT_ENABLE_ALL``, applied when the session loads).

After the build, the graph is checked against the torch model on a padded probe batch of two other
shapes (per-token cosine >= 0.9999 at every unpadded position); a fused graph that fails the check is
replaced by the raw export, and a raw export that fails is refused with a :class:`ConfigError`.

``int8=True`` quantises the checked fp32 graph with ``onnxruntime.quantization.quantize_dynamic``
(int8 weights per output channel with 7-bit range, which avoids the u8s8 saturation of AVX2/AVX-512 CPUs
without VNNI; activations quantised per batch), so ``runtime="onnx"`` with ``dtype="int8"`` is supported.
It is approximate, like the torch int8 path: docs/encode_throughput.md measures both.

The .onnx file is cached under ``$EMBEDLAB_CACHE/onnx/`` as ``<fingerprint>-<key>[-int8].onnx``, the key
:func:`embedlab.io.cache_key` over :meth:`Embedder.fingerprint` (config + every weight of the source),
the precision (fp32/int8) and the ONNX Runtime version, written atomically with a ``.json`` sidecar
holding its SHA-256 (an integrity check, not a key); a file whose digest does not match or that ONNX
Runtime cannot load is rebuilt, not trusted. Files of the older ``<fingerprint>-ort<version>[-int8].onnx``
layout are never read (they miss) and can be deleted. The session runs on CPU with ``torch.get_num_threads()``
intra-op threads and one inter-op thread.

Limits: CPU only; the graph returns the last hidden state only, so a chain whose head needs every
layer's hidden states (``multi_layer`` pooling) is refused (use ``runtime="torch"``); no gradients
(inference only); models over 2 GB (the protobuf limit of a single .onnx file) are not supported.
Needs the ``onnx`` extra: ``pip install 'embedlab[onnx]'`` (onnxruntime, and onnx for the optimizer).
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from embedlab._version import __version__
from embedlab.errors import ConfigError
from embedlab.io import atomic_path, cache_key, file_sha256
from embedlab.settings import cache_dir

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnx")
BERT_FAMILY = ("bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert")
OPSET = 17
MIN_PROBE_COSINE = 0.9999
INSTALL_HINT = "pip install 'embedlab[onnx]'"


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a one-line error saying how to install it."""
    try:
        import onnx  # noqa: F401  (the transformer optimizer and the quantiser read and write ONNX protos)
        import onnxruntime
    except ImportError:
        raise ConfigError(f"runtime 'onnx' needs onnxruntime and onnx: {INSTALL_HINT}") from None
    return onnxruntime


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime '{runtime}'; choose one of {', '.join(RUNTIMES)}")
    return runtime


def check_exportable(embedder: Any) -> None:
    """One-line errors for what the ONNX runtime cannot run: a source without a transformer, a model
    off the CPU, a module that needs all hidden states."""
    source = embedder.source
    if not isinstance(getattr(source, "model", None), nn.Module) or not hasattr(source, "with_options"):
        raise ConfigError(
            f"runtime 'onnx' needs a transformer backbone; this model's source is {type(source).__name__}"
        )
    if embedder.device.type != "cpu":
        raise ConfigError(f"runtime 'onnx' runs on CPU only; the model is on {embedder.device}")
    needs = [getattr(m, "name", m.kind) for m in embedder.chain[1:] if getattr(m, "needs_hidden_states", False)]
    if needs:
        raise ConfigError(
            f"runtime 'onnx' returns the last hidden state only, and the {needs[0]} head needs every "
            "layer's hidden states: use runtime 'torch'"
        )


# ------------------------------------------------------------------------------------------------
class OnnxModel(nn.Module):
    """Stands in for the Hugging Face model inside a :class:`~embedlab.models.backbone.Backbone`: runs the
    ONNX Runtime session and returns ``last_hidden_state`` as a torch tensor. The torch model it was
    exported from stays attached (``reference``: config, input embeddings, parameter count, save)."""

    runtime = "onnx"

    def __init__(self, session: Any, reference: nn.Module, *, path: Path, int8: bool, fused: dict[str, int]) -> None:
        super().__init__()
        self.session = session
        self.reference = reference
        self.path = Path(path)
        self.int8 = bool(int8)
        self.fused = dict(fused)

    @property
    def config(self) -> Any:
        return self.reference.config

    def get_input_embeddings(self) -> nn.Module:
        return self.reference.get_input_embeddings()

    def save_pretrained(self, *args: Any, **kwargs: Any) -> None:
        self.reference.save_pretrained(*args, **kwargs)  # the same model: saved as the torch weights it was built from

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        **_: Any,
    ) -> Any:
        from transformers.modeling_outputs import BaseModelOutput

        if output_hidden_states:
            raise ConfigError(
                "runtime 'onnx' returns the last hidden state only: use runtime 'torch' for all hidden states"
            )
        feeds = {
            "input_ids": input_ids.detach().cpu().numpy().astype(np.int64, copy=False),
            "attention_mask": attention_mask.detach().cpu().numpy().astype(np.int64, copy=False),
        }
        (hidden,) = self.session.run(["last_hidden_state"], feeds)
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))


def onnx_embedder(embedder: Any, *, int8: bool = False) -> Any:
    """A new embedder over the same chain whose source runs ``embedder``'s backbone in ONNX Runtime
    (built or loaded from the cache; see the module docstring). Prefer :meth:`Embedder.onnx`, which keeps
    the copy while the weights are unchanged."""
    check_exportable(embedder)
    ort = require_onnxruntime()
    source = embedder.source
    path, session = cached_session(embedder, int8=int8)
    meta = json.loads(_sidecar(path).read_text())
    model = OnnxModel(session, source.model, path=path, int8=int8, fused=meta.get("fused", {}))
    log.info("ONNX Runtime %s session on %s", ort.__version__, path)
    new_source = type(source)(model, source.tokenizer, source=source.source, **source.get_config())
    return embedder.with_source(new_source).eval()


# ------------------------------------------------------------------------------------------------
def cache_path(embedder: Any, *, int8: bool = False) -> Path:
    """Where ``embedder``'s ONNX graph lives in the cache: ``<fingerprint>-<key>[-int8].onnx``, the key
    :func:`embedlab.io.cache_key` over the source weights' fingerprint, the precision and the ONNX
    Runtime version (docs/architecture.md, "Caches")."""
    ort = require_onnxruntime()
    fingerprint = embedder.fingerprint()
    key = cache_key(fingerprint, "onnx", "int8" if int8 else "fp32", ort.__version__)
    return cache_dir() / "onnx" / f"{fingerprint}-{key}{'-int8' if int8 else ''}.onnx"


def cached_session(embedder: Any, *, int8: bool = False) -> tuple[Path, Any]:
    """``embedder``'s ONNX graph from the cache and its session; the graph is built (atomically) when it
    is missing, or when the cached file is corrupt."""
    fp32 = cache_path(embedder)
    path = cache_path(embedder, int8=True) if int8 else fp32
    session = _load(path)
    if session is None:
        if not int8:
            _build_fp32(embedder, fp32)
        else:
            if not _intact(fp32):
                _build_fp32(embedder, fp32)
            _build_int8(fp32, path)
        session = _session(path)
    return path, session


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _intact(path: Path) -> bool:
    """The file and its sidecar exist and the file's SHA-256 is the one written with it; if not, both
    are removed (a partial or altered file is rebuilt, never trusted)."""
    side = _sidecar(path)
    if not path.is_file() and not side.is_file():
        return False
    try:
        ok = path.is_file() and json.loads(side.read_text()).get("sha256") == file_sha256(path)
    except (OSError, ValueError, AttributeError):
        ok = False
    if not ok:
        log.warning("ONNX cache entry %s is corrupt or incomplete: rebuilding it", path)
        path.unlink(missing_ok=True)
        side.unlink(missing_ok=True)
    return ok


def _load(path: Path) -> Any | None:
    """A session on the cached graph, or None (missing, corrupt, or ONNX Runtime cannot load it: removed)."""
    if not _intact(path):
        return None
    try:
        return _session(path)
    except Exception as exc:  # ONNX Runtime's own exception types (InvalidProtobuf, Fail, ...)
        log.warning(
            "ONNX Runtime cannot load the cached %s (%s): rebuilding it", path, (str(exc).splitlines() or [""])[0]
        )
        path.unlink(missing_ok=True)
        _sidecar(path).unlink(missing_ok=True)
        return None


def _session(path: Path) -> Any:
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _write(path: Path, built: Path, meta: dict[str, Any]) -> None:
    """Move ``built`` to ``path`` atomically, then its sidecar (digest last: a file without it is rebuilt)."""
    with atomic_path(path) as tmp:
        built.replace(tmp)
    with atomic_path(_sidecar(path)) as tmp:
        tmp.write_text(
            json.dumps({**meta, "sha256": file_sha256(path), "embedlab_version": __version__}, indent=2) + "\n"
        )


class _LastHidden(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state


def _probe(vocab: int, rows: int, length: int, padding_side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic token ids and a mask whose rows have decreasing lengths (the last row half padding)."""
    g = torch.Generator().manual_seed(rows * 1000 + length)
    ids = torch.randint(0, vocab, (rows, length), generator=g)
    mask = torch.ones(rows, length, dtype=torch.long)
    for r in range(1, rows):
        keep = max(1, length - (r * length) // (2 * (rows - 1)))
        if padding_side == "right":
            mask[r, keep:] = 0
        else:
            mask[r, : length - keep] = 0
    return ids, mask


def _export(model: nn.Module, path: Path, padding_side: str) -> None:
    ref = copy.deepcopy(model).eval()
    if hasattr(ref, "set_attn_implementation"):
        ref.set_attn_implementation("eager")  # the pattern ORT's optimizer fuses; SDPA graphs stay unfused
    if hasattr(ref.config, "use_cache"):
        ref.config.use_cache = False
    ids, mask = _probe(int(ref.config.vocab_size), 2, 8, padding_side)
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter(
            "ignore"
        )  # tracer warnings about Python values, and the TorchScript exporter's deprecation
        torch.onnx.export(
            _LastHidden(ref),
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _fuse(raw: Path, out: Path, config: Any, padding_side: str) -> dict[str, int]:
    from onnxruntime.transformers import optimizer

    options = optimizer.FusionOptions("bert")
    if padding_side != "right":
        options.use_raw_attention_mask(True)  # the mask index assumes valid tokens first
    fused = optimizer.optimize_model(
        str(raw),
        model_type="bert",
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
        optimization_options=options,
    )
    fused.save_model_to_file(str(out))
    return {k: int(v) for k, v in fused.get_fused_operator_statistics().items() if v}


def probe_cosine(model: nn.Module, path: Path, padding_side: str) -> float:
    """The lowest per-token cosine between the graph's and the torch model's last hidden states over the
    unpadded positions of two padded probe batches of shapes the export did not see."""
    session = _session(path)
    worst = 1.0
    was_training = model.training
    model.eval()  # no dropout in the reference (an embedder's encode restores its train/eval mode afterwards)
    try:
        wants = []
        for rows, length in ((3, 13), (1, 5)):
            ids, mask = _probe(int(model.config.vocab_size), rows, length, padding_side)
            with torch.inference_mode():
                wants.append(
                    (ids, mask, model(input_ids=ids, attention_mask=mask, return_dict=True).last_hidden_state.float())
                )
    finally:
        model.train(was_training)
    for ids, mask, want in wants:
        (got,) = session.run(["last_hidden_state"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        got = torch.from_numpy(got)
        if got.shape != want.shape or not torch.isfinite(got).all():
            return float("nan")
        keep = mask.bool()
        cos = torch.nn.functional.cosine_similarity(got[keep], want[keep], dim=-1, eps=1e-12)
        worst = min(worst, float(cos.min()))
    return worst


def _build_fp32(embedder: Any, path: Path) -> None:
    source = embedder.source
    model, config, padding_side = source.model, source.model.config, source.padding_side
    model_type = str(getattr(config, "model_type", ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".onnx-build-", dir=path.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        try:
            _export(model, raw, padding_side)
        except Exception as exc:  # the tracer or the exporter cannot handle this architecture
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(
                f"runtime 'onnx': the ONNX export of this {model_type} model failed ({first[:200]}); "
                "use runtime 'torch'"
            ) from None
        built, fused = raw, {}
        if model_type in BERT_FAMILY:
            candidate = Path(tmp) / "fused.onnx"
            try:
                fused = _fuse(raw, candidate, config, padding_side)
                cos = probe_cosine(model, candidate, padding_side)
                if cos >= MIN_PROBE_COSINE:
                    built = candidate
                else:
                    log.warning(
                        "the fused ONNX graph of this %s model is off (min cosine %.6f): using the unfused export",
                        model_type,
                        cos,
                    )
                    fused = {}
            except Exception as exc:
                log.warning(
                    "ONNX Runtime's transformer optimizer failed on this %s model (%s): using the unfused export",
                    model_type,
                    exc,
                )
                fused = {}
        if built is raw:
            cos = probe_cosine(model, raw, padding_side)
            if not cos >= MIN_PROBE_COSINE:
                raise ConfigError(
                    f"runtime 'onnx': the ONNX export of this {model_type} model does not reproduce it "
                    f"(min per-token cosine {cos:.6f} on a probe batch); use runtime 'torch'"
                )
        log.info("ONNX graph for %s: fused %s", model_type, fused or "nothing (ONNX Runtime's own optimisations only)")
        _write(
            path,
            built,
            {
                "model_type": model_type,
                "fused": fused,
                "int8": False,
                "padding_side": padding_side,
                "opset": OPSET,
                "torch_version": torch.__version__,
            },
        )


def _build_int8(fp32: Path, path: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    meta = json.loads(_sidecar(fp32).read_text())
    with tempfile.TemporaryDirectory(prefix=".onnx-build-", dir=path.parent) as tmp:
        out = Path(tmp) / "int8.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.disable(logging.WARNING)  # the quantiser logs a pre-processing hint on the root logger
            try:
                quantize_dynamic(
                    str(fp32),
                    str(out),
                    per_channel=True,
                    reduce_range=True,
                    weight_type=QuantType.QInt8,
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )
            finally:
                logging.disable(logging.NOTSET)
        _write(path, out, {**meta, "int8": True, "quantization": "dynamic, int8 weights per channel, reduce_range"})
