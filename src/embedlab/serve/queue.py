"""The queue and admission control: a request's inputs wait here until the batcher takes them.

Admission is by *expected wait*, checked twice, each against ``max_queue_wait`` seconds (and never more
than the request's own timeout); a request that would wait longer gets :class:`~embedlab.errors.Overloaded`
(429) with ``Retry-After`` = the seconds until the expected wait is back under the bound, from the same
estimate:

* :class:`RequestGate`, when a request arrives (before its body is read): the requests in flight divided
  by the rate the server answers them while busy (Little's law). This is the wait when the bottleneck is
  not the model (HTTP, JSON, the tokenizer: short texts on a small CPU).
* :meth:`Queue.admit`, once it is tokenized: the tokens admitted and not yet answered (queued or running)
  divided by the worker's measured token throughput (:class:`Throughput`). This is the wait when it is.

``max_queue_tokens`` stays as a memory bound: a request larger than it can never be admitted (413).

Batch selection (:meth:`Queue.take_batch`): the batch holding the OLDEST live input among the
``padding_aware_batches`` (models/batching.py: similar lengths, rows x longest <= max_batch_tokens, the
split that minimises padded tokens + a per-forward overhead) of the first WINDOW pending inputs; inputs
of cancelled requests are dropped on the way.
"""

from __future__ import annotations

import asyncio
import collections
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from embedlab.errors import Overloaded
from embedlab.models.batching import padding_aware_batches
from embedlab.serve.errors import InputTooLong
from embedlab.serve.metrics import Metrics
from embedlab.serve.tokenization import Prepared

DEFAULT_MAX_QUEUE_WAIT = 1.0  # seconds of queued work a new request may wait behind (at most its timeout)
PRIOR_TOKENS_PER_S = 2000.0  # the throughput assumed before anything was measured (a small encoder on 2 CPU cores)
THROUGHPUT_TAU = 2.0  # seconds: the EWMA's time constant
DEFAULT_OVERHEAD_TOKENS = 32  # until measured, or when the measurement is meaningless
WINDOW = 1024  # pending inputs considered when forming one batch (oldest first)


class Throughput:
    """The worker's token throughput while it has a backlog (tokens per second of wall time, batch
    formation included): an exponentially weighted moving average with time constant ``tau`` seconds,
    started from ``prior`` (measured at warm-up; PRIOR_TOKENS_PER_S when nothing was)."""

    def __init__(self, prior: float | None = None, tau: float = THROUGHPUT_TAU) -> None:
        self.tau = tau
        self._rate = float(prior) if prior else None

    @property
    def tokens_per_s(self) -> float:
        return self._rate or PRIOR_TOKENS_PER_S

    @property
    def measured(self) -> bool:
        return self._rate is not None

    def start_from(self, prior: float) -> None:
        """Restart the average from ``prior`` tokens/s (the warm-up's timed pass)."""
        self._rate = float(prior)

    def observe(self, tokens: int, seconds: float) -> None:
        if tokens <= 0 or seconds <= 0:
            return
        rate = tokens / seconds
        if self._rate is None:
            self._rate = rate
            return
        self._rate += (1.0 - math.exp(-seconds / self.tau)) * (rate - self._rate)


