"""vLLM's OpenAI-compatible routes, served by the simulated engine."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
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
from gateway_sim.engine import SimRequest
from gateway_sim.gates import Gate
from gateway_sim.generation import (
    Generation,
    ToolChoice,
    embed,
    embedding_base64,
    embedding_inputs,
    generate,
)
from gateway_sim.kv_cache import block_hashes
from gateway_sim.limits import (
    check_embeddings,
    check_generation,
    check_integers,
    check_n,
    check_token_ids,
)
from gateway_sim.serving import (
    SimRequestError,
    admit,
    decode,
    run_to_completion,
    sse,
    stream_tokens,
)
from gateway_sim.state import SimState
from gateway_sim.tokens import chat_template, split_tokens, token_ids
from gateway_sim.toolscript import ScriptError, ToolStep, answer_output, chat_turn, decide

_json = msgspec.json.Encoder()
Output = Generation | ToolStep


@dataclass
class Job:
    """A request prepared for the engine: its outputs and its engine sequence."""

    outputs: list[Output]
    sequence: SimRequest

    @property
    def prompt_tokens(self) -> int:
        return self.sequence.prompt_tokens


def make_job(
    state: SimState,
    prompt_tokens: list[Any],
    outputs: list[Output],
    cache_salt: str | None,
    gate: Gate | None = None,
) -> Job:
    """Submit a sequence generating the longest output (choices advance in lockstep); a
    ``gate`` holding after some tokens pauses it there.

    Raises:
        SimRequestError: ``cache_salt`` is not a string.
    """
    profile = state.config.profile
    if cache_salt is not None and not isinstance(cache_salt, str):
        raise SimRequestError("`cache_salt` must be a string", "cache_salt")
    lengths = [len(o.tokens) for o in outputs]
    first = outputs[0]
    reason = first.finish_reason if isinstance(first, Generation) else "tool_calls"
    sequence = SimRequest(
        len(prompt_tokens),
        block_hashes(prompt_tokens, profile.block_size, cache_salt),
        max(max(lengths), 1),
        finish_reason=reason,
        gate=gate,
    )
    state.engine.submit(sequence)
    return Job(outputs, sequence)


def token_arrays(value: Any) -> list[list[int]]:
    """The token-id arrays of a prompt or embeddings input (none for text)."""
    if isinstance(value, str) or not value:
        return []
    if all(isinstance(v, int) for v in value):
        return [list(value)]
    return [list(v) for v in value if isinstance(v, list)]


def openai_tool_choice(value: Any) -> ToolChoice:
    if isinstance(value, dict):
        return ToolChoice("required", (value.get("function") or {}).get("name"))
    return ToolChoice(value or "auto")


def build_openai_routes(state: SimState) -> list[HTTPRouteHandler]:
    """Chat, completions, embeddings, models and tokenize for ``state``'s replica."""
    config = state.config
    created = int(time.time())

    def check_model(model: str) -> None:
        if model not in config.models:
            raise SimRequestError(f"The model `{model}` does not exist.", "model", 404)

    def usage(prompt: int, completion: int) -> Usage:
        return Usage(prompt, completion, prompt + completion)

    def chat_job(req: ChatCompletionRequest, raw: dict[str, Any], gate: Gate | None) -> Job:
        prompt = chat_template(req.messages)
        prompt_tokens = split_tokens(prompt)
        n = req.n or 1
        check_n(config.profile, n)
        stop = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
        limit = req.max_completion_tokens or req.max_tokens
        ignore_eos = bool(raw.get("ignore_eos"))
        check_generation(
            config.profile,
            len(prompt_tokens),
            limit,
            n=n,
            ignore_eos=ignore_eos,
            max_tokens_param=(
                "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
            ),
        )
        tools = [(t.function.name, t.function.parameters) for t in req.tools or []]
        choice = openai_tool_choice(req.tool_choice)
        try:
            turn = chat_turn(req.messages)
        except ScriptError as exc:
            raise SimRequestError(str(exc), "messages") from None
        step = decide(turn, tools, choice, prompt, req.messages[-1].role == "user")

        def output(i: int) -> Output:
            if isinstance(step, ToolStep):
                return step
            if step is not None:
                return answer_output(step, limit)
            return generate(prompt, limit, i, stop=stop, ignore_eos=ignore_eos)

        outputs = [output(i) for i in range(n)]
        return make_job(state, prompt_tokens, outputs, raw.get("cache_salt"), gate)

    @post("/v1/chat/completions", status_code=200)
    async def chat(request: Request[Any, Any, Any]) -> Response[Any]:
        raw, fault = await admit(state, request, "chat")
        if fault:
            return fault
        check_integers(raw)
        req: ChatCompletionRequest = decode(ChatCompletionRequest, raw)
        check_model(req.model)
        job = chat_job(req, raw, state.gate_for(request.headers))
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return Stream(
                stream_tokens(state, job.sequence, chat_chunks(rid, req.model, job, include_usage)),
                media_type="text/event-stream",
            )
        await run_to_completion(state, job.sequence)
        choices = []
        for i, out in enumerate(job.outputs):
            if isinstance(out, Generation):
                choices.append(
                    ChatChoice(i, ResponseMessage("assistant", out.text, None), out.finish_reason)
                )
            else:
                calls = [
                    ToolCall(f"call_{c.id}", FunctionCall(c.name, c.arguments)) for c in out.calls
                ]
                choices.append(
                    ChatChoice(i, ResponseMessage("assistant", None, None, calls), "tool_calls")
                )
        completion_tokens = sum(len(o.tokens) for o in job.outputs)
        result = ChatCompletion(
            rid, int(time.time()), req.model, choices, usage(job.prompt_tokens, completion_tokens)
        )
        return Response(_json.encode(result), media_type="application/json")

    def chat_chunks(
        rid: str, model: str, job: Job, include_usage: bool
    ) -> Callable[[int, int], list[bytes]]:
        """Renders the chunks for tokens ``start:end`` (``end`` past the last one: the tail)."""
        now = int(time.time())

        def chunk(i: int, delta: ChoiceDelta, reason: str | None = None) -> bytes:
            return sse(ChatCompletionChunk(rid, now, model, [ChunkChoice(i, delta, reason)]))

        def render(start: int, end: int) -> list[bytes]:
            out = []
            if start == 0:
                out += [
                    chunk(i, ChoiceDelta(role="assistant", content=""))
                    for i in range(len(job.outputs))
                ]
            for i, o in enumerate(job.outputs):
                for t in range(start, min(end, len(o.tokens))):
                    if isinstance(o, Generation):
                        out.append(chunk(i, ChoiceDelta(content=o.tokens[t])))
                        continue
                    # OpenAI's shape: a head naming the call, then its argument fragments.
                    number, opens, fragment = o.piece(t)
                    index = 0 if o.one_index else number
                    if opens:
                        call = o.calls[number]
                        head = {"name": call.name, "arguments": ""}
                        delta = ToolCallDelta(index, f"call_{call.id}", "function", head)
                        out.append(chunk(i, ChoiceDelta(tool_calls=[delta])))
                    if fragment:
                        part = ToolCallDelta(index, function={"arguments": fragment})
                        out.append(chunk(i, ChoiceDelta(tool_calls=[part])))
                if start < len(o.tokens) <= end or (not o.tokens and start == 0):
                    reason = o.finish_reason if isinstance(o, Generation) else "tool_calls"
                    out.append(
                        chunk(
                            i,
                            ChoiceDelta(content="") if isinstance(o, Generation) else ChoiceDelta(),
                            reason,
                        )
                    )
            if end >= job.sequence.output_tokens and job.sequence.done:
                generated = sum(len(o.tokens) for o in job.outputs)
                if include_usage:
                    out.append(
                        sse(
                            ChatCompletionChunk(
                                rid, now, model, [], usage(job.prompt_tokens, generated)
                            )
                        )
                    )
                out.append(b"data: [DONE]\n\n")
            return out

        return render

    @post("/v1/completions", status_code=200)
    async def completions(request: Request[Any, Any, Any]) -> Response[Any]:
        raw, fault = await admit(state, request, "completions")
        if fault:
            return fault
        check_integers(raw)
        req: CompletionRequest = decode(CompletionRequest, raw)
        check_model(req.model)
        for ids in token_arrays(req.prompt):
            check_token_ids(ids, "prompt")
        prompts = embedding_inputs(req.prompt)
        if len(prompts) != 1:
            raise SimRequestError(
                "the simulator takes one prompt per completions request", "prompt"
            )
        text = prompts[0][0]
        prompt_tokens: list[Any] = (
            list(req.prompt)
            if not isinstance(req.prompt, str) and req.prompt and isinstance(req.prompt[0], int)
            else split_tokens(text)
        )
        stop = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
        limit = req.max_tokens if req.max_tokens is not None else 16
        ignore_eos = bool(raw.get("ignore_eos"))
        n = req.n or 1
        check_n(config.profile, n)
        check_generation(
            config.profile,
            len(prompt_tokens),
            limit,
            n=n,
            ignore_eos=ignore_eos,
            prompt_param="prompt",
        )
        outputs: list[Output] = [
            generate(text, limit, i, stop=stop, ignore_eos=ignore_eos) for i in range(n)
        ]
        job = make_job(
            state, prompt_tokens, outputs, raw.get("cache_salt"), state.gate_for(request.headers)
        )
        rid = f"cmpl-{uuid.uuid4().hex}"
        now = int(time.time())
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)

            def render(start: int, end: int) -> list[bytes]:
                out = []
                for i, o in enumerate(job.outputs):
                    for t in range(start, min(end, len(o.tokens))):
                        last = t == len(o.tokens) - 1
                        reason = o.finish_reason if last and isinstance(o, Generation) else None
                        out.append(
                            sse(
                                Completion(
                                    rid, now, req.model, [CompletionChoice(i, o.tokens[t], reason)]
                                )
                            )
                        )
                if end >= job.sequence.output_tokens and job.sequence.done:
                    if include_usage:
                        generated = sum(len(o.tokens) for o in job.outputs)
                        out.append(
                            sse(
                                Completion(
                                    rid, now, req.model, [], usage(job.prompt_tokens, generated)
                                )
                            )
                        )
                    out.append(b"data: [DONE]\n\n")
                return out

            return Stream(
                stream_tokens(state, job.sequence, render), media_type="text/event-stream"
            )
        await run_to_completion(state, job.sequence)
        choices = [
            CompletionChoice(i, o.text, o.finish_reason)
            for i, o in enumerate(job.outputs)
            if isinstance(o, Generation)
        ]
        generated = sum(len(o.tokens) for o in job.outputs)
        result = Completion(rid, now, req.model, choices, usage(job.prompt_tokens, generated))
        return Response(_json.encode(result), media_type="application/json")

    @post("/v1/embeddings", status_code=200)
    async def embeddings(request: Request[Any, Any, Any]) -> Response[Any]:
        raw, fault = await admit(state, request, "embeddings")
        if fault:
            return fault
        check_integers(raw)
        req: EmbeddingRequest = decode(EmbeddingRequest, raw)
        check_model(req.model)
        profile = config.profile
        for ids in token_arrays(req.input):
            check_token_ids(ids, "input")
        inputs = embedding_inputs(req.input)
        check_embeddings(profile, inputs, req.dimensions)
        dim = req.dimensions or config.embedding_dim
        async with state.embed_lock:
            cost_ms = profile.embed_call_ms + profile.embed_ms_per_input * len(inputs)
            await anyio.sleep(cost_ms / 1000)
        data = []
        for i, (text, _) in enumerate(inputs):
            vector = embed(text, dim)
            value: list[float] | str = (
                embedding_base64(vector) if req.encoding_format == "base64" else vector
            )
            data.append(Embedding(i, value))
        tokens = sum(t for _, t in inputs)
        state.stats.completed += 1
        state.stats.prompt_tokens += tokens
        result = EmbeddingResponse(data, req.model, EmbeddingUsage(tokens, tokens))
        return Response(_json.encode(result), media_type="application/json")

    @get("/v1/models")
    async def models() -> Response[Any]:
        cards = [ModelCard(m, created, "vllm") for m in config.models]
        return Response(_json.encode(ModelList(cards)), media_type="application/json")

    @post("/tokenize", status_code=200)
    async def tokenize(request: Request[Any, Any, Any]) -> Response[Any]:
        raw = msgspec.json.decode(await request.body())
        if not isinstance(raw, dict):
            raise SimRequestError("expected a JSON object")
        if "messages" in raw:
            text = chat_template(
                decode(ChatCompletionRequest, {"model": config.models[0], **raw}).messages
            )
        elif isinstance(raw.get("prompt"), str):
            text = raw["prompt"]
        else:
            raise SimRequestError("`prompt` (a string) or `messages` is required", "prompt")
        ids = token_ids(text)
        body = {"count": len(ids), "max_model_len": config.profile.max_model_len, "tokens": ids}
        return Response(_json.encode(body), media_type="application/json")

    return [chat, completions, embeddings, models, tokenize]
