"""The engine under load and failure: batches mix requests, admission (429), timeouts (503), dropped
clients, a dead or stuck worker (/health 503) and draining."""
from __future__ import annotations

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


def test_batches_mix_requests_and_each_gets_its_rows(tiny_emb):
    rng = np.random.default_rng(0)
    requests = [_random_texts(rng, int(rng.integers(1, 6))) for _ in range(6)]
    with running(tiny_emb) as srv:
        engine = srv.app.state.engine
        engine.pause()  # let all six requests queue up, then form batches from them together
        with ThreadPoolExecutor(len(requests)) as pool:
            futures = [pool.submit(httpx.post, srv.url + "/v1/embeddings", json={"input": t}, timeout=30) for t in requests]
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
    with running(tiny_emb, max_batch_tokens=256) as srv:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda t: httpx.post(srv.url + "/v1/embeddings", json={"input": t}, timeout=30),
                                    requests))
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
            future = pool.submit(httpx.post, srv.url + "/v1/embeddings", json={"input": [short, long, short]}, timeout=30)
            _wait(lambda: engine.queued_tokens > 0)
            before = metric(httpx.get(srv.url + "/metrics").text, "embedlab_batch_items_count")
            engine.resume()
            r = future.result()
        text = httpx.get(srv.url + "/metrics").text
    assert r.status_code == 200
    assert cosines(np.array([d["embedding"] for d in r.json()["data"]]), tiny_emb.encode([short, long, short])).min() >= 0.99999
    assert metric(text, "embedlab_batch_items_count") - before == passes


def test_full_queue_answers_429_with_retry_after(tiny_emb):
    hold = Hold()
    with running(tiny_emb, max_queue_tokens=40, on_forward=hold) as srv:
        with ThreadPoolExecutor(2) as pool:
            try:
                first = pool.submit(httpx.post, srv.url + "/v1/embeddings", json={"input": TEXTS[:3]}, timeout=30)
                assert hold.entered.wait(10)  # 3 inputs, 23 tokens admitted and running
                r = httpx.post(srv.url + "/v1/embeddings", json={"input": TEXTS[3:6]})  # 22 more: over 40
                assert r.status_code == 429, r.text
                assert int(r.headers["retry-after"]) >= 1
                assert r.json()["error"]["code"] == "overloaded" and r.json()["error"]["type"] == "rate_limit_error"
                small = pool.submit(httpx.post, srv.url + "/v1/embeddings", json={"input": "the cat"}, timeout=30)
                _wait(lambda: srv.app.state.engine.queued_tokens == 23 + 4)  # 4 tokens fit: admitted and queued
            finally:
                hold.released.set()
            assert first.result().status_code == 200 and small.result().status_code == 200
        too_big = httpx.post(srv.url + "/v1/embeddings", json={"input": [" ".join(["cat"] * 30)] * 2})
        assert too_big.status_code == 413  # larger than the whole queue: 429 would never clear
        text = httpx.get(srv.url + "/metrics").text
    assert metric(text, "embedlab_rejected_total") == 1
    assert metric(text, "embedlab_requests_total", route="/v1/embeddings", status="429") == 1


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
    with running(tiny_emb) as srv:
        engine = srv.app.state.engine
        engine.pause()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(srv.url + "/v1/embeddings", json={"input": TEXTS}, timeout=0.3)  # gives up and hangs up
        _wait(lambda: engine.queued_tokens == 0)  # the server noticed and released the request's tokens
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


def test_health_is_503_while_the_worker_is_stuck(tiny_emb):
    hold = Hold()
    with running(tiny_emb, stall_timeout=0.3, on_forward=hold) as srv:
        try:
            with ThreadPoolExecutor(1) as pool:
                slow = pool.submit(httpx.post, srv.url + "/v1/embeddings", json={"input": TEXTS}, timeout=30)
                assert hold.entered.wait(10)
                assert httpx.get(srv.url + "/health").status_code == 200  # busy, not yet stuck
                time.sleep(0.5)
                h = httpx.get(srv.url + "/health")
                assert h.status_code == 503 and "stuck" in h.json()["error"]["message"]
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
