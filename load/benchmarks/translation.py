"""Translation benchmark: the added cost of Chat <-> Messages translation against passthrough.

1. In-process: microseconds to translate one typical request and response, and one streamed
   event, in each direction.
3. The SDK providers' transport: the same chat request through the ``vllm`` byte relay and
   through the ``openai`` provider (official SDK) on its aiohttp and its httpx transport.
2. Through the gateway (one worker on its own core, auth and metrics on), with wrk: the same
   Anthropic client request to /v1/messages served by a backend that speaks Messages natively
   (passthrough) and by one that speaks Chat Completions (translated both ways); plain and
   streamed (64 text deltas). nginx serves both upstream formats from fixed responses.

Usage: bash load/benchmarks/translation.sh [--duration 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from common import format_table, free_port, missing_tools, pin, stop, wait_until_up, write_result
from overhead import (
    API_KEY,
    CHAT,
    MESSAGE,
    messages_sse_body,
    run_wrk,
    sse_body,
    start_static_upstream,
)

from gateway.sse import SSEParser
from gateway.translate.messages import (
    chat_request_to_messages,
    chat_response_to_messages,
    messages_request_to_chat,
    messages_response_to_chat,
)
from gateway.translate.streams import ChatStreamToMessages, MessagesStreamToChat

ANTHROPIC_REQUEST = {
    "model": "{model}",
    "max_tokens": 64,
    "system": "You are concise.",
    "messages": [{"role": "user", "content": "Say something short about gateways."}],
}
CHAT_REQUEST = {
    "model": "m",
    "max_tokens": 64,
    "messages": [
        {"role": "system", "content": "You are concise."},
        {"role": "user", "content": "Say something short about gateways."},
    ],
}
GATEWAY_CONFIG = """
server: {{host: 127.0.0.1, port: {port}, workers: 1}}
auth: {{api_keys: ["{key}"]}}
models:
  - name: native
    backends: [{{url: "http://127.0.0.1:{up}", model: b, options: {{messages: true}}}}]
  - name: translated
    backends: [{{url: "http://127.0.0.1:{up}", model: b}}]
  - name: native-stream
    backends: [{{url: "http://127.0.0.1:{stream}", model: b, options: {{messages: true}}}}]
  - name: translated-stream
    backends: [{{url: "http://127.0.0.1:{stream}", model: b}}]
  - name: relay
    backends: [{{url: "http://127.0.0.1:{up}", model: b}}]
  - name: sdk-aiohttp
    backends: [{{provider: openai, url: "http://127.0.0.1:{up}", model: b, api_key: k,
                options: {{transport: aiohttp}}}}]
  - name: sdk-httpx
    backends: [{{provider: openai, url: "http://127.0.0.1:{up}", model: b, api_key: k,
                options: {{transport: httpx}}}}]
