"""The tools an agent offers its model, and how one call is run.

:class:`ToolCatalog` knows every tool: those registered by plugins, and those of the configured
tool sources (MCP servers), listed at start-up and again when their list is older than its TTL.
:class:`AgentTools` is one agent's selection, resolved when the gateway is built (names checked,
schemas compiled). :class:`RunToolBox` runs the calls of one run: the arguments parsed and
validated against the tool's JSON Schema, the call bounded by the tool's timeout and the run's
deadline; whatever goes wrong becomes an error result for the model, never an exception for the
client (the loop goes on).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
import msgspec
from jsonschema.exceptions import best_match

from gateway.agents.base import ToolCall
from gateway.errors import GatewayError
from gateway.settings_agents import ToolUse
from gateway.tools.base import Tool, ToolContext, ToolResult, ToolSource

log = logging.getLogger("gateway.tools")

_RETRY_S = 5.0  # how soon an unreachable tool source is asked again
MAX_ARGUMENT_CHARS = 200_000  # a call's arguments, as the model wrote them
# Approvals sealed without a configured key hold for this process only.
_PROCESS_SEAL_KEY = secrets.token_bytes(32)

# OpenAI's function-name pattern: what a model may be offered.
_WIRE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def wire_name(name: str) -> str:
    """The name a model sees for tool ``name`` (a source's ``docs.search`` is
    ``docs__search``: dots are not allowed in function names)."""
    return name.replace(".", "__")


def _validator(tool: Tool) -> jsonschema.protocols.Validator:
    schema = dict(tool.parameters) if tool.parameters else {"type": "object"}
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


@dataclass(frozen=True, slots=True)
class OfferedTool:
    """One tool as an agent offers it.

    Attributes:
        tool: the tool.
        name: its config name (``calculator``, ``docs.search``).
        wire: the name the model calls.
        require_approval: calls stop the run instead of running.
        timeout_s: the most one call may take.
        validator: checks arguments against the tool's schema.
        max_result_chars: where a longer result is cut.
    """

    tool: Tool
    name: str
    wire: str
    require_approval: bool
    timeout_s: float
    validator: jsonschema.protocols.Validator
    max_result_chars: int = 50_000

    @classmethod
    def of(cls, tool: Tool, name: str, use: ToolUse) -> OfferedTool:
        """``tool`` offered under ``use``'s terms.

        Raises:
            ValueError: its name cannot be offered to a model, or its schema is invalid.
        """
        wire = wire_name(name)
        if not _WIRE_NAME.fullmatch(wire):
            raise ValueError(
                f"tool name `{name}` cannot be offered to a model: use letters, digits, `_` or "
                "`-`, at most 64 characters"
            )
        try:
            validator = _validator(tool)
        except jsonschema.SchemaError as exc:
            raise ValueError(
                f"tool `{name}` has an invalid parameters schema: {exc.message}"
            ) from None
        return cls(
            tool, name, wire, use.require_approval, use.timeout_s, validator, use.max_result_chars
        )

    def spec(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry."""
        return {
            "type": "function",
            "function": {
                "name": self.wire,
                "description": self.tool.description,
                "parameters": dict(self.tool.parameters) or {"type": "object", "properties": {}},
            },
        }


