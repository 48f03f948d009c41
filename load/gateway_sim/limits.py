"""Bounds on every size a request can ask for, checked before the simulator does any work.

A number in a request must never cost the replica unbounded time or memory: ``dimensions``,
``max_tokens``, ``n``, the number of embedding inputs, prompt lengths and token ids are all
checked against the profile (vLLM answers 400 for what its model cannot serve, and so does the
simulator). Any other top-level integer must fit in 64 bits, as vLLM's request models require.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway_sim.profiles import EngineProfile
from gateway_sim.serving import SimRequestError
from gateway_sim.tokens import VOCAB_SIZE

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
NATURAL_MAX_TOKENS = 64
"""The longest output the simulated model writes unless ``ignore_eos`` asks for more."""

# vLLM's sampling extensions that take integers, with the least value it accepts.
_EXTENSION_MINIMUMS = {
    "top_k": -1,
    "min_tokens": 0,
    "truncate_prompt_tokens": -1,
    "prompt_logprobs": 0,
}


def check_integers(raw: Mapping[str, Any]) -> None:
    """Every top-level integer within 64 bits, vLLM's integer extensions within their range.

    Raises:
        SimRequestError: naming the field.
    """
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        if not INT64_MIN <= value <= INT64_MAX:
            raise SimRequestError(
                f"`{key}` must be a 64-bit integer (between {INT64_MIN} and {INT64_MAX})", key
            )
        least = _EXTENSION_MINIMUMS.get(key)
        if least is not None and value < least:
            raise SimRequestError(f"`{key}` must be at least {least}, got {value}", key)


def check_token_ids(tokens: Sequence[int], param: str) -> None:
    """Token ids of a prompt or an embedding input within the vocabulary.

    Raises:
        SimRequestError: naming the field.
    """
    for token in tokens:
        if not 0 <= token < VOCAB_SIZE:
            raise SimRequestError(
                f"Token id {token} is out of vocabulary (0 to {VOCAB_SIZE - 1})", param
            )


def check_n(profile: EngineProfile, n: int) -> None:
    """At most ``profile.max_n`` choices.

    Raises:
        SimRequestError: naming ``n``.
    """
    if not 1 <= n <= profile.max_n:
        raise SimRequestError(f"`n` must be between 1 and {profile.max_n}, got {n}", "n")


def check_generation(
    profile: EngineProfile,
    prompt_tokens: int,
    max_tokens: int | None,
    *,
    n: int = 1,
    ignore_eos: bool = False,
    prompt_param: str = "messages",
    max_tokens_param: str = "max_tokens",
) -> None:
    """A prompt and its requested output within the context window, and all ``n`` sequences
    within the replica's KV cache.

    Raises:
        SimRequestError: vLLM's context-length message, naming the prompt's field when the
            prompt alone does not fit, else the output's; naming ``n`` (or the output's field)
            when the sequences together cannot fit the KV cache.
    """
    window = profile.max_model_len
    output = max_tokens or 0
    if prompt_tokens >= window or prompt_tokens + output > window:
        raise SimRequestError(
            f"This model's maximum context length is {window} tokens. However, you requested "
            f"{prompt_tokens + output} tokens ({prompt_tokens} in the messages, {output} in the "
            "completion). Please reduce the length of the messages or completion.",
            prompt_param if prompt_tokens >= window else max_tokens_param,
        )
    # The simulator materialises every choice's tokens, so the sequences together must fit
    # the KV cache a real replica would need for them.
    longest = NATURAL_MAX_TOKENS if max_tokens is None else max_tokens
    if not ignore_eos:
        longest = min(longest, NATURAL_MAX_TOKENS)
    capacity = profile.num_gpu_blocks * profile.block_size
    needed = prompt_tokens + n * longest
    if needed > capacity:
        raise SimRequestError(
            f"The request needs up to {needed} tokens of KV cache ({n} sequences of up to "
            f"{longest} tokens after a {prompt_tokens}-token prompt); this replica holds "
            f"{capacity}. Ask for fewer choices or fewer tokens.",
            "n" if n > 1 else max_tokens_param,
        )


def check_embeddings(
    profile: EngineProfile, inputs: Sequence[tuple[str, int]], dimensions: int | None
) -> None:
    """The number of inputs, each input's length and the vector size within the profile's.

    Raises:
        SimRequestError: naming ``input`` or ``dimensions``.
    """
    if len(inputs) > profile.max_embedding_inputs:
        raise SimRequestError(
            f"At most {profile.max_embedding_inputs} inputs per request, got {len(inputs)}",
            "input",
        )
    for i, (_, tokens) in enumerate(inputs):
        if tokens > profile.max_model_len:
            raise SimRequestError(
                f"This model's maximum context length is {profile.max_model_len} tokens. "
                f"However, you requested {tokens} tokens in the input for embedding generation "
                f"(input {i}). Please reduce the length of the input.",
                "input",
            )
    if dimensions is not None and not 1 <= dimensions <= profile.max_embedding_dim:
        raise SimRequestError(
            f"`dimensions` must be between 1 and {profile.max_embedding_dim}, got {dimensions}",
            "dimensions",
        )
