"""Budget alerts: the dispatcher and the built-in sinks, against a real aiohttp server and a real
redis-server on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from gateway_usage.alert_sinks import LogAlertSink, RedisAlertSink, WebhookAlertSink

from gateway.background import Background, Spawn
from gateway.governance.alerts import AlertDispatcher
from gateway.governance.limiter import Alert, Rule
from gateway.governance.sinks import AlertSink
from tests.support.redis_server import running_redis

pytestmark = pytest.mark.anyio

RULE = Rule("tenant:acme", "budget", 10_000_000_000, "month", (0.8, 1.0))
ALERT = Alert(RULE, "2026-12", 0.8, spent=8_000_000_001, limit=10_000_000_000)
CONTEXT = {"tenant": "acme", "key_id": None, "at": 1_764_547_200.0}


class Webhook:
    """A real HTTP server on a free loopback port that keeps what is POSTed to it."""

    def __init__(self, status: int = 200, hold: asyncio.Event | None = None) -> None:
        self.received: list[tuple[dict[str, str], Any]] = []
        self.status = status
        self.hold = hold
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if self.hold is not None:
            await self.hold.wait()
        self.received.append((dict(request.headers), await request.json()))
        return web.Response(status=self.status)


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        hook.url = f"http://127.0.0.1:{port}/hook"
        yield hook
    finally:
        if hook.hold is not None:
            hook.hold.set()
        await runner.cleanup()


class Broken:
    async def send(self, alert: Alert, context: dict[str, Any]) -> None:
        raise ConnectionError("nowhere to send")

    async def aclose(self) -> None:
        pass


async def until(predicate: Any, tries: int = 2000) -> None:
    """Wait (bounded: about ten seconds) for ``predicate()`` to hold."""
    for _ in range(tries):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


def test_the_sinks_satisfy_the_contract() -> None:
    for sink in (LogAlertSink(), WebhookAlertSink(url="http://127.0.0.1:1/")):
        assert isinstance(sink, AlertSink)
    with pytest.raises(ValueError, match="url"):
        WebhookAlertSink(url="ftp://example")
    with pytest.raises(TypeError, match="headers"):
        WebhookAlertSink(url="http://127.0.0.1:1/", headers={"x": 1})  # type: ignore[dict-item]


async def test_the_log_sink_writes_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    sink = LogAlertSink()
    with caplog.at_level(logging.WARNING, logger="gateway.alerts"):
        await sink.send(ALERT, CONTEXT)
    (line,) = [r for r in caplog.records if r.name == "gateway.alerts"]
    assert line.levelno == logging.WARNING
    text = line.getMessage()
    for part in ("tenant:acme", "80%", "month", "$8.000000", "$10.000000"):
        assert part in text
    await sink.aclose()


async def test_the_webhook_sink_posts_the_alert_as_json(webhook: Webhook) -> None:
    sink = WebhookAlertSink(url=webhook.url, headers={"x-secret": "s3"})
    await sink.send(ALERT, CONTEXT)
    await sink.aclose()
    ((headers, body),) = webhook.received
    assert headers["x-secret"] == "s3"
    assert headers["Content-Type"] == "application/json"
    assert body == {
        "type": "budget_alert",
        "scope": "tenant:acme",
        "window": "month",
        "window_id": "2026-12",
        "threshold": 0.8,
        "spent_usd": 8.000000001,
        "limit_usd": 10.0,
        "spent_nanos": 8_000_000_001,
        "limit_nanos": 10_000_000_000,
        "tenant": "acme",
        "key_id": None,
        "at": 1_764_547_200.0,
    }


async def test_the_webhook_sink_raises_on_an_error_status(webhook: Webhook) -> None:
    webhook.status = 500
    sink = WebhookAlertSink(url=webhook.url)
    with pytest.raises(RuntimeError, match="500"):
        await sink.send(ALERT, CONTEXT)
    await sink.aclose()


async def test_the_redis_sink_publishes_on_its_channel() -> None:
    with running_redis() as server:
        listener = aioredis.Redis.from_url(server.url, decode_responses=True)
        pubsub = listener.pubsub()
        await pubsub.subscribe("alerts:test")
        sink = RedisAlertSink(url=server.url, channel="alerts:test")
        try:
            await sink.send(ALERT, CONTEXT)
            message = None
            async with asyncio.timeout(10):
                while message is None or message["type"] != "message":
                    message = await pubsub.get_message(timeout=1.0)
            body = json.loads(message["data"])
            assert (body["type"], body["scope"], body["threshold"]) == (
                "budget_alert",
                "tenant:acme",
                0.8,
            )
        finally:
            await sink.aclose()
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await listener.aclose()


async def test_the_dispatcher_sends_to_every_sink_despite_a_broken_one(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    hook = WebhookAlertSink(url=webhook.url)
    dispatcher = AlertDispatcher([("broken", Broken()), ("webhook", hook), ("log", LogAlertSink())])
    dispatcher.alert(ALERT, CONTEXT)  # returns at once; the sends run in the background
    await until(lambda: dispatcher.in_flight == 0)
    assert len(webhook.received) == 1
    assert (dispatcher.sent, dispatcher.failed) == (2, 1)
    assert "alert sink `broken` failed" in caplog.text
    await dispatcher.aclose()


async def test_close_waits_for_sends_in_flight(webhook: Webhook) -> None:
    webhook.hold = asyncio.Event()
    dispatcher = AlertDispatcher([("webhook", WebhookAlertSink(url=webhook.url))])
    dispatcher.alert(ALERT, CONTEXT)
    assert dispatcher.in_flight == 1
    closing = asyncio.ensure_future(dispatcher.aclose())
    await asyncio.sleep(0.05)
    assert not closing.done()  # still waiting for the held delivery
    webhook.hold.set()
    await closing
    assert len(webhook.received) == 1
    dispatcher.alert(ALERT, CONTEXT)  # after shutdown: not sent, not raised
    assert dispatcher.in_flight == 0


async def test_close_gives_up_on_a_hung_sink(webhook: Webhook) -> None:
    webhook.hold = asyncio.Event()
    dispatcher = AlertDispatcher(
        [("webhook", WebhookAlertSink(url=webhook.url, timeout_s=30))], drain_s=0.05
    )
    dispatcher.alert(ALERT, CONTEXT)
    await dispatcher.aclose()  # bounded by drain_s; the send is cancelled
    assert webhook.received == []


async def test_the_dispatcher_runs_on_the_apps_background(spawn: Spawn, webhook: Webhook) -> None:
    dispatcher = AlertDispatcher([("webhook", WebhookAlertSink(url=webhook.url))], spawn=spawn)
    dispatcher.alert(ALERT, CONTEXT)
    await until(lambda: len(webhook.received) == 1)
    await dispatcher.aclose()


async def test_an_alert_that_cannot_be_scheduled_is_counted_not_raised() -> None:
    background = Background()  # never entered: spawn refuses
    dispatcher = AlertDispatcher([("log", LogAlertSink())], spawn=background.spawn)
    dispatcher.alert(ALERT, CONTEXT)
    assert (dispatcher.in_flight, dispatcher.failed) == (0, 1)
    await dispatcher.aclose()
