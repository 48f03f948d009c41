"""Translate OpenAI's Responses API to Chat Completions and back, for backends that only speak chat.

Requests and responses are plain dicts (decoded JSON), as in :mod:`gateway.translate.messages`.
The policy for what has no chat equivalent:

- Translated: ``input`` (a string, or message, ``function_call`` and ``function_call_output``
  items), ``instructions`` (a leading system message), ``max_output_tokens`` (as
  ``max_completion_tokens``), ``temperature``, ``top_p``, function ``tools``, ``tool_choice``
  (``allowed_tools`` by narrowing ``tools`` to the allowed ones), ``parallel_tool_calls``,
  ``text.format`` (as ``response_format``), ``reasoning.effort`` (as ``reasoning_effort``),
  ``user``, ``stream`` (always with ``stream_options.include_usage``); ``seed``, ``stop`` and any
  field the Responses API does not define (vLLM's ``top_k``, ``min_p``...) pass through.
- Dropped (nothing to do, or nothing a chat backend can do with them): ``store``,
  ``previous_response_id`` (resolved by the caller into ``history``), ``metadata``,
  ``stream_options``, ``service_tier``, ``text.verbosity``, ``reasoning.summary``,
  ``max_tool_calls`` (it counts built-in tool calls only), ``safety_identifier``,
  ``prompt_cache_key``, ``prompt_cache_retention``, ``prompt_cache_options``,
  ``truncation: "disabled"``, ``top_logprobs: 0``; ``reasoning`` input items (chat has no
  reasoning input, and chat templates drop earlier turns' reasoning anyway); ``include`` values
  that ask for nothing this translation produces (``reasoning.encrypted_content``,
  ``message.input_image.image_url``).
- Refused with 400 (``param`` names the field): built-in tools and tool choices (``web_search``,
  ``file_search``, ``code_interpreter``, ``computer_use_preview``, ``image_generation``,
  ``mcp``, ``custom``...), items other than messages and function calls (``item_reference``,
  built-in tool calls...), ``input_file`` parts and images by ``file_id``, ``background: true``,
  ``conversation``, ``prompt`` (stored prompts), ``context_management``, ``moderation``,
  ``truncation: "auto"``, ``top_logprobs`` > 0 and the other ``include`` values.

Chat answers become a ``Response`` object: the message (and vLLM's ``reasoning_content`` as a
``reasoning`` item with ``reasoning_text``), one ``function_call`` item per tool call, usage, and
the echo of the request's parameters that the ``Response`` schema requires.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from gateway.errors import InvalidRequestError

# Fields of OpenAI's CreateResponse; every other field of a request is a vendor extra that passes
# through to the chat request.
RESPONSES_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "previous_response_id",
        "store",
        "stream",
        "stream_options",
        "max_output_tokens",
        "temperature",
        "top_p",
        "top_logprobs",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_tool_calls",
        "text",
        "reasoning",
        "include",
        "metadata",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "service_tier",
        "truncation",
        "background",
        "conversation",
        "prompt",
        "context_management",
        "moderation",
    }
)
# `include` values that ask for nothing a translated response holds: accepted and ignored.
VACUOUS_INCLUDES = frozenset({"reasoning.encrypted_content", "message.input_image.image_url"})
# Fields that need state or machinery a chat backend does not have, when set (not null/false).
REFUSED_FIELDS = {
    "background": "background responses are not supported for this model",
    "conversation": "conversations are not supported for this model; use previous_response_id",
    "prompt": "stored prompts are not supported for this model",
    "context_management": "context management is not supported for this model",
    "moderation": "moderation is not supported for this model",
}
CHAT_TO_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
ERROR_CODES = frozenset(
    {"server_error", "rate_limit_exceeded", "invalid_prompt", "vector_store_timeout"}
)


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="unsupported_value")


def new_response_id() -> str:
    """A fresh ``resp_...`` id (random, like OpenAI's)."""
    return "resp_" + secrets.token_hex(24)


def item_id(prefix: str, response_id: str, output_index: int) -> str:
    """The id of the output item at ``output_index`` of ``response_id`` (``msg_``, ``fc_``,
    ``rs_``): unique across responses, and the same whether the answer was streamed or not."""
    return f"{prefix}_{response_id.removeprefix('resp_')}_{output_index}"


# ----------------------------------------------------------------------- Responses request -> Chat


def input_items(req: dict[str, Any]) -> list[dict[str, Any]]:
    """A request's ``input`` as a list of items (a string is one user message): what a response
    store keeps, with the response's ``output``, as the ``history`` of a later turn."""
    value = req.get("input")
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value)


def _text_part(part: dict[str, Any]) -> str | None:
    """The text of a text part (``input_text``, ``output_text``, or chat's ``text``)."""
    if part.get("type") in ("input_text", "output_text", "text"):
        text = part.get("text")
        return text if isinstance(text, str) else ""
    return None


