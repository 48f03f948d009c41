"""Gateway overhead benchmark: the same static upstream, direct and through one gateway worker.

Upstream: nginx serving a fixed chat completion (and a fixed 64-chunk SSE stream), much faster than
the gateway. Load: wrk with a Lua script that reports latency percentiles as JSON. The gateway runs
one worker process with auth and metrics on. With two or more cores the gateway is pinned to core 0
and nginx + wrk to core 1, so the gateway has exactly one core.

A second gateway worker runs governed: a virtual key from the Redis key store with RPM and TPM
limits and a monthly budget on it, limits reserved and settled in Redis, usage to the SQLite
ledger. Its rows (``governed``) are measured in the same run as the plain gateway's, and the
Redis commands it sent per request are read from ``INFO commandstats``.

Usage: bash load/benchmarks/overhead.sh [--duration 10] [--out load/results/overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import free_port, pin, start_redis, write_result
from profile_summary import render, summarize

API_KEY = "sk-bench"
CHAT = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "bench-model",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "logprobs": None,
            "message": {
                "role": "assistant",
                "content": "The quick brown fox jumps over the "
                "lazy dog while the gateway relays every byte.",
                "refusal": None,
            },
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 16, "total_tokens": 28},
}
MESSAGE = {
    "id": "msg_bench",
    "type": "message",
    "role": "assistant",
    "model": "bench-model",
    "content": [
        {
            "type": "text",
            "text": "The quick brown fox jumps over the lazy dog while the "
            "gateway relays every byte.",
        }
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 16},
}
REQUEST = {
    "model": "bench",
    "messages": [{"role": "user", "content": "Say something short."}],
    "max_tokens": 32,
    "temperature": 0,
}


def sse_body(chunks: int = 64) -> str:
    """A chat stream of ``chunks`` content chunks, a usage chunk and [DONE]."""
    out = []
    for i in range(chunks):
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "bench-model",
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": f" tok{i}"},
                    "finish_reason": None if i < chunks - 1 else "stop",
                }
            ],
        }
        out.append(f"data: {json.dumps(chunk)}\n\n")
    usage = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks},
    }
    out.append(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n")
    return "".join(out)


def response_body() -> dict[str, Any]:
    """A Responses API ``Response`` carrying :data:`CHAT`'s answer (what a native backend
    answers), made by the gateway's own translation so it is schema-valid."""
    from gateway.translate.responses import chat_response_to_response

    request = {"model": "bench-model", "input": "hi"}
    return chat_response_to_response(CHAT, request, response_id="resp_bench", created_at=1700000000)


def responses_sse_body(chunks: int = 64) -> str:
    """A Responses API event stream of ``chunks`` text deltas (translated from
    :func:`sse_body`)."""
    from gateway.sse import SSEParser
    from gateway.translate.responses_stream import ChatStreamToResponses

    translator = ChatStreamToResponses(
        {"model": "bench-model", "input": "hi"}, response_id="resp_bench", created_at=1700000000
    )
    events = SSEParser().feed(sse_body(chunks).encode())
    out = [b for event in events for b in translator.feed(event)] + translator.finish()
    return b"".join(out).decode()


def messages_sse_body(chunks: int = 64) -> str:
    """An Anthropic Messages stream of ``chunks`` text deltas."""

    def event(name: str, data: dict[str, Any]) -> str:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

    out = [
        event("message_start", {"message": {**MESSAGE, "content": [], "stop_reason": None}}),
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    out += [
        event(
            "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": f" tok{i}"}}
        )
        for i in range(chunks)
    ]
    out += [
        event("content_block_stop", {"index": 0}),
        event(
            "message_delta",
            {
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": chunks},
            },
        ),
        event("message_stop", {}),
    ]
    return "".join(out)


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_buffer_size 64k;
  server {{
    listen 127.0.0.1:{port};
    location = /v1/chat/completions {{
      default_type application/json;
      return 200 '{chat}';
    }}
    location = /v1/messages {{
      default_type application/json;
      return 200 '{message}';
    }}
    location = /v1/responses {{
      default_type application/json;
      return 200 '{response}';
    }}
    location = /health {{
      return 200;
    }}
  }}
  server {{
    listen 127.0.0.1:{stream_port};
    # nginx serves static files to GET only: answer POST with the file through error_page,
    # which re-issues the request internally as a GET.
    location = /v1/chat/completions {{
      error_page 405 =200 /stream.sse;
      return 405;
    }}
    location = /stream.sse {{
      internal;
      root {work};
      default_type text/event-stream;
    }}
    location = /v1/messages {{
      error_page 405 =200 /messages.sse;
      return 405;
    }}
    location = /health {{
      return 200;
    }}
    location = /messages.sse {{
      internal;
      root {work};
      default_type text/event-stream;
    }}
    location = /v1/responses {{
      error_page 405 =200 /responses.sse;
      return 405;
    }}
    location = /responses.sse {{
      internal;
      root {work};
      default_type text/event-stream;
    }}
  }}
}}
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format('WRKJSON {{"requests": %d, "duration_us": %d, "errors": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f}}\\n',
    summary.requests, summary.duration, errors, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.mean))
