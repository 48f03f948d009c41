"""The Anthropic Messages API (``POST /v1/messages``, ``/v1/messages/count_tokens``), as newer vLLM
versions serve it, on the same simulated engine: plain and streamed, tool use included."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream
from msgspec import Meta, Struct

from gateway_sim.generation import Generation, ToolChoice, generate
from gateway_sim.limits import check_generation, check_integers
from gateway_sim.openai_api import Job, Output, make_job
from gateway_sim.serving import SimRequestError, admit, decode, run_to_completion, stream_tokens
from gateway_sim.state import SimState
from gateway_sim.tokens import chat_template, content_text, split_tokens
from gateway_sim.toolscript import ScriptError, ToolStep, answer_output, decide, messages_turn

_json = msgspec.json.Encoder()
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class AnthropicMessage(Struct):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class AnthropicTool(Struct):
    name: str
    input_schema: dict[str, Any] = msgspec.field(default_factory=dict)
    description: str | None = None


class MessagesRequest(Struct):
    """The fields of a Messages request the simulator uses (others are accepted and ignored)."""

    model: str
    max_tokens: Annotated[int, Meta(ge=1)]
    messages: Annotated[list[AnthropicMessage], Meta(min_length=1)]
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    tools: list[AnthropicTool] | None = None
    tool_choice: dict[str, Any] | None = None


class CountTokensRequest(Struct):
    model: str
    messages: Annotated[list[AnthropicMessage], Meta(min_length=1)]
    system: str | list[dict[str, Any]] | None = None
    tools: list[AnthropicTool] | None = None


def anthropic_error(
    status: int, message: str, *, param: str | None = None, headers: dict[str, str] | None = None
) -> Response[Any]:
    """Anthropic's error shape, which has no ``param``: the field leads the message instead."""
    kind = ERROR_TYPES.get(status, "api_error")
    text = f"{param}: {message}" if param and not message.startswith(f"{param}:") else message
    body = {"type": "error", "error": {"type": kind, "message": text}}
    return Response(
        _json.encode(body), status_code=status, media_type="application/json", headers=headers
    )


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _json.encode(data) + b"\n\n"


def _tool_choice(value: dict[str, Any] | None) -> ToolChoice:
    if not value:
        return ToolChoice("auto")
    kind = value.get("type", "auto")
    if kind == "tool":
        return ToolChoice("required", value.get("name"))
    return ToolChoice({"any": "required", "none": "none"}.get(kind, "auto"))


def _prompt(req: MessagesRequest | CountTokensRequest) -> str:
    system = content_text(req.system) if req.system else None
    return chat_template(req.messages, system)


def _last_is_user_question(req: MessagesRequest) -> bool:
    last = req.messages[-1]
    if last.role != "user":
        return False
    blocks = last.content if isinstance(last.content, list) else []
    return not any(b.get("type") == "tool_result" for b in blocks)


