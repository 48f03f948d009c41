"""OpenAI's Responses API wire format (``POST /v1/responses``): the request fields the gateway
validates, as msgspec Structs.

As for chat (:mod:`gateway.schemas.openai`), unknown fields are ignored here and kept in the raw
body: a backend that speaks Responses natively receives the client's bytes, and the translation
to chat (:mod:`gateway.translate.responses`) reads the decoded dict. Input items, tools and
``tool_choice`` are validated loosely here (their many kinds are checked, with a ``param`` naming
the item, by the translation), so that a built-in tool reaches the translation and is refused
there with ``tools[i].type`` rather than as an undecodable union.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from gateway.schemas.openai import Probability, Temperature

PositiveInt = Annotated[int, Meta(ge=1)]


class ResponsesTool(Struct):
    """An entry of ``tools``: a function (flat: ``{type, name, description, parameters,
    strict}``) or a built-in tool, whose other fields are not read here."""

    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class TextFormat(Struct):
    """``text.format``: ``text``, ``json_object`` or ``json_schema`` (with ``name`` and
    ``schema``)."""

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextConfig(Struct):
    """``text``: the output's format and verbosity."""

    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(Struct):
    """``reasoning``: effort and summary settings of reasoning models."""

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class ResponsesStreamOptions(Struct):
    """``stream_options`` (only ``include_obfuscation`` exists; it is ignored)."""

    include_obfuscation: bool | None = None


class ResponsesRequest(Struct, omit_defaults=True):
    """``POST /v1/responses`` body (the fields the gateway validates)."""

    model: str
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    stream: bool | None = None
    stream_options: ResponsesStreamOptions | None = None
    max_output_tokens: PositiveInt | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    tools: list[ResponsesTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: Annotated[int, Meta(ge=0)] | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    include: list[str] | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.input is None and self.previous_response_id is None:
            raise ValueError("`input` is required (unless `previous_response_id` is given)")
        if isinstance(self.input, list):
            for i, item in enumerate(self.input):
                if "type" not in item and "role" not in item:
                    raise ValueError(f"`input[{i}]` must have a `type` or a `role`")
        for i, tool in enumerate(self.tools or []):
            if tool.type == "function" and not tool.name:
                raise ValueError(f"`tools[{i}].name` is required for function tools")
        fmt = self.text.format if self.text else None
        if fmt is not None and fmt.type == "json_schema":
            if not fmt.name:
                raise ValueError("`text.format.name` is required for `json_schema`")
            if fmt.schema is None:
                raise ValueError("`text.format.schema` is required for `json_schema`")
        if self.metadata is not None and len(self.metadata) > 16:
            raise ValueError("`metadata` may hold at most 16 pairs")