def _image_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    if part.get("file_id"):
        raise _bad("images by `file_id` are not supported for this model", f"{where}.file_id")
    url = part.get("image_url")
    if isinstance(url, dict):  # lenient: chat's {"url": ...} shape
        url = url.get("url")
    if not isinstance(url, str) or not url:
        raise _bad("an `input_image` needs an `image_url`", f"{where}.image_url")
    image: dict[str, Any] = {"url": url}
    if part.get("detail") in ("low", "high", "auto"):
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _user_content(content: Any, where: str) -> Any:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad("expected a string or a list of content parts", where)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise _bad("expected a content part object", at)
        text = _text_part(part)
        if text is not None:
            parts.append({"type": "text", "text": text})
        elif part.get("type") == "input_image":
            parts.append(_image_part(part, at))
        else:
            raise _bad(
                f"content parts of type `{part.get('type')}` are not supported for this model",
                f"{at}.type",
            )
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _plain_text(content: Any, where: str, *, refusals: bool = False) -> str:
    """Text content (system, developer and assistant messages): parts joined."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if not isinstance(content, list):
        raise _bad("expected a string or a list of content parts", where)
    texts = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise _bad("expected a content part object", at)
        text = _text_part(part)
        if text is None and refusals and part.get("type") == "refusal":
            text = part.get("refusal") or ""
        if text is None:
            raise _bad(
                f"content parts of type `{part.get('type')}` are not supported in this message",
                f"{at}.type",
            )
        texts.append(text)
    return "".join(texts)


def _output_text(output: Any, where: str) -> str:
    """A ``function_call_output``'s output: a string, or text parts joined."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return _plain_text(output, where)
    return json.dumps(output)


def _tool_call(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad("a `function_call` needs a `call_id`", f"{where}.call_id")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise _bad("a `function_call` needs a `name`", f"{where}.name")
    arguments = item.get("arguments")
    return {
        "id": call_id,
        "type": "function",
        "function": {
            "name": name,
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments or {}),
        },
    }


def _items_to_messages(
    items: list[dict[str, Any]], messages: list[dict[str, Any]], param: str | None
) -> None:
    """Append ``items`` to ``messages`` as chat messages. ``param``: the field errors name
    (None: ``input[i]...``; history items are named by ``previous_response_id``)."""
    for i, item in enumerate(items):
        where = param or f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad("expected an input item object", where)
        kind = item.get("type") or "message"
        if kind == "message":
            role = item.get("role")
            content = item.get("content")
            at = param or f"{where}.content"
            if role in ("system", "developer"):
                messages.append({"role": "system", "content": _plain_text(content, at)})
            elif role == "user":
                messages.append({"role": "user", "content": _user_content(content, at)})
            elif role == "assistant":
                messages.append(
                    {"role": "assistant", "content": _plain_text(content, at, refusals=True)}
                )
            else:
                raise _bad(f"role `{role}` is not supported", param or f"{where}.role")
        elif kind == "function_call":
            call = _tool_call(item, where)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if last.get("content") == "":
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _bad("a `function_call_output` needs a `call_id`", f"{where}.call_id")
            output = _output_text(item.get("output"), param or f"{where}.output")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind == "reasoning":
            continue  # chat has no reasoning input; chat templates drop it from earlier turns
        elif kind == "item_reference":
            raise _bad(
                "item references are not supported for this model; send the items themselves "
                "or use `previous_response_id`",
                param or f"{where}.type",
            )
        else:
            raise _bad(
                f"input items of type `{kind}` are not supported for this model",
                param or f"{where}.type",
            )


def _function_tools(req: dict[str, Any]) -> list[dict[str, Any]]:
    tools = []
    for i, tool in enumerate(req.get("tools") or []):
        kind = tool.get("type")
        if kind != "function":
            raise _bad(
                f"built-in tools of type `{kind}` are not supported for this model; only "
                "`function` tools are",
                f"tools[{i}].type",
            )
        function: dict[str, Any] = {
            "name": tool.get("name") or "",
            "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
        }
        if tool.get("description") is not None:
            function["description"] = tool["description"]
        if tool.get("strict") is not None:
            function["strict"] = tool["strict"]
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(choice: Any, tools: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """Chat's ``tool_choice`` and the tools to send (``allowed_tools`` narrows them)."""
    if choice is None or isinstance(choice, str):
        return choice, tools
    kind = choice.get("type")
    if kind == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}, tools
    if kind == "allowed_tools":
        allowed = set()
        for j, tool in enumerate(choice.get("tools") or []):
            if tool.get("type") != "function":
                raise _bad(
                    f"allowed tools of type `{tool.get('type')}` are not supported",
                    f"tool_choice.tools[{j}].type",
                )
            allowed.add(tool.get("name"))
        narrowed = [t for t in tools if t["function"]["name"] in allowed]
        return choice.get("mode") or "auto", narrowed
    raise _bad(f"tool_choice of type `{kind}` is not supported for this model", "tool_choice.type")


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = (text or {}).get("format") if isinstance(text, dict) else None
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema: dict[str, Any] = {"name": fmt.get("name"), "schema": fmt.get("schema") or {}}
        for key in ("description", "strict"):
            if fmt.get(key) is not None:
                schema[key] = fmt[key]
        return {"type": "json_schema", "json_schema": schema}
    raise _bad(f"text.format of type `{fmt.get('type')}` is not supported", "text.format.type")


