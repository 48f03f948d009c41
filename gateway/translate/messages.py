"""Translate between OpenAI Chat Completions and Anthropic Messages, in both directions.

Requests and responses are plain dicts (decoded JSON), so fields pass through without a model of
every vendor extension. The policy for what has no equivalent (docs/anthropic.md):

- Chat -> Messages: ``n`` > 1 and ``logprobs``/``top_logprobs`` are rejected with 400 (Anthropic
  cannot honour them); ``presence_penalty``, ``frequency_penalty``, ``logit_bias``, ``seed``,
  ``response_format``, ``service_tier`` and ``store`` are dropped; ``temperature`` above 1 is
  clamped to 1 (Anthropic's range is 0-1); a missing ``max_tokens`` becomes the configured default.
- Messages -> Chat: ``thinking``, ``cache_control`` and ``container`` are dropped; ``top_k`` is
  kept (vLLM honours it); document blocks are rejected with 400.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import InvalidRequestError

CHAT_TO_STOP_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
STOP_REASON_TO_CHAT = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
    "model_context_window_exceeded": "length",
}
DROPPED_CHAT_FIELDS = (
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "seed",
    "response_format",
    "service_tier",
    "store",
    "stream_options",
    "reasoning_effort",  # from the Responses API's reasoning.effort; Anthropic rejects it
    "parallel_tool_calls",
    "user",
    "max_completion_tokens",
    "n",
    "logprobs",
    "top_logprobs",
    "stop",
    "tools",
    "tool_choice",
    "messages",
    "model",
    "max_tokens",
    "temperature",
    "stream",
)


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="unsupported_value")


# ---------------------------------------------------------------------------- images and text


def _image_to_anthropic(part: dict[str, Any], where: str) -> dict[str, Any]:
    url = (part.get("image_url") or {}).get("url", "")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";")[0] or "image/png"
        if ";base64" not in header:
            raise _bad("image data URLs must be base64-encoded", where)
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _bad("expected an http(s) or data: URL", where)


def _image_to_chat(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = source.get("url", "")
    else:
        raise _bad(f"unsupported image source `{source.get('type')}`", where)
    return {"type": "image_url", "image_url": {"url": url}}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


# ------------------------------------------------------------------- Chat request -> Messages


def _user_content_to_anthropic(content: Any, where: str) -> Any:
    if isinstance(content, str) or content is None:
        return content or ""
    blocks = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            blocks.append(_image_to_anthropic(part, f"{where}[{i}].image_url"))
        else:
            raise _bad(
                f"content parts of type `{kind}` have no Anthropic equivalent", f"{where}[{i}].type"
            )
    return blocks


def _tool_calls_to_blocks(calls: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    blocks = []
    for j, call in enumerate(calls):
        function = call.get("function") or {}
        raw = function.get("arguments") or "{}"
        try:
            arguments = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            raise _bad(
                "tool call arguments must be a JSON object", f"{where}[{j}].function.arguments"
            ) from None
        if not isinstance(arguments, dict):
            raise _bad(
                "tool call arguments must be a JSON object", f"{where}[{j}].function.arguments"
            )
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": function.get("name", ""),
                "input": arguments,
            }
        )
    return blocks


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Anthropic requires alternating roles: merge into the previous message of the same role."""
    if messages and messages[-1]["role"] == role:
        previous = messages[-1]["content"]
        if isinstance(previous, str):
            previous = [{"type": "text", "text": previous}] if previous else []
        messages[-1]["content"] = [*previous, *blocks]
    else:
        messages.append({"role": role, "content": blocks})


