"""The dashboard in a real browser, over a simulated quarter run through the APIs.

Lead, deal, consent, attribution, the projector, the insights service and the
dashboard run as real processes over a real nats-server. A small quarter
(plan_quarter(seed=3, visitors=400)) goes through the public gRPC APIs; once the
read side has caught up, headless Chromium (driven by Selenium) opens the page and
every figure it shows is compared with what the insights API answers. A screenshot
goes to the test's folder, and with CLOSEDLOOP_UPDATE_SCREENSHOTS=1 to
docs/images/dashboard.png for the README.

Skipped, saying why, where /usr/bin/chromium or /usr/bin/chromedriver is missing or
Chromium does not start (`make chromium` installs Debian's packages when it can).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import nats
import pytest

from apps.demo.driver import Addresses, QuarterDriver
from apps.demo.report import wait_for_read_side
from apps.demo.scenario import plan_quarter
from closedloop.bus.streams import StreamSettings, provision_streams
from closedloop.insights.v1 import insights_service_pb2 as pb
from closedloop.insights.v1 import insights_service_pb2_grpc
from closedloop.lead.v1 import lead_service_pb2 as lead_pb
from closedloop.lead.v1 import lead_service_pb2_grpc
from closedloop.natsserver import free_port
from closedloop.testing.processes import ServiceProcess
from services.insights.web_json import money_text

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from selenium.webdriver.remote.webdriver import WebDriver

    from apps.demo.scenario import PersonPlan
    from closedloop.natsserver import NatsServer

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
SEED, VISITORS = 3, 400
COMMON = {"CLOSEDLOOP_SECRET_KEY": "test-secret-shared-by-all-services"}
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard.png"
WAIT = 20.0


# -- the browser ---------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile; skips where there is none."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not installed: the dashboard's browser test "
            "needs Debian's chromium and chromium-driver (`make chromium` as root)"
        )
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed in .venv"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument("--window-size=1440,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(
        executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "driver.log")
    )
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except Exception as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        pytest.skip(
            f"Chromium did not start, so the browser test cannot run: {first_line}"
        )
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def until(driver: WebDriver, script: str, *args: Any, timeout: float = WAIT) -> Any:
    """Runs `script` in the page until it returns something truthy."""
    deadline = time.monotonic() + timeout
    value: Any = None
    while time.monotonic() < deadline:
        value = driver.execute_script(script, *args)
        if value:
            return value
        time.sleep(0.1)
    msg = f"the page did not get there within {timeout}s (last: {value!r}): {script}"
    raise AssertionError(msg)


def ready(driver: WebDriver, testid: str, **attributes: str) -> None:
    until(
        driver,
        """
        const [testid, wanted] = arguments;
        const node = document.querySelector(`[data-testid="${testid}"]`);
        if (!node || node.getAttribute("data-state") !== "ready") return false;
        return Object.entries(wanted).every(([k, v]) => node.getAttribute(k) === v);
        """,
        testid,
        {f"data-{k.replace('_', '-')}": v for k, v in attributes.items()},
    )


REVENUE_SHOWN = """
return Array.from(document.querySelectorAll('[data-testid="revenue-row"]')).map(
  (row) => {
    const cell = (id) => row.querySelector(`[data-testid="${id}"]`);
    return [row.dataset.channel, row.dataset.currency,
            Number(cell("revenue-amount").dataset.minorUnits),
            cell("revenue-amount").textContent,
            cell("spend-amount").dataset.minorUnits === undefined
              ? 0 : Number(cell("spend-amount").dataset.minorUnits)];
  });
"""

#: The named data- attributes of every element with a test id, read in one go (the
#: page may redraw between two WebDriver calls).
ALL_OF = """
const [testid, names] = arguments;
return Array.from(document.querySelectorAll(`[data-testid="${testid}"]`)).map(
  (node) => names.map((name) => node.dataset[name]));
