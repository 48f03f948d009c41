"""Serving: uvicorn (uvloop + httptools) in the foreground, or in a background thread.

Workers are separate processes that rebuild the app from the settings the parent validated,
passed through the ``GATEWAY_SETTINGS_JSON`` environment variable. With more than one worker,
``PROMETHEUS_MULTIPROC_DIR`` points them at shared metric files so ``/metrics`` reports totals.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from typing import Any

import msgspec
import uvicorn

from gateway.settings import Settings

SETTINGS_ENV = "GATEWAY_SETTINGS_JSON"


def app_from_env() -> Any:
    """uvicorn factory for worker processes: the app for the settings in the environment."""
    from gateway.app import create_app

    settings = msgspec.json.decode(os.environ[SETTINGS_ENV], type=Settings)
    return create_app(settings)


def serve_forever(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; then stop accepting and let in-flight work finish.

    In-flight requests and streams get ``server.shutdown_grace_s`` seconds before they are cut.
    """
    server = settings.server
    os.environ[SETTINGS_ENV] = msgspec.json.encode(settings).decode()
    metrics_dir = None
    if server.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            "gateway.server:app_from_env",
            factory=True,
            host=server.host,
            port=server.port,
            workers=server.workers,
            timeout_graceful_shutdown=round(server.shutdown_grace_s) or None,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level="warning",
            server_header=False,
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


class BackgroundServer:
    """An ASGI app served by uvicorn on a daemon thread with its own event loop.

    Used for the embedded simulator and by tests: real sockets on loopback, stopped by ``stop``.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="on",
            access_log=False,
            log_level="warning",
            loop="asyncio",
            http="httptools",
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, daemon=True, name=f"server-{host}:{port}"
        )
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> BackgroundServer:
        """Start serving; return once the socket accepts connections.

        Raises:
            RuntimeError: the server did not start within ``timeout_s``.
        """
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.host}:{self.port} failed to start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the server to exit and wait for its thread."""
        self._server.should_exit = True
        self._thread.join(timeout_s)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
