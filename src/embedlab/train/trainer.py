"""The contrastive trainer: LoRA (peft) or full fine-tuning, the pooling head always in full; AdamW,
warmup then linear decay per stage; gradient accumulation; bf16 autocast; GradCache; data parallelism
with candidates gathered across processes; atomic checkpoints and exact resume; JSONL log and a
progress bar with loss and throughput.

Written by hand rather than on ``transformers.Trainer``/``SentenceTransformerTrainer``: GradCache's
two-pass step, the cross-process candidate gather and exact resume of a custom sampler do not fit
their loops; the pieces (optimizer, scheduler, peft, autocast) are the libraries'.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from embedlab.errors import EmbedlabError, TrainingDiverged
from embedlab.io import atomic_path, write_json
from embedlab.models.batching import padding_aware_batches
from embedlab.models.embedder import resolve_dtype
from embedlab.progress import ShowProgress, progress_bar
from embedlab.train import distributed as dist_utils
from embedlab.train.checkpoint import list_checkpoints, load_checkpoint, rng_states, save_checkpoint, set_rng_states
from embedlab.train.config import Stage, TrainConfig
from embedlab.train.data import DataStats, Example, Prompted, format_document, format_query, load_datasets
from embedlab.train.gradcache import cached_backward, embed_planned, length_sorted_chunks
from embedlab.train.losses import (
    contrastive_loss_flat,
    false_negative_mask,
    flops_penalty,
    flops_weight,
    matryoshka_flat,
)

log = logging.getLogger(__name__)


class BatchSampler:
    """Seeded epoch permutations; the state (epoch, cursor) is all a resume needs."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < batch_size:
            raise EmbedlabError(f"the stage has {n} training examples, fewer than batch_size={batch_size}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.cursor = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(self.n))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def next(self) -> list[int]:
        if self.cursor + self.batch_size > self.n:
            self.epoch += 1
            self.cursor = 0
            self._order = self._permutation(self.epoch)
        batch = self._order[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return batch

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def restore(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor = state["epoch"], state["cursor"]
        self._order = self._permutation(self.epoch)


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    tokens: int = 0
    truncated_texts: int = 0
    candidates_per_query: float = 0.0
    trainable_parameters: int = 0
    head_parameters: int = 0
    lora_parameters: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    final_loss: float | None = None
    resumed_from_step: int = 0  # the checkpoint's step when resumed; seconds and tokens include the earlier sessions
    already_finished: bool = False  # --resume on a finished run: nothing was trained (fields from train_summary.json)


# ---------------------------------------------------------------------------------------------
# Model set-up
# ---------------------------------------------------------------------------------------------
def load_embedder(config: TrainConfig) -> Any:
    from embedlab.models import Embedder

    torch.manual_seed(config.seed)  # the head's initialisation
    emb = Embedder.from_pretrained(
        config.model,
        pooling=config.pooling,
        attention=config.attention,
        max_length=config.max_length,
        append_eos=config.append_eos,
        padding_side=config.padding_side,
        pooling_options=config.pooling_options,
        preset=config.head_preset,
    )
    return emb.to(config.torch_device())


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft 0.21 reads a transformers property deprecated in 5.x; hide that FutureWarning only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def apply_lora(embedder: Any, config: TrainConfig) -> int:
    """Wrap the backbone with LoRA adapters (peft); freeze the rest of the backbone. Returns the
    number of LoRA parameters."""
    from peft import LoraConfig, get_peft_model

    assert config.lora is not None
    settings = config.lora
    lora = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        bias="none",
    )
    with _quiet_peft():
        embedder.backbone.model = get_peft_model(embedder.backbone.model, lora)
    return sum(p.numel() for n, p in embedder.backbone.named_parameters() if p.requires_grad)


def merge_lora(embedder: Any) -> None:
    from peft import PeftModel

    if isinstance(embedder.backbone.model, PeftModel):
        with _quiet_peft():
            embedder.backbone.model = embedder.backbone.model.merge_and_unload()


# ---------------------------------------------------------------------------------------------
# Memory foresight
# ---------------------------------------------------------------------------------------------
def available_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info.get("MemAvailable", info["MemTotal"])
    except (OSError, KeyError, ValueError):
        return 1 << 62  # unknown: don't refuse


def estimate_memory_bytes(embedder: Any, texts_per_forward: int, seq_len: int, trainable: int, precision: str) -> int:
    """Activations of one forward-with-graph (Korthikanti et al. 2022: per layer 34·s·b·h + 5·a·s²·b
    bytes in 16-bit; doubled for fp32) + weights + AdamW state for the trainable parameters."""
    cfg = embedder.backbone.config
    h, layers = embedder.backbone.hidden_size, embedder.backbone.num_layers
    heads = int(getattr(cfg, "num_attention_heads", 1) or 1)
    per_layer = 34 * seq_len * texts_per_forward * h + 5 * heads * seq_len * seq_len * texts_per_forward
    factor = 1.0 if precision == "bf16" else 2.0
    weights = 4 * sum(p.numel() for p in embedder.parameters())
    return int(factor * per_layer * layers + weights + 12 * trainable)


def _fused(device: torch.device) -> dict[str, bool]:
    """The fused AdamW kernel (one pass over each parameter instead of a dozen elementwise ops; what
    transformers' Trainer uses by default) on CPU and CUDA; the result equals the loop's to rounding."""
    return {"fused": True} if device.type in ("cpu", "cuda") else {}


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------
class Trainer:
    """``Trainer(config).fit()``; pass ``embedder`` to train one built elsewhere (e.g. by the grid),
    ``on_step(step, loss)`` to observe (or interrupt) the run; ``show_progress`` (:mod:`embedlab.progress`)
    draws the main process's bar."""

    def __init__(
        self,
        config: TrainConfig,
        embedder: Any | None = None,
        *,
        on_step: Callable[[int, float], None] | None = None,
        show_progress: ShowProgress = True,
    ) -> None:
        self.config = config
        dist_utils.init_from_env()
        self.rank, self.world_size = dist_utils.world()
        if config.batch_size % self.world_size:
            raise EmbedlabError(f"batch_size {config.batch_size} is not divisible by the {self.world_size} processes")
        self.embedder = embedder if embedder is not None else load_embedder(config)
        self.device = next(self.embedder.parameters()).device
        # auto: bf16 only where it is native; emulated bf16 (an AVX2 CPU) is several times slower than fp32
        self.precision = resolve_dtype(self.config.precision, self.device)
        self.on_step = on_step
        self.show_progress: ShowProgress = show_progress if dist_utils.is_main() else False
        self.lora_parameters = 0
        if config.lora is not None:
            self.lora_parameters = apply_lora(self.embedder, config)
        elif any(
            p.requires_grad for p in self.embedder.backbone.parameters()
        ):  # full fine-tuning unless the caller froze it
            for p in self.embedder.parameters():
                p.requires_grad_(True)
        for module in self.embedder.trainable_modules():  # the head and any projection, always in full
            for p in module.parameters():
                p.requires_grad_(True)
        dist_utils.broadcast_parameters(p for p in self.embedder.parameters() if p.requires_grad)
        self.params = [p for p in self.embedder.parameters() if p.requires_grad]
        if not self.params:
            raise EmbedlabError("nothing to train: the model has no trainable parameter")
        self.out = Path(config.output)
        self.ckpt_dir = self.out / "checkpoints"
        self.log_path = self.out / "train_log.jsonl"
        self.stats = DataStats()
        self._tokens, self._truncated = 0, 0
        self._token_cache: dict[Prompted, tuple[np.ndarray, int, bool]] = {}
        self.result = TrainResult(
            trainable_parameters=sum(p.numel() for p in self.params),
            head_parameters=self.embedder.head.num_parameters(),
            lora_parameters=self.lora_parameters,
        )

    # -- texts -> representations ------------------------------------------------------------------
    # Training tokenizes each distinct (prefix, text) once (the cache below), then embeds a step's texts
    # in length-sorted chunks: the chunks' embeddings are put back in order before the loss, so the
    # loss is the one of a single padded pass, with fewer pad tokens computed.
    TOKEN_CACHE_LIMIT = 2_000_000  # distinct texts kept tokenized (int32 arrays); cleared when exceeded
    # The fixed cost of one forward pass, in padded tokens, for the chunk plan. On a CPU a pass costs about
    # 64 tokens' compute (reading the weights once), so splitting by length pays. On an accelerator a pass is
    # launch-bound (hundreds of kernels for a fraction of a millisecond of math each): the length chunks this
    # plan made of a 384-text step ran SmolLM2's LoRA training on an H200 at ~2,300 tokens/s (3.3 s a step),
    # no faster than 16 CPU cores, so there a step is one padded pass.
    chunk_overhead_tokens = 64

    def _tokenized(self, items: list[Prompted]) -> list[tuple[np.ndarray, int, bool]]:
        """(ids, prompt length, truncated) of each item, tokenizing only those not seen before (in one
        batched call, through the same mechanism as :meth:`Embedder.encode`)."""
        cache = self._token_cache
        missing = list(dict.fromkeys(x for x in items if x not in cache))
        if missing:
            if len(cache) + len(missing) > self.TOKEN_CACHE_LIMIT:
                cache.clear()
            tok = self.embedder.tokenize([t for _, t in missing], [p for p, _ in missing])
            limit = self.embedder.max_length - (1 if self.embedder.append_eos else 0)
            for item, ids, plen in zip(missing, tok.ids, tok.prompt_lengths):
                cache[item] = (np.asarray(ids, dtype=np.int32), plen, False)
            if tok.truncated:  # which ones were cut: only texts at the limit can be; ask the tokenizer about those
                at_limit = [x for x, ids in zip(missing, tok.ids) if len(ids) >= limit]
                full = self.embedder.tokenizer([p + t for p, t in at_limit], add_special_tokens=True, verbose=False)[
                    "input_ids"
                ]
                for item, ids in zip(at_limit, full):
                    if len(ids) > limit:
                        cache[item] = (cache[item][0], cache[item][1], True)
        return [cache[x] for x in items]

    def _plan(self, lengths: list[int]) -> list[list[int]]:
        """The chunks (indices into a step's texts) embedded in one forward pass each: length-sorted
        micro-batches of ``micro_batch_size`` under GradCache, else on a CPU the padding-aware split (fewest
        padded tokens plus a per-pass overhead) and on an accelerator one pass."""
        micro = self.config.micro_batch_size
        if micro is not None:
            return length_sorted_chunks(lengths, micro)
        if self.device.type != "cpu":  # launch-bound: one padded pass (its memory was checked before the steps)
            return [list(range(len(lengths)))] if lengths else []
        return padding_aware_batches(lengths, 1 << 30, max(1, len(lengths)), self.chunk_overhead_tokens)

    def _embed_tokenized(self, rows: list[tuple[np.ndarray, int, bool]]) -> torch.Tensor:
        emb = self.embedder
        features = emb.batch_features([r[0] for r in rows], [r[1] for r in rows], self.device)
        with self._autocast():
            pooled = emb(features, postprocess=False)["sentence_embedding"]
        return pooled.float()

    def embed(self, items: list[Prompted]) -> torch.Tensor:
        """Representations of ``(prompt, text)`` items through the chain (one padded pass), before
        truncation and normalisation (the loss does both). Tokenized like :meth:`Embedder.encode`: one
        mechanism counts the prompt's tokens, so ``exclude_instruction`` pools the same tokens here as there."""
        return self._embed_tokenized(self._tokenized(items))

    def _autocast(self) -> Any:
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- one contrastive batch ----------------------------------------------------------------------
    def _batch_texts(
        self, batch: list[Example], k: int
    ) -> tuple[list[Prompted], list[Prompted], list[Prompted], list[int], list[bool]]:
        template = self.config.instruction_template
        queries = [format_query(e, template) for e in batch]
        positives = [format_document(e.positive, e, template) for e in batch]
        negatives, owner = [], []
        for i, e in enumerate(batch):
            for text in e.negatives[:k]:
                negatives.append(format_document(text, e, template))
                owner.append(i)
        return queries, positives, negatives, owner, [e.in_batch for e in batch]

    def _contrastive_step(self, batch: list[Example], stage: Stage, scale: float, step: int = 0) -> tuple[float, float]:
        """Forward + backward of one contrastive batch (this process's share); returns (loss, candidates/query).
        ``step`` (within the stage) sets the FLOPS weights' quadratic warm-up."""
        local = batch[self.rank * len(batch) // self.world_size : (self.rank + 1) * len(batch) // self.world_size]
        queries, positives, negatives, owner, in_batch = self._batch_texts(local, stage.hard_negatives)
        # every rank needs the global texts for the false-negative mask and the owners / flags
        meta = dist_utils.gather_objects((queries, positives, negatives, owner, in_batch))
        all_q, all_p, all_n, all_owner, all_flags = [], [], [], [], []
        for q, p, n, o, f in meta:
            all_owner += [x + len(all_q) for x in o]
            all_q += q
            all_p += p
            all_n += n
            all_flags += f

        def full(items: list[Prompted]) -> list[str]:
            return [p + t for p, t in items]

        fn_mask = false_negative_mask(full(all_q), full(all_p), full(all_n)) if stage.mask_false_negatives else None
        owner_t = torch.tensor(all_owner, dtype=torch.long, device=self.device)
        flags_t = torch.tensor(all_flags, dtype=torch.bool, device=self.device)
        cands = [0.0]

        def loss_fn(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
            q, p = dist_utils.gather_with_grad(q), dist_utils.gather_with_grad(p)
            n = dist_utils.gather_with_grad(n)
            kwargs = dict(
                temperature=stage.temperature,
                in_batch=flags_t,
                symmetric=stage.symmetric,
                false_negative_mask=None if fn_mask is None else fn_mask.to(self.device),
                similarity=stage.similarity,
            )
            if stage.matryoshka_dims:
                loss, cands[0] = matryoshka_flat(
                    q, p, n, owner_t, stage.matryoshka_dims, stage.matryoshka_weights, **kwargs
                )
            else:
                loss, cands[0] = contrastive_loss_flat(q, p, n, owner_t, **kwargs)
            if stage.flops_query_weight or stage.flops_document_weight:
                warmup = int(stage.steps * stage.flops_warmup_ratio)
                loss = loss + flops_penalty(
                    q,
                    p,
                    n,
                    flops_weight(stage.flops_query_weight, step, warmup),
                    flops_weight(stage.flops_document_weight, step, warmup),
                )
            return loss

        groups = [queries, positives, negatives]
        rows = self._tokenized(queries + positives + negatives)
        lengths = [len(r[0]) for r in rows]
        self._tokens += sum(lengths)
        self._truncated += sum(r[2] for r in rows)
        plan = self._plan(lengths)
        if self.config.micro_batch_size is not None:
            loss = cached_backward(
                self._embed_tokenized,
                [
                    rows[: len(queries)],
                    rows[len(queries) : len(queries) + len(positives)],
                    rows[len(queries) + len(positives) :],
                ],
                loss_fn,
                self.config.micro_batch_size,
                scale,
                plan=plan,
            )
        else:
            flat = embed_planned(self._embed_tokenized, rows, plan)
            q, p, n = torch.split(flat, [len(g) for g in groups])
            loss = loss_fn(q, p, n)
            (loss * scale).backward()
            loss = loss.detach()
        return float(loss), cands[0]

    # -- checks --------------------------------------------------------------------------------------
    def _check_memory(self, stage: Stage, examples: list[Example]) -> int:
        if getattr(self.embedder.source, "caches_features", False):
            return 0  # modules on cached, frozen features: activations of a few small layers
        cfg = self.config
        sample = examples[: min(len(examples), 512)]
        items = [format_query(e, cfg.instruction_template) for e in sample] + [("", e.positive) for e in sample]
        lengths = [len(r[0]) for r in self._tokenized(items)]  # tokenized once: the steps reuse them
        seq = int(np.percentile(lengths, 99))
        k = stage.hard_negatives
        per_forward = cfg.micro_batch_size or cfg.batch_size // self.world_size
        texts = per_forward if cfg.micro_batch_size else per_forward * (2 + k)
        trainable = self.result.trainable_parameters
        need = estimate_memory_bytes(self.embedder, texts, seq, trainable, self.precision)
        static = estimate_memory_bytes(self.embedder, 0, seq, trainable, self.precision)
        have = int(cfg.memory_limit_gb * 2**30) if cfg.memory_limit_gb else available_memory_bytes(self.device)
        if need > 0.9 * have:
            fit = int(texts * (0.9 * have - static) / max(1, need - static))
            hint = f"set micro_batch_size (GradCache) to at most {fit}" if fit >= 1 else "lower max_length or use LoRA"
            raise EmbedlabError(
                f"stage {stage.name}: one forward pass of {texts} texts x {seq} tokens needs about {_size(need)}, "
                f"but {_size(have)} is available; {hint}"
            )
        return need

    # -- the loop -----------------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if dist_utils.is_main():
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    RUN_FILES = ("model", "checkpoints", "train_log.jsonl", "train_config.json", "train_summary.json")

    def _finished_summary(self) -> dict[str, Any] | None:
        """The saved summary when the output holds a model trained for every step of this config."""
        summary = self.out / "train_summary.json"
        if not (self.out / "model").is_dir() or not summary.is_file():
            return None
        try:
            saved = json.loads(summary.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return saved if isinstance(saved, dict) and saved.get("steps", -1) >= self.config.total_steps else None

    def _prepare_output(self, resume: bool, overwrite: bool = False) -> dict[str, Any] | None:
        found = [] if overwrite else list_checkpoints(self.ckpt_dir)
        has_model = (self.out / "model").exists() and not overwrite
        if not resume and has_model:
            raise EmbedlabError(
                f"{self.out} already holds a trained model; choose another output, pass --resume to continue "
                f"its run, or --overwrite to discard it and train again"
            )
        if not resume and found:
            raise EmbedlabError(
                f"{self.out} already holds checkpoints of a run (newest {found[-1].name}); pass --resume to "
                f"continue it, or --overwrite to discard them and start over, or choose another output"
            )
        if resume and has_model and not found and self._finished_summary() is None:
            raise EmbedlabError(
                f"{self.out} holds a trained model but no checkpoint to continue from to "
                f"{self.config.total_steps} steps; pass --overwrite to train again, or choose another output"
            )
        if overwrite and dist_utils.is_main():
            for name in self.RUN_FILES:
                target = self.out / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        state = None
        if resume:
            if found:
                state = load_checkpoint(found[-1], self.embedder)
                state["path"] = str(found[-1])
                log.info("resuming from %s", found[-1])
            else:
                log.warning("no checkpoint in %s: starting from the beginning", self.ckpt_dir)
        if dist_utils.is_main():
            self.out.mkdir(parents=True, exist_ok=True)
            if state is not None and self.log_path.is_file():  # drop log records written after the checkpoint
                kept = [
                    line
                    for line in self.log_path.read_text().splitlines()
                    if json.loads(line).get("step", -1) <= state["global_step"] or "event" in json.loads(line)
                ]
                with atomic_path(self.log_path) as tmp:
                    tmp.write_text("".join(line + "\n" for line in kept))
            elif state is None and self.log_path.exists():
                self.log_path.unlink()
        return state

    def fit(self, resume: bool = False, overwrite: bool = False) -> TrainResult:
        """Train every stage. ``resume``: continue from the newest checkpoint (a finished run is left as
        it is: the result has ``already_finished``); ``overwrite``: discard the run in the output first.
        Without either, an output holding a model or checkpoints is refused."""
        cfg = self.config
        stages = cfg.resolved_stages(sparse=self.embedder.output_kind == "sparse")
        if resume and overwrite:
            raise EmbedlabError(
                "--resume continues the run in the output and --overwrite discards it: pass one of them"
            )
        if resume and (finished := self._finished_summary()) is not None:
            known = {k: v for k, v in finished.items() if k in TrainResult.__dataclass_fields__ and k != "losses"}
            self.result = TrainResult(**{**known, "already_finished": True})
            log.info("%s already holds a finished run of %d steps: nothing to resume", self.out, self.result.steps)
            return self.result
        state = self._prepare_output(resume, overwrite)
        self._truncated, self._tokens = 0, 0
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        start_stage, start_step, global_step = 0, 0, 0
        seconds_before = 0.0
        if state is not None:
            start_stage, start_step, global_step = state["stage"], state["step"], state["global_step"]
            seconds_before = float(state.get("seconds", 0.0))
            self.result.resumed_from_step = global_step
            self.result.candidates_per_query = float(state.get("candidates_per_query", 0.0))
            self.result.losses = list(state["losses"])
            self._tokens, self._truncated = state.get("tokens", 0), state.get("truncated", 0)
        self.embedder.train()
        bar = progress_bar(self.show_progress, total=cfg.total_steps, desc="train", unit="step", initial=global_step)
        t0 = time.perf_counter()
        last_ckpt = state["path"] if state is not None else None
        try:
            for s_idx, stage in enumerate(stages):
                if s_idx < start_stage:
                    continue
                examples = load_datasets(
                    stage.data, in_batch_default=stage.in_batch_negatives, seed=cfg.seed, stats=self.stats
                )
                memory = self._check_memory(stage, examples)
                sampler = BatchSampler(len(examples), cfg.batch_size, cfg.seed + s_idx)
                optimizer = torch.optim.AdamW(
                    self.params, lr=stage.lr, weight_decay=stage.weight_decay, **_fused(self.device)
                )
                warm = stage.warmup_steps
                schedule = torch.optim.lr_scheduler.LambdaLR(
                    optimizer,
                    lambda s, w=warm, n=stage.steps: min(1.0, (s + 1) / w if w else 1.0) * max(0.0, 1 - s / n),
                )
                first = 0
                if state is not None and s_idx == start_stage and state["step"] == 0:  # checkpoint at a stage boundary
                    set_rng_states(state["rng"])
                    state = None
                if state is not None and s_idx == start_stage:
                    optimizer.load_state_dict(state["optimizer"])
                    schedule.load_state_dict(state["schedule"])
                    sampler.restore(state["sampler"])
                    set_rng_states(state["rng"])
                    first = start_step
                if first == 0:
                    self._log(
                        {
                            "event": "stage",
                            "stage": stage.name,
                            "steps": stage.steps,
                            "examples": len(examples),
                            "data": {k: v for k, v in self.stats.examples.items()},
                            "duplicates_dropped": dict(self.stats.duplicates_dropped),
                            "duplicate_queries": dict(self.stats.duplicate_queries),
                            "memory_estimate_gib": round(memory / 2**30, 3),
                            "processes": self.world_size,
                            "trainable_parameters": self.result.trainable_parameters,
                            "head_parameters": self.result.head_parameters,
                            "lora_parameters": self.lora_parameters,
                        }
                    )
                for step in range(first, stage.steps):
                    t_step, tokens_before = time.perf_counter(), self._tokens
                    optimizer.zero_grad(set_to_none=True)
                    loss_sum, cands = 0.0, 0.0
                    for _ in range(cfg.grad_accumulation):
                        batch = [examples[i] for i in sampler.next()]
                        loss, cands = self._contrastive_step(batch, stage, 1.0 / cfg.grad_accumulation, step)
                        loss_sum += loss / cfg.grad_accumulation
                    dist_utils.sum_gradients(self.params)
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, 1.0))
                    if not (math.isfinite(loss_sum) and math.isfinite(grad_norm)):
                        keep = (
                            f"the last good checkpoint is {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
                        )
                        raise TrainingDiverged(
                            f"the loss became {loss_sum} (gradient norm {grad_norm}) at step {global_step} "
                            f"of stage {stage.name}: stopped without updating; {keep}. Lower the learning rate."
                        )
                    optimizer.step()
                    schedule.step()
                    global_step += 1
                    self.result.losses.append(loss_sum)
                    self.result.candidates_per_query = cands
                    elapsed = time.perf_counter() - t_step
                    tokens = (self._tokens - tokens_before) * self.world_size
                    bar.set_description(f"train loss {loss_sum:.4f}, {tokens / elapsed:.0f} tok/s, {cands:.0f} cands")
                    bar.update(1)
                    if step % cfg.log_every == 0 or step == stage.steps - 1:
                        self._log(
                            {
                                "stage": stage.name,
                                "step": global_step,
                                "loss": loss_sum,
                                "lr": schedule.get_last_lr()[0],
                                "grad_norm": grad_norm,
                                "candidates_per_query": cands,
                                "tokens_per_s": round(tokens / elapsed, 1),
                                "truncated_texts": self._truncated * self.world_size,
                            }
                        )
                    if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0 and dist_utils.is_main():
                        last_ckpt = str(
                            save_checkpoint(
                                self.ckpt_dir,
                                global_step,
                                self.embedder,
                                {
                                    "stage": s_idx if step + 1 < stage.steps else s_idx + 1,
                                    "step": step + 1 if step + 1 < stage.steps else 0,
                                    "global_step": global_step,
                                    "optimizer": optimizer.state_dict(),
                                    "schedule": schedule.state_dict(),
                                    "sampler": sampler.state(),
                                    "rng": rng_states(),
                                    "losses": self.result.losses,
                                    "tokens": self._tokens,
                                    "truncated": self._truncated,
                                    "seconds": seconds_before + time.perf_counter() - t0,
                                    "candidates_per_query": cands,
                                },
                                cfg.keep_checkpoints,
                            )
                        )
                    if self.on_step is not None:
                        self.on_step(global_step, loss_sum)
                state = None
        finally:
            bar.close()
        self.embedder.eval()
        self.result.steps = global_step
        self.result.seconds = seconds_before + time.perf_counter() - t0  # over every session of the run
        self.result.final_loss = self.result.losses[-1] if self.result.losses else None
        self.result.tokens = self._tokens * self.world_size
        self.result.truncated_texts = self._truncated * self.world_size
        self.result.data = {
            "examples": dict(self.stats.examples),
            "duplicates_dropped": dict(self.stats.duplicates_dropped),
        }
        if self._truncated:
            log.warning(
                "%d training texts were longer than max_length=%d and were truncated",
                self._truncated,
                self.embedder.max_length,
            )
        return self.result

    def save(self) -> Path:
        """Merge LoRA, write ``model/`` and ``train_config.json`` atomically (main process)."""
        merge_lora(self.embedder)
        if dist_utils.is_main():
            self.embedder.save(self.out / "model")
            with atomic_path(self.out / "train_config.json") as tmp:
                tmp.write_text(self.config.model_dump_json(indent=2) + "\n")
            summary = {k: v for k, v in self.result.__dict__.items() if k != "losses"}
            write_json(
                self.out / "train_summary.json",
                {**summary, "final_loss": self.result.losses[-1] if self.result.losses else None},
            )
        return self.out / "model"


def run(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> Any:
    """Train from a config and save; returns the trained embedder (a finished run's saved one when
    ``resume`` finds the run finished). ``overwrite`` discards a run already in the output."""
    trainer = Trainer(config, on_step=on_step)
    if trainer.fit(resume=resume, overwrite=overwrite).already_finished:
        from embedlab.models import Embedder

        return Embedder.from_pretrained(trainer.out / "model").to(config.torch_device())
    trainer.save()
    return trainer.embedder
