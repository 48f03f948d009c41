"""Spend reports and the audit log, read from the first usage sink that answers queries.

- ``GET /admin/spend``: spend grouped by ``group_by`` (comma-separated or repeated; any of
  ``tenant``, ``key``, ``model``, ``day``; default ``tenant``), filtered by ``tenant``, ``key``,
  ``model``, ``since`` (inclusive) and ``until`` (exclusive): a Unix time in seconds, or a UTC
  date ``YYYY-MM-DD`` (``since`` from that day's start, ``until`` to that day's end, so
  ``since=2026-11-01&until=2026-11-30`` is November). ``format=json`` (default) answers
  ``{"object": "list", "data": [{<each group_by dimension>, "requests", "prompt_tokens",
  "completion_tokens", "cached_tokens", "cost_usd"}], "total_cost_usd"}``; ``format=csv`` the
  same rows as CSV with a header. Money is an exact decimal string of US dollars (nine
  decimals: the nano-dollar), never a float.
- ``GET /admin/audit?tenant=&limit=``: the latest admin actions, newest first.

Who may read: the master key, everything; a tenant admin key, its own tenant only (its queries
are always narrowed to it; naming another tenant is 403); anyone else, 403. Authentication is
the caller's ``authorize`` (it raises for a missing or unknown key).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler

from gateway.errors import InvalidRequestError, PermissionDeniedError
from gateway.governance.sinks import (
    AuditRecord,
    SpendDimension,
    SpendQuery,
    SpendReader,
    SpendRow,
)
from gateway.identity import Principal

DIMENSIONS: tuple[SpendDimension, ...] = ("tenant", "key", "model", "day")
_DAY_S = 86_400
_MAX_AUDIT = 1000
_json = msgspec.json.Encoder()

Authorize = Callable[[Mapping[str, str]], Awaitable[Principal]]


def usd_string(nanos: int) -> str:
    """Nano-dollars as an exact US-dollar decimal string (``123456`` → ``"0.000123456"``)."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), 1_000_000_000)
    return f"{sign}{whole}.{frac:09d}"


def parse_group_by(values: list[str]) -> tuple[SpendDimension, ...]:
    """``group_by`` values (comma-separated, repeatable) as dimensions, in order.

    Raises:
        InvalidRequestError: an unknown or repeated dimension.
    """
    dims: list[SpendDimension] = []
    for value in values:
        for part in value.split(","):
            name = part.strip()
            if not name:
                continue
            if name not in DIMENSIONS:
                raise InvalidRequestError(
                    f"Unknown `group_by` dimension `{name}`; use {', '.join(DIMENSIONS)}.",
                    param="group_by",
                )
            if name in dims:
                raise InvalidRequestError(f"`group_by` names `{name}` twice.", param="group_by")
            dims.append(name)
    return tuple(dims) if dims else ("tenant",)


def parse_time(value: str | None, param: str, *, end: bool = False) -> float | None:
    """A ``since``/``until`` value as Unix time: seconds as they are, or a ``YYYY-MM-DD`` UTC
    date's start (its end, the next day's start, when ``end``).

    Raises:
        InvalidRequestError: neither a number nor a date.
    """
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN, infinities
            raise InvalidRequestError(f"`{param}` must be a finite time.", param=param)
        return seconds
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError(
            f"`{param}` must be a date (YYYY-MM-DD) or Unix seconds, got `{value}`.", param=param
        ) from None
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
    return start + _DAY_S if end else start


def row_json(row: SpendRow, dims: tuple[SpendDimension, ...]) -> dict[str, Any]:
    """A report row as the API shows it."""
    return {
        **{d: row.keys.get(d) for d in dims},
        "requests": row.requests,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "cached_tokens": row.cached_tokens,
        "cost_usd": usd_string(row.cost_nanos),
    }


def audit_json(rec: AuditRecord) -> dict[str, Any]:
    return {
        "audit_id": rec.audit_id,
        "at": rec.at,
        "actor": rec.actor,
        "action": rec.action,
        "target": rec.target,
        "tenant": rec.tenant,
        "before": rec.before,
        "after": rec.after,
    }


def _csv(rows: list[SpendRow], dims: tuple[SpendDimension, ...]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    columns = [*dims, "requests", "prompt_tokens", "completion_tokens", "cached_tokens"]
    writer.writerow([*columns, "cost_usd"])
    for row in rows:
        data = row_json(row, dims)
        writer.writerow(
            [("" if data[c] is None else data[c]) for c in columns] + [data["cost_usd"]]
        )
    return out.getvalue().encode()


def _scope(principal: Principal, tenant: str | None) -> str | None:
    """The tenant the caller's query is narrowed to (None: all), or 403."""
    if principal.admin:
        return tenant
    own = principal.tenant_admin
    if own is None:
        raise PermissionDeniedError("Spend reports need the master key or a tenant admin key.")
    if tenant is not None and tenant != own:
        raise PermissionDeniedError(
            f"A tenant admin key of `{own}` cannot read tenant `{tenant}`.", param="tenant"
        )
    return own


def _reader_or_400(reader: Callable[[], SpendReader | None]) -> SpendReader:
    found = reader()
    if found is None:
        raise InvalidRequestError(
            "No queryable usage sink is configured: add the `sqlite` sink to "
            "`governance.usage.sinks` to read spend here (other sinks are read by their "
            "consumers)."
        )
    return found


def build_spend_routes(
    reader: Callable[[], SpendReader | None], authorize: Authorize
) -> list[HTTPRouteHandler]:
    """``GET /admin/spend`` and ``GET /admin/audit``, reading ``reader()`` (called per request,
    so a ledger built after the routes is seen) and authorizing through ``authorize``."""

    @get("/admin/spend")
    async def spend(request: Request[Any, Any, Any]) -> Response[Any]:
        principal = await authorize(request.headers)
        params = request.query_params
        tenant = _scope(principal, params.get("tenant") or None)
        fmt = params.get("format") or "json"
        if fmt not in ("json", "csv"):
            raise InvalidRequestError("`format` must be `json` or `csv`.", param="format")
        dims = parse_group_by(params.getall("group_by", []))
        query = SpendQuery(
            group_by=dims,
            tenant=tenant,
            key_id=params.get("key") or None,
            model=params.get("model") or None,
            since=parse_time(params.get("since"), "since"),
            until=parse_time(params.get("until"), "until", end=True),
        )
        if query.since is not None and query.until is not None and query.until < query.since:
            raise InvalidRequestError("`until` is before `since`.", param="until")
        rows = await _reader_or_400(reader).spend(query)
        if fmt == "csv":
            return Response(_csv(rows, dims), media_type="text/csv; charset=utf-8")
        body = {
            "object": "list",
            "group_by": list(dims),
            "data": [row_json(r, dims) for r in rows],
            "total_cost_usd": usd_string(sum(r.cost_nanos for r in rows)),
        }
        return Response(_json.encode(body), media_type="application/json")

    @get("/admin/audit")
    async def audit(request: Request[Any, Any, Any]) -> Response[Any]:
        principal = await authorize(request.headers)
        params = request.query_params
        tenant = _scope(principal, params.get("tenant") or None)
        raw = params.get("limit") or "100"
        try:
            limit = int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= _MAX_AUDIT:
            raise InvalidRequestError(
                f"`limit` must be an integer from 1 to {_MAX_AUDIT}.", param="limit"
            )
        records = await _reader_or_400(reader).audit_log(tenant=tenant, limit=limit)
        body = {"object": "list", "data": [audit_json(r) for r in records]}
        return Response(_json.encode(body), media_type="application/json")

    return [spend, audit]
