"""The ``gateway`` command: serve, check, plugins, and the commands plugins register."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from collections.abc import Sequence

import msgspec

from gateway import __version__
from gateway.app import build_state
from gateway.commands import Command
from gateway.config_loader import ConfigError, load_settings
from gateway.plugins import PluginError, collect_registries, make_plugin_manager
from gateway.settings import Settings

CONFIG_ENV = "GATEWAY_CONFIG"
DOCS_HINT = "configure your own backends: see docs/configuration.md"


def _fail(message: str, status: int = 2) -> int:
    print(f"gateway: error: {message}", file=sys.stderr)
    return status


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(info[4][0]).is_loopback
                for info in socket.getaddrinfo(host, None)
            )
        except (OSError, ValueError):
            return False


def resolve_settings(config: str | None) -> tuple[Settings, list[str]]:
    """The settings to serve and banner notes: the file, else what the plugins' default sources
    find in the environment, else the backends their embedded defaults start (the simulator's).

    Raises:
        ConfigError: the config (file or environment) is invalid, or there is nothing to serve.
        PluginError: the plugins could not be loaded.
    """
    from gateway.defaults import embedded_settings, settings_from_environment

    path = config or os.environ.get(CONFIG_ENV)
    if path:
        return load_settings(path), []
    registries = collect_registries(make_plugin_manager())
    sources = [source for _, source in registries.default_sources.items()]
    settings = settings_from_environment(os.environ, sources)
    if settings is not None:
        return settings, [f"no config file: serving backends from the environment; {DOCS_HINT}"]
    started = [default.start() for _, default in registries.embedded_defaults.items()]
    notes = [f"no config file and no backends in the environment: {s.note}" for s in started]
    return embedded_settings(started, os.environ), [*notes, DOCS_HINT]


def cmd_serve(args: argparse.Namespace) -> int:
    """Validate the config, then serve until SIGTERM/SIGINT."""
    from gateway.server import serve_forever

    try:
        settings, notes = resolve_settings(args.config)
        overrides = {
            k: v
            for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers))
            if v is not None
        }
        if args.allow_unauthenticated:
            overrides["allow_unauthenticated"] = True
        server = msgspec.structs.replace(settings.server, **overrides)
        settings = msgspec.structs.replace(settings, server=server)
        if not (is_loopback(server.host) or settings.auth.enabled or server.allow_unauthenticated):
            return _fail(
                f"refusing to serve {server.host} with no API keys: set auth.api_keys "
                "or GATEWAY_MASTER_KEY, or pass --allow-unauthenticated"
            )
        state = build_state(settings)
    except (ConfigError, PluginError) as exc:
        return _fail(str(exc))
    lines = [
        f"gateway {__version__} on http://{server.host}:{server.port} "
        f"({server.workers} worker{'s' if server.workers > 1 else ''}; config: "
        f"{settings.source}; auth: {'on' if settings.auth.enabled else 'off'})"
    ]
    for group in state.catalog.groups:
        lines.append(
            f"  model {group.name}: {len(group.backends)} backend(s), "
            f"{group.settings.routing.strategy}"
        )
    lines += [f"  note: {n}" for n in notes]
    print("\n".join(lines), file=sys.stderr, flush=True)
    serve_forever(settings)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a config file, providers and strategies included, without serving."""
    try:
        settings = load_settings(args.file)
        state = build_state(settings)
    except (ConfigError, PluginError) as exc:
        return _fail(str(exc), 1)
    backends = sum(len(g.backends) for g in state.catalog.groups)
    print(f"{args.file}: OK ({len(state.catalog.groups)} model groups, {backends} backends)")
    return 0


def cmd_plugins(_: argparse.Namespace) -> int:
    """List loaded plugins and what each registered."""
    pm = make_plugin_manager()
    registries = collect_registries(pm)
    for name, _plugin in sorted(pm.list_name_plugin(), key=lambda item: str(item[0])):
        if name is None:
            continue
        owned = [
            f"{kind}: {item}"
            for kind, registry in registries.kinds().items()
            for item in registry
            if registry.owner(item) == name
        ]
        print(f"{name}")
        for line in owned or ["(registers nothing)"]:
            print(f"  {line}")
    return 0


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help=f"YAML config file (default: ${CONFIG_ENV}, else the embedded default)"
    )
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8080)")
    parser.add_argument("--workers", type=int, help="worker processes (default 1)")
    parser.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve a non-loopback address with no API keys",
    )


def _add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="YAML config file")


BUILTIN_COMMANDS = {
    "serve": Command("serve the gateway", _add_serve_arguments, cmd_serve),
    "check": Command("validate a config file without serving", _add_check_arguments, cmd_check),
    "plugins": Command("list plugins and what they register", lambda p: None, cmd_plugins),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with plugin commands added."""
    parser = argparse.ArgumentParser(prog="gateway", description="OpenAI-compatible gateway")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = dict(BUILTIN_COMMANDS)
    try:
        registries = collect_registries(make_plugin_manager())
        for name in registries.commands:
            command = registries.commands.get(name)
            if command is not None and name not in commands:
                commands[name] = command
    except PluginError as exc:
        print(f"gateway: warning: plugin commands unavailable: {exc}", file=sys.stderr)
    for name, command in commands.items():
        child = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(child)
        child.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gateway`` console script."""
    args = build_parser().parse_args(argv)
    status: int = args._run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
