"""Run a workload against an OpenAI-compatible endpoint: arrivals, concurrency, progress.

Open loop: sessions start at a rate with gamma-distributed gaps (``burstiness`` 1 is Poisson,
lower is burstier; rate ``inf`` starts all at once), optionally capped at ``max_concurrency`` in
flight. Closed loop: ``concurrency`` workers each run one session after another. Every loop is
bounded by the workload's size.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gateway_loadgen.client import RequestRecord, send_request
from gateway_loadgen.workloads import Session, Workload

HITS = ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits")
QUERIES = ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries")


@dataclass
class RunSettings:
    """How to drive one run.

    Attributes:
        target: base URL of the endpoint (without ``/v1``).
        model: the ``model`` sent with every request.
        rate: sessions per second for an open loop (``math.inf``: all at once); None for a
            closed loop.
        burstiness: gamma shape of the gaps (1 = Poisson).
        max_concurrency: cap on requests in flight in an open loop.
        concurrency: workers of a closed loop.
        stream: stream chat and completions (needed for TTFT and ITL).
        api_key: sent as a bearer token.
        timeout_s: per-request limit.
        metrics_urls: vLLM-compatible ``/metrics`` URLs to read the prefix-cache hit rate from.
        seed: seed of the arrival times.
    """

    target: str
    model: str
    rate: float | None = math.inf
    burstiness: float = 1.0
    max_concurrency: int | None = None
    concurrency: int | None = None
    stream: bool = True
    api_key: str | None = None
    timeout_s: float = 600.0
    metrics_urls: list[str] = field(default_factory=list)
    seed: int = 0


def arrival_times(count: int, rate: float, burstiness: float, seed: int) -> list[float]:
    """Start offsets (seconds) of ``count`` arrivals at ``rate`` with gamma(``burstiness``) gaps
    whose mean is ``1 / rate``."""
    if math.isinf(rate):
        return [0.0] * count
    rng = random.Random(seed)
    scale = 1.0 / (rate * burstiness)
    t, out = 0.0, []
    for _ in range(count):
        out.append(t)
        t += rng.gammavariate(burstiness, scale)
    return out


def point_seed(seed: int, index: int) -> int:
    """The seed of a sweep's point ``index``: the run's own for the first point, and one drawn
    from both for the others, so every point gets prompts of its own and reruns repeat."""
    if index == 0:
        return seed
    digest = hashlib.sha256(f"gateway-load:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def reset_prefix_cache(base_url: str, api_key: str | None = None) -> tuple[bool, str]:
    """``POST {base_url}/reset_prefix_cache`` (vLLM's route, which the simulator serves too).

    Returns:
        Whether the cache was reset, and what happened in words.
    """
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    url = f"{base_url}/reset_prefix_cache"
    request = urllib.request.Request(url, data=b"", method="POST", headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - operator's URL
            return True, f"reset (HTTP {resp.status})"
    except urllib.error.HTTPError as exc:
        return False, f"not offered (HTTP {exc.code})"
    except (OSError, ValueError) as exc:
        return False, f"failed ({exc})"


def scrape_prefix_cache(url: str) -> tuple[float, float] | None:
    """``(hits, queries)`` token counters from a vLLM ``/metrics``; None when it has none."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - operator's URL
            text = resp.read().decode()
    except (OSError, ValueError):
        return None
    hits = queries = 0.0
    found = False
    for family in text_string_to_metric_families(text):
        if family.name in HITS or family.name in QUERIES:
            found = True
            total = sum(s.value for s in family.samples if s.name.endswith("_total"))
            if family.name in HITS:
                hits += total
            else:
                queries += total
    return (hits, queries) if found else None


class Progress:
    """A one-line progress bar on a terminal; sparse lines otherwise."""

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.errors = 0
        self.started = time.perf_counter()
        self._tty = sys.stderr.isatty()
        self._last = 0.0

    def update(self, record: RequestRecord) -> None:
        self.done += 1
        self.errors += record.error is not None
        now = time.perf_counter()
        if now - self._last >= (0.2 if self._tty else 5.0) or self.done == self.total:
            self._last = now
            self.render(now)

    def render(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        share = self.done / self.total if self.total else 1.0
        bar = "#" * int(share * 30)
        line = (
            f"{self.label} [{bar:<30}] {self.done}/{self.total} requests  "
            f"{self.done / elapsed:.1f} req/s  errors {self.errors}"
        )
        if self._tty:
            end = "\n" if self.done == self.total else ""
            print(f"\r{line}", end=end, file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)


@dataclass
class RunOutcome:
    """What one run produced.

    Attributes:
        records: one per request, by start time.
        duration: seconds from the first arrival to the last response.
        offered_rate: sessions per second the arrival process offered (None: closed loop or
            all at once).
        prefix_cache: hit rates over the run from ``metrics_urls`` (None without any).
        client_cpu: the harness's CPU seconds per wall second over the run; near 1.0 means the
            client itself may have limited the run.
    """

    records: list[RequestRecord]
    duration: float
    offered_rate: float | None
    prefix_cache: dict[str, Any] | None
    client_cpu: float


async def run_workload(workload: Workload, settings: RunSettings, label: str = "run") -> RunOutcome:
    """Run every session of ``workload`` as ``settings`` say."""
    before = {u: scrape_prefix_cache(u) for u in settings.metrics_urls}
    headers = {"authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    total = sum(len(s.turns) for s in workload.sessions)
    progress = Progress(total, label)
    records: list[RequestRecord] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        start = time.perf_counter()
        cpu_start = time.process_time()
        limit = asyncio.Semaphore(settings.max_concurrency or 1_000_000)

        async def run_session(index: int, session: Session) -> None:
            history: list[dict[str, Any]] = []
            for turn, body in enumerate(session.turns):
                request = {**body, "model": settings.model}
                if session.conversation:
                    request["messages"] = [*history, *body["messages"]]
                if session.endpoint != "embeddings" and settings.stream:
                    request["stream"] = True
                    request["stream_options"] = {"include_usage": True}
                url = f"{settings.target}/v1/{session.endpoint}"
                async with limit:
                    record = await send_request(
                        http,
                        url,
                        request,
                        stream=bool(request.get("stream")),
                        session=index,
                        turn=turn,
                        run_start=start,
                        headers=headers,
                        timeout_s=settings.timeout_s,
                    )
                records.append(record)
                progress.update(record)
                if not record.ok:
                    break
                if session.conversation:
                    history += [*body["messages"], {"role": "assistant", "content": record.reply}]

        offered: float | None = None
        if settings.concurrency is not None:
            queue: asyncio.Queue[tuple[int, Session]] = asyncio.Queue()
            for item in enumerate(workload.sessions):
                queue.put_nowait(item)

            async def worker() -> None:
                while not queue.empty():
                    await run_session(*queue.get_nowait())

            await asyncio.gather(*(worker() for _ in range(settings.concurrency)))
        else:
            rate = settings.rate if settings.rate is not None else math.inf
            times = arrival_times(len(workload.sessions), rate, settings.burstiness, settings.seed)
            if times and times[-1] > 0:
                offered = (len(times) - 1) / times[-1]
            tasks = []
            for (index, session), at in zip(enumerate(workload.sessions), times, strict=True):
                delay = start + at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(run_session(index, session)))
            await asyncio.gather(*tasks)
        duration = time.perf_counter() - start
        cpu = (time.process_time() - cpu_start) / duration if duration else 0.0
    after = {u: scrape_prefix_cache(u) for u in settings.metrics_urls}
    records.sort(key=lambda r: r.start)
    return RunOutcome(records, duration, offered, prefix_cache_delta(before, after), cpu)


def prefix_cache_delta(
    before: dict[str, tuple[float, float] | None], after: dict[str, tuple[float, float] | None]
) -> dict[str, Any] | None:
    """Hit rate per metrics URL and overall over the run, from counter deltas."""
    per: dict[str, Any] = {}
    hits_all = queries_all = 0.0
    for url, end in after.items():
        begin = before.get(url)
        if end is None or begin is None:
            continue
        hits, queries = end[0] - begin[0], end[1] - begin[1]
        hits_all += hits
        queries_all += queries
        per[url] = {
            "hits": hits,
            "queries": queries,
            "hit_rate": hits / queries if queries else None,
        }
    if not per:
        return None
    return {
        "per_backend": per,
        "hits": hits_all,
        "queries": queries_all,
        "hit_rate": hits_all / queries_all if queries_all else None,
    }


def sweep_values(text: str | None) -> Sequence[float] | None:
    """``"10,20,inf"`` as ``[10.0, 20.0, inf]``."""
    if text is None:
        return None
    return [math.inf if v.strip() == "inf" else float(v) for v in text.split(",") if v.strip()]
