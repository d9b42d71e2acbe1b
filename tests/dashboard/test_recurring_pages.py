"""The recurring jobs pages, actions, JSON API and metrics over HTTP."""

from __future__ import annotations

import datetime as dt
import html as html_lib
import re
import time
from zoneinfo import ZoneInfo

import pytest
from dashboard_helpers import (
    LOCAL,
    add_raw_recurring,
    csrf_token,
    details_path,
    post_recurring,
    table_row,
)
from starlette.testclient import TestClient

from backburner import Backburner, states
from backburner.recurring import MAX_ERRORS

BERLIN = "Europe/Berlin"


def add_weekday_job(app: Backburner, recurring_id: str = "nightly/report") -> str:
    app.recurring.add_or_update(recurring_id, "tests.add", "0 9 * * MON-FRI", args=[1, 2],
                                tz=BERLIN, queue="reports")
    return recurring_id


def local(when: dt.datetime, tz: str) -> str:
    return when.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")


# -- the list -------------------------------------------------------------------------


def test_list_shows_schedule(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app)
    job = app.recurring.get("nightly/report")
    assert job.next_at is not None
    row = table_row(client.get("/recurring").text, "nightly/report")

    assert '<code class="cron">0 9 * * MON-FRI</code>' in row
    assert "At 09:00, Monday through Friday" in row
    assert BERLIN in row
    assert '<span class="mono fn">tests.add</span>' in row
    assert 'href="/jobs/enqueued/reports"' in row
    assert f'datetime="{job.next_at.isoformat()}"' in row
    assert local(job.next_at, BERLIN) in row
    assert ">in " in row
    assert "not yet" in row
    assert "pill-ok" in row


def test_list_last_run_links_job(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app)
    job_id = app.recurring.trigger("nightly/report")
    last_at = app.recurring.get("nightly/report").last_at
    assert last_at is not None
    row = table_row(client.get("/recurring").text, "nightly/report")

    assert f'href="/jobs/details/{job_id}"' in row
    assert '<span class="badge state-enqueued">Enqueued</span>' in row
    assert local(last_at, BERLIN) in row
    assert "just now" in row or " ago<" in row


def test_list_status_markers(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app, "active")
    add_weekday_job(app, "paused")
    app.recurring.pause("paused")
    add_raw_recurring(app, "failing", errors=1, error="ImportError: no module named jobs")
    add_raw_recurring(app, "disabled", errors=MAX_ERRORS, error="KeyError: 'gone.job'")
    app.recurring.add_or_update("never", "tests.add", "0 0 30 2 *", args=[1, 2])
    html = client.get("/recurring").text

    assert "pill-ok" in table_row(html, "active")
    assert ">paused<" in table_row(html, "paused")
    assert "none while paused" in table_row(html, "paused")
    assert ">failing<" in table_row(html, "failing")
    assert "ImportError: no module named jobs" in table_row(html, "failing")
    assert ">disabled<" in table_row(html, "disabled")
    assert "KeyError: &#39;gone.job&#39;" in table_row(html, "disabled")
    assert ">never fires<" in table_row(html, "never")
    assert "2 active · 1 paused · 1 failing · 1 disabled" in html


def test_list_summary_counts(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app, "a")
    add_weekday_job(app, "b")
    app.recurring.pause("b")
    add_raw_recurring(app, "c", errors=MAX_ERRORS)
    html = client.get("/recurring").text

    assert "1 active · 1 paused · 0 failing · 1 disabled" in html
    assert '<span class="count-pill">3</span>' in html


def test_list_empty(client: TestClient) -> None:
    html = client.get("/recurring").text

    assert "No recurring jobs" in html


def test_list_pagination(app: Backburner, client: TestClient) -> None:
    for index in range(12):
        add_raw_recurring(app, f"job-{index:02d}")
    second = client.get("/recurring?page=2&size=10").text

    assert 'data-recurring-row="job-10"' in second
    assert 'data-recurring-row="job-11"' in second
    assert 'data-recurring-row="job-09"' not in second


