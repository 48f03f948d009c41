"""The dashboard in a real browser: Debian's headless Chromium, driven by Selenium through
Debian's chromedriver (never a driver or browser downloaded by selenium-manager).

A gateway is served with two simulator backends, a GPU node agent (fake GPUs) and a tenant
with a budget; the test logs in through the form, sends traffic, watches the numbers change, a
budget alert appear and a killed backend turn ``down``, checks from the browser's own network
log that no request left loopback, and saves a screenshot: ``tests/artifacts/dashboard.png``
(git-ignored), also copied to ``docs/images/dashboard.png`` when
``GATEWAY_UPDATE_SCREENSHOT=1``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.support.dashboard import MASTER, NodeAgentThread, dashboard_config
from tests.support.node_agent import fake_gpus
from tests.support.servers import GatewayServer, http_json, running_gateway, running_sim

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard.png"
T = TypeVar("T")


@pytest.fixture(autouse=True)
def _pepper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_KEY_PEPPER", "pepper-for-the-dashboard-tests")


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile and the DevTools network log on."""
    # Both binaries are given, so selenium-manager has nothing to find; offline all the same.
    monkeypatch.setenv("SE_OFFLINE", "true")
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing: scripts/test.sh installs chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1440,1120",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def until(probe: Callable[[], T | None], timeout_s: float = 15.0) -> T:
    """Poll ``probe`` (bounded) until it returns something truthy; fail the test otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found = probe()
        except WebDriverException:
            found = None  # the element is being redrawn
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout_s} s")
        time.sleep(0.1)


def text(driver: webdriver.Chrome, css: str) -> str:
    elements = driver.find_elements(By.CSS_SELECTOR, css)
    return str(elements[0].text) if elements else ""


def admin(gw: GatewayServer, path: str, body: Any) -> Any:
    status, _, data = http_json(
        "POST", f"{gw.url}{path}", body, {"authorization": f"Bearer {MASTER}"}
    )
    assert status == 201, data
    return data


def chat(gw: GatewayServer, key: str, count: int) -> None:
    body = {
        "model": "chat",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 10,
        "stream": False,
        "ignore_eos": True,
    }
    for _ in range(count):
        status, _, answer = http_json(
            "POST", f"{gw.url}/v1/chat/completions", body, {"authorization": f"Bearer {key}"}
        )
        assert status in (200, 429), answer  # 429: the budget is spent


NONE = "\u2013"  # what the page shows for no value
SYSTEM = "You are a helpful assistant for the dashboard's screenshot. " * 30


@contextmanager
def showcase(gw: GatewayServer, seconds: float, tenant_key: str) -> Iterator[float]:
    """Traffic that gives the sparklines a shape, for the block (yields when it ends, as a
    ``time.monotonic()``): a rising then falling number of clients, streamed and cached
    requests sharing a long system prompt (prefix-cache hits); odd clients use
    ``tenant_key``, the others the master key."""
    started = time.monotonic()
    deadline = started + seconds

    def client(n: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            elapsed = (time.monotonic() - started) / seconds
            if n > 1 + 6 * math.sin(math.pi * min(elapsed * 1.4, 1.0)):  # join, then leave
                time.sleep(0.05)
                continue
            i += 1
            body = {
                "model": "chat",
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": "same question" if i % 3 == 0 else f"q {n} {i}"},
                ],
                "max_tokens": 24,
                "temperature": 0,
                "stream": i % 2 == 1,
            }
            request = urllib.request.Request(
                f"{gw.url}/v1/chat/completions",
                data=json.dumps(body).encode(),
                headers={
                    "authorization": f"Bearer {tenant_key if n % 2 else MASTER}",
                    "content-type": "application/json",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()  # a body or a whole stream
            except urllib.error.HTTPError as err:  # 429 while the queue is full
                err.read()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(1, 8)]
    for t in threads:
        t.start()
    try:
        yield deadline
    finally:
        for t in threads:
            t.join(seconds + 30)


def requested_urls(driver: webdriver.Chrome) -> list[str]:
    """Every URL the browser asked for, from the DevTools network log and the page's own
    resource timing entries."""
    urls = []
    log: list[dict[str, Any]] = driver.get_log("performance")  # type: ignore[no-untyped-call]
    for entry in log:
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    urls += driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    return urls


def test_the_dashboard_in_a_browser(browser: webdriver.Chrome, tmp_path: Path) -> None:
    node_config = {
        "node": {
            "name": "gpu-node-1",
            "gpus": fake_gpus(81559, 81559),
            "gpu_hour_usd": {"NVIDIA H100 80GB HBM3": 2.5},
            "read_interval_s": 0.5,
        }
    }
    engine: dict[str, Any] = {"step_base_ms": 5, "num_gpu_blocks": 600, "decode_ms_per_seq": 2}
    with (
        running_sim(**engine) as one,
        running_sim(**engine) as two,
        NodeAgentThread(node_config) as node,
    ):
        config = dashboard_config(tmp_path, one.url, two.url)
        config["dashboard"]["node_agents"] = [node.url]
        (group,) = config["models"]
        group["cache"] = {"enabled": True}
        group["scheduling"] = {"scheduler": {"backend": "priority"}, "max_in_flight": 3}
        with running_gateway(config) as gw:
            budget = {"usd": 0.05, "window": "day", "alert_thresholds": [0.5, 0.8, 1.0]}
            admin(gw, "/admin/tenants", {"name": "acme", "budgets": [budget]})
            key = admin(gw, "/admin/keys", {"tenant": "acme", "name": "acme-app"})["key"]

            browser.get(f"{gw.url}/dashboard")
            browser.find_element(By.ID, "key").send_keys(MASTER)
            browser.find_element(By.ID, "login-submit").click()
            until(lambda: text(browser, "#fleet") == "this replica only")
            cookie = browser.get_cookie("gateway_dashboard")
            assert cookie is not None
            assert cookie["httpOnly"] is True
            assert cookie["sameSite"] == "Strict"
            until(lambda: text(browser, "[data-backend='chat-1'] .state") == "up")
            until(lambda: text(browser, "[data-node='gpu-node-1'] .head"))
            assert text(browser, "[data-group='chat'] .rps") == "0.0"

            # numbers change as traffic arrives; ~$0.0038 a request: 50 % and 80 % alerts
            chat(gw, key, 12)
            until(lambda: text(browser, "[data-group='chat'] .rps") not in ("", "0.0"))
            alert = until(lambda: text(browser, "#alerts li.alert"))
            assert "tenant acme" in alert
            until(lambda: "of $0.0500" in text(browser, "[data-tenant='acme'] .budgets"))
            assert "$5.00/h" in text(browser, "[data-node='gpu-node-1'] .head")

            two.server.stop()  # a backend dies
            until(lambda: text(browser, "[data-backend='chat-1'] .state") == "down", 10)
            assert text(browser, "[data-backend='chat-0'] .state") == "up"

            urls = requested_urls(browser)
            assert f"{gw.url}/dashboard/events" in urls
            assert f"{gw.url}/dashboard/static/dashboard.js" in urls
            # the browser's own pages (chrome://...) are not the network
            network = [u for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss")]
            assert [u for u in network if not u.startswith(f"{gw.url}/")] == []

            update_docs = os.environ.get("GATEWAY_UPDATE_SCREENSHOT") == "1"
            search = {"usd": 40.0, "window": "day"}
            admin(gw, "/admin/tenants", {"name": "search", "budgets": [search]})
            search_key = admin(gw, "/admin/keys", {"tenant": "search"})["key"]
            seconds = 45.0 if update_docs else 3.0
            with showcase(gw, seconds, search_key) as ends:
                until(lambda: text(browser, "[data-group='chat'] .cache") not in ("", NONE))
                # the picture while the traffic still flows
                until(lambda: time.monotonic() > ends - 2, seconds + 15)
                ARTIFACTS.mkdir(exist_ok=True)
                shot = ARTIFACTS / "dashboard.png"
                assert browser.save_screenshot(str(shot))
                print(f"dashboard screenshot: {shot}")
                if update_docs:
                    shutil.copyfile(shot, DOCS_IMAGE)
            browser.get("about:blank")  # the page's event stream ends before the gateway stops
