"""Dashboard pages over HTTP: every route renders what it should."""

from __future__ import annotations

import json

import pytest
from dashboard_helpers import LOCAL, LOCAL_URL, Seeded, add_raw_job
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from backburner import Backburner
from backburner.records import StateChange

LIST_PAGES = ["/jobs/enqueued", "/jobs/enqueued/default", "/jobs/scheduled",
              "/jobs/processing", "/jobs/succeeded", "/jobs/failed", "/jobs/deleted",
              "/jobs/awaiting", "/retries", "/servers", "/"]


@pytest.mark.parametrize("path", LIST_PAGES)
def test_page_renders(client: TestClient, seeded: Seeded, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<main" in response.text


def test_overview_counts(client: TestClient, seeded: Seeded) -> None:
    html = client.get("/").text

    assert 'data-stat="states.Enqueued">4<' in html
    assert 'data-stat="states.Failed">1<' in html
    assert 'data-stat="retries">1<' in html
    assert 'data-stat="servers">1<' in html
    assert 'id="live-chart"' in html
    assert "Last 24 hours" in html
    assert "Last 7 days" in html


def test_overview_history_points(client: TestClient, seeded: Seeded) -> None:
    html = client.get("/").text

    assert html.count('class="line-succeeded"') == 2
    assert html.count('class="line-failed"') == 2


def test_queues_page_lists_each_queue(client: TestClient, seeded: Seeded) -> None:
    html = client.get("/jobs/enqueued").text

    assert 'href="/jobs/enqueued/default"' in html
    assert 'href="/jobs/enqueued/critical"' in html
    assert seeded.enqueued[0] in html


def test_queue_page_only_that_queue(client: TestClient, seeded: Seeded) -> None:
    html = client.get("/jobs/enqueued/critical").text

    assert seeded.enqueued[-1] in html
    assert seeded.enqueued[0] not in html


def test_failed_list_shows_exception(client: TestClient, seeded: Seeded) -> None:
    html = client.get("/jobs/failed").text

    assert seeded.failed in html
    assert "builtins.RuntimeError: boom: something broke" in html


def test_succeeded_list_shows_duration(client: TestClient, seeded: Seeded) -> None:
    html = client.get("/jobs/succeeded").text

    assert seeded.succeeded in html
    assert "250 ms" in html


def test_processing_warns_of_silent_server(app: Backburner, seeded: Seeded) -> None:
    dashboard = app.dashboard(server_aborted_threshold=0.0)
    with TestClient(dashboard, client=LOCAL, base_url=LOCAL_URL) as client:
        html = client.get("/jobs/processing").text

    assert seeded.processing in html
    assert "⚠" in html


def test_retries_lists_only_retries(client: TestClient, seeded: Seeded) -> None:
    html = client.get("/retries").text

    assert seeded.retry in html
    assert seeded.parent not in html


def test_awaiting_links_parent(client: TestClient, seeded: Seeded) -> None:
    html = client.get("/jobs/awaiting").text

    assert seeded.awaiting in html
    assert f'href="/jobs/details/{seeded.parent}"' in html


def test_servers_page(client: TestClient, seeded: Seeded) -> None:
    html = client.get("/servers").text

    assert "test-server" in html
    assert "active" in html


def test_unknown_state_is_404(client: TestClient) -> None:
    response = client.get("/jobs/finished")

    assert response.status_code == 404
    assert "page not found" in response.text


def test_pagination_pages_and_sizes(app: Backburner, client: TestClient) -> None:
    ids = [app.enqueue("tests.add", n, n) for n in range(25)]

    first = client.get("/jobs/enqueued/default?size=10").text
    third = client.get("/jobs/enqueued/default?size=10&page=3").text

    assert ids[0] in first
    assert ids[10] not in first
    assert ids[20] in third
    assert ids[19] not in third
    assert 'href="?page=2&amp;size=10"' in first


def test_pagination_rejects_odd_size(app: Backburner, client: TestClient) -> None:
    ids = [app.enqueue("tests.add", n, n) for n in range(25)]

    html = client.get("/jobs/enqueued/default?size=7&page=x").text

    assert ids[19] in html
    assert ids[20] not in html


def test_details_page(client: TestClient, seeded: Seeded) -> None:
    html = client.get(f"/jobs/details/{seeded.failed}").text

    assert "tests.echo" in html
    assert "&#34;boom&#34;" in html or "&quot;boom&quot;" in html
    assert "Traceback" in html
    assert "RuntimeError" in html
    assert html.count('class="timeline-entry') == 3


def test_details_timeline_durations(client: TestClient, seeded: Seeded) -> None:
    html = client.get(f"/jobs/details/{seeded.succeeded}").text

    assert html.count("for ") >= 2
    assert "will be removed" in html


def test_details_parent_and_continuation(client: TestClient, seeded: Seeded) -> None:
    parent_html = client.get(f"/jobs/details/{seeded.parent}").text
    child_html = client.get(f"/jobs/details/{seeded.awaiting}").text

    assert f'href="/jobs/details/{seeded.awaiting}"' in parent_html
    assert f'href="/jobs/details/{seeded.parent}"' in child_html


def test_details_lists_continuations_in_any_state(app: Backburner, client: TestClient) -> None:
    parent = app.enqueue("tests.echo", "parent")
    runs = app.options(on="deleted").continue_with(parent, "tests.echo", "runs")
    dropped = app.continue_with(parent, "tests.echo", "dropped")
    app.delete(parent)

    html = client.get(f"/jobs/details/{parent}").text

    assert app.get_job(runs).state == "Enqueued"
    assert app.get_job(dropped).state == "Deleted"
    assert f'href="/jobs/details/{runs}"' in html
    assert f'href="/jobs/details/{dropped}"' in html


def test_retries_page_counts_every_retry(app: Backburner, client: TestClient) -> None:
    # More retries than one page holds; the pager's total must count them all.
    jobs = [app.enqueue("tests.echo", index) for index in range(30)]
    fetched = app.storage.fetch_jobs(["default"], "server-a", 30)
    app.storage.change_states([
        StateChange(job.id, "Scheduled", delay=600.0, retry_count=1, lease_token=job.lease_token)
        for job in fetched])

    html = client.get("/retries?size=10").text
    stats = client.get("/api/stats").json()

    assert len(fetched) == len(jobs)
    assert stats["retries"] == 30
    assert '<span class="count-pill">30</span>' in html


def test_details_large_arguments_cut(app: Backburner, client: TestClient) -> None:
    job_id = app.enqueue("tests.echo", "x" * 30_000 + "END")

    short = client.get(f"/jobs/details/{job_id}").text
    full = client.get(f"/jobs/details/{job_id}?args=full").text

    assert "END" not in short
    assert "Show all" in short
    assert "x" * 30_000 + "END" in full


def test_list_preview_cut(app: Backburner, client: TestClient) -> None:
    job_id = app.enqueue("tests.echo", "y" * 5_000)

    html = client.get("/jobs/enqueued/default").text

    assert job_id in html
    assert "y" * 200 not in html


def test_undecodable_arguments_shown(app: Backburner, client: TestClient) -> None:
    job_id = add_raw_job(app, payload="not json")

    html = client.get(f"/jobs/details/{job_id}").text
    listing = client.get("/jobs/enqueued/default")

    assert "do not decode" in html
    assert listing.status_code == 200


def test_missing_job_404(client: TestClient) -> None:
    response = client.get("/jobs/details/no-such-job")

    assert response.status_code == 404
    assert "Job not found" in response.text
    assert "no-such-job" in response.text
    assert "24 h 0 min" in response.text


def test_search_redirects_to_job(client: TestClient, seeded: Seeded) -> None:
    response = client.get(f"/search?q=+{seeded.failed}+", follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == f"/jobs/details/{seeded.failed}"


def test_search_missing_job(client: TestClient) -> None:
    response = client.get("/search?q=nothing-here")

    assert response.status_code == 404
    assert "nothing-here" in response.text


def test_static_assets_served(client: TestClient) -> None:
    css = client.get("/static/dashboard.css")
    script = client.get("/static/dashboard.js")

    assert css.status_code == 200
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]


def test_mount_under_subpath(app: Backburner, seeded: Seeded) -> None:
    outer = Starlette(routes=[Mount("/ops/jobs", app=app.dashboard())])
    with TestClient(outer, client=LOCAL, base_url=LOCAL_URL) as client:
        html = client.get("/ops/jobs/jobs/failed").text
        css = client.get("/ops/jobs/static/dashboard.css")
        search = client.get(f"/ops/jobs/search?q={seeded.failed}", follow_redirects=False)

    assert 'href="/ops/jobs/static/dashboard.css"' in html
    assert f'href="/ops/jobs/jobs/details/{seeded.failed}"' in html
    assert 'formaction="/ops/jobs/actions/requeue"' in html
    assert 'href="/jobs/' not in html
    assert css.status_code == 200
    assert search.headers["location"] == f"/ops/jobs/jobs/details/{seeded.failed}"


def test_root_path_from_server(app: Backburner, seeded: Seeded) -> None:
    with TestClient(app.dashboard(), client=LOCAL, base_url=LOCAL_URL, root_path="/proxy") as client:
        html = client.get("/proxy/jobs/failed").text

    assert 'href="/proxy/static/dashboard.css"' in html


def test_json_api_job_args(client: TestClient, seeded: Seeded) -> None:
    data = json.loads(client.get(f"/api/jobs/{seeded.failed}").text)

    assert data["args"] == ["boom"]
    assert [entry["state"] for entry in data["history"]] == ["Enqueued", "Processing", "Failed"]
