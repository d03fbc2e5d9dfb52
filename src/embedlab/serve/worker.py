"""The model worker: a batcher thread that pads the queue's batches, and ONE thread that runs the model.

    batcher thread:  takes the next batch from the :class:`~embedlab.serve.queue.Queue` and pads it
                     (Embedder.batch_features); at most one batch waits (with ``prefetch``, formed while
                     the worker runs the current one; without, when it is free)
    model thread:    the only caller of the embedder's forward: ``emb(features, postprocess=False)``, i.e.
                     the pooled, un-truncated, un-normalised vector; posts each row to its request's ticket
                     and measures the throughput admission reads (tokens per second of wall time, over
                     batches formed while a backlog remained)

At start-up the model thread embeds the calibration texts (a warm-up; the int8 codec is fitted on them),
times a forward pass of about ``max_batch_tokens`` tokens (the throughput prior) and, unless given, the
fixed cost of one pass. ``health()`` reports a dead thread, or a forward pass / queue that made no
progress for ``stall_timeout`` seconds (on ``clock``) while work was waiting.
"""

from __future__ import annotations

import logging
import math
import queue as stdqueue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from embedlab.errors import BackendError, Unavailable
from embedlab.models.batching import token_budget_batches
from embedlab.models.embedder import DTYPES, autocast, low_precision_cpu_attention
from embedlab.serve.metrics import Metrics
from embedlab.serve.queue import DEFAULT_OVERHEAD_TOKENS, Entry, Queue, Ticket

log = logging.getLogger(__name__)

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


@dataclass
class Batch:
    entries: list[Entry]
    features: dict[str, Any]
    padded_tokens: int
    requests: int = field(default=0)
    formed: float = 0.0  # perf_counter when the batcher began forming it
    backlog: bool = False  # live inputs were still pending after it was taken