def test_nav_and_overview_tile(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app, "a")
    add_weekday_job(app, "b")
    app.recurring.pause("b")
    html = client.get("/").text

    assert 'href="/recurring"' in html
    assert 'data-stat="recurring.total">2<' in html
    assert 'data-stat="recurring.paused">1<' in html


# -- the details page -----------------------------------------------------------------


def test_details_preview(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app)
    expected = app.recurring.preview("nightly/report", 5)
    html = client.get(details_path("nightly/report")).text
    preview = html[html.index("data-preview"):]

    assert len(expected) == 5
    for when in expected:
        assert when.strftime("%Y-%m-%d %H:%M:%S %Z (UTC%z)") in preview
        assert when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") in preview
    assert "Next 5 occurrences" in html
    assert "At 09:00, Monday through Friday" in html
    assert "relaxed" in html


def test_details_never_fires(app: Backburner, client: TestClient) -> None:
    app.recurring.add_or_update("never", "tests.add", "0 0 30 2 *", args=[1, 2])
    html = client.get(details_path("never")).text

    assert "never fires" in html
    assert "No future occurrence." in html


def test_details_disabled_error(app: Backburner, client: TestClient) -> None:
    add_raw_recurring(app, "broken", errors=MAX_ERRORS, error="JobNotRegistered: old.job")
    html = client.get(details_path("broken")).text

    assert "notice-error" in html
    assert "JobNotRegistered: old.job" in html
    assert "add_or_update" in html


def test_details_invalid_schedule(app: Backburner, client: TestClient) -> None:
    add_raw_recurring(app, "bad", cron="61 * * * *")
    response = client.get(details_path("bad"))

    assert response.status_code == 200
    assert "The schedule cannot be read" in response.text


@pytest.mark.parametrize("recurring_id", ["a/b c", " padded ", "50%?&#=x", "ünïcode ✓", ".."])
def test_details_odd_ids(app: Backburner, client: TestClient, recurring_id: str) -> None:
    add_weekday_job(app, recurring_id)
    listing = client.get("/recurring").text
    href = re.search(r'class="mono recurring-id" href="([^"]+)"', listing)
    assert href is not None
    response = client.get(html_lib.unescape(href.group(1)))
    shown = re.search(r"data-recurring-id>([^<]*)<", response.text)

    assert response.status_code == 200
    assert shown is not None
    assert html_lib.unescape(shown.group(1)) == recurring_id


def test_details_missing_404(client: TestClient) -> None:
    response = client.get(details_path("no-such-schedule"))

    assert response.status_code == 404
    assert "Recurring job not found" in response.text
    assert "no-such-schedule" in response.text


def test_job_details_links_recurring(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app)
    job_id = app.recurring.trigger("nightly/report")
    html = client.get(f"/jobs/details/{job_id}").text

    assert 'href="/recurring/details?id=nightly%2Freport"' in html
    assert "triggered by hand" in html


def test_scheduler_job_state_shown(app: Backburner, client: TestClient) -> None:
    app.recurring.add_or_update("tick", "tests.add", "* * * * * *", args=[1, 1])
    deadline = time.monotonic() + 30
    with app.server(workers=1, queues=["default"]):
        while True:
            last_id = app.recurring.get("tick").last_job_id
            last = app.get_job(last_id) if last_id else None
            if last is not None and last.state == states.SUCCEEDED:
                break
            assert time.monotonic() < deadline, "no recurring job Succeeded in time"
            time.sleep(0.05)
        app.recurring.pause("tick")
    html = client.get("/recurring").text
    job_page = client.get(f"/jobs/details/{last.id}").text

    assert f'href="/jobs/details/{last.id}"' in table_row(html, "tick")
    assert '<span class="badge state-succeeded">Succeeded</span>' in table_row(html, "tick")
    assert "occurrence " in job_page


# -- actions --------------------------------------------------------------------------