end
"""

GOVERNED_CONFIG = """
server: {{host: 127.0.0.1, port: {port}, workers: 1}}
auth: {{master_key: "{master}"}}
governance:
  data_dir: "{work}/governed"
  key_store: {{backend: redis, options: {{url: "{redis}"}}}}
  limiter: {limiter}
models:
  - name: bench
    backends: [{{url: "http://127.0.0.1:{upstream}", model: bench-model,
                price: {{input_per_mtok: 0.15, output_per_mtok: 0.6}}}}]
"""
MASTER_KEY = "sk-bench-master"
# Limits high enough never to refuse during the run: the benchmark measures their cost.
GOVERNED_KEY = {
    "rpm": 100_000_000,
    "tpm": 10_000_000_000,
    "budgets": [{"usd": 1_000_000, "window": "month"}],
}

# Governance off: a static key, no usage ledger (the governed gateway below has them).
GATEWAY_CONFIG = """
server: {{host: 127.0.0.1, port: {port}, workers: 1}}
auth: {{api_keys: ["{key}"]}}
governance: {{usage: {{sinks: []}}}}
models:
  - name: bench
    backends: [{{url: "http://127.0.0.1:{upstream}", model: bench-model}}]
  - name: bench-stream
    backends: [{{url: "http://127.0.0.1:{stream_upstream}", model: bench-model}}]
