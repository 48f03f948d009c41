"""Governance assembled: the key store and directory, the limiter, the usage ledger, alerts,
prices and cost policies, built from the settings and the plugins, started and stopped with the
app.

When is it on? Virtual keys are accepted when a master key is configured (someone can create
them) or a key store is configured explicitly; limits apply to virtual keys that carry them; usage
records are written whenever a sink is configured (by default ``sqlite`` when authentication is
on). An anonymous gateway builds the idle parts (:mod:`gateway.governance.idle`) and pays
nothing per request.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from gateway.background import Background
from gateway.clock import Clock
from gateway.config_loader import ConfigError
from gateway.cost.base import CostPolicy
from gateway.governance.accounts import KeyAccount
from gateway.governance.admin import KeyAdmin
from gateway.governance.alerts import AlertDispatcher
from gateway.governance.directory import KeyDirectory
from gateway.governance.governor import Governor
from gateway.governance.keystore import KeyStore
from gateway.governance.ledger import UsageLedger
from gateway.governance.limiter import Alert, Limiter, LimiterEvents, Rule
from gateway.governance.metrics import GovernanceMetrics
from gateway.governance.pepper import load_pepper
from gateway.governance.pricing import PriceBook
from gateway.governance.records import KeyRecord, TenantRecord
from gateway.governance.sinks import AlertSink, UsageSink
from gateway.plugins import Registries, Registry, build_registered
from gateway.routing.backends import ModelCatalog
from gateway.settings import Settings
from gateway.settings_base import PluginChoice
from gateway.telemetry.metrics import GatewayMetrics

log = logging.getLogger("gateway.governance")


@dataclass(slots=True)
class Governance:
    """Every governance part of one app.

    Attributes:
        store: the key store (None when virtual keys are off).
        directory: cached key lookups for authentication (None when virtual keys are off).
        limiter: limits and budgets.
        ledger: usage and audit records.
        alerts: budget alert delivery.
        prices: per-backend prices and model-group facts.
        governor: the pipeline's governance stage.
        admin: the key and tenant operations of the admin API (None when virtual keys are off).
    """

    store: KeyStore | None
    directory: KeyDirectory | None
    limiter: Limiter
    ledger: UsageLedger
    alerts: AlertDispatcher
    prices: PriceBook
    governor: Governor
    admin: KeyAdmin | None

    async def start(self, background: Background) -> None:
        """Start the limiter and the ledger; follow the key store's changes; say which backends
        have no price (once, when the app starts, not each time a config is checked)."""
        for warning in self.prices.warnings():
            log.warning("%s", warning)
        await self.limiter.start()
        await self.ledger.start()
        if self.directory is not None:
            background.spawn(self.directory.run())

    async def aclose(self) -> None:
        """After the last request: flush settlements, usage and alerts; close the stores."""
        for part, close in (
            ("limiter", self.limiter.aclose),
            ("usage ledger", self.ledger.aclose),
            ("alerts", self.alerts.aclose),
        ):
            try:
                await close()
            except Exception:
                log.exception("governance: closing the %s failed", part)
        if self.store is not None:
            try:
                await self.store.aclose()
            except Exception:
                log.exception("governance: closing the key store failed")

    async def usage_of(self, key: KeyRecord, tenant: TenantRecord | None) -> dict[str, Any]:
        """A key's current limits and budgets, for ``GET /admin/keys/{id}``."""
        account = KeyAccount(key, tenant)
        rules: list[Rule] = []
        for group in sorted({*key.model_limits, *(tenant.model_limits if tenant else {}), ""}):
            rules.extend(r for r in account.rules_for(group) if r not in rules)
        states = await self.limiter.states(rules, account.tag) if rules else []
        out: list[dict[str, Any]] = []
        for state in states:
            rule = state.rule
            entry: dict[str, Any] = {
                "scope": rule.scope,
                "kind": rule.kind,
                "limit": rule.limit,
                "remaining": state.remaining,
                "reset_s": round(state.reset_s, 3),
            }
            if rule.kind == "budget":
                entry.update(
                    window=rule.window,
                    limit_usd=f"{rule.limit / 1e9:.9f}",
                    spent_usd=f"{state.used / 1e9:.9f}",
                    remaining_usd=f"{state.remaining / 1e9:.9f}",
                )
            out.append(entry)
        return {"limits": out}


def virtual_keys_enabled(settings: Settings) -> bool:
    """Whether virtual keys are accepted (see the module docstring)."""
    default = PluginChoice(backend="sqlite")
    return bool(settings.auth.master_key) or settings.governance.key_store != default


def _build(
    registry: Registry[Any], choice: PluginChoice, where: str, source: str, **extra: Any
) -> Any:
    return build_registered(registry, choice.backend, choice.options, source, where, **extra)


def _sinks(settings: Settings) -> list[PluginChoice]:
    configured = settings.governance.usage.sinks
    if configured is not None:
        return configured
    if not (settings.auth.enabled or virtual_keys_enabled(settings)):
        return []
    return [PluginChoice(backend="sqlite", options={"path": _data(settings, "usage.sqlite3")})]


def _data(settings: Settings, name: str) -> str:
    return f"{settings.governance.data_dir.rstrip('/')}/{name}"


