"""The serving engine: admission control, a token-budget batcher and ONE model worker thread.

    handler --prepare_*()--> Prepared (token ids, via Embedder.tokenize: the same prompt mechanism as encode)
            --await embed()--> admission (queued tokens <= max_queue_tokens, else Overloaded -> 429)
                               -> pending deque (one entry per input)
    batcher thread:  picks the batch holding the OLDEST pending input among the padding_aware_batches
                     (models/batching.py: similar lengths, rows x longest <= max_batch_tokens, the split that
                     minimises padded tokens + a measured per-forward overhead) of the first WINDOW pending
                     inputs; drops inputs of cancelled requests; pads them
                     (Embedder.batch_features) and hands them over; at most one batch waits (with
                     ``prefetch``, formed while the worker runs the current one; without, when it is free)
    worker thread:   the only caller of the embedder's forward: ``emb(features, postprocess=False)``, i.e.
                     the pooled, un-truncated, un-normalised vector; posts each row to its request's future
    handler        : per request, after the shared forward: Matryoshka truncation to ``dimensions`` and L2
                     normalisation (when the model normalises) = what ``Embedder.encode`` returns; then the
                     optional quantisation (:class:`Quantizer`, the index's int8 / binary codecs)

A request is cancelled (its queued inputs skipped, its tokens released) when its awaiting task is
cancelled (client disconnect) or its timeout passes. ``health()`` reports a dead worker, or a forward
pass / queue that made no progress for ``stall_timeout`` seconds while work was waiting.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from embedlab.errors import BackendError, ConfigError, EmptyInput, InputError, Overloaded, Unavailable
from embedlab.index.codecs import parse_codec, prepare
from embedlab.models.batching import padding_aware_batches, token_budget_batches
from embedlab.models.embedder import DTYPES, autocast, low_precision_cpu_attention
from embedlab.models.modules import Normalize, Truncate
from embedlab.serve.errors import BadRequest, InputTooLong
from embedlab.serve.metrics import Metrics

log = logging.getLogger(__name__)

PRECISIONS = ("float32", "int8", "binary")
TRIM_EVERY = 5.0  # seconds between malloc_trim calls (when the queue is empty)


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None elsewhere (musl, macOS, Windows)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _find_malloc_trim()
DEFAULT_OVERHEAD_TOKENS = 32  # until measured, or when the measurement is meaningless
WINDOW = 1024  # pending inputs considered when forming one batch (oldest first)


@dataclass
class Prepared:
    """Token ids ready to embed (special tokens, prompt, truncation and EOS applied)."""

    ids: list[list[int]]
    prompt_lengths: list[int]
    truncated: int = 0  # inputs cut to max_input_tokens

    @property
    def tokens(self) -> int:
        return sum(len(x) for x in self.ids)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Timings:
    tokenize: float = 0.0
    queue: float = 0.0
    inference: float = 0.0


@dataclass
class Embedded:
    """The raw rows of one request: pooled, un-truncated, un-normalised (``full_dim`` wide)."""

    vectors: np.ndarray
    tokens: int
    truncated: int
    timings: Timings


class _Ticket:
    """One request's state, shared by the event loop (creates, cancels) and the worker (fills)."""

    def __init__(self, n: int, dim: int, tokens: int, loop: asyncio.AbstractEventLoop, future: asyncio.Future) -> None:
        self.vectors = np.empty((n, dim), dtype=np.float32)
        self.remaining = n
        self.tokens = tokens
        self.loop, self.future = loop, future
        self.cancelled = False
        self.finished = False  # tokens released (answered, failed or cancelled); guarded by the engine lock
        self.enqueued = time.perf_counter()
        self.first_batch: float | None = None
        self.inference = 0.0


@dataclass
class _Entry:
    ticket: _Ticket
    row: int
    ids: list[int]
    prompt_length: int


@dataclass
class _Batch:
    entries: list[_Entry]
    features: dict[str, Any]
    padded_tokens: int
    requests: int = field(default=0)