"""


def wait_http(url: str, timeout_s: float = 30, key: str = API_KEY) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            req = urllib.request.Request(
                url,
                data=json.dumps(REQUEST).encode(),
                headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
            )
            with urllib.request.urlopen(req, timeout=2) as resp:
                resp.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str,
    body: dict[str, Any],
    connections: int,
    duration: int,
    work: Path,
    core: int | None,
    pid: int | None = None,
    key: str = API_KEY,
) -> dict[str, Any]:
    """wrk against ``url``; with ``pid``, also that server's CPU time per request.

    CPU per request does not drop when other processes share the server's core, as req/s does:
    on a shared machine it is the steadier measure of a relay's cost.
    """
    cpu_before = cpu_seconds(pid) if pid is not None else 0.0
    script = work / f"wrk-{connections}.lua"
    script.write_text(WRK_SCRIPT.format(body=json.dumps(body), key=key))
    cmd = [*pin(core), "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(script), url]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=duration + 60, check=True
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    result: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    if pid is not None:
        result["cpu_us_per_req"] = (cpu_seconds(pid) - cpu_before) * 1e6 / result["requests"]
    return result


def start_static_upstream(work: Path, core: int | None) -> tuple[subprocess.Popen[bytes], int, int]:
    """nginx serving the fixed chat completion and the fixed SSE stream from ``work``.

    Returns the process, the chat port and the stream port.
    """
    port, stream_port = free_port(), free_port()
    work.chmod(0o755)  # nginx's worker runs as an unprivileged user
    (work / "stream.sse").write_text(sse_body())
    (work / "messages.sse").write_text(messages_sse_body())
    (work / "responses.sse").write_text(responses_sse_body())
    (work / "nginx.conf").write_text(
        NGINX_CONF.format(
            work=work,
            port=port,
            stream_port=stream_port,
            chat=json.dumps(CHAT),
            message=json.dumps(MESSAGE),
            response=json.dumps(response_body()),
        )
    )
    proc = subprocess.Popen([*pin(core), "nginx", "-c", str(work / "nginx.conf"), "-p", str(work)])
    return proc, port, stream_port


BENCH_DIR = Path(__file__).resolve().parent
# key: (label, streamed, connections)
SCENARIOS: dict[str, tuple[str, bool, int]] = {
    "chat-c1": ("chat c=1", False, 1),
    "chat-c32": ("chat c=32", False, 32),
    "stream-c32": ("stream c=32 (64 chunks)", True, 32),
}
TARGET_SCENARIO, TARGET_RATIO = "chat-c32", 0.70
STREAM_REQUEST = {
    **REQUEST,
    "model": "bench-stream",
    "stream": True,
    "stream_options": {"include_usage": True},
}


def redis_cli(port: int, *command: str) -> str:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *command], capture_output=True, text=True, timeout=10
    )
    return out.stdout.strip()


def _commands_inside_scripts() -> set[str]:
    """The commands the limiter's Lua scripts call: Redis counts them in ``commandstats`` as
    if clients had sent them, so they are told apart from the round trips by name."""
    import gateway_limits.script as scripts

    source = Path(scripts.__file__).read_text()
    return {m.lower() for m in re.findall(r"redis\.call\(['\"]([A-Za-z]+)['\"]", source)}


def redis_calls(port: int) -> tuple[int, int]:
    """Round trips clients made so far, from ``INFO commandstats``: script calls (``evalsha``,
    ``eval``) and other commands sent directly (not those scripts run, nor INFO and PING)."""
    inside = _commands_inside_scripts() | {"info", "ping"}
    scripts = direct = 0
    for line in redis_cli(port, "INFO", "commandstats").splitlines():
        if not line.startswith("cmdstat_"):
            continue
        name, _, rest = line[len("cmdstat_") :].partition(":")
        calls = int(dict(f.split("=") for f in rest.split(","))["calls"])
        if name in ("evalsha", "eval"):
            scripts += calls
        elif name not in inside:
            direct += calls
    return scripts, direct


def create_virtual_key(url: str) -> str:
    """A virtual key for the governed gateway, through its admin API."""
    req = urllib.request.Request(
        f"{url}/admin/keys",
        data=json.dumps(GOVERNED_KEY).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {MASTER_KEY}"},
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return str(json.loads(resp.read())["key"])
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def start_server(
    args: list[str], core: int | None, log: Any, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A Python server process (``python args...``) pinned to ``core``."""
    return subprocess.Popen(
        [*pin(core), sys.executable, *args], stderr=log, env={**os.environ, **(env or {})}
    )


