"""The key and tenant admin API over a real socket (uvicorn on loopback, a real SQLite store),
and the ``gateway keys`` / ``gateway tenants`` commands against it."""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gateway_keys.sqlite_store import SqliteKeyStore
from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException

from gateway.auth import presented_key
from gateway.clock import SYSTEM_CLOCK
from gateway.errors import AuthenticationError, GatewayError
from gateway.governance.admin import KeyAdmin
from gateway.governance.cli import KEYS_COMMAND, TENANTS_COMMAND
from gateway.governance.directory import KeyDirectory
from gateway.governance.sinks import AuditRecord
from gateway.identity import Principal
from gateway.routes.admin_keys import build_key_admin_routes
from gateway.routes.errors import error_format_for
from gateway.server import BackgroundServer
from tests.support.servers import http_json

MASTER_KEY = "master-key-for-tests"
PEPPER = b"e2e-pepper-0123456789abcdef"


def _gateway_error(request: Request[Any, Any, Any], exc: GatewayError) -> Response[Any]:
    status, body = error_format_for(request.url.path).render(exc)
    return Response(body, status_code=status, media_type="application/json")


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    body = error_format_for(request.url.path).render_status(exc.status_code, exc.detail)
    return Response(body, status_code=exc.status_code, media_type="application/json")


@dataclass
class AdminServer:
    url: str
    data_dir: Path
    audit: list[AuditRecord] = field(default_factory=list)

    def call(
        self, method: str, path: str, body: Any = None, key: str = MASTER_KEY
    ) -> tuple[int, Any]:
        status, _, answer = http_json(
            method, f"{self.url}{path}", body, {"authorization": f"Bearer {key}"}
        )
        return status, answer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AdminServer]:
    data_dir = tmp_path / "data"
    store = SqliteKeyStore(path=str(data_dir / "keys.sqlite3"))
    directory = KeyDirectory(store, PEPPER, ttl_s=1.0, clock=SYSTEM_CLOCK)
    audit: list[AuditRecord] = []

    async def usage(key: Any, tenant: Any) -> dict[str, Any]:
        return {"limits": [], "tenant": tenant.name if tenant else None}

    admin = KeyAdmin(
        store,
        directory,
        pepper=PEPPER,
        clock=SYSTEM_CLOCK,
        audit=audit.append,
        known_models=lambda: {"llama", "gpt"},
        usage=usage,
    )

    async def authorize(headers: Mapping[str, str]) -> Principal:
        presented = presented_key(headers)
        if presented is None:
            raise AuthenticationError("Missing API key.", code="missing_api_key")
        if hmac.compare_digest(presented.encode(), MASTER_KEY.encode()):
            return Principal(key_id="master", admin=True)
        return await directory.authenticate(presented)

    app = Litestar(
        route_handlers=build_key_admin_routes(admin, authorize),
        exception_handlers={GatewayError: _gateway_error, HTTPException: _http_error},
        openapi_config=None,
    )
    background = BackgroundServer(app)
    background.start()
    try:
        yield AdminServer(background.url, data_dir, audit)
    finally:
        background.stop()
        asyncio.run(store.aclose())


def test_key_lifecycle_over_http(server: AdminServer) -> None:
    status, tenant = server.call("POST", "/admin/tenants", {"name": "acme", "models": ["llama"]})
    assert status == 201, tenant
    assert tenant["name"] == "acme"
    body = {
        "tenant": "acme",
        "models": ["llama"],
        "rpm": 600,
        "tpm": 100000,
        "max_parallel": 8,
        "budgets": [{"usd": 50, "window": "month"}],
    }
    status, created = server.call("POST", "/admin/keys", body)
    assert status == 201, created
    key_id, full = created["id"], created["key"]
    assert full.startswith(f"sk-gw-{key_id}-")
    assert (created["rpm"], created["tpm"], created["max_parallel"]) == (600, 100000, 8)
    assert "secret_hash" not in created

    status, listed = server.call("GET", "/admin/keys?tenant=acme")
    assert status == 200
    assert [k["id"] for k in listed["data"]] == [key_id]
    assert all("key" not in k for k in listed["data"])
    status, shown = server.call("GET", f"/admin/keys/{key_id}")
    assert status == 200
    assert shown["usage"] == {"limits": [], "tenant": "acme"}

    status, updated = server.call("PATCH", f"/admin/keys/{key_id}", {"rpm": 700})
    assert status == 200
    assert (updated["rpm"], updated["tpm"]) == (700, 100000)

    # The key authenticates (a user key may not manage keys: 403, not 401)...
    status, answer = server.call("GET", "/admin/keys", key=full)
    assert status == 403, answer
    # ...until it is revoked (DELETE revokes), from then on at once.
    status, revoked = server.call("DELETE", f"/admin/keys/{key_id}")
    assert status == 200
    assert revoked["status"] == "revoked"
    status, answer = server.call("GET", "/admin/keys", key=full)
    assert status == 401
    assert answer["error"]["code"] == "key_revoked"
    status, again = server.call("POST", f"/admin/keys/{key_id}/revoke")
    assert status == 200
    assert again["revoked_at"] == revoked["revoked_at"]

    status, answer = server.call("DELETE", "/admin/tenants/acme")
    assert status == 409, answer  # it still has a (revoked) key
    status, tenants = server.call("GET", "/admin/tenants")
    assert [t["name"] for t in tenants["data"]] == ["acme"]
    status, answer = server.call("PATCH", "/admin/tenants/acme", {"rpm": 5})
    assert status == 200
    assert answer["rpm"] == 5
    assert server.call("GET", "/admin/tenants/acme")[1]["rpm"] == 5

    assert [a.action for a in server.audit] == [
        "tenant.create",
        "key.create",
        "key.update",
        "key.revoke",
        "tenant.update",
    ]
    update = server.audit[2]
    assert update.before is not None
    assert update.after is not None
    assert (update.before["rpm"], update.after["rpm"]) == (600, 700)
    for record in server.audit:
        for side in (record.before, record.after):
            assert side is None or "secret_hash" not in side

    # Neither the secret nor the full key is anywhere in the database files.
    secret = full.split("-", 3)[3]
    stored = b"".join(p.read_bytes() for p in server.data_dir.iterdir())
    assert key_id.encode() in stored
    assert secret.encode() not in stored


