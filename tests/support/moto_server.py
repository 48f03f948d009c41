"""moto's server on loopback, for the control plane's AWS side: boto3 clients reach it through
``AWS_ENDPOINT_URL`` (as the Lambda handlers would reach AWS), with fake credentials."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

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


def _reset(port: int) -> None:
    """moto keeps its fake AWS in the process, across servers: each block starts empty."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()


@contextmanager
def _serving(port: int, *, serialized: bool) -> Iterator[None]:
    if not serialized:
        threaded = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        threaded.start()
        try:
            _reset(port)
            yield
        finally:
            threaded.stop()
        return
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", port, app, False, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    thread.start()
    try:
        _reset(port)
        yield
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@contextmanager
def running_moto(
    monkeypatch: pytest.MonkeyPatch | None = None, *, serialized: bool = False
) -> Iterator[Moto]:
    """A moto server for the block; with ``monkeypatch``, the AWS environment variables point
    every boto3 client at it (restored at the end of the test).

    With ``serialized``, it serves one request at a time: moto applies a DynamoDB transaction
    (or an ``ADD`` creating an item) without a lock, so two at once can lose each other's
    writes, where DynamoDB serialises them; tests of concurrent writers need this (and must
    not long-poll, which would hold every other request).
    """
    port = free_port()
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
    with _serving(port, serialized=serialized):
        yield moto


def create_autoscaling_group(
    moto: Moto, name: str, *, min_size: int, max_size: int, desired: int
) -> None:
    """An Auto Scaling group ``name`` in moto (it needs a launch template and a subnet)."""
    ec2: Any = moto.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    ec2.create_launch_template(
        LaunchTemplateName=f"{name}-template",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
    )
    autoscaling: Any = moto.client("autoscaling")
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": f"{name}-template", "Version": "$Latest"},
        MinSize=min_size,
        MaxSize=max_size,
        DesiredCapacity=desired,
        VPCZoneIdentifier=subnet,
    )
