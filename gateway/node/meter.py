"""What the node agent reads besides its GPUs: each engine's load (through its provider, as the
gateway's own routing reads it) and the tokens the gateway fleet served through each engine
(the gateway replicas' ``/metrics``), for the cost per million tokens."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from gateway.assembly import CatalogBuilder
from gateway.plugins import Registries
from gateway.providers.base import EngineMetricsSource, ProviderContext
from gateway.routing.base import EngineMetrics
from gateway.settings import BackendSettings, ModelGroupSettings

log = logging.getLogger("gateway.node")

TOKEN_METRICS = ("gateway_prompt_tokens", "gateway_completion_tokens")
"""The gateway's token counters, labelled by ``backend``."""


class EngineMeter:
    """Reads engines' load through the provider their backends would have in the gateway
    (``provider``: ``vllm`` unless told otherwise)."""

    def __init__(self, registries: Registries, context: ProviderContext, provider: str) -> None:
        self._builder = CatalogBuilder(registries, context)
        self._provider = provider
        self._sources: dict[str, EngineMetricsSource | None] = {}

    def forget(self, engine: str) -> None:
        self._sources.pop(engine, None)

    async def load(
        self, engine: str, url: str, model: str, timeout_s: float
    ) -> EngineMetrics | None:
        """The engine's load now (None: its provider cannot say, or it did not answer)."""
        if engine not in self._sources:
            backend = BackendSettings(name=engine, url=url, model=model, provider=self._provider)
            group = ModelGroupSettings(name=engine, backends=[backend])
            built = self._builder.backend(backend, group, 0, "node agent")
            provider = built.provider
            self._sources[engine] = provider if isinstance(provider, EngineMetricsSource) else None
        source = self._sources[engine]
        if source is None:
            return None
        try:
            async with asyncio.timeout(timeout_s):
                return await source.engine_metrics()
        except Exception as exc:  # noqa: BLE001 - a provider's failure is a missing reading
            log.debug("engine %s: load not read: %s", engine, exc)
            return None


async def served_tokens(
    http: aiohttp.ClientSession, gateway_urls: Sequence[str], timeout_s: float
) -> dict[str, int] | None:
    """Prompt plus completion tokens per backend name, summed over the gateway replicas at
    ``gateway_urls`` (None when none could be read: the old figures stand)."""
    totals: dict[str, float] = defaultdict(float)
    read = 0
    for url in gateway_urls:
        try:
            async with (
                asyncio.timeout(timeout_s),
                http.get(f"{url.rstrip('/')}/metrics") as resp,
            ):
                if resp.status != 200:
                    raise aiohttp.ClientError(f"GET /metrics answered {resp.status}")
                text = await resp.text()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.debug("gateway %s: token counts not read: %s", url, exc or "timed out")
            continue
        read += 1
        for family in text_string_to_metric_families(text):
            if family.name in TOKEN_METRICS:
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        totals[sample.labels.get("backend", "")] += sample.value
    return {name: int(value) for name, value in totals.items()} if read else None
