"""docs/plugins.md documents exactly the hooks in gateway/hookspecs.py, with their arguments,
and every provider capability (``gateway.providers.base.CAPABILITIES``)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from gateway import hookspecs
from gateway.providers.base import CAPABILITIES
from gateway.routing.base import UsesEngineMetrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def declared_hooks() -> dict[str, list[str]]:
    return {
        name: list(inspect.signature(fn).parameters)
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, "gateway_spec")
    }


def documented_hooks() -> dict[str, list[str]]:
    found = re.findall(r"^### (\w+)\(([^)]*)\)$", DOC.read_text(), flags=re.MULTILINE)
    return {name: [a.strip() for a in args.split(",") if a.strip()] for name, args in found}


def test_every_hook_is_documented_with_its_arguments() -> None:
    assert documented_hooks() == declared_hooks()


def test_every_hook_has_a_contract_docstring() -> None:
    for name in declared_hooks():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc.split()) >= 15, f"{name} needs a docstring stating its contract"


def test_every_capability_is_documented() -> None:
    section = DOC.read_text().split("## Capabilities", 1)[1].split("\n## ", 1)[0]
    for capability in (*CAPABILITIES, UsesEngineMetrics):
        assert f"### {capability.__name__}\n" in section, f"document {capability.__name__}"
        assert (inspect.getdoc(capability) or "").strip(), f"{capability.__name__} needs a contract"