class ToolCatalog:
    """Every tool the gateway can offer: registered ones, and those of tool sources.

    Args:
        registered: tools by name (``register_tools``).
        sources: configured tool sources by their config name.
        ttl_s: how long a source's tool list is trusted before it is listed again.
    """

    def __init__(
        self,
        registered: Mapping[str, Tool],
        sources: Mapping[str, ToolSource] | None = None,
        ttl_s: float = 60.0,
    ) -> None:
        self.registered = dict(registered)
        self.sources = dict(sources or {})
        self._ttl_s = ttl_s
        self._listed: dict[str, tuple[float, dict[str, Tool]]] = {}

    async def start(self) -> None:
        """List every source's tools once (a source that fails is retried when needed)."""
        for name in self.sources:
            await self.source_tools(name)

    async def aclose(self) -> None:
        """Close every source (errors logged)."""
        for name, source in self.sources.items():
            try:
                await source.aclose()
            except Exception:
                log.exception("tool source `%s` failed to close", name)

    async def source_tools(self, source: str) -> dict[str, Tool]:
        """The tools of ``source`` by their own names (empty while it cannot be reached)."""
        listed = self._listed.get(source)
        now = time.monotonic()
        if listed is not None and now - listed[0] < self._ttl_s:
            return listed[1]
        try:
            tools = {t.name: t for t in await self.sources[source].list_tools()}
        except GatewayError as exc:
            log.warning("tool source `%s` is unavailable: %s", source, exc.message)
            last = listed[1] if listed is not None else {}
            # Keep the last good list (its calls fail on their own while the source is down)
            # and ask again after a short back-off, not on every request.
            self._listed[source] = (now - self._ttl_s + min(self._ttl_s, _RETRY_S), last)
            return last
        self._listed[source] = (now, tools)
        return tools

    def offer(self, uses: Sequence[str | ToolUse]) -> tuple[list[OfferedTool], list[ToolUse]]:
        """Resolve an agent's ``tools`` list: registered tools now, and source tools
        (``docs.search``, ``docs.*``) left for :meth:`offer_sources` at run time.

        Raises:
            ValueError: an unknown tool or source, or a tool that cannot be offered.
        """
        static: dict[str, OfferedTool] = {}  # by name: a tool listed twice is offered once
        dynamic: list[ToolUse] = []
        for entry in uses:
            use = entry if isinstance(entry, ToolUse) else ToolUse(name=entry)
            if use.name == "*":
                # Each tool on the entry's terms (its approval and timeout), under its own name.
                for n, t in self.registered.items():
                    static.setdefault(n, OfferedTool.of(t, n, msgspec.structs.replace(use, name=n)))
            elif use.name in self.registered:
                static[use.name] = OfferedTool.of(self.registered[use.name], use.name, use)
            elif "." in use.name and use.name.split(".", 1)[0] in self.sources:
                dynamic.append(use)
            else:
                known = ", ".join(sorted(self.registered)) or "none"
                raise ValueError(f"unknown tool `{use.name}`; registered: {known}")
        return list(static.values()), dynamic

    async def offer_sources(self, uses: Sequence[ToolUse]) -> list[OfferedTool]:
        """The source tools ``uses`` name, as listed now (missing ones are left out)."""
        offered: list[OfferedTool] = []
        for use in uses:
            source, _, tool_name = use.name.partition(".")
            tools = await self.source_tools(source)
            picked = tools.items() if tool_name == "*" else [(tool_name, tools.get(tool_name))]
            for name, tool in picked:
                if tool is None:
                    continue
                try:
                    offered.append(OfferedTool.of(tool, f"{source}.{name}", use))
                except ValueError as exc:
                    log.warning("tool source `%s`: %s", source, exc)
        return offered


ContextFor = Callable[[ToolCall, float], ToolContext]
"""Builds the context of one call, given the call and its deadline."""


