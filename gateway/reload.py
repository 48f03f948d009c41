"""Apply a changed config file to a running gateway without dropping requests.

Backends are matched by name within their group: new ones are added, missing ones are drained and
removed (their in-flight requests finish on the objects they hold), changed ones (URL, upstream
model, provider, options, key) are replaced, unchanged ones keep their live state (breaker,
latency). New groups are added. Removing a group, or changing a group's strategy or other
settings, takes a restart: reported, not applied. So does admission control (``scheduling:``):
a new group with the section is served without it until the restart, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.assembly import CatalogBuilder
from gateway.routing.backends import Backend, ModelCatalog, ModelGroup
from gateway.settings import Settings


@dataclass
class ReloadReport:
    """What a reload changed, and what it could not."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    added_models: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)


def _same(backend: Backend, rebuilt: Backend) -> bool:
    a, b = backend.spec, rebuilt.spec
    return (
        type(backend.provider) is type(rebuilt.provider)
        and a.url == b.url
        and a.model == b.model
        and a.api_key == b.api_key
        and a.options == b.options
        and a.weight == b.weight
        and a.timeouts == b.timeouts
    )


def apply_settings(
    catalog: ModelCatalog, settings: Settings, builder: CatalogBuilder
) -> ReloadReport:
    """Reconcile ``catalog`` with ``settings`` (already validated).

    Raises:
        ConfigError: a backend or group of the new settings cannot be built; nothing changed.
    """
    report = ReloadReport()
    current = {g.name: g for g in catalog.groups}
    plans: list[tuple[ModelGroup | None, ModelGroup | list[Backend]]] = []
    for gi, gs in enumerate(settings.models):
        group = current.get(gs.name)
        if group is None:
            plans.append((None, builder.group(gs, gi, settings.source)))
            if gs.scheduling is not None:
                report.needs_restart.append(
                    f"{gs.name}: new model; its scheduling section applies after a restart"
                )
            continue
        wanted = [
            builder.backend(bs, gs, bi, settings.source, f"models[{gi}].backends[{bi}]")
            for bi, bs in enumerate(gs.backends)
        ]
        plans.append((group, wanted))
        if gs.routing != group.settings.routing or gs.aliases != group.settings.aliases:
            report.needs_restart.append(f"{gs.name}: routing or aliases changed")
        if gs.scheduling != group.settings.scheduling:
            report.needs_restart.append(f"{gs.name}: scheduling changed")
    for name in current.keys() - {gs.name for gs in settings.models}:
        report.needs_restart.append(f"{name}: model removed from the file")
    for group, plan in plans:  # everything was built: now apply
        if group is None:
            assert not isinstance(plan, list)
            catalog.add(plan)
            report.added_models.append(plan.name)
            continue
        assert isinstance(plan, list)
        live = {b.name: b for b in group.backends}
        result = []
        for rebuilt in plan:
            old = live.pop(rebuilt.name, None)
            if old is not None and _same(old, rebuilt):
                result.append(old)
                continue
            result.append(rebuilt)
            (report.replaced if old is not None else report.added).append(rebuilt.name)
            if old is not None:
                old.draining = True
        for gone in live.values():
            gone.draining = True
            report.removed.append(gone.name)
        group.backends = result
    return report
