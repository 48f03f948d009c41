"""OpenAI wire formats (requests and the responses the gateway itself builds), as msgspec Structs.

Request Structs validate the fields the gateway understands; unknown fields are ignored here and
kept in the original bytes, which are what an OpenAI-compatible upstream receives, so vLLM's
``top_k``, ``cache_salt``, ``priority`` and vendor extras pass through untouched.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct, field

Temperature = Annotated[float, Meta(ge=0, le=2)]
Probability = Annotated[float, Meta(ge=0, le=1)]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
PositiveInt = Annotated[int, Meta(ge=1)]
Stop = str | list[str] | None


# ---------------------------------------------------------------------------------------- requests


class StreamOptions(Struct):
    """``stream_options``: ``include_usage`` adds a final usage chunk with empty ``choices``."""

    include_usage: bool | None = None


class FunctionDefinition(Struct):
    """A function tool's declaration."""

    name: Annotated[str, Meta(min_length=1)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(Struct):
    """An entry of ``tools``."""

    function: FunctionDefinition
    type: Literal["function"] = "function"


class FunctionCall(Struct):
    """A function call made by the model: its name and JSON-encoded arguments."""

    name: str
    arguments: str


class ToolCall(Struct):
    """An assistant message's tool call."""

    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


MessageContent = str | list[dict[str, Any]] | None


class ChatMessage(Struct, omit_defaults=True):
    """One message of a conversation (any role)."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: MessageContent = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class ChatCompletionRequest(Struct, omit_defaults=True):
    """``POST /v1/chat/completions`` body (the fields the gateway validates)."""

    model: str
    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    stop: Stop = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    seed: int | None = None
    user: str | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    cache_salt: str | None = None  # vLLM: partitions prefix-cache reuse (and cache_aware routing)
    store: bool | None = None  # keep the completion (GET /v1/chat/completions/{id})
    metadata: dict[str, str] | None = None


# A string, a list of strings, a token array, or a list of token arrays. msgspec allows one
# array-like type per union, so the shape is checked by `check_prompt_shape`.
Prompt = str | list[str | int | list[int]]


def check_prompt_shape(value: Prompt, name: str) -> None:
    """Reject mixed lists (``["a", 1]``) and empty inputs.

    Raises:
        ValueError: which msgspec reports as a validation error of the request.
    """
    if isinstance(value, str):
        return
    if not value:
        raise ValueError(f"`{name}` must not be empty")
    kinds = {type(v) for v in value}
    if len(kinds) > 1:
        raise ValueError(
            f"`{name}` must be a string, a list of strings, a list of tokens or a "
            "list of token lists, not a mix"
        )


class CompletionRequest(Struct, omit_defaults=True):
    """``POST /v1/completions`` body."""

    model: str
    prompt: Prompt
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Meta(ge=0)] | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    stop: Stop = None
    echo: bool | None = None
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    seed: int | None = None
    suffix: str | None = None
    user: str | None = None
    cache_salt: str | None = None

    def __post_init__(self) -> None:
        check_prompt_shape(self.prompt, "prompt")


class EmbeddingRequest(Struct, omit_defaults=True):
    """``POST /v1/embeddings`` body."""

    model: str
    input: Prompt
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: PositiveInt | None = None
    user: str | None = None

    def __post_init__(self) -> None:
        check_prompt_shape(self.input, "input")


# --------------------------------------------------------------------------------------- responses


class Usage(Struct):
    """Token usage of a request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseMessage(Struct, omit_defaults=True):
    """The assistant message of a chat completion choice (``tool_calls`` only when present)."""

    role: Literal["assistant"]
    content: str | None
    refusal: str | None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(Struct):
    """A choice of a chat completion."""

    index: int
    message: ResponseMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(Struct, tag_field="object", tag="chat.completion"):
    """OpenAI's ``CreateChatCompletionResponse``."""

    id: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


class ToolCallDelta(Struct, omit_defaults=True):
    """A tool-call fragment of a stream delta."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: dict[str, str] | None = None


class ChoiceDelta(Struct, omit_defaults=True):
    """The ``delta`` of a chat completion chunk choice."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(Struct):
    """A choice of a chat completion chunk."""

    index: int
    delta: ChoiceDelta
    finish_reason: str | None = None


class ChatCompletionChunk(
    Struct, omit_defaults=True, tag_field="object", tag="chat.completion.chunk"
):
    """OpenAI's ``CreateChatCompletionStreamResponse``."""

    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class CompletionChoice(Struct):
    """A choice of a text completion (streamed or not)."""

    index: int
    text: str
    finish_reason: str | None
    logprobs: None = None


class Completion(Struct, omit_defaults=True, tag_field="object", tag="text_completion"):
    """OpenAI's ``CreateCompletionResponse`` (chunks have the same shape)."""

    id: str
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class Embedding(Struct, tag_field="object", tag="embedding"):
    """One embedding vector (floats, or base64 of little-endian float32)."""

    index: int
    embedding: list[float] | str


class EmbeddingUsage(Struct):
    """Usage of an embeddings request."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(Struct, tag_field="object", tag="list"):
    """OpenAI's ``CreateEmbeddingResponse``."""

    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class ModelCard(Struct, tag_field="object", tag="model"):
    """OpenAI's ``Model``."""

    id: str
    created: int
    owned_by: str


class ModelList(Struct, tag_field="object", tag="list"):
    """OpenAI's ``ListModelsResponse``."""

    data: list[ModelCard] = field(default_factory=list)


class CachedTokenDetails(Struct):
    """``usage.prompt_tokens_details`` (chat) or ``usage.input_tokens_details`` (Responses)."""

    cached_tokens: int = 0


class TokenCounts(Struct):
    """Usage as read back from any response: OpenAI's names or Anthropic's."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    prompt_tokens_details: CachedTokenDetails | None = None
    input_tokens_details: CachedTokenDetails | None = None

    @property
    def cached(self) -> int:
        """Prompt tokens served from a prompt or prefix cache."""
        if self.cache_read_input_tokens:
            return self.cache_read_input_tokens
        details = self.prompt_tokens_details or self.input_tokens_details
        return details.cached_tokens if details is not None else 0

    @property
    def prompt(self) -> int:
        return self.prompt_tokens or self.input_tokens + self.cache_read_input_tokens

    @property
    def completion(self) -> int:
        return self.completion_tokens or self.output_tokens


class UsageOnly(Struct):
    """Reads just ``usage`` out of a response body or chunk; msgspec skips everything else."""

    usage: TokenCounts | None = None


usage_decoder = msgspec.json.Decoder(UsageOnly)

# Response Structs carry OpenAI's constant ``object`` field as a msgspec tag: always encoded, even
# with ``omit_defaults``.
