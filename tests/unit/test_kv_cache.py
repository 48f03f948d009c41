"""The simulator's paged KV cache and prefix cache."""

from __future__ import annotations

from gateway_sim.kv_cache import KVCache, block_hashes


def prompt(n: int, start: int = 0) -> list[int]:
    return list(range(start, start + n))


def test_hashes_chain_and_salt() -> None:
    a = block_hashes(prompt(40), 16, None)
    assert len(a) == 2  # only full blocks
    assert block_hashes(prompt(32), 16, None) == a
    assert block_hashes(prompt(40), 16, "salt")[0] != a[0]
    changed_first = block_hashes([99, *prompt(39, 1)], 16, None)
    assert changed_first[1] != a[1]  # a later block depends on every block before it


def test_prefix_reuse_and_release() -> None:
    kv = KVCache(num_blocks=10, block_size=16)
    hashes = block_hashes(prompt(40), 16, None)
    first = kv.admit(40, hashes)
    assert first is not None
    assert first.cached_tokens == 0
    assert kv.used_blocks == 3
    second = kv.admit(40, hashes)
    assert second is not None
    assert second.cached_tokens == 32
    assert kv.used_blocks == 4  # shared full blocks, a private partial block
    kv.release(first)
    kv.release(second)
    assert kv.used_blocks == 0
    assert kv.cached_blocks == 2
    third = kv.admit(32, hashes)
    assert third is not None
    assert third.cached_tokens == 16  # a fully cached prompt still recomputes its last block


def test_lru_eviction_when_full() -> None:
    kv = KVCache(num_blocks=4, block_size=16)
    old = block_hashes(prompt(32, 0), 16, None)
    new = block_hashes(prompt(32, 1000), 16, None)
    kv.release(kv.admit(32, old))  # type: ignore[arg-type]
    kv.release(kv.admit(32, new))  # type: ignore[arg-type]
    assert kv.cached_blocks == 4
    third = kv.admit(32, block_hashes(prompt(32, 5000), 16, None))
    assert third is not None
    assert kv.matched_tokens(old) == 0  # the least recently used prefix went first
    assert kv.matched_tokens(new) == 32


def test_does_not_fit_and_grow() -> None:
    kv = KVCache(num_blocks=3, block_size=16)
    assert kv.admit(64, block_hashes(prompt(64), 16, None)) is None
    held = kv.admit(48, block_hashes(prompt(48), 16, None))
    assert held is not None
    assert not kv.grow(held)
    kv.release(held)
    assert kv.used_blocks == 0


def test_prefix_caching_off() -> None:
    kv = KVCache(num_blocks=10, block_size=16, prefix_caching=False)
    hashes = block_hashes(prompt(40), 16, None)
    kv.admit(40, hashes)
    again = kv.admit(40, hashes)
    assert again is not None
    assert again.cached_tokens == 0
    assert kv.used_blocks == 6
