"""The ``eventbridge`` budget publisher: each crossed budget threshold one EventBridge event
(detail-type ``Budget threshold crossed``, detail the :class:`BudgetCrossing` as JSON), for rules
to route to alerting (SNS, a chat webhook, the gateway's own alert sinks)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from functools import partial
from typing import Any

from gateway.control.base import BudgetCrossing
from gateway.errors import ServiceUnavailableError
from gateway_aws.aws import call, make_client, require_name

DETAIL_TYPE = "Budget threshold crossed"
PUT_EVENTS_MAX = 10  # entries per PutEvents call (the API's limit)


class EventBridgeBudgetPublisher:
    """Events put on the bus ``bus_name``.

    Args:
        bus_name: the event bus (``default``).
        source: the events' ``source`` (``gateway.budgets``), what rules match on.
        endpoint_url: the EventBridge endpoint (default: boto3's).
        region: the AWS region (default: boto3's).

    Raises:
        TypeError: bad options.
    """

    def __init__(
        self,
        bus_name: str = "default",
        source: str = "gateway.budgets",
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.bus_name = require_name("bus_name", bus_name)
        self.source = require_name("source", source)
        self.client: Any = make_client("events", endpoint_url=endpoint_url, region=region)

    async def publish(self, crossings: Sequence[BudgetCrossing]) -> None:
        """Put one event per crossing.

        Raises:
            ServiceUnavailableError: EventBridge could not be reached, or refused some entries
                (their codes named; the caller may publish the batch again).
        """
        entries = [
            {
                "EventBusName": self.bus_name,
                "Source": self.source,
                "DetailType": DETAIL_TYPE,
                "Detail": json.dumps(dataclasses.asdict(c), sort_keys=True),
            }
            for c in crossings
        ]
        failures: list[str] = []
        for start in range(0, len(entries), PUT_EVENTS_MAX):
            chunk = entries[start : start + PUT_EVENTS_MAX]
            reply = await call(
                f"events PutEvents to {self.bus_name}",
                partial(self.client.put_events, Entries=chunk),
            )
            failures.extend(
                f"{e.get('ErrorCode')}: {e.get('ErrorMessage', '')}"
                for e in reply.get("Entries", [])
                if "ErrorCode" in e
            )
        if failures:
            raise ServiceUnavailableError(
                f"events PutEvents to {self.bus_name}: {len(failures)} event(s) refused "
                f"({'; '.join(sorted(set(failures)))})"
            )

    async def aclose(self) -> None:
        self.client.close()
