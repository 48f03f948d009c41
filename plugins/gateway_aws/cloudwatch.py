"""The ``cloudwatch`` metric publisher: the control plane's measurements (health-sweep results)
as CloudWatch custom metrics."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from gateway.control.base import MetricPoint
from gateway_aws.aws import call, make_client, require_count, require_name

# PutMetricData takes 1000 points per call (20 before 2023, as some compatible endpoints still).
PUT_METRIC_DATA_MAX = 1000


def _datum(point: MetricPoint) -> dict[str, Any]:
    return {
        "MetricName": point.name,
        "Value": float(point.value),
        "Unit": point.unit,
        "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(point.dimensions.items())],
    }


class CloudWatchMetricPublisher:
    """Points put with ``PutMetricData``, ``max_per_call`` at a time.

    Args:
        namespace: the namespace every point goes to, instead of the one the job names (None:
            the job's, ``Gateway/Control``...).
        max_per_call: points per call (1000; 20 for endpoints with the old limit).
        endpoint_url: the CloudWatch endpoint (default: boto3's).
        region: the AWS region (default: boto3's).

    Raises:
        TypeError, ValueError: bad options.
    """

    def __init__(
        self,
        namespace: str | None = None,
        max_per_call: int = PUT_METRIC_DATA_MAX,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.namespace = None if namespace is None else require_name("namespace", namespace)
        self.max_per_call = require_count("max_per_call", max_per_call, most=PUT_METRIC_DATA_MAX)
        self.client: Any = make_client("cloudwatch", endpoint_url=endpoint_url, region=region)

    async def put(self, namespace: str, points: Sequence[MetricPoint]) -> None:
        """Put ``points`` under ``namespace`` (or the configured override).

        Raises:
            ServiceUnavailableError: CloudWatch could not be reached or refused the data.
        """
        target = self.namespace or namespace
        data = [_datum(p) for p in points]
        for start in range(0, len(data), self.max_per_call):
            await call(
                f"cloudwatch PutMetricData to {target}",
                partial(
                    self.client.put_metric_data,
                    Namespace=target,
                    MetricData=data[start : start + self.max_per_call],
                ),
            )

    async def aclose(self) -> None:
        self.client.close()
