"""The web console in a real headless browser: Debian's chromium driven by Playwright.

One service (`eobatch serve`, SQLite, local-folder buckets) and one browser session walk through
what a user does: sign in, analyse the demo task and watch its features on the map turn from
pending to done, read a failed feature's error, show a quicklook, stop a task, open the API docs.
Every request that would leave the machine is aborted and recorded (there must be none), and
the browser's console must stay free of errors other than the API refusals the test provokes.
Screenshots go to docs/images/ (shown in the README).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from eobatch.accounts import Credentials, create_account
from eobatch.demo import demo_request
from eobatch.demo_data import DemoScene
from eobatch.store import Database
from tests.e2e.conftest import DATA_BUCKET, http_client, register_demo_collection
from tests.e2e.service import ServiceProcess

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
TIMEOUT_MS = 120_000

# A script slow enough (seconds per feature) that a stop reliably lands while it runs.
SLOW_SCRIPT = """//VERSION=3
function setup() {
  return { input: ["B04", "B08"], output: { bands: 1, sampleType: "FLOAT32" } };
}
function evaluatePixel(s) {
  let x = 0;
  for (let i = 0; i < 3000; i++) x += Math.sin(i + s.B04);
  return [(s.B08 - s.B04) / (s.B08 + s.B04) + 0 * x];
}
"""


@dataclass
class Console:
    service: ServiceProcess
    data_dir: Path
    alice: Credentials
    bob: Credentials
    demo_task: str
    slow_task: str
    bob_task: str
    left_machine: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory, demo_files: tuple[Path, list[DemoScene]]
) -> Iterator[Console]:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    data_dir = tmp_path_factory.mktemp("console") / "data"
    folder, scenes = demo_files
    shutil.copytree(folder, data_dir / "buckets" / DATA_BUCKET)
    (data_dir / "buckets" / "demo-output").mkdir()
    database_url = f"sqlite:///{data_dir / 'store.sqlite'}"
    db = Database(database_url)
    db.migrate()
    alice = create_account(db, "alice", 50_000)
    bob = create_account(db, "bob", 50_000)
    db.dispose()
    service = ServiceProcess(data_dir, database_url).start()
    try:
        with http_client(service.base_url, alice) as http:
            collection = register_demo_collection(http, scenes)
            demo = http.post("/api/v2/batch/process", json=demo_request(collection))
            assert demo.status_code == 201, demo.text
            slow = demo_request(collection)
            slow["processRequest"]["evalscript"] = SLOW_SCRIPT
            slow["description"] = "slow NDVI, to be stopped"
            slow["output"]["delivery"]["s3"]["url"] = "s3://demo-output/slow"
            stopped = http.post("/api/v2/batch/process", json=slow)
            assert stopped.status_code == 201, stopped.text
        with http_client(service.base_url, bob) as http:
            body = demo_request(register_demo_collection(http, scenes))
            body["description"] = "bob's own task"
            mine = http.post("/api/v2/batch/process", json=body)
            assert mine.status_code == 201, mine.text
        yield Console(
            service,
            data_dir,
            alice,
            bob,
            demo.json()["id"],
            stopped.json()["id"],
            mine.json()["id"],
        )
    finally:
        service.stop()


@dataclass
class Browser:
    page: playwright_api.Page
    base_url: str
    console_errors: list[tuple[str, str]]  # (text, url of the resource or script)
    left_machine: list[str]

    def shot(self, name: str) -> None:
        IMAGES.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(IMAGES / name))


@pytest.fixture(scope="module")
def browser(console: Console) -> Iterator[Browser]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = chromium.new_context(viewport={"width": 1400, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        left_machine: list[str] = []

        def offline(route: playwright_api.Route) -> None:
            if urlsplit(route.request.url).hostname in LOOPBACK:
                route.continue_()
            else:
                left_machine.append(route.request.url)
                route.abort("internetdisconnected")

        context.route("**/*", offline)
        page = context.new_page()
        errors: list[tuple[str, str]] = []
        page.on(
            "console",
            lambda m: (
                errors.append((m.text, m.location.get("url", ""))) if m.type == "error" else None
            ),
        )
        page.on("pageerror", lambda exc: errors.append((f"uncaught: {exc}", "")))
        try:
            yield Browser(page, console.service.base_url, errors, left_machine)
        finally:
            context.close()
            chromium.close()


def _api(console: Console) -> httpx.Client:
    return http_client(console.service.base_url, console.alice)


def test_console_walkthrough(console: Console, browser: Browser) -> None:
    page, base = browser.page, browser.base_url
    expected_errors: list[tuple[str, str]] = []

    # -- sign in: a wrong secret is refused with the OAuth error, the right one lands on the list
    page.goto(base + "/")
    page.fill("input[name=clientId]", console.alice.client_id)
    page.fill("input[name=clientSecret]", "not-the-secret")
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#signin .notice.error:has-text('Invalid client')")
    expected_errors.append(("401 (Unauthorized)", base + "/oauth/token"))
    page.fill("input[name=clientSecret]", console.alice.client_secret)
    page.click("#signin button[type=submit]")
    rows = page.locator("#tasks tbody tr[data-task-id]")
    rows.first.wait_for()
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.taskId)")) == sorted(
        [console.demo_task, console.slow_task]
    ), "only the signed-in account's tasks are listed"
    token = page.evaluate("JSON.parse(sessionStorage.getItem('eobatch.session')).token")
    assert token and page.evaluate("localStorage.length") == 0, "the token stays in the tab"
    page.fill("#task-search", "stopped")
    page.wait_for_function("document.querySelectorAll('#tasks tbody tr[data-task-id]').length == 1")
    assert rows.first.get_attribute("data-task-id") == console.slow_task
    page.fill("#task-search", "")
    page.wait_for_function("document.querySelectorAll('#tasks tbody tr[data-task-id]').length == 2")
    browser.shot("console-tasks.png")

    # -- the demo task: analyse it, its features appear on the map as pending
    page.click(f"#tasks tr[data-task-id='{console.demo_task}'] a")
    page.wait_for_selector("#task-status[data-status=CREATED]")
    page.click("button.action-analyse")
    page.wait_for_selector("#task-status[data-status=ANALYSIS_DONE]")
    pending = page.locator("#map path[data-status=PENDING]")
    pending.first.wait_for()
    with _api(console) as http:
        features = http.get(f"/api/v2/batch/process/{console.demo_task}/features/geojson").json()[
            "features"
        ]
        estimate = http.get(f"/api/v2/batch/process/{console.demo_task}").json()["estimate"]
    assert pending.count() == len(features) == estimate["featureCount"] >= 3
    browser.shot("console-task-pending.png")

    # One feature cannot be delivered: a folder stands where its GeoTIFF must go.
    failing = features[0]["properties"]["name"]
    blocked = console.data_dir / "buckets/demo-output/ndvi" / console.demo_task / failing
    (blocked / "default.tiff").mkdir(parents=True)

    # -- start it: the same page (no reload) follows the features from pending to done
    page.evaluate("window.__samePage = true")
    page.click("button.action-start")
    page.wait_for_selector("#task-status[data-status=DONE]", timeout=240_000)
    page.wait_for_function(
        "document.querySelectorAll('#map path[data-status=PENDING]').length == 0"
    )
    assert page.evaluate("window.__samePage") is True, "updated live, without a reload"
    assert page.locator("#map path[data-status=DONE]").count() == len(features) - 1
    assert page.locator(".legend-row[data-status=FATAL] .count").inner_text() == "1"

    # -- the failed feature tells why
    page.click("#map path[data-status=FATAL]")
    error = page.locator("#feature-error")
    error.wait_for()
    assert "default.tiff" in error.inner_text(), error.inner_text()
    assert page.locator("#feature[data-status=FATAL]").count() == 1
    browser.shot("console-failed-feature.png")

    # -- a delivered feature: its quicklook on the map, download link, ledger, request, estimate
    page.locator("#map path[data-status=DONE]").first.click()
    page.wait_for_selector("#feature[data-status=DONE]")
    page.click(".outputs li[data-output=default] .quicklook-button")
    page.wait_for_function(
        "(() => { const i = document.querySelector('img.quicklook');"
        " return i && i.complete && i.naturalWidth > 0; })()"
    )
    assert "Stretched 2–98 %" in page.locator(".quicklook-info").inner_text()
    with page.expect_download() as download:
        page.click(".outputs li[data-output=default] a.download")
    assert download.value.suggested_filename == "default.tiff"
    browser.shot("console-quicklook.png")
    page.click("button.tab[data-tab=ledger]")
    page.wait_for_selector("#ledger tbody tr")
    assert "processing" in page.locator("#ledger").inner_text()
    page.click("button.tab[data-tab=request]")
    assert "evaluatePixel" in page.locator("#request-json").inner_text()
    page.click("button.tab[data-tab=estimate]")
    assert str(estimate["featureCount"]) in page.locator("#estimate").inner_text()

    # -- stop a running task; restarting it at once is refused with the API's reason
    page.click("a:has-text('‹ Tasks')")
    slow = page.locator(f"#tasks tr[data-task-id='{console.slow_task}']")
    slow.locator("button.action-start").click()
    page.wait_for_selector(
        f"#tasks tr[data-task-id='{console.slow_task}'][data-status=PROCESSING]", timeout=240_000
    )
    slow.locator("button.action-stop").click()
    page.wait_for_selector(f"#tasks tr[data-task-id='{console.slow_task}'][data-status=STOPPED]")
    slow.locator("button.action-start").click()
    page.wait_for_selector("section.card .notice.error:has-text('Could not start')")
    restart = f"{base}/api/v2/batch/process/{console.slow_task}/start"
    expected_errors.append(("400 (Bad Request)", restart))
    browser.shot("console-stopped.png")

    # -- another account's task is not there
    page.goto(f"{base}/#/tasks/{console.bob_task}")
    page.wait_for_selector("section.card .notice.error:has-text('not found')")
    expected_errors.append(("404 (Not Found)", f"{base}/api/v2/batch/process/{console.bob_task}"))

    # -- the API docs render from packaged assets; Authorize gets a token, Try it out uses it
    page.goto(base + "/docs")
    page.wait_for_selector(".swagger-ui .info .title:has-text('eobatch')")
    page.click(".swagger-ui .btn.authorize")
    page.fill("#client_id_clientCredentials", console.alice.client_id)
    page.fill("#client_secret_clientCredentials", console.alice.client_secret)
    page.click(".auth-btn-wrapper .btn.authorize")
    page.wait_for_selector(".auth-btn-wrapper button:has-text('Logout')")
    page.click(".auth-btn-wrapper .btn-done")
    operation = page.locator("#operations-batch-list_tasks_api_v2_batch_process_get")
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    operation.locator(".execute").click()
    live = operation.locator(".live-responses-table td.response-col_status:not(.col_header)")
    live.wait_for()
    assert live.inner_text().strip() == "200"
    assert console.demo_task in operation.locator(".live-responses-table").inner_text()
    browser.shot("api-docs.png")
    page.goto(base + "/redoc")
    page.wait_for_selector("redoc h1:has-text('eobatch')")
    page.wait_for_selector("text=processRequest", state="attached")  # the create body

    assert browser.left_machine == [], "requests that would have left the machine"
    unexpected = [
        (text, url)
        for text, url in browser.console_errors
        if not any(status in text and url == where for status, where in expected_errors)
    ]
    assert unexpected == [], unexpected


def test_playground_preview(console: Console, browser: Browser) -> None:
    """An evalscript over an area drawn on the map, rendered by the Process API. Without that
    API the page is checked up to the request it sends, and the test is skipped."""
    paths = httpx.get(f"{console.service.base_url}/openapi.json").json()["paths"]
    page = browser.page
    page.goto(f"{browser.base_url}/#/playground")
    if page.locator("#signin").count():  # run on its own: sign in first
        page.fill("input[name=clientId]", console.alice.client_id)
        page.fill("input[name=clientSecret]", console.alice.client_secret)
        page.click("#signin button[type=submit]")
        page.goto(f"{browser.base_url}/#/playground")
    page.wait_for_selector("#playground-map[data-ready=true]")
    assert page.locator("#collection option").count() == 1  # alice's demo collection
    box = page.locator("#playground-map").bounding_box()
    assert box is not None
    page.click("#draw")
    for fx, fy in ((0.35, 0.35), (0.65, 0.65)):
        page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
    with page.expect_request("**/api/v1/process") as sent:
        page.click("#run")
    body = sent.value.post_data_json
    assert body["input"]["bounds"]["properties"]["crs"].endswith("/3857")
    assert body["input"]["data"][0]["type"].startswith("byoc-")
    assert "evaluatePixel" in body["evalscript"]
    assert sent.value.headers["accept"] == "image/png"
    assert browser.left_machine == []
    if "/api/v1/process" not in paths:
        page.wait_for_selector(".notice.error:has-text('Not Found')")
        pytest.skip("needs the Process API")
    page.wait_for_function(
        "(() => { const i = document.querySelector('#preview');"
        " return i && !i.hidden && i.complete && i.naturalWidth > 0; })()"
    )
    assert page.locator("img.preview").count() == 1
    browser.shot("console-playground.png")
    assert [e for e in browser.console_errors if "/api/v1/process" in e[1]] == []
