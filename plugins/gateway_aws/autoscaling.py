"""The ``aws_autoscaling`` fleet scaler: a model group's replicas are an EC2 Auto Scaling
group's instances, and scaling is its desired capacity.

``set_desired`` uses ``HonorCooldown=False``: the scale-fleet job keeps its own cooldowns
(``ScalingPolicy``), and the group's would silently refuse its decisions. The policy bounds the
replicas; the scaler only refuses a number the group itself cannot take (outside its
``MinSize``..``MaxSize``), with an error naming both.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from gateway.errors import ServiceUnavailableError
from gateway_aws.aws import call, make_client, require_name


class AutoScalingFleetScaler:
    """The Auto Scaling group ``group_name``.

    Args:
        group_name: the group's name.
        endpoint_url: the Auto Scaling endpoint (default: boto3's).
        region: the AWS region (default: boto3's).

    Raises:
        TypeError: bad options.
    """

    def __init__(
        self, group_name: str, endpoint_url: str | None = None, region: str | None = None
    ) -> None:
        self.group_name = require_name("group_name", group_name)
        self.client: Any = make_client("autoscaling", endpoint_url=endpoint_url, region=region)

    async def _describe(self) -> dict[str, Any]:
        reply = await call(
            f"autoscaling DescribeAutoScalingGroups {self.group_name}",
            partial(
                self.client.describe_auto_scaling_groups,
                AutoScalingGroupNames=[self.group_name],
            ),
        )
        groups: list[dict[str, Any]] = reply.get("AutoScalingGroups", [])
        if not groups:
            raise ServiceUnavailableError(f"autoscaling: no group named {self.group_name!r}")
        return groups[0]

    async def current(self) -> int:
        """The group's desired capacity.

        Raises:
            ServiceUnavailableError: Auto Scaling could not be reached, or has no such group.
        """
        return int((await self._describe())["DesiredCapacity"])

    async def set_desired(self, replicas: int) -> None:
        """Set the group's desired capacity to ``replicas`` (the group's cooldown not honoured).

        Raises:
            ValueError: ``replicas`` is outside the group's ``MinSize``..``MaxSize``.
            ServiceUnavailableError: Auto Scaling could not be reached, or has no such group.
        """
        group = await self._describe()
        low, high = int(group["MinSize"]), int(group["MaxSize"])
        if not low <= replicas <= high:
            raise ValueError(
                f"autoscaling group {self.group_name!r} takes {low} to {high} instances, "
                f"not {replicas}"
            )
        await call(
            f"autoscaling SetDesiredCapacity {self.group_name}={replicas}",
            partial(
                self.client.set_desired_capacity,
                AutoScalingGroupName=self.group_name,
                DesiredCapacity=replicas,
                HonorCooldown=False,
            ),
        )

    async def aclose(self) -> None:
        self.client.close()
