"""``cache_aware``: send a request where its prompt's prefix is probably still cached.

SGLang's cache-aware policy, over the gateway's own in-flight counts:

1. Imbalance first: when ``max_load - min_load > balance_abs_threshold`` and
   ``max_load > min_load * balance_rel_threshold``, the least-loaded backend (reason
   ``imbalance``): affinity must never pile work on one replica.
2. Otherwise the prompt text is matched in the group's prefix index (partitioned by
   ``cache_salt``): when the matched share exceeds ``cache_threshold``, the least-loaded backend
   holding that prefix (``affinity``); else the backend with the smallest index (``miss``), so
   new prefixes spread out.
3. The prompt is recorded under the chosen backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.routing.base import BackendView, Choice, RouteRequest
from gateway_cache_aware.prefix_index import PrefixIndex


def prompt_text(payload: Any) -> str:
    """The text a prefix cache sees first: messages in order (roles included), or the prompt."""
    messages = getattr(payload, "messages", None)
    if messages:
        parts = []
        system = getattr(payload, "system", None)
        if system:
            parts.append(f"system:{system}")
        for m in messages:
            content = m.content
            if not isinstance(content, str):
                content = "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
            parts.append(f"{m.role}:{content}")
        return "\n".join(parts)
    prompt = getattr(payload, "prompt", None)
    return prompt if isinstance(prompt, str) else str(prompt or "")


class CacheAwareStrategy:
    """Prefix affinity while load is balanced, least load when it is not."""

    def __init__(
        self,
        cache_threshold: float = 0.3,
        balance_abs_threshold: int = 64,
        balance_rel_threshold: float = 1.5,
        block_chars: int = 64,
        max_chars: int = 2**26,
    ) -> None:
        if not 0 <= cache_threshold <= 1:
            raise ValueError("`cache_threshold` must be between 0 and 1")
        self.cache_threshold = cache_threshold
        self.abs_threshold = balance_abs_threshold
        self.rel_threshold = balance_rel_threshold
        self.index = PrefixIndex(block_chars, max_chars)

    def choose(self, request: RouteRequest, backends: Sequence[BackendView]) -> Choice:
        loads = [b.in_flight for b in backends]
        least = min(range(len(backends)), key=lambda i: (loads[i], i))
        text = prompt_text(request.payload)
        salt = getattr(request.payload, "cache_salt", None)
        if salt is None and isinstance(request.payload, dict):
            salt = request.payload.get("cache_salt")
        keys = self.index.keys(text, salt)
        if (
            max(loads) - min(loads) > self.abs_threshold
            and max(loads) > min(loads) * self.rel_threshold
        ):
            choice, reason = least, "imbalance"
        else:
            matched, holders = self.index.match(keys)
            share = matched * self.index.block_chars / max(len(text), 1)
            names = {b.name: i for i, b in enumerate(backends)}
            held = [names[n] for n in holders if n in names]
            if held and share > self.cache_threshold:
                choice = min(held, key=lambda i: (loads[i], i))
                reason = "affinity"
            else:
                choice = min(
                    range(len(backends)),
                    key=lambda i: (self.index.size(backends[i].name), loads[i], i),
                )
                reason = "miss"
        self.index.insert(keys, backends[choice].name)
        return choice, reason
