"""Gateway overhead benchmark: the same static upstream, direct and through one gateway worker.

Upstream: nginx serving a fixed chat completion (and a fixed 64-chunk SSE stream), much faster than
the gateway. Load: wrk with a Lua script that reports latency percentiles as JSON. The gateway runs
one worker process with auth and metrics on. With two or more cores the gateway is pinned to core 0
and nginx + wrk to core 1, so the gateway has exactly one core.

Usage: bash load/benchmarks/overhead.sh [--duration 10] [--out load/results/overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import free_port, pin

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

GATEWAY_CONFIG = """
server: {{host: 127.0.0.1, port: {port}, workers: 1}}
auth: {{api_keys: ["{key}"]}}
models:
  - name: bench
    backends: [{{url: "http://127.0.0.1:{upstream}", model: bench-model}}]
  - name: bench-stream
    backends: [{{url: "http://127.0.0.1:{stream_upstream}", model: bench-model}}]
"""


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            req = urllib.request.Request(
                url,
                data=json.dumps(REQUEST).encode(),
                headers={"content-type": "application/json", "authorization": f"Bearer {API_KEY}"},
            )
            with urllib.request.urlopen(req, timeout=2) as resp:
                resp.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def run_wrk(
    url: str, body: dict[str, Any], connections: int, duration: int, work: Path, core: int | None
) -> dict[str, Any]:
    script = work / f"wrk-{connections}.lua"
    script.write_text(WRK_SCRIPT.format(body=json.dumps(body), key=API_KEY))
    cmd = [*pin(core), "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(script), url]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=duration + 60, check=True
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    result: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def start_static_upstream(work: Path, core: int | None) -> tuple[subprocess.Popen[bytes], int, int]:
    """nginx serving the fixed chat completion and the fixed SSE stream from ``work``.

    Returns the process, the chat port and the stream port.
    """
    port, stream_port = free_port(), free_port()
    work.chmod(0o755)  # nginx's worker runs as an unprivileged user
    (work / "stream.sse").write_text(sse_body())
    (work / "messages.sse").write_text(messages_sse_body())
    (work / "nginx.conf").write_text(
        NGINX_CONF.format(
            work=work,
            port=port,
            stream_port=stream_port,
            chat=json.dumps(CHAT),
            message=json.dumps(MESSAGE),
        )
    )
    proc = subprocess.Popen([*pin(core), "nginx", "-c", str(work / "nginx.conf"), "-p", str(work)])
    return proc, port, stream_port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--out", default="load/results/overhead.json")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            print(f"missing {tool}: run load/benchmarks/overhead.sh", file=sys.stderr)
            return 2
    cores = os.cpu_count() or 1
    gw_core, load_core = (0, 1) if cores >= 2 else (None, None)
    work = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    gw_port = free_port()
    nginx, upstream, stream_upstream = start_static_upstream(work, load_core)
    (work / "gateway.yaml").write_text(
        GATEWAY_CONFIG.format(
            port=gw_port, key=API_KEY, upstream=upstream, stream_upstream=stream_upstream
        )
    )
    procs = [nginx]
    gateway_log = (work / "gateway.log").open("w")
    try:
        procs.append(
            subprocess.Popen(
                [
                    *pin(gw_core),
                    sys.executable,
                    "-m",
                    "gateway.cli",
                    "serve",
                    "--config",
                    str(work / "gateway.yaml"),
                ],
                stderr=gateway_log,
            )
        )
        direct = f"http://127.0.0.1:{upstream}/v1/chat/completions"
        direct_stream = f"http://127.0.0.1:{stream_upstream}/v1/chat/completions"
        via = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        wait_http(direct)
        wait_http(via)
        stream_req = {
            **REQUEST,
            "model": "bench-stream",
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        scenarios = [
            ("chat c=1", REQUEST, 1),
            ("chat c=32", REQUEST, 32),
            ("stream c=32 (64 chunks)", stream_req, 32),
        ]
        # Warm up the gateway's connection pool and code paths.
        run_wrk(via, REQUEST, 32, 2, work, load_core)
        rows = []
        for name, body, conns in scenarios:
            d = run_wrk(
                direct_stream if body.get("stream") else direct,
                body,
                conns,
                args.duration,
                work,
                load_core,
            )
            g = run_wrk(via, body, conns, args.duration, work, load_core)
            rows.append(
                {
                    "scenario": name,
                    "connections": conns,
                    "direct": d,
                    "gateway": g,
                    "rps_ratio": g["rps"] / d["rps"],
                    "added_p50_ms": (g["p50_us"] - d["p50_us"]) / 1000,
                    "added_p99_ms": (g["p99_us"] - d["p99_us"]) / 1000,
                }
            )
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        gateway_log.close()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    header = (
        f"{'scenario':<26}{'direct req/s':>13}{'gateway req/s':>15}{'ratio':>7}"
        f"{'p50 direct':>12}{'p50 gw':>9}{'p99 direct':>12}{'p99 gw':>9}"
        f"{'added p50':>11}{'errors':>8}"
    )
    print(header)
    for r in rows:
        d, g = r["direct"], r["gateway"]
        print(
            f"{r['scenario']:<26}{d['rps']:>13,.0f}{g['rps']:>15,.0f}{r['rps_ratio']:>7.2f}"
            f"{d['p50_us'] / 1000:>10.3f}ms{g['p50_us'] / 1000:>7.3f}ms"
            f"{d['p99_us'] / 1000:>10.3f}ms{g['p99_us'] / 1000:>7.3f}ms"
            f"{r['added_p50_ms']:>9.3f}ms{d['errors'] + g['errors']:>8}"
        )
    result = {
        "benchmark": "overhead",
        "cores": cores,
        "gateway_core": gw_core,
        "duration_s": args.duration,
        "auth": True,
        "metrics": True,
        "workers": 1,
        "python": sys.version.split()[0],
        "rows": rows,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