class Engine:
    """Owns an :class:`~embedlab.models.Embedder` and serves embedding requests from asyncio code.

    ``dtype``: auto | fp32 | bf16 (autocast, as ``encode``) | int8 (the backbone's linear layers quantised, CPU);
    ``runtime``: torch | onnx (the backbone in ONNX Runtime, fp32 or int8, CPU; :meth:`Embedder.for_runtime`). ``max_batch_tokens`` bounds rows x longest
    per forward pass (default 512 on CPU, which keeps one pass near 0.1 s for a small encoder and so
    bounds the wait behind it; 32,768 on GPU); ``max_batch_size`` bounds rows (64 / 512).
    ``batch_overhead_tokens`` is the fixed cost of one forward pass in padded tokens, which decides how
    finely pending inputs are split by length (None: measured at warm-up on this device). ``max_queue_tokens`` bounds the tokens admitted and not yet answered (default 32 batches).
    ``max_input_tokens`` (default: the model's max_length) with ``truncate`` decides between cutting and
    refusing (413) longer inputs. ``on_forward(n_inputs)`` is called by the worker before each forward pass
    (a test and instrumentation hook). ``calibration_texts`` are embedded at start-up (a warm-up) and
    calibrate the int8 codec (default: the packaged demo corpus and queries). ``prefetch`` (default: on
    GPU only) forms the next batch while the current one runs, as TEI does; without it the batch is formed
    when the worker is free, which on CPU gives larger batches under load (see docs/serving.md).
    """

    def __init__(self, embedder: Any, *, dtype: str = "auto", runtime: str | None = None, device: str | torch.device | None = None,
                 max_batch_tokens: int | None = None, max_batch_size: int | None = None,
                 max_queue_tokens: int | None = None, max_input_tokens: int | None = None, truncate: bool = True,
                 stall_timeout: float = 60.0, calibration_texts: Sequence[str] | None = None,
                 on_forward: Callable[[int], None] | None = None, metrics: Metrics | None = None,
                 prefetch: bool | None = None, batch_overhead_tokens: int | None = None) -> None:
        self.device = torch.device(device) if device is not None else embedder.device
        if embedder.device != self.device:
            embedder = embedder.to(self.device)
        self.embedder = embedder.eval()
        # int8: the backbone's linear layers in int8; runtime onnx: the backbone in ONNX Runtime; the rest of the chain as it is
        self.embedder, self.dtype = self.embedder.for_runtime(runtime, dtype)
        self.runtime = self.embedder.runtime
        on_cpu = self.device.type == "cpu"
        self.max_batch_tokens = _positive("max_batch_tokens", max_batch_tokens or (512 if on_cpu else 32768))
        self.max_batch_size = _positive("max_batch_size", max_batch_size or (64 if on_cpu else 512))
        self.max_queue_tokens = _positive("max_queue_tokens", max_queue_tokens or 32 * self.max_batch_tokens)
        if batch_overhead_tokens is not None and (not isinstance(batch_overhead_tokens, int) or batch_overhead_tokens < 0):
            raise ConfigError(f"batch_overhead_tokens must be a non-negative integer; got {batch_overhead_tokens!r}")
        self.batch_overhead_tokens = batch_overhead_tokens
        self.stall_timeout = float(stall_timeout)
        self.truncate = bool(truncate)
        self.prefetch = (not on_cpu) if prefetch is None else bool(prefetch)
        self.on_forward = on_forward
        self.metrics = metrics or Metrics()
        self.full_dim, self.default_dim = self._check_chain()
        self.normalize = bool(embedder.normalize)
        limit = getattr(getattr(embedder.source, "config", None), "max_position_embeddings", None) or 10**9
        self.max_input_tokens = _positive("max_input_tokens", max_input_tokens or embedder.max_length)
        if self.max_input_tokens > limit:
            raise ConfigError(f"max_input_tokens {self.max_input_tokens} exceeds the model's {limit} positions")
        # tokenizes as the served model (max_length = max_input_tokens) and one token longer, to tell which
        # inputs the limit cuts (an input is cut iff its ids under the longer limit exceed the limit)
        self._tok = embedder if self.max_input_tokens == embedder.max_length else embedder.with_options(
            max_length=self.max_input_tokens)
        self._probe = embedder.with_options(max_length=self.max_input_tokens + 1)
        self.vocab_size = int(getattr(getattr(embedder.source, "config", None), "vocab_size", 0) or len(embedder.tokenizer))
        if calibration_texts is None:
            calibration_texts = packaged_calibration_texts()
        self._calibration_texts = list(calibration_texts)
        self.quantizer: Quantizer | None = None

        self._cond = threading.Condition()
        self._tokenizer_lock = threading.Lock()
        self._pending: collections.deque[_Entry] = collections.deque()
        self._tickets: set[_Ticket] = set()
        self._queued_tokens = 0
        self._batches: queue.Queue[_Batch | None] = queue.Queue(maxsize=2)
        self._slot = threading.Semaphore(1)  # one batch formed and not yet taken (prefetch) / not yet run
        self._paused = False
        self._stopping = False
        self.draining = False
        self.ready = False
        self._started = False
        self._busy_since: float | None = None
        self._last_progress = time.monotonic()
        self._tokens_per_s = 0.0  # moving average, for Retry-After
        self._last_trim = time.monotonic()
        self._worker: threading.Thread | None = None
        self._batcher: threading.Thread | None = None

    # -- set-up ---------------------------------------------------------------------------------
    def _check_chain(self) -> tuple[int, int]:
        """(width of the shared forward's output, default served width). The post-processing modules
        (truncate, normalize) must come last: they are applied per request instead."""
        chain = list(self.embedder.chain)
        width = chain[0].hidden_size
        seen_post = False
        for module in chain[1:]:
            if module.postprocess:
                if not isinstance(module, (Truncate, Normalize)):
                    raise ConfigError(f"serve: unsupported post-processing module {module.kind!r}")
                seen_post = True
            elif seen_post:
                raise ConfigError("serve: the chain's truncation/normalisation must come after every other module")
            else:
                width = module.output_dim(width)
        return width, self.embedder.output_dim

    def start(self) -> "Engine":
        """Start the batcher and the worker (idempotent). The worker first embeds the calibration texts."""
        if self._started:
            return self
        self._started = True
        self._last_progress = time.monotonic()
        self._worker = threading.Thread(target=self._worker_main, name="embedlab-model-worker", daemon=True)
        self._batcher = threading.Thread(target=self._batcher_main, name="embedlab-batcher", daemon=True)
        self._worker.start()
        self._batcher.start()
        return self

    def wait_ready(self, timeout: float = 60.0) -> bool:
        end = time.monotonic() + timeout
        while not self.ready and time.monotonic() < end:
            if self._worker is not None and not self._worker.is_alive():
                return False
            time.sleep(0.01)
        return self.ready

    def begin_drain(self) -> None:
        """Refuse new requests (503); queued and running ones still complete."""
        self.draining = True

    def stop(self, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop the threads; with ``drain`` first wait (up to ``timeout``) for admitted work to finish."""
        self.draining = True
        if drain and self._started:
            end = time.monotonic() + timeout
            while self._queued_tokens > 0 and time.monotonic() < end and self.worker_alive():
                time.sleep(0.02)
        with self._cond:
            self._stopping = True
            self._paused = False
            self._cond.notify_all()
        for thread in (self._batcher, self._worker):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=5.0)
        self._fail_all(Unavailable("the server stopped before this request was answered"))

    def pause(self) -> None:
        """Stop forming batches (queued requests wait); :meth:`resume` continues. For tests and operators."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    # -- health -----------------------------------------------------------------------------------
    def worker_alive(self) -> bool:
        return bool(self._worker and self._worker.is_alive() and self._batcher and self._batcher.is_alive())

    def health(self) -> tuple[bool, str]:
        """(healthy, reason): the worker and batcher threads run, and no forward pass or queued work has
        gone ``stall_timeout`` seconds without progress."""
        if not self._started:
            return False, "the engine is not started"
        if not self.worker_alive():
            return False, "the model worker thread is dead"
        now = time.monotonic()
        busy = self._busy_since
        if busy is not None and now - busy > self.stall_timeout:
            return False, f"the model worker is stuck: one forward pass has run for {now - busy:.0f} s"
        if self._queued_tokens > 0 and not self._paused and now - self._last_progress > self.stall_timeout:
            return False, f"no progress for {now - self._last_progress:.0f} s with {self._queued_tokens} tokens queued"
        return True, "ok"

    @property
    def queued_tokens(self) -> int:
        return self._queued_tokens

    # -- preparing inputs (any thread) -------------------------------------------------------------
    def prepare_texts(self, texts: Sequence[str], input_type: str | None = None, *, truncate: bool | None = None) -> Prepared:
        """Tokenize through ``Embedder.tokenize`` with the named prompt (None: the model's default), applying
        ``max_input_tokens``: cut (``truncate``) or :class:`InputTooLong` (413)."""
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
        truncate = self.truncate if truncate is None else truncate
        limit = self.max_input_tokens
        with self._tokenizer_lock:  # a fast tokenizer's truncation setting is shared state: one call at a time
            probe = self._probe.tokenize(list(texts), prompt)
            over = [i for i, seq in enumerate(probe.ids) if len(seq) > limit]
            if over and not truncate:
                raise InputTooLong(f"input {over[0]} has more than {limit} tokens ({len(over)} of {len(texts)} inputs "
                                   "do); shorten it, or let the server truncate (--truncate)")
            ids, lengths = probe.ids, probe.prompt_lengths
            if over:
                cut = self._tok.tokenize([texts[i] for i in over], prompt)
                for j, i in enumerate(over):
                    ids[i], lengths[i] = cut.ids[j], cut.prompt_lengths[j]
        return Prepared(ids=ids, prompt_lengths=lengths, truncated=len(over))

    def prepare_ids(self, sequences: Sequence[Sequence[int]], *, truncate: bool | None = None) -> Prepared:
        """Token-id inputs are used as they are (no special tokens or prompt added): send what /tokenize
        returns. Ids must be in the model's vocabulary."""
        if not sequences:
            raise EmptyInput("no inputs: give at least one")
        truncate = self.truncate if truncate is None else truncate
        limit = self.max_input_tokens
        ids: list[list[int]] = []
        cut = 0
        for i, seq in enumerate(sequences):
            seq = list(seq)
            if not seq:
                raise EmptyInput(f"input {i} is an empty list of token ids")
            bad = next((t for t in seq if not 0 <= t < self.vocab_size), None)
            if bad is not None:
                raise InputError(f"input {i}: token id {bad} is outside the vocabulary (0..{self.vocab_size - 1})")
            if len(seq) > limit:
                if not truncate:
                    raise InputTooLong(f"input {i} has {len(seq)} tokens, more than {limit}; shorten it or let the "
                                       "server truncate (--truncate)")
                seq, cut = seq[:limit], cut + 1
            ids.append(seq)
        return Prepared(ids=ids, prompt_lengths=[0] * len(ids), truncated=cut)

    def offsets_of(self, texts: Sequence[str], ids: Sequence[Sequence[int]],
                   input_type: str | None = None) -> list[list[tuple[int, int] | None]]:
        """Character spans (start, stop) in each *text* of the tokens ``ids`` (from :meth:`prepare_texts`):
        None for special tokens, prompt tokens, an appended EOS, or when the tokenizer gives no offsets."""
        tokenizer = self.embedder.tokenizer
        prompt = self.embedder.resolve_prompt(input_type) or ""
        out: list[list[tuple[int, int] | None]] = [[None] * len(seq) for seq in ids]
        if not getattr(tokenizer, "is_fast", False):
            return out
        with self._tokenizer_lock:
            enc = tokenizer([prompt + t for t in texts], add_special_tokens=True, truncation=True,
                            max_length=self.max_input_tokens, return_offsets_mapping=True,
                            return_special_tokens_mask=True, verbose=False)
        for i, seq in enumerate(ids):
            got, spans, special = enc["input_ids"][i], enc["offset_mapping"][i], enc["special_tokens_mask"][i]
            for j in range(min(len(seq), len(got))):
                if got[j] != seq[j]:
                    break  # the served ids differ from here on (e.g. an EOS put in place of the last token)
                start, stop = spans[j]
                if not special[j] and start >= len(prompt):
                    out[i][j] = (start - len(prompt), stop - len(prompt))
        return out

    def tokens_of(self, texts: Sequence[str], input_type: str | None = None) -> list[list[int]]:
        """The ids the server would embed (always truncating), for /tokenize."""
        return self.prepare_texts(texts, input_type, truncate=True).ids

    # -- the asyncio side ---------------------------------------------------------------------------
    async def embed(self, prepared: Prepared, *, timeout: float | None = None) -> Embedded:
        """Admit, enqueue and await the rows of one request. Raises Overloaded (429), Unavailable (503:
        draining, dead worker, timeout), InputTooLong (a request larger than the whole queue)."""
        if self.draining:
            raise Unavailable("the server is shutting down: it accepts no new requests")
        if not self._started or not self.worker_alive():
            raise Unavailable("the model worker is not running")
        n, tokens = len(prepared), prepared.tokens
        if n == 0:
            raise EmptyInput("no inputs: give at least one")
        if tokens > self.max_queue_tokens:
            raise InputTooLong(f"this request has {tokens} tokens, more than the server queues at once "
                               f"({self.max_queue_tokens}, --max-queue-tokens): split it")
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        ticket = _Ticket(n, self.full_dim, tokens, loop, future)
        with self._cond:
            if self._queued_tokens + tokens > self.max_queue_tokens:
                self.metrics.rejected.inc()
                raise Overloaded(f"the queue is full ({self._queued_tokens} of {self.max_queue_tokens} tokens queued); "
                                 "retry later", retry_after=self._retry_after(tokens))
            self._queued_tokens += tokens
            self._tickets.add(ticket)
            self._pending.extend(_Entry(ticket, row, ids, pl)
                                 for row, (ids, pl) in enumerate(zip(prepared.ids, prepared.prompt_lengths)))
            self.metrics.queued_tokens.set(self._queued_tokens)
            self.metrics.queued_inputs.set(len(self._pending))
            self._cond.notify()
        try:
            if timeout is None:
                await asyncio.shield(future)
            else:
                await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            self._cancel(ticket)
            self.metrics.timeouts.inc()
            raise Unavailable(f"the request timed out after {timeout:g} s (--request-timeout)") from None
        except asyncio.CancelledError:
            if self._cancel(ticket):
                self.metrics.cancelled.inc()
            raise
        exc = future.exception()
        if exc is not None:
            raise exc
        start = ticket.first_batch if ticket.first_batch is not None else time.perf_counter()
        timings = Timings(queue=start - ticket.enqueued, inference=ticket.inference)
        return Embedded(ticket.vectors, tokens, prepared.truncated, timings)

    def _retry_after(self, tokens: int) -> int:
        rate = self._tokens_per_s or 1000.0
        return max(1, math.ceil((self._queued_tokens + tokens - self.max_queue_tokens) / rate + 0.5))

    def _cancel(self, ticket: _Ticket) -> bool:
        """Mark a request cancelled and release its tokens; True if it was still unanswered."""
        with self._cond:
            ticket.cancelled = True
            return self._release(ticket)

    def _release(self, ticket: _Ticket) -> bool:  # holds self._cond
        if ticket.finished:
            return False
        ticket.finished = True
        self._queued_tokens -= ticket.tokens
        self._tickets.discard(ticket)
        self.metrics.queued_tokens.set(self._queued_tokens)
        return True

    # -- per-request post-processing -------------------------------------------------------------
    def check_dimensions(self, dimensions: int | None) -> int:
        if dimensions is None:
            return self.default_dim
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= self.default_dim:
            raise BadRequest(f"dimensions must be an integer in 1..{self.default_dim} (the model's width); got {dimensions!r}",
                             param="dimensions")
        return dimensions

    def finish(self, vectors: np.ndarray, dimensions: int | None = None, normalize: bool | None = None) -> np.ndarray:
        """Matryoshka truncation to ``dimensions`` then L2 normalisation when the model normalises (or
        ``normalize`` says so): exactly what ``Embedder.encode`` returns for the model's own width."""
        d = self.check_dimensions(dimensions)
        normalize = self.normalize if normalize is None else normalize
        if normalize:
            return prepare(vectors, d)  # index/codecs.py: truncate + L2-normalise, float32
        return np.ascontiguousarray(vectors[:, :d], dtype=np.float32)

    def quantize(self, vectors: np.ndarray, precision: str) -> np.ndarray:
        if precision == "float32":
            return vectors
        if self.quantizer is None:
            raise Unavailable("the int8 codec is not calibrated yet (the server is warming up)")
        return self.quantizer.encode(vectors, precision)

    # -- the batcher thread -------------------------------------------------------------------------
    def _batcher_main(self) -> None:
        try:
            while True:
                # the slot is free once the worker took the last batch (prefetch) or finished it (no prefetch):
                # a batch is formed as late as possible, so inputs that arrive meanwhile can still join it
                while not self._slot.acquire(timeout=0.5):
                    if self._stopping and not (self._worker and self._worker.is_alive()):
                        return
                with self._cond:
                    while not self._stopping and (self._paused or not self._pending):
                        self._cond.wait(0.5)
                    if self._stopping and not self._pending:
                        break
                    entries = self._take_batch()
                if not entries:
                    self._slot.release()
                    continue
                features = self.embedder.batch_features([e.ids for e in entries], [e.prompt_length for e in entries],
                                                        self.device)
                padded = int(features["input_ids"].numel())
                self._batches.put(_Batch(entries, features, padded, len({id(e.ticket) for e in entries})))
        except BaseException:  # noqa: BLE001 - logged; the thread ends and health() reports it
            log.exception("the batcher thread died")
        finally:
            try:
                self._batches.put(None, timeout=1.0)
            except queue.Full:
                pass

    def _take_batch(self) -> list[_Entry]:  # holds self._cond
        """Pop the length-sorted token-budget batch that holds the oldest live input (the rest go back)."""
        window: list[_Entry] = []
        skipped = 0
        while self._pending and len(window) < WINDOW:
            entry = self._pending.popleft()
            if entry.ticket.cancelled:
                skipped += 1
                continue
            window.append(entry)
        if skipped:
            self.metrics.skipped_inputs.inc(skipped)
        if not window:
            self.metrics.queued_inputs.set(len(self._pending))
            return []
        overhead = self.batch_overhead_tokens if self.batch_overhead_tokens is not None else DEFAULT_OVERHEAD_TOKENS
        chosen = next(b for b in padding_aware_batches([len(e.ids) for e in window], self.max_batch_tokens,
                                                       self.max_batch_size, overhead) if 0 in b)
        keep = set(chosen)
        self._pending.extendleft(reversed([e for i, e in enumerate(window) if i not in keep]))
        self.metrics.queued_inputs.set(len(self._pending))
        return [window[i] for i in chosen]

    # -- the worker thread --------------------------------------------------------------------------
    def _worker_main(self) -> None:
        self.metrics.worker_alive.set(1)
        try:
            with torch.inference_mode(), autocast(self.device, DTYPES.get(self.dtype, torch.float32)), low_precision_cpu_attention(
                    self.embedder.source, self.device, self.dtype in ("bf16", "fp16")):
                self._warm_up()
                self.ready = True
                while True:
                    try:
                        batch = self._batches.get(timeout=0.5)
                    except queue.Empty:
                        if self._queued_tokens == 0 or self._paused:
                            self._last_progress = time.monotonic()
                        continue
                    if batch is None:
                        break
                    if self.prefetch:
                        self._slot.release()
                    try:
                        self._run(batch)
                    finally:
                        if not self.prefetch:
                            self._slot.release()
                    if not self._pending:
                        self._trim_heap()
        except BaseException:  # noqa: BLE001 - logged; the thread ends and health() reports it
            log.exception("the model worker thread died")
        finally:
            self.ready = False
            self.metrics.worker_alive.set(0)
            self._fail_all(Unavailable("the model worker stopped before answering this request"))

    def _forward(self, features: dict[str, Any]) -> np.ndarray:
        out = self.embedder(features, postprocess=False)["sentence_embedding"]
        return out.float().cpu().numpy()

    def _warm_up(self) -> None:
        texts = self._calibration_texts
        if not texts:
            return
        with self._tokenizer_lock:
            tok = self._tok.tokenize(texts)
        full = np.empty((len(texts), self.full_dim), dtype=np.float32)
        for idx in token_budget_batches(tok.lengths, self.max_batch_tokens, self.max_batch_size):
            features = self.embedder.batch_features([tok.ids[i] for i in idx], [tok.prompt_lengths[i] for i in idx],
                                                    self.device)
            full[idx] = self._forward(features)
        if np.isfinite(full).all():
            self.quantizer = Quantizer(full)
        else:
            log.warning("the model gives NaN/inf on the calibration texts: int8 output is disabled")
        if self.batch_overhead_tokens is None:
            self.batch_overhead_tokens = self._measure_overhead(tok.ids)

    def _trim_heap(self) -> None:
        """Give freed heap memory back to the OS (glibc ``malloc_trim``), at most every TRIM_EVERY seconds,
        when the queue is empty. Batches of ever-changing shapes fragment glibc's heap: without this a
        CPU server's RSS creeps up under steady load (see docs/serving.md, Soak)."""
        now = time.monotonic()
        if _MALLOC_TRIM is None or now - self._last_trim < TRIM_EVERY:
            return
        self._last_trim = now
        _MALLOC_TRIM(0)

    def _measure_overhead(self, samples: Sequence[Sequence[int]]) -> int:
        """The fixed cost of one forward pass, in padded tokens: time a 1x8 pass and a pass of about
        ``max_batch_tokens`` tokens (best of 3 each), fit cost = overhead + k * tokens."""
        pool = [t for ids in samples for t in ids] or [0]
        def timed(rows: int, width: int) -> float:
            seqs = [[pool[(r * width + c) % len(pool)] for c in range(width)] for r in range(rows)]
            features = self.embedder.batch_features(seqs, [0] * rows, self.device)
            best = math.inf
            for _ in range(3):
                start = time.perf_counter()
                self._forward(dict(features))
                best = min(best, time.perf_counter() - start)
            return best
        width = 32 if self.max_batch_tokens >= 64 else 8
        rows = max(2, min(self.max_batch_size, self.max_batch_tokens // width))
        small, big = timed(1, 8), timed(rows, width)
        per_token = (big - small) / max(rows * width - 8, 1)
        if per_token <= 0:
            return DEFAULT_OVERHEAD_TOKENS
        overhead = int(round(small / per_token - 8))
        log.info("forward pass overhead: %.1f ms = %d padded tokens", 1000 * small, overhead)
        return max(0, min(overhead, self.max_batch_tokens))

    def _run(self, batch: _Batch) -> None:
        live = [e for e in batch.entries if not e.ticket.cancelled]
        if not live:
            self.metrics.skipped_inputs.inc(len(batch.entries))
            return
        start = time.perf_counter()
        for e in live:
            if e.ticket.first_batch is None:
                e.ticket.first_batch = start
                self.metrics.queue_seconds.observe(start - e.ticket.enqueued)
        self._busy_since = time.monotonic()
        if self.on_forward is not None:
            self.on_forward(len(live))  # counted as forward time: a hook that hangs looks like a stuck model
        error: BaseException | None = None
        try:
            vectors = self._forward(batch.features)
        except Exception as exc:  # noqa: BLE001 - the whole batch fails alike; the worker lives on
            log.exception("forward pass failed")
            error = BackendError(f"the model failed on this batch: {type(exc).__name__}: {exc}")
            vectors = None
        finally:
            self._busy_since = None
        seconds = time.perf_counter() - start
        self._last_progress = time.monotonic()
        real = sum(len(e.ids) for e in batch.entries)
        self._tokens_per_s = 0.8 * self._tokens_per_s + 0.2 * real / max(seconds, 1e-6) if self._tokens_per_s else real / max(seconds, 1e-6)
        m = self.metrics
        m.forward_seconds.observe(seconds)
        m.batch_items.observe(len(batch.entries))
        m.batch_tokens.observe(batch.padded_tokens)
        m.batch_requests.observe(batch.requests)
        m.tokens.inc(real)
        done: list[_Ticket] = []
        failed: dict[int, tuple[_Ticket, BaseException]] = {}
        for row, e in enumerate(batch.entries):
            t = e.ticket
            if t.cancelled or id(t) in failed:
                continue
            if error is not None:
                failed[id(t)] = (t, error)
                continue
            vec = vectors[row]
            if not np.isfinite(vec).all():
                failed[id(t)] = (t, BackendError(f"the model produced NaN/inf for input {e.row}: check the model "
                                                 "weights and dtype"))
                continue
            t.vectors[e.row] = vec
            t.inference += seconds / len(batch.entries)
            t.remaining -= 1
            if t.remaining == 0:
                done.append(t)
        with self._cond:
            done = [t for t in done if self._release(t)]
            failed_list = [(t, exc) for t, exc in failed.values() if self._release(t)]
        for t in done:
            _resolve(t, None)
        for t, exc in failed_list:
            _resolve(t, exc)

    def _fail_all(self, error: BaseException) -> None:
        with self._cond:
            tickets = [t for t in list(self._tickets) if self._release(t)]
            self._pending.clear()
            self.metrics.queued_inputs.set(0)
        for t in tickets:
            _resolve(t, error)


class Quantizer:
    """The index's codecs for single vectors: ``int8`` is FAISS's SQ8 (``parse_codec('int8')``: per-dimension
    min/max calibrated on the calibration texts, per width), returned as signed bytes (code - 128);
    ``binary`` is the sign bits packed 8 per byte, as ``VectorIndex`` stores ``binary``. Both encode the
    unit vector, as the index does."""

    def __init__(self, calibration_full: np.ndarray) -> None:
        self.calibration = np.asarray(calibration_full, dtype=np.float32)
        self._sq: dict[int, Any] = {}
        self._lock = threading.Lock()

    def int8_codec(self, dim: int) -> Any:
        with self._lock:
            if dim not in self._sq:
                import faiss

                codec = parse_codec("int8")
                sq = faiss.index_factory(dim, codec.factory_string(dim), faiss.METRIC_INNER_PRODUCT)
                sq.train(codec.prepare(self.calibration[:, :dim]))
                self._sq[dim] = sq
            return self._sq[dim]

    def encode(self, vectors: np.ndarray, precision: str) -> np.ndarray:
        unit = prepare(vectors)
        if precision == "binary":
            if unit.shape[1] % 8:
                raise BadRequest(f"binary output needs a width divisible by 8; got {unit.shape[1]}", param="dimensions")
            return np.packbits(unit > 0, axis=1)
        if precision == "int8":
            codes = self.int8_codec(unit.shape[1]).sa_encode(unit)
            return (codes.astype(np.int16) - 128).astype(np.int8)
        raise BadRequest(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}", param="precision")

    def int8_ranges(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(vmin, vdiff) of the int8 codec at width ``dim``: code q decodes to vmin + (q + 128 + 0.5) / 255 * vdiff."""
        import faiss

        trained = faiss.vector_to_array(self.int8_codec(dim).sq.trained).astype(np.float32)
        return trained[:dim], trained[dim:2 * dim]

    def decode_int8(self, codes: np.ndarray) -> np.ndarray:
        """Approximate unit vectors back from int8 output (for tests and clients of this module)."""
        codes = np.asarray(codes)
        return self.int8_codec(codes.shape[1]).sa_decode((codes.astype(np.int16) + 128).astype(np.uint8))


def packaged_calibration_texts() -> list[str]:
    """The packaged demo corpus and queries (35 short sentences): the default int8 calibration set."""
    from importlib import resources

    lines: list[str] = []
    for name in ("demo_corpus.txt", "demo_queries.txt"):
        text = resources.files("embedlab.data").joinpath(name).read_text(encoding="utf-8")
        lines += [line for line in text.splitlines() if line.strip()]
    return lines


def _resolve(ticket: _Ticket, error: BaseException | None) -> None:
    def settle() -> None:
        if ticket.future.done():
            return
        if error is None:
            ticket.future.set_result(None)
        else:
            ticket.future.set_exception(error)

    try:
        ticket.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody waits any more
        pass


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"serve: '{name}' must be a positive integer; got {value!r}")
    return value


__all__ = ["Embedded", "Engine", "PRECISIONS", "Prepared", "Quantizer", "Timings"]
