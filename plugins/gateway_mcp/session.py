"""One open MCP client, held by a task of its own.

The SDK's ``Client`` is an async context manager built on anyio task groups and cancel scopes,
which must be entered and exited by the same task. A tool source is used by many tasks: the
gateway's start-up lists its tools, request tasks call them, the shutdown closes it. So each
connection gets an *owner* task that enters the client, waits until it is told to stop, and
exits it; every other task only sends requests through the entered client (which the SDK
allows from any task: requests are messages on memory streams). Closing is a signal to the
owner, never an ``__aexit__`` from a foreign task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from mcp import Client

from gateway.errors import ServiceUnavailableError

log = logging.getLogger("gateway.tools.mcp")

OpenClient = Callable[[], AbstractAsyncContextManager[Client]]
"""Builds the (not yet entered) client of one connection."""

# How long a close waits for the owner to wind the connection down (the stdio transport's own
# shutdown is bounded at a few seconds: close stdin, SIGTERM, SIGKILL) before cancelling it.
_CLOSE_WAIT_S = 10.0


def describe(error: BaseException) -> str:
    """``error`` as one line for a log or a model: the leaves of an exception group, joined."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(describe(leaf) for leaf in error.exceptions)
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class McpSession:
    """An MCP connection whose owner task starts connecting as soon as it is created.

    Must be created inside a running event loop. The connect (spawn or HTTP handshake) is
    bounded by ``connect_timeout_s`` whoever waits for it: a caller that gives up waiting does
    not abandon the connect, so the next caller can still use it.

    Args:
        open_client: builds the client to enter.
        label: names the server in logs and errors.
        connect_timeout_s: how long the connect may take before the owner gives up.
    """

    def __init__(self, open_client: OpenClient, *, label: str, connect_timeout_s: float) -> None:
        self._open_client = open_client
        self._label = label
        self._client: Client | None = None
        self._failure: BaseException | None = None
        self._ready = asyncio.Event()  # set once connected, or once connecting failed
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self._own(), name=f"mcp session {label}")
        self._give_up = loop.call_later(
            connect_timeout_s, self._connect_timed_out, connect_timeout_s
        )

    @property
    def usable(self) -> bool:
        """Connecting or connected, and neither failed nor closing."""
        return self._failure is None and not self._stop.is_set() and not self.task.done()

    async def client(self) -> Client:
        """The connected client, once the connect has finished.

        Raises:
            ServiceUnavailableError: the connect failed, timed out, or the session was closed.
        """
        await self._ready.wait()
        if self._client is None:
            reason = describe(self._failure) if self._failure is not None else "closed"
            raise ServiceUnavailableError(f"MCP server {self._label} is unavailable: {reason}")
        return self._client

    async def close(self) -> None:
        """Stop the owner and wait for it to close the client (and end a stdio subprocess).

        Idempotent; also right when the connection already failed or the server died.
        """
        self._stop.set()
        self._give_up.cancel()
        if not self._ready.is_set():
            # Still connecting: nothing to close gracefully, the cancel unwinds the connect.
            self.task.cancel()
        _, pending = await asyncio.wait({self.task}, timeout=_CLOSE_WAIT_S)
        if pending:
            log.warning(
                "MCP server %s did not close in %.0f s; cancelled", self._label, _CLOSE_WAIT_S
            )
            self.task.cancel()
            await asyncio.wait({self.task})

    def _connect_timed_out(self, timeout_s: float) -> None:
        if not self._ready.is_set():
            self._failure = TimeoutError(f"no answer within {timeout_s:g} s")
            self.task.cancel()

    async def _own(self) -> None:
        try:
            async with self._open_client() as client:
                self._give_up.cancel()
                self._client = client
                self._ready.set()
                await self._stop.wait()
        # The SDK raises exception groups from its task groups, and transport errors of
        # several libraries (OSError for a spawn, httpx2 errors): all mean "not reachable".
        except Exception as error:  # noqa: BLE001 - kept as the failure callers are told
            if self._ready.is_set():
                # Closing a connection to a server that died fails too; nothing to report.
                log.debug("MCP server %s closed with %s", self._label, describe(error))
            else:
                self._failure = error
                log.warning("MCP server %s: connect failed: %s", self._label, describe(error))
        finally:
            self._client = None
            self._ready.set()
