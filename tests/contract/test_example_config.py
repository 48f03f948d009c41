"""The documented example config stays valid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "gateway.example.yaml"


def test_example_config_passes_check() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "OK (3 model groups, 4 backends)" in result.stdout  # the group, an agent, a workflow