def test_errors_name_fields_in_the_openai_envelope(server: AdminServer) -> None:
    status, answer = server.call(
        "POST", "/admin/keys", {"budgets": [{"usd": 5, "window": "fortnight"}]}
    )
    assert status == 400
    assert answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["param"] == "budgets[0].window"
    status, answer = server.call("POST", "/admin/keys", {"rpm": "fast"})
    assert (status, answer["error"]["param"]) == (400, "rpm")
    status, answer = server.call("POST", "/admin/keys", {"tenant": "nobody"})
    assert (status, answer["error"]["param"]) == (400, "tenant")
    status, answer = server.call("POST", "/admin/keys", {"models": ["nope"]})
    assert (status, answer["error"]["param"]) == (400, "models")
    status, answer = server.call("POST", "/admin/keys", b"{not json")
    assert status == 400
    assert "JSON" in answer["error"]["message"]
    assert server.call("GET", "/admin/keys/nobodynobody")[0] == 404
    assert server.call("POST", "/admin/tenants", {"name": "acme"})[0] == 201
    status, answer = server.call("POST", "/admin/tenants", {"name": "acme"})
    assert status == 409
    assert answer["error"]["code"] == "conflict"
    status, answer = server.call("GET", "/admin/keys", key="wrong")
    assert status == 401
    assert answer["error"]["type"] == "authentication_error"
    status, _, answer = http_json("GET", f"{server.url}/admin/keys")
    assert status == 401
    assert len([a for a in server.audit if a.action == "tenant.create"]) == 1


def test_a_tenant_admin_stays_in_its_tenant(server: AdminServer) -> None:
    for name in ("acme", "beta"):
        assert server.call("POST", "/admin/tenants", {"name": name})[0] == 201
    status, acme_admin = server.call("POST", "/admin/keys", {"tenant": "acme", "role": "admin"})
    assert status == 201
    status, beta_key = server.call("POST", "/admin/keys", {"tenant": "beta"})
    assert status == 201
    admin_key = acme_admin["key"]

    status, mine = server.call("POST", "/admin/keys", {"name": "svc"}, key=admin_key)
    assert status == 201, mine
    assert (mine["tenant"], mine["role"]) == ("acme", "user")
    status, listed = server.call("GET", "/admin/keys", key=admin_key)
    assert {k["tenant"] for k in listed["data"]} == {"acme"}
    assert server.call("PATCH", f"/admin/keys/{mine['id']}", {"rpm": 3}, key=admin_key)[0] == 200
    assert server.call("GET", "/admin/tenants/acme", key=admin_key)[0] == 200

    forbidden = [
        ("POST", "/admin/keys", {"tenant": "beta"}),
        ("POST", "/admin/keys", {"role": "admin"}),
        ("GET", "/admin/keys?tenant=beta", None),
        ("GET", f"/admin/keys/{beta_key['id']}", None),
        ("PATCH", f"/admin/keys/{beta_key['id']}", {"rpm": 1}),
        ("DELETE", f"/admin/keys/{beta_key['id']}", None),
        ("PATCH", f"/admin/keys/{mine['id']}", {"role": "admin"}),
        ("POST", "/admin/tenants", {"name": "gamma"}),
        ("PATCH", "/admin/tenants/acme", {"rpm": 1}),
        ("GET", "/admin/tenants/beta", None),
        ("DELETE", "/admin/tenants/beta", None),
    ]
    for method, path, body in forbidden:
        status, answer = server.call(method, path, body, key=admin_key)
        assert status == 403, (method, path, answer)
        assert answer["error"]["type"] == "permission_error"
    assert server.audit[-1].actor == f"key:{acme_admin['id']}"
    assert server.audit[-1].action == "key.update"


