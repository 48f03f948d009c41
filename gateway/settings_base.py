"""What every config section is built on (shared by :mod:`gateway.settings` and the sections
kept in modules of their own)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]


class _Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base for config sections: unknown keys are errors; change with ``structs.replace``."""


class PluginChoice(_Config):
    """A registered plugin object by name, with its options."""

    backend: str
    options: dict[str, Any] = msgspec.field(default_factory=dict)
