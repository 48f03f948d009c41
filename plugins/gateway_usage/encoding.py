"""Records as plain mappings, the same for every sink (JSON lines, Redis stream fields, alert
payloads), so that whatever consumes them reads one shape. Usage records' shape lives in the
core (:mod:`gateway.governance.usage_json`, with its decoder): the control plane reads it too."""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.governance.limiter import Alert
from gateway.governance.records import NANOS_PER_USD
from gateway.governance.sinks import AuditRecord
from gateway.governance.usage_json import usage_dict

__all__ = ["AUDIT_FIELDS", "alert_payload", "audit_dict", "usage_dict"]

AUDIT_FIELDS = tuple(f.name for f in dataclasses.fields(AuditRecord))


def audit_dict(rec: AuditRecord) -> dict[str, Any]:
    """Every field of an audit record, by name (``before``/``after`` as mappings)."""
    return {name: getattr(rec, name) for name in AUDIT_FIELDS}


def alert_payload(alert: Alert, context: dict[str, Any], at: float) -> dict[str, Any]:
    """The JSON body every alert sink sends.

    ``window`` is the budget's window (``day``, ``month``, ``6h``), ``window_id`` the window
    that reached the threshold; ``spent_usd`` and ``limit_usd`` are numbers rounded to the
    nano-dollar (``spent_nanos``/``limit_nanos`` carry them exactly).
    """
    return {
        "type": "budget_alert",
        "scope": alert.rule.scope,
        "window": alert.rule.window,
        "window_id": alert.window,
        "threshold": alert.threshold,
        "spent_usd": round(alert.spent / NANOS_PER_USD, 9),
        "limit_usd": round(alert.limit / NANOS_PER_USD, 9),
        "spent_nanos": alert.spent,
        "limit_nanos": alert.limit,
        "tenant": context.get("tenant"),
        "key_id": context.get("key_id"),
        "at": context.get("at", at),
    }