# -- the CLI against the live server -------------------------------------------------------


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in (("keys", KEYS_COMMAND), ("tenants", TENANTS_COMMAND)):
        child = sub.add_parser(name)
        command.add_arguments(child)
        child.set_defaults(_run=command.run)
    args = parser.parse_args(argv)
    status: int = args._run(args)
    return status


@pytest.fixture
def no_admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GATEWAY_ADMIN_KEY", "GATEWAY_MASTER_KEY", "GATEWAY_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_admin_env")
def test_the_cli_manages_keys_and_tenants(
    server: AdminServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = ("--url", server.url, "--admin-key", MASTER_KEY)
    assert cli("tenants", "create", "acme", "--model", "llama", "--rpm", "100", *conn) == 0
    assert "Created tenant acme." in capsys.readouterr().out

    args = ["keys", "create", "--tenant", "acme", "--model", "llama", "--rpm", "600"]
    args += ["--tpm", "100000", "--max-parallel", "8", "--budget", "50:month"]
    args += ["--budget", "5:day", "--name", "ci", "--expires-in", "30d", "--json", *conn]
    assert cli(*args) == 0
    created = json.loads(capsys.readouterr().out)
    key_id = created["id"]
    assert created["budgets"][1]["window"] == "day"
    assert (created["rpm"], created["max_parallel"], created["name"]) == (600, 8, "ci")
    assert created["expires_at"] is not None

    # The environment supplies the URL and the key too; a human-readable create shows the key.
    monkeypatch.setenv("GATEWAY_URL", server.url)
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", MASTER_KEY)
    assert cli("keys", "create", "--tenant", "acme", "--role", "admin") == 0
    out = capsys.readouterr().out
    assert "sk-gw-" in out
    assert "not shown again" in out

    assert cli("keys", "list", "--tenant", "acme") == 0
    out = capsys.readouterr().out
    assert key_id in out
    assert "$50/month, $5/day" in out
    assert cli("keys", "show", key_id) == 0
    out = capsys.readouterr().out
    assert "usage:" in out
    assert "secret_hash" not in out
    assert cli("keys", "update", key_id, "--rpm", "700", "--tpm", "none", "--block") == 0
    assert "Updated key" in capsys.readouterr().out
    assert cli("keys", "show", key_id, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["rpm"], shown["tpm"], shown["blocked"]) == (700, None, True)
    assert cli("keys", "update", key_id, "--unblock") == 0
    capsys.readouterr()
    assert cli("keys", "revoke", key_id) == 0
    assert f"Revoked key {key_id}." in capsys.readouterr().out

    assert cli("tenants", "list") == 0
    assert "acme" in capsys.readouterr().out
    assert cli("tenants", "update", "acme", "--rpm", "none", "--json") == 0
    assert json.loads(capsys.readouterr().out)["rpm"] is None
    assert cli("tenants", "show", "acme") == 0
    assert "name:" in capsys.readouterr().out
    # The server's refusals: its message, exit 1.
    assert cli("tenants", "delete", "acme") == 1
    err = capsys.readouterr().err
    assert "error 409" in err
    assert "still has" in err
    assert cli("keys", "create", "--tenant", "nobody") == 1
    assert "[tenant]" in capsys.readouterr().err
    assert cli("tenants", "create", "empty") == 0
    assert cli("tenants", "delete", "empty") == 0
    assert "Deleted tenant empty." in capsys.readouterr().out

    actions = [a.action for a in server.audit]
    assert actions.count("key.create") == 2
    assert "key.revoke" in actions
    assert actions[-1] == "tenant.delete"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.usefixtures("no_admin_env")
def test_the_cli_reports_an_unreachable_gateway_and_a_missing_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    assert cli("keys", "list", "--url", url, "--admin-key", "x") == 2
    assert "cannot reach the gateway" in capsys.readouterr().err
    assert cli("tenants", "list", "--url", url) == 2
    assert "no admin key" in capsys.readouterr().err


@pytest.mark.slow
def test_the_gateway_console_command_has_keys_and_tenants(server: AdminServer) -> None:
    """``gateway keys`` / ``gateway tenants`` as a user runs them: a subprocess of the CLI."""
    env = {**os.environ, "GATEWAY_URL": server.url, "GATEWAY_ADMIN_KEY": MASTER_KEY}
    env.pop("GATEWAY_MASTER_KEY", None)

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    made = run("tenants", "create", "acme", "--rpm", "10")
    assert made.returncode == 0, made.stderr
    created = run("keys", "create", "--tenant", "acme", "--json")
    assert created.returncode == 0, created.stderr
    key_id = json.loads(created.stdout)["id"]
    listed = run("keys", "list")
    assert listed.returncode == 0
    assert key_id in listed.stdout
    refused = run("tenants", "delete", "acme")
    assert refused.returncode == 1
    assert "error 409" in refused.stderr
