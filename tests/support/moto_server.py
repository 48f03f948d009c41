"""moto's server on loopback, for the control plane's AWS side: boto3 clients reach it through
``AWS_ENDPOINT_URL`` (as the Lambda handlers would reach AWS), with fake credentials."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support.processes import free_port

REGION = "us-east-1"


@dataclass(frozen=True)
class Moto:
    """A running moto server: its URL, and boto3 clients for it."""

    url: str

    def client(self, service: str) -> object:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@contextmanager
def running_moto(monkeypatch: pytest.MonkeyPatch | None = None) -> Iterator[Moto]:
    """A moto server for the block; with ``monkeypatch``, the AWS environment variables point
    every boto3 client at it (restored at the end of the test)."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    moto = Moto(f"http://127.0.0.1:{port}")
    if monkeypatch is not None:
        for name, value in {
            "AWS_ENDPOINT_URL": moto.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }.items():
            monkeypatch.setenv(name, value)
    try:
        yield moto
    finally:
        server.stop()
