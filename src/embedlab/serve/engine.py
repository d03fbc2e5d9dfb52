"""The serving engine: wires tokenization, the queue (admission) and the model worker together, as TEI does.

    handler --engine.prepare_*()--> Prepared          (serve/tokenization.py: one tokenizer pass per input)
            --await engine.embed()--> Queue.admit      (serve/queue.py: admission by expected wait, else 429)
                                      -> pending inputs -> batcher thread -> model thread
                                                         (serve/worker.py: padding, ONE forward at a time)
            <-- the raw rows (pooled, un-truncated, un-normalised)
            --engine.finish() / quantize()-->          (serve/output.py: what Embedder.encode returns, then
                                                        the optional int8 / binary codecs)

A request is cancelled (its queued inputs skipped, its tokens released) when its awaiting task is
cancelled (client disconnect) or its timeout passes. ``health()`` reports a dead worker, or a forward
pass / queue that made no progress for ``stall_timeout`` seconds while work was waiting.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from embedlab.errors import ConfigError, EmptyInput, Unavailable
from embedlab.models.modules import Normalize, Truncate
from embedlab.serve.metrics import Metrics
from embedlab.serve.output import PRECISIONS, Output, Quantizer, packaged_calibration_texts
from embedlab.serve.queue import DEFAULT_MAX_QUEUE_WAIT, Queue, RequestGate, Throughput
from embedlab.serve.tokenization import Prepared, Tokenization
from embedlab.serve.worker import Worker
from embedlab.validation import non_negative_int, positive_int, positive_number


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


class Engine:
    """Owns an :class:`~embedlab.models.Embedder` and serves embedding requests from asyncio code.

    ``dtype``: auto | fp32 | bf16 (autocast, as ``encode``) | int8 (the backbone's linear layers quantised, CPU);
    ``runtime``: torch | onnx (the backbone in ONNX Runtime, fp32 or int8, CPU; :meth:`Embedder.for_runtime`).
    ``max_batch_tokens`` bounds rows x longest per forward pass (default 512 on CPU, which keeps one pass
    near 0.1 s for a small encoder and so bounds the wait behind it; 32,768 on GPU); ``max_batch_size``
    bounds rows (64 / 512). ``batch_overhead_tokens`` is the fixed cost of one forward pass in padded
    tokens, which decides how finely pending inputs are split by length (None: measured at warm-up).
    Admission: a request is refused (429) when the queued work ahead of it, at the measured throughput,
    would take more than ``max_queue_wait`` seconds (default 1 s, and never more than the request's
    timeout); ``tokens_per_s`` is the throughput assumed until the worker has measured it under load
    (None: a forward pass timed at warm-up). ``max_queue_tokens`` bounds the tokens admitted and not yet
    answered (default 32 batches; a larger request gets 413). ``max_input_tokens`` (default: the model's
    max_length) with ``truncate`` decides between cutting and refusing (413) longer inputs.
    ``on_forward(n_inputs)`` is called by the worker before each forward pass (a test and
    instrumentation hook). ``calibration_texts`` are embedded at start-up (a warm-up) and calibrate the
    int8 codec (default: the packaged demo corpus and queries). ``prefetch`` (default: on GPU only)
    forms the next batch while the current one runs, as TEI does; without it the batch is formed when
    the worker is free, which on CPU gives larger batches under load (see docs/serving.md). ``clock``
    (seconds, monotonic) times the stall checks of :meth:`health`.
    """

    def __init__(
        self,
        embedder: Any,
        *,
        dtype: str = "auto",
        runtime: str | None = None,
        device: str | torch.device | None = None,
        max_batch_tokens: int | None = None,
        max_batch_size: int | None = None,
        max_queue_tokens: int | None = None,
        max_queue_wait: float | None = None,
        tokens_per_s: float | None = None,
        max_input_tokens: int | None = None,
        truncate: bool = True,
        stall_timeout: float = 60.0,
        calibration_texts: Sequence[str] | None = None,
        on_forward: Callable[[int], None] | None = None,
        metrics: Metrics | None = None,
        prefetch: bool | None = None,
        batch_overhead_tokens: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device = torch.device(device) if device is not None else embedder.device
        if embedder.device != self.device:
            embedder = embedder.to(self.device)
        self.embedder = embedder.eval()
        # int8: the backbone's linear layers in int8; runtime onnx: the backbone in ONNX Runtime; the rest of the chain as it is
        self.embedder, self.dtype = self.embedder.for_runtime(runtime, dtype)
        self.runtime = self.embedder.runtime
        on_cpu = self.device.type == "cpu"
        # None: the default; anything given (0 included) is checked (embedlab.validation's messages)
        self.max_batch_tokens = positive_int("max_batch_tokens", _given(max_batch_tokens, 512 if on_cpu else 32768))
        self.max_batch_size = positive_int("max_batch_size", _given(max_batch_size, 64 if on_cpu else 512))
        self.max_queue_tokens = positive_int("max_queue_tokens", _given(max_queue_tokens, 32 * self.max_batch_tokens))
        self.max_queue_wait = positive_number("max_queue_wait", _given(max_queue_wait, DEFAULT_MAX_QUEUE_WAIT))
        if tokens_per_s is not None:
            positive_number("tokens_per_s", tokens_per_s)
        if batch_overhead_tokens is not None:
            non_negative_int("batch_overhead_tokens", batch_overhead_tokens)
        self.stall_timeout = float(stall_timeout)
        self.truncate = bool(truncate)
        self.prefetch = (not on_cpu) if prefetch is None else bool(prefetch)
        self.on_forward = on_forward
        self.metrics = metrics or Metrics()
        self.full_dim, self.default_dim = self._check_chain()
        self.normalize = bool(embedder.normalize)
        limit = getattr(getattr(embedder.source, "config", None), "max_position_embeddings", None) or 10**9
        self.max_input_tokens = positive_int("max_input_tokens", _given(max_input_tokens, embedder.max_length))
        if self.max_input_tokens > limit:
            raise ConfigError(f"max_input_tokens {self.max_input_tokens} exceeds the model's {limit} positions")
        self.tokenization = Tokenization(embedder, self.max_input_tokens, truncate=self.truncate)
        self.vocab_size = self.tokenization.vocab_size
        self.output = Output(self.default_dim, self.normalize)
        self.queue = Queue(
            dim=self.full_dim,
            max_batch_tokens=self.max_batch_tokens,
            max_batch_size=self.max_batch_size,
            max_queue_tokens=self.max_queue_tokens,
            max_queue_wait=self.max_queue_wait,
            throughput=Throughput(tokens_per_s),
            metrics=self.metrics,
        )
        self.gate = RequestGate(self.max_queue_wait)  # the HTTP layer's check (app.py's middleware)
        texts = packaged_calibration_texts() if calibration_texts is None else list(calibration_texts)
        self.worker = Worker(
            self.embedder,
            self.queue,
            device=self.device,
            dtype=self.dtype,
            max_batch_tokens=self.max_batch_tokens,
            max_batch_size=self.max_batch_size,
            prefetch=self.prefetch,
            batch_overhead_tokens=batch_overhead_tokens,
            stall_timeout=self.stall_timeout,
            metrics=self.metrics,
            calibrate=(lambda: self.tokenization.calibration(texts)) if texts else None,
            on_calibrated=self._calibrated,
            on_forward=on_forward,
            measure_prior=tokens_per_s is None,
            clock=clock,
        )
        self.draining = False

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

    def _calibrated(self, full: np.ndarray) -> None:
        self.output.quantizer = Quantizer(full)

    @property
    def quantizer(self) -> Quantizer | None:
        return self.output.quantizer

    @property
    def ready(self) -> bool:
        return self.worker.ready

    @property
    def batch_overhead_tokens(self) -> int | None:
        return self.worker.batch_overhead_tokens

    def start(self) -> "Engine":
        """Start the batcher and the worker (idempotent). The worker first embeds the calibration texts."""
        self.worker.start()
        return self

    def wait_ready(self, timeout: float = 60.0) -> bool:
        end = time.monotonic() + timeout
        while not self.ready and time.monotonic() < end:
            if self.worker.started and not self.worker.model_alive():
                return False
            time.sleep(0.01)
        return self.ready

    def begin_drain(self) -> None:
        """Refuse new requests (503); queued and running ones still complete."""
        self.draining = True

    def stop(self, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop the threads; with ``drain`` first wait (up to ``timeout``) for admitted work to finish."""
        self.draining = True
        q = self.queue
        if drain and self.worker.started:
            end = time.monotonic() + timeout
            while q.queued_tokens > 0 and time.monotonic() < end and self.worker_alive():
                time.sleep(0.02)
        with q.cond:
            q.stopping = True
            q.paused = False
            q.cond.notify_all()
        self.worker.join()
        q.fail_all(Unavailable("the server stopped before this request was answered"))

    def pause(self) -> None:
        """Stop forming batches (queued requests wait); :meth:`resume` continues. For tests and operators."""
        with self.queue.cond:
            self.queue.paused = True

    def resume(self) -> None:
        with self.queue.cond:
            self.queue.paused = False
            self.queue.cond.notify_all()

    # -- health -----------------------------------------------------------------------------------
    def worker_alive(self) -> bool:
        return self.worker.alive()

    def health(self) -> tuple[bool, str]:
        """(healthy, reason): see :meth:`Worker.health`."""
        return self.worker.health()

    @property
    def queued_tokens(self) -> int:
        return self.queue.queued_tokens

    @property
    def tokens_per_s(self) -> float:
        """The throughput admission assumes now (tokens/s)."""
        return self.queue.throughput.tokens_per_s

    # -- preparing inputs (any thread) -------------------------------------------------------------
    def prepare_texts(
        self, texts: Sequence[str], input_type: str | None = None, *, truncate: bool | None = None
    ) -> Prepared:
        """Tokenize with the named prompt (None: the model's default), applying ``max_input_tokens``: cut
        (``truncate``) or :class:`InputTooLong` (413). One tokenizer pass per input."""
        return self.tokenization.texts(texts, input_type, truncate=truncate)

    def prepare_ids(self, sequences: Sequence[Sequence[int]], *, truncate: bool | None = None) -> Prepared:
        """Token-id inputs are used as they are (no special tokens or prompt added)."""
        return self.tokenization.ids(sequences, truncate=truncate)

    def tokens_of(self, texts: Sequence[str], input_type: str | None = None) -> list[list[int]]:
        """The ids the server would embed (always truncating), for /tokenize."""
        return self.prepare_texts(texts, input_type, truncate=True).ids

    # -- the asyncio side ---------------------------------------------------------------------------
    async def embed(self, prepared: Prepared, *, timeout: float | None = None) -> Embedded:
        """Admit, enqueue and await the rows of one request. Raises Overloaded (429), Unavailable (503:
        draining, dead worker, timeout), InputTooLong (a request larger than the whole queue)."""
        if self.draining:
            raise Unavailable("the server is shutting down: it accepts no new requests")
        if not self.worker.started or not self.worker_alive():
            raise Unavailable("the model worker is not running")
        if len(prepared) == 0:
            raise EmptyInput("no inputs: give at least one")
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        ticket = self.queue.admit(prepared, loop, future, timeout)
        try:
            if timeout is None:
                await asyncio.shield(future)
            else:
                await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            self.queue.cancel(ticket)
            self.metrics.timeouts.inc()
            raise Unavailable(f"the request timed out after {timeout:g} s (--request-timeout)") from None
        except asyncio.CancelledError:
            if self.queue.cancel(ticket):
                self.metrics.cancelled.inc()
            raise
        exc = future.exception()
        if exc is not None:
            raise exc
        start = ticket.first_batch if ticket.first_batch is not None else time.perf_counter()
        timings = Timings(queue=start - ticket.enqueued, inference=ticket.inference)
        return Embedded(ticket.vectors, prepared.tokens, prepared.truncated, timings)

    # -- per-request post-processing (serve/output.py) ----------------------------------------------
    def check_dimensions(self, dimensions: int | None) -> int:
        return self.output.check_dimensions(dimensions)

    def finish(self, vectors: np.ndarray, dimensions: int | None = None, normalize: bool | None = None) -> np.ndarray:
        """Matryoshka truncation to ``dimensions`` then L2 normalisation when the model normalises (or
        ``normalize`` says so): exactly what ``Embedder.encode`` returns for the model's own width."""
        return self.output.finish(vectors, dimensions, normalize)

    def quantize(self, vectors: np.ndarray, precision: str) -> np.ndarray:
        return self.output.quantize(vectors, precision)


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


__all__ = ["Embedded", "Engine", "PRECISIONS", "Prepared", "Quantizer", "Timings"]
