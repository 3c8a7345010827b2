"""The web UI in a real browser: Debian's headless Chromium driven by Playwright against a
real daemon. Every page loads without console errors; the lineage graph shows the expected
nodes across branches and clicks through; a registration appears without a reload; the
instance filters and compare work; the branch picker shows exact names; the token prompt.

``ASSETD_SCREENSHOTS=<dir>`` (``scripts/screenshots``) also saves the main pages there.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from assetd.client import AssetClient
from assetd.config import Settings
from assetd.daemon.app import Daemon
from assetd.daemon.embedded import EmbeddedNats
from tests.conftest import http_daemon_settings, running_daemon

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SHOTS = os.environ.get("ASSETD_SCREENSHOTS")
TOKEN = "ui-secret"
XSS = '<img src=x onerror="window.__xss=1">'  # shown as text, never parsed as markup
RULES = """version: 1
rules:
  - asset: fraud_model
    gates:
      - {metric: f1_score, min: 0.5}
    promote: {alias: champion, metric: f1_score, direction: maximize, min_improvement: 0.01}
"""

if not CHROMIUM.exists():
    if os.environ.get("ASSETD_CI") or os.environ.get("CI"):  # .ci/run sets ASSETD_CI
        raise RuntimeError(f"{CHROMIUM} is missing under CI: scripts/test installs Debian's "
                           "chromium (apt-get install -y chromium)")
    pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test does, as "
                "root)", allow_module_level=True)

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402

expect.set_options(timeout=15_000)  # a loaded CI machine: the relay, the stream, the render


def _settings(nats_server: EmbeddedNats, tmp_path: Path, **kw: Any) -> Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return http_daemon_settings(nats_server, tmp_path, rules=rules, **kw)


async def _fill(daemon: Daemon) -> None:
    """transactions v1 (data) → fraud_model v1..v3 on main (v2 champion) and v1 on
    user.alice; a consumer of fraud_model; one dead letter."""
    async with AssetClient("fraud", settings=daemon.settings, source="tests/ui",
                           timeout=15) as client:
        await client.register_data("transactions", annotations={"rows": 1204332},
                                   tags={"source": "warehouse"})
        for f1, seed in ((0.80, "0"), (0.90, "0"), (0.85, "1")):
            await client.register_model("fraud_model", annotations={"f1_score": f1},
                                        tags={"seed": seed}, inputs=["transactions@v1"])
        await client.consume("fraud_model", "@champion", consumer={"name": "scorer"})
        await client.register_model("fraud_model", branch="user.alice",
                                    annotations={"f1_score": 0.7, "note": XSS}, inputs=[
                                        {"asset": "transactions", "instance": "v1",
                                         "branch": "main"}])
        await client.nc.jetstream().publish("assetd.in.fraud.main.junk.asset_registered",
                                            b"not json at all")


@pytest.fixture
async def ui(nc: Any, nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[Daemon]:
    """A daemon with the UI on a free port, filled by :func:`_fill`."""
    async with running_daemon(_settings(nats_server, tmp_path)) as d:
        await _fill(d)
        yield d


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless; Playwright never downloads a browser of its own."""
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
def console_errors() -> list[str]:
    """What the page logged as errors (a test may take out one it expects)."""
    return []


@pytest.fixture
async def page(browser: Browser, console_errors: list[str]) -> AsyncIterator[Page]:
    """A fresh page; at the end, no console error, no uncaught exception and no request
    anywhere but the daemon happened."""
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    p = await context.new_page()
    errors = console_errors
    p.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error"
         else None)
    p.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    p.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1:", "data:"))
         else errors.append(f"request beyond the daemon: {r.url}"))
    yield p
    await context.close()
    assert errors == []


def _url(daemon: Daemon, route: str = "") -> str:
    return f"http://127.0.0.1:{daemon.settings.http_port}/{route}"


async def _open(page: Page, url: str, ready: str) -> None:
    await page.goto(url)
    await expect(page.locator(ready)).to_be_visible(timeout=15_000)


async def _shot(page: Page, name: str) -> None:
    """Save the page as ``$ASSETD_SCREENSHOTS/<name>.png`` (Playwright makes the folder)."""
    if SHOTS:
        await page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


