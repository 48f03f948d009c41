"""The node agent's HTTP face: ``/metrics`` (Prometheus text), ``/status`` (JSON) and
``/health``, served by aiohttp's small server beside the agent's loops (no gateway routes, no
authentication: bind it to an address only the monitoring network reaches)."""

from __future__ import annotations

import json

from aiohttp import web

from gateway.node.agent import NodeAgent
from gateway.node.dcgm import CONTENT_TYPE
from gateway.node.status import node_metrics, node_status


def node_app(agent: NodeAgent) -> web.Application:
    """The agent's routes."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=node_metrics(agent), headers={"Content-Type": CONTENT_TYPE})

    async def status(_: web.Request) -> web.Response:
        return web.Response(text=json.dumps(node_status(agent)), content_type="application/json")

    async def health(_: web.Request) -> web.Response:
        return web.Response(text='{"status":"ok"}', content_type="application/json")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    app.router.add_get("/health", health)
    return app


async def serve(agent: NodeAgent, host: str, port: int) -> web.AppRunner:
    """Start serving; the caller cleans the returned runner up."""
    runner = web.AppRunner(node_app(agent), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
