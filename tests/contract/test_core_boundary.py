"""The core (``gateway/``) imports no plugin package: vendors and the simulator reach it only
through hooks (DESIGN.md section 2)."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "gateway"
OUTSIDE = ("gateway_", "plugins", "load")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_the_core_imports_no_plugin_package() -> None:
    offending = {
        f"{path.relative_to(CORE.parent)}: {module}"
        for path in CORE.rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0].startswith(OUTSIDE)
    }
    assert not offending
