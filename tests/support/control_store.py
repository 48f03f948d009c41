"""A control store in memory, for tests of the jobs that use one (health-sweep, scale-fleet)
while the ``directory`` and ``redis`` stores are written elsewhere: it implements the
:class:`gateway.control.base.ControlStore` Protocol, nothing more. ``reachable = False`` makes
every call fail as an unreachable store does."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.control.base import ConfigVersion, HealthHint
from gateway.errors import ServiceUnavailableError


class MemoryControlStore:
    def __init__(self) -> None:
        self.versions: list[ConfigVersion] = []
        self.hints: list[HealthHint] = []
        self.states: dict[str, dict[str, Any]] = {}
        self.reachable = True
        self.health_reads = 0
        self.health_read = asyncio.Event()  # set at each health() call

    def _check(self) -> None:
        if not self.reachable:
            raise ServiceUnavailableError("the control store cannot be reached")

    async def publish_config(self, text: str, source: str) -> ConfigVersion:
        self._check()
        digest = hashlib.sha256(text.encode()).hexdigest()
        version = ConfigVersion(len(self.versions) + 1, text, source, time.time(), digest)
        self.versions.append(version)
        return version

    async def current_config(self) -> ConfigVersion | None:
        self._check()
        return self.versions[-1] if self.versions else None

    async def current_version(self) -> int:
        self._check()
        return len(self.versions)

    async def config_version(self, version: int) -> ConfigVersion | None:
        self._check()
        return self.versions[version - 1] if 0 < version <= len(self.versions) else None

    async def config_versions(self, limit: int = 20) -> list[ConfigVersion]:
        self._check()
        return list(reversed(self.versions))[:limit]

    async def put_health(self, hints: Sequence[HealthHint]) -> None:
        self._check()
        self.hints = list(hints)

    async def health(self) -> list[HealthHint]:
        self.health_reads += 1
        self.health_read.set()
        self._check()
        return list(self.hints)

    async def get_state(self, name: str) -> Mapping[str, Any]:
        self._check()
        state: dict[str, Any] = json.loads(json.dumps(self.states.get(name, {})))
        return state

    async def put_state(self, name: str, state: Mapping[str, Any]) -> None:
        self._check()
        self.states[name] = json.loads(json.dumps(state))  # JSON-able, as stores keep it

    async def aclose(self) -> None:
        return None
