"""The rehearsal's parts on their own, with real processes: the nginx config checked by nginx,
the fleet config built by the gateway for each replica, the control schedule's rounds, and the
process groups stopped with nothing left behind."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from gateway_rehearsal.control_jobs import ControlSchedule
from gateway_rehearsal.fleet import Rehearsal, RehearsalOptions
from gateway_rehearsal.fleet_config import HOST_VAR, NAME_VAR, fleet_config, write_fleet_config
from gateway_rehearsal.nginx import nginx_conf, write_nginx_conf
from gateway_rehearsal.processes import RehearsalError, free_port, spawn, stop_all, wait_for

from gateway.app import build_state
from gateway.config_loader import settings_from_text
from tests.support.servers import eventually

pytestmark = pytest.mark.slow


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting for its parent counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_nginx_accepts_the_load_balancer_config(tmp_path: Path) -> None:
    conf = nginx_conf(tmp_path, "127.0.0.1", 18080, ["127.0.0.2:9000", "127.0.0.3:9000"])
    command = write_nginx_conf(tmp_path, conf)
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert "proxy_buffering off;" in conf
    assert conf.count("server 127.0.0.") == 2


def test_every_replica_builds_the_one_fleet_config_with_its_own_address_and_files(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fleet.yaml"
    config = fleet_config(
        work_dir=tmp_path,
        port=9000,
        redis_url="redis://127.0.0.1:1/0",
        backends=["http://127.0.0.1:9100", "http://127.0.0.1:9101"],
        backend_model="sim-model",
        replica_urls=["http://127.0.0.2:9000", "http://127.0.0.3:9000"],
    )
    write_fleet_config(path, config)
    text = path.read_text()
    built = {}
    for name, host in (("a", "127.0.0.2"), ("b", "127.0.0.3")):
        env = {NAME_VAR: name, HOST_VAR: host, "GATEWAY_MASTER_KEY": "sk-m"}
        settings = settings_from_text(text, str(path), env)
        state = build_state(settings)  # what `gateway check` builds: plugins, backends
        assert [b.name for g in state.catalog.groups for b in g.backends] == ["sim-0", "sim-1"]
        built[name] = settings
    assert (built["a"].server.host, built["b"].server.host) == ("127.0.0.2", "127.0.0.3")
    assert built["a"].server.port == built["b"].server.port == 9000
    sinks = [s.governance.usage.sinks for s in built.values()]
    assert [sink[0].options["path"] for sink in sinks if sink] == [
        f"{tmp_path}/replicas/a/usage.jsonl",
        f"{tmp_path}/replicas/b/usage.jsonl",
    ]
    assert yaml.safe_load(text)["auth"] == {"master_key": "${GATEWAY_MASTER_KEY}"}


def run_schedule(schedule: ControlSchedule, rounds: int) -> None:
    deadline = time.monotonic() + 30
    while schedule.rounds < rounds and time.monotonic() < deadline:
        schedule.tick()
        time.sleep(0.01)
    assert schedule.rounds == rounds


def test_the_control_schedule_runs_sweep_then_rollup_in_rounds(tmp_path: Path) -> None:
    schedule = ControlSchedule(
        {
            "health-sweep": ["gateway", "control", "health-sweep", "--config", "f.yaml"],
            "usage-rollup": ["gateway", "control", "usage-rollup", "u.jsonl"],
        },
        every_s=0.05,
        logs=tmp_path,
        env={"SECRET": "s3"},
        runner=[
            sys.executable,
            "-c",
            "import os, sys; print(*sys.argv[1:3], os.environ['SECRET'])",
        ],
    )
    run_schedule(schedule, 2)
    schedule.stop()
    log = (tmp_path / "control.log").read_text().splitlines()
    ran = [line for line in log if not line.startswith("==")]
    assert ran == ["control health-sweep s3", "control usage-rollup s3"] * 2
    headers = [line.split(" ", 2)[2] for line in log if line.startswith("==")]
    assert (
        headers
        == [
            "gateway control health-sweep --config f.yaml",
            "gateway control usage-rollup u.jsonl",
        ]
        * 2
    )


def test_a_schedule_of_every_zero_runs_one_round(tmp_path: Path) -> None:
    schedule = ControlSchedule(
        {"health-sweep": ["gateway", "a"], "usage-rollup": ["gateway", "b"]},
        every_s=0,
        logs=tmp_path,
        env={},
        runner=[sys.executable, "-c", "pass"],
    )
    run_schedule(schedule, 1)
    for _ in range(20):  # later ticks start nothing
        schedule.tick()
    assert (tmp_path / "control.log").read_text().count("==") == 2
    assert schedule.rounds == 1


def test_a_stop_reaches_the_whole_process_group(tmp_path: Path) -> None:
    grandchild = tmp_path / "grandchild"
    script = f"sleep 300 & echo $! > {grandchild}; exec sleep 300"
    child = spawn("group", ["sh", "-c", script], tmp_path)
    assert eventually(lambda: grandchild.exists() and grandchild.read_text().strip() != "")
    statuses = stop_all([child], grace_s=10)
    assert statuses == {"group": -15}
    assert eventually(lambda: gone(int(grandchild.read_text())))


def test_a_child_ignoring_the_graceful_signal_is_killed_after_the_grace(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ignoring', flush=True); time.sleep(300)"
    )
    child = spawn("stubborn", [sys.executable, "-c", code], tmp_path)
    assert eventually(lambda: "ignoring" in child.log_tail())
    assert stop_all([child], grace_s=0.2) == {"stubborn": -9}


def test_waiting_on_a_child_that_exits_names_it_and_shows_its_log(tmp_path: Path) -> None:
    child = spawn("broken", ["sh", "-c", "echo cannot bind; exit 3"], tmp_path)
    with pytest.raises(RehearsalError, match=r"(?s)broken exited with status 3.*cannot bind"):
        wait_for(lambda: False, "the broken part", [child], threading.Event(), 30)


def test_a_cancelled_start_stops_what_it_started(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()  # as a Ctrl-C during the start would
    rehearsal = Rehearsal(RehearsalOptions(work_dir=tmp_path), cancel=cancel)
    with pytest.raises(RehearsalError, match="interrupted"):
        rehearsal.start()
    started = rehearsal.children()
    assert [c.name for c in started] == ["redis"]
    rehearsal.stop()
    assert all(gone(c.pid) for c in started)


def test_a_fleet_needs_a_replica() -> None:
    with pytest.raises(ValueError, match="replicas"):
        Rehearsal(RehearsalOptions(replicas=0))


def test_free_ports_come_from_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    first = free_port(["127.0.0.2", "127.0.0.3"], count=3)
    assert first + 3 <= low
    for host in ("127.0.0.2", "127.0.0.3"):
        for port in range(first, first + 3):
            with socket.socket() as s:
                s.bind((host, port))  # free on every address asked for
