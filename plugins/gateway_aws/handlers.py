"""The control plane's Lambda handlers (serverless.yml): event in, the job, result out.

Each handler parses its event with aws-lambda-powertools' data classes
(:mod:`gateway_aws.lambda_events`), builds what the job needs from the environment
(:mod:`gateway_aws.lambda_parts`), runs the job of :mod:`gateway.control` (the same function
``gateway control <job>`` runs) in a fresh event loop (``asyncio.run``: nothing outlives an
invocation), closes what it built, and returns the job's result. Logs are JSON lines from
powertools' ``Logger``, the gateway's own loggers included, with the Lambda request id as the
correlation id.

Environment (serverless.yml sets every one):

- ``REDIS_URL``: the shared store (config versions, health hints, the jobs' state);
- ``LEDGER_TABLE``: the DynamoDB ledger (usage-rollup);
- ``ARCHIVE_BUCKET``, ``ARCHIVE_PREFIX``: where raw usage records go as JSON lines by day
  (usage-rollup; no bucket: not kept);
- ``CONFIG_BUCKET``, ``CONFIG_PREFIX``: where configs are uploaded (publish-config reads the
  object each event names: they are for operators and the IAM policy);
- ``USAGE_QUEUE``: the usage queue's URL (what the gateway replicas' ``sqs`` sink sends to);
- ``EVENT_BUS``: the EventBridge bus of budget crossings (usage-rollup; ``default``);
- ``METRIC_NAMESPACE``: the CloudWatch namespace of health metrics (``Gateway/Control``);
- ``GATEWAY_KEY_PEPPER``: the fleet's pepper (the same value as every replica's);
- ``GATEWAY_MASTER_KEY``: what the published config's ``auth.master_key`` should interpolate
  (``${GATEWAY_MASTER_KEY}``): the key that may use the keys function (tenant admin keys may
  too, as on a replica); the function checks it itself, with the gateway's code;
- and whatever ``${VAR}`` the published config interpolates: every job but publish-config
  reads the published config, and the key store (keys; budgets for usage-rollup) is its
  ``governance.key_store``, as on every replica (``redis`` for a fleet).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from typing import Any

import boto3
import msgspec
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from gateway.config_loader import ConfigError
from gateway.errors import ServiceUnavailableError
from gateway.plugins import Registries, collect_registries, make_plugin_manager
from gateway_aws import lambda_parts as parts
from gateway_aws.lambda_events import (
    HttpRequest,
    Message,
    S3Object,
    batch_failures,
    http_request,
    http_response,
    s3_objects,
    schedule_tick,
    sqs_messages,
)

Event = dict[str, Any]

logger = Logger(service="gateway-control")
logging.getLogger("gateway")  # made now, so that the next line gives it powertools' handler
copy_config_to_registered_loggers(source_logger=logger, include={"gateway"})
_json = msgspec.json.Encoder()


def _begin(context: LambdaContext) -> None:
    logger.set_correlation_id(context.aws_request_id)


def _registries() -> Registries:
    """The installed plugins' registries (the deps layer carries their entry points)."""
    return collect_registries(make_plugin_manager())


# -- publish-config ----------------------------------------------------------------------------


@logger.inject_lambda_context(clear_state=True)
def publish_config(event: Event, context: LambdaContext) -> dict[str, Any]:
    """S3 ``ObjectCreated``: validate each uploaded config and publish the valid ones; write a
    refused one's errors to ``<key>.errors.json`` beside it (and to the log), and remove that
    file when a later upload of the key is published.

    Returns:
        ``{"published": [{source, version}], "refused": [{source, errors}]}``.

    Raises:
        ServiceUnavailableError: the shared store could not be reached (Lambda retries the
            event; nothing was published).
    """
    _begin(context)
    return asyncio.run(_publish(s3_objects(event)))


