"""Named engine profiles: what a simulated replica's GPU and model can do.

Each engine step costs ``step_base_ms`` + ``prefill_ms_per_token`` x (uncached prompt tokens
scheduled this step) + ``decode_ms_per_seq`` x (sequences decoding this step). So for one request
alone, TTFT = step_base + prefill x uncached tokens and ITL = step_base + decode_ms_per_seq; with
more requests ITL grows with the batch, TTFT grows with queueing, cached prefixes shorten TTFT,
and throughput saturates at ``max_num_seqs`` or at the KV cache's size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class EngineProfile:
    """Parameters of the simulated engine (see the module docstring for the cost model).

    Attributes:
        name: profile name.
        description: what it stands for.
        block_size: tokens per KV-cache block.
        num_gpu_blocks: KV-cache capacity in blocks.
        max_num_seqs: most sequences running at once (continuous batching cap).
        max_num_batched_tokens: most prompt tokens prefilled in one step.
        max_model_len: longest prompt + output accepted.
        step_base_ms: fixed cost of one engine step.
        prefill_ms_per_token: cost of each uncached prompt token.
        decode_ms_per_seq: cost of each decoding sequence per step.
        prefix_caching: reuse cached prompt blocks across requests.
        embed_call_ms: fixed cost of one embeddings call (calls are serialised).
        embed_ms_per_input: added cost per input of an embeddings call.
        max_n: most choices (``n``) per request.
        max_embedding_dim: largest ``dimensions`` an embeddings request may ask for.
        max_embedding_inputs: most inputs per embeddings request.
    """

    name: str
    description: str
    block_size: int = 16
    num_gpu_blocks: int = 27_000
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    max_model_len: int = 131_072
    step_base_ms: float = 6.0
    prefill_ms_per_token: float = 0.04
    decode_ms_per_seq: float = 0.03
    prefix_caching: bool = True
    embed_call_ms: float = 5.0
    embed_ms_per_input: float = 0.05
    max_n: int = 128
    max_embedding_dim: int = 4096
    max_embedding_inputs: int = 2048

    def with_overrides(self, overrides: Mapping[str, str | float | int | bool]) -> EngineProfile:
        """A copy with fields replaced; string values are converted to the field's type.

        Raises:
            ValueError: an unknown field or a value of the wrong type.
        """
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, object] = {}
        for key, value in overrides.items():
            if key not in fields or key in ("name", "description"):
                known = ", ".join(k for k in fields if k not in ("name", "description"))
                raise ValueError(f"unknown profile field `{key}`; known: {known}")
            current = getattr(self, key)
            if isinstance(value, str):
                if isinstance(current, bool):
                    value = value.lower() in ("1", "true", "yes", "on")
                else:
                    value = type(current)(value)
            changes[key] = value
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


PROFILES: dict[str, EngineProfile] = {
    p.name: p
    for p in (
        EngineProfile(
            name="llama-3.1-8b-h100",
            description="Llama 3.1 8B in bf16 on one H100 80GB: ~430k tokens of KV cache, "
            "~25k prefill tokens/s, ~8 ms inter-token latency at a batch of 64",
        ),
        EngineProfile(
            name="llama-3.1-70b-4xh100",
            description="Llama 3.1 70B on four H100s (tensor parallel): ~1M tokens of KV "
            "cache, slower steps",
            num_gpu_blocks=64_000,
            step_base_ms=14.0,
            prefill_ms_per_token=0.12,
            decode_ms_per_seq=0.08,
        ),
        EngineProfile(
            name="instant",
            description="No modelled latency: for functional tests",
            num_gpu_blocks=4096,
            step_base_ms=0.0,
            prefill_ms_per_token=0.0,
            decode_ms_per_seq=0.0,
            embed_call_ms=0.0,
            embed_ms_per_input=0.0,
        ),
    )
}
DEFAULT_PROFILE = "llama-3.1-8b-h100"
