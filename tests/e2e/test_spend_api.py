"""Spend reports over HTTP: ``GET /admin/spend`` and ``/admin/audit`` served for real (uvicorn on
loopback) from a SQLite usage file filled through the ledger, and ``gateway spend`` against it.

Authentication is not under test: a stub ``authorize`` maps bearer tokens to principals (the
master key, a tenant admin of ``acme``, a plain key), as the gateway's would.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import socket
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from gateway_usage.sqlite_sink import SqliteUsageSink
from litestar import Litestar, Request, Response

from gateway.errors import AuthenticationError, GatewayError, status_of
from gateway.governance.accounts import principal_for
from gateway.governance.ledger import UsageLedger
from gateway.governance.records import KeyRecord, TenantRecord
from gateway.governance.sinks import AuditRecord, SpendQuery, SpendReader, UsageRecord
from gateway.governance.spend_cli import SPEND_COMMAND
from gateway.identity import Principal
from gateway.routes.admin_spend import build_spend_routes
from gateway.server import BackgroundServer
from tests.support.servers import http_json

DAY1 = 1_764_547_200.0  # 2025-12-01T00:00:00Z
DAY2 = DAY1 + 86_400

ACME = TenantRecord(name="acme")
PRINCIPALS = {
    "master": Principal(key_id="master", admin=True),
    "acme-admin": principal_for(
        KeyRecord(id="acmeadmin001", secret_hash="-", tenant="acme", role="admin"), ACME
    ),
    "acme-user": principal_for(KeyRecord(id="acmeuser0001", secret_hash="-", tenant="acme"), ACME),
}


async def authorize(headers: Mapping[str, str]) -> Principal:
    token = headers.get("authorization", "").removeprefix("Bearer ")
    principal = PRINCIPALS.get(token)
    if principal is None:
        raise AuthenticationError("Unknown key.")
    return principal


def _gateway_error(request: Request[Any, Any, Any], exc: GatewayError) -> Response[Any]:
    return Response(exc.to_json(), status_code=status_of(exc), media_type="application/json")


def usage(
    i: int, tenant: str | None, key: str | None, model: str, at: float, cost: int
) -> UsageRecord:
    return UsageRecord(
        model,
        f"{model}-0",
        1000,
        100,
        10,
        request_id=f"req-{i}",
        key_id=key,
        tenant=tenant,
        cost_nanos=cost,
        status=200,
        started_at=at,
        finished_at=at + 1,
    )


RECORDS = [
    usage(1, "acme", "k1", "chat", DAY1 + 60, 123_456),
    usage(2, "acme", "k1", "chat", DAY2 + 60, 1_000_000_000),
    usage(3, "acme", "k2", "embed", DAY2 + 120, 7),
    usage(4, "beta", "k9", "chat", DAY1 + 180, 2_500_000_000),
    usage(5, None, None, "chat", DAY2 + 240, 1),
]
AUDITS = [
    AuditRecord(
        audit_id=f"aud-{i}",
        at=DAY1 + i,
        actor="master",
        action="key.create",
        target=f"k{i}",
        tenant=tenant,
        before=None,
        after={"id": f"k{i}"},
    )
    for i, tenant in enumerate(["acme", "beta", "acme"])
]


async def fill(path: str) -> None:
    ledger = UsageLedger(
        [("sqlite", SqliteUsageSink(path=path))],
        buffer_size=100,
        batch_size=2,
        flush_interval_s=0.01,
    )
    await ledger.start()
    for rec in RECORDS:
        ledger.record(rec)
    for a in AUDITS:
        ledger.audit(a)
    await ledger.aclose()


class Served:
    def __init__(self, url: str, readers: list[SpendReader | None]) -> None:
        self.url = url
        self.readers = readers

    def get(self, path: str, token: str | None = "master") -> tuple[int, dict[str, str], Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return http_json("GET", f"{self.url}{path}", headers=headers)

    def raw(self, path: str, token: str = "master") -> tuple[str, str]:
        req = urllib.request.Request(
            f"{self.url}{path}", headers={"authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.headers["content-type"], resp.read().decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    path = str(tmp_path_factory.mktemp("usage") / "usage.sqlite3")
    asyncio.run(fill(path))
    sink = SqliteUsageSink(path=path)  # a new sink on the file: what a restarted gateway has
    readers: list[SpendReader | None] = [sink]
    app = Litestar(
        route_handlers=build_spend_routes(lambda: readers[0], authorize),
        exception_handlers={GatewayError: _gateway_error},
        on_shutdown=[sink.aclose],
    )
    with BackgroundServer(app) as server:
        yield Served(server.url, readers)


def rows(body: Any) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = body["data"]
    return data


def test_spend_by_tenant_is_exact(served: Served) -> None:
    status, headers, body = served.get("/admin/spend")
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    assert body["object"] == "list"
    assert rows(body) == [
        {
            "tenant": None,
            "requests": 1,
            "prompt_tokens": 1000,
            "completion_tokens": 100,
            "cached_tokens": 10,
            "cost_usd": "0.000000001",
        },
        {
            "tenant": "acme",
            "requests": 3,
            "prompt_tokens": 3000,
            "completion_tokens": 300,
            "cached_tokens": 30,
            "cost_usd": "1.000123463",
        },
        {
            "tenant": "beta",
            "requests": 1,
            "prompt_tokens": 1000,
            "completion_tokens": 100,
            "cached_tokens": 10,
            "cost_usd": "2.500000000",
        },
    ]
    assert body["total_cost_usd"] == "3.500123464"


def test_spend_groups_by_several_dimensions_and_filters(served: Served) -> None:
    _, _, body = served.get("/admin/spend?group_by=day,model&tenant=acme")
    assert [(r["day"], r["model"], r["requests"], r["cost_usd"]) for r in rows(body)] == [
        ("2025-12-01", "chat", 1, "0.000123456"),
        ("2025-12-02", "chat", 1, "1.000000000"),
        ("2025-12-02", "embed", 1, "0.000000007"),
    ]
    _, _, body = served.get("/admin/spend?group_by=key&group_by=model&model=chat")
    assert [(r["key"], r["model"], r["requests"]) for r in rows(body)] == [
        (None, "chat", 1),
        ("k1", "chat", 2),
        ("k9", "chat", 1),
    ]
    _, _, body = served.get("/admin/spend?group_by=tenant&since=2025-12-02")
    assert [(r["tenant"], r["requests"]) for r in rows(body)] == [(None, 1), ("acme", 2)]
    _, _, body = served.get("/admin/spend?group_by=tenant&until=2025-12-01")  # that whole day
    assert [(r["tenant"], r["requests"]) for r in rows(body)] == [("acme", 1), ("beta", 1)]
    _, _, body = served.get(f"/admin/spend?group_by=key&since={DAY2 + 100:.0f}&key=k2")
    assert [(r["key"], r["cost_usd"]) for r in rows(body)] == [("k2", "0.000000007")]
    _, _, body = served.get("/admin/spend?tenant=nobody")
    assert body == {
        "object": "list",
        "group_by": ["tenant"],
        "data": [],
        "total_cost_usd": "0.000000000",
    }


def test_spend_as_csv(served: Served) -> None:
    content_type, text = served.raw("/admin/spend?group_by=tenant,day&format=csv")
    assert content_type.startswith("text/csv")
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == [
        "tenant",
        "day",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cost_usd",
    ]
    assert table[1:] == [
        ["", "2025-12-02", "1", "1000", "100", "10", "0.000000001"],
        ["acme", "2025-12-01", "1", "1000", "100", "10", "0.000123456"],
        ["acme", "2025-12-02", "2", "2000", "200", "20", "1.000000007"],
        ["beta", "2025-12-01", "1", "1000", "100", "10", "2.500000000"],
    ]


def test_a_tenant_admin_sees_only_their_tenant(served: Served) -> None:
    status, _, body = served.get("/admin/spend?group_by=tenant,key", token="acme-admin")
    assert status == 200, body
    assert [(r["tenant"], r["key"]) for r in rows(body)] == [("acme", "k1"), ("acme", "k2")]
    status, _, body = served.get("/admin/spend?tenant=acme", token="acme-admin")
    assert status == 200
    status, _, body = served.get("/admin/spend?tenant=beta", token="acme-admin")
    assert status == 403
    assert body["error"]["type"] == "permission_error"
    status, _, body = served.get("/admin/audit", token="acme-admin")
    assert [a["audit_id"] for a in body["data"]] == ["aud-2", "aud-0"]
    assert served.get("/admin/audit?tenant=beta", token="acme-admin")[0] == 403


def test_other_callers_are_refused(served: Served) -> None:
    assert served.get("/admin/spend", token="acme-user")[0] == 403
    assert served.get("/admin/audit", token="acme-user")[0] == 403
    assert served.get("/admin/spend", token=None)[0] == 401


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("group_by=tenant,colour", "group_by"),
        ("group_by=day,day", "group_by"),
        ("since=yesterday", "since"),
        ("until=2025-13-01", "until"),
        ("since=2025-12-02&until=2025-11-01", "until"),
        ("format=xml", "format"),
    ],
)
def test_bad_parameters_are_400s_naming_the_parameter(
    served: Served, query: str, param: str
) -> None:
    status, _, body = served.get(f"/admin/spend?{query}")
    assert status == 400, body
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param


def test_the_audit_log_newest_first(served: Served) -> None:
    status, _, body = served.get("/admin/audit?limit=2")
    assert status == 200
    assert [a["audit_id"] for a in body["data"]] == ["aud-2", "aud-1"]
    assert body["data"][0]["after"] == {"id": "k2"}
    assert served.get("/admin/audit?limit=0")[2]["error"]["param"] == "limit"
    assert served.get("/admin/audit?limit=many")[0] == 400


def test_without_a_queryable_sink_the_api_says_so(served: Served) -> None:
    served.readers.insert(0, None)
    try:
        status, _, body = served.get("/admin/spend")
        assert served.get("/admin/audit")[0] == 400
    finally:
        served.readers.pop(0)
    assert status == 400
    assert "No queryable usage sink" in body["error"]["message"]


def spend(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    SPEND_COMMAND.add_arguments(parser)
    return SPEND_COMMAND.run(parser.parse_args(list(argv)))


def test_the_cli_prints_a_table(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    assert spend("--url", served.url, "--admin-key", "master", "--by", "tenant") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "tenant",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cost_usd",
    ]
    assert lines[2].split() == ["-", "1", "1000", "100", "10", "0.000000001"]
    assert lines[3].split() == ["acme", "3", "3000", "300", "30", "1.000123463"]
    assert lines[-1].split() == ["total", "5", "5000", "500", "50", "3.500123464"]


def test_the_cli_json_and_csv_and_the_environment(
    served: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_URL", served.url)
    monkeypatch.setenv("GATEWAY_MASTER_KEY", "master")
    assert spend("--by", "model", "--tenant", "acme", "--format", "json") == 0
    out = capsys.readouterr().out
    assert '"total_cost_usd": "1.000123463"' in out
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", "acme-admin")  # wins over the master key
    assert spend("--by", "tenant", "--format", "csv", "--since", "2025-12-02") == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["acme,2,2000,200,20,1.000000007"]


def test_the_cli_reports_refusals_and_unreachable_gateways(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert spend("--url", served.url, "--admin-key", "master", "--by", "colour") == 1
    assert "Unknown `group_by` dimension `colour`" in capsys.readouterr().err
    assert spend("--url", served.url, "--admin-key", "acme-user") == 1
    assert "403" in capsys.readouterr().err
    assert spend("--url", nothing_listening(), "--admin-key", "master") == 2
    assert "cannot reach" in capsys.readouterr().err


def nothing_listening() -> str:
    """A loopback URL on which nothing listens (a port just bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_the_cli_is_a_command() -> None:
    assert SPEND_COMMAND.help
    parser = argparse.ArgumentParser()
    SPEND_COMMAND.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.by, args.format) == ("tenant", "table")


def test_records_written_to_a_file_are_read_back_after_a_restart(tmp_path: Path) -> None:
    """The same file through a second ledger: nothing counted twice."""
    path = str(tmp_path / "usage.sqlite3")
    asyncio.run(fill(path))
    asyncio.run(fill(path))  # every batch delivered again

    async def total() -> int:
        sink = SqliteUsageSink(path=path)
        try:
            (row,) = await sink.spend(SpendQuery(group_by=()))
        finally:
            await sink.aclose()
        return row.requests

    assert asyncio.run(total()) == len(RECORDS)