async def _publish(objects: list[S3Object]) -> dict[str, Any]:
    from gateway.control.publish import publish_config as publish

    s3: Any = boto3.client("s3")
    published: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    async with AsyncExitStack() as stack:
        store = parts.control_store(_registries())
        stack.push_async_callback(store.aclose)
        for obj in objects:
            text, errors = await _read_text(s3, obj)
            if text is not None:
                outcome = await publish(text, obj.uri, store)
                if outcome.version is not None:
                    version = outcome.version.version
                    logger.info("config published", extra={"source": obj.uri, "version": version})
                    published.append({"source": obj.uri, "version": version})
                    await asyncio.to_thread(s3.delete_object, Bucket=obj.bucket, Key=obj.errors_key)
                    continue
                errors = list(outcome.errors)
            logger.error("config refused", extra={"source": obj.uri, "errors": errors})
            report = {"source": obj.uri, "errors": errors, "checked_at": time.time()}
            await asyncio.to_thread(
                s3.put_object,
                Bucket=obj.bucket,
                Key=obj.errors_key,
                Body=_json.encode(report),
                ContentType="application/json",
            )
            refused.append({"source": obj.uri, "errors": errors})
    return {"published": published, "refused": refused}


async def _read_text(s3: Any, obj: S3Object) -> tuple[str | None, list[str]]:
    """The object's text, or why it has none (not UTF-8)."""
    reply = await asyncio.to_thread(s3.get_object, Bucket=obj.bucket, Key=obj.key)
    data: bytes = await asyncio.to_thread(reply["Body"].read)
    try:
        return data.decode(), []
    except UnicodeDecodeError as exc:
        return None, [f"{obj.uri}: not UTF-8 text ({exc.reason} at byte {exc.start})"]


# -- keys --------------------------------------------------------------------------------------


@logger.inject_lambda_context(clear_state=True)
def keys(event: Event, context: LambdaContext) -> dict[str, Any]:
    """HTTP API (payload 2.0): the key and tenant admin API of the keys function
    (:mod:`gateway.control.keys`), against the published config's key store.

    Returns:
        The HTTP API reply: the operation's JSON, or the error envelope (401, 403, 404, 405;
        503 before a config is published, or when the config has no master key).
    """
    _begin(context)
    request = http_request(event)
    logger.append_keys(api_request_id=request.request_id)
    status, body, headers = asyncio.run(_keys(request))
    return http_response(status, body, request.request_id, headers)


async def _keys(request: HttpRequest) -> tuple[int, bytes, dict[str, str]]:
    from gateway.control.keys import handle_keys, keys_service

    try:
        async with AsyncExitStack() as stack:
            store = parts.control_store(_registries())
            stack.push_async_callback(store.aclose)
            settings = await parts.published_settings(store)
        if settings is None:
            raise ConfigError("the shared store", None, "no config published yet")
        async with keys_service(settings) as (admin, authorize):
            answer = await handle_keys(
                admin,
                authorize,
                request.method,
                request.path,
                request.query,
                request.headers,
                request.body,
            )
    except ConfigError as exc:
        logger.error("keys function unavailable", extra={"reason": str(exc)})
        error = ServiceUnavailableError(f"The keys function is unavailable: {exc}")
        return error.status, error.to_json(), {}
    return answer.status, answer.body, dict(answer.headers)


# -- usage-rollup ------------------------------------------------------------------------------


@logger.inject_lambda_context(clear_state=True)
def usage_rollup(event: Event, context: LambdaContext) -> dict[str, Any]:
    """SQS: fold the batch's usage records into the ledger (one fold for the whole batch);
    malformed messages are reported in ``batchItemFailures`` and the rest commits.

    Raises:
        ServiceUnavailableError: the ledger, archive or key store could not be reached: nothing
            was counted and the whole batch comes back (redelivery counts nothing twice).
    """
    _begin(context)
    failed = asyncio.run(_rollup(sqs_messages(event)))
    return batch_failures(failed)


