"""An approximate radix tree of prompt text: which backend has seen which prefix.

Prompt text is cut into blocks of ``block_chars`` characters; each block is keyed by a chained
hash (it covers every character before it, and the partition, i.e. ``cache_salt``), so walking
a prompt's blocks is walking down a radix tree with fixed-length edges. Each key records the
backends ("tenants") that were sent that prefix and when. Capacity is bounded by ``max_chars``:
least-recently-used blocks go first, and since a prefix is touched whenever its extensions are,
leaves are evicted before the trunks they hang from.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable


class PrefixIndex:
    """Chained-hash prefix blocks mapped to the tenants that hold them."""

    def __init__(self, block_chars: int = 64, max_chars: int = 2**26) -> None:
        if block_chars < 1 or max_chars < block_chars:
            raise ValueError("need block_chars >= 1 and max_chars >= block_chars")
        self.block_chars = block_chars
        self.max_blocks = max_chars // block_chars
        self._blocks: OrderedDict[bytes, dict[str, int]] = OrderedDict()  # key -> tenant: n
        self._sizes: dict[str, int] = {}
        self._clock = 0

    def keys(self, text: str, partition: str | None) -> list[bytes]:
        """The chained keys of the full blocks of ``text`` (no partial tail block)."""
        out = []
        parent = (partition or "").encode()
        size = self.block_chars
        for start in range(0, len(text) - size + 1, size):
            parent = hashlib.blake2b(
                parent + text[start : start + size].encode(), digest_size=12
            ).digest()
            out.append(parent)
        return out

    def match(self, keys: list[bytes]) -> tuple[int, set[str]]:
        """Blocks matched from the start and the tenants holding that whole matched prefix."""
        tenants: set[str] | None = None
        matched = 0
        for key in keys:
            holders = self._blocks.get(key)
            if not holders:
                break
            narrowed = set(holders) if tenants is None else tenants & holders.keys()
            if not narrowed:
                break
            tenants = narrowed
            matched += 1
        return matched, tenants or set()

    def insert(self, keys: Iterable[bytes], tenant: str) -> None:
        """Record that ``tenant`` was sent the prefix ``keys``; evict LRU blocks past the cap."""
        self._clock += 1
        for key in keys:
            holders = self._blocks.get(key)
            if holders is None:
                holders = self._blocks[key] = {}
            else:
                self._blocks.move_to_end(key)
            if tenant not in holders:
                self._sizes[tenant] = self._sizes.get(tenant, 0) + 1
            holders[tenant] = self._clock
        while len(self._blocks) > self.max_blocks:
            _, evicted = self._blocks.popitem(last=False)
            for name in evicted:
                self._sizes[name] -= 1

    def size(self, tenant: str) -> int:
        """Blocks recorded for ``tenant`` (its approximate cache size)."""
        return self._sizes.get(tenant, 0)

    def __len__(self) -> int:
        return len(self._blocks)
