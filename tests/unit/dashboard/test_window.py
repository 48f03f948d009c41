"""Rates and percentiles over the ring of readings, checked against numbers worked by hand."""

from __future__ import annotations

import math

import pytest

from gateway.dashboard.window import Ring, Sample, add_counts, bucket_deltas, quantile, rates

BOUNDS = (0.1, 0.5, 1.0, math.inf)


def sample(at: float, requests: float = 0.0, latency: tuple[float, ...] = ()) -> Sample:
    return Sample(
        at,
        {("requests", "chat"): requests},
        {("latency", "chat"): latency} if latency else {},
    )


def test_a_rate_is_the_growth_over_the_time_between_readings() -> None:
    assert rates(sample(12.0, 50.0), sample(10.0, 30.0)) == {("requests", "chat"): 10.0}


def test_a_series_new_since_the_base_grew_from_zero_and_one_that_shrank_counts_zero() -> None:
    new = Sample(4.0, {("requests", "a"): 8.0, ("requests", "b"): 1.0})
    old = Sample(2.0, {("requests", "b"): 5.0})
    assert rates(new, old) == {("requests", "a"): 4.0, ("requests", "b"): 0.0}


def test_no_rate_between_readings_at_the_same_moment() -> None:
    assert rates(sample(1.0, 5.0), sample(1.0, 1.0)) == {}


def test_the_ring_keeps_one_reading_at_or_before_its_span_as_the_base() -> None:
    ring = Ring(span_s=10.0)
    for t in range(0, 31, 1):
        ring.push(sample(float(t), requests=float(t)))
    # 20 is the newest reading at or before 30 - 10: older ones are gone
    assert len(ring) == 11
    base = ring.base(10.0)
    assert base is not None
    assert base.at == 20.0
    short = ring.base(3.0)
    assert short is not None
    assert short.at == 27.0


def test_a_young_ring_bases_its_windows_on_its_oldest_reading() -> None:
    ring = Ring(span_s=60.0)
    assert ring.base(10.0) is None
    ring.push(sample(0.0))
    assert ring.base(10.0) is None  # one reading: no window yet
    ring.push(sample(1.0))
    ring.push(sample(2.0))
    base = ring.base(10.0)
    assert base is not None
    assert base.at == 0.0
    newest = ring.newest
    assert newest is not None
    assert newest.at == 2.0


def test_a_window_shorter_than_the_readings_interval_uses_the_previous_reading() -> None:
    ring = Ring(span_s=60.0)
    ring.push(sample(0.0))
    ring.push(sample(5.0))
    base = ring.base(1.0)
    assert base is not None
    assert base.at == 0.0


def test_bucket_deltas_are_the_observations_made_in_between() -> None:
    new = sample(10.0, latency=(5.0, 9.0, 10.0, 12.0))
    old = sample(0.0, latency=(1.0, 2.0, 2.0, 2.0))
    assert bucket_deltas(new, old) == {("latency", "chat"): [4.0, 7.0, 8.0, 10.0]}
    assert bucket_deltas(new, sample(0.0)) == {("latency", "chat"): [5.0, 9.0, 10.0, 12.0]}


def test_quantiles_interpolate_within_the_bucket_as_prometheus_does() -> None:
    # 10 observations: 4 under 0.1 s, 4 more under 0.5 s, 2 more under 1 s
    cumulative = (4.0, 8.0, 10.0, 10.0)
    # the median is rank 5: the first of the 4 in (0.1, 0.5]: 0.1 + 0.4 * 1/4
    assert quantile(0.5, BOUNDS, cumulative) == pytest.approx(0.2)
    # p99 is rank 9.9 in (0.5, 1.0]: 0.5 + 0.5 * 1.9/2
    assert quantile(0.99, BOUNDS, cumulative) == pytest.approx(0.975)
    # rank 2 of the first bucket, from 0
    assert quantile(0.2, BOUNDS, cumulative) == pytest.approx(0.05)


def test_a_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert quantile(0.99, BOUNDS, (0.0, 0.0, 1.0, 10.0)) == 1.0


def test_no_quantile_without_observations() -> None:
    assert quantile(0.5, BOUNDS, (0.0, 0.0, 0.0, 0.0)) is None
    assert quantile(0.5, BOUNDS, ()) is None


def test_bucket_counts_add_up() -> None:
    assert add_counts([], [1.0, 2.0]) == [1.0, 2.0]
    assert add_counts([1.0, 2.0], [3.0, 4.0]) == [4.0, 6.0]
