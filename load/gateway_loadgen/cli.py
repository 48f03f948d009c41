"""``gateway load run | compare | report``."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from gateway.commands import Command
from gateway_loadgen import workloads
from gateway_loadgen.results import (
    cache_comparability,
    compare,
    format_table,
    load_results,
    parse_slo,
    summarize,
)
from gateway_loadgen.runner import (
    RunSettings,
    point_seed,
    reset_prefix_cache,
    run_workload,
    scrape_prefix_cache,
    sweep_values,
)

TTFT_SAMPLES = 2000


def _add_run(parser: argparse.ArgumentParser) -> None:
    t = parser.add_argument_group("target")
    t.add_argument(
        "--target",
        default="http://127.0.0.1:8080",
        help="base URL of any OpenAI-compatible endpoint (without /v1)",
    )
    t.add_argument("--model", help="model to request (default: the target's first model)")
    t.add_argument(
        "--api-key",
        default=os.environ.get("GATEWAY_API_KEY") or os.environ.get("OPENAI_API_KEY"),
        help="bearer token",
    )
    t.add_argument(
        "--metrics-url",
        action="append",
        default=[],
        help="vLLM-compatible /metrics to read prefix-cache hits from (repeatable; "
        "default: the target's own, when it has vLLM metrics)",
    )
    w = parser.add_argument_group("workload")
    w.add_argument(
        "--workload",
        default="synthetic",
        choices=["synthetic", "shared-prefix", "multi-turn", "jsonl", "embeddings"],
    )
    w.add_argument("--num-prompts", type=int, default=200)
    w.add_argument("--input-tokens", type=int, default=256)
    w.add_argument("--output-tokens", type=int, default=64)
    w.add_argument(
        "--range-ratio", type=float, default=0.0, help="lengths uniform in mean*(1-r)..mean*(1+r)"
    )
    w.add_argument("--groups", type=int, default=8, help="shared-prefix: prefix groups")
    w.add_argument("--prompts-per-group", type=int, default=16)
    w.add_argument("--prefix-tokens", type=int, default=1024)
    w.add_argument("--suffix-tokens", type=int, default=64)
    w.add_argument("--conversations", type=int, default=20)
    w.add_argument("--turns", type=int, default=4)
    w.add_argument("--jsonl", help="file of OpenAI request bodies, one per line")
    w.add_argument("--inputs-per-request", type=int, default=1)
    w.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the prompts and arrivals; each sweep point draws its own from it",
    )
    w.add_argument(
        "--replay-prompts",
        action="store_true",
        help="send every sweep point the same prompts (default: each point draws its own)",
    )
    a = parser.add_argument_group("arrivals")
    a.add_argument("--rate", help="open loop: sessions/s, or a sweep '5,10,inf' (default inf)")
    a.add_argument("--burstiness", type=float, default=1.0, help="gamma shape; 1 is Poisson")
    a.add_argument("--max-concurrency", type=int, help="open loop: cap on requests in flight")
    a.add_argument("--concurrency", help="closed loop: workers, or a sweep '1,8,32'")
    t.add_argument(
        "--reset-prefix-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="POST /reset_prefix_cache (vLLM's route) to the target and to each --metrics-url's "
        "server before every point, so each starts on a cold cache (default: on; a target "
        "without the route gets a note)",
    )
    o = parser.add_argument_group("output")
    o.add_argument("--no-stream", action="store_true", help="non-streaming requests")
    o.add_argument("--slo", help="goodput SLOs, e.g. ttft_ms=500,tpot_ms=50,e2el_ms=5000")
    o.add_argument("--timeout", type=float, default=600.0, help="per-request limit (s)")
    o.add_argument(
        "--out",
        default="load/results/latest.json",
        help="results JSON (a CSV of every request is written beside it)",
    )
    o.add_argument("--label", help="name of this result in tables and reports")
    o.add_argument("--report", help="also write the HTML report and plots into this folder")


def build_workload(args: argparse.Namespace, seed: int | None = None) -> workloads.Workload:
    """The workload the options describe, drawn with ``seed`` (default ``--seed``).

    Raises:
        ValueError: ``--workload jsonl`` without a readable ``--jsonl`` file.
    """
    if seed is None:
        seed = args.seed
    if args.workload == "shared-prefix":
        return workloads.shared_prefix(
            args.groups,
            args.prompts_per_group,
            args.prefix_tokens,
            args.suffix_tokens,
            args.output_tokens,
            seed,
        )
    if args.workload == "multi-turn":
        return workloads.multi_turn(
            args.conversations, args.turns, args.input_tokens, args.output_tokens, seed
        )
    if args.workload == "embeddings":
        return workloads.embedding_bursts(
            args.num_prompts, args.inputs_per_request, args.input_tokens, seed
        )
    if args.workload == "jsonl":
        if not args.jsonl:
            raise ValueError("--workload jsonl needs --jsonl FILE")
        return workloads.from_jsonl(args.jsonl, args.num_prompts)
    return workloads.synthetic(
        args.num_prompts, args.input_tokens, args.output_tokens, args.range_ratio, seed
    )


def _first_model(target: str, api_key: str | None) -> str:
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    url = f"{target}/v1/models"
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - operator's URL
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
        return str(json.load(resp)["data"][0]["id"])


def _json_rate(rate: float | None) -> float | str | None:
    return "inf" if rate is not None and math.isinf(rate) else rate


def reset_urls(target: str, metrics_urls: list[str]) -> list[str]:
    """Where to reset the prefix cache: the target and the server of each metrics URL."""
    urls = [target]
    for url in metrics_urls:
        base = url.removesuffix("/metrics")
        if base != url and base not in urls:
            urls.append(base)
    return urls


def reset_before_point(urls: list[str], api_key: str | None, noted: set[str]) -> dict[str, str]:
    """Reset every prefix cache in ``urls``; notes (once per URL) those that cannot."""
    outcome = {}
    for url in urls:
        done, what = reset_prefix_cache(url, api_key)
        outcome[url] = what
        if not done and url not in noted:
            noted.add(url)
            print(
                f"note: {url} did not reset its prefix cache: {what}; sweep points may run on "
                "a cache an earlier point warmed",
                file=sys.stderr,
            )
    return outcome


def run(args: argparse.Namespace) -> int:
    """``gateway load run``: one run, or a sweep over rates or concurrencies."""
    try:
        slo = parse_slo(args.slo)
        workload = build_workload(args)
        model = args.model or _first_model(args.target, args.api_key)
    except (ValueError, OSError) as exc:
        print(f"gateway load: error: {exc}", file=sys.stderr)
        return 2
    metrics_urls = list(args.metrics_url)
    if not metrics_urls and scrape_prefix_cache(f"{args.target}/metrics") is not None:
        metrics_urls = [f"{args.target}/metrics"]
    concurrencies = sweep_values(args.concurrency)
    loads: list[dict[str, Any]] = (
        [{"rate": None, "concurrency": int(c)} for c in concurrencies]
        if concurrencies
        else [{"rate": r, "concurrency": None} for r in (sweep_values(args.rate) or [math.inf])]
    )
    result: dict[str, Any] = {
        "label": args.label or Path(args.out).stem,
        "target": args.target,
        "model": model,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "workload": {"name": workload.name, "params": workload.params},
        "stream": not args.no_stream,
        "prompts": "replayed" if args.replay_prompts or args.workload == "jsonl" else "drawn",
        "reset_prefix_cache": args.reset_prefix_cache,
        "runs": [],
    }
    if args.workload == "jsonl" and len(loads) > 1 and not args.replay_prompts:
        print("note: a jsonl workload replays the same requests at every point", file=sys.stderr)
    targets = reset_urls(args.target, metrics_urls)
    noted: set[str] = set()
    all_records = []
    for index, load in enumerate(loads):
        seed = args.seed if args.replay_prompts else point_seed(args.seed, index)
        if index and seed != args.seed:
            workload = build_workload(args, seed)
        resets = (
            reset_before_point(targets, args.api_key, noted) if args.reset_prefix_cache else None
        )
        settings = RunSettings(
            target=args.target,
            model=model,
            rate=load["rate"],
            burstiness=args.burstiness,
            max_concurrency=args.max_concurrency,
            concurrency=load["concurrency"],
            stream=not args.no_stream,
            api_key=args.api_key,
            timeout_s=args.timeout,
            metrics_urls=metrics_urls,
            seed=seed,
        )
        label = (
            f"c={load['concurrency']}"
            if load["concurrency"]
            else f"rate={_json_rate(load['rate'])}"
        )
        outcome = asyncio.run(run_workload(workload, settings, label))
        summary = summarize(outcome.records, outcome.duration, outcome.offered_rate, slo)
        summary["prefix_cache"] = outcome.prefix_cache
        summary["client_cpu"] = outcome.client_cpu
        if outcome.client_cpu > 0.9:
            print(
                f"warning: the harness used {outcome.client_cpu:.0%} of a core; latencies "
                "may include client delay",
                file=sys.stderr,
            )
        ttfts = sorted(r.ttft * 1000 for r in outcome.records if r.ok and r.ttft is not None)
        step = max(1, len(ttfts) // TTFT_SAMPLES)
        result["runs"].append(
            {
                "rate": _json_rate(load["rate"]),
                "concurrency": load["concurrency"],
                "max_concurrency": args.max_concurrency,
                "burstiness": args.burstiness,
                "seed": seed,
                "prefix_cache_reset": resets,
                "summary": summary,
                "ttft_samples_ms": ttfts[::step],
            }
        )
        all_records.append(outcome.records)
    from gateway_loadgen.results import write_results

    check = cache_comparability(result["runs"])
    result["prefix_cache_comparability"] = check
    for i, run_result in enumerate(result["runs"]):
        run_result["not_comparable"] = bool(check and i in check["flagged"])
    json_path, csv_path = write_results(Path(args.out), result, all_records)
    print(format_table([(result["label"], r) for r in result["runs"]]))
    if check and not check["comparable"]:
        print(f"warning: {check['message']}")
    print(f"wrote {json_path} and {csv_path}")
    if args.report:
        from gateway_loadgen.report import render_html

        print(f"wrote {render_html([(result['label'], result)], Path(args.report))}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``gateway load compare A.json B.json ...``."""
    try:
        print(compare(args.files))
    except (OSError, ValueError) as exc:
        print(f"gateway load: error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``gateway load report A.json [B.json ...] --out DIR``."""
    from gateway_loadgen.report import render_html

    try:
        series = [
            (load_results(f).get("label") or Path(f).stem, load_results(f)) for f in args.files
        ]
    except (OSError, ValueError) as exc:
        print(f"gateway load: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {render_html(series, Path(args.out))}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``gateway load`` and its subcommands."""
    sub = parser.add_subparsers(dest="load_command", required=True)
    run_parser = sub.add_parser("run", help="drive a workload against an endpoint")
    _add_run(run_parser)
    run_parser.set_defaults(_load=run)
    compare_parser = sub.add_parser("compare", help="results files side by side")
    compare_parser.add_argument("files", nargs="+")
    compare_parser.set_defaults(_load=cmd_compare)
    report_parser = sub.add_parser("report", help="HTML report with plots from results files")
    report_parser.add_argument("files", nargs="+")
    report_parser.add_argument("--out", default="load/results/report")
    report_parser.set_defaults(_load=cmd_report)


def dispatch(args: argparse.Namespace) -> int:
    """Run the chosen subcommand."""
    status: int = args._load(args)
    return status


LOAD_COMMAND = Command(
    help="load-test any OpenAI-compatible endpoint (run, compare, report)",
    add_arguments=add_arguments,
    run=dispatch,
)
