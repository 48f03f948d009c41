"""``gateway control usage-rollup`` in process: batches of lines, exit statuses and messages."""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import msgspec
import pytest

from gateway.control import rollup_cli
from gateway.governance.sinks import UsageRecord
from gateway.governance.usage_json import usage_dict


def write_config(tmp_path: Path, ledger: str) -> Path:
    path = tmp_path / "gateway.yaml"
    control = {"ledger": {"backend": "sqlite", "options": {"path": ledger}}}
    path.write_text(json.dumps({"models": [], "control": control}))
    return path


def records_file(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "usage.jsonl"
    lines = [
        msgspec.json.encode(
            usage_dict(
                UsageRecord(
                    "chat",
                    "chat-0",
                    n,
                    2 * n,
                    request_id=f"r{n}",
                    key_id=None,
                    tenant=None,
                    cost_nanos=10**9 + n,
                    status=200,
                    started_at=1_764_547_200.0,
                    finished_at=1_764_547_201.0,
                )
            )
        ).decode()
        for n in range(count)
    ]
    path.write_text("\n".join(lines) + "\n\n")  # a blank line is no item
    return path


def run(config: Path | None, *files: Path) -> int:
    parser = argparse.ArgumentParser()
    rollup_cli.SUBCOMMAND.add_arguments(parser)
    argv = ([] if config is None else ["--config", str(config)]) + [str(f) for f in files]
    return rollup_cli.SUBCOMMAND.run(parser.parse_args(argv))


def test_lines_are_rolled_up_in_batches_and_summed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(rollup_cli, "BATCH_LINES", 7)
    ledger = tmp_path / "ledger.sqlite3"
    config = write_config(tmp_path, str(ledger))
    assert run(config, records_file(tmp_path, 30)) == 0
    assert "counted 30, duplicates 0, failed 0, crossings 0" in capsys.readouterr().out
    with sqlite3.connect(ledger) as db:
        row = db.execute("SELECT * FROM totals WHERE period = '2025-12-01'").fetchone()
    assert row == ("model:chat", "2025-12-01", 30 * 10**9 + 435, 435, 870, 30)


def test_without_a_config_or_a_reachable_ledger_it_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(rollup_cli.CONFIG_ENV, raising=False)
    records = records_file(tmp_path, 1)
    assert run(None, records) == 1
    assert "no --config" in capsys.readouterr().err
    # The ledger's directory is a file: it cannot be opened.
    (tmp_path / "not-a-dir").write_text("")
    config = write_config(tmp_path, str(tmp_path / "not-a-dir" / "ledger.sqlite3"))
    assert run(config, records) == 2
    assert "the usage ledger failed" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"models": [], "control": {"ledger": {"backend": "abacus"}}}))
    assert run(bad, records) == 1
    assert "control.ledger.backend" in capsys.readouterr().err
