"""The dashboard over HTTP: who may open it, the session cookie, live numbers in the event
stream, and fleet numbers from two replicas sharing a control store.

Real parts: simulators and gateways served on loopback, a SQLite key store in ``tmp_path``,
a directory control store shared by two gateways.
"""

from __future__ import annotations

import http.client
import urllib.request
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from tests.support.dashboard import MASTER, dashboard_config, read_updates, wait_for_update
from tests.support.servers import (
    GatewayServer,
    Sim,
    eventually,
    group,
    http_json,
    running_gateway,
)

BEARER = {"authorization": f"Bearer {MASTER}"}


@pytest.fixture(autouse=True)
def _pepper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_KEY_PEPPER", "pepper-for-the-dashboard-tests")


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def post_form(
    url: str, fields: dict[str, str], extra: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    """A form POST that does not follow redirects (the 303 and its cookie are the answer)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    body = urlencode(fields)
    headers = {"content-type": "application/x-www-form-urlencoded", **(extra or {})}
    connection.request("POST", parts.path, body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def chat(gw: GatewayServer, key: str = MASTER) -> int:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    return http_json(
        "POST", f"{gw.url}/v1/chat/completions", body, {"authorization": f"Bearer {key}"}
    )[0]


def test_no_or_bad_credentials_get_401_and_a_user_key_403(sim: Sim, tmp_path: Path) -> None:
    config = dashboard_config(tmp_path, sim.url)
    config["auth"]["api_keys"] = ["sk-plain-user"]
    with running_gateway(config) as gw:
        status, headers, body = get(f"{gw.url}/dashboard")
        assert status == 401
        assert headers["content-type"].startswith("text/html")
        assert b'action="/dashboard/login"' in body
        assert get(f"{gw.url}/dashboard", {"authorization": "Bearer wrong"})[0] == 401
        assert get(f"{gw.url}/dashboard/events")[0] == 401
        assert get(f"{gw.url}/dashboard/events", {"authorization": "Bearer wrong"})[0] == 401
        forged = {"cookie": "gateway_dashboard=eyJ4IjoxfQ.AAAA"}
        assert get(f"{gw.url}/dashboard/events", forged)[0] == 401
        assert (
            get(f"{gw.url}/dashboard/events", {"authorization": "Bearer sk-plain-user"})[0] == 403
        )
        status, headers, _ = get(f"{gw.url}/dashboard", BEARER)
        assert status == 200
        assert "default-src 'none'" in headers["content-security-policy"]


def test_the_login_form_sets_an_httponly_strict_cookie_without_the_key(
    sim: Sim, tmp_path: Path
) -> None:
    with running_gateway(dashboard_config(tmp_path, sim.url)) as gw:
        refused = post_form(f"{gw.url}/dashboard/login", {"key": "sk-wrong"})
        assert refused.status == 401
        assert refused.getheader("set-cookie") is None
        answer = post_form(f"{gw.url}/dashboard/login", {"key": MASTER})
        assert answer.status == 303
        assert answer.getheader("location") == "/dashboard"
        cookie = answer.getheader("set-cookie") or ""
        assert MASTER not in cookie
        attributes = [a.strip().lower() for a in cookie.split(";")]
        assert "httponly" in attributes
        assert "samesite=strict" in attributes
        assert "path=/dashboard" in attributes
        session = cookie.split(";", 1)[0]
        assert get(f"{gw.url}/dashboard", {"cookie": session})[0] == 200
        # a form posted from another site (login CSRF) is refused, whatever the key
        for foreign in ({"sec-fetch-site": "cross-site"}, {"origin": "http://evil.example"}):
            forged = post_form(f"{gw.url}/dashboard/login", {"key": MASTER}, foreign)
            assert forged.status == 403
            assert forged.getheader("set-cookie") is None
        host = gw.url.split("://", 1)[1]
        same = post_form(f"{gw.url}/dashboard/login", {"key": MASTER}, {"origin": gw.url})
        assert same.status == 303, host
        (update,) = read_updates(gw.url, 1, {"cookie": session})
        assert update["fleet"] == {"replicas": 1, "shared": False}


def test_without_keys_the_page_is_closed_and_opens_on_loopback_only_when_told(
    sim: Sim, tmp_path: Path
) -> None:
    with running_gateway({"models": [group("chat", sim.url)]}) as gw:
        status, _, body = get(f"{gw.url}/dashboard")
        assert status == 403
        assert b"auth.master_key" in body
        assert get(f"{gw.url}/dashboard/events")[0] == 403
    config = {
        "models": [group("chat", sim.url)],
        "dashboard": {"allow_unauthenticated_loopback": True},
    }
    with running_gateway(config) as gw:
        assert get(f"{gw.url}/dashboard")[0] == 200
        assert len(read_updates(gw.url, 1)) == 1


def test_the_stream_shows_traffic_and_a_page_that_leaves_stops_the_loop(
    sim: Sim, tmp_path: Path
) -> None:
    with running_gateway(dashboard_config(tmp_path, sim.url)) as gw:
        feed = gw.state.dashboard
        assert feed is not None
        assert read_updates(gw.url, 1, BEARER)[0]["groups"][0]["rps"] == 0.0
        for _ in range(10):
            assert chat(gw) == 200
        busy = wait_for_update(gw.url, lambda u: u["groups"][0]["rps"] > 0, BEARER)
        assert busy is not None
        (chat_group,) = busy["groups"]
        assert chat_group["tokens_s"] > 0
        assert chat_group["p50_s"] is not None
        assert chat_group["error_rate"] == 0.0
        assert eventually(lambda: feed.pages == 0)


def test_two_replicas_sharing_a_store_show_the_fleet(sim: Sim, tmp_path: Path) -> None:
    store = {"backend": "directory", "options": {"path": str(tmp_path / "control")}}
    config = dashboard_config(tmp_path, sim.url, control={"store": store})
    with running_gateway(config) as one, running_gateway(config) as two:
        both = wait_for_update(one.url, lambda u: u["fleet"]["replicas"] == 2, BEARER)
        assert both is not None
        assert both["fleet"]["shared"] is True
        assert both["groups"][0]["rps"] == 0.0
        for _ in range(10):
            assert chat(two) == 200  # traffic on the other replica only
        busy = wait_for_update(one.url, lambda u: u["groups"][0]["rps"] > 0, BEARER)
        assert busy is not None
        assert busy["fleet"] == {"replicas": 2, "shared": True}


def test_a_tenant_admin_sees_only_its_tenants_spend_and_alerts(sim: Sim, tmp_path: Path) -> None:
    def admin(path: str, body: dict[str, object]) -> dict[str, object]:
        status, _, data = http_json("POST", f"{gw.url}{path}", body, BEARER)
        assert status == 201, data
        return dict(data)

    with running_gateway(dashboard_config(tmp_path, sim.url)) as gw:
        budget = {"usd": 0.05, "window": "day", "alert_thresholds": [0.02]}
        for tenant in ("acme", "zed"):
            admin("/admin/tenants", {"name": tenant, "budgets": [budget]})
            key = str(admin("/admin/keys", {"tenant": tenant})["key"])
            assert chat(gw, key) == 200  # at least $0.001: past 2 % of $0.05
        acme_admin = str(admin("/admin/keys", {"tenant": "acme", "role": "admin"})["key"])
        every = wait_for_update(gw.url, lambda u: len(u["alerts"]) == 2, BEARER)
        assert every is not None
        assert [t["tenant"] for t in every["tenants"]] == ["acme", "zed"]
        mine = wait_for_update(
            gw.url, lambda u: bool(u["alerts"]), {"authorization": f"Bearer {acme_admin}"}
        )
        assert mine is not None
        assert [t["tenant"] for t in mine["tenants"]] == ["acme"]
        assert [a["tenant"] for a in mine["alerts"]] == ["acme"]


def test_a_reconnecting_page_gets_only_what_it_missed(sim: Sim, tmp_path: Path) -> None:
    with running_gateway(dashboard_config(tmp_path, sim.url)) as gw:
        first, second = read_updates(gw.url, 2, BEARER)
        assert second["seq"] > first["seq"]
        (resumed,) = read_updates(gw.url, 1, {**BEARER, "last-event-id": str(second["seq"])})
        assert resumed["seq"] > second["seq"]
        # an id from the far future (another fleet, a forged one) is ignored: all is replayed
        (replayed,) = read_updates(gw.url, 1, {**BEARER, "last-event-id": "99999999999999"})
        assert replayed["seq"] == first["seq"]
