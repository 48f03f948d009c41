"""Rates and percentiles over a sliding window, from cumulative counters and histograms.

The gateway's metrics only ever grow (Prometheus counters and histogram buckets). The dashboard
keeps a small ring of past :class:`Sample` readings of them, and a window's rate is the
difference between the newest reading and the one a window ago, over the time between them, as
Prometheus's ``rate()`` does; a percentile is read from the difference of the bucket counts by
linear interpolation inside the bucket, as ``histogram_quantile()`` does. A difference below
zero (a series that went away) counts as zero.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

Key = tuple[str, str]
"""What a series is, and whose: ``("requests", "<group>")``, ``("spend", "<tenant>")``."""


@dataclass(frozen=True, slots=True)
class Sample:
    """The cumulative series of one replica at one moment.

    Attributes:
        at: ``time.monotonic()`` of the reading.
        counters: counter totals by key.
        histograms: per key, the cumulative count of each bucket, in the order of the bucket
            bounds, ``+Inf`` last.
    """

    at: float
    counters: Mapping[Key, float] = field(default_factory=dict)
    histograms: Mapping[Key, Sequence[float]] = field(default_factory=dict)


class Ring:
    """The readings of the last ``span_s`` seconds, and one older (the base of a full window).

    Args:
        span_s: the longest window asked of :meth:`base`.
    """

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self._samples: deque[Sample] = deque()

    def __len__(self) -> int:
        return len(self._samples)

    def push(self, sample: Sample) -> None:
        """Add the newest reading and forget those no window needs any more."""
        samples = self._samples
        samples.append(sample)
        horizon = sample.at - self.span_s
        # Keep the newest reading at or before the horizon: it is a full window's base.
        while len(samples) > 1 and samples[1].at <= horizon:
            samples.popleft()

    @property
    def newest(self) -> Sample | None:
        return self._samples[-1] if self._samples else None

    def base(self, window_s: float) -> Sample | None:
        """The newest reading at least ``window_s`` older than the newest (the oldest kept
        when none is that old; None with fewer than two readings)."""
        samples = self._samples
        if len(samples) < 2:
            return None
        horizon = samples[-1].at - window_s
        found = samples[0]
        for sample in samples:
            if sample.at > horizon:
                break
            found = sample
        return found if found is not samples[-1] else samples[-2]

    def clear(self) -> None:
        self._samples.clear()


def rates(new: Sample, old: Sample) -> dict[Key, float]:
    """Per second, how much each counter of ``new`` grew since ``old`` (a series ``old`` lacks
    grew from zero)."""
    elapsed = new.at - old.at
    if elapsed <= 0:
        return {}
    return {
        key: max(value - old.counters.get(key, 0.0), 0.0) / elapsed
        for key, value in new.counters.items()
    }


def bucket_deltas(new: Sample, old: Sample) -> dict[Key, list[float]]:
    """Each histogram's cumulative bucket counts of observations made between ``old`` and
    ``new``."""
    out: dict[Key, list[float]] = {}
    for key, counts in new.histograms.items():
        before = old.histograms.get(key)
        if before is None or len(before) != len(counts):
            out[key] = list(counts)
        else:
            out[key] = [max(n - b, 0.0) for n, b in zip(counts, before, strict=True)]
    return out


def quantile(q: float, bounds: Sequence[float], cumulative: Sequence[float]) -> float | None:
    """The ``q`` quantile (0 to 1) of observations counted in cumulative buckets.

    Args:
        bounds: the buckets' upper bounds, ascending, ``math.inf`` last.
        cumulative: observations at or below each bound (same length as ``bounds``).

    Returns:
        The estimate (linear within the bucket it falls in, the bucket's lower bound being
        the previous one, 0 for the first); the highest finite bound when it falls in the
        ``+Inf`` bucket; None without observations.
    """
    if not cumulative or cumulative[-1] <= 0:
        return None
    rank = q * cumulative[-1]
    below = 0.0
    for i, (bound, count) in enumerate(zip(bounds, cumulative, strict=True)):
        if count >= rank and count > below:
            if math.isinf(bound):
                return bounds[i - 1] if i > 0 else None
            lower = bounds[i - 1] if i > 0 else 0.0
            return lower + (bound - lower) * (rank - below) / (count - below)
        below = count
    return None


def add_counts(into: list[float], more: Sequence[float]) -> list[float]:
    """Element-wise sum of two bucket-count lists (``into`` empty: a copy of ``more``)."""
    if not into:
        return list(more)
    return [a + b for a, b in zip(into, more, strict=True)]