def test_trigger_action(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app)
    next_before = app.recurring.get("nightly/report").next_at
    response = post_recurring(client, "trigger", ["nightly/report"],
                              next_path=details_path("nightly/report"))
    page = client.get(response.headers["location"]).text
    job_id = app.recurring.get("nightly/report").last_job_id
    job = app.get_job(job_id) if job_id else None

    assert response.status_code == 303
    assert job is not None
    assert job.recurring_id == "nightly/report"
    assert job.state == states.ENQUEUED
    assert job.queue == "reports"
    assert app.recurring.get("nightly/report").next_at == next_before
    assert "1 recurring job triggered." in page
    assert f'href="/jobs/details/{job_id}" data-flash-job' in page


def test_pause_and_resume(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app)
    token = csrf_token(client, "/recurring")

    paused = client.get(post_recurring(client, "pause", ["nightly/report"],
                                       token=token).headers["location"]).text
    is_paused = app.recurring.get("nightly/report").paused
    again = post_recurring(client, "pause", ["nightly/report"], token=token)
    resumed = post_recurring(client, "resume", ["nightly/report"], token=token)
    is_resumed = not app.recurring.get("nightly/report").paused
    resumed_again = post_recurring(client, "resume", ["nightly/report"], token=token)

    assert is_paused
    assert "1 recurring job paused." in paused
    assert ">paused<" in table_row(paused, "nightly/report")
    assert "changed=0&unchanged=1" in again.headers["location"]
    assert "changed=1&unchanged=0" in resumed.headers["location"]
    assert is_resumed
    assert "changed=0&unchanged=1" in resumed_again.headers["location"]


def test_remove_from_details(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app)
    job_id = app.recurring.trigger("nightly/report")
    response = post_recurring(client, "remove", ["nightly/report"],
                              next_path=details_path("nightly/report"))

    assert response.headers["location"].startswith("/recurring?done=remove&changed=1")
    assert app.recurring.list() == []
    assert app.get_job(job_id) is not None


def test_bulk_pause_reports_counts(app: Backburner, client: TestClient) -> None:
    for recurring_id in ("a", "b", "c"):
        add_weekday_job(app, recurring_id)
    app.recurring.pause("c")
    response = post_recurring(client, "pause", ["a", "b", "c", "gone"])
    page = client.get(response.headers["location"]).text

    assert "2 recurring jobs paused. 2 left as they were: not found or already paused." in page
    assert all(job.paused for job in app.recurring.list())


def test_bulk_trigger_each(app: Backburner, client: TestClient) -> None:
    for recurring_id in ("a", "b"):
        add_weekday_job(app, recurring_id)
    response = post_recurring(client, "trigger", ["a", "b"])
    page = client.get(response.headers["location"]).text

    assert "2 recurring jobs triggered." in page
    assert "data-flash-job" not in page
    assert app.storage.queue_lengths() == {"reports": 2}


def test_action_keeps_spaces_in_ids(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app, " padded ")
    add_weekday_job(app, "padded")
    post_recurring(client, "pause", [" padded "])

    assert app.recurring.get(" padded ").paused
    assert not app.recurring.get("padded").paused


def test_action_without_ids_422(client: TestClient) -> None:
    response = post_recurring(client, "trigger", [])

    assert response.status_code == 422


def test_unknown_recurring_action_404(client: TestClient) -> None:
    response = post_recurring(client, "explode", ["x"])

    assert response.status_code == 404


def test_flash_job_link_needs_real_job(client: TestClient) -> None:
    html = client.get("/recurring?done=trigger&changed=1&unchanged=0&job=%3Cb%3Efake").text

    assert "1 recurring job triggered." in html
    assert "data-flash-job" not in html
    assert "fake" not in html


def test_recurring_read_only(app: Backburner) -> None:
    add_weekday_job(app)
    with TestClient(app.dashboard(read_only=True), client=LOCAL,
                    base_url="http://127.0.0.1") as client:
        page = client.get("/recurring").text
        details = client.get(details_path("nightly/report")).text
        token = client.cookies.get("backburner_csrf")
        response = post_recurring(client, "pause", ["nightly/report"], token=token)

    assert "data-action=" not in page
    assert "data-action=" not in details
    assert response.status_code == 403
    assert not app.recurring.get("nightly/report").paused


