"""The queue's throughput estimate and Retry-After, against hand-computed values."""

from __future__ import annotations

import math

import pytest


def test_throughput_starts_from_the_prior_then_averages_over_time():
    from embedlab.serve.queue import PRIOR_TOKENS_PER_S, Throughput

    assert Throughput().tokens_per_s == PRIOR_TOKENS_PER_S and not Throughput().measured
    t = Throughput(prior=100.0, tau=2.0)
    t.observe(300, 1.0)  # 300 tokens/s for 1 s: weight 1 - e^(-1/2)
    w = 1 - math.exp(-0.5)
    assert t.tokens_per_s == pytest.approx(100 + w * 200)
    t.observe(0, 1.0)  # nothing embedded: no information, no change
    t.observe(10, 0.0)
    assert t.tokens_per_s == pytest.approx(100 + w * 200)
    long = Throughput(prior=100.0, tau=2.0)
    long.observe(50 * 60, 60.0)  # a minute at 50 tokens/s forgets the prior
    assert long.tokens_per_s == pytest.approx(50.0, rel=1e-6)
    first = Throughput()
    first.observe(1000, 0.5)  # no prior: the first measurement is the estimate
    assert first.tokens_per_s == 2000.0 and first.measured


@pytest.mark.parametrize("seconds, expected", [((0.2,), 1), ((1.0,), 1), ((1.01,), 2), ((0.5, 3.2), 4), ((-5.0,), 1)])
def test_retry_after_is_whole_seconds_at_least_one(seconds, expected):
    from embedlab.serve.queue import retry_after

    assert retry_after(*seconds) == expected


def test_request_gate_admits_by_in_flight_over_the_answer_rate():
    """Little's law by hand: an answer every 0.1 s of a busy period is 10 answered/s; 5 in flight wait 0.5 s."""
    from embedlab.errors import Overloaded
    from embedlab.serve.queue import RequestGate

    now = [0.0]
    gate = RequestGate(max_wait=0.45, tau=0.01, clock=lambda: now[0])
    for _ in range(5):
        gate.enter()  # nothing answered yet: no estimate, everything is admitted
    assert gate.expected_wait() == 0.0
    for _ in range(4):
        now[0] += 0.1
        gate.leave(answered=True)
        gate.enter()
    assert gate.in_flight == 5 and gate.rate.tokens_per_s == pytest.approx(10.0)
    assert gate.expected_wait() == pytest.approx(0.5)
    with pytest.raises(Overloaded, match="5 requests in flight") as info:
        gate.enter()
    assert info.value.retry_after == 1 and gate.in_flight == 5  # refused: not counted in
    with pytest.raises(Overloaded):
        gate.enter(timeout=10.0)  # the bound is min(max_wait, timeout)
    gate.leave(answered=False)  # a refused-later request (e.g. 429 from the queue) measures nothing
    assert gate.in_flight == 4 and gate.expected_wait() == pytest.approx(0.4)
    gate.enter()  # 0.4 <= 0.45: admitted
    gate.max_wait = 10.0
    with pytest.raises(Overloaded):
        gate.enter(timeout=0.3)  # the request's own timeout bounds the wait below max_wait: 0.5 > 0.3
    gate.enter()
    assert gate.in_flight == 6
