"""Responses API benchmark: ``POST /v1/responses`` relayed and translated, against chat.

Through the gateway (one worker on its own core, auth and metrics on), with wrk, against nginx
serving fixed answers in both formats:

- **chat**: ``POST /v1/chat/completions`` relayed to a chat backend (the reference);
- **responses, relayed**: ``POST /v1/responses`` to a backend with ``responses: true``;
- **responses, translated**: the same request to a chat backend, translated both ways;

each plain and streamed (64 text deltas), with ``store: false`` (no response store), and the
translated plain case once more with ``store`` on (the default: a SQLite file), so the store's
cost shows on its own. Reported: req/s, p50, the gateway's CPU per request, and the ratio to
chat.

Usage: bash load/benchmarks/responses.sh [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from common import format_table, free_port, missing_tools, pin, stop, wait_until_up
from overhead import API_KEY, run_wrk, start_static_upstream

GATEWAY_CONFIG = """
server: {{host: 127.0.0.1, port: {port}, workers: 1}}
auth: {{api_keys: ["{key}"]}}
store: {{backend: sqlite, options: {{path: "{work}/responses.sqlite3"}}}}
models:
  - name: chat
    backends: [{{url: "http://127.0.0.1:{up}", model: b}}]
  - name: relayed
    backends: [{{url: "http://127.0.0.1:{up}", model: b, options: {{responses: true}}}}]
  - name: translated
    backends: [{{url: "http://127.0.0.1:{up}", model: b}}]
  - name: chat-stream
    backends: [{{url: "http://127.0.0.1:{stream}", model: b}}]
  - name: relayed-stream
    backends: [{{url: "http://127.0.0.1:{stream}", model: b, options: {{responses: true}}}}]
  - name: translated-stream
    backends: [{{url: "http://127.0.0.1:{stream}", model: b}}]
"""
CHAT_BODY = {"messages": [{"role": "user", "content": "Say something short about gateways."}]}
RESPONSES_BODY = {"input": "Say something short about gateways.", "store": False}


def measure(duration: int) -> list[dict[str, Any]]:
    cores = os.cpu_count() or 1
    gw_core, load_core = (0, 1) if cores >= 2 else (None, None)
    work = Path(tempfile.mkdtemp(prefix="gateway-responses-"))
    nginx, up, stream = start_static_upstream(work, load_core)
    port = free_port()
    config = GATEWAY_CONFIG.format(port=port, key=API_KEY, up=up, stream=stream, work=work)
    (work / "gateway.yaml").write_text(config)
    log = (work / "gateway.log").open("w")
    gateway = subprocess.Popen(
        [
            *pin(gw_core),
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(work / "gateway.yaml"),
        ],
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}/v1"
    rows = []
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz")

        def run(path: str, body: dict[str, Any], conns: int) -> dict[str, Any]:
            return run_wrk(f"{base}/{path}", body, conns, duration, work, load_core, gateway.pid)

        run("responses", {**RESPONSES_BODY, "model": "translated"}, 32)  # warm up
        for streamed in (False, True):
            suffix, extra = ("-stream", {"stream": True}) if streamed else ("", {})
            conns = 32
            chat = run("chat/completions", {**CHAT_BODY, "model": f"chat{suffix}", **extra}, conns)
            cases = {
                "chat/completions": chat,
                "responses, relayed": run(
                    "responses", {**RESPONSES_BODY, "model": f"relayed{suffix}", **extra}, conns
                ),
                "responses, translated": run(
                    "responses", {**RESPONSES_BODY, "model": f"translated{suffix}", **extra}, conns
                ),
            }
            if not streamed:
                stored = {**RESPONSES_BODY, "model": "translated", "store": True}
                cases["responses, translated, stored (sqlite)"] = run("responses", stored, conns)
            for name, result in cases.items():
                rows.append(
                    {
                        "case": f"{name}{' (stream, 64 chunks)' if streamed else ''}, c={conns}",
                        "req_s": result["rps"],
                        "p50_ms": result["p50_us"] / 1000,
                        "cpu_us_per_req": result["cpu_us_per_req"],
                        "vs_chat_req_s": result["rps"] / chat["rps"],
                        "errors": result["errors"],
                    }
                )
    finally:
        stop(gateway, nginx)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--out", default="load/results/responses.json")
    args = parser.parse_args()
    if missing_tools("responses.sh"):
        return 2
    rows = measure(args.duration)
    print(format_table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
