"""Summaries by vLLM ``bench serve`` conventions, result files, tables and comparisons.

Summary keys follow vLLM's: ``completed``, ``failed``, ``duration``, ``total_input_tokens``,
``total_output_tokens``, ``request_throughput``, ``output_throughput``, ``total_token_throughput``,
``request_goodput`` and ``{mean,median,std,p90,p99}_{ttft,tpot,itl,e2el}_ms``; added here:
``offered_rate``, ``errors`` by kind, ``backends`` and ``prefix_cache``.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway_loadgen.client import RequestRecord

METRICS = ("ttft", "tpot", "itl", "e2el")
HIT_RATE_SPREAD = 0.20
"""Sweep points whose prefix-cache hit rates lie further apart than this are not comparable."""
SLO_KEYS = {"ttft_ms": "ttft", "tpot_ms": "tpot", "e2el_ms": "e2el"}


def parse_slo(text: str | None) -> dict[str, float]:
    """``"ttft_ms=500,tpot_ms=50"`` as ``{"ttft": 0.5, "tpot": 0.05}`` (seconds).

    Raises:
        ValueError: an unknown key or a bad number.
    """
    slo: dict[str, float] = {}
    for part in filter(None, (text or "").split(",")):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in SLO_KEYS:
            raise ValueError(f"unknown SLO `{key}`; use {', '.join(SLO_KEYS)}")
        slo[SLO_KEYS[key]] = float(value) / 1000
    return slo


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation, as numpy computes it."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _values(records: Iterable[RequestRecord], metric: str) -> list[float]:
    out: list[float] = []
    for r in records:
        if metric == "itl":
            out.extend(r.itls)
            continue
        value = {"ttft": r.ttft, "tpot": r.tpot, "e2el": r.latency}[metric]
        if value is not None:
            out.append(value)
    return out


def meets_slo(record: RequestRecord, slo: Mapping[str, float]) -> bool:
    """Whether a successful request met every SLO given."""
    values = {"ttft": record.ttft, "tpot": record.tpot, "e2el": record.latency}
    return record.ok and all(
        values[k] is None or values[k] <= limit  # type: ignore[operator]
        for k, limit in slo.items()
    )


def summarize(
    records: Sequence[RequestRecord],
    duration: float,
    offered_rate: float | None,
    slo: Mapping[str, float],
) -> dict[str, Any]:
    """The run's summary (see the module docstring for the keys)."""
    ok = [r for r in records if r.ok]
    input_tokens = sum(r.prompt_tokens for r in ok)
    output_tokens = sum(r.output_tokens for r in ok)
    summary: dict[str, Any] = {
        "completed": len(ok),
        "failed": len(records) - len(ok),
        "duration": duration,
        "total_input_tokens": input_tokens,
        "total_output_tokens": output_tokens,
        "request_throughput": len(ok) / duration if duration else 0.0,
        "output_throughput": output_tokens / duration if duration else 0.0,
        "total_token_throughput": (input_tokens + output_tokens) / duration if duration else 0.0,
        "offered_rate": offered_rate,
        "errors": dict(Counter(r.error for r in records if r.error)),
        "backends": dict(Counter(r.backend for r in ok if r.backend)),
    }
    if slo:
        good = sum(1 for r in ok if meets_slo(r, slo))
        summary["request_goodput"] = good / duration if duration else 0.0
        summary["slo"] = {f"{k}_ms": v * 1000 for k, v in slo.items()}
    for metric in METRICS:
        values = [v * 1000 for v in _values(ok, metric)]
        summary[f"mean_{metric}_ms"] = statistics.fmean(values) if values else 0.0
        summary[f"median_{metric}_ms"] = statistics.median(values) if values else 0.0
        summary[f"std_{metric}_ms"] = statistics.pstdev(values) if len(values) > 1 else 0.0
        summary[f"p90_{metric}_ms"] = percentile(values, 90)
        summary[f"p99_{metric}_ms"] = percentile(values, 99)
    return summary


def write_results(
    path: Path, result: Mapping[str, Any], records_by_run: Sequence[Sequence[RequestRecord]]
) -> tuple[Path, Path]:
    """Write the results JSON at ``path`` and the per-request CSV beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    csv_path = path.with_suffix(".csv")
    columns = [
        "run",
        "session",
        "turn",
        "start",
        "ttft",
        "latency",
        "tpot",
        "prompt_tokens",
        "output_tokens",
        "mean_itl",
        "error",
        "backend",
    ]
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for run, records in enumerate(records_by_run):
            for r in records:
                mean_itl = statistics.fmean(r.itls) if r.itls else None
                writer.writerow(
                    [
                        run,
                        r.session,
                        r.turn,
                        f"{r.start:.6f}",
                        _fmt(r.ttft),
                        _fmt(r.latency),
                        _fmt(r.tpot),
                        r.prompt_tokens,
                        r.output_tokens,
                        _fmt(mean_itl),
                        r.error or "",
                        r.backend or "",
                    ]
                )
    return path, csv_path


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results file written by ``gateway load run``.

    Raises:
        ValueError: the file is not a results file.
    """
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or "runs" not in data:
        raise ValueError(f"{path}: not a gateway load results file")
    return data


