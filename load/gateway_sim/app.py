"""The simulator's HTTP app: vLLM's OpenAI and Anthropic APIs, its probes and metrics, and
``/sim/*`` admin routes.

Admin routes: ``GET /sim/stats`` (counters and the most recent requests as received, headers
included), ``GET/POST /sim/faults`` (read or replace fault injection at run time) and
``POST /sim/reset`` (clear the stats), and gates that hold requests until released
(:mod:`gateway_sim.gates`): ``POST /sim/gates/{name}`` closes one (body, optional:
``{"all": bool, "after_tokens": int}``), ``POST /sim/gates/{name}/release`` opens it,
``GET /sim/gates`` lists them.
``POST /reset_prefix_cache`` is vLLM's (a development route there): it empties the
prefix cache.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, post

from gateway_sim.anthropic_api import anthropic_error, build_anthropic_routes
from gateway_sim.engine import PromptTooLongError
from gateway_sim.gates import Gate, GateSpec
from gateway_sim.openai_api import build_openai_routes
from gateway_sim.serving import SimRequestError, openai_error
from gateway_sim.state import Faults, SimConfig, SimState

__all__ = ["Faults", "SimConfig", "create_sim_app"]

_json = msgspec.json.Encoder()


def create_sim_app(config: SimConfig) -> Litestar:
    """A Litestar app simulating one vLLM server with ``config``; ``app.state.sim`` holds it."""
    state = SimState(config)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        task = asyncio.create_task(state.engine.run(), name="sim-engine")
        try:
            yield
        finally:
            state.release_gates()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @get("/health")
    async def health() -> Response[Any]:
        faults = config.faults
        return Response(b"", status_code=503 if faults.down else faults.health_status)

    @get("/metrics")
    async def metrics() -> Response[Any]:
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")

    @get("/sim/stats")
    async def sim_stats() -> Response[Any]:
        return Response(_json.encode(state.snapshot()), media_type="application/json")

    @get("/sim/faults")
    async def get_faults() -> Response[Any]:
        return Response(_json.encode(config.faults), media_type="application/json")

    @post("/sim/faults", status_code=200)
    async def set_faults(request: Request[Any, Any, Any]) -> Response[Any]:
        try:
            config.faults = msgspec.json.decode(await request.body(), type=Faults)
        except msgspec.ValidationError as exc:
            raise SimRequestError(str(exc)) from None
        except msgspec.DecodeError:
            raise SimRequestError("invalid JSON body") from None
        return Response(_json.encode(config.faults), media_type="application/json")

    @post("/sim/reset", status_code=200)
    async def reset() -> Response[Any]:
        state.reset_stats()
        return Response(b"{}", media_type="application/json")

    def gate_json(gate: Gate) -> dict[str, Any]:
        return {
            "closed": gate.closed,
            "all": gate.all,
            "after_tokens": gate.after_tokens,
            "held": state.held_at(gate),
        }

    @get("/sim/gates")
    async def list_gates() -> Response[Any]:
        body = {name: gate_json(g) for name, g in state.gates.items()}
        return Response(_json.encode(body), media_type="application/json")

    @post("/sim/gates/{name:str}", status_code=200)
    async def close_gate(request: Request[Any, Any, Any]) -> Response[Any]:
        name = str(request.path_params["name"])
        raw = await request.body()
        try:
            spec = msgspec.json.decode(raw, type=GateSpec) if raw.strip() else GateSpec()
            gate = state.gate(name)
            gate.close(spec)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            raise SimRequestError(str(exc)) from None
        return Response(_json.encode(gate_json(gate)), media_type="application/json")

    @post("/sim/gates/{name:str}/release", status_code=200)
    async def release_gate(request: Request[Any, Any, Any]) -> Response[Any]:
        name = str(request.path_params["name"])
        gate = state.gates.get(name)
        if gate is None:
            raise SimRequestError(f"no gate `{name}`", status=404)
        held = gate_json(gate)["held"]
        gate.release()
        return Response(_json.encode({"released": held}), media_type="application/json")

    @post("/reset_prefix_cache", status_code=200)
    async def reset_prefix_cache() -> Response[Any]:
        # vLLM answers 200 with an empty body; blocks running requests hold stay theirs.
        state.engine.kv.reset_prefix_cache()
        state.stats.prefix_cache_resets += 1
        return Response(b"", status_code=200)

    def rejected(request: Request[Any, Any, Any], exc: SimRequestError) -> Response[Any]:
        render = anthropic_error if request.url.path.startswith("/v1/messages") else openai_error
        return render(exc.status, str(exc), param=exc.param)

    def too_long(request: Request[Any, Any, Any], exc: PromptTooLongError) -> Response[Any]:
        # vLLM's own wording, which clients and gateways recognise.
        return rejected(request, SimRequestError(str(exc), "messages"))

    app = Litestar(
        route_handlers=[
            *build_openai_routes(state),
            *build_anthropic_routes(state),
            health,
            metrics,
            sim_stats,
            get_faults,
            set_faults,
            reset,
            list_gates,
            close_gate,
            release_gate,
            reset_prefix_cache,
        ],
        exception_handlers={SimRequestError: rejected, PromptTooLongError: too_long},
        lifespan=[lifespan],
        openapi_config=None,
    )
    app.state.sim = state
    return app
