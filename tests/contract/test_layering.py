"""The layers stay apart: the core names no plugin, and routing knows only contracts.

- ``gateway`` never imports a package of ``plugins/`` or ``load/`` (built-ins are plugins like
  any other, found through entry points);
- ``gateway.routing`` never imports the app, its assembly, the config loader, the plugin
  machinery, the routes or the pipeline: strategies and dispatch are usable on their own.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE_CORE = sorted(
    p.name
    for d in ("plugins", "load")
    for p in (ROOT / d).iterdir()
    if (p / "__init__.py").exists()
)
ROUTING_MAY_NOT_IMPORT = (
    "gateway.app",
    "gateway.assembly",
    "gateway.cli",
    "gateway.config_loader",
    "gateway.pipeline",
    "gateway.plugins",
    "gateway.routes",
    "gateway.server",
    "gateway.state",
)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports, at any depth (function-level imports included)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module


def violations(package: Path, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        for line, module in imports_of(path):
            if any(module == f or module.startswith(f"{f}.") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


def test_the_packages_outside_the_core_are_known() -> None:
    assert "gateway_vllm" in OUTSIDE_CORE
    assert "gateway_sim" in OUTSIDE_CORE


def test_the_core_imports_no_plugin_or_harness_package() -> None:
    assert violations(ROOT / "gateway", tuple(OUTSIDE_CORE)) == []


def test_routing_imports_only_contracts() -> None:
    assert violations(ROOT / "gateway" / "routing", ROUTING_MAY_NOT_IMPORT) == []
