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
