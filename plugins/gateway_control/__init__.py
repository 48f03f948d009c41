"""Built-in plugin: the control plane's local parts: the ``redis`` and ``directory`` control
stores, the ``sqlite`` usage ledger, the ``directory`` record archive, ``log`` budget and metric
publishers, and the ``gateway control`` commands."""

from __future__ import annotations

from gateway import hookimpl
from gateway.hookspecs import RegisterFleetScaler
from gateway_control.file_scaler import FileScaler


@hookimpl
def register_fleet_scalers(register: RegisterFleetScaler) -> None:
    """Register ``file``: desired replicas in a JSON file (``{path, initial}``)."""
    register("file", FileScaler)
