"""What every AWS adapter shares: one boto3 client per adapter, and calls run off the event loop
with every AWS failure turned into ``ServiceUnavailableError``.

boto3 is synchronous; each call runs in anyio's worker threads so the event loop never waits on
the network. A botocore *client* is thread-safe (its session is not), so each adapter builds its
client once, from its own session, and shares it between threads. ``endpoint_url`` defaults to
what botocore reads itself (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``), which is how
the tests point every adapter at moto's server.

The sessions share one data loader: reading a service's model files is most of what building a
client costs (about 0.1 s each), and a Lambda function builds its adapters on every invocation.
Credentials, region and endpoints are still resolved by each session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gateway.errors import ServiceUnavailableError

T = TypeVar("T")

# Standard retry mode: throttling and transient errors are retried with backoff by botocore
# itself, a few times, before an adapter reports the service unavailable.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4})
_LOADER = botocore.loaders.create_loader()  # service models, read once per process


def make_client(service: str, *, endpoint_url: str | None, region: str | None) -> Any:
    """A botocore client for ``service`` (typed ``Any``: botocore ships no type stubs).

    Raises:
        TypeError: ``endpoint_url`` or ``region`` is not a string.
    """
    if endpoint_url is not None and not isinstance(endpoint_url, str):
        raise TypeError(f"`endpoint_url` must be a URL, got {endpoint_url!r}")
    if region is not None and not isinstance(region, str):
        raise TypeError(f"`region` must be a region name, got {region!r}")
    session = botocore.session.get_session()
    session.register_component("data_loader", _LOADER)
    return session.create_client(
        service, endpoint_url=endpoint_url, region_name=region, config=_CONFIG
    )


def error_code(exc: ClientError) -> str:
    """The AWS error code of a failed call (``ConditionalCheckFailedException``...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


async def call(what: str, fn: Callable[[], T]) -> T:
    """``fn()`` in a worker thread.

    Args:
        what: the operation, for the error message (``sqs SendMessageBatch to <queue>``).

    Raises:
        ServiceUnavailableError: any AWS failure (unreachable, throttled past retries, denied,
            missing resource), naming ``what`` and AWS's reason.
    """
    try:
        return await anyio.to_thread.run_sync(fn)
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        raise ServiceUnavailableError(f"{what} failed: {error_code(exc)}: {message}") from exc
    except BotoCoreError as exc:
        raise ServiceUnavailableError(f"{what} failed: {exc}") from exc


def require_name(option: str, value: object) -> str:
    """``value`` as a non-empty string option.

    Raises:
        TypeError: it is not one.
    """
    if not isinstance(value, str) or not value:
        raise TypeError(f"`{option}` must be a non-empty string, got {value!r}")
    return value


def require_count(option: str, value: object, *, most: int | None = None) -> int:
    """``value`` as a positive integer option, at most ``most``.

    Raises:
        ValueError: it is not one.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{option}` must be a positive integer, got {value!r}")
    if most is not None and value > most:
        raise ValueError(f"`{option}` must be at most {most}, got {value}")
    return value


def key_under(prefix: str, *parts: str) -> str:
    """An S3 key: ``prefix/part/...`` (no leading slash when ``prefix`` is empty)."""
    return "/".join(p for p in (prefix.strip("/"), *parts) if p)
