"""``gateway keys`` and ``gateway tenants``: the admin API of keys and tenants, from a shell.

They speak HTTP to a running gateway (``--url``, default ``$GATEWAY_URL`` or
``http://127.0.0.1:8080``) with an admin key (``--admin-key``, default ``$GATEWAY_ADMIN_KEY``
or ``$GATEWAY_MASTER_KEY``: the master key, or a tenant admin key), so validation, roles and the
audit log are the server's. Output is for people unless ``--json`` (the server's JSON as is).

Exit status: 0 done; 1 the server refused (its message is printed); 2 the gateway could not be
reached, or no admin key was given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from gateway.commands import Command

DEFAULT_URL = "http://127.0.0.1:8080"
_CLEAR = "none"


class _CommandError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# -- option types --------------------------------------------------------------------------


def _limit(text: str) -> int | str:
    """A positive integer, or ``none`` to clear the limit."""
    if text.lower() == _CLEAR:
        return _CLEAR
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a whole number (or none)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"`{text}` must be at least 1 (or none)")
    return value


def _budget(text: str) -> dict[str, Any]:
    """``USD[:WINDOW]``: ``50:month``, ``5:day``, ``1.5:6h``."""
    amount, _, window = text.partition(":")
    try:
        usd = float(amount)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not USD[:WINDOW], like 50:month") from None
    return {"usd": usd, "window": window or "month"}


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"`{text}` is not KEY=VALUE")
    return key, value


# -- arguments -----------------------------------------------------------------------------


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"the gateway (default $GATEWAY_URL, else {DEFAULT_URL})")
    parser.add_argument(
        "--admin-key", help="master or tenant admin key (default $GATEWAY_ADMIN_KEY)"
    )
    parser.add_argument("--json", action="store_true", help="print the server's JSON")
    parser.add_argument("--timeout", type=float, default=30.0, help=argparse.SUPPRESS)


def _holder(parser: argparse.ArgumentParser, *, update: bool) -> None:
    """The options keys and tenants share."""
    parser.add_argument(
        "--model", action="append", dest="models", help="allowed model group (repeat; all if none)"
    )
    parser.add_argument("--rpm", type=_limit, help="requests per minute (none: no limit)")
    parser.add_argument("--tpm", type=_limit, help="tokens per minute (none: no limit)")
    parser.add_argument("--max-parallel", type=_limit, help="requests at once (none: no limit)")
    parser.add_argument(
        "--budget", action="append", type=_budget, dest="budgets", help="USD[:WINDOW] (repeat)"
    )
    parser.add_argument("--priority", type=int, help="scheduling priority (higher first)")
    parser.add_argument("--metadata", action="append", type=_pair, help="KEY=VALUE label (repeat)")
    parser.add_argument("--expires-in", help="a duration: 30d, 12h, 90m")
    parser.add_argument("--cost-policy", help="a configured cost policy's name")
    if update:
        parser.add_argument("--all-models", action="store_true", help="allow every model")
        parser.add_argument("--no-budgets", action="store_true", help="remove every budget")
        parser.add_argument("--no-expiry", action="store_true", help="never expire")
        blocked = parser.add_mutually_exclusive_group()
        blocked.add_argument("--block", dest="blocked", action="store_const", const=True)
        blocked.add_argument("--unblock", dest="blocked", action="store_const", const=False)
    else:
        parser.add_argument("--block", dest="blocked", action="store_const", const=True)


def _add_keys_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create a key (prints it once)")
    create.add_argument("--tenant", help="its tenant (a tenant admin's own by default)")
    create.add_argument("--name", help="a label")
    create.add_argument("--role", choices=("user", "admin"), help="admin: manages its tenant")
    _holder(create, update=False)
    listing = sub.add_parser("list", help="list keys")
    listing.add_argument("--tenant", help="only this tenant's")
    show = sub.add_parser("show", help="a key and its usage")
    show.add_argument("id")
    update = sub.add_parser("update", help="change a key's settings")
    update.add_argument("id")
    update.add_argument("--name", help="a label")
    update.add_argument("--role", choices=("user", "admin"))
    _holder(update, update=True)
    revoke = sub.add_parser("revoke", help="revoke a key for good")
    revoke.add_argument("id")
    for child in (create, listing, show, update, revoke):
        _connection(child)


def _add_tenants_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create a tenant")
    create.add_argument("name")
    _holder(create, update=False)
    listing = sub.add_parser("list", help="list tenants")
    show = sub.add_parser("show", help="a tenant")
    show.add_argument("name")
    update = sub.add_parser("update", help="change a tenant's settings")
    update.add_argument("name")
    _holder(update, update=True)
    remove = sub.add_parser("delete", help="delete a tenant that has no keys")
    remove.add_argument("name")
    for child in (create, listing, show, update, remove):
        _connection(child)


def _body(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The request body: only the options given (``none`` sends null: cleared)."""
    body: dict[str, Any] = {}
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            body[name] = None if value == _CLEAR else value
    if getattr(args, "metadata", None):
        body["metadata"] = dict(args.metadata)
    if getattr(args, "all_models", False):
        body["models"] = None
    if getattr(args, "no_budgets", False):
        body["budgets"] = []
    if getattr(args, "no_expiry", False):
        body["expires_at"] = None
    return body


