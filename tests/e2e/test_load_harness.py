"""The load harness against the simulator: counting, prefix-cache hit rates, errors, outputs."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import statistics
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, TypedDict, Unpack

import pytest
from gateway_loadgen import workloads
from gateway_loadgen.results import cache_comparability, summarize
from gateway_loadgen.runner import RunOutcome, RunSettings, arrival_times, run_workload

from gateway.cli import main as gateway_main
from tests.support.servers import Sim, group, running_gateway, running_sim


class DriveSettings(TypedDict, total=False):
    """The `RunSettings` the tests choose; `drive` sets the target, model and metrics."""

    rate: float | None
    max_concurrency: int | None
    concurrency: int | None
    stream: bool


def drive(sim: Sim, workload: workloads.Workload, **settings: Unpack[DriveSettings]) -> RunOutcome:
    config = RunSettings(
        target=sim.url, model="sim-model", metrics_urls=[f"{sim.url}/metrics"], **settings
    )
    return asyncio.run(run_workload(workload, config))


def test_counts_agree_with_the_simulator() -> None:
    with running_sim() as sim:
        outcome = drive(
            sim,
            workloads.synthetic(30, 120, 20, range_ratio=0.5, seed=3),
            rate=math.inf,
            max_concurrency=8,
        )
        stats = sim.stats()
    summary = summarize(outcome.records, outcome.duration, outcome.offered_rate, {})
    assert summary["completed"] == 30 == stats["completed"]
    assert summary["failed"] == 0
    assert summary["total_output_tokens"] == stats["generation_tokens"]
    assert summary["total_input_tokens"] == stats["prompt_tokens"]
    for record in outcome.records:
        assert record.ttft is not None
        assert record.latency is not None
        assert record.ttft <= record.latency
        assert len(record.itls) == record.output_tokens - 1  # one timed event per token


def test_non_streaming_counts_too() -> None:
    with running_sim() as sim:
        outcome = drive(sim, workloads.synthetic(10, 50, 8), stream=False, concurrency=3)
        stats = sim.stats()
    assert sum(r.output_tokens for r in outcome.records) == stats["generation_tokens"] == 80


def test_shared_prefix_hit_rate_high_random_low() -> None:
    with running_sim() as sim:
        shared = drive(sim, workloads.shared_prefix(4, 8, 400, 20, 4, seed=1), concurrency=4)
    with running_sim() as sim:
        scattered = drive(sim, workloads.synthetic(32, 420, 4, seed=1), concurrency=4)
    assert shared.prefix_cache is not None
    assert scattered.prefix_cache is not None
    assert shared.prefix_cache["hit_rate"] > 0.75
    assert scattered.prefix_cache["hit_rate"] < 0.1


def test_multi_turn_resends_the_history() -> None:
    with running_sim() as sim:
        outcome = drive(sim, workloads.multi_turn(2, 3, 30, 6), concurrency=2)
        recent = sim.stats()["recent"]
    assert len(outcome.records) == 6
    sizes = sorted(len(r["body"]["messages"]) for r in recent)
    assert sizes == [1, 1, 3, 3, 5, 5]
    assert all(
        r["body"]["messages"][1]["role"] == "assistant" and r["body"]["messages"][1]["content"]
        for r in recent
        if len(r["body"]["messages"]) > 1
    )


def test_errors_are_counted_by_kind() -> None:
    with running_sim() as sim:
        sim.set_faults(error_rates={429: 1.0})
        outcome = drive(sim, workloads.synthetic(12, 20, 4), concurrency=4)
    summary = summarize(outcome.records, outcome.duration, None, {})
    assert summary["errors"] == {"http_429": 12}
    assert summary["completed"] == 0


def test_dropped_streams_are_errors() -> None:
    with running_sim() as sim:
        sim.set_faults(drop_stream_after=3)
        outcome = drive(sim, workloads.synthetic(5, 20, 30), concurrency=5)
    assert {r.error for r in outcome.records} <= {"incomplete", "connection"}
    assert all(r.error for r in outcome.records)


def test_goodput_counts_only_requests_within_slo() -> None:
    with running_sim() as sim:
        outcome = drive(sim, workloads.synthetic(10, 20, 4), concurrency=2)
    generous = summarize(outcome.records, outcome.duration, None, {"e2el": 60.0})
    impossible = summarize(outcome.records, outcome.duration, None, {"ttft": 0.0})
    assert generous["request_goodput"] == pytest.approx(generous["request_throughput"])
    assert impossible["request_goodput"] == 0


def test_embedding_bursts() -> None:
    with running_sim() as sim:
        outcome = drive(sim, workloads.embedding_bursts(6, 4, 10), concurrency=3)
        stats = sim.stats()
    assert all(r.ok for r in outcome.records)
    assert stats["requests"]["embeddings"] == 6


def test_arrivals_follow_rate_and_burstiness() -> None:
    poisson = arrival_times(4001, 50.0, 1.0, seed=5)
    gaps = [b - a for a, b in itertools.pairwise(poisson)]
    assert statistics.fmean(gaps) == pytest.approx(1 / 50, rel=0.1)
    assert statistics.pstdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, rel=0.1)
    bursty = arrival_times(4001, 50.0, 0.25, seed=5)
    bursty_gaps = [b - a for a, b in itertools.pairwise(bursty)]
    assert statistics.pstdev(bursty_gaps) / statistics.fmean(bursty_gaps) == pytest.approx(
        2.0, rel=0.15
    )
    assert arrival_times(3, math.inf, 1.0, 0) == [0.0, 0.0, 0.0]


def test_jsonl_workload(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_text(
        '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}\n\n'
        '{"prompt": "once", "max_tokens": 2, "model": "ignored"}\n'
        '{"input": ["a", "b"]}\n'
    )
    workload = workloads.from_jsonl(path)
    assert [s.endpoint for s in workload.sessions] == [
        "chat/completions",
        "completions",
        "embeddings",
    ]
    assert "model" not in workload.sessions[1].turns[0]
    path.write_text('{"messages": []}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"requests.jsonl:2: expected a JSON object"):
        workloads.from_jsonl(path)


class _Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.references.append(value)
        self.images += tag == "img"


def test_cli_results_compare_and_self_contained_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_sim() as sim:
        for name, rate in (("a", "inf"), ("b", "50,inf")):
            status = gateway_main(
                [
                    "load",
                    "run",
                    "--target",
                    sim.url,
                    "--num-prompts",
                    "12",
                    "--input-tokens",
                    "40",
                    "--output-tokens",
                    "5",
                    "--rate",
                    rate,
                    "--slo",
                    "e2el_ms=60000",
                    "--out",
                    str(tmp_path / f"{name}.json"),
                ]
            )
            assert status == 0
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["model"] == "sim-model"
    assert a["runs"][0]["summary"]["completed"] == 12
    assert a["runs"][0]["summary"]["request_goodput"] > 0
    for key in (
        "mean_ttft_ms",
        "median_tpot_ms",
        "p90_itl_ms",
        "p99_e2el_ms",
        "std_ttft_ms",
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
    ):
        assert key in a["runs"][0]["summary"]
    assert len((tmp_path / "a.csv").read_text().splitlines()) == 13
    capsys.readouterr()
    assert (
        gateway_main(["load", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    )
    table = capsys.readouterr().out
    assert re.search(r"^a\s+rate=inf\s+12", table, re.MULTILINE)
    assert re.search(r"^b\s+rate=50/s\s+12", table, re.MULTILINE)
    assert (
        gateway_main(
            [
                "load",
                "report",
                str(tmp_path / "a.json"),
                str(tmp_path / "b.json"),
                "--out",
                str(tmp_path / "report"),
            ]
        )
        == 0
    )
    page = (tmp_path / "report" / "report.html").read_text()
    parser = _Resources()
    parser.feed(page)
    assert parser.images == 3
    assert all(ref.startswith("data:image/png;base64,") for ref in parser.references)
    assert (tmp_path / "report" / "ttft_cdf.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        gateway_main(
            ["load", "run", "--target", "http://127.0.0.1:9", "--model", "m", "--slo", "latency=5"]
        )
        == 2
    )
    assert "unknown SLO `latency`" in capsys.readouterr().err


def _sweep(target: str, out: Path, *extra: str) -> dict[str, Any]:
    status = gateway_main(
        [
            "load",
            "run",
            "--target",
            target,
            "--model",
            "sim-model",
            "--num-prompts",
            "4",
            "--input-tokens",
            "64",
            "--output-tokens",
            "2",
            "--rate",
            "inf,inf",
            "--out",
            str(out),
            *extra,
        ]
    )
    assert status == 0
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def _prompts_by_point(sim: Sim) -> list[set[str]]:
    recent = [r["body"] for r in sim.stats()["recent"]]
    assert len(recent) == 8
    return [{b["messages"][-1]["content"] for b in recent[i : i + 4]} for i in (0, 4)]


def test_sweep_points_draw_their_own_prompts_unless_replayed(tmp_path: Path) -> None:
    with running_sim() as sim:
        drawn = _sweep(sim.url, tmp_path / "drawn.json")
        first, second = _prompts_by_point(sim)
        assert not first & second
        assert [r["seed"] for r in drawn["runs"]][1] != 0
    with running_sim() as sim:
        replayed = _sweep(sim.url, tmp_path / "replayed.json", "--replay-prompts")
        first, second = _prompts_by_point(sim)
        assert first == second
        assert replayed["prompts"] == "replayed"
    with running_sim() as sim:
        _sweep(sim.url, tmp_path / "again.json")
        assert _prompts_by_point(sim)[1] != first  # a seed per point, and reruns repeat it
        assert _prompts_by_point(sim)[0] == first


def test_prefix_cache_is_reset_before_every_point(tmp_path: Path) -> None:
    with running_sim() as sim:
        data = _sweep(sim.url, tmp_path / "reset.json", "--replay-prompts")
        assert sim.stats()["prefix_cache_resets"] == 2
    runs = data["runs"]
    assert [r["prefix_cache_reset"] for r in runs] == [{sim.url: "reset (HTTP 200)"}] * 2
    # Replayed prompts on a reset cache: both points start cold, so they are comparable.
    assert [r["summary"]["prefix_cache"]["hit_rate"] for r in runs] == [0.0, 0.0]
    with running_sim() as sim:
        _sweep(sim.url, tmp_path / "kept.json", "--no-reset-prefix-cache")
        assert sim.stats()["prefix_cache_resets"] == 0


def test_a_target_without_the_reset_route_gets_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with (
        running_sim() as sim,
        running_gateway({"models": [group("sim-model", sim.url)]}) as gw,
    ):
        data = _sweep(gw.url, tmp_path / "gw.json", "--metrics-url", f"{sim.url}/metrics")
        assert sim.stats()["prefix_cache_resets"] == 2  # the replica behind it still is reset
    first = data["runs"][0]["prefix_cache_reset"]
    assert first[sim.url] == "reset (HTTP 200)"
    assert first[gw.url].startswith("not offered")
    err = capsys.readouterr().err
    assert err.count(f"note: {gw.url} did not reset its prefix cache") == 1


def test_points_with_distant_hit_rates_are_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_sim() as sim:
        capsys.readouterr()
        data = _sweep(
            sim.url,
            tmp_path / "warm.json",
            "--replay-prompts",
            "--no-reset-prefix-cache",
            "--report",
            str(tmp_path / "report"),
        )
    out = capsys.readouterr().out
    check = data["prefix_cache_comparability"]
    assert check["comparable"] is False
    assert check["min_hit_rate"] == 0.0
    assert check["max_hit_rate"] > 0.5
    # Two points: each is too far from the other (with more, the odd ones out are flagged).
    assert [r["not_comparable"] for r in data["runs"]] == [True, True]
    assert "warning: prefix-cache hit rates range from 0.0%" in out
    assert re.search(r"rate=inf .* 0\.0% !$", out, re.MULTILINE)
    page = (tmp_path / "report" / "report.html").read_text()
    assert "percentage points apart" in page
    assert 'class="not-comparable"' in page
    assert gateway_main(["load", "compare", str(tmp_path / "warm.json")]) == 0
    assert "percentage points apart" in capsys.readouterr().out
    # Fresh prompts on a reset cache: nothing to flag.
    with running_sim() as sim:
        cold = _sweep(sim.url, tmp_path / "cold.json")
    assert cold["prefix_cache_comparability"]["comparable"] is True


def test_comparability_flags_the_odd_points_out() -> None:
    def run(rate: float | None) -> dict[str, object]:
        return {"summary": {"prefix_cache": None if rate is None else {"hit_rate": rate}}}

    check = cache_comparability([run(0.0), run(0.974), run(0.974), run(None)])
    assert check is not None
    assert check["comparable"] is False
    assert check["flagged"] == [0]
    close = cache_comparability([run(0.10), run(0.25), run(0.18)])
    assert close is not None
    assert close["comparable"] is True
    assert close["flagged"] == []
    assert cache_comparability([run(0.5), run(None)]) is None
