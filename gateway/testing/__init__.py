"""Testing helpers for plugin authors: a real gateway on loopback, with fake upstreams.

- :func:`plugin_manager` registers your plugin objects beside the installed ones (built-ins
  included) and the provider type ``fake`` (:class:`FakeProvider`).
- :func:`serve_gateway` serves the gateway for a config mapping (as in the YAML file) on a free
  loopback port, for real, for the duration of a ``with`` block.

Example::

    with serve_gateway(config, plugins=[MyPlugin()]) as gw:
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x")
        ...
        assert gw.fake("backend-a").requests
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pluggy

from gateway.app import create_app
from gateway.config_loader import settings_from_mapping
from gateway.plugins import make_plugin_manager
from gateway.server import BackgroundServer
from gateway.testing.fakes import FakeProvider, FakeProviders, FakeStream

__all__ = [
    "FakeProvider",
    "FakeProviders",
    "FakeStream",
    "ServedGateway",
    "plugin_manager",
    "serve_gateway",
]
FAKES_PLUGIN = "testing-fakes"


def _name_of(plugin: object) -> str:
    name = getattr(plugin, "__name__", None)  # a module's name; an object goes by its class
    return name if isinstance(name, str) else type(plugin).__name__


def plugin_manager(*plugins: object, builtins: bool = True) -> pluggy.PluginManager:
    """A plugin manager with ``plugins`` (modules or objects with ``@hookimpl`` methods).

    Args:
        plugins: registered under their module or class name, which errors then name.
        builtins: also load the ``gateway`` entry-point group (the built-ins and whatever else
            is installed); False for only ``plugins`` and the fakes.

    Raises:
        gateway.plugins.PluginError: a plugin is invalid (say, a misspelt hook).
    """
    extra = [(FAKES_PLUGIN, FakeProviders()), *((_name_of(p), p) for p in plugins)]
    return make_plugin_manager(entry_points=builtins, extra=extra)


@dataclass(frozen=True, slots=True)
class ServedGateway:
    """A gateway being served by :func:`serve_gateway`.

    Attributes:
        url: ``http://127.0.0.1:<port>``; the OpenAI API is under ``/v1``.
        fakes: the ``fake`` providers it built, by backend name.
    """

    url: str
    fakes: FakeProviders

    def fake(self, backend: str) -> FakeProvider:
        """The :class:`FakeProvider` serving backend ``backend`` (``provider: fake``)."""
        return self.fakes[backend]


@contextmanager
def serve_gateway(
    config: Mapping[str, Any],
    *,
    plugins: Sequence[object] = (),
    builtins: bool = True,
) -> Iterator[ServedGateway]:
    """Serve the gateway for ``config`` with ``plugins`` on a free loopback port.

    Raises:
        gateway.config_loader.ConfigError: ``config`` is invalid (naming the field).
        gateway.plugins.PluginError: a plugin is invalid or registered something invalid.
        RuntimeError: the server did not start.
    """
    settings = settings_from_mapping(config, "test config")
    pm = plugin_manager(*plugins, builtins=builtins)
    fakes = pm.get_plugin(FAKES_PLUGIN)
    assert isinstance(fakes, FakeProviders)
    with BackgroundServer(create_app(settings, plugin_manager=pm)) as server:
        yield ServedGateway(server.url, fakes)
