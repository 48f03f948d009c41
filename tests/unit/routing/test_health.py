"""A backend's health (gateway.routing.health) on a manual clock: the breaker's cool-down and a
429's Retry-After pass when the clock says, and the latency average decays with its time."""

from __future__ import annotations

import pytest

from gateway.clock import ManualClock
from gateway.routing.health import BackendHealth, BreakerSettings, BreakerState


def test_the_breaker_cools_down_on_the_injected_clock() -> None:
    clock = ManualClock()
    health = BackendHealth(BreakerSettings(consecutive_failures=2, cooldown_s=10), clock)
    health.on_failure()
    health.on_failure()
    assert health.current_state() is BreakerState.OPEN
    assert health.reopens_in() == 10
    clock.advance(9.5)
    assert not health.admits()
    assert health.reopens_in() == pytest.approx(0.5)
    clock.advance(0.5)
    assert health.admits()  # half-open: one probe
    health.on_attempt()
    assert not health.admits()
    health.on_failure()  # the probe failed: open again for a full cool-down
    assert health.current_state() is BreakerState.OPEN
    clock.advance(10)
    assert health.admits()
    health.on_attempt()
    health.on_success()
    assert health.current_state() is BreakerState.CLOSED
    assert health.trips == 2


def test_a_rate_limit_opens_it_for_its_retry_after() -> None:
    clock = ManualClock()
    health = BackendHealth(clock=clock)
    health.trip(30, rate_limited=True)
    assert health.rate_limited
    clock.advance(29)
    assert health.current_state() is BreakerState.OPEN
    clock.advance(1)
    assert health.current_state() is BreakerState.HALF_OPEN


def test_the_latency_average_jumps_up_and_decays_with_time() -> None:
    clock = ManualClock()
    health = BackendHealth(clock=clock)
    health.on_success(latency_s=1.0)
    health.on_success(latency_s=0.1)  # no time passed: a faster sample moves nothing
    assert health.latency.value == 1.0
    clock.advance(health.latency.tau_s)  # one time constant: about 63% of the way down
    health.on_success(latency_s=0.1)
    assert health.latency.value == pytest.approx(0.1 + 0.9 / 2.718281828, rel=1e-6)
    health.on_success(latency_s=2.0)
    assert health.latency.value == 2.0
