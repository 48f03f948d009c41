"""Fleet numbers: every replica publishes its part to the shared store, any replica shows all.

A replica's part (:mod:`gateway.dashboard.snapshot`) holds rates and bucket counts, which add
up across replicas; each replica derives its own from its own counters, so a replica that
restarts or goes away never makes a rate negative. A published part counts for ``ttl_s``
(``dashboard.fleet_ttl_s``): a replica that stops publishing drops out of the fleet's numbers
within that time.

The shared store is ``control.store`` when it also :class:`SharesSnapshots` (the ``redis`` and
``directory`` control stores do); otherwise the page shows this replica only, and says so.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
from typing import Any, Protocol, runtime_checkable

import msgspec

log = logging.getLogger("gateway.dashboard")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@runtime_checkable
class SharesSnapshots(Protocol):
    """Capability of a control store: short-lived data per replica, readable by all."""

    async def put_snapshot(self, replica: str, data: bytes, ttl_s: float) -> None:
        """Replace ``replica``'s snapshot with ``data``; it expires after ``ttl_s`` seconds.

        ``replica`` holds letters, digits, ``_``, ``.`` and ``-`` only.
        """
        ...

    async def snapshots(self) -> list[bytes]:
        """Every replica's snapshot that has not expired (in no particular order)."""
        ...


def replica_name() -> str:
    """A name for this process, unique in the fleet: host, process id and a random tag."""
    host = _UNSAFE.sub("-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


_encoder = msgspec.json.Encoder()


class FleetBoard:
    """This replica's side of the shared store's snapshots.

    Args:
        store: the shared store.
        replica: this replica's name (:func:`replica_name`).
        ttl_s: how long a published part counts.
    """

    def __init__(self, store: SharesSnapshots, replica: str, ttl_s: float) -> None:
        self.store = store
        self.replica = replica
        self.ttl_s = ttl_s

    async def exchange(self, part: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Publish ``part`` (as this replica's) and read every live replica's, this one's
        included; None when the store failed (the caller shows this replica only)."""
        try:
            await self.store.put_snapshot(self.replica, _encoder.encode(part), self.ttl_s)
            raw = await self.store.snapshots()
        except Exception as exc:  # noqa: BLE001 - the store's failure degrades the page only
            log.warning("dashboard: the shared store failed: %s: %s", type(exc).__name__, exc)
            return None
        parts: list[dict[str, Any]] = []
        for data in raw:
            try:
                decoded = msgspec.json.decode(data)
            except msgspec.DecodeError:
                log.warning("dashboard: a replica's snapshot is not JSON; ignored")
                continue
            if isinstance(decoded, dict) and decoded.get("replica") != self.replica:
                parts.append(decoded)
        return [part, *parts]