def build_key_store(
    settings: Settings, registries: Registries, clock: Clock
) -> tuple[KeyStore, bytes] | None:
    """The key store ``settings`` name and the pepper (None when virtual keys are off), built
    as the gateway builds them (``sqlite`` defaults to ``<data_dir>/keys.sqlite3``); for the
    gateway and for control-plane jobs that read keys and tenants.

    Raises:
        ConfigError: the pepper is unusable, or the store is unknown or rejects its options.
    """
    if not virtual_keys_enabled(settings):
        return None
    try:
        pepper = load_pepper(settings.governance.data_dir)
    except ValueError as exc:
        raise ConfigError(settings.source, "governance", str(exc)) from None
    choice = settings.governance.key_store
    if choice.backend == "sqlite" and "path" not in choice.options:
        choice = PluginChoice(backend="sqlite", options={"path": _data(settings, "keys.sqlite3")})
    store = _build(
        registries.key_stores,
        choice,
        "governance.key_store",
        settings.source,
        clock=clock,
        pepper=pepper,
    )
    return store, pepper


def build_governance(
    settings: Settings,
    registries: Registries,
    catalog: ModelCatalog,
    metrics: GatewayMetrics,
    clock: Clock,
    background: Background,
) -> Governance:
    """Governance for ``settings``, built (not started).

    Raises:
        ConfigError: an unknown plugin, options it rejects, or a cost policy naming an unknown
            policy or model group (naming the field).
    """
    gs = settings.governance
    source = settings.source
    gm = GovernanceMetrics(metrics.registry, key_labels=gs.key_metrics)

    store: KeyStore | None = None
    directory: KeyDirectory | None = None
    pepper: bytes | None = None
    built = build_key_store(settings, registries, clock)
    if built is not None:
        store, pepper = built
        directory = KeyDirectory(store, pepper, ttl_s=gs.key_cache_ttl_s, clock=clock)

    alert_sinks: list[tuple[str, AlertSink]] = [
        (c.backend, _build(registries.alert_sinks, c, f"governance.alert_sinks[{i}]", source))
        for i, c in enumerate(gs.alert_sinks)
    ]
    alerts = AlertDispatcher(alert_sinks, background.spawn)

    def on_alert(alert: Alert) -> None:
        gm.alerted(alert)
        alerts.alert(alert, alert_context(alert))

    events = LimiterEvents(alert=on_alert, backend_call=gm.limiter_call, degraded=gm.degraded)
    limiter: Limiter = _build(
        registries.limiters, gs.limiter, "governance.limiter", source, clock=clock, events=events
    )

    usage_sinks: list[tuple[str, UsageSink]] = [
        (c.backend, _build(registries.usage_sinks, c, f"governance.usage.sinks[{i}]", source))
        for i, c in enumerate(_sinks(settings))
    ]
    u = gs.usage
    ledger = UsageLedger(
        usage_sinks,
        buffer_size=u.buffer_size,
        batch_size=u.batch_size,
        flush_interval_s=u.flush_interval_s,
        on_drop=gm.dropped,
        on_failure=gm.sink_failed,
    )

    prices = PriceBook(catalog)
    policies = _policies(settings, registries, prices, catalog)
    pricing = policies.get(gs.pricing)
    if pricing is None:
        pricing = _policy(registries, gs.pricing, {}, prices, "governance.pricing", source)
    governor = Governor(
        limiter=limiter,
        ledger=ledger,
        prices=prices,
        pricing=pricing,
        policies=policies,
        catalog=catalog,
        metrics=gm,
        clock=clock,
        reserve_output_tokens=gs.reserve_output_tokens,
    )
    governance = Governance(store, directory, limiter, ledger, alerts, prices, governor, None)
    if store is not None and directory is not None and pepper is not None:
        governance.admin = KeyAdmin(
            store,
            directory,
            pepper=pepper,
            clock=clock,
            audit=ledger.audit,
            # read when asked: agents and workflows join the catalog after governance is built
            known_models=lambda: sorted(
                {n for g in catalog.groups for n in (g.name, *g.settings.aliases)}
            ),
            known_policies=lambda: policies,
            usage=governance.usage_of,
        )
    return governance


def _policy(
    registries: Registries,
    policy: str,
    options: dict[str, Any],
    prices: PriceBook,
    where: str,
    source: str,
) -> CostPolicy:
    built: CostPolicy = _build(
        registries.cost_policies, PluginChoice(backend=policy, options=options), where, source
    )
    bind = getattr(built, "bind", None)
    if callable(bind):  # policies that price read the app's price book
        bind(prices)
    return built


def _policies(
    settings: Settings, registries: Registries, prices: PriceBook, catalog: ModelCatalog
) -> dict[str, CostPolicy]:
    gs, source = settings.governance, settings.source
    names: Collection[str] = {n for g in catalog.groups for n in (g.name, *g.settings.aliases)}
    built: dict[str, CostPolicy] = {}
    for name, entry in gs.cost_policies.items():
        where = f"governance.cost_policies.{name}"
        for option in ("chain", "candidates"):
            for group in entry.options.get(option) or ():
                if group not in names:
                    raise ConfigError(
                        source, f"{where}.options.{option}", f"unknown model group `{group}`"
                    )
        built[name] = _policy(registries, entry.policy, entry.options, prices, where, source)
    for gi, group in enumerate(settings.models):
        if group.cost_policy is not None and group.cost_policy not in built:
            raise ConfigError(
                source,
                f"models[{gi}].cost_policy",
                f"unknown cost policy `{group.cost_policy}`; defined: "
                f"{', '.join(sorted(built)) or 'none'} (governance.cost_policies)",
            )
    return built


def alert_context(alert: Alert) -> dict[str, Any]:
    """What an alert sink is told besides the alert: who, and the US-dollar figures."""
    scope = alert.rule.scope.split("|", 1)[0]
    kind, _, ident = scope.partition(":")
    return {
        "scope": alert.rule.scope,
        "tenant": ident if kind == "tenant" else None,
        "key_id": ident if kind == "key" else None,
        "window": alert.window,
        "threshold": alert.threshold,
        "spent_usd": alert.spent / 1e9,
        "limit_usd": alert.limit / 1e9,
    }
