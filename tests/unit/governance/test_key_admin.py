"""KeyAdmin: the key and tenant operations, their validation, roles and audit records, on a
real SQLite store and a real key directory."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gateway_keys.config_store import ConfigKeyStore
from gateway_keys.sqlite_store import SqliteKeyStore

from gateway.clock import ManualClock
from gateway.errors import (
    AuthenticationError,
    GatewayError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    PermissionDeniedError,
    ResourceConflictError,
    ServiceUnavailableError,
)
from gateway.governance.admin import KeyAdmin
from gateway.governance.directory import KeyDirectory
from gateway.governance.keystore import KeyStore
from gateway.governance.records import KeyRecord, TenantRecord, parse_key, secret_matches
from gateway.governance.sinks import AuditRecord
from gateway.identity import Principal

PEPPER = b"test-pepper-0123456789abcdef"
MASTER = Principal(key_id="master", admin=True)
MODELS = {"llama", "gpt", "llama-alias"}


@dataclass
class Setup:
    store: KeyStore
    directory: KeyDirectory
    admin: KeyAdmin
    clock: ManualClock
    audit: list[AuditRecord] = field(default_factory=list)
    usage_calls: list[tuple[str, str | None]] = field(default_factory=list)

    async def as_key(self, created: dict[str, Any]) -> Principal:
        """The principal of a key that :meth:`KeyAdmin.create_key` answered."""
        return await self.directory.authenticate(created["key"])


def build(store: KeyStore, clock: ManualClock) -> Setup:
    directory = KeyDirectory(store, PEPPER, ttl_s=1.0, clock=clock)
    audit: list[AuditRecord] = []
    calls: list[tuple[str, str | None]] = []

    async def usage(key: KeyRecord, tenant: TenantRecord | None) -> dict[str, Any]:
        calls.append((key.id, tenant.name if tenant else None))
        return {"remaining_usd": 12.5}

    admin = KeyAdmin(
        store,
        directory,
        pepper=PEPPER,
        clock=clock,
        audit=audit.append,
        known_models=lambda: MODELS,
        usage=usage,
    )
    return Setup(store, directory, admin, clock, audit, calls)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Setup]:
    store = SqliteKeyStore(path=str(tmp_path / "keys.sqlite3"))
    yield build(store, ManualClock(start=1_700_000_000.0))
    await store.aclose()


async def error_of(call: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await call
    return caught.value


@pytest.mark.anyio
async def test_create_key_returns_the_key_once_and_audits_without_the_hash(env: Setup) -> None:
    await env.admin.create_tenant(MASTER, {"name": "acme"})
    body = {
        "tenant": "acme",
        "models": ["llama"],
        "rpm": 600,
        "tpm": 100000,
        "max_parallel": 8,
        "budgets": [{"usd": 50, "window": "month"}],
    }
    created = await env.admin.create_key(MASTER, msgspec_json(body))
    assert created["key"].startswith(f"sk-gw-{created['id']}-")
    assert "secret_hash" not in created
    assert created["tenant"] == "acme"
    assert created["rpm"] == 600
    assert created["role"] == "user"
    assert created["budgets"] == [
        {"usd": 50.0, "window": "month", "alert_thresholds": [0.8, 0.9, 1.0]}
    ]
    assert created["status"] == "active"
    assert created["created_at"] == env.clock.time()

    record = await env.store.get_key(created["id"])
    assert record is not None
    parsed = parse_key(created["key"])
    assert parsed is not None
    assert parsed[0] == created["id"]
    assert secret_matches(parsed[1], record.secret_hash, PEPPER)
    principal = await env.as_key(created)
    assert principal.key_id == created["id"]
    assert principal.tenant == "acme"

    listed = await env.admin.list_keys(MASTER)
    assert [k["id"] for k in listed["data"]] == [created["id"]]
    assert all("key" not in k and "secret_hash" not in k for k in listed["data"])

    entry = env.audit[-1]
    assert (entry.action, entry.actor, entry.target, entry.tenant) == (
        "key.create",
        "master",
        created["id"],
        "acme",
    )
    assert entry.before is None
    assert entry.after is not None
    assert "secret_hash" not in entry.after
    assert entry.after["rpm"] == 600
    assert entry.at == env.clock.time()
    assert entry.audit_id


def msgspec_json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"bogus": 1}', "bogus"),
        (b'{"rpm": "many"}', "rpm"),
        (b'{"rpm": 0}', "rpm"),
        (b'{"budgets": [{"usd": 5, "window": "fortnight"}]}', "budgets[0].window"),
        (b'{"budgets": [{"usd": 5, "window": "day"}, {"window": "day"}]}', "budgets[1].usd"),
        (b'{"budgets": [{"usd": 5, "alert_thresholds": [2]}]}', "budgets[0].alert_thresholds"),
        (b'{"budgets": [{"usd": 5, "extra": true}]}', "budgets[0].extra"),
        (b'{"models": ["llama", "nope"]}', "models"),
        (b'{"model_limits": {"nope": {"rpm": 1}}}', "model_limits"),
        (b'{"tenant": "nobody"}', "tenant"),
        (b'{"role": "root"}', "role"),
        (b'{"expires_in": "month"}', "expires_in"),
        (b'{"expires_in": "1d", "expires_at": 5}', "expires_in"),
        (b"[1, 2]", None),
        (b"{not json", None),
    ],
)
async def test_invalid_bodies_name_the_field_and_write_nothing(
    env: Setup, body: bytes, param: str | None
) -> None:
    error = await error_of(env.admin.create_key(MASTER, body))
    assert isinstance(error, InvalidRequestError)
    assert error.status == 400
    assert error.param == param, error.message
    assert await env.store.list_keys() == []
    assert env.audit == []


@pytest.mark.anyio
async def test_models_may_be_groups_or_aliases_and_expiry_a_duration(env: Setup) -> None:
    created = await env.admin.create_key(
        MASTER,
        {
            "models": ["llama-alias", "gpt"],
            "model_limits": {"gpt": {"rpm": 5, "budgets": [{"usd": 1, "window": "day"}]}},
            "expires_in": "30d",
        },
    )
    assert created["models"] == ["llama-alias", "gpt"]
    assert created["model_limits"] == {
        "gpt": {
            "rpm": 5,
            "budgets": [{"usd": 1.0, "window": "day", "alert_thresholds": [0.8, 0.9, 1.0]}],
        }
    }
    assert created["expires_at"] == env.clock.time() + 30 * 86400


@pytest.mark.anyio
async def test_update_changes_only_the_given_fields(env: Setup) -> None:
    created = await env.admin.create_key(MASTER, {"name": "ci", "rpm": 10, "tpm": 1000})
    env.clock.advance(5)
    updated = await env.admin.update_key(MASTER, created["id"], b'{"rpm": 20, "tpm": null}')
    assert (updated["name"], updated["rpm"], updated["tpm"]) == ("ci", 20, None)
    assert updated["updated_at"] == env.clock.time()
    assert updated["created_at"] == created["created_at"]
    entry = env.audit[-1]
    assert entry.action == "key.update"
    assert entry.before is not None
    assert entry.after is not None
    assert (entry.before["rpm"], entry.after["rpm"]) == (10, 20)
    assert "secret_hash" not in entry.before
    assert "secret_hash" not in entry.after
    # The key's tenant is not something an update can change.
    error = await error_of(env.admin.update_key(MASTER, created["id"], {"tenant": "x"}))
    assert error.status == 400
    assert error.param == "tenant"


@pytest.mark.anyio
async def test_a_blocked_key_is_refused_at_once_and_unblocked_again(env: Setup) -> None:
    created = await env.admin.create_key(MASTER, {})
    await env.as_key(created)
    await env.admin.update_key(MASTER, created["id"], {"blocked": True})
    with pytest.raises(AuthenticationError) as caught:
        await env.as_key(created)
    assert caught.value.code == "key_blocked"
    await env.admin.update_key(MASTER, created["id"], {"blocked": False})
    await env.as_key(created)


@pytest.mark.anyio
async def test_revoke_is_immediate_final_and_audited_once(env: Setup) -> None:
    created = await env.admin.create_key(MASTER, {})
    await env.as_key(created)  # cached
    revoked = await env.admin.revoke_key(MASTER, created["id"])
    assert revoked["revoked_at"] == env.clock.time()
    assert revoked["status"] == "revoked"
    with pytest.raises(AuthenticationError) as caught:
        await env.as_key(created)  # this process's cache was dropped at once
    assert caught.value.code == "key_revoked"
    audits = len(env.audit)
    assert (await env.admin.revoke_key(MASTER, created["id"]))["revoked_at"] == revoked[
        "revoked_at"
    ]
    assert len(env.audit) == audits
    assert env.audit[-1].action == "key.revoke"
    error = await error_of(env.admin.update_key(MASTER, created["id"], {"blocked": False}))
    assert error.status == 409
    assert (await env.admin.show_key(MASTER, created["id"]))["status"] == "revoked"


@pytest.mark.anyio
async def test_show_key_includes_usage(env: Setup) -> None:
    await env.admin.create_tenant(MASTER, {"name": "acme"})
    created = await env.admin.create_key(MASTER, {"tenant": "acme"})
    shown = await env.admin.show_key(MASTER, created["id"])
    assert shown["usage"] == {"remaining_usd": 12.5}
    assert env.usage_calls == [(created["id"], "acme")]
    assert "secret_hash" not in shown
    assert "key" not in shown


@pytest.mark.anyio
async def test_tenants_lifecycle_with_conflicts(env: Setup) -> None:
    created = await env.admin.create_tenant(MASTER, {"name": "acme", "rpm": 100})
    assert created["name"] == "acme"
    assert created["rpm"] == 100
    duplicate = await error_of(env.admin.create_tenant(MASTER, {"name": "acme"}))
    assert isinstance(duplicate, ResourceConflictError)
    assert duplicate.status == 409
    bad_name = await error_of(env.admin.create_tenant(MASTER, {"name": "has space"}))
    assert bad_name.status == 400
    assert bad_name.param == "name"
    missing = await error_of(env.admin.create_tenant(MASTER, {}))
    assert missing.status == 400
    assert missing.param == "name"
    rename = await error_of(env.admin.update_tenant(MASTER, "acme", {"blocked": True, "name": "x"}))
    assert rename.status == 400
    assert rename.param == "name"
    assert not (await env.admin.show_tenant(MASTER, "acme"))["blocked"]
    updated = await env.admin.update_tenant(MASTER, "acme", {"blocked": True})
    assert updated["name"] == "acme"
    assert updated["blocked"]
    assert updated["rpm"] == 100
    assert (await env.admin.show_tenant(MASTER, "acme"))["blocked"]
    assert [t["name"] for t in (await env.admin.list_tenants(MASTER))["data"]] == ["acme"]

    key = await env.admin.create_key(MASTER, {"tenant": "acme"})
    with pytest.raises(PermissionDeniedError) as caught:
        await env.as_key(key)
    assert caught.value.code == "tenant_blocked"
    await env.admin.revoke_key(MASTER, key["id"])
    has_keys = await error_of(env.admin.delete_tenant(MASTER, "acme"))
    assert has_keys.status == 409
    assert isinstance(await error_of(env.admin.show_tenant(MASTER, "nobody")), NotFoundError)
    assert (await error_of(env.admin.delete_tenant(MASTER, "nobody"))).status == 404
    assert (await error_of(env.admin.show_key(MASTER, "nobodynobody"))).status == 404

    await env.admin.create_tenant(MASTER, {"name": "empty"})
    assert await env.admin.delete_tenant(MASTER, "empty") == {"name": "empty", "deleted": True}
    actions = [a.action for a in env.audit]
    assert actions == [
        "tenant.create",
        "tenant.update",
        "key.create",
        "key.revoke",
        "tenant.create",
        "tenant.delete",
    ]
    deleted = env.audit[-1]
    assert deleted.before is not None
    assert deleted.before["name"] == "empty"
    assert deleted.after is None
    assert deleted.tenant == "empty"


@pytest.mark.anyio
async def test_a_tenant_admin_manages_only_its_tenants_user_keys(env: Setup) -> None:
    for name in ("acme", "beta"):
        await env.admin.create_tenant(MASTER, {"name": name})
    acme_admin_key = await env.admin.create_key(MASTER, {"tenant": "acme", "role": "admin"})
    other_admin = await env.admin.create_key(MASTER, {"tenant": "acme", "role": "admin"})
    beta_key = await env.admin.create_key(MASTER, {"tenant": "beta"})
    actor = await env.as_key(acme_admin_key)
    assert actor.tenant_admin == "acme"

    mine = await env.admin.create_key(actor, {"name": "svc", "rpm": 5})  # tenant by default
    assert mine["tenant"] == "acme"
    assert mine["role"] == "user"
    assert env.audit[-1].actor == f"key:{acme_admin_key['id']}"
    await env.admin.update_key(actor, mine["id"], {"rpm": 6})
    assert (await env.admin.show_key(actor, mine["id"]))["rpm"] == 6
    listed = await env.admin.list_keys(actor)
    assert {k["tenant"] for k in listed["data"]} == {"acme"}
    assert (await env.admin.list_tenants(actor))["data"][0]["name"] == "acme"
    assert len((await env.admin.list_tenants(actor))["data"]) == 1
    assert (await env.admin.show_tenant(actor, "acme"))["name"] == "acme"

    audits = len(env.audit)
    forbidden = [
        env.admin.create_key(actor, {"tenant": "beta"}),
        env.admin.create_key(actor, {"role": "admin"}),
        env.admin.list_keys(actor, "beta"),
        env.admin.show_key(actor, beta_key["id"]),
        env.admin.update_key(actor, beta_key["id"], {"rpm": 1}),
        env.admin.revoke_key(actor, beta_key["id"]),
        env.admin.update_key(actor, mine["id"], {"role": "admin"}),
        env.admin.update_key(actor, other_admin["id"], {"blocked": True}),
        env.admin.revoke_key(actor, other_admin["id"]),
        env.admin.create_tenant(actor, {"name": "gamma"}),
        env.admin.update_tenant(actor, "acme", {"rpm": 1_000_000}),
        env.admin.delete_tenant(actor, "beta"),
        env.admin.show_tenant(actor, "beta"),
    ]
    for call in forbidden:
        error = await error_of(call)
        assert isinstance(error, PermissionDeniedError), error.message
        assert error.status == 403
    assert len(env.audit) == audits
    await env.admin.revoke_key(actor, mine["id"])


@pytest.mark.anyio
async def test_a_user_key_may_not_manage_anything(env: Setup) -> None:
    await env.admin.create_tenant(MASTER, {"name": "acme"})
    user = await env.as_key(await env.admin.create_key(MASTER, {"tenant": "acme"}))
    for call in (
        env.admin.list_keys(user),
        env.admin.create_key(user, {}),
        env.admin.list_tenants(user),
    ):
        assert (await error_of(call)).status == 403
    assert (await error_of(env.admin.list_keys(Principal(key_id="static")))).status == 403


@pytest.mark.anyio
async def test_a_read_only_store_answers_405_and_a_closed_one_503(tmp_path: Path) -> None:
    clock = ManualClock(start=1_700_000_000.0)
    config = build(ConfigKeyStore(tenants=[{"name": "acme"}], pepper=PEPPER), clock)
    error = await error_of(config.admin.create_tenant(MASTER, {"name": "beta"}))
    assert isinstance(error, MethodNotAllowedError)
    assert error.status == 405
    assert (await error_of(config.admin.create_key(MASTER, {"tenant": "acme"}))).status == 405
    assert (await config.admin.list_tenants(MASTER))["data"][0]["name"] == "acme"

    store = SqliteKeyStore(path=str(tmp_path / "closed.sqlite3"))
    closed = build(store, clock)
    await store.aclose()
    error = await error_of(closed.admin.list_keys(MASTER))
    assert isinstance(error, ServiceUnavailableError)
    assert error.status == 503
    assert error.code == "key_store_unavailable"
