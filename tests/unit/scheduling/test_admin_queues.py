"""``GET /admin/queues`` over real HTTP: the master key only, every group's admission state."""

from __future__ import annotations

from gateway.plugins import Registries
from gateway.scheduling.admission import Admissions
from gateway.testing import plugin_manager
from tests.support.servers import http_json, running_gateway
from tests.unit.scheduling.test_admission import Fifo

MASTER = {"authorization": "Bearer sk-master"}


def test_the_queues_route_shows_each_scheduled_group_to_the_master_key_only() -> None:
    config = {
        "auth": {"master_key": "sk-master"},
        "models": [
            {"name": "plain", "backends": [{"provider": "fake", "name": "p"}]},
            {
                "name": "chat",
                "backends": [{"provider": "fake", "name": "c0"}, {"provider": "fake"}],
                "scheduling": {"max_in_flight": 3},
            },
        ],
    }
    with running_gateway(config, plugin_manager=plugin_manager()) as gw:
        status, _, body = http_json("GET", f"{gw.url}/admin/queues", headers=MASTER)
        assert status == 200
        assert set(body["queues"]) == {"chat"}
        chat = body["queues"]["chat"]
        assert chat["capacity"] == 6
        assert chat["admitted"] == 0
        assert chat["saturated"] is False
        assert chat["waiting"] == {}
        assert chat["tickets"] == []

        assert http_json("GET", f"{gw.url}/admin/queues")[0] == 401
        other = {"authorization": "Bearer sk-not-the-master"}
        assert http_json("GET", f"{gw.url}/admin/queues", headers=other)[0] == 401


def test_without_a_scheduled_group_there_are_no_queues() -> None:
    config = {
        "auth": {"master_key": "sk-master"},
        "models": [{"name": "plain", "backends": [{"provider": "fake", "name": "p"}]}],
    }
    with running_gateway(config, plugin_manager=plugin_manager()) as gw:
        assert gw.state.admissions is None  # nothing built, nothing paid on the request path
        status, _, body = http_json("GET", f"{gw.url}/admin/queues", headers=MASTER)
        assert (status, body) == (200, {"queues": {}})
        registries = Registries()
        registries.schedulers.add("test", "fifo", Fifo)
        gw.state.admissions = Admissions.build(gw.state.catalog, registries.schedulers, "test")
        status, _, body = http_json("GET", f"{gw.url}/admin/queues", headers=MASTER)
        assert (status, body) == (200, {"queues": {}})