def _hit_rate(run: Mapping[str, Any]) -> float | None:
    rate = (run["summary"].get("prefix_cache") or {}).get("hit_rate")
    return float(rate) if isinstance(rate, int | float) else None


def cache_comparability(
    runs: Sequence[Mapping[str, Any]], spread: float = HIT_RATE_SPREAD
) -> dict[str, Any] | None:
    """Whether a sweep's points ran on comparable prefix caches.

    A point is flagged when its hit rate is more than ``spread`` (a share, 0.2 = 20 percentage
    points) from the median of the points' hit rates: its latencies then measure a warmer or
    colder cache, not the load. None when fewer than two points report a hit rate.

    Returns:
        ``comparable``, ``spread`` (the threshold), ``min_hit_rate``, ``max_hit_rate``,
        ``flagged`` (indices of the flagged runs) and ``message``.
    """
    rates = [(i, r) for i, run in enumerate(runs) if (r := _hit_rate(run)) is not None]
    if len(rates) < 2:
        return None
    values = sorted(r for _, r in rates)
    middle = statistics.median(values)
    flagged = [i for i, r in rates if abs(r - middle) > spread]
    low, high = values[0], values[-1]
    comparable = high - low <= spread
    if comparable:
        message = ""
    else:
        message = (
            f"prefix-cache hit rates range from {low:.1%} to {high:.1%}, more than "
            f"{spread * 100:.0f} percentage points apart: the points flagged ran on a warmer "
            "or colder cache and their latencies are not comparable with the others' (reset the "
            "cache between points with --reset-prefix-cache, and draw fresh prompts per point)"
        )
    return {
        "comparable": comparable,
        "spread": spread,
        "min_hit_rate": low,
        "max_hit_rate": high,
        "flagged": flagged if not comparable else [],
        "message": message,
    }


def flag_runs(data: Mapping[str, Any]) -> list[bool]:
    """For each run of a results file, whether its hit rate makes it not comparable."""
    runs = data["runs"]
    check = data.get("prefix_cache_comparability")
    if check is None:
        check = cache_comparability(runs)
    flagged = set((check or {}).get("flagged") or [])
    return [i in flagged for i in range(len(runs))]


TABLE_COLUMNS = [
    ("load", None),
    ("completed", "completed"),
    ("failed", "failed"),
    ("req/s", "request_throughput"),
    ("out tok/s", "output_throughput"),
    ("TTFT p50", "median_ttft_ms"),
    ("TTFT p99", "p99_ttft_ms"),
    ("TPOT p50", "median_tpot_ms"),
    ("ITL p99", "p99_itl_ms"),
    ("E2E p50", "median_e2el_ms"),
    ("E2E p99", "p99_e2el_ms"),
    ("goodput", "request_goodput"),
    ("cache hit", None),
]


def load_label(run: Mapping[str, Any]) -> str:
    """``rate=10/s``, ``rate=inf`` or ``c=32``."""
    if run.get("concurrency") is not None and run.get("rate") is None:
        return f"c={run['concurrency']}"
    rate = run.get("rate")
    label = "rate=inf" if rate in (None, "inf") else f"rate={rate:g}/s"
    if run.get("max_concurrency"):
        label += f" c<={run['max_concurrency']}"
    return label


def _cell(run: Mapping[str, Any], key: str | None, header: str) -> str:
    summary = run["summary"]
    if header == "load":
        return load_label(run)
    if header == "cache hit":
        rate = (summary.get("prefix_cache") or {}).get("hit_rate")
        mark = " !" if run.get("not_comparable") else ""
        return "-" if rate is None else f"{rate:.1%}{mark}"
    value = summary.get(key) if key else None
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:,.1f}"


def format_table(rows: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """A plain-text table of ``(name, run)`` rows (latencies in ms)."""
    headers = ["run", *[h for h, _ in TABLE_COLUMNS]]
    body = [[name, *[_cell(run, key, h) for h, key in TABLE_COLUMNS]] for name, run in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body, strict=False)]
    lines = [
        "  ".join(
            h.rjust(w) if i else h.ljust(w)
            for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    ]
    for row in body:
        lines.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


def marked_runs(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The runs of a results file, each with ``not_comparable`` set from its hit rate."""
    return [
        {**run, "not_comparable": flagged}
        for run, flagged in zip(data["runs"], flag_runs(data), strict=True)
    ]


def compare(paths: Sequence[str | Path]) -> str:
    """Side-by-side table of every run in each results file; prefix-cache warnings under it."""
    rows = []
    notes = []
    for path in paths:
        data = load_results(path)
        label = data.get("label") or Path(path).stem
        for run in marked_runs(data):
            rows.append((label, run))
        check = data.get("prefix_cache_comparability") or cache_comparability(data["runs"])
        if check and not check["comparable"]:
            notes.append(f"warning: {label}: {check['message']}")
    return "\n".join([format_table(rows), *notes])
