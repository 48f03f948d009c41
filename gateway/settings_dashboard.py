"""The ``dashboard:`` config section: the live page at ``/dashboard`` (``docs/dashboard.md``).

The page is for the master key and tenant admin keys. With no key configured it is closed,
unless ``allow_unauthenticated_loopback`` opens it to loopback callers of a gateway bound to a
loopback address (a developer's box); never on any other bind. Unknown keys are rejected.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

import msgspec

from gateway.settings_base import PositiveFloat, _Config

Interval = Annotated[float, msgspec.Meta(ge=0.2, le=10)]
Span = Annotated[float, msgspec.Meta(ge=5, le=3600)]


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address, without DNS."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class DashboardSettings(_Config):
    """The live dashboard.

    Attributes:
        enabled: serve ``/dashboard`` at all (off: 404).
        allow_unauthenticated_loopback: with no ``auth.master_key``, open the page to
            loopback callers when the gateway binds a loopback address (for development).
        update_interval_s: one update of the page per this many seconds.
        rate_window_s: request rates, error and cache-hit rates, tokens per second over this.
        quantile_window_s: latency and TTFT percentiles from the histograms over this.
        history_s: how far back the sparklines reach.
        session_ttl_s: how long a login through the form lasts.
        node_agents: the node agents' base URLs, whose ``/status`` the GPU section reads.
        fleet: with a ``control.store`` configured, publish this replica's numbers there and
            show the fleet's (every replica that published within ``fleet_ttl_s``).
        fleet_ttl_s: a replica's published numbers count this long.
    """

    enabled: bool = True
    allow_unauthenticated_loopback: bool = False
    update_interval_s: Interval = 1.0
    rate_window_s: Span = 10.0
    quantile_window_s: Span = 60.0
    history_s: Span = 300.0
    session_ttl_s: PositiveFloat = 8 * 3600.0
    node_agents: list[str] = msgspec.field(default_factory=list)
    fleet: bool = True
    fleet_ttl_s: PositiveFloat = 10.0

    def problems(self, host: str) -> list[tuple[str, str]]:
        """Cross-field rules, as ``(field, problem)``; ``host`` is ``server.host``."""
        found: list[tuple[str, str]] = []
        if self.allow_unauthenticated_loopback and not is_loopback_host(host):
            found.append(
                (
                    "allow_unauthenticated_loopback",
                    f"only for a loopback bind; server.host is `{host}`",
                )
            )
        for i, url in enumerate(self.node_agents):
            if not url.startswith(("http://", "https://")):
                found.append((f"node_agents[{i}]", f"expected an http(s):// URL, got `{url}`"))
        if self.fleet_ttl_s <= self.update_interval_s:
            found.append(("fleet_ttl_s", "must be longer than update_interval_s"))
        return found
