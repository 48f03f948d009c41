"""The network policy of tools (an SSRF guard) and the HTTP client that enforces it.

A model chooses the URLs a tool fetches, so it could aim them at the gateway's own network: a
database on 10.x, a sidecar on loopback, or the cloud metadata service that hands out
credentials. :class:`GuardedHttpClient` therefore allows only ``http``/``https`` URLs whose
host the agent's ``allow_domains`` names, resolves the host itself, refuses the request if
*any* address is not public (unless ``allow_addresses`` deliberately opens it), and connects to
exactly the addresses it checked, so a DNS answer that changes between the check and the
connection (rebinding) cannot redirect it. Redirects are followed by hand, each hop checked
again. Cloud metadata addresses and host names are refused whatever the policy opens.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from gateway.settings_agents import NetworkSettings
from gateway.tools.base import HttpFailureError, HttpReply, NetworkRefusedError

log = logging.getLogger("gateway.tools.network")

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer: a public address, so only this list refuses it
    )
)
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)

_SCHEMES = frozenset({"http", "https"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Local-use NAT64 (RFC 8215) and Teredo embed an IPv4 address too, but where the packets go
# depends on the local translator or the relay: the address itself is judged (never public),
# and the embedded one is only checked against the metadata list.
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, bool] | None:
    """The IPv4 address an IPv6 address carries, and whether packets really go there."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, True
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), True
    if address.sixtofour is not None:
        return address.sixtofour, True
    if address in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), False
    if address.teredo is not None:
        return address.teredo[1], False
    return None


def _is_public(address: IPAddress) -> bool:
    # Python 3.11's is_global still counts multicast, reserved and site-local ranges as global.
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


def _kind(address: IPAddress) -> str:
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address in _CGNAT:
        return "a shared (carrier-grade NAT) address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    return "not a public address"


def address_refusal(address: str | IPAddress, opened: Iterable[IPNetwork] = ()) -> str | None:
    """Why a tool may not connect to ``address``; None when it may.

    An IPv6 address that embeds an IPv4 one (IPv4-mapped, NAT64, 6to4) is judged by the IPv4
    address its packets reach. Metadata addresses (:data:`METADATA_ADDRESSES`) are always
    refused; other addresses that are not public (loopback, private, link-local, CGNAT,
    multicast, reserved, unspecified) are refused unless inside one of the ``opened`` ranges.

    Raises:
        ValueError: ``address`` is not an IP address.
    """
    raw = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(raw, ipaddress.IPv6Address) and raw.scope_id is not None:
        raw = ipaddress.IPv6Address(int(raw))  # the zone does not change what it is
    embedded = _embedded_ipv4(raw) if isinstance(raw, ipaddress.IPv6Address) else None
    if raw in METADATA_ADDRESSES:
        return f"{raw} is a cloud metadata address"
    if embedded is not None and embedded[0] in METADATA_ADDRESSES:
        return f"{raw} embeds {embedded[0]}, a cloud metadata address"
    target = embedded[0] if embedded is not None and embedded[1] else raw
    if _is_public(target) or any(target in net or raw in net for net in opened):
        return None
    if target is raw:
        return f"{raw} is {_kind(raw)}"
    return f"{raw} reaches {target}, {_kind(target)}"


def _domain_pattern(entry: str) -> str:
    """The lower-case form of an ``allow_domains`` entry, or ValueError naming it."""
    pattern = entry.strip().lower()
    if pattern == "*":
        return pattern
    wildcard = pattern.startswith("*.")
    name = pattern.removeprefix("*.").removesuffix(".")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise ValueError(f"allow_domains entry {entry!r} is an address: open it in allow_addresses")
    if len(name) > 253 or not _NAME.fullmatch(name):
        raise ValueError(
            f"allow_domains entry {entry!r} is not a host name, '*.' and a host name, or '*'"
            " (write international names in their xn-- form)"
        )
    if name in METADATA_HOSTS:
        raise ValueError(f"allow_domains entry {entry!r} is a cloud metadata host, always refused")
    return f"*.{name}" if wildcard else name


