"""A lean asyncio client for ONE Redis (not a Cluster): the limiter's hot path.

redis-py's asyncio client spends most of a call's CPU on its connection pool, a timeout context,
its encoder and its parser. This one keeps a single persistent connection on which concurrent
callers pipeline naturally:

- a call encodes its RESP array, queues a future and writes: at once on an idle connection,
  else joined with the other writes of the loop iteration into one ``transport.write``. Redis
  answers in order, so replies (parsed by ``hiredis.Reader``, bulk strings decoded as UTF-8
  like redis-py's ``decode_responses``) are matched FIFO to the queued futures;
- an error reply raises :class:`RespError` (:class:`NoScriptError` for ``NOSCRIPT``);
- a call not answered within ``timeout_s`` declares the connection dead: every call waiting on it
  raises :class:`RespTimeoutError` (a :class:`TimeoutError`), the transport is aborted. One timer
  per connection watches the oldest call (deadlines are in FIFO order), so a call costs no timer;
- a lost connection fails every waiting call with :class:`RespConnectionError` (a
  :class:`ConnectionError`); the next call reconnects (one attempt shared by concurrent callers,
  bounded by ``timeout_s``, with AUTH and SELECT as the URL says). There are no retries: the
  caller decides what a failure means.

URLs: ``redis://[[user]:password@]host[:port][/db]`` and
``unix://[[user]:password@]/path/to.sock[?db=N&password=P]``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

Arg = bytes | str | int | float

_MORE = object()  # hiredis' "no complete reply yet" (None and False are replies)


class RespError(Exception):
    """Redis answered with an error reply (its message is the exception's)."""


class NoScriptError(RespError):
    """EVALSHA named a script this Redis does not have: EVAL it."""


class RespConnectionError(ConnectionError):
    """The connection failed, was lost or closed: the call may or may not have been applied."""


class RespTimeoutError(TimeoutError):
    """No reply within the timeout: the call may or may not have been applied."""


@dataclass(frozen=True)
class Address:
    """Where and how to connect: a TCP ``host``/``port`` or a unix socket ``path``."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    username: str | None = None
    password: str | None = None
    db: int = 0


def parse_url(url: str) -> Address:
    """The address of a ``redis://`` or ``unix://`` URL.

    Raises:
        ValueError: any other URL, or a bad port or db (naming the URL).
    """
    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if "password" in query:
            password = query["password"][0]
        db = int(query["db"][0]) if "db" in query else 0
        if parts.scheme == "redis" and parts.hostname:
            if parts.path not in ("", "/"):
                db = int(parts.path.lstrip("/"))
            port = parts.port or 6379
            return Address(parts.hostname, port, None, username, password, db)
        if parts.scheme == "unix" and parts.path:
            return Address(path=parts.path, username=username, password=password, db=db)
    except ValueError as exc:
        raise ValueError(f"not a Redis URL this client takes: {url!r} ({exc})") from None
    raise ValueError(f"not a Redis URL this client takes (redis:// or unix://): {url!r}")


def encode(args: tuple[Arg, ...]) -> bytes:
    """A command as a RESP array of bulk strings (floats as ``repr``, like redis-py).

    Raises:
        TypeError: an argument of another type (bools included: ambiguous).
    """
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        elif isinstance(arg, float):
            data = repr(arg).encode()
        else:
            raise TypeError(f"a Redis argument must be bytes, str, int or float, got {arg!r}")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Connection(asyncio.Protocol):
    """One connection: calls written in order, replies matched to them in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float, coalesce: bool) -> None:
        self.loop = loop
        self.timeout_s = timeout_s
        self.coalesce = coalesce
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(replyError=RespError, encoding="utf-8", notEnoughData=_MORE)
        self.pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.buffer: list[bytes] = []
        self.timer: asyncio.TimerHandle | None = None
        self.dead = False
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def call(self, payload: bytes) -> asyncio.Future[Any]:
        """Send one encoded command; the future gets its reply."""
        future = self.loop.create_future()
        if self.dead:  # it died between a connect and its caller's first call
            future.set_exception(RespConnectionError("the connection to Redis was lost"))
            return future
        deadline = self.loop.time() + self.timeout_s
        idle = not self.pending
        self.pending.append((future, deadline))
        if idle or not self.coalesce:
            # nothing in flight: no other call is likely this iteration, an extra one would cost
            if self.transport is not None:
                self.transport.write(payload)
        else:
            if not self.buffer:
                # busy: the calls of this loop iteration join one write (one syscall)
                self.loop.call_soon(self._flush)
            self.buffer.append(payload)
        if self.timer is None:
            self.timer = self.loop.call_at(deadline, self._check)
        return future

    def _flush(self) -> None:
        if self.dead or self.transport is None or not self.buffer:
            return
        data = self.buffer[0] if len(self.buffer) == 1 else b"".join(self.buffer)
        self.buffer.clear()
        self.transport.write(data)

    def _check(self) -> None:
        """The timer: fail everything if the oldest call is overdue, else watch it."""
        self.timer = None
        if not self.pending or self.dead:
            return
        deadline = self.pending[0][1]
        if self.loop.time() >= deadline:
            self.fail(RespTimeoutError, f"no reply from Redis within {self.timeout_s} s")
        else:
            self.timer = self.loop.call_at(deadline, self._check)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        while True:
            try:
                reply = self.reader.gets()
            except (hiredis.ProtocolError, UnicodeDecodeError) as exc:  # the stream is lost
                self.fail(RespConnectionError, f"unreadable reply from Redis: {exc!r}")
                return
            if reply is _MORE:
                return
            if not pending:
                self.fail(RespConnectionError, "a reply from Redis that no call awaits")
                return
            future = pending.popleft()[0]
            if future.done():  # its caller was cancelled: the reply is dropped
                continue
            if isinstance(reply, RespError):
                if reply.args and str(reply.args[0]).startswith("NOSCRIPT"):
                    reply = NoScriptError(*reply.args)
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RespConnectionError, f"the connection to Redis was lost ({exc!r})")
        if not self.lost.done():
            self.lost.set_result(None)

    def fail(self, kind: Callable[[str], Exception], message: str) -> None:
        """Declare the connection dead: fail every waiting call (each its own exception)."""
        self.dead = True
        self.buffer.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()  # whatever is unsent is void: its callers are told
        while self.pending:
            future = self.pending.popleft()[0]
            if not future.done():
                future.set_exception(kind(message))


