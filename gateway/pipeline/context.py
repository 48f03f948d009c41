"""What one request carries through the pipeline, and what each client API must provide.

A :class:`RequestContext` is made once per request by :mod:`gateway.pipeline.pipeline` and
filled in by its stages in order; nothing decodes the body twice: the validated payload is
decoded once, the plain-dict form at most once (when a stage needs every field), and the body
for each upstream model name is encoded at most once, however many retries send it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway.codec import decode_object, encode
from gateway.identity import ANONYMOUS, Principal
from gateway.providers.base import UpstreamRequest
from gateway.routes.errors import ErrorFormat

if TYPE_CHECKING:
    from gateway.agents.base import RunLimits, RunUsage
    from gateway.cache.policy import CacheStore
    from gateway.governance.limiter import Reservation
    from gateway.pipeline.guarding import Guarding
    from gateway.routing.backends import Backend, ModelGroup
    from gateway.scheduling.admission import Admission
    from gateway.stores.base import ResponseStore, StoredObject
    from gateway.telemetry.tracing import RequestTrace


class StreamConverter(Protocol):
    """Rewrites one stream from the upstream's format to the client's, chunk by chunk."""

    def feed(self, chunk: bytes) -> bytes:
        """Bytes to send for an upstream chunk (possibly empty)."""
        ...

    def finish(self) -> bytes:
        """Bytes to send once the upstream stream ended."""
        ...


class Converter(Protocol):
    """Converts one backend's answers to the client's API format."""

    def body(self, data: bytes) -> bytes:
        """A whole (successful) response body."""
        ...

    def stream(self) -> StreamConverter:
        """A fresh converter for one stream."""
        ...


class StreamRecorder(Protocol):
    """Watches a stream in the client's format and assembles its final answer."""

    @property
    def complete(self) -> bool:
        """Whether the final answer is known (the stream's closing event was seen)."""
        ...

    def feed(self, chunk: bytes) -> None:
        """Read the bytes of one chunk of the stream."""
        ...

    def result(self) -> bytes | None:
        """The answer as one JSON object (a complete stream's), or None."""
        ...


class Dialect(Protocol):
    """A client API served by the pipeline (OpenAI chat, completions, embeddings, the Responses
    API; Anthropic Messages): how its requests are decoded, sent, answered and stored.

    Attributes:
        endpoint: the route's name in metrics and cache keys (``chat/completions``...).
        errors: how its clients expect errors rendered.
        streams: whether its requests may ask for a stream (``stream: true``).
        cacheable: whether the response cache may answer it (when its group caches).
        follows_live: whether a streaming request may join an identical one's live stream
            (else it waits for the complete answer, made its own by :meth:`fresh`).
        batchable: whether the embedding batcher may merge it (when its group batches).
    """

    endpoint: str
    errors: ErrorFormat
    streams: bool
    cacheable: bool
    follows_live: bool
    batchable: bool

    def decode(self, body: bytes) -> Any:
        """The validated request payload (a msgspec Struct with ``model`` and ``stream``).

        Raises:
            InvalidRequestError: not JSON, or a field is missing or invalid.
        """
        ...

    async def prepare(self, ctx: RequestContext) -> None:
        """Work done once the group is known, before any upstream call: a translation the
        group's backends need, or earlier turns loaded from the response store. Raises
        ``GatewayError`` for a request they cannot serve."""
        ...

    def upstream_request(self, ctx: RequestContext, backend: Backend) -> UpstreamRequest:
        """The call to send to ``backend`` (its native format, its model name)."""
        ...

    def converter(self, ctx: RequestContext, backend: Backend) -> Converter | None:
        """How ``backend``'s answers become the client's format; None to relay bytes as they
        are."""
        ...

    def fresh(self, ctx: RequestContext, answer: bytes) -> bytes:
        """A complete answer shared from the cache or an identical request, made this
        request's own (its own ids)."""
        ...

    def keeps(self, ctx: RequestContext) -> bool:
        """Whether the answer is to be kept in the response store (``store``)."""
        ...

    def record(self, ctx: RequestContext, answer: bytes) -> StoredObject:
        """The stored object for a successful answer (in the client's format)."""
        ...

    def recorder(self, ctx: RequestContext) -> StreamRecorder:
        """Assembles a streamed answer (in the client's format) for :meth:`record`."""
        ...


