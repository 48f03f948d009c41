"""``gateway spend``: a spend report from a running gateway's ``GET /admin/spend``.

    gateway spend [--by tenant,day] [--tenant T] [--key K] [--model M]
                  [--since 2026-11-01] [--until 2026-11-30] [--format table|json|csv]
                  [--url http://127.0.0.1:8080] [--admin-key KEY]

The gateway's URL comes from ``--url``, else ``GATEWAY_URL``, else ``http://127.0.0.1:8080``;
the key from ``--admin-key``, else ``GATEWAY_ADMIN_KEY``, else ``GATEWAY_MASTER_KEY`` (the master
key, or a tenant admin key for its own tenant). Exit status: 0 done, 1 the gateway refused
(its message is printed), 2 the gateway could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from gateway.commands import Command

DEFAULT_URL = "http://127.0.0.1:8080"
_NUMBERS = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--by", default="tenant", help="group by: tenant, key, model, day (comma-separated)"
    )
    parser.add_argument("--tenant", help="only this tenant")
    parser.add_argument("--key", help="only this key id")
    parser.add_argument("--model", help="only this model group")
    parser.add_argument("--since", help="from this UTC date (YYYY-MM-DD) or Unix time")
    parser.add_argument("--until", help="to this UTC date (inclusive) or Unix time (exclusive)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    parser.add_argument(
        "--url", default=None, help=f"the gateway (default: $GATEWAY_URL or {DEFAULT_URL})"
    )
    parser.add_argument(
        "--admin-key",
        default=None,
        help="the master key or a tenant admin key "
        "(default: $GATEWAY_ADMIN_KEY or $GATEWAY_MASTER_KEY)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait")


def _request(args: argparse.Namespace) -> urllib.request.Request:
    base = (args.url or os.environ.get("GATEWAY_URL") or DEFAULT_URL).rstrip("/")
    params = {
        "group_by": args.by,
        "tenant": args.tenant,
        "key": args.key,
        "model": args.model,
        "since": args.since,
        "until": args.until,
        "format": "csv" if args.format == "csv" else "json",
    }
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v})
    key = (
        args.admin_key
        or os.environ.get("GATEWAY_ADMIN_KEY")
        or os.environ.get("GATEWAY_MASTER_KEY")
    )
    headers = {"accept": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    url = f"{base}/admin/spend?{query}"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the gateway URL must be http(s)://..., got {base!r}")
    return urllib.request.Request(url, headers=headers)  # noqa: S310 (scheme checked)


def _error_message(status: int, raw: bytes) -> str:
    try:
        body = json.loads(raw)
        message = body["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = raw.decode(errors="replace").strip() or "no message"
    return f"gateway spend: the gateway answered {status}: {message}"


def table(rows: list[dict[str, Any]], dims: list[str], total: str) -> str:
    """Rows as an aligned text table (numbers right-aligned), with a total line."""
    columns = [*dims, *_NUMBERS]
    cells = [[("-" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    sums = [str(sum(int(r[c]) for r in rows)) for c in _NUMBERS[:-1]]
    label = ["total", *([""] * (len(dims) - 1))] if dims else []
    footer = [*label, *sums, total]
    widths = [max(len(line[i]) for line in [columns, *cells, footer]) for i in range(len(columns))]
    first_number = len(dims)

    def fmt(line: list[str]) -> str:
        parts = [
            cell.rjust(w) if i >= first_number else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = fmt(["-" * w for w in widths])
    lines = [fmt(columns), rule, *(fmt(line) for line in cells)]
    if not rows:
        lines.append("(no usage)")
    elif dims:
        lines += [rule, fmt(footer)]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Fetch the report and print it; the exit status."""
    try:
        request = _request(args)
    except ValueError as exc:
        print(f"gateway spend: {exc}", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as resp:  # noqa: S310
            raw = resp.read()
    except urllib.error.HTTPError as err:
        print(_error_message(err.code, err.read()), file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"gateway spend: cannot reach {request.full_url}: {reason}", file=sys.stderr)
        return 2
    if args.format == "csv":
        sys.stdout.write(raw.decode())
        return 0
    body = json.loads(raw)
    if args.format == "json":
        print(json.dumps(body, indent=2))
        return 0
    dims = body.get("group_by") or [d for d in args.by.split(",") if d.strip()]
    print(table(body["data"], dims, body["total_cost_usd"]))
    return 0


SPEND_COMMAND = Command(
    help="print a spend report from a running gateway (GET /admin/spend)",
    add_arguments=_add_arguments,
    run=run,
)
