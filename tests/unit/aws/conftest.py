"""One moto server for the module's tests (each test makes its own queue, bucket, table...),
with the AWS environment pointing boto3 at it; serialised, so that concurrent DynamoDB writers
see DynamoDB's atomicity (see ``running_moto``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.moto_server import Moto, running_moto


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        running_moto(monkeypatch, serialized=True) as server,
    ):
        yield server