class Worker:
    """The batcher and model threads over ``queue`` for ``embedder`` (already on ``device``).

    ``calibrate()`` returns the calibration texts' tokenization; ``on_calibrated(full)`` receives their
    pooled vectors (finite) once embedded. ``on_forward(n_inputs)`` is called before each forward pass (a
    test and instrumentation hook). ``measure_prior``: time a full pass at warm-up and start the queue's
    throughput estimate from it."""

    def __init__(
        self,
        embedder: Any,
        queue: Queue,
        *,
        device: torch.device,
        dtype: str,
        max_batch_tokens: int,
        max_batch_size: int,
        prefetch: bool,
        batch_overhead_tokens: int | None,
        stall_timeout: float,
        metrics: Metrics,
        calibrate: Callable[[], Any] | None = None,
        on_calibrated: Callable[[np.ndarray], None] | None = None,
        on_forward: Callable[[int], None] | None = None,
        measure_prior: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.embedder, self.queue, self.device, self.dtype = embedder, queue, device, dtype
        self.max_batch_tokens, self.max_batch_size = max_batch_tokens, max_batch_size
        self.prefetch = prefetch
        self.batch_overhead_tokens = batch_overhead_tokens
        self.stall_timeout = float(stall_timeout)
        self.metrics = metrics
        self.calibrate, self.on_calibrated, self.on_forward = calibrate, on_calibrated, on_forward
        self.measure_prior = measure_prior
        self.clock = clock
        self.ready = False
        self.started = False
        self._batches: stdqueue.Queue[Batch | None] = stdqueue.Queue(maxsize=2)
        self._slot = threading.Semaphore(1)  # one batch formed and not yet taken (prefetch) / not yet run
        self._busy_since: float | None = None
        self._last_progress = clock()
        self._last_end = 0.0  # perf_counter at the end of the last batch (results posted)
        self._last_trim = time.monotonic()
        self._model: threading.Thread | None = None
        self._batcher: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.started:
            return
        self.started = True
        self._last_progress = self.clock()
        self._model = threading.Thread(target=self._model_main, name="embedlab-model-worker", daemon=True)
        self._batcher = threading.Thread(target=self._batcher_main, name="embedlab-batcher", daemon=True)
        self._model.start()
        self._batcher.start()

    def join(self, timeout: float = 5.0) -> None:
        for thread in (self._batcher, self._model):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=timeout)

    def alive(self) -> bool:
        return bool(self._model and self._model.is_alive() and self._batcher and self._batcher.is_alive())

    def model_alive(self) -> bool:
        return bool(self._model and self._model.is_alive())

    def health(self) -> tuple[bool, str]:
        """(healthy, reason): both threads run, and no forward pass or queued work has gone
        ``stall_timeout`` seconds without progress."""
        if not self.started:
            return False, "the engine is not started"
        if not self.alive():
            return False, "the model worker thread is dead"
        now = self.clock()
        busy = self._busy_since
        if busy is not None and now - busy > self.stall_timeout:
            return False, f"the model worker is stuck: one forward pass has run for {now - busy:.0f} s"
        q = self.queue
        if q.queued_tokens > 0 and not q.paused and now - self._last_progress > self.stall_timeout:
            return False, f"no progress for {now - self._last_progress:.0f} s with {q.queued_tokens} tokens queued"
        return True, "ok"

    # -- the batcher thread -----------------------------------------------------------------------------
    def _batcher_main(self) -> None:
        q = self.queue
        try:
            while True:
                # the slot is free once the worker took the last batch (prefetch) or finished it (no prefetch):
                # a batch is formed as late as possible, so inputs that arrive meanwhile can still join it
                while not self._slot.acquire(timeout=0.5):
                    if q.stopping and not self.model_alive():
                        return
                with q.cond:
                    if not q.wait_for_work():
                        break
                    formed = time.perf_counter()
                    entries, backlog = q.take_batch(self.batch_overhead_tokens)
                if not entries:
                    self._slot.release()
                    continue
                features = self.embedder.batch_features(
                    [e.ids for e in entries], [e.prompt_length for e in entries], self.device
                )
                padded = int(features["input_ids"].numel())
                self._batches.put(
                    Batch(entries, features, padded, len({id(e.ticket) for e in entries}), formed, backlog)
                )
        except BaseException:  # noqa: BLE001 - logged; the thread ends and health() reports it
            log.exception("the batcher thread died")
        finally:
            try:
                self._batches.put(None, timeout=1.0)
            except stdqueue.Full:
                pass

    # -- the model thread -------------------------------------------------------------------------------
    def _model_main(self) -> None:
        self.metrics.worker_alive.set(1)
        try:
            with (
                torch.inference_mode(),
                autocast(self.device, DTYPES.get(self.dtype, torch.float32)),
                low_precision_cpu_attention(self.embedder.source, self.device, self.dtype in ("bf16", "fp16")),
            ):
                self._warm_up()
                self.ready = True
                while True:
                    try:
                        batch = self._batches.get(timeout=0.5)
                    except stdqueue.Empty:
                        if self.queue.queued_tokens == 0 or self.queue.paused:
                            self._last_progress = self.clock()
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
                    if not self.queue.pending:
                        self._trim_heap()
        except BaseException:  # noqa: BLE001 - logged; the thread ends and health() reports it
            log.exception("the model worker thread died")
        finally:
            self.ready = False
            self.metrics.worker_alive.set(0)
            self.queue.fail_all(Unavailable("the model worker stopped before answering this request"))

    def _forward(self, features: dict[str, Any]) -> np.ndarray:
        out = self.embedder(features, postprocess=False)["sentence_embedding"]
        return out.float().cpu().numpy()

    def _warm_up(self) -> None:
        tok = self.calibrate() if self.calibrate is not None else None
        samples: Sequence[Sequence[int]] = tok.ids if tok is not None and tok.ids else []
        if samples:
            full = np.empty((len(samples), self.queue.dim), dtype=np.float32)
            for idx in token_budget_batches(tok.lengths, self.max_batch_tokens, self.max_batch_size):
                features = self.embedder.batch_features(
                    [tok.ids[i] for i in idx], [tok.prompt_lengths[i] for i in idx], self.device
                )
                full[idx] = self._forward(features)
            if not np.isfinite(full).all():
                log.warning("the model gives NaN/inf on the calibration texts: int8 output is disabled")
            elif self.on_calibrated is not None:
                self.on_calibrated(full)
        if self.batch_overhead_tokens is None or self.measure_prior:
            self._time_passes(samples)

    def _trim_heap(self) -> None:
        """Give freed heap memory back to the OS (glibc ``malloc_trim``), at most every TRIM_EVERY seconds,
        when the queue is empty. Batches of ever-changing shapes fragment glibc's heap: without this a
        CPU server's RSS creeps up under steady load (see docs/serving.md, Soak)."""
        now = time.monotonic()
        if _MALLOC_TRIM is None or now - self._last_trim < TRIM_EVERY:
            return
        self._last_trim = now
        _MALLOC_TRIM(0)

    def _time_passes(self, samples: Sequence[Sequence[int]]) -> None:
        """Time a 1x8 pass and a pass of about ``max_batch_tokens`` tokens (best of 3 each). The big one is
        the throughput prior (``measure_prior``); fitting cost = overhead + k * tokens gives the fixed cost of
        one pass in padded tokens (unless ``batch_overhead_tokens`` was given)."""
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
        if self.measure_prior:
            self.queue.throughput.start_from(rows * width / max(big, 1e-6))
            log.info(
                "throughput prior: %.0f tokens/s (%d x %d tokens in %.1f ms)",
                rows * width / max(big, 1e-6),
                rows,
                width,
                1000 * big,
            )
        self.metrics.throughput.set(self.queue.throughput.tokens_per_s)
        if self.batch_overhead_tokens is None:
            per_token = (big - small) / max(rows * width - 8, 1)
            if per_token <= 0:
                self.batch_overhead_tokens = DEFAULT_OVERHEAD_TOKENS
                return
            overhead = int(round(small / per_token - 8))
            log.info("forward pass overhead: %.1f ms = %d padded tokens", 1000 * small, overhead)
            self.batch_overhead_tokens = max(0, min(overhead, self.max_batch_tokens))

    def _run(self, batch: Batch) -> None:
        live = [e for e in batch.entries if not e.ticket.cancelled]
        if not live:
            self.metrics.skipped_inputs.inc(len(batch.entries))
            return
        start = time.perf_counter()
        for e in live:
            if e.ticket.first_batch is None:
                e.ticket.first_batch = start
                self.metrics.queue_seconds.observe(start - e.ticket.enqueued)
        self._busy_since = self.clock()
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
        self._last_progress = self.clock()
        real = sum(len(e.ids) for e in batch.entries)
        m = self.metrics
        m.forward_seconds.observe(seconds)
        m.batch_items.observe(len(batch.entries))
        m.batch_tokens.observe(batch.padded_tokens)
        m.batch_requests.observe(batch.requests)
        m.tokens.inc(real)
        done: list[Ticket] = []
        failed: dict[int, tuple[Ticket, BaseException]] = {}
        for row, e in enumerate(batch.entries):
            t = e.ticket
            if t.cancelled or id(t) in failed:
                continue
            if error is not None:
                failed[id(t)] = (t, error)
                continue
            vec = vectors[row]
            if not np.isfinite(vec).all():
                failed[id(t)] = (
                    t,
                    BackendError(f"the model produced NaN/inf for input {e.row}: check the model weights and dtype"),
                )
                continue
            t.vectors[e.row] = vec
            t.inference += seconds / len(batch.entries)
            t.remaining -= 1
            if t.remaining == 0:
                done.append(t)
        self.queue.settle(done, list(failed.values()))
        end = time.perf_counter()
        if batch.backlog and error is None:  # a saturated cycle: formation (unless prefetched) + forward + posting
            self.queue.throughput.observe(real, end - max(batch.formed, self._last_end))
            m.throughput.set(self.queue.throughput.tokens_per_s)
        self._last_end = end


__all__ = ["Batch", "Worker"]