class RunToolBox:
    """The tools of one run (satisfies :class:`gateway.agents.base.ToolBox`).

    Args:
        offered: the tools offered.
        context_for: builds each call's context.
        deadline: the run's ``time.monotonic()`` deadline; no call outlives it.
        specs: the OpenAI ``tools`` entries of ``offered`` (made once per agent, not per run).
        observe: told ``(tool, outcome, seconds)`` of every call (``ok``, ``error``), under
            the tool's name (``unknown`` for a name no tool has: labels stay bounded).
        seal_key: the secret approvals are sealed with (every replica of a fleet must share
            it; a random one per process otherwise).
    """

    __slots__ = ("_by_wire", "_context_for", "_deadline", "_observe", "_seal_key", "_specs")

    def __init__(
        self,
        offered: Sequence[OfferedTool],
        context_for: ContextFor,
        deadline: float,
        specs: list[dict[str, Any]] | None = None,
        observe: Callable[[str, str, float], None] | None = None,
        seal_key: bytes = b"",
    ) -> None:
        self._by_wire = {t.wire: t for t in offered}
        self._context_for = context_for
        self._deadline = deadline
        self._specs = specs if specs is not None else [t.spec() for t in offered]
        self._observe = observe
        self._seal_key = seal_key or _PROCESS_SEAL_KEY

    def specs(self) -> list[dict[str, Any]]:
        return self._specs

    def owns(self, name: str) -> bool:
        return name in self._by_wire

    def needs_approval(self, name: str) -> bool:
        offered = self._by_wire.get(name)
        return offered is not None and offered.require_approval

    async def call(self, call: ToolCall) -> ToolResult:
        started = time.perf_counter()
        result = await self._call(call)
        if self._observe is not None:
            outcome = "error" if result.is_error else "ok"
            name = call.name if call.name in self._by_wire else "unknown"
            self._observe(name, outcome, time.perf_counter() - started)
        return result

    def _seal(self, call_id: str, call: ToolCall) -> str:
        text = f"{call_id}\0{call.name}\0{call.arguments}".encode()
        # Hex, not base64: the seal follows the last `-` of the id, so it may hold none.
        return hmac.digest(self._seal_key, text, hashlib.sha256)[:12].hex()

    def pending(self, call: ToolCall) -> ToolCall:
        return ToolCall(f"{call.id}-{self._seal(call.id, call)}", call.name, call.arguments)

    def approved(self, call: ToolCall) -> bool:
        original, _, seal = call.id.rpartition("-")
        return bool(original) and hmac.compare_digest(seal, self._seal(original, call))

    async def _call(self, call: ToolCall) -> ToolResult:
        offered = self._by_wire.get(call.name)
        if offered is None:
            return ToolResult(f"Unknown tool `{call.name}`.", is_error=True)
        arguments, problem = _parsed(call.arguments)
        if problem is None and not offered.validator.is_valid(arguments):
            error = best_match(offered.validator.iter_errors(arguments))
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "arguments"
                problem = f"Invalid arguments for `{call.name}` at {where}: {error.message}"
        if problem is not None:
            return ToolResult(problem, is_error=True)
        deadline = min(self._deadline, time.monotonic() + offered.timeout_s)
        left = deadline - time.monotonic()
        if left <= 0:
            return ToolResult(f"No time was left to call `{call.name}`.", is_error=True)
        context = self._context_for(call, deadline)
        # asyncio's own timeout: a tenth of anyio's cost, and tools run on every step.
        timeout = asyncio.timeout(left)
        try:
            async with timeout:
                result = await offered.tool.call(arguments, context)
        except TimeoutError as exc:
            if not timeout.expired():  # the tool's own timeout, not the gateway's
                return ToolResult(f"`{call.name}` failed: it timed out: {exc}", is_error=True)
            return ToolResult(f"`{call.name}` timed out after {left:.3g} s.", is_error=True)
        except Exception as exc:  # a tool's bug is the model's error result, not the client's
            context.log.exception("tool `%s` failed", offered.name)
            return ToolResult(f"`{call.name}` failed: {type(exc).__name__}: {exc}", is_error=True)
        if not isinstance(result, ToolResult):
            return ToolResult(f"`{call.name}` returned no result.", is_error=True)
        text = result.text()
        limit = offered.max_result_chars
        if len(text) > limit:
            cut = f"{text[:limit]}\n[cut: the result was {len(text)} characters, {limit} kept]"
            return ToolResult(cut, result.is_error, result.metadata)
        return result


def _parsed(text: str) -> tuple[dict[str, Any], str | None]:
    """The arguments object of a call, or why it is not one."""
    if len(text) > MAX_ARGUMENT_CHARS:
        return {}, f"The arguments are longer than {MAX_ARGUMENT_CHARS} characters."
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        return {}, f"The arguments are not valid JSON: {exc}."
    except RecursionError:
        return {}, "The arguments are nested too deeply."
    if not isinstance(value, dict):
        return {}, "The arguments must be a JSON object."
    return value, None
