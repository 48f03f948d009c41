"""Built-in plugin: the control plane on AWS: ``sqs`` and ``s3`` usage sinks, the ``dynamodb``
usage ledger, the ``s3`` record archive, ``eventbridge`` budget publisher, ``cloudwatch`` metric
publisher, the ``aws_autoscaling`` fleet scaler, and the Lambda handlers (``handlers.py``)."""

from gateway import hookimpl
from gateway.hookspecs import (
    RegisterBudgetPublisher,
    RegisterFleetScaler,
    RegisterMetricPublisher,
    RegisterRecordArchive,
    RegisterUsageLedger,
    RegisterUsageSink,
)
from gateway_aws.autoscaling import AutoScalingFleetScaler
from gateway_aws.cloudwatch import CloudWatchMetricPublisher
from gateway_aws.dynamodb_ledger import DynamoDbUsageLedger
from gateway_aws.eventbridge import EventBridgeBudgetPublisher
from gateway_aws.s3_archive import S3RecordArchive
from gateway_aws.s3_sink import S3UsageSink
from gateway_aws.sqs_sink import SqsUsageSink


@hookimpl
def register_budget_publishers(register: RegisterBudgetPublisher) -> None:
    """Register ``eventbridge``."""
    register("eventbridge", EventBridgeBudgetPublisher)


@hookimpl
def register_fleet_scalers(register: RegisterFleetScaler) -> None:
    """Register ``aws_autoscaling``."""
    register("aws_autoscaling", AutoScalingFleetScaler)


@hookimpl
def register_metric_publishers(register: RegisterMetricPublisher) -> None:
    """Register ``cloudwatch``."""
    register("cloudwatch", CloudWatchMetricPublisher)


@hookimpl
def register_record_archives(register: RegisterRecordArchive) -> None:
    """Register ``s3``."""
    register("s3", S3RecordArchive)


@hookimpl
def register_usage_ledgers(register: RegisterUsageLedger) -> None:
    """Register ``dynamodb``."""
    register("dynamodb", DynamoDbUsageLedger)


@hookimpl
def register_usage_sinks(register: RegisterUsageSink) -> None:
    """Register ``sqs`` and ``s3``."""
    register("sqs", SqsUsageSink)
    register("s3", S3UsageSink)
