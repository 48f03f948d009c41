"""The live dashboard: ``GET /dashboard`` and its Server-Sent Events (docs/dashboard.md).

- :mod:`~gateway.dashboard.window`: rates and percentiles over a sliding window of readings;
- :mod:`~gateway.dashboard.snapshot`: one replica's numbers from its registry and live state;
- :mod:`~gateway.dashboard.live`: engines, budgets, alerts and GPU nodes, read per update;
- :mod:`~gateway.dashboard.view`: replicas' numbers added up, and what the page shows;
- :mod:`~gateway.dashboard.fleet`: the replicas' numbers shared through the control store;
- :mod:`~gateway.dashboard.feed`: the update loop, running only while a page is open;
- :mod:`~gateway.dashboard.access`: who may look (admin keys, the session cookie);
- :mod:`~gateway.dashboard.routes`: the routes, the page and its files (``static/``).
"""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler

from gateway.dashboard.access import Authorize, DashboardAccess
from gateway.dashboard.feed import DashboardFeed
from gateway.dashboard.fleet import FleetBoard, SharesSnapshots, replica_name
from gateway.dashboard.routes import build_dashboard_routes
from gateway.state import GatewayState

__all__ = ["DashboardFeed", "build_dashboard"]


def build_dashboard(
    state: GatewayState, authorize: Authorize
) -> tuple[DashboardFeed, list[HTTPRouteHandler]]:
    """The dashboard's feed and routes for ``state`` (no routes when ``dashboard.enabled`` is
    off); the feed shares the fleet's numbers when ``control.store`` :class:`SharesSnapshots`
    and ``dashboard.fleet`` is on."""
    settings = state.settings.dashboard
    store = state.control_store
    board = None
    if settings.fleet and isinstance(store, SharesSnapshots):
        board = FleetBoard(store, replica_name(), settings.fleet_ttl_s)
    feed = DashboardFeed(state, board)
    if not settings.enabled:
        return feed, []
    access = DashboardAccess(state.settings, authorize, state.auth.enabled)
    return feed, build_dashboard_routes(feed, access)