_HOLDER = (
    "models",
    "rpm",
    "tpm",
    "max_parallel",
    "budgets",
    "priority",
    "expires_in",
    "cost_policy",
    "blocked",
)

# -- HTTP ----------------------------------------------------------------------------------


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    base = (args.url or os.environ.get("GATEWAY_URL") or DEFAULT_URL).rstrip("/")
    key = (
        args.admin_key
        or os.environ.get("GATEWAY_ADMIN_KEY")
        or os.environ.get("GATEWAY_MASTER_KEY")
    )
    if not key:
        raise _CommandError(2, "no admin key: pass --admin-key or set GATEWAY_ADMIN_KEY")
    if not base.startswith(("http://", "https://")):
        raise _CommandError(2, f"--url must be an http(s):// URL, got `{base}`")
    request = urllib.request.Request(  # noqa: S310 (the scheme was checked above)
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={
            "authorization": f"Bearer {key}",
            "content-type": "application/json",
            "accept": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:  # noqa: S310
            raw = response.read()
    except urllib.error.HTTPError as err:
        raise _CommandError(1, f"error {err.code}: {_message(err.read())}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise _CommandError(2, f"cannot reach the gateway at {base}: {reason}") from None
    return json.loads(raw) if raw else None


def _message(raw: bytes) -> str:
    try:
        error = json.loads(raw)["error"]
    except (ValueError, KeyError, TypeError):
        return raw.decode(errors="replace").strip() or "(no message)"
    param = f" [{error['param']}]" if error.get("param") else ""
    return f"{error.get('message', '')}{param}"


def _quoted(value: str) -> str:
    return urllib.parse.quote(value, safe="")


# -- output --------------------------------------------------------------------------------


def _budgets(record: dict[str, Any]) -> str:
    return ", ".join(f"${b['usd']:g}/{b['window']}" for b in record.get("budgets") or []) or "-"


def _cell(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


_FIRST = ("id", "name", "tenant", "role", "status")


def _text(name: str, value: Any, record: dict[str, Any]) -> str:
    if name == "budgets":
        return _budgets(record)
    if name.endswith("_at") and isinstance(value, int | float) and value:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return _cell(value)
    if isinstance(value, dict | list) and value:
        return json.dumps(value, sort_keys=True)
    return _cell(value)


def _details(record: dict[str, Any]) -> None:
    names = [n for n in _FIRST if n in record] + [n for n in record if n not in _FIRST]
    for name in names:
        print(f"{name + ':':16}{_text(name, record[name], record)}")


def _limits(r: dict[str, Any]) -> list[str]:
    fields = ("models", "rpm", "tpm", "max_parallel")
    return [*(_cell(r.get(name)) for name in fields), _budgets(r)]


def _print_keys(answer: dict[str, Any]) -> None:
    head = ["ID", "NAME", "TENANT", "ROLE", "STATUS", "MODELS", "RPM", "TPM", "PARALLEL", "BUDGETS"]
    rows = [
        [r["id"], _cell(r.get("name")), _cell(r.get("tenant")), r["role"], r["status"], *_limits(r)]
        for r in answer["data"]
    ]
    if rows:
        _table([head, *rows])
    else:
        print("No keys.")


def _print_tenants(answer: dict[str, Any]) -> None:
    head = ["NAME", "MODELS", "RPM", "TPM", "PARALLEL", "BUDGETS", "BLOCKED"]
    rows = [[r["name"], *_limits(r), "yes" if r.get("blocked") else "no"] for r in answer["data"]]
    if rows:
        _table([head, *rows])
    else:
        print("No tenants.")


# -- the commands --------------------------------------------------------------------------


def _keys(args: argparse.Namespace) -> tuple[Any, str | None]:
    action = args.action
    if action == "create":
        answer = _call(
            args, "POST", "/admin/keys", _body(args, ("tenant", "name", "role", *_HOLDER))
        )
        return answer, (
            f"Created key {answer['id']} (tenant {answer.get('tenant') or '-'},"
            f" role {answer['role']}):\n\n    {answer['key']}\n\n"
            "Save it now: it is not shown again."
        )
    if action == "list":
        query = f"?tenant={_quoted(args.tenant)}" if args.tenant else ""
        return _call(args, "GET", f"/admin/keys{query}"), None
    path = f"/admin/keys/{_quoted(args.id)}"
    if action == "show":
        return _call(args, "GET", path), None
    if action == "update":
        body = _body(args, ("name", "role", *_HOLDER))
        return _call(args, "PATCH", path, body), f"Updated key {args.id}."
    return _call(args, "POST", f"{path}/revoke"), f"Revoked key {args.id}."


def _tenants(args: argparse.Namespace) -> tuple[Any, str | None]:
    action = args.action
    if action == "create":
        body = {"name": args.name, **_body(args, _HOLDER)}
        return _call(args, "POST", "/admin/tenants", body), f"Created tenant {args.name}."
    if action == "list":
        return _call(args, "GET", "/admin/tenants"), None
    path = f"/admin/tenants/{_quoted(args.name)}"
    if action == "show":
        return _call(args, "GET", path), None
    if action == "update":
        return _call(args, "PATCH", path, _body(args, _HOLDER)), f"Updated tenant {args.name}."
    return _call(args, "DELETE", path), f"Deleted tenant {args.name}."


def _run(args: argparse.Namespace, tenants: bool) -> int:
    try:
        answer, summary = _tenants(args) if tenants else _keys(args)
    except _CommandError as failure:
        print(f"gateway: {failure}", file=sys.stderr)
        return failure.status
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
    elif args.action == "list":
        (_print_tenants if tenants else _print_keys)(answer)
    elif summary is not None:
        print(summary)
        # (a new key's summary is the key itself; a deleted tenant has nothing left to show)
        if (args.action, tenants) not in (("create", False), ("delete", True)):
            print()
            _details(answer)
    else:
        _details(answer)
    return 0


KEYS_COMMAND = Command(
    "manage virtual keys through the admin API (create, list, show, update, revoke)",
    _add_keys_arguments,
    lambda args: _run(args, tenants=False),
)
TENANTS_COMMAND = Command(
    "manage tenants through the admin API (create, list, show, update, delete)",
    _add_tenants_arguments,
    lambda args: _run(args, tenants=True),
)