def _network(entry: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(entry.strip())
    except ValueError as exc:
        raise ValueError(f"allow_addresses entry {entry!r} is not a CIDR range: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkPolicy:
    """Where the tools of one agent may connect (see ``NetworkSettings``).

    Attributes:
        any_public_host: ``*`` is in ``allow_domains``: any host name, and IP-literal URLs.
        domains: host names allowed exactly (lower case, no trailing dot).
        parent_domains: names whose subdomains are allowed (from ``*.example.com``).
        opened: address ranges allowed although not public (metadata addresses excepted).
        max_response_bytes: the most of a body read.
        timeout_s: the most one request, redirects included, may take.
        max_redirects: redirects followed.
    """

    any_public_host: bool = False
    domains: frozenset[str] = frozenset()
    parent_domains: tuple[str, ...] = ()
    opened: tuple[IPNetwork, ...] = ()
    max_response_bytes: int = 1024 * 1024
    timeout_s: float = 10.0
    max_redirects: int = 5

    @classmethod
    def from_settings(cls, settings: NetworkSettings) -> NetworkPolicy:
        """The policy ``settings`` describe.

        Raises:
            ValueError: an ``allow_domains`` or ``allow_addresses`` entry is malformed (named).
        """
        patterns = [_domain_pattern(entry) for entry in settings.allow_domains]
        return cls(
            any_public_host="*" in patterns,
            domains=frozenset(p for p in patterns if not p.startswith("*")),
            parent_domains=tuple(p[2:] for p in patterns if p.startswith("*.")),
            opened=tuple(_network(entry) for entry in settings.allow_addresses),
            max_response_bytes=settings.max_response_bytes,
            timeout_s=settings.timeout_s,
            max_redirects=settings.max_redirects,
        )

    def address_refusal(self, address: str | IPAddress) -> str | None:
        """Why a tool may not connect to ``address`` under this policy; None when it may."""
        return address_refusal(address, self.opened)

    def url_refusal(self, url: URL) -> str | None:
        """Why ``url`` is refused before any resolution (scheme, host name, IP literal)."""
        if url.scheme not in _SCHEMES:
            return f"the scheme {url.scheme or '(none)'!r} is not allowed (only http and https)"
        host = url.raw_host
        if not host:
            return f"{url} has no host"
        literal = _ip_literal(host)
        if literal is not None:
            reason = self.address_refusal(literal)
            if reason is not None or self.any_public_host:
                return reason
            if any(literal in network for network in self.opened):
                return None
            return f"{host} is an IP address, which only allow_domains '*' or allow_addresses allow"
        name = host.rstrip(".")
        if name in METADATA_HOSTS:
            return f"{host} is a cloud metadata host"
        if self.any_public_host or name in self.domains:
            return None
        if any(name.endswith("." + parent) for parent in self.parent_domains):
            return None
        return f"{host} is not in allow_domains"


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class Resolver(Protocol):
    """Turns a host name into the IP addresses it would be reached at."""

    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address of ``host`` (both families), as strings.

        Raises:
            OSError: the name does not resolve.
        """
        ...


class SystemResolver:
    """The operating system's resolver (``getaddrinfo``): all addresses, both families."""

    async def resolve(self, host: str, port: int) -> list[str]:
        """See :meth:`Resolver.resolve`."""
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


_MOST_PINS = 1024  # hosts whose checked addresses one client remembers


class _PinnedResolver(AbstractResolver):
    """aiohttp's resolver for a guarded session: it answers only with the addresses the
    policy checked for a host (:meth:`pin`), so the connection goes where the check looked."""

    def __init__(self, most: int = _MOST_PINS) -> None:
        self._pins: dict[str, tuple[IPAddress, ...]] = {}
        self._most = most

    def pin(self, host: str, addresses: tuple[IPAddress, ...]) -> None:
        # Concurrent requests may replace each other's pins; every pin was checked under the
        # same immutable policy, so any of them is a safe answer. The oldest pins go once there
        # are `most` of them (a dict keeps insertion order): a host whose pin went is checked
        # again on its next request, which re-pins it, so nothing unchecked is ever answered.
        self._pins.pop(host, None)
        self._pins[host] = addresses
        while len(self._pins) > self._most:
            del self._pins[next(iter(self._pins))]

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self._pins.get(host)
        if addresses is None:
            raise OSError(f"{host} was not checked by the network policy")
        results: list[ResolveResult] = []
        for address in addresses:
            own = socket.AF_INET if address.version == 4 else socket.AF_INET6
            if family in (socket.AF_UNSPEC, own):
                results.append(
                    ResolveResult(
                        hostname=host,
                        host=str(address),
                        port=port,
                        family=own,
                        proto=0,
                        flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                    )
                )
        return results

    async def close(self) -> None:
        """Nothing to release."""


class GuardedHttpClient:
    """An :class:`~gateway.tools.base.HttpClient` that enforces a :class:`NetworkPolicy`.

    Each hop (the first URL and every redirect) is checked as a whole: scheme, host name
    against ``allow_domains``, then every address the name resolves to; the connection is
    pinned to those addresses. No proxy from the environment is used and no cookies are kept.
    One connection pool serves the client's requests; :meth:`aclose` releases it.
    """

    def __init__(self, policy: NetworkPolicy, *, resolver: Resolver | None = None) -> None:
        self.policy = policy
        self._resolver = resolver if resolver is not None else SystemResolver()
        self._pins = _PinnedResolver()
        self._session: aiohttp.ClientSession | None = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout_s: float | None = None,
    ) -> HttpReply:
        """See :meth:`gateway.tools.base.HttpClient.request`."""
        limit = self.policy.timeout_s
        if timeout_s is not None:
            limit = max(min(timeout_s, limit), 0.0)  # a deadline already past times out at once
        try:
            start = URL(url)
        except (TypeError, ValueError):
            raise NetworkRefusedError(f"refused: {url!r} is not a valid URL") from None
        try:
            async with asyncio.timeout(limit):
                return await self._follow(method.upper(), start, dict(headers or {}), body)
        except TimeoutError:
            raise HttpFailureError(f"{method} {url} timed out after {limit:g} s") from None
        except aiohttp.ClientError as exc:
            raise HttpFailureError(f"{method} {url} failed: {exc}") from exc

    async def aclose(self) -> None:
        """Close the connection pool (a later request opens a new one)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _session_for_requests(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=self._pins, use_dns_cache=False),
                trust_env=False,  # a proxy would connect for us, past the address checks
                cookie_jar=aiohttp.DummyCookieJar(),  # agents must not share cookies
                timeout=aiohttp.ClientTimeout(total=None),  # request() bounds the exchange
            )
        return self._session

    async def _follow(
        self, method: str, url: URL, headers: dict[str, str], body: bytes | None
    ) -> HttpReply:
        session = self._session_for_requests()
        redirects = 0
        await self._admit(url, via=None)
        while True:
            async with session.request(
                method, url, headers=headers, data=body, allow_redirects=False
            ) as response:
                location = response.headers.get("location")
                if response.status not in _REDIRECTS or location is None:
                    return await self._reply(method, url, response)
            if redirects == self.policy.max_redirects:
                raise HttpFailureError(
                    f"too many redirects: more than {self.policy.max_redirects} from {url}"
                )
            redirects += 1
            try:
                target = url.join(URL(location))
            except ValueError:
                raise HttpFailureError(f"{url} redirected to a bad URL {location!r}") from None
            await self._admit(target, via=url)
            method, body, headers = _redirected(response.status, method, body, headers, url, target)
            url = target

    async def _admit(self, url: URL, *, via: URL | None) -> None:
        """Check ``url`` under the policy and pin its host to the addresses checked."""
        what = f"{url}" if via is None else f"the redirect from {via} to {url}"
        reason = self.policy.url_refusal(url)
        host = url.raw_host
        if reason is None and host is not None and _ip_literal(host) is None:
            # aiohttp asks the pinned resolver only for names: IP literals were checked above.
            try:
                found = await self._resolver.resolve(host, url.port or 0)
            except OSError as exc:
                raise HttpFailureError(f"{what}: {host} does not resolve ({exc})") from None
            addresses = tuple(ipaddress.ip_address(a) for a in found)
            if not addresses:
                raise HttpFailureError(f"{what}: {host} resolves to no address")
            refusals = [r for a in addresses if (r := self.policy.address_refusal(a)) is not None]
            if refusals:
                reason = f"{host}: {refusals[0]}"
            else:
                self._pins.pin(host, addresses)
        if reason is not None:
            log.info("network policy refused %s: %s", what, reason)
            raise NetworkRefusedError(f"refused: {reason}" + ("" if via is None else f" ({what})"))

    async def _reply(self, method: str, url: URL, response: aiohttp.ClientResponse) -> HttpReply:
        cap = self.policy.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        while method != "HEAD" and size <= cap:
            chunk = await response.content.read(cap + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return HttpReply(
            status=response.status,
            headers={name.lower(): value for name, value in response.headers.items()},
            body=b"".join(chunks)[:cap],
            url=str(url),
            truncated=size > cap,
        )


def _redirected(
    status: int,
    method: str,
    body: bytes | None,
    headers: dict[str, str],
    source: URL,
    target: URL,
) -> tuple[str, bytes | None, dict[str, str]]:
    """The method, body and headers of the request a redirect asks for (RFC 9110 15.4):
    303 turns anything but HEAD into a body-less GET, and so do 301 and 302 for a POST, as
    browsers do; credentials are not carried to another origin."""
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, body = "GET", None
        headers = {k: v for k, v in headers.items() if k.lower() not in _BODY_HEADERS}
    if (source.scheme, source.raw_host, source.port) != (
        target.scheme,
        target.raw_host,
        target.port,
    ):
        headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
    return method, body, headers