def chat_request_to_messages(req: dict[str, Any], default_max_tokens: int) -> dict[str, Any]:
    """An OpenAI chat request as an Anthropic Messages request.

    Raises:
        InvalidRequestError: a parameter or content with no equivalent (see the module policy).
    """
    if (req.get("n") or 1) > 1:
        raise _bad("`n` > 1 is not supported by Anthropic models", "n")
    if req.get("logprobs") or req.get("top_logprobs"):
        raise _bad("`logprobs` is not supported by Anthropic models", "logprobs")
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(req.get("messages") or []):
        role, where = m.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            system.append(_text_of(m.get("content")))
        elif role == "user":
            content = _user_content_to_anthropic(m.get("content"), f"{where}.content")
            if isinstance(content, str):
                if messages and messages[-1]["role"] == "user":
                    _append(messages, "user", [{"type": "text", "text": content}])
                else:
                    messages.append({"role": "user", "content": content})
            else:
                _append(messages, "user", content)
        elif role == "assistant":
            text = _text_of(m.get("content"))
            calls = m.get("tool_calls") or []
            if not calls and not (messages and messages[-1]["role"] == "assistant"):
                messages.append({"role": "assistant", "content": text})
                continue
            blocks = [{"type": "text", "text": text}] if text else []
            blocks += _tool_calls_to_blocks(calls, f"{where}.tool_calls")
            _append(messages, "assistant", blocks)
        elif role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": m.get("tool_call_id", ""),
                "content": _text_of(m.get("content")),
            }
            _append(messages, "user", [result])
        else:
            raise _bad(f"role `{role}` has no Anthropic equivalent", f"{where}.role")
    out: dict[str, Any] = {
        "model": req.get("model"),
        "messages": messages,
        "max_tokens": req.get("max_completion_tokens")
        or req.get("max_tokens")
        or default_max_tokens,
    }
    if system:
        out["system"] = "\n\n".join(system)
    if req.get("temperature") is not None:
        out["temperature"] = min(float(req["temperature"]), 1.0)
    stop = req.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if req.get("tools"):
        out["tools"] = [
            {
                "name": t["function"]["name"],
                "description": t["function"].get("description") or "",
                "input_schema": t["function"].get("parameters")
                or {"type": "object", "properties": {}},
            }
            for t in req["tools"]
            if t.get("type", "function") == "function"
        ]
        choice = _tool_choice_to_anthropic(req.get("tool_choice"))
        if req.get("parallel_tool_calls") is False and choice.get("type") != "none":
            choice["disable_parallel_tool_use"] = True
        out["tool_choice"] = choice
    if req.get("user"):
        out["metadata"] = {"user_id": req["user"]}
    if req.get("stream"):
        out["stream"] = True
    for key, value in req.items():
        if key not in DROPPED_CHAT_FIELDS and key not in out:
            out[key] = value  # top_p, top_k and vendor extras pass through
    return out


