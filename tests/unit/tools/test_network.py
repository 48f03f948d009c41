"""The tools' network policy (gateway.tools.network): address checks, policy parsing, and the
guarded client against a real server on loopback, reached through test names that only a
dict resolver knows (so the pinned address is the only way to connect)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import pytest

from gateway.settings_agents import NetworkSettings
from gateway.tools.base import HttpFailureError, NetworkRefusedError
from gateway.tools.network import (
    GuardedHttpClient,
    NetworkPolicy,
    SystemResolver,
    address_refusal,
)
from tests.unit.tools.support import DictResolver, Target, running_target

pytestmark = pytest.mark.anyio

LOOPBACK = NetworkPolicy.from_settings(NetworkSettings(allow_addresses=["127.0.0.1/32"])).opened

TABLE = {
    "api.test": ["127.0.0.1"],
    "a.svc.test": ["127.0.0.1"],
    "localhost": ["127.0.0.1"],
    "internal.test": ["192.168.1.10"],
    "mixed.test": ["93.184.216.34", "10.0.0.7"],
    "meta.test": ["169.254.169.254"],
    "v6meta.test": ["fd00:ec2::254"],
    "rebind.test": ["127.0.0.1"],
}

Client = Callable[..., GuardedHttpClient]


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with running_target() as t:
        yield t


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    """Builds guarded clients over :data:`TABLE` (loopback opened unless told otherwise)."""
    made: list[GuardedHttpClient] = []

    def build(
        domains: tuple[str, ...] = ("api.test", "*.svc.test", "internal.test", "mixed.test"),
        addresses: tuple[str, ...] = ("127.0.0.1/32",),
        resolver: DictResolver | None = None,
        max_response_bytes: int = 1024 * 1024,
        timeout_s: float = 10.0,
        max_redirects: int = 5,
    ) -> GuardedHttpClient:
        settings = NetworkSettings(
            allow_domains=list(domains),
            allow_addresses=list(addresses),
            max_response_bytes=max_response_bytes,
            timeout_s=timeout_s,
            max_redirects=max_redirects,
        )
        made.append(
            GuardedHttpClient(
                NetworkPolicy.from_settings(settings), resolver=resolver or DictResolver(TABLE)
            )
        )
        return made[-1]

    yield build
    for c in made:
        await c.aclose()


# --- address_refusal ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "2606:4700:4700::1111", "64:ff9b::5db8:d822", "2002:5db8:d822::1"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(address) is None


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("::1", "::1 is a loopback address"),
        ("10.1.2.3", "10.1.2.3 is a private address"),
        ("192.168.0.1", "192.168.0.1 is a private address"),
        ("172.16.5.4", "172.16.5.4 is a private address"),
        ("fd00::1", "fd00::1 is a private address"),
        ("169.254.1.1", "169.254.1.1 is a link-local address"),
        ("fe80::1%eth0", "fe80::1 is a link-local address"),
        ("100.64.0.1", "100.64.0.1 is a shared (carrier-grade NAT) address"),
        ("0.0.0.0", "0.0.0.0 is an unspecified address"),
        ("224.0.0.1", "224.0.0.1 is a multicast address"),
        ("ff02::1", "ff02::1 is a multicast address"),
        ("240.0.0.1", "240.0.0.1 is a reserved address"),
        ("fec0::1", "fec0::1 is not a public address"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1 reaches 127.0.0.1, a loopback address"),
        ("::ffff:10.0.0.1", "::ffff:a00:1 reaches 10.0.0.1, a private address"),
        ("64:ff9b::7f00:1", "64:ff9b::7f00:1 reaches 127.0.0.1, a loopback address"),
        ("2002:c0a8:0101::1", "2002:c0a8:101::1 reaches 192.168.1.1, a private address"),
        ("64:ff9b:1::5db8:d822", "64:ff9b:1::5db8:d822 is a reserved address"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "is a private address"),
    ],
)
def test_addresses_that_are_not_public_are_refused(address: str, why: str) -> None:
    refusal = address_refusal(address)
    assert refusal is not None
    assert why in refusal


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("169.254.169.254", "169.254.169.254 is a cloud metadata address"),
        ("169.254.170.2", "169.254.170.2 is a cloud metadata address"),
        ("fd00:ec2::254", "fd00:ec2::254 is a cloud metadata address"),
        ("100.100.100.200", "100.100.100.200 is a cloud metadata address"),
        ("168.63.129.16", "168.63.129.16 is a cloud metadata address"),
        ("::ffff:169.254.169.254", "embeds 169.254.169.254, a cloud metadata address"),
        ("64:ff9b::a9fe:a9fe", "64:ff9b::a9fe:a9fe embeds 169.254.169.254, a cloud metadata"),
        ("64:ff9b:1::a9fe:a9fe", "embeds 169.254.169.254, a cloud metadata address"),
        ("2002:a9fe:a9fe::1", "2002:a9fe:a9fe::1 embeds 169.254.169.254, a cloud metadata"),
    ],
)
def test_metadata_addresses_are_refused_even_when_opened(address: str, why: str) -> None:
    opened = NetworkPolicy.from_settings(
        NetworkSettings(allow_addresses=["0.0.0.0/0", "::/0"])
    ).opened
    for networks in ((), opened):
        refusal = address_refusal(address, networks)
        assert refusal is not None
        assert why in refusal


def test_opened_ranges_allow_addresses_that_are_not_public() -> None:
    assert address_refusal("127.0.0.1", LOOPBACK) is None
    assert address_refusal("::ffff:127.0.0.1", LOOPBACK) is None  # the same host
    assert address_refusal("127.0.0.2", LOOPBACK) is not None
    assert address_refusal("::1", LOOPBACK) is not None


# --- NetworkPolicy.from_settings ------------------------------------------------------------


def test_settings_become_a_normalised_policy() -> None:
    policy = NetworkPolicy.from_settings(
        NetworkSettings(
            allow_domains=["API.Example.com.", "*.svc.example.com"],
            allow_addresses=["10.1.2.0/24", "fd12::/16", "192.168.7.7"],
            max_response_bytes=10,
            timeout_s=2.5,
            max_redirects=1,
        )
    )
    assert policy.domains == frozenset({"api.example.com"})
    assert policy.parent_domains == ("svc.example.com",)
    assert not policy.any_public_host
    assert [str(n) for n in policy.opened] == ["10.1.2.0/24", "fd12::/16", "192.168.7.7/32"]
    assert (policy.max_response_bytes, policy.timeout_s, policy.max_redirects) == (10, 2.5, 1)
    assert NetworkPolicy.from_settings(NetworkSettings(allow_domains=["*"])).any_public_host


@pytest.mark.parametrize(
    ("domains", "addresses", "named"),
    [
        (["http://api.example.com"], [], "'http://api.example.com'"),
        (["a.*.example.com"], [], "'a.*.example.com'"),
        (["*example.com"], [], "'*example.com'"),
        (["*."], [], "'*.'"),
        (["**"], [], "'**'"),
        (["exa mple.com"], [], "'exa mple.com'"),
        (["-bad.example.com"], [], "'-bad.example.com'"),
        (["10.0.0.1"], [], "'10.0.0.1' is an address"),
        (["metadata.google.internal"], [], "cloud metadata host"),
        ([], ["10.0.0.0/33"], "'10.0.0.0/33'"),
        ([], ["10.0.0.1/24"], "'10.0.0.1/24'"),
        ([], ["intranet"], "'intranet'"),
    ],
)
def test_malformed_entries_are_named(domains: list[str], addresses: list[str], named: str) -> None:
    with pytest.raises(ValueError, match="allow_") as caught:
        NetworkPolicy.from_settings(
            NetworkSettings(allow_domains=domains, allow_addresses=addresses)
        )
    assert named in str(caught.value)


# --- the guarded client ---------------------------------------------------------------------


async def test_get_and_post_reach_the_pinned_address_under_the_name(
    target: Target, client: Client
) -> None:
    c = client()
    reply = await c.request("GET", f"http://api.test:{target.port}/echo")
    assert (reply.status, reply.body, reply.truncated) == (200, b"echo GET", False)
    assert reply.headers["x-extra"] == "1"
    assert reply.url == f"http://api.test:{target.port}/echo"
    reply = await c.request(
        "post", f"http://a.svc.test:{target.port}/echo", headers={"X-Req": "7"}, body=b"hi"
    )
    assert reply.body == b"echo POST"
    first, second = target.seen
    assert first.headers["host"] == f"api.test:{target.port}"
    assert (second.method, second.body, second.headers["x-req"]) == ("POST", b"hi", "7")
    assert second.headers["host"] == f"a.svc.test:{target.port}"


async def test_the_connection_uses_the_checked_address_not_a_later_answer(
    target: Target, client: Client
) -> None:
    resolver = DictResolver(dict(TABLE))
    c = client(domains=("rebind.test",), resolver=resolver)
    url = f"http://rebind.test:{target.port}/echo"
    await c.request("GET", url)
    # The name now points at the metadata service; the next request checks the new answer.
    resolver.table["rebind.test"] = ["169.254.169.254"]
    with pytest.raises(NetworkRefusedError, match=re.escape("169.254.169.254 is a cloud metadata")):
        await c.request("GET", url)
    assert resolver.asked == ["rebind.test", "rebind.test"]
    assert len(target.seen) == 1


async def test_an_opened_ip_literal_is_allowed(target: Target, client: Client) -> None:
    reply = await client().request("GET", f"http://127.0.0.1:{target.port}/echo")
    assert reply.status == 200


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:{port}/echo", "127.0.0.1 is a loopback address"),
        ("http://[::1]:{port}/echo", "::1 is a loopback address"),
        ("http://localhost:{port}/echo", "localhost: 127.0.0.1 is a loopback address"),
        ("http://10.0.0.5/", "10.0.0.5 is a private address"),
        ("http://192.168.1.1/", "192.168.1.1 is a private address"),
        ("http://[fd00::5]/", "fd00::5 is a private address"),
        ("http://169.254.10.10/", "169.254.10.10 is a link-local address"),
        ("http://100.64.1.1/", "100.64.1.1 is a shared (carrier-grade NAT) address"),
        ("http://100.100.100.200/", "100.100.100.200 is a cloud metadata address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://[::ffff:127.0.0.1]:{port}/echo", "reaches 127.0.0.1, a loopback address"),
        ("http://[::ffff:169.254.169.254]/", "embeds 169.254.169.254, a cloud metadata"),
        ("http://[64:ff9b::a9fe:a9fe]/", "embeds 169.254.169.254, a cloud metadata"),
        ("http://[2002:a9fe:a9fe::1]/", "embeds 169.254.169.254, a cloud metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", "is a cloud metadata host"),
        ("http://metadata.google.internal./", "is a cloud metadata host"),
        ("http://instance-data/", "instance-data is a cloud metadata host"),
        ("http://internal.test/", "internal.test: 192.168.1.10 is a private address"),
        ("http://mixed.test/", "mixed.test: 10.0.0.7 is a private address"),
        ("http://meta.test/", "meta.test: 169.254.169.254 is a cloud metadata address"),
        ("http://v6meta.test/", "v6meta.test: fd00:ec2::254 is a cloud metadata address"),
        ("file:///etc/passwd", "the scheme 'file' is not allowed"),
        ("ftp://api.test/x", "the scheme 'ftp' is not allowed"),
        ("gopher://api.test:70/_x", "the scheme 'gopher' is not allowed"),
        ("api.test/echo", "the scheme '(none)' is not allowed"),
    ],
)
async def test_refused_urls_say_why(target: Target, client: Client, url: str, why: str) -> None:
    # Everything may be named ('*'), nothing is opened: only the address checks stand.
    c = client(domains=("*",), addresses=())
    with pytest.raises(NetworkRefusedError) as caught:
        await c.request("GET", url.format(port=target.port))
    assert str(caught.value).startswith("refused: ")
    assert why in str(caught.value)
    assert target.seen == []


async def test_metadata_stays_refused_when_everything_is_opened(client: Client) -> None:
    c = client(domains=("*",), addresses=("0.0.0.0/0", "::/0"))
    for url in ("http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://meta.test/"):
        with pytest.raises(NetworkRefusedError, match="cloud metadata address"):
            await c.request("GET", url)


async def test_hosts_outside_allow_domains_are_refused(target: Target, client: Client) -> None:
    c = client(domains=("api.test", "*.svc.test"))
    for host in ("other.test", "svc.test", "api.test.evil.test", "93.184.216.34"):
        with pytest.raises(NetworkRefusedError, match="refused: "):
            await c.request("GET", f"http://{host}:{target.port}/echo")
    with pytest.raises(NetworkRefusedError, match=re.escape("other.test is not in allow_domains")):
        await c.request("GET", "http://other.test/")
    with pytest.raises(NetworkRefusedError, match="which only allow_domains '\\*'"):
        await c.request("GET", "http://93.184.216.34/")
    with pytest.raises(
        NetworkRefusedError, match=re.escape("nothing.test is not in allow_domains")
    ):
        await client(domains=(), addresses=()).request("GET", "http://nothing.test/")


async def test_redirects_are_followed_and_each_hop_checked(target: Target, client: Client) -> None:
    c = client()
    base = f"http://api.test:{target.port}"
    reply = await c.request("GET", f"{base}/redirect?to=/echo")
    assert (reply.status, reply.body, reply.url) == (200, b"echo GET", f"{base}/echo")
    for to, why in [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata"),
        ("http://internal.test/", "internal.test: 192.168.1.10 is a private address"),
        ("http://elsewhere.test/", "elsewhere.test is not in allow_domains"),
        ("file:///etc/passwd", "the scheme 'file' is not allowed"),
    ]:
        with pytest.raises(NetworkRefusedError, match="refused: ") as caught:
            await c.request("GET", f"{base}/redirect?to={to}")
        assert why in str(caught.value)
        assert f"the redirect from {base}/redirect" in str(caught.value)
    assert [s.path for s in target.seen] == ["/redirect", "/echo"] + ["/redirect"] * 4


@pytest.mark.parametrize(
    ("method", "status", "then"),
    [
        ("POST", 302, "GET"),
        ("POST", 301, "GET"),
        ("PUT", 303, "GET"),
        ("POST", 307, "POST"),
        ("PUT", 308, "PUT"),
        ("PUT", 302, "PUT"),
    ],
)
async def test_redirected_methods_follow_the_rfc(
    target: Target, client: Client, method: str, status: int, then: str
) -> None:
    url = f"http://api.test:{target.port}/redirect?to=/echo&status={status}"
    headers = {"content-type": "text/plain", "authorization": "Bearer t"}
    reply = await client().request(method, url, headers=headers, body=b"data")
    assert reply.body == f"echo {then}".encode()
    final = target.seen[-1]
    assert final.method == then
    assert final.body == (b"" if then == "GET" else b"data")
    assert ("content-type" in final.headers) == (then != "GET")
    assert final.headers["authorization"] == "Bearer t"  # same origin


async def test_credentials_are_not_carried_to_another_origin(
    target: Target, client: Client
) -> None:
    to = f"http://a.svc.test:{target.port}/echo"
    await client().request(
        "GET", f"http://api.test:{target.port}/redirect?to={to}", headers={"Authorization": "x"}
    )
    first, second = target.seen
    assert first.headers["authorization"] == "x"
    assert "authorization" not in second.headers


async def test_too_many_redirects_fail(target: Target, client: Client) -> None:
    with pytest.raises(HttpFailureError, match="too many redirects: more than 3"):
        await client(max_redirects=3).request("GET", f"http://api.test:{target.port}/loop")
    assert len(target.seen) == 4
    with pytest.raises(HttpFailureError, match="more than 0"):
        await client(max_redirects=0).request("GET", f"http://api.test:{target.port}/loop")


async def test_bodies_are_cut_at_the_cap(target: Target, client: Client) -> None:
    url = f"http://api.test:{target.port}/big"
    reply = await client(max_response_bytes=1000).request("GET", url)
    assert (len(reply.body), reply.truncated) == (1000, True)
    reply = await client(max_response_bytes=10_000).request("GET", url)
    assert (len(reply.body), reply.truncated) == (10_000, False)
    reply = await client(max_response_bytes=10).request(
        "HEAD", f"http://api.test:{target.port}/echo"
    )
    assert (reply.status, reply.body, reply.truncated) == (200, b"", False)


async def test_a_slow_answer_times_out(target: Target, client: Client) -> None:
    url = f"http://api.test:{target.port}/hold"
    with pytest.raises(HttpFailureError, match=re.escape("timed out after 0.2 s")):
        await client().request("GET", url, timeout_s=0.2)
    with pytest.raises(HttpFailureError, match=re.escape("timed out after 0.2 s")):
        await client(timeout_s=0.2).request("GET", url, timeout_s=30)
    assert [s.path for s in target.seen] == ["/hold", "/hold"]


async def test_connection_and_resolution_failures(client: Client) -> None:
    async with running_target() as gone:
        port = gone.port
    with pytest.raises(HttpFailureError, match="failed: "):
        await client().request("GET", f"http://api.test:{port}/echo")
    with pytest.raises(HttpFailureError, match=r"unknown.svc.test does not resolve"):
        await client().request("GET", "http://unknown.svc.test/")
    with pytest.raises(NetworkRefusedError, match="not a valid URL"):
        await client().request("GET", "http://[::1/")


async def test_the_system_resolver_reads_numeric_hosts_without_dns() -> None:
    assert await SystemResolver().resolve("127.0.0.1", 80) == ["127.0.0.1"]
    # glibc reads 2130706433 as 127.0.0.1: the check sees what the connection would use.
    c = GuardedHttpClient(NetworkPolicy.from_settings(NetworkSettings(allow_domains=["*"])))
    try:
        with pytest.raises(
            NetworkRefusedError, match=re.escape("2130706433: 127.0.0.1 is a loopback")
        ):
            await c.request("GET", "http://2130706433/")
    finally:
        await c.aclose()


async def test_proxies_from_the_environment_are_ignored(
    target: Target, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_target() as proxy:
        for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        await client().request("GET", f"http://api.test:{target.port}/echo")
        assert proxy.seen == []
    assert [s.path for s in target.seen] == ["/echo"]
