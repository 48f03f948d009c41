"""``gateway control keys METHOD PATH``: the keys function from a shell, against the key store
of a config file, without a running gateway or a cloud (``gateway keys`` speaks HTTP to a
gateway instead)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from gateway.config_loader import ConfigError, load_settings
from gateway.control.keys import handle_keys, keys_service
from gateway.control.subcommands import Subcommand


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", help="GET, POST, PATCH or DELETE")
    parser.add_argument("path", help="/admin/keys, /admin/keys/<id>, /admin/tenants...")
    parser.add_argument("--config", required=True, help="the gateway config (its key store)")
    parser.add_argument("--body", default="", help="the JSON body (POST, PATCH)")
    parser.add_argument(
        "--master-key",
        default=None,
        help="the master key (default: $GATEWAY_MASTER_KEY)",
    )


def _run(args: argparse.Namespace) -> int:
    key = args.master_key or os.environ.get("GATEWAY_MASTER_KEY", "")
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    path, _, query_text = args.path.partition("?")
    query = dict(p.split("=", 1) for p in query_text.split("&") if "=" in p)

    async def call() -> tuple[int, bytes]:
        async with keys_service(settings) as (admin, authorize):
            headers = {"authorization": f"Bearer {key}"}
            answer = await handle_keys(
                admin, authorize, args.method, path, query, headers, args.body.encode()
            )
            return answer.status, answer.body

    try:
        status, body = asyncio.run(call())
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps(json.loads(body), indent=2))
    return 0 if status < 400 else 1


SUBCOMMAND = Subcommand(
    name="keys",
    help="the keys function: an admin request against the config's key store",
    add_arguments=_add_arguments,
    run=_run,
)