def build_anthropic_routes(state: SimState) -> list[HTTPRouteHandler]:
    """``/v1/messages`` and ``/v1/messages/count_tokens`` for ``state``'s replica."""
    config = state.config

    def check_model(model: str) -> None:
        if model not in config.models:
            raise SimRequestError(f"model: {model}", "model", 404)

    def usage(job: Job, output_tokens: int) -> dict[str, int]:
        cached = job.sequence.cached_tokens
        return {
            "input_tokens": job.prompt_tokens - cached,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0,
        }

    def blocks(out: Output, *, streamed: bool = False) -> list[dict[str, Any]]:
        """The content blocks of ``out``; as a stream starts them (empty) when ``streamed``."""
        if isinstance(out, Generation):
            return [{"type": "text", "text": "" if streamed else out.text}]
        return [
            {
                "type": "tool_use",
                "id": f"toolu_{c.id}",
                "name": c.name,
                # vLLM's quirk sends "" for no arguments; an input is always an object.
                "input": {} if streamed else json.loads(c.arguments or "{}"),
            }
            for c in out.calls
        ]

    @post("/v1/messages", status_code=200)
    async def messages(request: Request[Any, Any, Any]) -> Response[Any]:
        raw, fault = await admit(state, request, "messages", error=anthropic_error)
        if fault:
            return fault
        check_integers(raw)
        req = decode(MessagesRequest, raw)
        check_model(req.model)
        prompt = _prompt(req)
        prompt_tokens = split_tokens(prompt)
        check_generation(config.profile, len(prompt_tokens), req.max_tokens)
        tools = [(t.name, t.input_schema) for t in req.tools or []]
        try:
            turn = messages_turn(req.messages)
        except ScriptError as exc:
            raise SimRequestError(str(exc), "messages") from None
        step = decide(
            turn, tools, _tool_choice(req.tool_choice), prompt, _last_is_user_question(req)
        )
        out: Output
        if isinstance(step, ToolStep):
            out = step
        elif step is not None:
            out = answer_output(step, req.max_tokens)
        else:
            out = generate(prompt, req.max_tokens, stop=req.stop_sequences or ())
        gate = state.gate_for(request.headers)
        job = make_job(state, prompt_tokens, [out], raw.get("cache_salt"), gate)
        mid = f"msg_{uuid.uuid4().hex[:24]}"
        reason = STOP_REASONS[out.finish_reason] if isinstance(out, Generation) else "tool_use"
        head = {"id": mid, "type": "message", "role": "assistant", "model": req.model}
        if req.stream:
            return Stream(
                stream_tokens(state, job.sequence, events(job, out, head, reason)),
                media_type="text/event-stream",
            )
        await run_to_completion(state, job.sequence)
        body = {
            **head,
            "content": blocks(out),
            "stop_reason": reason,
            "stop_sequence": None,
            "usage": usage(job, len(out.tokens)),
        }
        return Response(_json.encode(body), media_type="application/json")

    def events(
        job: Job, out: Output, head: dict[str, Any], reason: str
    ) -> Callable[[int, int], list[bytes]]:
        opening = blocks(out, streamed=True)

        def block_event(kind: str, index: int, **fields: Any) -> bytes:
            return _event(kind, {"type": kind, "index": index, **fields})

        def render(start: int, end: int) -> list[bytes]:
            chunks = []
            if start == 0:
                message = {
                    **head,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage(job, 1),
                }
                chunks.append(
                    _event("message_start", {"type": "message_start", "message": message})
                )
                chunks.append(block_event("content_block_start", 0, content_block=opening[0]))
                chunks.append(_event("ping", {"type": "ping"}))
            for t in range(start, min(end, len(out.tokens))):
                if isinstance(out, Generation):
                    index, delta = 0, {"type": "text_delta", "text": out.tokens[t]}
                else:
                    # Parallel calls are successive blocks: each closes before the next opens.
                    index, opens, fragment = out.piece(t)
                    if opens and index:
                        chunks.append(block_event("content_block_stop", index - 1))
                        chunks.append(
                            block_event("content_block_start", index, content_block=opening[index])
                        )
                    delta = {"type": "input_json_delta", "partial_json": fragment}
                chunks.append(block_event("content_block_delta", index, delta=delta))
            if job.sequence.done and end >= job.sequence.output_tokens:
                chunks.append(block_event("content_block_stop", len(opening) - 1))
                chunks.append(
                    _event(
                        "message_delta",
                        {
                            "type": "message_delta",
                            "delta": {"stop_reason": reason, "stop_sequence": None},
                            "usage": {"output_tokens": len(out.tokens)},
                        },
                    )
                )
                chunks.append(_event("message_stop", {"type": "message_stop"}))
            return chunks

        return render

    @post("/v1/messages/count_tokens", status_code=200)
    async def count_tokens(request: Request[Any, Any, Any]) -> Response[Any]:
        req = decode(CountTokensRequest, msgspec.json.decode(await request.body()))
        check_model(req.model)
        body = {"input_tokens": len(split_tokens(_prompt(req)))}
        return Response(_json.encode(body), media_type="application/json")

    return [messages, count_tokens]
