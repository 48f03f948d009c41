"""Per-step model choice for an agent: a privacy gate first, then complexity or cost.

``privacy: local_only`` is a hard gate, applied before anything else: only model groups whose
every backend is marked ``local`` are candidates (checked when the gateway starts, and again by
the pipeline at dispatch, fallbacks included, so no route can reach a cloud API). Then the
policy picks among the candidate tiers:

- ``fixed``: the agent's ``model``;
- ``complexity``: the first tier whose ``max_complexity`` covers :func:`complexity` of the
  conversation (a cheap heuristic: prompt length, code, tools needed, reasoning words, turns);
- ``cost``: the cheapest tier (by price per token) whose context window holds the prompt and
  which supports tools when tools are offered.

The choice and its reason go on the step's usage record (``route``) and metrics.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.settings_agents import AgentRoutingSettings

_CODE = re.compile(
    r"```|\b(def|class|function|import|return|SELECT|INSERT|#include|public static)\b|[{};]\s*\n"
)
_REASONING = re.compile(
    r"\b(prove|proof|derive|step[- ]by[- ]step|analy[sz]e|optimi[sz]e|compare|trade-?offs?|"
    r"explain why|design|architecture|plan|debug)\b",
    re.IGNORECASE,
)


class ModelDirectory(Protocol):
    """What routing knows about the model groups (built from the catalog and price book)."""

    def exists(self, model: str) -> bool: ...

    def is_local(self, model: str) -> bool:
        """Every backend of the group is marked ``local``."""
        ...

    def context_window(self, model: str) -> int:
        """The smallest context window of its backends (0: unknown)."""
        ...

    def price_per_mtok(self, model: str) -> float:
        """Input plus output price per million tokens (0: free or unknown)."""
        ...

    def supports_tools(self, model: str) -> bool: ...


def _text_of(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def complexity(messages: Sequence[Mapping[str, Any]], tools: Sequence[Any] = ()) -> float:
    """How demanding a conversation looks, from 0 (a short chat line) to 1 (long, code-heavy,
    reasoning, tool use). Linear in the text's length; no model call."""
    text = " ".join(_text_of(m) for m in messages)
    last_user = next((_text_of(m) for m in reversed(messages) if m.get("role") == "user"), "")
    score = 0.4 * min(1.0, len(text) / 8000)
    if _CODE.search(text):
        score += 0.25
    if tools:
        score += 0.15
    if _REASONING.search(last_user):
        score += 0.2
    if len(messages) > 6:
        score += 0.1
    return min(1.0, round(score, 3))


@dataclass(frozen=True, slots=True)
class RouteChoice:
    """The model of one step, why, and whether the privacy gate applies to it."""

    model: str
    reason: str | None
    local_only: bool


class StepRouter:
    """Chooses each step's model for one agent.

    Args:
        model: the agent's ``model`` (the ``fixed`` choice; the last resort of the others).
        settings: the agent's ``routing`` (None: always ``model``).
        directory: facts about the model groups.

    Raises:
        ValueError: no candidate passes the privacy gate, or the policy has no tiers.
    """

    __slots__ = ("_directory", "_fixed", "_local_only", "_policy", "_tiers")

    def __init__(
        self, model: str | None, settings: AgentRoutingSettings | None, directory: ModelDirectory
    ) -> None:
        self._directory = directory
        policy = settings.policy if settings else "fixed"
        self._policy = policy
        self._local_only = settings is not None and settings.privacy == "local_only"
        tiers = [(t.model, t.max_complexity) for t in settings.tiers] if settings else []
        if not tiers and model is not None:
            tiers = [(model, 1.0)]
        if not tiers:
            raise ValueError("an agent needs a `model` or `routing.tiers`")
        if self._local_only:
            local = [t for t in tiers if directory.is_local(t[0])]
            if not local:
                raise ValueError(
                    "routing.privacy is `local_only` but no candidate model has only `local` "
                    f"backends (candidates: {', '.join(t[0] for t in tiers)})"
                )
            tiers = local
        self._tiers = tiers
        # `fixed` sends every step to `model`, unless the privacy gate refused it.
        usable = model is not None and (not self._local_only or directory.is_local(model))
        self._fixed = model if usable and model is not None else tiers[0][0]

    def models(self) -> list[str]:
        """Every model a step may be sent to."""
        return list(dict.fromkeys([self._fixed, *(t[0] for t in self._tiers)]))

    def choose(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Any] = (),
        prompt_tokens: Callable[[], int] = lambda: 0,
    ) -> RouteChoice:
        """The model of the next step (``prompt_tokens`` is called only by the ``cost``
        policy: an estimate costs a walk over the conversation)."""
        gate = "local_only; " if self._local_only else ""
        if self._policy == "complexity":
            score = complexity(messages, tools)
            model = next((m for m, ceiling in self._tiers if score <= ceiling), self._tiers[-1][0])
            return RouteChoice(model, f"{gate}complexity={score:.2f} -> {model}", self._local_only)
        if self._policy == "cost":
            model = self._cheapest(prompt_tokens(), bool(tools))
            return RouteChoice(model, f"{gate}cost -> {model}", self._local_only)
        reason = f"{gate}fixed -> {self._fixed}" if self._local_only else None
        return RouteChoice(self._fixed, reason, self._local_only)

    def _cheapest(self, prompt_tokens: int, needs_tools: bool) -> str:
        directory = self._directory
        fitting = [
            m
            for m, _ in self._tiers
            if (not needs_tools or directory.supports_tools(m))
            and (
                directory.context_window(m) in (0, None)
                or directory.context_window(m) > prompt_tokens
            )
        ]
        pool = fitting or [m for m, _ in self._tiers]
        return min(pool, key=directory.price_per_mtok)