"""


def micro() -> list[dict[str, Any]]:
    """Microseconds per translation, best of 5 repeats."""

    def per_call(fn: Any, number: int = 20000) -> float:
        return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6

    chat_sse = sse_body().encode()
    messages_sse = messages_sse_body().encode()
    chat_events = SSEParser().feed(chat_sse)
    messages_events = SSEParser().feed(messages_sse)

    def chat_stream() -> None:
        translator = ChatStreamToMessages("m")
        for event in chat_events:
            translator.feed(event)

    def messages_stream() -> None:
        translator = MessagesStreamToChat(include_usage=True)
        for event in messages_events:
            translator.feed(event)

    return [
        {
            "translation": "Messages request -> Chat (gateway /v1/messages)",
            "us": per_call(lambda: messages_request_to_chat(ANTHROPIC_REQUEST)),
        },
        {
            "translation": "Chat response -> Messages",
            "us": per_call(lambda: chat_response_to_messages(CHAT, "m")),
        },
        {
            "translation": "Chat request -> Messages (anthropic provider)",
            "us": per_call(lambda: chat_request_to_messages(CHAT_REQUEST, 1024)),
        },
        {
            "translation": "Messages response -> Chat",
            "us": per_call(lambda: messages_response_to_chat(MESSAGE, 0)),
        },
        {
            "translation": "Chat stream -> Messages events, per chunk",
            "us": per_call(chat_stream, 500) / len(chat_events),
        },
        {
            "translation": "Messages stream -> Chat chunks, per event",
            "us": per_call(messages_stream, 500) / len(messages_events),
        },
        {
            "translation": "SSE parsing, per event",
            "us": per_call(lambda: SSEParser().feed(chat_sse), 500) / len(chat_events),
        },
    ]


def end_to_end(duration: int) -> list[dict[str, Any]]:
    cores = os.cpu_count() or 1
    gw_core, load_core = (0, 1) if cores >= 2 else (None, None)
    work = Path(tempfile.mkdtemp(prefix="gateway-translate-"))
    nginx, up, stream = start_static_upstream(work, load_core)
    port = free_port()
    (work / "gateway.yaml").write_text(
        GATEWAY_CONFIG.format(port=port, key=API_KEY, up=up, stream=stream)
    )
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
    rows = []
    try:
        url = f"http://127.0.0.1:{port}/v1/messages"
        wait_until_up(f"http://127.0.0.1:{port}/healthz")

        def body(model: str, streamed: bool) -> dict[str, Any]:
            return {**ANTHROPIC_REQUEST, "model": model, **({"stream": True} if streamed else {})}

        run_wrk(url, body("translated", False), 32, 2, work, load_core)  # warm up
        for label, streamed in (("plain", False), ("stream, 64 chunks", True)):
            for conns in (1, 32):
                suffix = "-stream" if streamed else ""
                native = run_wrk(
                    url, body(f"native{suffix}", streamed), conns, duration, work, load_core
                )
                translated = run_wrk(
                    url, body(f"translated{suffix}", streamed), conns, duration, work, load_core
                )
                row = {
                    "case": f"/v1/messages {label}, c={conns}",
                    "passthrough_rps": native["rps"],
                    "translated_rps": translated["rps"],
                    "passthrough_p50_ms": native["p50_us"] / 1000,
                    "translated_p50_ms": translated["p50_us"] / 1000,
                    "added_p50_ms": (translated["p50_us"] - native["p50_us"]) / 1000,
                    "errors": native["errors"] + translated["errors"],
                }
                if conns == 32:
                    # Throughput-bound: the difference in CPU per request is the added cost.
                    added_us = (1 / translated["rps"] - 1 / native["rps"]) * 1e6
                    row["added_cpu_us_per_request"] = added_us
                    if streamed:
                        row["added_cpu_us_per_chunk"] = added_us / 64
                rows.append(row)
        chat_url = f"http://127.0.0.1:{port}/v1/chat/completions"
        for conns in (1, 32):
            runs = {
                name: run_wrk(
                    chat_url, {**CHAT_REQUEST, "model": name}, conns, duration, work, load_core
                )
                for name in ("relay", "sdk-aiohttp", "sdk-httpx")
            }
            rows.append(
                {
                    "case": f"chat via openai SDK provider, c={conns}",
                    "relay_rps": runs["relay"]["rps"],
                    "sdk_aiohttp_rps": runs["sdk-aiohttp"]["rps"],
                    "sdk_httpx_rps": runs["sdk-httpx"]["rps"],
                    "relay_p50_ms": runs["relay"]["p50_us"] / 1000,
                    "sdk_aiohttp_p50_ms": runs["sdk-aiohttp"]["p50_us"] / 1000,
                    "sdk_httpx_p50_ms": runs["sdk-httpx"]["p50_us"] / 1000,
                    "errors": sum(r["errors"] for r in runs.values()),
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
    parser.add_argument("--out", default="load/results/translation.json")
    args = parser.parse_args()
    if missing_tools("translation.sh"):
        return 2
    result: dict[str, Any] = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    result["micro"] = micro()
    print("== in-process translation cost")
    print(format_table(result["micro"]))
    result["end_to_end"] = end_to_end(args.duration)
    print("\n== through the gateway (one worker, one core)")
    print(format_table(result["end_to_end"]))
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