async def _rollup(messages: list[Message]) -> list[str]:
    from gateway.control.rollup import (
        BudgetLookup,
        KeyStoreBudgets,
        NoBudgets,
        RollupItem,
    )
    from gateway.control.rollup import usage_rollup as rollup

    registries = _registries()
    async with AsyncExitStack() as stack:
        store = parts.control_store(registries)
        stack.push_async_callback(store.aclose)
        settings = await parts.published_settings(store)
        budgets: BudgetLookup = NoBudgets()
        if settings is not None:
            key_store = parts.key_store(registries, settings)
            stack.push_async_callback(key_store.aclose)
            budgets = KeyStoreBudgets(key_store)
        ledger = parts.ledger(registries)
        stack.push_async_callback(ledger.aclose)
        archive = parts.archive(registries)
        if archive is not None:
            stack.push_async_callback(archive.aclose)
        publishers = parts.budget_publishers(registries)
        for publisher in publishers:
            stack.push_async_callback(publisher.aclose)
        outcome = await rollup(
            [RollupItem(m.id, m.body) for m in messages],
            ledger=ledger,
            archive=archive,
            budgets=budgets,
            publishers=publishers,
            now=time.time(),
        )
        logger.info(
            "usage rolled up",
            extra={
                "messages": len(messages),
                "counted": outcome.counted,
                "duplicates": outcome.duplicates,
                "failed": outcome.failed,
                "crossings": len(outcome.crossings),
                "archived": outcome.archived,
            },
        )
        failed: list[str] = list(outcome.failed)
        return failed
    raise AssertionError("unreachable")


# -- health-sweep and scale-fleet --------------------------------------------------------------


@logger.inject_lambda_context(clear_state=True)
def health_sweep(event: Event, context: LambdaContext) -> dict[str, Any]:
    """Schedule: probe every backend of the published config; the hints go to the shared store
    and CloudWatch.

    Returns:
        ``{"hints": [...]}`` (empty before the first publication).
    """
    _begin(context)
    tick = schedule_tick(event)
    logger.append_keys(schedule_event=tick.id)
    return {"hints": asyncio.run(_health())}


async def _health() -> list[Any]:
    from gateway.control.health import health_sweep as sweep

    registries = _registries()
    async with AsyncExitStack() as stack:
        store = parts.control_store(registries)
        stack.push_async_callback(store.aclose)
        settings = await parts.published_settings(store)
        if settings is None:
            logger.info("no published config: nothing to probe")
            return []
        publishers = parts.metric_publishers(registries)
        for publisher in publishers:
            stack.push_async_callback(publisher.aclose)
        hints = await sweep(
            settings,
            store=store,
            publishers=publishers,
            timeout_s=settings.control.probe_timeout_s,
            now=time.time(),
        )
        found: list[Any] = msgspec.to_builtins(hints)
        return found
    raise AssertionError("unreachable")


@logger.inject_lambda_context(clear_state=True)
def scale_fleet(event: Event, context: LambdaContext) -> dict[str, Any]:
    """Schedule: decide each ``control.scaling`` group's replicas from the fleet's load and act
    through its fleet scaler (``aws_autoscaling``); every decision is logged with its inputs.

    Returns:
        ``{"decisions": [...]}`` (empty before the first publication).
    """
    _begin(context)
    tick = schedule_tick(event)
    logger.append_keys(schedule_event=tick.id)
    return {"decisions": asyncio.run(_scale())}


async def _scale() -> list[Any]:
    from gateway.control.parts import build_fleet_scalers, plugin_registries
    from gateway.control.scaling import read_loads
    from gateway.control.scaling import scale_fleet as scale

    async with AsyncExitStack() as stack:
        store = parts.control_store(_registries())
        stack.push_async_callback(store.aclose)
        settings = await parts.published_settings(store)
        if settings is None:
            logger.info("no published config: nothing to scale")
            return []
        registries = plugin_registries(settings)
        scalers = build_fleet_scalers(settings, registries)
        for scaler in scalers.values():
            stack.push_async_callback(scaler.aclose)
        timeout_s = settings.control.probe_timeout_s
        loads = await read_loads(settings, timeout_s=timeout_s, registries=registries)
        decisions = await scale(
            settings, loads=loads, scalers=scalers, store=store, now=time.time()
        )
        found: list[Any] = msgspec.to_builtins(decisions)
        return found
    raise AssertionError("unreachable")
