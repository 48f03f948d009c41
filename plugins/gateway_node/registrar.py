"""The ``gateway_admin`` engine registrar: tells every gateway replica of the node's engines
through the admin API (``gateway/routes/admin.py``), with the master key.

- register: ``POST /admin/models/{group}/backends`` with the engine as a backend entry;
  a backend of that name already there (400) is success when it has the engine's URL, and is
  replaced (an earlier run's) when it has another;
- drain: ``POST /admin/backends/{name}/drain``; 404 (already gone) is success;
- deregister: ``DELETE /admin/backends/{name}?force=true``; 404 is success.

Each replica is told on its own (concurrently): one that is down or refuses does not stop the
others being told, and the call raises afterwards naming each replica that was not.

With ``resolve_dns``, each URL's host name is resolved at every call and every address it has
is told: a Kubernetes headless Service (``clusterIP: None``) has one address per ready gateway
pod, so the node reaches the replicas the autoscaler runs now, where a plain Service would reach
one replica per connection. Replicas that come later learn the engines from the agent's
periodic re-registration.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp

from gateway.errors import ServiceUnavailableError
from gateway.node.base import EngineEndpoint

log = logging.getLogger("gateway.node")


class _NotToldError(Exception):
    """One gateway replica was not told (unreachable, or it refused): the message says why."""


def backend_entry(engine: EngineEndpoint) -> dict[str, Any]:
    """The engine as a backend entry of the gateway's config (``BackendSettings``): the admin
    API's add-backend body. ``local``: the engine runs on the operator's own GPUs."""
    entry: dict[str, Any] = {
        "name": engine.backend,
        "url": engine.url.rstrip("/"),
        "model": engine.model,
        "provider": "vllm",
        "local": True,
    }
    if engine.price:
        entry["price"] = dict(engine.price)
    return entry


class GatewayAdminRegistrar:
    """An :class:`gateway.node.base.EngineRegistrar` over the admin API of every replica.

    Args:
        gateway_urls: each gateway replica's base URL (``http://gw-1:8000``).
        master_key: the gateways' ``auth.master_key``.
        timeout_s: the most one call to one replica may take.
        resolve_dns: tell every address of each URL's host, resolved at each call (a headless
            Service's pods); only for ``http://`` URLs (a certificate names the host, not its
            addresses).

    Raises:
        TypeError, ValueError: bad options (no URLs, a URL that is not http(s), no key, an
            https URL to resolve).
    """

    def __init__(
        self,
        gateway_urls: list[str],
        master_key: str,
        timeout_s: float = 5,
        resolve_dns: bool = False,
    ) -> None:
        if not isinstance(gateway_urls, list) or not gateway_urls:
            raise ValueError("`gateway_urls` must list at least one gateway base URL")
        for url in gateway_urls:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError(f"`gateway_urls`: expected http(s):// URLs, got {url!r}")
        if not isinstance(master_key, str) or not master_key:
            raise ValueError("`master_key` is required: the gateways' auth.master_key")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
            raise TypeError(f"`timeout_s` must be a number, got {timeout_s!r}")
        if timeout_s <= 0:
            raise ValueError("`timeout_s` must be more than 0")
        if not isinstance(resolve_dns, bool):
            raise TypeError(f"`resolve_dns` must be true or false, got {resolve_dns!r}")
        if resolve_dns and any(url.lower().startswith("https://") for url in gateway_urls):
            raise ValueError("`resolve_dns` needs http:// URLs: a certificate names the host")
        self.resolve_dns = resolve_dns
        self.gateway_urls = [url.rstrip("/") for url in gateway_urls]
        self._headers = {"authorization": f"Bearer {master_key}"}
        self._timeout = aiohttp.ClientTimeout(total=float(timeout_s))
        # Made on first use: an aiohttp session belongs to the event loop it was made in.
        self._session: aiohttp.ClientSession | None = None

    async def register(self, engine: EngineEndpoint) -> None:
        """Add the engine to its group on every replica (already there: success).

        Raises:
            ServiceUnavailableError: some replica could not be told (the others were).
        """
        path = f"/admin/models/{quote(engine.group, safe='')}/backends"
        await self._tell_all("register", engine, "POST", path, backend_entry(engine))

    async def drain(self, engine: EngineEndpoint) -> None:
        """Route no new requests to the engine on any replica (gone: success).

        Raises:
            ServiceUnavailableError: some replica could not be told (the others were).
        """
        path = f"/admin/backends/{quote(engine.backend, safe='')}/drain"
        await self._tell_all("drain", engine, "POST", path, None)

    async def deregister(self, engine: EngineEndpoint) -> None:
        """Remove the engine from every replica, even its group's last backend (gone: success).

        Raises:
            ServiceUnavailableError: some replica could not be told (the others were).
        """
        path = f"/admin/backends/{quote(engine.backend, safe='')}?force=true"
        await self._tell_all("deregister", engine, "DELETE", path, None)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _tell_all(
        self, action: str, engine: EngineEndpoint, method: str, path: str, body: Any
    ) -> None:
        bases, failed = await self._replicas()
        outcomes = await asyncio.gather(
            *(self._tell(base, action, engine, method, path, body) for base in bases),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, _NotToldError):
                failed.append(str(outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
        if failed:
            raise ServiceUnavailableError(
                f"{action} of backend `{engine.backend}` did not reach every gateway: "
                + "; ".join(failed)
            )
        log.info("%s of backend %s: told %d gateway(s)", action, engine.backend, len(outcomes))

    async def _replicas(self) -> tuple[list[str], list[str]]:
        """The base URLs to tell now, and why some configured URL gave none."""
        if not self.resolve_dns:
            return self.gateway_urls, []
        resolved = await asyncio.gather(
            *(self._addresses(url, self._timeout.total) for url in self.gateway_urls),
            return_exceptions=True,
        )
        bases: list[str] = []
        failed: list[str] = []
        for url, found in zip(self.gateway_urls, resolved, strict=True):
            if isinstance(found, BaseException):
                failed.append(f"{url} does not resolve ({found})")
            else:
                bases.extend(b for b in found if b not in bases)
        return bases, failed

    @staticmethod
    async def _addresses(url: str, timeout_s: float | None = None) -> list[str]:
        parts = urlsplit(url)
        port = parts.port or 80
        async with asyncio.timeout(timeout_s):  # a resolver that hangs must not stall us
            infos = await asyncio.get_running_loop().getaddrinfo(
                parts.hostname, port, type=socket.SOCK_STREAM
            )
        hosts = sorted({str(info[4][0]) for info in infos})
        return [
            urlunsplit(("http", f"[{h}]:{port}" if ":" in h else f"{h}:{port}", parts.path, "", ""))
            for h in hosts
        ]

    async def _tell(
        self, base: str, action: str, engine: EngineEndpoint, method: str, path: str, body: Any
    ) -> None:
        status, text = await self._call(base, method, path, body)
        if status < 300:
            return
        message = _message(text)
        if action == "register" and status == 400 and f"`{engine.backend}` exists" in message:
            await self._check_registered(base, engine)
        elif action == "register" or status != 404:
            raise _NotToldError(f"{base} answered {status}: {message}")

    async def _check_registered(self, base: str, engine: EngineEndpoint) -> None:
        """A backend named as the engine exists: success if it is this engine (same group and
        URL). One left at another address is a registration of an earlier run of this node
        (the node owns its ``<node>-<engine>`` names): it is replaced, never passed for this
        engine."""
        status, text = await self._call(base, "GET", "/admin/backends", None)
        if status != 200:
            raise _NotToldError(f"{base} answered {status}: {_message(text)}")
        want = backend_entry(engine)["url"]
        for backend in json.loads(text)["backends"]:
            if backend["name"] == engine.backend:
                if (backend["model"], backend["url"]) == (engine.group, want):
                    return
                log.warning(
                    "%s had backend %s of group %s at %s (an earlier run): replacing it",
                    base,
                    engine.backend,
                    backend["model"],
                    backend["url"],
                )
                await self._replace(base, engine)
                return
        raise _NotToldError(f"{base} says `{engine.backend}` exists but does not list it")

    async def _replace(self, base: str, engine: EngineEndpoint) -> None:
        path = f"/admin/backends/{quote(engine.backend, safe='')}?force=true"
        status, text = await self._call(base, "DELETE", path, None)
        if status >= 300 and status != 404:
            raise _NotToldError(f"{base} answered {status}: {_message(text)}")
        status, text = await self._call(
            base,
            "POST",
            f"/admin/models/{quote(engine.group, safe='')}/backends",
            backend_entry(engine),
        )
        if status >= 300:
            raise _NotToldError(f"{base} answered {status}: {_message(text)}")

    async def _call(self, base: str, method: str, path: str, body: Any) -> tuple[int, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        try:
            async with self._session.request(method, base + path, json=body) as response:
                return response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _NotToldError(f"{base} cannot be reached ({exc or type(exc).__name__})") from None


def _message(text: str) -> str:
    """The gateway's error message (``{"error": {"message": ...}}``), else the body's start."""
    try:
        decoded = json.loads(text) if text else None
    except ValueError:
        return text[:200]
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
        return str(decoded["error"].get("message", text[:200]))
    return text[:200]
