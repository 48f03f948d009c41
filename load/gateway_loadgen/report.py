"""Offline report: PNG plots and one self-contained HTML page that embeds them.

Plots: latency (TTFT and end-to-end, p50 and p99) against the offered load, throughput against
the offered load, and the TTFT distribution (CDF) of every run. Several result files can be
reported together (each becomes a series). The HTML page references nothing outside itself.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway_loadgen.results import (
    TABLE_COLUMNS,
    _cell,
    cache_comparability,
    load_label,
    marked_runs,
)


def _x(run: Mapping[str, Any]) -> float:
    if run.get("concurrency") is not None and run.get("rate") is None:
        return float(run["concurrency"])
    offered = run["summary"].get("offered_rate")
    if offered:
        return float(offered)
    rate = run.get("rate")
    return float(rate) if isinstance(rate, int | float) and not math.isinf(rate) else 0.0


def _x_label(series: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    runs = [run for _, data in series for run in data["runs"]]
    closed = all(r.get("concurrency") is not None and r.get("rate") is None for r in runs)
    return "concurrency" if closed else "offered rate (requests/s)"


def render_plots(series: Sequence[tuple[str, Mapping[str, Any]]], out_dir: Path) -> list[Path]:
    """Write the PNG plots for ``(label, results)`` series; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    xlabel = _x_label(series)

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, data in series:
        runs = sorted(data["runs"], key=_x)
        xs = [_x(r) for r in runs]
        for key, style, name in (
            ("median_ttft_ms", "-o", "TTFT p50"),
            ("p99_ttft_ms", "--o", "TTFT p99"),
            ("median_e2el_ms", "-s", "E2E p50"),
            ("p99_e2el_ms", "--s", "E2E p99"),
        ):
            ax.plot(xs, [r["summary"][key] for r in runs], style, label=f"{label} {name}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title("Latency against load")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    paths.append(_save(fig, out_dir / "latency.png"))

    fig, ax = plt.subplots(figsize=(7, 4.2))
    requests_ax = ax.twinx()
    for label, data in series:
        runs = sorted(data["runs"], key=_x)
        xs = [_x(r) for r in runs]
        ax.plot(
            xs,
            [r["summary"]["output_throughput"] for r in runs],
            "-o",
            label=f"{label} output tokens/s",
        )
        requests_ax.plot(
            xs,
            [r["summary"]["request_throughput"] for r in runs],
            "--s",
            label=f"{label} requests/s",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("output tokens/s (solid)")
    requests_ax.set_ylabel("requests/s (dashed)")
    ax.set_title("Throughput against load")
    ax.grid(True, alpha=0.3)
    lines = ax.get_legend_handles_labels()
    more = requests_ax.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7)
    paths.append(_save(fig, out_dir / "throughput.png"))

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, data in series:
        for run in data["runs"]:
            samples = sorted(run.get("ttft_samples_ms") or [])
            if samples:
                ys = [(i + 1) / len(samples) for i in range(len(samples))]
                ax.plot(samples, ys, label=f"{label} {load_label(run)}")
    ax.set_xlabel("time to first token (ms)")
    ax.set_ylabel("share of requests")
    ax.set_title("TTFT distribution")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    paths.append(_save(fig, out_dir / "ttft_cdf.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def render_html(series: Sequence[tuple[str, Mapping[str, Any]]], out_dir: Path) -> Path:
    """Write ``report.html`` (plots embedded as data URIs) and the PNGs into ``out_dir``."""
    images = render_plots(series, out_dir)
    headers = "".join(f"<th>{html.escape(h)}</th>" for h in ["run", *[h for h, _ in TABLE_COLUMNS]])
    rows = []
    warnings = []
    for label, data in series:
        for run in marked_runs(data):
            cells = "".join(
                f"<td>{html.escape(_cell(run, key, h))}</td>" for h, key in TABLE_COLUMNS
            )
            css = ' class="not-comparable"' if run["not_comparable"] else ""
            rows.append(f"<tr{css}><td>{html.escape(label)}</td>{cells}</tr>")
        check = data.get("prefix_cache_comparability") or cache_comparability(data["runs"])
        if check and not check["comparable"]:
            warnings.append(
                f'<p class="warning"><strong>{html.escape(label)}</strong>: '
                f"{html.escape(check['message'])} (rows marked !)</p>"
            )
    configs = "".join(
        f"<h3>{html.escape(label)}</h3><pre>{html.escape(_describe(data))}</pre>"
        for label, data in series
    )
    figures = "".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"></figure>'
        for p in images
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gateway load report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
figure {{ display: inline-block; margin: 0.5rem; }}
pre {{ background: #f6f6f6; padding: 0.5rem; font-size: 0.8rem; }}
.warning {{ background: #fff3cd; border: 1px solid #e0c36c; padding: 0.5rem; }}
tr.not-comparable td {{ background: #fff3cd; }}
</style></head><body>
<h1>gateway load report</h1>
<p>Latencies in milliseconds; throughput per second. TTFT: time to first token; TPOT: time per
output token after the first; ITL: gap between streamed chunks; E2E: end-to-end latency.</p>
{"".join(warnings)}
<table><thead><tr>{headers}</tr></thead><tbody>{"".join(rows)}</tbody></table>
{figures}
<h2>Runs</h2>{configs}
</body></html>
"""
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _describe(data: Mapping[str, Any]) -> str:
    lines = [
        f"target: {data.get('target')}",
        f"model: {data.get('model')}",
        f"workload: {data.get('workload', {}).get('name')} "
        f"{data.get('workload', {}).get('params')}",
        f"started: {data.get('started')}",
    ]
    return "\n".join(lines)
