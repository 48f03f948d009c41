"""Admission control end to end: a gateway served for real in front of a simulator held at a
gate (so the group stays saturated while requests arrive), virtual keys with priorities through
the admin API, the official OpenAI SDK and plain HTTP as clients.

- Saturated, requests wait in the gateway (the engine sees one at a time) and are released in
  order as capacity frees; a stream holds its place until its end.
- Priorities jump the queue; a request may not ask for more than its key allows.
- Deadlines give 429 ``queue_timeout`` with ``Retry-After``; a full queue refuses at once; a
  client that goes away leaves the queue.
- ``fair_share``: a light tenant's requests go ahead of a heavy tenant's backlog.
- The engine-metric scraper's saturation signal holds requests in the gateway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.servers import (
    GatewayServer,
    Sim,
    eventually,
    group,
    http_json,
    running_gateway,
    running_sim,
)

pytestmark = pytest.mark.slow

MASTER = "sk-master-scheduling"
ADMIN = {"authorization": f"Bearer {MASTER}"}


@pytest.fixture(autouse=True)
def _pepper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_KEY_PEPPER", "pepper-of-the-scheduling-tests")


def config(sim: Sim, tmp_path: Path, **scheduling: Any) -> dict[str, Any]:
    return {
        "auth": {"master_key": MASTER},
        "governance": {"data_dir": str(tmp_path)},
        "models": [group("chat", sim.url, scheduling={"max_in_flight": 1, **scheduling})],
    }


def chat_body(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {
        "model": "chat",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 4,
        **extra,
    }


def new_key(gw: GatewayServer, **fields: Any) -> str:
    status, _, data = http_json("POST", f"{gw.url}/admin/keys", fields, ADMIN)
    assert status == 201, data
    key: str = data["key"]
    return key


def queues(gw: GatewayServer) -> dict[str, Any]:
    status, _, data = http_json("GET", f"{gw.url}/admin/queues", headers=ADMIN)
    assert status == 200, data
    found: dict[str, Any] = data["queues"]["chat"]
    return found


class Clients:
    """Requests sent from threads; the order in which they finished."""

    def __init__(self, gw: GatewayServer) -> None:
        self.gw = gw
        self.pool = ThreadPoolExecutor(16)
        self.finished: list[str] = []
        self._lock = threading.Lock()

    def send(
        self,
        label: str,
        key: str = MASTER,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> Future[tuple[int, Any, Any]]:
        def call() -> tuple[int, Any, Any]:
            answer = http_json(
                "POST",
                f"{self.gw.url}/v1/chat/completions",
                chat_body(label, **extra),
                {"authorization": f"Bearer {key}", **(headers or {})},
            )
            with self._lock:
                self.finished.append(label)
            return answer

        return self.pool.submit(call)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Callable[..., tuple[Sim, GatewayServer, Clients]]]:
    """Start a simulator and a gateway (``scheduling`` options as keyword arguments)."""
    stack: list[Any] = []

    def start(**scheduling: Any) -> tuple[Sim, GatewayServer, Clients]:
        sim_cm = running_sim()
        sim = sim_cm.__enter__()
        stack.append(sim_cm)
        gw_cm = running_gateway(config(sim, tmp_path, **scheduling))
        gw = gw_cm.__enter__()
        stack.append(gw_cm)
        clients = Clients(gw)
        stack.append(clients)
        return sim, gw, clients

    yield start
    for item in reversed(stack):
        if isinstance(item, Clients):
            item.close()
        else:
            item.__exit__(None, None, None)


def arrivals(sim: Sim) -> list[str]:
    """The requests the engine received, in order (their prompts: the tests' labels)."""
    return [
        r["body"]["messages"][0]["content"]
        for r in sim.stats()["recent"]
        if r["path"].endswith("/chat/completions")
    ]


def wait_queued(gw: GatewayServer, count: int) -> dict[str, Any]:
    assert eventually(lambda: queues(gw)["queued"] == count), queues(gw)
    return queues(gw)


def test_saturated_requests_wait_in_the_gateway_and_go_in_order(
    held: Callable[..., tuple[Sim, GatewayServer, Clients]],
) -> None:
    sim, gw, clients = held()
    with sim.gate():
        first = clients.send("first")
        sim.wait_held(1)
        later = []
        for label in ("a", "b", "c"):
            later.append(clients.send(label))
            wait_queued(gw, len(later))  # one at a time: their arrival order is known
        snapshot = queues(gw)
        assert snapshot["admitted"] == 1
        assert snapshot["saturated"] is True
        assert sim.stats()["held"] == 1  # the engine sees only the admitted one
    assert [f.result(timeout=30)[0] for f in (first, *later)] == [200] * 4
    assert arrivals(sim) == ["first", "a", "b", "c"]
    after = queues(gw)
    assert (after["admitted"], after["queued"]) == (0, 0)


def test_a_higher_priority_jumps_the_queue_within_what_its_key_allows(
    held: Callable[..., tuple[Sim, GatewayServer, Clients]],
) -> None:
    sim, gw, clients = held(scheduler={"backend": "priority"})
    low = new_key(gw, priority=0)
    high = new_key(gw, priority=5, max_priority=9)
    with sim.gate():
        first = clients.send("first", low)
        sim.wait_held(1)
        waiting = [clients.send("low-1", low)]
        wait_queued(gw, 1)
        waiting.append(clients.send("low-2", low))
        wait_queued(gw, 2)
        waiting.append(clients.send("high", high))
        wait_queued(gw, 3)
        waiting.append(clients.send("higher", high, priority=9))
        wait_queued(gw, 4)
        waiting.append(clients.send("lowered", high, {"x-gateway-priority": "1"}))
        wait_queued(gw, 5)
        assert queues(gw)["waiting"] == {"0": 2, "1": 1, "5": 1, "9": 1}
        too_high = http_json(
            "POST",
            f"{gw.url}/v1/chat/completions",
            chat_body("x", priority=10),
            {"authorization": f"Bearer {high}"},
        )
        assert too_high[0] == 400
        assert too_high[2]["error"]["param"] == "priority"
    assert all(f.result(timeout=30)[0] == 200 for f in (first, *waiting))
    assert arrivals(sim) == ["first", "higher", "high", "lowered", "low-1", "low-2"]
    # The gateway's own field goes no further: the engine was not sent `priority`.
    bodies = [r["body"] for r in sim.stats()["recent"] if r["path"].endswith("/completions")]
    assert not any("priority" in body for body in bodies)


def test_a_deadline_gives_429_queue_timeout_and_a_full_queue_refuses_at_once(
    held: Callable[..., tuple[Sim, GatewayServer, Clients]],
) -> None:
    sim, gw, clients = held(queue_timeout_s=0.5, max_queue=1)
    with sim.gate():
        first = clients.send("first")
        sim.wait_held(1)
        waiter = clients.send("waiter")
        wait_queued(gw, 1)
        started = time.monotonic()
        refused = http_json("POST", f"{gw.url}/v1/chat/completions", chat_body("full"), ADMIN)
        assert time.monotonic() - started < 0.4  # at once, not after the deadline
        assert refused[0] == 429
        assert refused[2]["error"]["code"] == "queue_full"
        status, headers, body = waiter.result(timeout=10)
        assert status == 429
        assert body["error"]["code"] == "queue_timeout"
        assert int({k.lower(): v for k, v in headers.items()}["retry-after"]) >= 1
        assert "chat" in body["error"]["message"]
        assert queues(gw)["queued"] == 0
    assert first.result(timeout=30)[0] == 200


def test_a_client_that_leaves_leaves_the_queue(
    held: Callable[..., tuple[Sim, GatewayServer, Clients]],
) -> None:
    sim, gw, clients = held(queue_timeout_s=30)
    with sim.gate():
        first = clients.send("first")
        sim.wait_held(1)
        # A client with a 0.5 s timeout: it gives up and closes its connection.
        gone = clients.pool.submit(
            http_json, "POST", f"{gw.url}/v1/chat/completions", chat_body("gone"), ADMIN, 0.5
        )
        wait_queued(gw, 1)
        with pytest.raises(TimeoutError):  # the client's own timeout: it gave up
            gone.result(timeout=10)
        assert eventually(lambda: queues(gw)["queued"] == 0)
    assert first.result(timeout=30)[0] == 200


def test_fair_share_serves_the_light_tenant_ahead_of_a_heavy_backlog(
    held: Callable[..., tuple[Sim, GatewayServer, Clients]],
) -> None:
    sim, gw, clients = held(scheduler={"backend": "fair_share"}, queue_timeout_s=60)
    for tenant in ("heavy", "light"):
        assert http_json("POST", f"{gw.url}/admin/tenants", {"name": tenant}, ADMIN)[0] == 201
    heavy, light = new_key(gw, tenant="heavy"), new_key(gw, tenant="light")
    with sim.gate():
        first = clients.send("heavy-0", heavy)
        sim.wait_held(1)
        sent = [first]
        for i in range(1, 9):
            sent.append(clients.send(f"heavy-{i}", heavy))
            wait_queued(gw, i)
        for i in range(2):
            sent.append(clients.send(f"light-{i}", light))
            wait_queued(gw, 9 + i)
    assert all(f.result(timeout=60)[0] == 200 for f in sent)
    order = arrivals(sim)
    # The heavy tenant had one admitted and a backlog of eight; the light one arrived last and
    # still went first: its counter was lifted to the heavy one's, not above it.
    assert order.index("light-0") <= 3
    assert order.index("light-1") <= 5


def test_the_headroom_lets_a_light_tenant_start_at_once_while_a_heavy_one_waits(
    held: Callable[..., tuple[Sim, GatewayServer, Clients]],
) -> None:
    sim, gw, clients = held(
        scheduler={"backend": "fair_share"}, max_in_flight=3, headroom=1, queue_timeout_s=60
    )
    for tenant in ("heavy", "light"):
        assert http_json("POST", f"{gw.url}/admin/tenants", {"name": tenant}, ADMIN)[0] == 201
    heavy, light = new_key(gw, tenant="heavy"), new_key(gw, tenant="light")
    with sim.gate():
        sent = [clients.send("heavy-0", heavy), clients.send("heavy-1", heavy)]
        sim.wait_held(2)  # 3 - 1 slots: the heavy tenant's share is full
        for i in (2, 3):
            sent.append(clients.send(f"heavy-{i}", heavy))
            wait_queued(gw, i - 1)
        sent.append(clients.send("light-0", light))
        sim.wait_held(3)  # straight to the engine through the headroom, past the backlog
        snapshot = queues(gw)
        assert (snapshot["admitted"], snapshot["queued"], snapshot["headroom"]) == (3, 2, 1)
        sent.append(clients.send("light-1", light))
        wait_queued(gw, 3)  # the headroom is taken: now it waits like anyone
    assert all(f.result(timeout=60)[0] == 200 for f in sent)
    order = arrivals(sim)
    assert set(order[:2]) == {"heavy-0", "heavy-1"}
    assert order[2] == "light-0"  # ahead of the backlog
    assert len(order) == 6


def test_the_engines_own_queue_saturates_the_group(tmp_path: Path) -> None:
    # One sequence fits the engine's batch; the gateway admits while the engine's waiting
    # queue is short, then holds the rest itself.
    with running_sim(max_num_seqs=1, step_base_ms=5.0) as sim:
        settings = {
            "auth": {"master_key": MASTER},
            "models": [
                group("chat", sim.url, scheduling={"max_engine_waiting": 1, "queue_timeout_s": 30})
            ],
        }
        with running_gateway(settings) as gw:
            clients = Clients(gw)
            try:
                with sim.gate(after_tokens=1):
                    # One runs (held after its first token), two queue in the engine.
                    sent = [clients.send(f"r{i}") for i in range(3)]
                    # The scraper's next reading shows the engine's queue: saturated.
                    assert eventually(lambda: queues(gw)["saturated"], timeout_s=10)
                    sent += [clients.send(f"r{i}") for i in range(3, 8)]
                    snapshot = wait_queued(gw, 5)
                    assert snapshot["admitted"] == 3  # the rest wait in the gateway
                    assert len(arrivals(sim)) == 3  # the engine was sent three
                assert all(f.result(timeout=60)[0] == 200 for f in sent)
            finally:
                clients.close()


def test_a_stream_holds_its_place_until_its_end(
    held: Callable[..., tuple[Sim, GatewayServer, Clients]],
) -> None:
    sim, gw, clients = held()
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=MASTER, max_retries=0)
    with sim.gate(after_tokens=1):
        stream = client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "streamed"}], stream=True
        )
        first = next(iter(stream))  # its first token came: the stream is open, and held
        assert first.choices[0].delta is not None
        waiter = clients.send("after")
        snapshot = wait_queued(gw, 1)
        assert snapshot["admitted"] == 1
    rest = list(stream)  # the gate opened: the stream ends, and its place goes to the waiter
    assert rest[-1].choices[0].finish_reason is not None or rest[-1].usage is not None
    assert waiter.result(timeout=30)[0] == 200
    assert arrivals(sim) == ["streamed", "after"]