class RespClient:
    """Commands to one Redis over one pipelined connection, opened on the first call.

    Args:
        url: ``redis://`` or ``unix://`` (see the module).
        timeout_s: the most a call waits for its reply (and a connect, AUTH and SELECT take).
        coalesce: while calls are in flight, join the writes of one loop iteration into one
            (else write each at once).

    Raises:
        ValueError: another URL.
    """

    def __init__(self, url: str, timeout_s: float, *, coalesce: bool = True) -> None:
        self.url = url
        self.coalesce = coalesce
        self.address = parse_url(url)
        self.timeout_s = float(timeout_s)
        a = self.address  # for messages: never the password
        self._where = a.path or f"{a.host}:{a.port}"
        self._conn: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self._closed = False

    def execute(self, *args: Arg) -> Awaitable[Any]:
        """Send a command; await its reply (str for bulk and status replies, int, list, None).

        Raises (when awaited):
            RespError: an error reply (:class:`NoScriptError` for NOSCRIPT).
            RespConnectionError, RespTimeoutError: no reply (see the module).
        """
        conn = self._conn
        if conn is not None and not conn.dead:
            return conn.call(encode(args))  # no coroutine frame on the common path
        return self._call_connecting(encode(args))

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Arg) -> Awaitable[Any]:
        """EVALSHA; raises :class:`NoScriptError` when the script is not cached there."""
        return self.execute("EVALSHA", sha, numkeys, *keys_and_args)

    def eval(self, source: str, numkeys: int, *keys_and_args: Arg) -> Awaitable[Any]:
        """EVAL (which also caches the script for EVALSHA)."""
        return self.execute("EVAL", source, numkeys, *keys_and_args)

    async def aclose(self) -> None:
        """Close the connection; waiting calls fail with :class:`RespConnectionError`, later
        ones too. Idempotent."""
        self._closed = True
        task, self._connecting = self._connecting, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fail(RespConnectionError, "the Redis client was closed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout_s):
                    await conn.lost  # connection_lost has run: nothing left on the loop

    async def _call_connecting(self, payload: bytes) -> Any:
        conn = await self._connection()
        return await conn.call(payload)

    async def _connection(self) -> _Connection:
        """The live connection, connecting once for all the callers waiting on it."""
        if self._closed:
            raise RespConnectionError("the Redis client was closed")
        conn = self._conn
        if conn is not None and not conn.dead:
            return conn
        task = self._connecting
        if task is None:
            task = self._connecting = asyncio.get_running_loop().create_task(
                self._connect(), name="resp-connect"
            )
            task.add_done_callback(self._connected)
        try:
            # a cancelled caller must not cancel the connect the others wait on
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise  # this caller is cancelled
            raise RespConnectionError("the Redis client was closed") from None  # by aclose

    def _connected(self, task: asyncio.Task[_Connection]) -> None:
        if self._connecting is task:
            self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._conn = task.result()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        a = self.address
        conn: _Connection | None = None

        def factory() -> _Connection:
            nonlocal conn
            conn = _Connection(loop, self.timeout_s, self.coalesce)
            return conn

        try:
            async with asyncio.timeout(self.timeout_s):
                if a.path is not None:
                    await loop.create_unix_connection(factory, a.path)
                else:
                    await loop.create_connection(factory, a.host, a.port)
                assert conn is not None
                hello: list[asyncio.Future[Any]] = []
                if a.password is not None:
                    auth = ("AUTH", a.username, a.password) if a.username else ("AUTH", a.password)
                    hello.append(conn.call(encode(auth)))
                if a.db:
                    hello.append(conn.call(encode(("SELECT", a.db))))
                for reply in hello:
                    await reply
        except BaseException as exc:
            if conn is not None:
                conn.fail(RespConnectionError, "the connect failed")
            if isinstance(exc, TimeoutError):
                raise RespTimeoutError(f"connecting to {self._where} timed out") from exc
            if isinstance(exc, OSError) and not isinstance(exc, RespConnectionError):
                raise RespConnectionError(f"cannot connect to {self._where}: {exc!r}") from exc
            raise
        return conn