class KeepsNothing:
    """For dialects whose answers are never stored (Anthropic Messages, embeddings...)."""

    def fresh(self, ctx: RequestContext, answer: bytes) -> bytes:
        return answer

    def keeps(self, ctx: RequestContext) -> bool:
        return False

    def record(self, ctx: RequestContext, answer: bytes) -> StoredObject:
        raise RuntimeError(f"{type(self).__name__} keeps nothing")

    def recorder(self, ctx: RequestContext) -> StreamRecorder:
        raise RuntimeError(f"{type(self).__name__} keeps nothing")


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What makes a request one step of an agent's (or workflow's) run.

    Attributes:
        agent: the agent (or workflow, or model group running server-side tools) whose run
            made the call.
        parent_id: the request id of that run.
        number: the step's number in the run (from 1).
        depth: how deeply runs are nested (1: a step of a run the client asked for).
        route: why the model was chosen, if the agent routes.
        local_only: only groups whose every backend is local may serve it.
        cap: limits for a nested run (when the step's model is itself an agent or workflow).
    """

    agent: str
    parent_id: str
    number: int
    depth: int = 1
    route: str | None = None
    local_only: bool = False
    cap: RunLimits | None = None


class RequestContext:
    """One request on its way through the pipeline.

    Attributes:
        dialect: the client API it speaks.
        headers: the client's request headers (lower-case names).
        request_id: the ``x-request-id`` (the client's, or a new one; sent upstream too).
        started: ``time.perf_counter()`` when the gateway started on it.
        principal: the caller (anonymous until authenticated, or when auth is off).
        body: the client's bytes, as received.
        payload: the validated request Struct.
        group: the model group that serves it.
        stream: whether the answer streams.
        deadline: ``time.monotonic()`` by which the whole exchange must end (the group's total
            timeout), for the stages that wait (admission, agents).
        response_headers: headers added to the answer by the stages (``x-gateway-cache``...).
        cache_store: where a cache miss stores its answer, if anywhere.
        upstream_s: time waiting on the upstream (to its full body, or its stream's headers).
        store: the response store (earlier turns, and where kept answers go).
        turn: what the dialect prepared for this request in :meth:`Dialect.prepare` (a
            translation, ids, earlier turns), or None.
        reservation: what the limiter reserved for this request (None: nothing limits it).
        admission: its place in its group's capacity while it runs (None: the group does not
            schedule, or it has ended); released when the request ends.
        disconnected: returns once the client has gone away (None: no client connection, an
            agent's step made in process); what a request waiting for admission watches.
        served_from: ``hit`` or ``coalesced`` when the cache stage answered it, with
            ``served_status`` (a coalesced request may share its leader's error).
        settled: the request has been accounted (its usage recorded, its reservation settled);
            accounting happens exactly once.
        cost_nanos: what it cost once accounted (a run: the sum of its steps).
        composite: it is served by a runner (an agent, a workflow, server-side tools) whose
            steps are accounted on their own: the request itself reserves and records no
            tokens or money.
        step: set when the request is a step of an agent's run (made in process).
        run_usage: for a request served by a runner: what its run used (every step's tokens,
            cost and time), for an enclosing run to fold in.
        guards: the group's guardrails and their context (None: the group has none).
        chat_only: the request must reach its backends as chat (guardrails or a run read it):
            a Messages or Responses dialect translates it even for a backend that speaks its
            own API.
        trace: its spans (None: tracing is off).
    """

    __slots__ = (
        "_bodies",
        "_raw",
        "admission",
        "body",
        "cache_store",
        "chat_only",
        "composite",
        "cost_nanos",
        "deadline",
        "dialect",
        "disconnected",
        "group",
        "guards",
        "headers",
        "payload",
        "principal",
        "request_id",
        "reservation",
        "response_headers",
        "run_usage",
        "served_from",
        "served_status",
        "settled",
        "started",
        "step",
        "store",
        "stream",
        "trace",
        "turn",
        "upstream_s",
    )

    def __init__(
        self, dialect: Dialect, headers: Mapping[str, str], request_id: str, started: float
    ) -> None:
        self.dialect = dialect
        self.headers = headers
        self.request_id = request_id
        self.started = started
        self.principal: Principal = ANONYMOUS
        self.body = b""
        self.payload: Any = None
        self.group: ModelGroup | None = None
        self.stream = False
        self.deadline = 0.0
        self.response_headers: dict[str, str] = {}
        self.cache_store: CacheStore | None = None
        self.upstream_s = 0.0
        self.store: ResponseStore | None = None
        self.turn: Any = None
        self.reservation: Reservation | None = None
        self.admission: Admission | None = None
        self.disconnected: Callable[[], Awaitable[None]] | None = None
        self.served_from: str | None = None
        self.served_status = 200
        self.settled = False
        self.cost_nanos = 0
        self.composite = False
        self.chat_only = False
        self.run_usage: RunUsage | None = None
        self.step: StepInfo | None = None
        self.guards: Guarding | None = None
        self.trace: RequestTrace | None = None
        self._raw: dict[str, Any] | None = None
        self._bodies: dict[str, bytes] | None = None

    @property
    def model(self) -> str:
        """The model name the client asked for."""
        name: str = self.payload.model
        return name

    @property
    def raw(self) -> dict[str, Any]:
        """The body as a plain dict with every field the client sent (decoded on first use).

        A stage that changes it calls :meth:`body_changed`, so that upstream bodies are encoded
        from it instead of relaying the client's bytes.
        """
        if self._raw is None:
            self._raw = decode_object(self.body)
        return self._raw

    def replace_raw(self, body: dict[str, Any]) -> None:
        """Replace the whole request (a guardrail rewrote it): body, dict and payload."""
        self._raw = body
        self.body_changed()
        self.payload = self.dialect.decode(self.body)

    def body_changed(self) -> None:
        """The plain dict was changed: encode the upstream body from it (once per model)."""
        self.body = encode(self.raw)
        self._bodies = None

    def body_for(self, model: str) -> bytes:
        """The body to send to an upstream that calls the model ``model``: the client's bytes
        when the name is the same, else with ``model`` replaced (encoded once per name)."""
        if model == self.payload.model:
            return self.body
        bodies = self._bodies
        if bodies is None:
            bodies = self._bodies = {}
        found = bodies.get(model)
        if found is None:
            found = bodies[model] = encode({**self.raw, "model": model})
        return found

    def encoded(self, key: str, make: Callable[[], bytes]) -> bytes:
        """``make()``, made once per request and ``key`` (``key`` must not be a model name:
        those are :meth:`body_for`'s), so that retries and fallbacks reuse it."""
        bodies = self._bodies
        if bodies is None:
            bodies = self._bodies = {}
        found = bodies.get(key)
        if found is None:
            found = bodies[key] = make()
        return found

    @property
    def model_group(self) -> ModelGroup:
        """The resolved group (only after the resolve stage)."""
        assert self.group is not None
        return self.group