def _refuse_unsupported(req: dict[str, Any]) -> None:
    for key, message in REFUSED_FIELDS.items():
        if req.get(key) not in (None, False):
            raise _bad(message, key)
    if req.get("truncation") == "auto":
        raise _bad("`truncation: auto` is not supported for this model", "truncation")
    if req.get("top_logprobs"):
        raise _bad("`top_logprobs` is not supported for this model", "top_logprobs")
    for i, value in enumerate(req.get("include") or []):
        if value not in VACUOUS_INCLUDES:
            raise _bad(
                f"`include` value `{value}` is not supported for this model", f"include[{i}]"
            )


def responses_request_to_chat(
    req: dict[str, Any], *, history: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A Responses request (validated by :class:`gateway.schemas.responses.ResponsesRequest`) as
    a Chat Completions request.

    ``history``: the items of the earlier turns when the request has a
    ``previous_response_id`` (each turn's :func:`input_items` then its response's ``output``,
    oldest first); they come after ``instructions`` and before ``input``. The earlier turns'
    instructions are not carried over (as OpenAI does).

    Raises:
        InvalidRequestError: a field, tool or item with no chat equivalent (see the module
            policy); ``param`` names it (``tools[0].type``, ``input[2].content[1].type``...).
    """
    _refuse_unsupported(req)
    messages: list[dict[str, Any]] = []
    if req.get("instructions"):
        messages.append({"role": "system", "content": req["instructions"]})
    if history:
        _items_to_messages(history, messages, "previous_response_id")
    _items_to_messages(input_items(req), messages, None)
    out: dict[str, Any] = {"model": req.get("model"), "messages": _merge_leading_system(messages)}
    if req.get("max_output_tokens") is not None:
        out["max_completion_tokens"] = req["max_output_tokens"]
    for key in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if req.get(key) is not None:
            out[key] = req[key]
    tools = _function_tools(req)
    choice, tools = _tool_choice(req.get("tool_choice"), tools)
    if tools:
        out["tools"] = tools
        if choice is not None:
            out["tool_choice"] = choice
    elif choice not in (None, "none", "auto"):
        param = "tool_choice" if isinstance(choice, str) else "tool_choice.name"
        raise _bad("`tool_choice` names a tool but no function tools were given", param)
    else:
        out.pop("parallel_tool_calls", None)  # chat servers refuse it without tools
    response_format = _response_format(req.get("text"))
    if response_format is not None:
        out["response_format"] = response_format
    effort = (req.get("reasoning") or {}).get("effort")
    if effort is not None:
        out["reasoning_effort"] = effort
    if req.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    for key, value in req.items():
        if key not in RESPONSES_FIELDS and key not in out:
            out[key] = value  # seed, stop, top_k and vendor extras
    return out


def _merge_leading_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One system message up front (instructions and leading system/developer items joined):
    many chat templates accept no more than one, and only first."""
    head = 0
    while head < len(messages) and messages[head]["role"] == "system":
        head += 1
    if head < 2:
        return messages
    text = "\n\n".join(m["content"] for m in messages[:head] if m["content"])
    return [{"role": "system", "content": text}, *messages[head:]]


# ---------------------------------------------------------------------- Chat response -> Response


def chat_usage_to_responses(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Chat usage as a ``ResponseUsage`` (None when the chat answer had none)."""
    if not usage:
        return None
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": prompt_details.get("cached_tokens") or 0,
            "cache_write_tokens": 0,
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": completion_details.get("reasoning_tokens") or 0
        },
        "total_tokens": usage.get("total_tokens") or prompt + completion,
    }


def echo_tools(req: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's function tools as a ``Response`` lists them."""
    return [
        {
            "type": "function",
            "name": t.get("name") or "",
            "description": t.get("description"),
            "parameters": t.get("parameters"),
            "strict": t.get("strict"),
        }
        for t in req.get("tools") or []
        if t.get("type") == "function"
    ]


def response_object(
    req: dict[str, Any],
    *,
    response_id: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    completed_at: int | None = None,
    incomplete_reason: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``Response`` object for ``req``: the given state, and the echo of the request's
    parameters (``instructions``, ``tools``, ``text``...) that the schema asks for."""
    reasoning = req.get("reasoning")
    out: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": completed_at if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": req.get("instructions"),
        "max_output_tokens": req.get("max_output_tokens"),
        "max_tool_calls": req.get("max_tool_calls"),
        "model": req.get("model") or "",
        "output": output,
        "parallel_tool_calls": req.get("parallel_tool_calls") is not False,
        "previous_response_id": req.get("previous_response_id"),
        "reasoning": (
            {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}
            if isinstance(reasoning, dict)
            else None
        ),
        "store": req.get("store") is not False,
        "temperature": req.get("temperature"),
        "text": req.get("text") or {"format": {"type": "text"}},
        "tool_choice": req.get("tool_choice") or "auto",
        "tools": echo_tools(req),
        "top_logprobs": req.get("top_logprobs"),
        "top_p": req.get("top_p"),
        "truncation": req.get("truncation") or "disabled",
        "background": False,
        "metadata": req.get("metadata") or {},
    }
    for key in ("user", "safety_identifier", "prompt_cache_key"):
        if isinstance(req.get(key), str):
            out[key] = req[key]
    if usage is not None:
        out["usage"] = usage
    return out


def status_of(finish_reason: str | None) -> tuple[str, str | None]:
    """A chat ``finish_reason`` as a Response ``status`` and ``incomplete_details.reason``."""
    reason = CHAT_TO_INCOMPLETE.get(finish_reason or "")
    return ("incomplete", reason) if reason else ("completed", None)


def output_text_part(text: str) -> dict[str, Any]:
    """An ``output_text`` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(
    id_: str, content: list[dict[str, Any]], status: str = "completed"
) -> dict[str, Any]:
    """An assistant ``message`` output item."""
    return {"type": "message", "id": id_, "status": status, "role": "assistant", "content": content}


def reasoning_item(id_: str, text: str | None, status: str = "completed") -> dict[str, Any]:
    """A ``reasoning`` output item holding the model's reasoning as ``reasoning_text``."""
    content = [{"type": "reasoning_text", "text": text}] if text is not None else []
    return {"type": "reasoning", "id": id_, "summary": [], "content": content, "status": status}


def function_call_item(
    id_: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    """A ``function_call`` output item."""
    return {
        "type": "function_call",
        "id": id_,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def reasoning_of(message: dict[str, Any]) -> str | None:
    """vLLM's reasoning text of a message or delta (``reasoning_content``, or ``reasoning`` in
    newer versions)."""
    value = message.get("reasoning_content")
    if value is None:
        value = message.get("reasoning")
    return value if isinstance(value, str) else None


def chat_response_to_response(
    chat: dict[str, Any],
    request: dict[str, Any],
    *,
    response_id: str,
    created_at: int,
    completed_at: int | None = None,
) -> dict[str, Any]:
    """A chat completion as the ``Response`` object of the Responses request ``request``.

    ``completed_at`` defaults to ``created_at``. ``model`` is the request's (the name the client
    asked for), as for the Anthropic translation.
    """
    choice = (chat.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    status, reason = status_of(choice.get("finish_reason"))
    output: list[dict[str, Any]] = []
    reasoning = reasoning_of(message)
    if reasoning:
        output.append(reasoning_item(item_id("rs", response_id, len(output)), reasoning))
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append(output_text_part(message["content"]))
    if message.get("refusal"):
        content.append({"type": "refusal", "refusal": message["refusal"]})
    calls = message.get("tool_calls") or []
    if content or not (calls or output):
        content = content or [output_text_part("")]
        output.append(message_item(item_id("msg", response_id, len(output)), content))
    for call in calls:
        function = call.get("function") or {}
        index = len(output)
        output.append(
            function_call_item(
                item_id("fc", response_id, index),
                call.get("id") or item_id("call", response_id, index),
                function.get("name") or "",
                function.get("arguments") or "",
            )
        )
    if status == "incomplete" and output:
        output[-1]["status"] = "incomplete"
    return response_object(
        request,
        response_id=response_id,
        created_at=created_at,
        status=status,
        output=output,
        usage=chat_usage_to_responses(chat.get("usage")),
        completed_at=created_at if completed_at is None else completed_at,
        incomplete_reason=reason,
    )


def response_error(error: dict[str, Any] | None) -> dict[str, Any]:
    """An upstream error envelope's inner object as a Response's ``error`` (its ``code`` limited
    to the values the schema allows: ``server_error`` unless it is one of them)."""
    error = error or {}
    code = error.get("code")
    return {
        "code": code if code in ERROR_CODES else "server_error",
        "message": str(error.get("message") or "upstream stream error"),
    }