def test_recurring_post_needs_token(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app)
    client.get("/recurring")
    response = client.post("/actions/recurring/pause", data={"ids": ["nightly/report"]},
                           follow_redirects=False)

    assert response.status_code == 403
    assert not app.recurring.get("nightly/report").paused


def test_recurring_cross_origin_rejected(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app)
    response = post_recurring(client, "remove", ["nightly/report"],
                              headers={"Origin": "https://evil.example"})

    assert response.status_code == 403
    assert len(app.recurring.list()) == 1


# -- JSON API and metrics -------------------------------------------------------------


def test_json_stats_recurring(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app, "a")
    add_weekday_job(app, "b")
    app.recurring.pause("b")
    add_raw_recurring(app, "c", errors=1)
    add_raw_recurring(app, "d", errors=MAX_ERRORS)
    counts = client.get("/api/stats").json()["recurring"]

    assert counts == {"total": 4, "active": 1, "paused": 1, "failing": 1, "disabled": 1}


def test_json_recurring_list(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app)
    job_id = app.recurring.trigger("nightly/report")
    data = client.get("/api/recurring").json()
    item = data["recurring"][0]

    assert data["total"] == 1
    assert item["id"] == "nightly/report"
    assert item["cron"] == "0 9 * * MON-FRI"
    assert item["description"] == "At 09:00, Monday through Friday"
    assert item["tz"] == BERLIN
    assert item["queue"] == "reports"
    assert item["status"] == "active"
    assert item["last_job_id"] == job_id
    assert item["last_job_state"] == states.ENQUEUED
    assert dt.datetime.fromisoformat(item["next_at"]) > dt.datetime.now(dt.UTC)


def test_json_recurring_details(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app)
    expected = [when.isoformat() for when in app.recurring.preview("nightly/report", 5)]
    found = client.get("/api/recurring/details", params={"id": "nightly/report"}).json()
    missing = client.get("/api/recurring/details", params={"id": "nope"})

    assert found["preview"] == expected
    assert found["preview_error"] is None
    assert missing.status_code == 404


def test_json_recurring_actions(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app)
    token = csrf_token(client, "/recurring")
    headers = {"X-CSRF-Token": token}
    triggered = client.post("/api/recurring/trigger", json={"ids": ["nightly/report", "x"]},
                            headers=headers).json()
    paused = client.post("/api/recurring/pause", json={"ids": ["nightly/report"]},
                         headers=headers).json()
    bad = client.post("/api/recurring/pause", json={"ids": "nightly/report"}, headers=headers)
    unknown = client.post("/api/recurring/explode", json={"ids": ["x"]}, headers=headers)

    assert triggered["changed"] == ["nightly/report"]
    assert triggered["unchanged"] == ["x"]
    assert triggered["jobs"]["nightly/report"] == app.recurring.get("nightly/report").last_job_id
    assert paused == {"action": "pause", "changed": ["nightly/report"], "unchanged": []}
    assert app.recurring.get("nightly/report").paused
    assert bad.status_code == 422
    assert unknown.status_code == 404


def test_json_job_recurring_fields(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app)
    job_id = app.recurring.trigger("nightly/report")
    data = client.get(f"/api/jobs/{job_id}").json()

    assert data["recurring_id"] == "nightly/report"
    assert data["occurrence"] is None


def test_metrics_recurring(app: Backburner, client: TestClient) -> None:
    add_weekday_job(app, "a")
    add_weekday_job(app, "b")
    app.recurring.pause("b")
    lines = client.get("/metrics").text.splitlines()

    assert 'backburner_recurring_jobs{status="active"} 1' in lines
    assert 'backburner_recurring_jobs{status="paused"} 1' in lines
    assert 'backburner_recurring_jobs{status="disabled"} 0' in lines
