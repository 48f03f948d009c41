"""A paged KV cache with automatic prefix caching, modelled on vLLM's block manager.

The cache has ``num_blocks`` blocks of ``block_size`` tokens. A prompt's full blocks are identified
by chained hashes (each block's hash covers its tokens and its parent's hash; the first also covers
the request's ``cache_salt``), so two prompts share cached blocks exactly as long as they share a
token prefix and a salt. Blocks that no running request references stay cached and are evicted
least-recently-used first when space is needed. Partial blocks and generated tokens use anonymous
blocks that are freed when the request ends.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field


def block_hashes(tokens: Sequence[object], block_size: int, salt: str | None) -> list[bytes]:
    """Chained hashes of the full blocks of ``tokens``."""
    hashes = []
    parent = hashlib.blake2b((salt or "").encode(), digest_size=16).digest()
    for start in range(0, len(tokens) - block_size + 1, block_size):
        block = "\x1f".join(map(str, tokens[start : start + block_size]))
        parent = hashlib.blake2b(parent + block.encode(), digest_size=16).digest()
        hashes.append(parent)
    return hashes


@dataclass
class Allocation:
    """The blocks one request holds.

    Attributes:
        hashed: the prompt's full blocks (shared, reference-counted).
        anonymous: blocks private to the request (partial prompt block, generated tokens).
        cached_tokens: prompt tokens found in the cache at admission.
    """

    hashed: list[bytes] = field(default_factory=list)
    anonymous: int = 0
    cached_tokens: int = 0


class KVCache:
    """Block accounting: referenced, cached-but-evictable, and free blocks."""

    def __init__(self, num_blocks: int, block_size: int, *, prefix_caching: bool = True) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.prefix_caching = prefix_caching
        self._refs: dict[bytes, int] = {}
        self._evictable: OrderedDict[bytes, None] = OrderedDict()
        self._anonymous = 0

    @property
    def used_blocks(self) -> int:
        """Blocks held by running requests (what ``kv_cache_usage_perc`` reports)."""
        return len(self._refs) + self._anonymous

    @property
    def usage(self) -> float:
        """Share of blocks held by running requests, 0 to 1."""
        return self.used_blocks / self.num_blocks

    @property
    def cached_blocks(self) -> int:
        """Blocks holding a reusable prefix that no request references."""
        return len(self._evictable)

    def _available(self) -> int:
        """Blocks that can be handed out (free ones plus evictable cached ones)."""
        return self.num_blocks - self.used_blocks

    def _take(self, count: int) -> None:
        """Make room for ``count`` new blocks by evicting least-recently-used cached ones."""
        free = self.num_blocks - self.used_blocks - len(self._evictable)
        for _ in range(max(0, count - free)):
            self._evictable.popitem(last=False)

    def matched_tokens(self, hashes: Sequence[bytes]) -> int:
        """Prompt tokens a request with these block hashes would find cached."""
        if not self.prefix_caching:
            return 0
        matched = 0
        for h in hashes:
            if h not in self._refs and h not in self._evictable:
                break
            matched += 1
        return matched * self.block_size

    def blocks_needed(self, prompt_tokens: int, hashes: Sequence[bytes]) -> int:
        """New blocks (beyond cache hits) needed to admit a prompt."""
        total = -(-prompt_tokens // self.block_size)
        return total - self.matched_tokens(hashes) // self.block_size

    def admit(self, prompt_tokens: int, hashes: Sequence[bytes]) -> Allocation | None:
        """Allocate a prompt's blocks, reusing cached prefix blocks; None if it does not fit.

        vLLM always recomputes at least the last prompt token, so a fully cached prompt reports
        one block fewer as cached.
        """
        if not self.prefix_caching:
            hashes = []
        matched = self.matched_tokens(hashes) // self.block_size
        reused_evictable = sum(1 for h in hashes[:matched] if h in self._evictable)
        total = -(-prompt_tokens // self.block_size)
        new_blocks = total - matched
        if new_blocks + reused_evictable > self._available():
            return None
        for h in hashes[:matched]:
            self._evictable.pop(h, None)
            self._refs[h] = self._refs.get(h, 0) + 1
        self._take(new_blocks)
        for h in hashes[matched:]:
            self._refs[h] = 1
        anonymous = total - len(hashes)
        self._anonymous += anonymous
        cached = matched * self.block_size
        if cached >= prompt_tokens:
            cached -= self.block_size
        return Allocation(hashed=list(hashes), anonymous=anonymous, cached_tokens=max(cached, 0))

    def grow(self, allocation: Allocation) -> bool:
        """One more anonymous block for generated tokens; False when the cache is full."""
        if self._available() < 1:
            return False
        self._take(1)
        self._anonymous += 1
        allocation.anonymous += 1
        return True

    def reset_prefix_cache(self) -> int:
        """Forget every cached block no running request holds (vLLM's ``reset_prefix_cache``);
        returns how many were dropped."""
        dropped = len(self._evictable)
        self._evictable.clear()
        return dropped

    def release(self, allocation: Allocation) -> None:
        """Free a request's blocks; its prompt blocks stay cached for later requests."""
        for h in allocation.hashed:
            left = self._refs[h] - 1
            if left:
                self._refs[h] = left
            else:
                del self._refs[h]
                self._evictable[h] = None
        self._anonymous -= allocation.anonymous
        allocation.hashed = []
        allocation.anonymous = 0