class RequestGate:
    """Admission of whole requests by their expected wait at the HTTP layer: ``in_flight / rate``, where
    ``rate`` is the answered requests per second over busy periods (some request in flight), a
    :class:`Throughput` of requests. Before anything was answered, everything is admitted."""

    def __init__(
        self, max_wait: float, tau: float = THROUGHPUT_TAU, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.max_wait = max_wait
        self.rate = Throughput(tau=tau)
        self.clock = clock
        self.in_flight = 0
        self._mark: float | None = None  # the last answer (or the start of the busy period)
        self._lock = threading.Lock()

    def expected_wait(self) -> float:
        return self.in_flight / self.rate.tokens_per_s if self.rate.measured else 0.0

    def enter(self, timeout: float | None = None) -> None:
        """Count a request in, or raise Overloaded when it would wait longer than the bound."""
        bound = self.max_wait if timeout is None else min(self.max_wait, timeout)
        with self._lock:
            wait = self.expected_wait()
            if wait > bound:
                raise Overloaded(
                    f"the server is busy: {self.in_flight} requests in flight at "
                    f"{self.rate.tokens_per_s:.1f} answered/s is {wait:.2f} s of waiting, more than the "
                    f"{bound:g} s a request may wait (--max-queue-wait); retry later",
                    retry_after=retry_after(wait - bound),
                )
            if self.in_flight == 0:
                self._mark = self.clock()
            self.in_flight += 1

    def leave(self, answered: bool) -> None:
        """Count a request out; ``answered``: it was served (not refused), so it measures the rate."""
        with self._lock:
            now = self.clock()
            if answered and self._mark is not None:
                self.rate.observe(1, now - self._mark)
                self._mark = now
            self.in_flight -= 1
            if self.in_flight == 0:
                self._mark = None


class Ticket:
    """One request's state, shared by the event loop (creates, cancels) and the worker (fills)."""

    def __init__(self, n: int, dim: int, tokens: int, loop: asyncio.AbstractEventLoop, future: asyncio.Future) -> None:
        self.vectors = np.empty((n, dim), dtype=np.float32)
        self.remaining = n
        self.tokens = tokens
        self.loop, self.future = loop, future
        self.cancelled = False
        self.finished = False  # tokens released (answered, failed or cancelled); guarded by the queue's lock
        self.enqueued = time.perf_counter()
        self.first_batch: float | None = None
        self.inference = 0.0


@dataclass
class Entry:
    ticket: Ticket
    row: int
    ids: list[int]
    prompt_length: int


class Queue:
    """Admitted requests' inputs, oldest first, under one condition variable (the batcher waits on it)."""

    def __init__(
        self,
        *,
        dim: int,
        max_batch_tokens: int,
        max_batch_size: int,
        max_queue_tokens: int,
        max_queue_wait: float,
        throughput: Throughput,
        metrics: Metrics,
    ) -> None:
        self.dim = dim
        self.max_batch_tokens, self.max_batch_size = max_batch_tokens, max_batch_size
        self.max_queue_tokens, self.max_queue_wait = max_queue_tokens, max_queue_wait
        self.throughput = throughput
        self.metrics = metrics
        self.cond = threading.Condition()
        self.pending: collections.deque[Entry] = collections.deque()
        self.tickets: set[Ticket] = set()
        self.queued_tokens = 0
        self.paused = False
        self.stopping = False

    # -- admission (event loop) ---------------------------------------------------------------------------
    def expected_wait(self) -> float:
        """Seconds a request admitted now would wait before its first batch: the admitted work ahead of it
        at the measured throughput."""
        return self.queued_tokens / self.throughput.tokens_per_s

    def admit(
        self, prepared: Prepared, loop: asyncio.AbstractEventLoop, future: asyncio.Future, timeout: float | None = None
    ) -> Ticket:
        """Enqueue ``prepared``'s inputs as one ticket, or raise Overloaded (429) / InputTooLong (413)."""
        tokens = prepared.tokens
        if tokens > self.max_queue_tokens:
            raise InputTooLong(
                f"this request has {tokens} tokens, more than the server queues at once "
                f"({self.max_queue_tokens}, --max-queue-tokens): split it"
            )
        bound = self.max_queue_wait if timeout is None else min(self.max_queue_wait, timeout)
        ticket = Ticket(len(prepared), self.dim, tokens, loop, future)
        with self.cond:
            rate = self.throughput.tokens_per_s
            wait = self.queued_tokens / rate
            over = self.queued_tokens + tokens - self.max_queue_tokens
            if wait > bound or over > 0:
                self.metrics.rejected.inc()
                if wait > bound:
                    why = (
                        f"the server is busy: the queued work ({self.queued_tokens} tokens at {rate:.0f} tokens/s) "
                        f"is {wait:.2f} s, more than the {bound:g} s a request may wait (--max-queue-wait)"
                    )
                else:
                    why = (
                        f"the queue is full ({self.queued_tokens} of {self.max_queue_tokens} tokens queued, "
                        "--max-queue-tokens)"
                    )
                raise Overloaded(f"{why}; retry later", retry_after=retry_after(wait - bound, over / rate))
            self.queued_tokens += tokens
            self.tickets.add(ticket)
            self.pending.extend(
                Entry(ticket, row, ids, pl) for row, (ids, pl) in enumerate(zip(prepared.ids, prepared.prompt_lengths))
            )
            self.metrics.queued_tokens.set(self.queued_tokens)
            self.metrics.queued_inputs.set(len(self.pending))
            self.cond.notify()
        return ticket

    def cancel(self, ticket: Ticket) -> bool:
        """Mark a request cancelled and release its tokens; True if it was still unanswered."""
        with self.cond:
            ticket.cancelled = True
            return self.release(ticket)

    def release(self, ticket: Ticket) -> bool:  # holds self.cond
        if ticket.finished:
            return False
        ticket.finished = True
        self.queued_tokens -= ticket.tokens
        self.tickets.discard(ticket)
        self.metrics.queued_tokens.set(self.queued_tokens)
        return True

    # -- batch selection (the batcher thread) ----------------------------------------------------------
    def wait_for_work(self, poll: float = 0.5) -> bool:  # holds self.cond
        """Block until inputs are pending and the queue is not paused; False once stopping with none left."""
        while not self.stopping and (self.paused or not self.pending):
            self.cond.wait(poll)
        return not (self.stopping and not self.pending)

    def take_batch(self, overhead_tokens: int | None) -> tuple[list[Entry], bool]:  # holds self.cond
        """Pop the length-sorted token-budget batch that holds the oldest live input (the rest go back);
        also whether live inputs remain pending after it (the worker has a backlog)."""
        window: list[Entry] = []
        skipped = 0
        while self.pending and len(window) < WINDOW:
            entry = self.pending.popleft()
            if entry.ticket.cancelled:
                skipped += 1
                continue
            window.append(entry)
        if skipped:
            self.metrics.skipped_inputs.inc(skipped)
        if not window:
            self.metrics.queued_inputs.set(len(self.pending))
            return [], False
        overhead = overhead_tokens if overhead_tokens is not None else DEFAULT_OVERHEAD_TOKENS
        chosen = next(
            b
            for b in padding_aware_batches(
                [len(e.ids) for e in window], self.max_batch_tokens, self.max_batch_size, overhead
            )
            if 0 in b
        )
        keep = set(chosen)
        self.pending.extendleft(reversed([e for i, e in enumerate(window) if i not in keep]))
        self.metrics.queued_inputs.set(len(self.pending))
        return [window[i] for i in chosen], bool(self.pending)

    # -- completion (the worker thread) -----------------------------------------------------------------
    def settle(self, done: list[Ticket], failed: list[tuple[Ticket, BaseException]]) -> None:
        """Release and resolve answered and failed tickets (those not cancelled meanwhile)."""
        with self.cond:
            done = [t for t in done if self.release(t)]
            failed = [(t, exc) for t, exc in failed if self.release(t)]
        for t in done:
            resolve(t, None)
        for t, exc in failed:
            resolve(t, exc)

    def fail_all(self, error: BaseException) -> None:
        with self.cond:
            tickets = [t for t in list(self.tickets) if self.release(t)]
            self.pending.clear()
            self.metrics.queued_inputs.set(0)
        for t in tickets:
            resolve(t, error)


def retry_after(*seconds: float) -> int:
    """Whole seconds (>= 1) until the longest of ``seconds`` has passed: the Retry-After header."""
    return max(1, math.ceil(max(seconds)))


def resolve(ticket: Ticket, error: BaseException | None) -> None:
    """Settle a ticket's future from any thread (on its event loop)."""

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


__all__ = ["DEFAULT_MAX_QUEUE_WAIT", "Entry", "Queue", "RequestGate", "Throughput", "Ticket", "resolve", "retry_after"]
