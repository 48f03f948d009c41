"""The simulator's HTTP surface: vLLM's OpenAI server, plus ``/sim/*`` admin routes.

Admin routes: ``GET /sim/stats`` (counters and the most recent requests as received, headers
included), ``GET/POST /sim/faults`` (read or change fault injection at run time) and
``POST /sim/reset`` (clear the stats).
"""

from __future__ import annotations

import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.response import Stream

from gateway.schemas.openai import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChoiceDelta,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionRequest,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    FunctionCall,
    ModelCard,
    ModelList,
    ResponseMessage,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from gateway.schemas.validation import split_validation_message
from gateway_sim.engine import (
    Generation,
    chat_prompt_text,
    count_chat_tokens,
    count_text_tokens,
    embed,
    embedding_base64,
    embedding_inputs,
    generate,
    plan_tool_call,
)

_json = msgspec.json.Encoder()
_chat = msgspec.json.Decoder(ChatCompletionRequest)
_completion = msgspec.json.Decoder(CompletionRequest)
_embedding = msgspec.json.Decoder(EmbeddingRequest)
_any = msgspec.json.Decoder()


class Faults(msgspec.Struct, forbid_unknown_fields=True):
    """Fault injection, changeable at run time through ``POST /sim/faults``.

    Attributes:
        error_rate: share of inference requests answered with ``error_status`` (0 to 1).
        error_status: the status of injected errors.
        delay_ms: extra latency before answering.
        health_status: what ``/health`` answers (200, or 503 to look dead).
        retry_after_s: ``Retry-After`` sent with injected 429s.
        drop_stream_after: abort streams' connections after this many chunks (0: never).
    """

    error_rate: float = 0.0
    error_status: int = 503
    delay_ms: float = 0.0
    health_status: int = 200
    retry_after_s: int = 1
    drop_stream_after: int = 0


class StreamDroppedError(Exception):
    """Raised inside a stream to abort its connection (the ``drop_stream_after`` fault)."""


@dataclass
class SimConfig:
    """A simulated server.

    Attributes:
        models: model names it serves (the first is the default).
        ttft_ms: time to the first token.
        itl_ms: time between tokens.
        embedding_dim: length of embedding vectors.
        max_model_len: context window reported by ``/v1/models``.
        faults: initial fault injection.
    """

    models: list[str] = field(default_factory=lambda: ["sim-model"])
    ttft_ms: float = 20.0
    itl_ms: float = 5.0
    embedding_dim: int = 256
    max_model_len: int = 8192
    faults: Faults = field(default_factory=Faults)


@dataclass
class SimStats:
    """What the simulator saw; served as JSON at ``/sim/stats``."""

    requests: dict[str, int] = field(default_factory=dict)
    completed: int = 0
    cancelled: int = 0
    running: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    injected_errors: int = 0
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=64))

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "completed": self.completed,
            "cancelled": self.cancelled,
            "running": self.running,
            "prompt_tokens": self.prompt_tokens,
            "generation_tokens": self.generation_tokens,
            "injected_errors": self.injected_errors,
            "recent": list(self.recent),
        }


def _error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    err_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    kind = err_type or ("invalid_request_error" if status < 500 else "server_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": str(status)}}
    return Response(
        _json.encode(body), status_code=status, media_type="application/json", headers=headers
    )


