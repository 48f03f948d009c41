"""Workloads: what the harness sends, as sessions of one or more OpenAI requests.

Prompt lengths are given in tokens and realised as text at about 4 characters per token (the
simulator's estimate, and close to real tokenizers for English), from a seeded generator, so the
same arguments always produce the same workload.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_VOCAB = """
time year people way day man thing woman life child world school state family student
group country problem hand part place case week company system program question work
government number night point home water room mother area money story fact month lot
right study book eye job word business issue side kind head house service friend father
power hour game line end member law car city community name president team minute idea
kid body information back parent face others level office door health person art war
""".split()  # noqa: SIM905 - prose reads better than a list


@dataclass
class Session:
    """Requests sent one after another; a conversation carries its history into each turn.

    Attributes:
        endpoint: ``chat/completions``, ``completions`` or ``embeddings``.
        turns: request bodies (without ``model`` and ``stream``, which the runner sets).
        conversation: prepend the previous turns and replies to each turn's ``messages``.
    """

    endpoint: str
    turns: list[dict[str, Any]]
    conversation: bool = False


@dataclass
class Workload:
    """A named list of sessions and how it was made."""

    name: str
    sessions: list[Session]
    params: dict[str, Any] = field(default_factory=dict)


def text_of_tokens(rng: random.Random, tokens: int) -> str:
    """Random words adding up to about ``tokens`` tokens (4 characters each)."""
    words: list[str] = []
    length = 0
    while length < tokens * 4:
        word = rng.choice(_VOCAB)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


def _length(rng: random.Random, mean: int, range_ratio: float) -> int:
    """Uniform in ``[mean * (1 - r), mean * (1 + r)]``, at least 1 (vLLM's random dataset)."""
    low, high = int(mean * (1 - range_ratio)), int(mean * (1 + range_ratio))
    return max(1, rng.randint(low, max(low, high)))


def _chat(content: str, output_tokens: int, system: str | None = None) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": content})
    return {"messages": messages, "max_tokens": output_tokens, "ignore_eos": True}


def synthetic(
    num: int, input_tokens: int, output_tokens: int, range_ratio: float = 0.0, seed: int = 0
) -> Workload:
    """``num`` independent chats with random prompts of about ``input_tokens`` tokens."""
    rng = random.Random(seed)
    sessions = [
        Session(
            "chat/completions",
            [
                _chat(
                    text_of_tokens(rng, _length(rng, input_tokens, range_ratio)),
                    _length(rng, output_tokens, range_ratio),
                )
            ],
        )
        for _ in range(num)
    ]
    return Workload(
        "synthetic",
        sessions,
        {
            "num": num,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "range_ratio": range_ratio,
            "seed": seed,
        },
    )


def shared_prefix(
    groups: int,
    prompts_per_group: int,
    prefix_tokens: int,
    suffix_tokens: int,
    output_tokens: int,
    seed: int = 0,
) -> Workload:
    """SGLang's generated-shared-prefix shape: ``groups`` system prompts of ``prefix_tokens``
    tokens, each followed by ``prompts_per_group`` distinct questions; requests are shuffled."""
    rng = random.Random(seed)
    sessions = []
    for _ in range(groups):
        system = text_of_tokens(rng, prefix_tokens)
        sessions += [
            Session(
                "chat/completions",
                [_chat(text_of_tokens(rng, suffix_tokens), output_tokens, system)],
            )
            for _ in range(prompts_per_group)
        ]
    rng.shuffle(sessions)
    return Workload(
        "shared-prefix",
        sessions,
        {
            "groups": groups,
            "prompts_per_group": prompts_per_group,
            "prefix_tokens": prefix_tokens,
            "suffix_tokens": suffix_tokens,
            "output_tokens": output_tokens,
            "seed": seed,
        },
    )


def multi_turn(
    conversations: int, turns: int, input_tokens: int, output_tokens: int, seed: int = 0
) -> Workload:
    """Conversations of ``turns`` user turns; each turn resends the whole history."""
    rng = random.Random(seed)
    sessions = [
        Session(
            "chat/completions",
            [
                {
                    "messages": [{"role": "user", "content": text_of_tokens(rng, input_tokens)}],
                    "max_tokens": output_tokens,
                    "ignore_eos": True,
                }
                for _ in range(turns)
            ],
            conversation=True,
        )
        for _ in range(conversations)
    ]
    return Workload(
        "multi-turn",
        sessions,
        {
            "conversations": conversations,
            "turns": turns,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "seed": seed,
        },
    )


def embedding_bursts(
    num: int, inputs_per_request: int, input_tokens: int, seed: int = 0
) -> Workload:
    """``num`` embeddings requests of ``inputs_per_request`` texts each."""
    rng = random.Random(seed)
    sessions = [
        Session(
            "embeddings",
            [{"input": [text_of_tokens(rng, input_tokens) for _ in range(inputs_per_request)]}],
        )
        for _ in range(num)
    ]
    return Workload(
        "embeddings",
        sessions,
        {
            "num": num,
            "inputs_per_request": inputs_per_request,
            "input_tokens": input_tokens,
            "seed": seed,
        },
    )


def _jsonl_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
                if not isinstance(value, dict):
                    raise ValueError(f"{path}:{number}: expected a JSON object")
                yield number, value


def from_jsonl(path: str | Path, limit: int | None = None) -> Workload:
    """OpenAI request bodies, one per line. ``messages`` means chat, ``prompt`` completions,
    ``input`` embeddings; an ``endpoint`` field overrides. ``model`` and ``stream`` are set by
    the runner.

    Raises:
        ValueError: a line is not a JSON object or has no recognisable request.
    """
    sessions = []
    for number, body in _jsonl_lines(Path(path)):
        endpoint = body.pop("endpoint", None)
        if endpoint is None:
            endpoint = (
                "chat/completions"
                if "messages" in body
                else "completions"
                if "prompt" in body
                else "embeddings"
                if "input" in body
                else None
            )
        if endpoint not in ("chat/completions", "completions", "embeddings"):
            raise ValueError(f"{path}:{number}: needs `messages`, `prompt` or `input`")
        body.pop("model", None)
        body.pop("stream", None)
        sessions.append(Session(endpoint, [body]))
        if limit is not None and len(sessions) >= limit:
            break
    return Workload("jsonl", sessions, {"path": str(path), "num": len(sessions)})
