"""Where a gateway worker's CPU goes: summarise a py-spy profile in collapsed-stack form.

``py-spy record --format raw`` writes one line per distinct stack, ``outer;...;inner count``
(speedscope opens the same file). This prints the top functions by own time (samples where the
function is the innermost Python frame, C calls it makes included) and by cumulative time
(samples with the function anywhere on the stack below the event loop), and own time by group:
the HTTP server, the ASGI front, JSON, auth, metrics, routing, the aiohttp client, response
building, the event loop.

Usage: python load/benchmarks/profile_summary.py profile.txt [--top 15]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

# First match wins: (group, substrings of the frame's file).
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("uvicorn/httptools", ("uvicorn/", "httptools")),
    ("ASGI front", ("gateway/routes/front.py", "gateway/routes/calls.py")),
    ("response building", ("gateway/routes/responses.py",)),
    ("JSON decode/validation", ("msgspec", "gateway/schemas", "json/")),
    ("auth", ("gateway/auth.py", "gateway/identity.py")),
    ("metrics", ("prometheus_client", "gateway/telemetry")),
    (
        "routing/dispatch",
        (
            "gateway/routing",
            "gateway/routes/",
            "gateway/cache",
            "gateway/state.py",
            "gateway/errors.py",
            "gateway/clock.py",
            "gateway/batching",
            "gateway/tasks.py",
        ),
    ),
    ("aiohttp client", ("aiohttp/", "multidict", "yarl", "gateway_vllm", "propcache")),
    ("event loop (asyncio/uvloop/anyio)", ("asyncio/", "uvloop", "anyio/", "sniffio")),
]
# Samples of the event loop's thread: stacks under asyncio's runner (uvicorn's ``asyncio.run``).
# Other threads (executor workers parked on a condition) can be sampled as busy: left out.
LOOP_FRAME = "(asyncio/runners.py:"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def group_of(file: str) -> str:
    """The group of a frame in ``file``."""
    for name, needles in GROUPS:
        if any(n in file for n in needles):
            return name
    return "other"


def parse(text: str) -> list[tuple[list[str], int]]:
    """Collapsed stacks: (frames outermost first, samples) per line."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summarize(text: str, top: int = 15, loop_only: bool = True) -> dict[str, Any]:
    """Own and cumulative shares by function, and own shares by group.

    With ``loop_only``, only the event loop thread's samples (see :data:`LOOP_FRAME`) count.
    """
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    total = 0
    for frames, count in parse(text):
        # py-spy prefixes the thread ("process ...;thread ...") with --threads; skip non-frames.
        frames = [f for f in frames if _FRAME.match(f)]
        if not frames or (loop_only and not any(LOOP_FRAME in f for f in frames)):
            continue
        total += count
        leaf = frames[-1]
        own[leaf] += count
        match = _FRAME.match(leaf)
        groups[group_of(match["file"] if match else leaf)] += count
        # Cumulative time below the event loop: the frames above it are on every sample.
        loop = next((i for i, f in enumerate(frames) if LOOP_FRAME in f), -1)
        for frame in set(frames[loop + 1 :]):
            cumulative[frame] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": k, "group": group_of(k), "share": v / total, "samples": v}
            for k, v in counter.most_common(top)
        ]

    return {
        "samples": total,
        "own": share(own),
        "cumulative": share(cumulative),
        "groups": {k: v / total for k, v in groups.most_common()} if total else {},
    }


def render(summary: dict[str, Any]) -> str:
    """The summary as text tables."""
    lines = [f"samples: {summary['samples']}", "", "own time by group:"]
    lines += [f"  {v:6.1%}  {k}" for k, v in summary["groups"].items()]
    for kind in ("own", "cumulative"):
        lines += ["", f"top functions by {kind} time:"]
        lines += [f"  {r['share']:6.1%}  [{r['group']}] {r['function']}" for r in summary[kind]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="py-spy --format raw output")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument(
        "--all-threads", action="store_true", help="count every thread, not just the event loop's"
    )
    args = parser.parse_args()
    print(render(summarize(args.profile.read_text(), args.top, not args.all_threads)))


if __name__ == "__main__":
    main()