class BadRequestError(Exception):
    """A request the simulated server rejects with 400."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.status = status


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        param, problem = split_validation_message(str(exc))
        raise BadRequestError(problem, param) from None
    except msgspec.DecodeError:
        raise BadRequestError("invalid JSON body") from None


def create_sim_app(config: SimConfig) -> Litestar:
    """A Litestar app simulating one vLLM server with ``config``."""
    stats = SimStats()
    created = int(time.time())
    rng = random.Random()

    def check_model(model: str) -> None:
        if model not in config.models:
            raise BadRequestError(f"The model `{model}` does not exist.", "model", 404)

    async def admit(
        request: Request[Any, Any, Any], kind: str
    ) -> tuple[bytes, Response[Any] | None]:
        """Record the request and apply faults; a Response means 'answer this instead'."""
        body = await request.body()
        stats.requests[kind] = stats.requests.get(kind, 0) + 1
        try:
            parsed = _any.decode(body)
        except msgspec.DecodeError:
            parsed = None
        stats.recent.append(
            {"path": request.url.path, "headers": dict(request.headers), "body": parsed}
        )
        faults = config.faults
        if faults.delay_ms:
            await anyio.sleep(faults.delay_ms / 1000)
        if faults.error_rate and rng.random() < faults.error_rate:
            stats.injected_errors += 1
            status = faults.error_status
            headers = {"retry-after": str(faults.retry_after_s)} if status == 429 else None
            return body, _error(status, f"Injected fault: status {status}", headers=headers)
        return body, None

    def usage(prompt: int, completion: int) -> Usage:
        return Usage(prompt, completion, prompt + completion)

    async def pace(tokens: int) -> None:
        await anyio.sleep((config.ttft_ms + config.itl_ms * max(tokens - 1, 0)) / 1000)

    def chat_outputs(req: ChatCompletionRequest) -> tuple[str, list[Generation | Any]]:
        prompt = chat_prompt_text(req.messages)
        stop = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
        limit = req.max_completion_tokens or req.max_tokens
        outputs: list[Any] = []
        for i in range(req.n or 1):
            call = plan_tool_call(prompt, req.tools or [], req.tool_choice, req.messages[-1].role)
            outputs.append(call if call else generate(prompt, limit, i, stop=stop))
        return prompt, outputs

    @post("/v1/chat/completions", status_code=200)
    async def chat(request: Request[Any, Any, Any]) -> Response[Any]:
        body, fault = await admit(request, "chat")
        if fault:
            return fault
        req = _decode(_chat, body)
        check_model(req.model)
        _, outputs = chat_outputs(req)
        prompt_tokens = count_chat_tokens(req.messages)
        completion_tokens = sum(
            len(o.tokens) if isinstance(o, Generation) else count_text_tokens(o.arguments)
            for o in outputs
        )
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return Stream(
                faulty(stream_chat(rid, req.model, outputs, prompt_tokens, include_usage)),
                media_type="text/event-stream",
            )
        stats.running += 1
        try:
            await pace(completion_tokens)
        finally:
            stats.running -= 1
        choices = []
        for i, out in enumerate(outputs):
            if isinstance(out, Generation):
                msg = ResponseMessage("assistant", out.text, None)
                choices.append(ChatChoice(i, msg, out.finish_reason))
            else:
                call = ToolCall(out.id, FunctionCall(out.name, out.arguments))
                choices.append(
                    ChatChoice(i, ResponseMessage("assistant", None, None, [call]), "tool_calls")
                )
        finish(prompt_tokens, completion_tokens)
        result = ChatCompletion(
            rid, int(time.time()), req.model, choices, usage(prompt_tokens, completion_tokens)
        )
        return Response(_json.encode(result), media_type="application/json")

    def finish(prompt_tokens: int, completion_tokens: int) -> None:
        stats.completed += 1
        stats.prompt_tokens += prompt_tokens
        stats.generation_tokens += completion_tokens

    def sse(obj: Any) -> bytes:
        return b"data: " + _json.encode(obj) + b"\n\n"

    async def faulty(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Apply ``drop_stream_after``: raising after headers went out aborts the connection."""
        limit = config.faults.drop_stream_after
        sent = 0
        async for chunk in chunks:
            if limit and sent >= limit:
                stats.injected_errors += 1
                raise StreamDroppedError(f"dropped after {sent} chunks")
            sent += 1
            yield chunk

    async def stream_chat(
        rid: str, model: str, outputs: list[Any], prompt_tokens: int, include_usage: bool
    ) -> AsyncIterator[bytes]:
        now = int(time.time())
        stats.running += 1
        sent = 0
        try:
            await anyio.sleep(config.ttft_ms / 1000)
            for i, _ in enumerate(outputs):
                yield sse(
                    ChatCompletionChunk(
                        rid, now, model, [ChunkChoice(i, ChoiceDelta(role="assistant", content=""))]
                    )
                )
            for i, out in enumerate(outputs):
                if isinstance(out, Generation):
                    for token in out.tokens:
                        if sent:
                            await anyio.sleep(config.itl_ms / 1000)
                        sent += 1
                        yield sse(
                            ChatCompletionChunk(
                                rid, now, model, [ChunkChoice(i, ChoiceDelta(content=token))]
                            )
                        )
                    reason = out.finish_reason
                else:
                    head = ToolCallDelta(0, out.id, "function", {"name": out.name, "arguments": ""})
                    yield sse(
                        ChatCompletionChunk(
                            rid, now, model, [ChunkChoice(i, ChoiceDelta(tool_calls=[head]))]
                        )
                    )
                    args = out.arguments
                    for start in range(0, len(args), 8):
                        await anyio.sleep(config.itl_ms / 1000)
                        part = ToolCallDelta(0, function={"arguments": args[start : start + 8]})
                        yield sse(
                            ChatCompletionChunk(
                                rid, now, model, [ChunkChoice(i, ChoiceDelta(tool_calls=[part]))]
                            )
                        )
                    sent += count_text_tokens(args)
                    reason = "tool_calls"
                yield sse(
                    ChatCompletionChunk(
                        rid,
                        now,
                        model,
                        [
                            ChunkChoice(
                                i,
                                ChoiceDelta(content="" if reason != "tool_calls" else None),
                                reason,
                            )
                        ],
                    )
                )
            if include_usage:
                yield sse(ChatCompletionChunk(rid, now, model, [], usage(prompt_tokens, sent)))
            yield b"data: [DONE]\n\n"
            finish(prompt_tokens, sent)
        except BaseException:
            stats.cancelled += 1
            raise
        finally:
            stats.running -= 1

    @post("/v1/completions", status_code=200)
    async def completions(request: Request[Any, Any, Any]) -> Response[Any]:
        body, fault = await admit(request, "completions")
        if fault:
            return fault
        req = _decode(_completion, body)
        check_model(req.model)
        prompts = [text for text, _ in embedding_inputs(req.prompt)]
        prompt_tokens = sum(tokens for _, tokens in embedding_inputs(req.prompt))
        stop = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
        outputs = [
            generate(p, req.max_tokens if req.max_tokens is not None else 16, i, stop=stop)
            for p in prompts
            for i in range(req.n or 1)
        ]
        completion_tokens = sum(len(o.tokens) for o in outputs)
        rid = f"cmpl-{uuid.uuid4().hex}"
        now = int(time.time())
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return Stream(
                faulty(
                    stream_completion(rid, now, req.model, outputs, prompt_tokens, include_usage)
                ),
                media_type="text/event-stream",
            )
        stats.running += 1
        try:
            await pace(completion_tokens)
        finally:
            stats.running -= 1
        finish(prompt_tokens, completion_tokens)
        choices = [CompletionChoice(i, o.text, o.finish_reason) for i, o in enumerate(outputs)]
        result = Completion(rid, now, req.model, choices, usage(prompt_tokens, completion_tokens))
        return Response(_json.encode(result), media_type="application/json")

    async def stream_completion(
        rid: str,
        now: int,
        model: str,
        outputs: list[Generation],
        prompt_tokens: int,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        stats.running += 1
        sent = 0
        try:
            await anyio.sleep(config.ttft_ms / 1000)
            for i, out in enumerate(outputs):
                for j, token in enumerate(out.tokens):
                    if sent:
                        await anyio.sleep(config.itl_ms / 1000)
                    sent += 1
                    last = j == len(out.tokens) - 1
                    yield sse(
                        Completion(
                            rid,
                            now,
                            model,
                            [CompletionChoice(i, token, out.finish_reason if last else None)],
                        )
                    )
            if include_usage:
                yield sse(Completion(rid, now, model, [], usage(prompt_tokens, sent)))
            yield b"data: [DONE]\n\n"
            finish(prompt_tokens, sent)
        except BaseException:
            stats.cancelled += 1
            raise
        finally:
            stats.running -= 1

    @post("/v1/embeddings", status_code=200)
    async def embeddings(request: Request[Any, Any, Any]) -> Response[Any]:
        body, fault = await admit(request, "embeddings")
        if fault:
            return fault
        req = _decode(_embedding, body)
        check_model(req.model)
        inputs = embedding_inputs(req.input)
        if not inputs:
            raise BadRequestError("`input` must not be empty", "input")
        dim = req.dimensions or config.embedding_dim
        data = []
        for i, (text, _) in enumerate(inputs):
            vector = embed(text, dim)
            value: list[float] | str = (
                embedding_base64(vector) if req.encoding_format == "base64" else vector
            )
            data.append(Embedding(i, value))
        tokens = sum(t for _, t in inputs)
        await anyio.sleep(config.ttft_ms / 1000)
        finish(tokens, 0)
        result = EmbeddingResponse(data, req.model, EmbeddingUsage(tokens, tokens))
        return Response(_json.encode(result), media_type="application/json")

    @get("/v1/models")
    async def models() -> Response[Any]:
        cards = [ModelCard(m, created, "vllm") for m in config.models]
        return Response(_json.encode(ModelList(cards)), media_type="application/json")

    @get("/health")
    async def health() -> Response[Any]:
        status = config.faults.health_status
        return Response(b"", status_code=status)

    @get("/sim/stats")
    async def sim_stats() -> Response[Any]:
        return Response(_json.encode(stats.snapshot()), media_type="application/json")

    @get("/sim/faults")
    async def get_faults() -> Response[Any]:
        return Response(_json.encode(config.faults), media_type="application/json")

    @post("/sim/faults", status_code=200)
    async def set_faults(request: Request[Any, Any, Any]) -> Response[Any]:
        config.faults = _decode(msgspec.json.Decoder(Faults), await request.body())
        return Response(_json.encode(config.faults), media_type="application/json")

    @post("/sim/reset", status_code=200)
    async def reset() -> Response[Any]:
        fresh = SimStats()
        for name in (
            "requests",
            "completed",
            "cancelled",
            "prompt_tokens",
            "generation_tokens",
            "injected_errors",
            "recent",
        ):
            setattr(stats, name, getattr(fresh, name))
        return Response(b"{}", media_type="application/json")

    def bad_request(_: Request[Any, Any, Any], exc: BadRequestError) -> Response[Any]:
        return _error(exc.status, str(exc), param=exc.param)

    return Litestar(
        route_handlers=[
            chat,
            completions,
            embeddings,
            models,
            health,
            sim_stats,
            get_faults,
            set_faults,
            reset,
        ],
        exception_handlers={BadRequestError: bad_request},
        openapi_config=None,
    )