async def test_every_page_loads_without_console_errors(ui: Daemon, page: Page) -> None:
    """Assets, an asset's page (instances, chart with the champion and its predecessor,
    alias timeline, decisions) and dead letters render their content, and the browser logs
    no error."""
    await _open(page, _url(ui), "#assets")
    rows = page.locator("#assets tbody tr")
    await expect(rows).to_have_count(2)
    model = page.locator('#assets tr[data-asset="fraud_model"]')
    await expect(model).to_contain_text("v3")
    await expect(model).to_contain_text("@champion v2")
    await expect(page.locator("#live")).to_have_text("live")
    await _shot(page, "assets")
    await model.locator("a").click()
    await expect(page.locator("#instances tbody tr")).to_have_count(3)
    await expect(page.locator("#metric-chart .point")).to_have_count(3)
    await expect(page.locator("#metric-chart .point.champion")).to_have_attribute(
        "data-version", "2")
    await expect(page.locator("#metric-chart .point.former")).to_have_attribute(
        "data-version", "1")
    await expect(page.locator("#alias-timeline")).to_contain_text("@champion")
    await expect(page.locator("#decisions")).to_contain_text("promoted")
    await expect(page.locator("#decisions")).to_contain_text("champion_value=0.8")
    await expect(page.locator("#decisions .gate.passed").first).to_contain_text(
        "f1_score ≥ 0.5: 0.85 passed")
    await _shot(page, "asset")
    await page.click("#nav-dlq")
    await expect(page.locator("#dlq tbody tr")).to_have_count(1)
    await expect(page.locator("#dlq")).to_contain_text("assetd.in.fraud.main.junk")
    await expect(page.locator("#dlq .reason")).not_to_be_empty()
    await _shot(page, "dead-letters")


async def test_lineage_graph_shows_the_nodes_and_clicks_through(ui: Daemon, page: Page) -> None:
    """Downstream of transactions v1: the three fraud_model versions on main, the one on
    user.alice (across branches) and the champion's consumer; upstream of fraud_model v2:
    transactions, and its consumer downstream; clicking a node opens that asset on that
    node's branch."""
    await _open(page, _url(ui, "#/lineage?project=fraud&branch=main&asset=transactions"
                               "&instance=v1&depth=3"), "#lineage-graph")
    ids = await page.locator("#lineage-graph .node").evaluate_all(
        "nodes => nodes.map(n => n.dataset.id).sort()")
    assert ids == ["consumer:scorer", "fraud_model@main:v1", "fraud_model@main:v2",
                   "fraud_model@main:v3", "fraud_model@user.alice:v1", "transactions@main:v1"]
    await _shot(page, "lineage")
    await page.goto(_url(ui, "#/lineage?project=fraud&branch=main&asset=fraud_model"
                             "&instance=v2"))
    graph = page.locator("#lineage-graph")
    await expect(graph.locator('.node[data-id="consumer:scorer"]')).to_be_visible()
    await expect(graph.locator('.node[data-id="transactions@main:v1"]')).to_be_visible()
    await expect(graph.locator(".node.root")).to_have_attribute("data-id", "fraud_model@main:v2")
    await page.goto(_url(ui, "#/lineage?project=fraud&branch=main&asset=transactions"
                             "&instance=v1"))
    await page.locator('#lineage-graph .node[data-id="fraud_model@user.alice:v1"]').click()
    await expect(page.locator("#instances tbody tr")).to_have_count(1)
    await expect(page.locator("#branch")).to_have_value("user.alice")
    assert "branch=user.alice" in page.url and "asset=fraud_model" in page.url


async def test_a_registration_appears_without_a_reload(ui: Daemon, page: Page) -> None:
    """With an asset's page and then the overview open, a registration published meanwhile
    shows up through the event stream, and an ``asset_stale`` marks the asset stale; the
    page is never reloaded."""
    await _open(page, _url(ui, "#/asset?project=fraud&branch=main&asset=fraud_model"),
                "#instances")
    await expect(page.locator("#live")).to_have_text("live")
    await page.evaluate("window.__same_page = true")
    async with AssetClient("fraud", settings=ui.settings, timeout=15) as client:
        await client.register_model("fraud_model", annotations={"f1_score": 0.95})
        await expect(page.locator('#instances tr[data-version="v4"]')).to_be_visible()
        await expect(page.locator("#events")).to_contain_text("asset_promoted")
        await page.click("#nav-assets")
        await expect(page.locator("#assets")).to_be_visible()
        await client.register_data("labels")
        await expect(page.locator('#assets tr[data-asset="labels"]')).to_be_visible()
        stale = {"specversion": "1.0", "id": "stale-1", "source": "assetd",
                 "type": "asset_stale", "time": "2026-12-01T10:00:00Z",
                 "subject": "transactions", "project": "fraud", "branch": "main",
                 "data": {"last_instance": "v1", "max_age_seconds": 60}}
        await client.nc.publish("assetd.out.fraud.main.transactions.asset_stale",
                                orjson.dumps(stale))
        await expect(page.locator('#assets tr[data-asset="transactions"] .stale')).to_have_text(
            "stale since 2026-12-01 10:00:00.000Z")
    assert await page.evaluate("window.__same_page") is True