def _tool_choice_to_anthropic(choice: Any) -> dict[str, Any]:
    if isinstance(choice, dict):
        return {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    return {"type": {"none": "none", "required": "any"}.get(choice or "auto", "auto")}


# ------------------------------------------------------------------ Messages response -> Chat


def messages_usage_to_chat(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic usage as OpenAI usage (cache reads count as cached prompt tokens)."""
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (
        (usage.get("input_tokens") or 0) + cached + (usage.get("cache_creation_input_tokens") or 0)
    )
    completion = usage.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def messages_response_to_chat(resp: dict[str, Any], created: int) -> dict[str, Any]:
    """An Anthropic Messages response as an OpenAI chat completion."""
    texts, calls = [], []
    for block in resp.get("content") or []:
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append(
                {
                    "id": block.get("id", ""),
                    "type": "function",
                    "function": {
                        "name": block.get("name", ""),
                        "arguments": json.dumps(block.get("input") or {}),
                    },
                }
            )
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    reason = STOP_REASON_TO_CHAT.get(resp.get("stop_reason") or "end_turn", "stop")
    return {
        "id": resp.get("id", ""),
        "object": "chat.completion",
        "created": created,
        "model": resp.get("model", ""),
        "choices": [{"index": 0, "message": message, "finish_reason": reason, "logprobs": None}],
        "usage": messages_usage_to_chat(resp.get("usage") or {}),
    }


# ------------------------------------------------------------------- Messages request -> Chat


def _user_blocks_to_chat(content: Any, where: str) -> list[dict[str, Any]]:
    """A user message's blocks as chat messages: tool results first, then the user's own."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    results, parts = [], []
    for i, block in enumerate(content or []):
        kind = block.get("type")
        if kind == "tool_result":
            results.append(
                {
                    "role": "tool",
                    "tool_call_id": block.get("tool_use_id", ""),
                    "content": _text_of(block.get("content")),
                }
            )
        elif kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            parts.append(_image_to_chat(block, f"{where}[{i}]"))
        else:
            raise _bad(
                f"content blocks of type `{kind}` are not supported for this model",
                f"{where}[{i}].type",
            )
    return [*results, *([{"role": "user", "content": parts}] if parts else [])]


def messages_request_to_chat(req: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic Messages request as an OpenAI chat request.

    Raises:
        InvalidRequestError: content with no chat equivalent.
    """
    messages: list[dict[str, Any]] = []
    if req.get("system"):
        messages.append({"role": "system", "content": _text_of(req["system"])})
    for i, m in enumerate(req.get("messages") or []):
        where = f"messages[{i}].content"
        if m.get("role") == "user":
            messages += _user_blocks_to_chat(m.get("content"), where)
            continue
        content = m.get("content")
        if isinstance(content, str):
            messages.append({"role": "assistant", "content": content})
            continue
        text = "".join(b.get("text", "") for b in content or [] if b.get("type") == "text")
        calls = [
            {
                "id": b.get("id", ""),
                "type": "function",
                "function": {
                    "name": b.get("name", ""),
                    "arguments": json.dumps(b.get("input") or {}),
                },
            }
            for b in content or []
            if b.get("type") == "tool_use"
        ]
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = calls
        messages.append(message)
    out: dict[str, Any] = {
        "model": req.get("model"),
        "messages": messages,
        "max_tokens": req.get("max_tokens"),
    }
    for key in ("temperature", "top_p", "top_k"):
        if req.get(key) is not None:
            out[key] = req[key]
    if req.get("stop_sequences"):
        out["stop"] = req["stop_sequences"]
    if req.get("tools"):
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name", ""),
                    "description": t.get("description") or "",
                    "parameters": t.get("input_schema") or {"type": "object", "properties": {}},
                },
            }
            for t in req["tools"]
            if "input_schema" in t or "type" not in t
        ]
        choice = req.get("tool_choice") or {"type": "auto"}
        kind = choice.get("type", "auto")
        out["tool_choice"] = (
            {"type": "function", "function": {"name": choice.get("name")}}
            if kind == "tool"
            else {"any": "required", "none": "none"}.get(kind, "auto")
        )
        if choice.get("disable_parallel_tool_use"):
            out["parallel_tool_calls"] = False
    user = (req.get("metadata") or {}).get("user_id")
    if user:
        out["user"] = user
    if req.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


# ------------------------------------------------------------------ Chat response -> Messages


def chat_usage_to_messages(usage: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI usage as Anthropic usage (cached prompt tokens become cache reads)."""
    usage = usage or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {
        "input_tokens": (usage.get("prompt_tokens") or 0) - cached,
        "output_tokens": usage.get("completion_tokens") or 0,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


def chat_response_to_messages(resp: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat completion as an Anthropic Messages response."""
    choice = (resp.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except (json.JSONDecodeError, RecursionError):
            arguments = {"_raw": function.get("arguments")}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": function.get("name", ""),
                "input": arguments,
            }
        )
    reason = CHAT_TO_STOP_REASON.get(choice.get("finish_reason") or "stop", "end_turn")
    return {
        "id": f"msg_{resp.get('id', '')}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": None,
        "usage": chat_usage_to_messages(resp.get("usage")),
    }