def profile_server(
    pid: int,
    url: str,
    duration: int,
    work: Path,
    core: int | None,
    out: Path,
    key: str = API_KEY,
) -> dict[str, Any]:
    """py-spy on a relay process while wrk posts plain chat at c=32; the summary by function.

    py-spy runs on the load core, not the relay's. Writes the collapsed stacks (which
    speedscope opens) to ``out`` and the summary next to it (``.summary.txt``).
    """
    spy = subprocess.Popen(
        [
            *pin(core),
            "py-spy",
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(duration),
            "--rate",
            "200",
            "--function",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # attached before the load starts
    run_wrk(url, REQUEST, 32, duration, work, core, key=key)
    spy.wait(60)
    summary = summarize(out.read_text())
    out.with_suffix(".summary.txt").write_text(render(summary) + "\n")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--out", default="load/results/overhead.json")
    parser.add_argument(
        "--governed-limiter",
        choices=("redis", "memory"),
        default="redis",
        help="where the governed gateway counts its limits (default redis, as a fleet does)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(SCENARIOS),
        help="run only these scenarios (repeatable; default: all)",
    )
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="afterwards, py-spy the gateway, then the bare relay, under plain chat at c=32 for "
        "--duration seconds each; write the collapsed stacks to PATH (the bare relay's to "
        "PATH.bare.txt) and summaries next to them (.summary.txt)",
    )
    args = parser.parse_args()
    tools = ("nginx", "wrk", "redis-server", "redis-cli") + (("py-spy",) if args.profile else ())
    for tool in tools:
        if not shutil.which(tool):
            print(f"missing {tool}: run load/benchmarks/overhead.sh", file=sys.stderr)
            return 2
    cores = os.cpu_count() or 1
    gw_core, load_core = (0, 1) if cores >= 2 else (None, None)
    work = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    gw_port, bare_port, bare_stream_port = free_port(), free_port(), free_port()
    gov_port = free_port()
    nginx, upstream, stream_upstream = start_static_upstream(work, load_core)
    redis, redis_port = start_redis(load_core)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    (work / "gateway.yaml").write_text(
        GATEWAY_CONFIG.format(
            port=gw_port, key=API_KEY, upstream=upstream, stream_upstream=stream_upstream
        )
    )
    (work / "governed.yaml").write_text(
        GOVERNED_CONFIG.format(
            port=gov_port,
            master=MASTER_KEY,
            work=work,
            redis=redis_url,
            upstream=upstream,
            limiter=(
                f'{{backend: redis, options: {{url: "{redis_url}"}}}}'
                if args.governed_limiter == "redis"
                else "{backend: memory}"
            ),
        )
    )
    procs = [nginx, redis]
    log = (work / "servers.log").open("w")
    profiles: dict[str, Any] = {}
    try:
        gateway = start_server(
            ["-m", "gateway.cli", "serve", "--config", str(work / "gateway.yaml")], gw_core, log
        )
        procs.append(gateway)
        governed = start_server(
            ["-m", "gateway.cli", "serve", "--config", str(work / "governed.yaml")],
            gw_core,
            log,
            env={"GATEWAY_KEY_PEPPER": "bench-pepper-0123456789abcdef"},
        )
        procs.append(governed)
        # The bare relay forwards to the same path of one upstream: one per nginx server. Each
        # idles (on the gateway's core) while the others are measured, like the gateway.
        relays = [
            start_server(
                [
                    str(BENCH_DIR / "bare_relay.py"),
                    *("--port", str(port), "--upstream", f"http://127.0.0.1:{upstream_port}"),
                ],
                gw_core,
                log,
            )
            for port, upstream_port in ((bare_port, upstream), (bare_stream_port, stream_upstream))
        ]
        procs += relays
        path = "/v1/chat/completions"
        urls = {
            "direct": (
                f"http://127.0.0.1:{upstream}{path}",
                f"http://127.0.0.1:{stream_upstream}{path}",
            ),
            "bare_relay": (
                f"http://127.0.0.1:{bare_port}{path}",
                f"http://127.0.0.1:{bare_stream_port}{path}",
            ),
            "gateway": (f"http://127.0.0.1:{gw_port}{path}",) * 2,
        }
        for plain_url, stream_url in urls.values():
            wait_http(plain_url)
            wait_http(stream_url)
        gov_url = f"http://127.0.0.1:{gov_port}{path}"
        virtual_key = create_virtual_key(f"http://127.0.0.1:{gov_port}")
        wait_http(gov_url, key=virtual_key)
        # Warm up the relays' connection pools and code paths.
        for name in ("bare_relay", "gateway"):
            run_wrk(urls[name][0], REQUEST, 32, 2, work, load_core)
        run_wrk(gov_url, REQUEST, 32, 2, work, load_core, key=virtual_key)
        rows = []
        for key in args.only or SCENARIOS:
            label, streamed, conns = SCENARIOS[key]
            body = STREAM_REQUEST if streamed else REQUEST
            pids = {"gateway": gateway.pid, "bare_relay": relays[int(streamed)].pid}
            runs = {
                name: run_wrk(
                    url[int(streamed)], body, conns, args.duration, work, load_core, pids.get(name)
                )
                for name, url in urls.items()
            }
            if not streamed:
                scripts_before, direct_before = redis_calls(redis_port)
                gv = runs["governed"] = run_wrk(
                    gov_url,
                    body,
                    conns,
                    args.duration,
                    work,
                    load_core,
                    governed.pid,
                    key=virtual_key,
                )
                time.sleep(0.2)  # the last settlements' flush
                scripts_after, direct_after = redis_calls(redis_port)
                gv["redis_scripts_per_req"] = (scripts_after - scripts_before) / gv["requests"]
                gv["redis_direct_per_req"] = (direct_after - direct_before) / gv["requests"]
                gv["redis_calls_per_req"] = gv["redis_scripts_per_req"] + gv["redis_direct_per_req"]
            d, b, g = runs["direct"], runs["bare_relay"], runs["gateway"]
            governed_rows = {}
            if "governed" in runs:
                gv = runs["governed"]
                governed_rows = {
                    "governed_to_gateway_rps": gv["rps"] / g["rps"],
                    "governance_added_p50_ms": (gv["p50_us"] - g["p50_us"]) / 1000,
                    "redis_calls_per_req": gv["redis_calls_per_req"],
                }
            rows.append(
                {
                    "scenario": label,
                    "key": key,
                    "connections": conns,
                    **runs,
                    **governed_rows,
                    "rps_ratio": g["rps"] / d["rps"],
                    "gateway_to_bare_rps": g["rps"] / b["rps"],
                    # The same ratio from CPU per request: what it would be on an idle core.
                    "gateway_to_bare_cpu": b["cpu_us_per_req"] / g["cpu_us_per_req"],
                    "bare_added_p50_ms": (b["p50_us"] - d["p50_us"]) / 1000,
                    "added_p50_ms": (g["p50_us"] - d["p50_us"]) / 1000,
                    "added_p99_ms": (g["p99_us"] - d["p99_us"]) / 1000,
                }
            )
        if args.profile:
            out = Path(args.profile)
            out.parent.mkdir(parents=True, exist_ok=True)
            for name, proc, url_, key_, path_ in (
                ("gateway", gateway, urls["gateway"][0], API_KEY, out),
                (
                    "bare_relay",
                    relays[0],
                    urls["bare_relay"][0],
                    API_KEY,
                    out.with_suffix(".bare.txt"),
                ),
                ("governed", governed, gov_url, virtual_key, out.with_suffix(".governed.txt")),
            ):
                profiles[name] = profile_server(
                    proc.pid, url_, args.duration, work, load_core, path_, key_
                )
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(render_table(rows))
    target = next((r for r in rows if r["key"] == TARGET_SCENARIO), None)
    if target is not None:
        ratio = target["gateway_to_bare_rps"]
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(
            f"target: gateway >= {TARGET_RATIO:.0%} of the bare relay's req/s at "
            f"{SCENARIOS[TARGET_SCENARIO][0]}: {ratio:.1%}, {verdict} "
            f"(by CPU per request: {target['gateway_to_bare_cpu']:.1%})"
        )
    for r in rows:
        if "governed_to_gateway_rps" in r:
            gv = r["governed"]
            print(
                f"governance at {r['scenario']}: {gv['rps']:,.0f} req/s "
                f"({r['governed_to_gateway_rps']:.1%} of the plain gateway), "
                f"+{r['governance_added_p50_ms']:.3f} ms p50 over it, "
                f"{r['redis_calls_per_req']:.3f} Redis calls per request"
            )
    for name, profile in profiles.items():
        print(f"\n{name} profile under chat c=32:")
        print(render(profile))
    result = {
        "benchmark": "overhead",
        "cores": cores,
        "gateway_core": gw_core,
        "duration_s": args.duration,
        "auth": True,
        "metrics": True,
        "workers": 1,
        "python": sys.version.split()[0],
        "target": {"scenario": TARGET_SCENARIO, "gateway_to_bare_rps": TARGET_RATIO},
        "rows": rows,
        "profiles": profiles,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_result(args.out, result)
    return 0


def render_table(rows: list[dict[str, Any]]) -> str:
    """One line per scenario and target: req/s, p50, p99, added p50, and the gateway's ratio."""
    header = (
        f"{'scenario':<26}{'target':<12}{'req/s':>10}{'p50':>11}{'p99':>11}"
        f"{'added p50':>11}{'cpu/req':>10}{'errors':>8}{'gw/bare':>9}{'by cpu':>8}"
    )
    lines = [header]
    for r in rows:
        for name in ("direct", "bare_relay", "gateway", "governed"):
            if name not in r:
                continue
            run = r[name]
            added = (run["p50_us"] - r["direct"]["p50_us"]) / 1000
            added_cell = "" if name == "direct" else f"{added:+.3f}ms"
            gw = name == "gateway"
            ratio_cell = f"{r['gateway_to_bare_rps']:.1%}" if gw else ""
            cpu_ratio_cell = f"{r['gateway_to_bare_cpu']:.1%}" if gw else ""
            cpu = run.get("cpu_us_per_req")
            cpu_cell = "" if cpu is None else f"{cpu:.0f}us"
            lines.append(
                f"{r['scenario'] if name == 'direct' else '':<26}{name:<12}{run['rps']:>10,.0f}"
                f"{run['p50_us'] / 1000:>9.3f}ms{run['p99_us'] / 1000:>9.3f}ms"
                f"{added_cell:>11}{cpu_cell:>10}{run['errors']:>8}{ratio_cell:>9}"
                f"{cpu_ratio_cell:>8}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