"""

FUNNEL_SHOWN = """
const names = ["visitors", "leads", "mqls", "sals", "opportunities", "won"];
const found = {};
for (const row of document.querySelectorAll('[data-testid="funnel-row"]')) {
  found[row.dataset.channel] = {
    counts: names.map((n) => row.querySelector(`[data-field="${n}"]`).textContent),
    close: row.querySelector('[data-field="close_rate"]').textContent,
  };
}
return found;
"""


# -- the running system ----------------------------------------------------------------


def _env(data: Path, nats_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSEDLOOP_")}
    env.update(
        {
            "CLOSEDLOOP_DATA_DIR": str(data),
            "CLOSEDLOOP_NATS_URL": nats_url,
            **COMMON,
        }
    )
    env.update(extra)
    return env


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"the dashboard exited with {process.returncode}"
            raise AssertionError(msg)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our loopback URL
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    msg = f"{url} did not answer within {timeout}s"
    raise AssertionError(msg)


class System:
    def __init__(self, services: dict[str, ServiceProcess], dashboard: str) -> None:
        self.services = services
        self.dashboard = dashboard

    def address(self, name: str) -> str:
        return self.services[name].address


@pytest.fixture
async def system(
    browser: WebDriver, own_nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[System]:
    nc = await nats.connect(own_nats_server.url)
    await provision_streams(nc.jetstream(), StreamSettings())
    await nc.close()
    data = tmp_path / "data"
    services: dict[str, ServiceProcess] = {}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        services["lead"] = await ServiceProcess(
            "lead", data, own_nats_server.url, extra_env=COMMON
        ).start()
        peers = {**COMMON, "CLOSEDLOOP_LEAD_ADDRESS": services["lead"].address}
        started = await asyncio.gather(
            ServiceProcess("deal", data, own_nats_server.url, extra_env=peers).start(),
            ServiceProcess(
                "consent", data, own_nats_server.url, extra_env=COMMON
            ).start(),
            ServiceProcess(
                "attribution",
                data,
                own_nats_server.url,
                extra_env={
                    **peers,
                    "CLOSEDLOOP_ATTRIBUTION_TRAIN_INTERVAL_SECONDS": "0",
                },
            ).start(),
        )
        services.update({s.name: s for s in started})
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "services.projector"],
                env=_env(data, own_nats_server.url),
                stdin=subprocess.DEVNULL,
                stdout=(tmp_path / "projector.log").open("ab"),
                stderr=subprocess.STDOUT,
            )
        )
        services["insights"] = await ServiceProcess(
            "insights",
            data,
            own_nats_server.url,
            # Where the insights process serves the dashboard too: on a free port,
            # never on one that another run may hold.
            extra_env={**COMMON, "CLOSEDLOOP_INSIGHTS_HTTP_PORT": "0"},
        ).start()
        port = free_port()
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "services.insights.web"],
                env=_env(
                    data,
                    own_nats_server.url,
                    CLOSEDLOOP_INSIGHTS_ADDRESS=services["insights"].address,
                    CLOSEDLOOP_INSIGHTS_HTTP_PORT=str(port),
                ),
                stdin=subprocess.DEVNULL,
                stdout=(tmp_path / "dashboard.log").open("ab"),
                stderr=subprocess.STDOUT,
            )
        )
        url = f"http://127.0.0.1:{port}/"
        await asyncio.to_thread(_wait_http, url, processes[-1], 30.0)
        yield System(services, url)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                await asyncio.to_thread(process.wait, 15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for service in reversed(list(services.values())):
            await service.stop()


async def run_quarter(system: System) -> list[PersonPlan]:
    plan = plan_quarter(SEED, VISITORS)
    driver = QuarterDriver(
        Addresses(
            lead=system.address("lead"),
            deal=system.address("deal"),
            consent=system.address("consent"),
            attribution=system.address("attribution"),
        )
    )
    try:
        await driver.run(plan, progress=False)
    finally:
        await driver.close()
    await wait_for_read_side(system.address("insights"), timeout=120)
    return plan.people


def richest_customer(people: list[PersonPlan]) -> str:
    """The email of the won customer with the most steps (and no erasure)."""
    won = [
        p
        for p in people
        if {"win", "capture"} <= {s.kind for s in p.steps}
        and not any(s.kind == "erase" for s in p.steps)
    ]
    person = max(won, key=lambda p: (len(p.steps), p.key))
    capture = next(s for s in person.steps if s.kind == "capture")
    return str(capture.args["email"])


# -- the test --------------------------------------------------------------------------


async def test_dashboard_shows_the_insights_apis_figures(
    system: System, browser: WebDriver, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415 - optional dependency
    from selenium.webdriver.support.ui import Select  # noqa: PLC0415

    people = await run_quarter(system)
    email = richest_customer(people)
    async with grpc.aio.insecure_channel(system.address("lead")) as channel:
        found = await lead_service_pb2_grpc.LeadServiceStub(channel).FindLeadByEmail(
            lead_pb.FindLeadByEmailRequest(email=email), timeout=10
        )
    lead_id = found.lead.lead_id
    async with grpc.aio.insecure_channel(system.address("insights")) as channel:
        insights = insights_service_pb2_grpc.InsightsServiceStub(channel)
        revenue = {
            model: await insights.GetRevenueByChannel(
                pb.GetRevenueByChannelRequest(model=model), timeout=30
            )
            for model in ("linear", "first_touch")
        }
        funnel = await insights.GetFunnel(pb.GetFunnelRequest(), timeout=30)
        journey = await insights.GetCustomerJourney(
            pb.GetCustomerJourneyRequest(lead_id=lead_id), timeout=30
        )
        consent = await insights.GetConsentStatus(
            pb.GetConsentStatusRequest(email=email, include_history=True), timeout=30
        )
        listed = await insights.ListProjections(pb.ListProjectionsRequest())
    assert all(p.lag == 0 for p in listed.projections)

    # From here on the browser drives; the dashboard is its own process.
    driver = browser
    driver.get(system.dashboard)
    until(
        driver,
        "return document.querySelector('[data-testid=\"live-indicator\"]')"
        ".dataset.mode === 'live'",
    )
    ready(driver, "projections-table")
    status = driver.find_element(By.CSS_SELECTOR, '[data-testid="projection-status"]')
    until(
        driver,
        "return arguments[0].getAttribute('data-lag') === '0'",
        status,
    )
    assert "Up to date" in status.text

    # Revenue by channel under two models: the page shows the API's figures.
    for model in ("linear", "first_touch"):
        Select(
            driver.find_element(By.CSS_SELECTOR, '[data-testid="model-select"]')
        ).select_by_value(model)
        ready(driver, "revenue-table", model=model)
        shown = driver.execute_script(REVENUE_SHOWN)
        expected = [
            [
                r.channel,
                r.currency,
                r.revenue.minor_units,
                money_text(r.revenue.minor_units, r.currency),
                r.spend.minor_units,
            ]
            for r in revenue[model].rows
        ]
        assert shown == expected, model
        assert len(expected) >= 3
    bars = driver.execute_script(
        "return document.querySelectorAll("
        "'[data-testid=\"revenue-chart\"] rect.series-revenue[data-value]').length"
    )
    assert bars == len(revenue["first_touch"].rows)
    assert revenue["linear"].rows != revenue["first_touch"].rows

    # The funnel: counts and close rates of the two channels with the most leads.
    ready(driver, "funnel-table", touch="first")
    shown_funnel = driver.execute_script(FUNNEL_SHOWN)
    biggest = sorted(funnel.rows, key=lambda r: (-r.leads, r.channel))[:2]
    for row in biggest:
        counts = [
            f"{getattr(row, n):,}"
            for n in ("visitors", "leads", "mqls", "sals", "opportunities", "won")
        ]
        close = (
            f"{row.close_rate * 100:.1f}%" if row.HasField("close_rate") else "\u2013"
        )  # an en dash
        assert shown_funnel[row.channel] == {"counts": counts, "close": close}
    assert set(shown_funnel) == {r.channel for r in funnel.rows}

    # One person's journey, searched by lead id.
    box = driver.find_element(By.CSS_SELECTOR, '[data-testid="journey-input"]')
    box.send_keys(lead_id)
    driver.find_element(By.CSS_SELECTOR, '[data-testid="journey-search"]').click()
    ready(driver, "journey-result", lead_id=journey.lead_id)
    entries = driver.execute_script(ALL_OF, "journey-entry", ["eventId", "kind"])
    assert len(entries) == len(journey.entries) > 5
    assert [event_id for event_id, _ in entries] == [
        e.event_id for e in journey.entries
    ]
    assert driver.execute_script(ALL_OF, "journey-count", ["count"]) == [
        [str(len(journey.entries))]
    ]
    assert {"touchpoint", "lead_captured", "deal_won"} <= {k for _, k in entries}

    # Their consent, searched by email: the effective states and the audit trail.
    box = driver.find_element(By.CSS_SELECTOR, '[data-testid="consent-input"]')
    box.send_keys(email)
    driver.find_element(By.CSS_SELECTOR, '[data-testid="consent-search"]').click()
    ready(driver, "consent-result")
    states = driver.execute_script(ALL_OF, "consent-state-row", ["purpose", "state"])
    assert len(states) == len(consent.effective) > 0
    audit = driver.execute_script(ALL_OF, "consent-audit-row", ["kind"])
    assert len(audit) == sum(len(s.history) for s in consent.subjects) > 0
    ready(driver, "consent-counts-table")

    # Nothing but the dashboard's own origin was asked, and nothing was refused.
    origins = driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
    )
    assert all(url.startswith(system.dashboard) for url in origins), origins
    problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not problems, problems

    # The whole page, for the test's record and for the README, under linear.
    Select(
        driver.find_element(By.CSS_SELECTOR, '[data-testid="model-select"]')
    ).select_by_value("linear")
    ready(driver, "revenue-table", model="linear")
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1440, "height": int(height), "deviceScaleFactor": 1, "mobile": False},
    )
    shot = tmp_path / "dashboard.png"
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("CLOSEDLOOP_UPDATE_SCREENSHOTS") == "1":
        # The README's picture is refreshed on request, not by every test run.
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
