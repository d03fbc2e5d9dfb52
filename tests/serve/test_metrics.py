"""embedlab.serve.metrics: one registry per server, the documented names, and bucket counts that match a
hand count of the observations, read back through prometheus_client's own text parser."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from embedlab.serve.metrics import Metrics


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(m.render().decode())
        for s in family.samples
    }


def test_two_servers_in_one_process_do_not_share_metrics():
    a, b = Metrics(), Metrics()  # a shared default registry would refuse the second one (duplicated series)
    a.tokens.inc(5)
    assert samples(a)[("embedlab_tokens_total", ())] == 5.0
    assert samples(b)[("embedlab_tokens_total", ())] == 0.0
    mine = CollectorRegistry()
    assert Metrics(mine).registry is mine


def test_the_exposed_families_and_their_types():
    families = {
        f.name: f.type
        for f in text_string_to_metric_families(Metrics().render().decode())
        if not f.name.endswith("_created")  # prometheus_client's creation timestamps, one per series
    }
    counters = ["requests", "tokens", "rejected", "cancelled", "timeouts", "skipped_inputs"]
    histograms = ["request_seconds", "queue_seconds", "forward_seconds", "batch_items", "batch_tokens"]
    gauges = ["queue_tokens", "queue_inputs", "worker_alive", "admission_tokens_per_second"]
    expected = {f"embedlab_{n}": "counter" for n in counters}
    expected |= {f"embedlab_{n}": "histogram" for n in [*histograms, "batch_requests"]}
    expected |= {f"embedlab_{n}": "gauge" for n in gauges}
    assert families == expected
    text = Metrics().render().decode()
    for n in counters:
        if n != "requests":  # a labelled counter has no sample before its first label set
            assert f"\nembedlab_{n}_total 0.0\n" in text


def test_histogram_buckets_count_observations_cumulatively():
    m = Metrics()
    observed = [1, 3, 3, 17, 4096, 5000]
    for v in observed:
        m.batch_items.observe(v)
    got = samples(m)
    bounds = [2.0**i for i in range(13)]  # 1 .. 4096: the powers of two up to 2^12
    for bound in bounds:
        le = (("le", str(bound)),)
        assert got[("embedlab_batch_items_bucket", le)] == sum(v <= bound for v in observed), bound
    assert got[("embedlab_batch_items_bucket", (("le", "+Inf"),))] == 6
    assert got[("embedlab_batch_items_count", ())] == 6 and got[("embedlab_batch_items_sum", ())] == sum(observed)
    item_bounds = sorted(float(dict(labels)["le"]) for (name, labels) in got if name == "embedlab_batch_items_bucket")
    assert item_bounds == [*bounds, math.inf]
    token_bounds = sorted(float(dict(labels)["le"]) for (name, labels) in got if name == "embedlab_batch_tokens_bucket")
    assert token_bounds == [2.0**i for i in range(17)] + [math.inf]  # up to 65,536 tokens
    request_bounds = sorted(
        float(dict(labels)["le"]) for (name, labels) in got if name == "embedlab_batch_requests_bucket"
    )
    assert request_bounds == [2.0**i for i in range(11)] + [math.inf]


def test_latency_buckets_and_labels():
    m = Metrics()
    m.latency.labels(route="/v1/embeddings").observe(0.003)
    m.latency.labels(route="/v1/embeddings").observe(0.2)
    m.requests.labels(route="/v1/embeddings", status="200").inc()
    m.requests.labels(route="/v1/embeddings", status="429").inc(2)
    got = samples(m)
    route = ("route", "/v1/embeddings")
    assert got[("embedlab_requests_total", (route, ("status", "200")))] == 1
    assert got[("embedlab_requests_total", (route, ("status", "429")))] == 2
    assert got[("embedlab_request_seconds_bucket", (("le", "0.0025"), route))] == 0
    assert got[("embedlab_request_seconds_bucket", (("le", "0.005"), route))] == 1
    assert got[("embedlab_request_seconds_bucket", (("le", "0.25"), route))] == 2
    assert got[("embedlab_request_seconds_bucket", (("le", "60.0"), route))] == 2
    les = sorted(float(dict(k[1])["le"]) for k in got if k[0] == "embedlab_request_seconds_bucket")
    assert les[0] == 0.001 and les[-2] == 60.0 and les[-1] == math.inf and len(les) == 16


def test_gauges_go_up_and_down():
    m = Metrics()
    m.queued_tokens.inc(100)
    m.queued_tokens.dec(30)
    m.worker_alive.set(1)
    got = samples(m)
    assert got[("embedlab_queue_tokens", ())] == 70 and got[("embedlab_worker_alive", ())] == 1
