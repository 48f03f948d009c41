"""Load the YAML config file into :class:`gateway.settings.Settings`.

Contract:
- ``${VAR}`` in any string value is replaced by the environment variable ``VAR``;
  ``${VAR:-fallback}`` uses ``fallback`` when ``VAR`` is unset or empty; ``$${`` is a literal
  ``${``.
  A missing variable with no fallback is an error naming the field that used it.
- Every error is a :class:`ConfigError` whose message names the file, the field path
  (``models[0].backends[1].url``) and what was expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

from gateway.schemas.validation import join_path, split_validation_message
from gateway.settings import Settings

_VAR = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The config is unusable; the message names the file, the field and what was expected."""

    def __init__(self, source: str, field: str | None, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {problem}")


def _interpolate(value: Any, path: str, source: str, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            escaped, name, fallback = match.group(1), match.group(2), match.group(3)
            if escaped:
                return match.group(0)[1:]
            found = env.get(name)
            if found:
                return found
            if fallback is not None:
                return fallback
            raise ConfigError(
                source,
                path or None,
                f"environment variable {name} is not set (use ${{{name}:-default}} for a fallback)",
            )

        return _VAR.sub(substitute, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, join_path(path, str(k)), source, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, join_path(path, i), source, env) for i, v in enumerate(value)]
    return value


def settings_from_mapping(
    data: Any,
    source: str = "<memory>",
    env: Mapping[str, str] | None = None,
    *,
    interpolate: bool = True,
) -> Settings:
    """Validate parsed config data into :class:`Settings`, interpolating ``${VAR}`` first.

    Args:
        interpolate: False for data built by code (values are literal).

    Raises:
        ConfigError: naming ``source`` and the field at fault.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, None, "expected a mapping at the top level")
    if "source" in data:
        raise ConfigError(source, "source", "unknown field")
    if interpolate:
        data = _interpolate(data, "", source, os.environ if env is None else env)
    try:
        settings = msgspec.convert(data, Settings)
    except msgspec.ValidationError as exc:
        field, problem = split_validation_message(str(exc))
        raise ConfigError(source, field, problem) from None
    settings = msgspec.structs.replace(settings, source=source)
    check_consistency(settings)
    return settings


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read, interpolate and validate the YAML config file at ``path``.

    Raises:
        ConfigError: the file is missing, is not YAML, or a field is invalid.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, None, f"cannot read the file ({exc.strerror})") from None
    return settings_from_text(text, source, env)


def settings_from_text(text: str, source: str, env: Mapping[str, str] | None = None) -> Settings:
    """Interpolate and validate a config's YAML ``text`` (an uploaded or published config),
    errors naming ``source`` as they would a file.

    Raises:
        ConfigError: it is not YAML, or a field is invalid.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, None, f"not valid YAML: {where}{problem}") from None
    return settings_from_mapping(data, source, env)


def check_consistency(settings: Settings) -> None:
    """Cross-field rules that a schema cannot express.

    Raises:
        ConfigError: duplicate model names or aliases, duplicate backend names, bad URLs.
    """
    source = settings.source
    seen: dict[str, str] = {}
    backend_names: dict[str, str] = {}
    for gi, group in enumerate(settings.models):
        for ni, name in enumerate([group.name, *group.aliases]):
            field = f"models[{gi}].name" if ni == 0 else f"models[{gi}].aliases[{ni - 1}]"
            if name in seen:
                raise ConfigError(
                    source, field, f"model name `{name}` is already used by {seen[name]}"
                )
            seen[name] = field
        for bi, backend in enumerate(group.backends):
            field = f"models[{gi}].backends[{bi}]"
            if backend.url and not backend.url.startswith(("http://", "https://")):
                raise ConfigError(
                    source,
                    f"{field}.url",
                    f"expected an http:// or https:// URL, got `{backend.url}`",
                )
            name = backend.name or f"{group.name}-{bi}"
            if name in backend_names:
                raise ConfigError(
                    source,
                    f"{field}.name",
                    f"backend name `{name}` is already used by {backend_names[name]}",
                )
            backend_names[name] = field
    if settings.node is not None:
        for field, problem in settings.node.problems():
            raise ConfigError(source, f"node.{field}", problem)
    for field, problem in settings.dashboard.problems(settings.server.host):
        raise ConfigError(source, f"dashboard.{field}", problem)
    groups = {g.name for g in settings.models}
    for gi, group in enumerate(settings.models):
        for key in ("fallbacks", "context_window_fallbacks"):
            for fi, target in enumerate(getattr(group, key)):
                if target not in groups or target == group.name:
                    raise ConfigError(
                        source,
                        f"models[{gi}].{key}[{fi}]",
                        f"expected the name of another model group, got `{target}`",
                    )
