"""Who may see the dashboard: signed sessions, admin keys, and the loopback rule."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.config_loader import ConfigError, settings_from_mapping
from gateway.dashboard.access import DashboardAccess, Sessions, Viewer
from gateway.errors import AuthenticationError, PermissionDeniedError
from gateway.identity import Principal

pytestmark = pytest.mark.anyio


def test_a_session_cookie_names_its_viewer_and_holds_no_key() -> None:
    sessions = Sessions("mk-secret-master", ttl_s=60)
    cookie = sessions.issue(Viewer("abc123", "acme"), now=1000.0)
    assert "mk-secret-master" not in cookie
    assert sessions.check(cookie, now=1030.0) == Viewer("abc123", "acme")


def test_a_forged_altered_or_expired_cookie_is_refused() -> None:
    sessions = Sessions("mk-1", ttl_s=60)
    cookie = sessions.issue(Viewer("abc", None), now=1000.0)
    assert sessions.check(cookie, now=1061.0) is None
    payload, _, signature = cookie.partition(".")
    assert sessions.check(f"{payload}x.{signature}", now=1000.0) is None
    assert sessions.check("garbage", now=1000.0) is None
    # another master key: another secret
    assert Sessions("mk-2", ttl_s=60).check(cookie, now=1000.0) is None
    # the same master key on another replica: the same secret
    assert Sessions("mk-1", ttl_s=60).check(cookie, now=1000.0) == Viewer("abc", None)


def test_a_cookie_with_characters_outside_ascii_is_refused_not_an_error() -> None:
    sessions = Sessions("mk-1", ttl_s=60)
    assert sessions.check("a.\xe9", now=1000.0) is None
    assert sessions.check("\u2603.\u2603", now=1000.0) is None


async def test_a_proxys_basic_credentials_leave_the_cookie_to_decide() -> None:
    gate = access({"auth": {"master_key": "mk"}}, keys=True)
    cookie = gate.sessions.issue(await gate.login("mk"))
    basic = {"authorization": "Basic dXNlcjpwYXNz"}
    assert await gate.viewer(basic, {"gateway_dashboard": cookie}, "10.0.0.1") == Viewer("master")
    with pytest.raises(AuthenticationError):
        await gate.viewer(basic, {}, "10.0.0.1")


async def _admins_only(headers: Any) -> Principal:
    if headers.get("authorization") == "Bearer mk":
        return Principal(key_id="master", admin=True)
    raise AuthenticationError("Incorrect API key provided.")


def access(config: dict[str, Any], *, keys: bool) -> DashboardAccess:
    settings = settings_from_mapping(config, "test")
    return DashboardAccess(settings, _admins_only, keys)


async def test_a_bearer_or_a_cookie_is_needed_when_keys_are_configured() -> None:
    gate = access({"auth": {"master_key": "mk"}}, keys=True)
    assert await gate.viewer({"authorization": "Bearer mk"}, {}, "127.0.0.1") == Viewer("master")
    with pytest.raises(AuthenticationError):
        await gate.viewer({}, {}, "127.0.0.1")
    with pytest.raises(AuthenticationError):
        await gate.viewer({"authorization": "Bearer nope"}, {}, "127.0.0.1")
    cookie = gate.sessions.issue(await gate.login("mk"))
    assert await gate.viewer({}, {"gateway_dashboard": cookie}, "10.1.2.3") == Viewer("master")
    with pytest.raises(AuthenticationError):
        await gate.login("nope")


async def test_without_keys_the_page_is_closed_unless_opened_for_loopback() -> None:
    with pytest.raises(PermissionDeniedError):
        await access({}, keys=False).viewer({}, {}, "127.0.0.1")
    gate = access({"dashboard": {"allow_unauthenticated_loopback": True}}, keys=False)
    assert await gate.viewer({}, {}, "127.0.0.1") == Viewer(None)
    assert await gate.viewer({}, {}, "::1") == Viewer(None)
    with pytest.raises(PermissionDeniedError):
        await gate.viewer({}, {}, "192.168.1.20")
    with pytest.raises(PermissionDeniedError):
        await gate.viewer({}, {}, None)


async def test_a_non_loopback_bind_never_opens_the_page() -> None:
    settings = settings_from_mapping({"dashboard": {"allow_unauthenticated_loopback": True}}, "t")
    # as `gateway serve --host 0.0.0.0` overrides the file's host after it was checked
    served = msgspec.structs.replace(
        settings, server=msgspec.structs.replace(settings.server, host="0.0.0.0")
    )
    gate = DashboardAccess(served, _admins_only, False)
    with pytest.raises(PermissionDeniedError):
        await gate.viewer({}, {}, "127.0.0.1")


def test_the_config_refuses_an_open_page_on_a_non_loopback_bind() -> None:
    config = {
        "server": {"host": "0.0.0.0"},
        "dashboard": {"allow_unauthenticated_loopback": True},
    }
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(config, "test")
    assert caught.value.field == "dashboard.allow_unauthenticated_loopback"


@pytest.mark.parametrize(
    ("dashboard", "field"),
    [
        ({"node_agents": ["node-1:9400"]}, "dashboard.node_agents[0]"),
        ({"fleet_ttl_s": 1.0, "update_interval_s": 2.0}, "dashboard.fleet_ttl_s"),
        ({"update_interval_s": 0}, "dashboard.update_interval_s"),
        ({"colour": "blue"}, "dashboard.colour"),
    ],
)
def test_dashboard_settings_errors_name_the_field(dashboard: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"dashboard": dashboard}, "test")
    assert caught.value.field == field
