"""The admin API's request bodies for keys and tenants, strictly typed, and their decoding.

Every field is optional (``UNSET`` when absent) except a new tenant's ``name``, so that one
set of rules serves creation (absent: the default) and partial updates (absent: unchanged;
``null``: cleared). Unknown fields and wrong types are refused with the field named as
``param`` in msgspec's path notation (``budgets[0].window``; a dict's key reads ``[...]``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from gateway.errors import InvalidRequestError
from gateway.governance.records import Budget, Limits, Name, Role, window_seconds

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]

B = TypeVar("B", bound=msgspec.Struct)

_AT_RE = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_FIELD_RE = re.compile(r"(?:unknown|missing required) field `(?P<field>[^`]+)`")


class BudgetBody(msgspec.Struct, forbid_unknown_fields=True):
    """A budget as the API takes it: ``{"usd": 50, "window": "month"}``."""

    usd: Annotated[float, msgspec.Meta(gt=0)]
    window: str = "month"
    alert_thresholds: list[float] | None = None


class LimitsBody(msgspec.Struct, forbid_unknown_fields=True):
    """A model group's limits (``model_limits``)."""

    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    max_parallel: PositiveInt | None = None
    budgets: list[BudgetBody] = msgspec.field(default_factory=list)


class HolderBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What keys and tenants share (see :class:`~gateway.governance.records.KeyRecord`).

    ``expires_in`` (``30d``, ``12h``...) sets ``expires_at`` from now; give one or the other.
    """

    models: list[str] | UnsetType | None = UNSET
    rpm: PositiveInt | UnsetType | None = UNSET
    tpm: PositiveInt | UnsetType | None = UNSET
    max_parallel: PositiveInt | UnsetType | None = UNSET
    budgets: list[BudgetBody] | UnsetType = UNSET
    model_limits: dict[str, LimitsBody] | UnsetType = UNSET
    priority: int | UnsetType = UNSET
    max_priority: int | UnsetType | None = UNSET
    weight: Annotated[float, msgspec.Meta(gt=0)] | UnsetType = UNSET
    queue_timeout_s: Annotated[float, msgspec.Meta(gt=0)] | UnsetType | None = UNSET
    metadata: dict[str, str] | UnsetType = UNSET
    expires_at: float | UnsetType | None = UNSET
    expires_in: str | UnsetType | None = UNSET
    blocked: bool | UnsetType = UNSET
    cost_policy: str | UnsetType | None = UNSET


class KeyCreateBody(HolderBody, kw_only=True):
    """``POST /admin/keys``: the tenant defaults to a tenant admin's own (none for master)."""

    tenant: Name | UnsetType | None = UNSET
    name: Label | UnsetType | None = UNSET
    role: Role | UnsetType = UNSET


class KeyUpdateBody(HolderBody, kw_only=True):
    """``PATCH /admin/keys/{id}``: a key's tenant never changes (make a new key)."""

    name: Label | UnsetType | None = UNSET
    role: Role | UnsetType = UNSET


class TenantCreateBody(HolderBody, kw_only=True):
    """``POST /admin/tenants``."""

    name: Name


class TenantUpdateBody(HolderBody, kw_only=True):
    """``PATCH /admin/tenants/{name}``: a tenant's name never changes."""


def _param(path: str, message: str) -> str | None:
    param = path.lstrip(".")
    if (field := _FIELD_RE.search(message)) is not None:
        param = f"{param}.{field.group('field')}" if param else field.group("field")
    return param or None


def decode_body(body: bytes | Mapping[str, Any], kind: type[B]) -> B:
    """``body`` (JSON bytes, or an already decoded mapping) as a ``kind``; empty bytes read as
    ``{}``.

    Raises:
        InvalidRequestError: not JSON, not an object, an unknown field or a wrong type, with
            ``param`` naming the field.
    """
    try:
        if isinstance(body, bytes | bytearray):
            return msgspec.json.decode(bytes(body) or b"{}", type=kind)
        return msgspec.convert(dict(body), kind)
    except msgspec.ValidationError as exc:
        match = _AT_RE.match(str(exc))
        message = match.group("message") if match else str(exc)
        path = (match.group("path") or "") if match else ""
        raise InvalidRequestError(f"Invalid request: {exc}", param=_param(path, message)) from None
    except msgspec.DecodeError:
        raise InvalidRequestError("The request body is not valid JSON.") from None
    except RecursionError:
        raise InvalidRequestError("The request body nests too deeply.") from None


def _budget(body: BudgetBody, param: str) -> Budget:
    try:
        window_seconds(body.window)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param=f"{param}.window") from None
    try:
        if body.alert_thresholds is None:
            return Budget(body.usd, body.window)
        return Budget(body.usd, body.window, tuple(body.alert_thresholds))
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param=f"{param}.alert_thresholds") from None


def _expiry(changes: dict[str, Any], now: float) -> None:
    expires_in = changes.pop("expires_in")
    if "expires_at" in changes:
        raise InvalidRequestError(
            "Give `expires_at` or `expires_in`, not both.", param="expires_in"
        )
    seconds = None
    if expires_in is not None:
        try:
            seconds = window_seconds(expires_in)
        except ValueError:
            seconds = None
        if seconds is None:  # (a calendar window is no duration)
            raise InvalidRequestError(
                f"`{expires_in}` is not a duration like 30d, 12h or 90m.", param="expires_in"
            )
    changes["expires_at"] = None if seconds is None else now + seconds


def holder_changes(
    request: HolderBody,
    now: float,
    known_models: Callable[[], Collection[str]],
    known_policies: Callable[[], Collection[str]] | None = None,
) -> dict[str, Any]:
    """The record fields ``request`` sets, as record values, each checked: models against
    ``known_models()``, a cost policy against ``known_policies()`` (when given), budget windows
    and thresholds, ``expires_in`` from ``now``. A key's
    ``tenant`` and a tenant's ``name`` are left out (the caller decides them).

    Raises:
        InvalidRequestError: the first field at fault, named as ``param``.
    """
    changes: dict[str, Any] = {
        name: value
        for name in request.__struct_fields__
        if (value := getattr(request, name)) is not UNSET
    }
    changes.pop("tenant", None)
    if isinstance(request, TenantCreateBody):
        changes.pop("name", None)
    models = changes.get("models")
    known: set[str] = set()
    if models is not None or changes.get("model_limits"):
        known = set(known_models())
    if models is not None and (unknown := sorted(set(models) - known)):
        raise InvalidRequestError(f"Unknown model(s): {', '.join(unknown)}.", param="models")
    policy = changes.get("cost_policy")
    if policy is not None and known_policies is not None and policy not in known_policies():
        raise InvalidRequestError(
            f"Unknown cost policy `{policy}`; defined: "
            f"{', '.join(sorted(known_policies())) or 'none'} (governance.cost_policies).",
            param="cost_policy",
        )
    if "budgets" in changes:
        changes["budgets"] = [_budget(b, f"budgets[{i}]") for i, b in enumerate(changes["budgets"])]
    if "model_limits" in changes:
        limits = {}
        for group, body in changes["model_limits"].items():
            if group not in known:
                raise InvalidRequestError(f"Unknown model `{group}`.", param="model_limits")
            budgets = tuple(
                _budget(b, f"model_limits.{group}.budgets[{i}]") for i, b in enumerate(body.budgets)
            )
            limits[group] = Limits(body.rpm, body.tpm, body.max_parallel, budgets)
        changes["model_limits"] = limits
    if "expires_in" in changes:
        _expiry(changes, now)
    return changes
