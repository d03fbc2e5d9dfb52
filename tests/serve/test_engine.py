"""The engine under load and failure: batches mix requests, admission (429), timeouts (503), dropped
clients, a dead or stuck worker (/health 503) and draining."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.conftest import WORDS, cosines
from tests.serve.conftest import TEXTS, metric, running


class Hold:
    """An on_forward hook that blocks the model worker until released (or raises when told to)."""

    def __init__(self, block: bool = True) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        self.block = block
        self.kill = False
        self.calls = 0

    def __call__(self, n: int) -> None:
        self.calls += 1
        if self.kill:
            raise SystemExit("test: kill the model worker")
        self.entered.set()
        if self.block:
            self.released.wait(30)


def _wait(predicate, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def _random_texts(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 30)))) for _ in range(n)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_batch_tokens": 0}, "max_batch_tokens must be a positive integer; got 0"),
        ({"max_batch_size": -1}, "max_batch_size must be a positive integer; got -1"),
        ({"max_queue_tokens": 1.5}, "max_queue_tokens must be a positive integer; got 1.5"),
        ({"max_input_tokens": 0}, "max_input_tokens must be a positive integer; got 0"),
        ({"max_queue_wait": 0}, "max_queue_wait must be a finite number > 0; got 0"),
        ({"max_queue_wait": "5"}, "max_queue_wait must be a finite number > 0; got '5'"),
        ({"tokens_per_s": math.inf}, "tokens_per_s must be a finite number > 0; got inf"),
        ({"batch_overhead_tokens": -1}, "batch_overhead_tokens must be an integer >= 0; got -1"),
    ],
)
def test_limits_use_the_shared_messages(tiny_emb, kwargs, message):
    from embedlab.errors import ConfigError
    from embedlab.serve.engine import Engine

    with pytest.raises(ConfigError) as err:  # 0 is refused, not taken for the default
        Engine(tiny_emb, **kwargs)
    assert str(err.value) == message


def test_batches_mix_requests_and_each_gets_its_rows(tiny_emb):
    rng = np.random.default_rng(0)
    requests = [_random_texts(rng, int(rng.integers(1, 6))) for _ in range(6)]
    with running(tiny_emb) as srv:
        engine = srv.app.state.engine
        engine.pause()  # let all six requests queue up, then form batches from them together
        with ThreadPoolExecutor(len(requests)) as pool:
            futures = [
                pool.submit(httpx.post, srv.url + "/v1/embeddings", json={"input": t}, timeout=30) for t in requests
            ]
            total = sum(len(x) for t in requests for x in tiny_emb.tokenize(t).ids)
            _wait(lambda: engine.queued_tokens == total)
            engine.resume()
            answers = [f.result() for f in futures]
        text = httpx.get(srv.url + "/metrics").text
    for texts, r in zip(requests, answers):
        assert r.status_code == 200
        got = np.array([d["embedding"] for d in r.json()["data"]])
        assert cosines(got, tiny_emb.encode(texts)).min() >= 0.99999
    n_inputs = sum(len(t) for t in requests)
    assert metric(text, "embedlab_batch_items_sum") == n_inputs
    batches = metric(text, "embedlab_batch_requests_count")
    assert batches < len(requests)  # fewer forward passes than requests
    assert metric(text, "embedlab_batch_requests_bucket", le="1.0") < batches  # some batch served >= 2 requests
    assert metric(text, "embedlab_batch_tokens_sum") <= batches * engine.max_batch_tokens
    assert metric(text, "embedlab_queue_tokens") == 0


def test_concurrent_requests_of_mixed_lengths_are_exact(tiny_emb):
    rng = np.random.default_rng(1)
    requests = [_random_texts(rng, int(rng.integers(1, 12))) for _ in range(24)]
    # exactness, not admission: a loaded machine answers slowly, and the default 1 s bound would turn requests to 429s
    with running(tiny_emb, max_batch_tokens=256, max_queue_wait=60) as srv:
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda t: httpx.post(srv.url + "/v1/embeddings", json={"input": t}, timeout=30), requests)
            )
        text = httpx.get(srv.url + "/metrics").text
    got = np.concatenate([[d["embedding"] for d in r.json()["data"]] for r in answers])
    ref = tiny_emb.encode([x for t in requests for x in t])
    assert cosines(got, ref).min() >= 0.99999
    assert metric(text, "embedlab_batch_tokens_bucket", le="256.0") == metric(text, "embedlab_batch_tokens_count")


@pytest.mark.parametrize("overhead, passes", [(0, 2), (10**6, 1)])
def test_batches_split_by_length_when_a_pass_is_cheap(tiny_emb, overhead, passes):
    """Queued inputs of two very different lengths: with a free forward pass they go in two batches (no
    padding), with a dear one in a single padded batch (models/batching.py's padding_aware_batches)."""
    short, long = "the cat", " ".join(["cat"] * 40)
    with running(tiny_emb, batch_overhead_tokens=overhead) as srv:
        engine = srv.app.state.engine
        engine.pause()
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(
                httpx.post, srv.url + "/v1/embeddings", json={"input": [short, long, short]}, timeout=30
            )
            _wait(lambda: engine.queued_tokens > 0)
            before = metric(httpx.get(srv.url + "/metrics").text, "embedlab_batch_items_count")
            engine.resume()
            r = future.result()
        text = httpx.get(srv.url + "/metrics").text
    assert r.status_code == 200
    assert (
        cosines(np.array([d["embedding"] for d in r.json()["data"]]), tiny_emb.encode([short, long, short])).min()
        >= 0.99999
    )
    assert metric(text, "embedlab_batch_items_count") - before == passes


def test_admission_refuses_by_expected_wait_with_retry_after(tiny_emb):
    """A request is admitted while the work queued ahead of it, at the assumed throughput, takes at most
    max_queue_wait seconds; past that it gets 429 with Retry-After = the seconds until it would fit. The
    worker is held, so it measures nothing: the throughput stays the given 2 tokens/s. Token counts come
    from the embedder's own tokenize, not from the server."""
    rate = 2.0
    first, small, third = TEXTS[:3], "the cat", TEXTS[3:6]
    a = sum(len(ids) for ids in tiny_emb.tokenize(first).ids)
    c = len(tiny_emb.tokenize([small]).ids[0])
    bound = a / rate  # `small` waits exactly a / rate (admitted); `third` waits (a + c) / rate (refused)
    hold = Hold()
    with running(tiny_emb, max_queue_wait=bound, tokens_per_s=rate, max_queue_tokens=100, on_forward=hold) as srv:
        engine = srv.app.state.engine
        with ThreadPoolExecutor(2) as pool:
            try:
                running_first = pool.submit(httpx.post, srv.url + "/v1/embeddings", json={"input": first}, timeout=30)
                assert hold.entered.wait(10)  # an empty queue admits anything: `first` runs (held)
                queued_small = pool.submit(httpx.post, srv.url + "/v1/embeddings", json={"input": small}, timeout=30)
                _wait(lambda: engine.queued_tokens == a + c)
                r = httpx.post(srv.url + "/v1/embeddings", json={"input": third})
                assert r.status_code == 429, r.text
                assert int(r.headers["retry-after"]) == math.ceil((a + c) / rate - bound)
                err = r.json()["error"]
                assert err["code"] == "overloaded" and err["type"] == "rate_limit_error"
                assert "--max-queue-wait" in err["message"]
                assert engine.queued_tokens == a + c  # the refused request left nothing behind
            finally:
                hold.released.set()
            assert running_first.result().status_code == 200 and queued_small.result().status_code == 200
        too_big = httpx.post(srv.url + "/v1/embeddings", json={"input": [" ".join(["cat"] * 60)] * 2})
        assert too_big.status_code == 413  # larger than --max-queue-tokens: 429 would never clear
        text = httpx.get(srv.url + "/metrics").text
    assert metric(text, "embedlab_rejected_total") == 1
    assert metric(text, "embedlab_requests_total", route="/v1/embeddings", status="429") == 1


def test_admission_bound_is_at_most_the_request_timeout(tiny_emb):
    """With max_queue_wait above --request-timeout, the timeout is the bound: a request expected to wait
    longer than it may is refused at once (429), not left to time out (503)."""
    rate, timeout = 0.01, 100.0
    a = sum(len(ids) for ids in tiny_emb.tokenize(TEXTS[:3]).ids)  # behind these, a request waits a / rate >> timeout
    hold = Hold()
    with running(tiny_emb, max_queue_wait=10**6, tokens_per_s=rate, request_timeout=timeout, on_forward=hold) as srv:
        with ThreadPoolExecutor(1) as pool:
            try:
                held = pool.submit(
                    httpx.post, srv.url + "/v1/embeddings", json={"input": TEXTS[:3]}, timeout=2 * timeout
                )
                assert hold.entered.wait(10)
                r = httpx.post(srv.url + "/v1/embeddings", json={"input": "x"})
                assert r.status_code == 429, r.text
                assert int(r.headers["retry-after"]) == math.ceil(a / rate - timeout)
            finally:
                hold.released.set()
            assert held.result().status_code == 200


def test_request_timeout_answers_503(tiny_emb):
    hold = Hold()
    with running(tiny_emb, request_timeout=0.3, on_forward=hold) as srv:
        try:
            r = httpx.post(srv.url + "/v1/embeddings", json={"input": TEXTS}, timeout=10)
            assert r.status_code == 503
            assert "timed out" in r.json()["error"]["message"] and r.json()["error"]["type"] == "service_unavailable"
            assert srv.app.state.engine.queued_tokens == 0  # released at the timeout
        finally:
            hold.released.set()
        hold.block = False
        assert httpx.post(srv.url + "/v1/embeddings", json={"input": TEXTS}).status_code == 200
        text = httpx.get(srv.url + "/metrics").text
    assert metric(text, "embedlab_timeouts_total") == 1


def test_disconnected_client_is_dropped_from_the_queue(tiny_emb):
    """Event-driven: the client hangs up once its request is queued (not after a client timeout)."""
    tokens = sum(len(ids) for ids in tiny_emb.tokenize(TEXTS).ids)
    body = json.dumps({"input": TEXTS}).encode()
    head = (
        f"POST /v1/embeddings HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    with running(tiny_emb) as srv:
        engine = srv.app.state.engine
        engine.pause()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
            sock.sendall(head + body)
            _wait(lambda: engine.queued_tokens == tokens)  # admitted and waiting for a batch
        _wait(lambda: engine.queued_tokens == 0)  # the client hung up: the server released the request's tokens
        engine.resume()
        r = httpx.post(srv.url + "/v1/embeddings", json={"input": TEXTS[:2]})
        assert r.status_code == 200
        text = httpx.get(srv.url + "/metrics").text
    assert metric(text, "embedlab_cancelled_total") == 1
    assert metric(text, "embedlab_skipped_inputs_total") == len(TEXTS)  # the batcher skipped the dropped inputs
    assert metric(text, "embedlab_batch_items_sum") == 2  # only the second request was embedded


def test_health_is_503_when_the_worker_dies(tiny_emb):
    hold = Hold(block=False)
    with running(tiny_emb, on_forward=hold) as srv:
        assert httpx.get(srv.url + "/health").status_code == 200
        assert httpx.get(srv.url + "/ready").json() == {"status": "ready"}
        hold.kill = True
        r = httpx.post(srv.url + "/v1/embeddings", json={"input": TEXTS})
        assert r.status_code == 503  # its request fails cleanly instead of hanging
        _wait(lambda: not srv.app.state.engine.worker_alive())
        h = httpx.get(srv.url + "/health")
        assert h.status_code == 503 and "dead" in h.json()["error"]["message"]
        assert httpx.get(srv.url + "/ready").status_code == 503
        assert httpx.post(srv.url + "/v1/embeddings", json={"input": "x"}).status_code == 503
        assert metric(httpx.get(srv.url + "/metrics").text, "embedlab_worker_alive") == 0


class Clock:
    """A monotonic clock the test advances by hand (the engine's stall checks read it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_health_is_503_while_the_worker_is_stuck(tiny_emb):
    """Event-driven: the forward pass is held, and the stall threshold is crossed by advancing the engine's
    clock, so no wall-clock margin is involved."""
    hold, clock = Hold(), Clock()
    with running(tiny_emb, stall_timeout=60.0, on_forward=hold, clock=clock) as srv:
        try:
            with ThreadPoolExecutor(1) as pool:
                slow = pool.submit(httpx.post, srv.url + "/v1/embeddings", json={"input": TEXTS}, timeout=30)
                assert hold.entered.wait(10)
                clock.now += 60.0  # exactly the threshold: busy, not yet stuck
                assert httpx.get(srv.url + "/health").status_code == 200
                clock.now += 1.0
                h = httpx.get(srv.url + "/health")
                assert h.status_code == 503 and "stuck" in h.json()["error"]["message"]
                assert "61 s" in h.json()["error"]["message"]
                hold.released.set()
                assert slow.result().status_code == 200
        finally:
            hold.released.set()
        assert httpx.get(srv.url + "/health").status_code == 200  # recovered


def test_drain_finishes_in_flight_requests_and_refuses_new_ones(tiny_emb):
    hold = Hold()
    with running(tiny_emb, on_forward=hold) as srv:
        engine = srv.app.state.engine
        try:
            with ThreadPoolExecutor(1) as pool:
                in_flight = pool.submit(httpx.post, srv.url + "/v1/embeddings", json={"input": TEXTS}, timeout=30)
                assert hold.entered.wait(10)
                engine.begin_drain()  # the first thing SIGTERM does: new requests get 503 ...
                late = httpx.post(srv.url + "/v1/embeddings", json={"input": "x"}, timeout=5)
                assert late.status_code == 503 and "shutting down" in late.json()["error"]["message"]
                assert httpx.get(srv.url + "/ready").status_code == 503
                assert httpx.get(srv.url + "/v1/models").status_code == 503  # every route, not only the engine's
                srv.drain()  # ... then uvicorn stops listening and waits for the in-flight request
                hold.released.set()
                r = in_flight.result()
        finally:
            hold.released.set()
        assert r.status_code == 200 and len(r.json()["data"]) == len(TEXTS)
        srv.thread.join(15)
        assert not srv.thread.is_alive()  # the server stopped by itself
        assert not engine.worker_alive()  # and the lifespan stopped the engine


def test_gate_refuses_before_reading_the_body_and_keeps_the_connection(tiny_emb):
    """The HTTP-level check: with requests in flight and an answer rate measured, a model route whose
    expected wait (in flight / answered per second) is over the bound gets 429 from the middleware, with
    Retry-After, on a connection that stays usable; /health is never gated."""
    hold = Hold()
    with running(tiny_emb, max_queue_wait=0.5, on_forward=hold) as srv:
        engine = srv.app.state.engine
        hold.block = False
        assert httpx.post(srv.url + "/v1/embeddings", json={"input": "x"}).status_code == 200  # measures a rate
        rate = engine.gate.rate.tokens_per_s
        hold.block = True
        hold.entered.clear()
        need = math.floor(0.5 * rate) + 1  # in flight so that need / rate > 0.5 s
        with ThreadPoolExecutor(need) as pool:
            try:
                held = [
                    pool.submit(httpx.post, srv.url + "/v1/embeddings", json={"input": "the cat"}, timeout=60)
                    for _ in range(need)
                ]
                _wait(lambda: engine.gate.in_flight == need)
                with httpx.Client() as client:
                    r = client.post(srv.url + "/embed", json={"inputs": "x"})
                    assert r.status_code == 429, r.text
                    assert int(r.headers["retry-after"]) == math.ceil(need / engine.gate.rate.tokens_per_s - 0.5)
                    assert (
                        r.json()["error"]["type"] == "rate_limit_error" and "in flight" in r.json()["error"]["message"]
                    )
                    assert client.get(srv.url + "/health").status_code == 200  # same connection, ungated route
            finally:
                hold.released.set()
            assert all(f.result().status_code == 200 for f in held)
        assert engine.gate.in_flight == 0