async def test_instance_filters_and_compare(ui: Daemon, page: Page) -> None:
    """``where`` and tag filters narrow the instances server-side; compare (the ``compare``
    query) shows v1 and v2 side by side with the differing annotation marked and its delta,
    and their common input."""
    await _open(page, _url(ui, "#/asset?project=fraud&branch=main&asset=fraud_model"),
                "#instances")
    await page.fill("#f-where", "f1_score>=0.85")
    await page.click("#f-apply")
    versions = page.locator("#instances tbody tr td:first-child")
    await expect(versions).to_have_text(["v3", "v2"])
    await page.fill("#f-where", "")
    await page.fill("#f-tags", "seed=1")
    await page.click("#f-apply")
    await expect(versions).to_have_text(["v3"])
    await page.select_option("#f-state", "pending")
    await page.click("#f-apply")
    await expect(page.locator("#no-instances")).to_be_visible()
    await page.fill("#compare-a", "v1")
    await page.fill("#compare-b", "v2")
    await page.click("#compare-go")
    f1 = page.locator('#compare-table tr[data-field="annotations.f1_score"]')
    await expect(f1).to_have_class(re.compile(r"\bdiffers\b"))
    await expect(f1).to_contain_text("+0.1")
    await expect(page.locator('#compare-table tr[data-field="tags.seed"]')).to_have_class(
        re.compile(r"\bsame\b"))
    await expect(page.locator('#compare-table tr[data-field="inputs (common)"]')).to_contain_text(
        "transactions@main:v1")
    await _shot(page, "compare")


async def test_the_branch_picker_shows_exact_names(ui: Daemon, page: Page) -> None:
    """The branch picker lists main and user.alice (never the token user~alice); picking
    user.alice shows that branch's assets, and its instance's markup-laden annotation as
    text."""
    await _open(page, _url(ui), "#assets")
    options = await page.locator("#branch option").evaluate_all(
        "os => os.map(o => o.value)")
    assert options == ["main", "user.alice"]
    await page.select_option("#branch", "user.alice")
    await expect(page.locator("h1")).to_have_text("Assets of fraud on user.alice")
    await expect(page.locator('#assets tr[data-asset="fraud_model"]')).to_contain_text("v1")
    assert "branch=user.alice" in page.url
    await page.locator('#assets tr[data-asset="fraud_model"] a').click()
    await expect(page.locator('#instances tr[data-version="v1"]')).to_contain_text(XSS)
    assert await page.locator("#instances img").count() == 0
    assert await page.evaluate("window.__xss") is None


async def test_the_ui_asks_for_the_token_when_one_is_set(
        nc: Any, nats_server: EmbeddedNats, tmp_path: Path, page: Page,
        console_errors: list[str]) -> None:
    """With ASSETD_HTTP_TOKEN set the page asks for the token once (after the one 401 that
    says it is needed, which the browser logs), keeps it in the tab and then reads and
    streams with it."""
    async with running_daemon(_settings(nats_server, tmp_path, http_token=TOKEN)) as daemon:
        await _fill(daemon)
        await page.goto(_url(daemon))
        await expect(page.locator("#token-dialog")).to_be_visible()
        await page.fill("#token", TOKEN)
        await page.click("#token-dialog button")
        await expect(page.locator("#assets tbody tr")).to_have_count(2)
        await expect(page.locator("#live")).to_have_text("live")
        await page.reload()
        await expect(page.locator("#assets tbody tr")).to_have_count(2)
        await expect(page.locator("#token-dialog")).to_be_hidden()
    challenge = "console: Failed to load resource: the server responded with a status of " \
        "401 (Unauthorized)"
    assert console_errors == [challenge]
    console_errors.clear()
