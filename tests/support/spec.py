"""Validate JSON against schemas of OpenAI's published OpenAPI document (vendored under
tests/fixtures/openapi, see its README)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "openapi" / "openai-openapi.yaml"
BASE = "https://openai.example/openapi.yaml"


def _honour_nullable(node: Any) -> Any:
    """The document writes OpenAPI 3.0's ``nullable: true`` into its schemas; JSON Schema ignores
    it, so a schema that says ``nullable`` is rewritten to also accept null, as its authors mean."""
    if isinstance(node, dict):
        node = {k: _honour_nullable(v) for k, v in node.items()}
        if node.pop("nullable", False) is True:
            return {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_honour_nullable(v) for v in node]
    return node


@functools.cache
def _document() -> dict[str, Any]:
    with SPEC_PATH.open() as f:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        spec = yaml.load(f, Loader=loader)
    return {"components": {"schemas": _honour_nullable(spec["components"]["schemas"])}}


@functools.cache
def _validator(schema_name: str) -> jsonschema.protocols.Validator:
    document = _document()
    registry: Registry[Any] = Registry().with_resource(
        BASE, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    schema = {"$ref": f"{BASE}#/components/schemas/{schema_name}"}
    cls = jsonschema.validators.validator_for({}, default=jsonschema.Draft202012Validator)
    return cls(copy.deepcopy(schema), registry=registry)


def validate(schema_name: str, instance: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``instance`` matches ``schema_name``."""
    _validator(schema_name).validate(instance)


def validate_completion_chunk(chunk: dict[str, Any]) -> None:
    """Validate a legacy-completions stream chunk against ``CreateCompletionResponse``.

    The spec reuses the non-streamed shape for chunks, whose ``finish_reason`` cannot be null;
    OpenAI's own streams (and vLLM's) send null until the last chunk. That one field is checked
    here (null or a valid reason) and the rest against the spec.
    """
    choices = []
    for choice in chunk.get("choices", []):
        assert choice.get("finish_reason") in (None, "stop", "length", "content_filter")
        choices.append({**choice, "finish_reason": choice.get("finish_reason") or "stop"})
    validate("CreateCompletionResponse", {**chunk, "choices": choices})
