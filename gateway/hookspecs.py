"""Every hook a gateway plugin may implement. These docstrings are the plugin contract.

Plugins are modules or objects with functions decorated by ``gateway.hookimpl``, found through the
``gateway`` entry-point group (built-ins included). Registration hooks run once, when the app (or
the CLI) is built; each receives a ``register(name, obj)`` callback. The host rejects a duplicate
name or an object of the wrong kind with an error naming the plugin. The request path then calls
the registered objects directly through their Protocols: no hook is called per request.

``docs/plugins.md`` documents each hook; ``tests/contract`` keeps it in step with this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from gateway.state import GatewayState

PROJECT_NAME = "gateway"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[[str, Any], None]


@hookspec
def register_providers(register: Register) -> None:
    """Register provider types, the ways to talk to an upstream.

    Call ``register(name, factory)`` once per type. ``name`` is what a backend's ``provider:``
    names in the config. ``factory(spec: BackendSpec, context: ProviderContext) -> Provider``
    (``gateway.providers``) builds the provider for one backend when the app is built; it may raise
    ``ValueError`` for unusable options, which the gateway reports with the config field.
    """


@hookspec
def register_routing_strategies(register: Register) -> None:
    """Register routing strategies, the ways a model group picks a backend.

    Call ``register(name, factory)``. ``name`` is what ``routing.strategy`` names in the config.
    ``factory(**params) -> RoutingStrategy`` (``gateway.routing.base``) is called once per model
    group with that group's ``routing.params``; ``TypeError``/``ValueError`` become config errors.
    """


@hookspec
def register_cache_backends(register: Register) -> None:
    """Register response-cache backends.

    Call ``register(name, factory)``; ``factory(**options) -> CacheBackend``
    (``gateway.cache.base``) is called with the backend's config options. Keys arrive already
    namespaced per tenant; values are opaque bytes with a time to live.
    """


@hookspec
def register_cost_policies(register: Register) -> None:
    """Register cost policies, the ways usage is priced.

    Call ``register(name, factory)``; ``factory(**options) -> CostPolicy`` (``gateway.cost.base``)
    is called with the policy's config options.
    """


@hookspec
def register_tools(register: Register) -> None:
    """Register tools that agents (and server-side tool execution) may call.

    Call ``register(name, tool)`` with an object satisfying ``Tool`` (``gateway.agents.base``);
    ``name`` must equal ``tool.name``.
    """


@hookspec
def register_agents(register: Register) -> None:
    """Register agents, served as model names.

    Call ``register(name, factory)``; ``factory(**options) -> Agent`` (``gateway.agents.base``) is
    called with the agent's config options. ``Agent.run(request, client)`` answers a chat request,
    calling models through ``client`` (the gateway's own dispatch) and tools as it sees fit.
    """


@hookspec
def register_routes(register: Register) -> None:
    """Add HTTP routes to the gateway.

    Call ``register(name, handler)`` with a Litestar route handler (``@get``/``@post``...) or a
    ``litestar.Router``. Paths must not collide with the gateway's own. Routes under ``/v1`` get
    the gateway's authentication; others are public unless the handler guards itself.
    """


@hookspec
def register_commands(register: Register) -> None:
    """Add ``gateway <name>`` CLI subcommands.

    Call ``register(name, command)`` with a ``gateway.commands.Command``: its ``help`` line, an
    ``add_arguments(parser)`` that declares its options, and ``run(args)`` returning the exit
    status. Built-in command names (serve, check, plugins) cannot be replaced.
    """


@hookspec
def startup(state: GatewayState) -> Awaitable[None] | None:
    """Run when the app starts, before it serves, inside the event loop.

    ``state`` is the app's ``GatewayState`` (settings, registries, model catalog, metrics). Return
    None, or an awaitable the gateway awaits. An exception aborts start-up.
    """


@hookspec
def shutdown(state: GatewayState) -> Awaitable[None] | None:
    """Run when the app stops, after in-flight requests have finished.

    Return None, or an awaitable the gateway awaits. Exceptions are logged and do not stop the
    other plugins' shutdown.
    """
