"""The dashboard in headless Chromium (Debian's package), driven by Playwright.

The browser is /usr/bin/chromium, not one downloaded by ``playwright install``.
Without it (or without the playwright package) these tests are skipped,
unless BACKBURNER_REQUIRE_SERVICES is set, as the CI script does: then they fail.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import (
    XSS_CORPUS,
    Seeded,
    add_raw_job,
    add_raw_recurring,
    details_path,
    fail,
    make_app,
    seed,
)

from backburner import Backburner

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 15_000
#: The recurring job every served dashboard starts with; no server fires it.
RECURRING_ID = "nightly/report"


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing; install it with apt-get install chromium"
    return None


_missing = _browser_missing()
if _missing and os.environ.get("BACKBURNER_REQUIRE_SERVICES"):
    pytest.fail(f"browser tests cannot run: {_missing}", pytrace=False)
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@dataclass
class Served:
    """A dashboard served by uvicorn on a free loopback port."""

    app: Backburner
    url: str
    ids: Seeded
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    import uvicorn

    app = make_app(tmp_path)
    ids = seed(app)
    app.recurring.add_or_update(RECURRING_ID, "tests.add", "0 9 * * MON-FRI", args=[1, 2],
                                tz="Europe/Berlin")
    port = _free_port()
    config = uvicorn.Config(app.dashboard(poll_interval=0.3), host="127.0.0.1", port=port,
                            log_level="warning", proxy_headers=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "uvicorn to start")
    yield Served(app=app, url=f"http://127.0.0.1:{port}", ids=ids)
    server.should_exit = True
    thread.join(timeout=30)
    app.close()


@pytest.fixture
def page(browser: Any, served: Served) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    tab.on("console", lambda message: served.errors.append(f"console: {message.text}")
           if message.type == "error" else None)
    tab.on("pageerror", lambda error: served.errors.append(f"page error: {error}"))
    yield tab
    context.close()


def wait_for(condition: Callable[[], bool], description: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {description}")
        time.sleep(0.05)


def state_of(app: Backburner, job_id: str) -> str | None:
    job = app.get_job(job_id)
    return None if job is None else job.state


PAGES = ["/", "/jobs/enqueued", "/jobs/enqueued/default", "/jobs/scheduled", "/jobs/processing",
         "/jobs/succeeded", "/jobs/failed", "/jobs/deleted", "/jobs/awaiting", "/retries",
         "/servers", "/recurring", details_path(RECURRING_ID)]


def test_pages_load_cleanly(page: Any, served: Served) -> None:
    for path in [*PAGES, f"/jobs/details/{served.ids.failed}"]:
        response = page.goto(served.url + path)

        assert response is not None
        assert response.status == 200, path
        assert page.locator("main").count() == 1, path
        assert page.evaluate("getComputedStyle(document.body).margin") == "0px", path
    assert served.errors == []


def test_missing_job_page(page: Any, served: Served) -> None:
    response = page.goto(served.url + "/search?q=no-such-job")

    assert response.status == 404
    assert page.inner_text("h1") == "Job not found"
    assert page.inner_text("[data-missing-id]") == "no-such-job"


def test_csp_header_present(page: Any, served: Served) -> None:
    response = page.goto(served.url + "/")

    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy


def test_requeue_from_details(page: Any, served: Served) -> None:
    page.goto(f"{served.url}/jobs/details/{served.ids.failed}")

    page.click("button[data-action=requeue]")
    page.wait_for_selector("[data-flash]")

    assert "1 job requeued" in page.inner_text("[data-flash]")
    assert page.inner_text(".job-title .badge") == "Enqueued"
    assert state_of(served.app, served.ids.failed) == "Enqueued"
    assert served.errors == []


def test_delete_needs_confirmation(page: Any, served: Served) -> None:
    job_id = served.ids.enqueued[0]
    page.goto(f"{served.url}/jobs/details/{job_id}")

    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("button[data-action=delete]")
    page.wait_for_timeout(300)
    after_dismiss = state_of(served.app, job_id)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button[data-action=delete]")
    page.wait_for_selector("[data-flash]")

    assert after_dismiss == "Enqueued"
    assert page.inner_text(".job-title .badge") == "Deleted"
    assert state_of(served.app, job_id) == "Deleted"


def test_enqueue_now_scheduled(page: Any, served: Served) -> None:
    page.goto(f"{served.url}/jobs/details/{served.ids.retry}")

    page.click("button[data-action=enqueue-now]")
    page.wait_for_selector("[data-flash]")

    assert state_of(served.app, served.ids.retry) == "Enqueued"


def test_bulk_delete_selection(page: Any, served: Served) -> None:
    page.goto(f"{served.url}/jobs/enqueued/default")
    delete = page.locator("button[data-action=delete]")
    disabled_before = delete.is_disabled()

    page.check("[data-select-all]")
    count_text = page.inner_text("[data-selection-count]")
    page.once("dialog", lambda dialog: dialog.accept())
    delete.click()
    page.wait_for_selector("[data-flash]")

    assert disabled_before
    assert count_text == "3 selected"
    assert "3 jobs deleted" in page.inner_text("[data-flash]")
    assert all(state_of(served.app, job_id) == "Deleted" for job_id in served.ids.enqueued[:3])
    assert state_of(served.app, served.ids.enqueued[3]) == "Enqueued"
    assert served.errors == []


def test_bulk_requeue_some_rows(page: Any, served: Served) -> None:
    second = fail_another(served)
    page.goto(f"{served.url}/jobs/failed")

    page.check(f"input[name=ids][value='{second}']")
    page.click("button[data-action=requeue]")
    page.wait_for_selector("[data-flash]")

    assert state_of(served.app, second) == "Enqueued"
    assert state_of(served.app, served.ids.failed) == "Failed"


def fail_another(served: Served) -> str:
    served.app.enqueue("tests.echo", "again")
    return fail(served.app, "second failure")


def test_live_numbers_refresh(page: Any, served: Served) -> None:
    from playwright.sync_api import expect

    page.goto(served.url + "/")
    tile = page.locator(".tile-value[data-stat='states.Enqueued']")
    before = tile.inner_text()

    served.app.enqueue("tests.add", 1, 1)
    expect(tile).to_have_text("5", timeout=TIMEOUT_MS)
    expect(page.locator("[data-live-status]")).to_have_class("live-dot ok",
                                                             timeout=TIMEOUT_MS)

    assert before == "4"
    assert served.errors == []


def test_no_script_from_job_data(page: Any, served: Served) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    paths = ["/", "/jobs/enqueued", "/jobs/enqueued/default", "/jobs/failed", "/jobs/deleted",
             "/servers", "/recurring"]
    for payload in XSS_CORPUS:
        add_raw_recurring(served.app, payload, cron=payload, tz=payload, function=payload,
                          queue=payload, errors=1, error=payload)
        paths.append(f"/jobs/details/{served.app.recurring.trigger(payload)}")
        paths.append(details_path(payload))
        job_id = served.app.enqueue("tests.echo", payload, note=payload)
        paths.append(f"/jobs/details/{job_id}")
        served.app.enqueue("tests.echo", payload)
        paths.append(f"/jobs/details/{fail(served.app, payload)}")
        paths.append(f"/jobs/details/{add_raw_job(served.app, function=payload)}")
        paths.append(f"/search?q={payload}")
    served.app.storage.announce_server(XSS_CORPUS[1], list(XSS_CORPUS), 1, {})

    for path in paths:
        page.goto(served.url + path)
        page.wait_for_load_state("load")

        assert page.evaluate("window.__xss") is None, path
    assert dialogs == []


# -- recurring jobs -------------------------------------------------------------------


def recurring_row(page: Any, recurring_id: str) -> Any:
    return page.locator(f"tr[data-recurring-row='{recurring_id}']")


def test_recurring_trigger_and_pause(page: Any, served: Served) -> None:
    from playwright.sync_api import expect

    page.goto(served.url + "/recurring")
    recurring_row(page, RECURRING_ID).locator("button[data-action=trigger]").click()
    expect(page.locator("[data-flash]")).to_contain_text("1 recurring job triggered.")
    flash_job = page.inner_text("[data-flash-job]")
    last_job_id = served.app.recurring.get(RECURRING_ID).last_job_id
    row_after_trigger = recurring_row(page, RECURRING_ID).inner_text()

    recurring_row(page, RECURRING_ID).locator("button[data-action=pause]").click()
    expect(page.locator("[data-flash]")).to_contain_text("1 recurring job paused.")
    row_after_pause = recurring_row(page, RECURRING_ID)

    assert flash_job == last_job_id
    assert state_of(served.app, flash_job) == "Enqueued"
    assert "Enqueued" in row_after_trigger
    assert row_after_pause.locator(".pill-warn").inner_text() == "paused"
    assert row_after_pause.locator("button[data-action=resume]").count() == 1
    assert served.app.recurring.get(RECURRING_ID).paused
    assert served.errors == []


def test_recurring_bulk_pause(page: Any, served: Served) -> None:
    from playwright.sync_api import expect

    served.app.recurring.add_or_update("hourly", "tests.add", "@hourly", args=[3, 4])
    served.app.recurring.pause("hourly")
    page.goto(served.url + "/recurring")
    bulk_pause = page.locator(".toolbar button[data-action=pause]")
    disabled_before = bulk_pause.is_disabled()

    page.check("[data-select-all]")
    bulk_pause.click()
    expect(page.locator("[data-flash]")).to_contain_text(
        "1 recurring job paused. 1 left as it was: not found or already paused.")

    assert disabled_before
    assert all(job.paused for job in served.app.recurring.list())


def test_recurring_details_remove(page: Any, served: Served) -> None:
    from playwright.sync_api import expect

    page.goto(served.url + details_path(RECURRING_ID))
    preview_rows = page.locator("[data-preview] tbody tr").count()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button[data-action=remove]")
    expect(page.locator("[data-flash]")).to_contain_text("1 recurring job removed.")

    assert preview_rows == 5
    assert page.url.startswith(served.url + "/recurring?")
    assert served.app.recurring.list() == []


def test_recurring_nav_count_live(page: Any, served: Served) -> None:
    from playwright.sync_api import expect

    page.goto(served.url + "/servers")
    count = page.locator(".nav-count[data-stat='recurring.total']")
    expect(count).to_have_text("1", timeout=TIMEOUT_MS)
    served.app.recurring.add_or_update("hourly", "tests.add", "@hourly", args=[3, 4])
    expect(count).to_have_text("2", timeout=TIMEOUT_MS)

    assert count.inner_text() == "2"
