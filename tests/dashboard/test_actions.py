"""Dashboard actions: requeue, delete and enqueue now, single and bulk, as forms and JSON."""

from __future__ import annotations

from dashboard_helpers import Seeded, csrf_token, post_action
from starlette.testclient import TestClient

from backburner import Backburner


def state_of(app: Backburner, job_id: str) -> str | None:
    job = app.get_job(job_id)
    return None if job is None else job.state


def test_requeue_failed_job(app: Backburner, client: TestClient, seeded: Seeded) -> None:
    response = post_action(client, "requeue", [seeded.failed])

    assert response.status_code == 303
    assert response.headers["location"] == "/jobs/failed?done=requeue&changed=1&unchanged=0"
    assert state_of(app, seeded.failed) == "Enqueued"


def test_requeue_reason_in_history(app: Backburner, client: TestClient, seeded: Seeded) -> None:
    post_action(client, "requeue", [seeded.failed])

    job = app.get_job(seeded.failed)
    assert job is not None
    assert job.history[-1].reason == "Requeued from the dashboard"


def test_delete_single_job(app: Backburner, client: TestClient, seeded: Seeded) -> None:
    response = post_action(client, "delete", [seeded.enqueued[0]],
                           next_path=f"/jobs/details/{seeded.enqueued[0]}")

    assert response.status_code == 303
    assert response.headers["location"].startswith(f"/jobs/details/{seeded.enqueued[0]}?done=")
    assert state_of(app, seeded.enqueued[0]) == "Deleted"


def test_enqueue_now_scheduled(app: Backburner, client: TestClient, seeded: Seeded) -> None:
    post_action(client, "enqueue-now", [seeded.retry])

    assert state_of(app, seeded.retry) == "Enqueued"


def test_enqueue_now_awaiting(app: Backburner, client: TestClient, seeded: Seeded) -> None:
    post_action(client, "enqueue-now", [seeded.awaiting])

    assert state_of(app, seeded.awaiting) == "Enqueued"


def test_enqueue_now_refused_for_failed(app: Backburner, client: TestClient,
                                        seeded: Seeded) -> None:
    response = post_action(client, "enqueue-now", [seeded.failed])

    assert response.headers["location"].endswith("done=enqueue-now&changed=0&unchanged=1")
    assert state_of(app, seeded.failed) == "Failed"


def test_bulk_delete_reports_counts(app: Backburner, client: TestClient, seeded: Seeded) -> None:
    ids = [*seeded.enqueued, "missing-job", seeded.deleted]

    response = post_action(client, "delete", ids, next_path="/jobs/enqueued/default?page=1")
    page = client.get(response.headers["location"])

    assert response.headers["location"] == \
        "/jobs/enqueued/default?page=1&done=delete&changed=4&unchanged=2"
    assert all(state_of(app, job_id) == "Deleted" for job_id in seeded.enqueued)
    assert "4 jobs deleted. 2 left as they were" in page.text


def test_bulk_requeue_duplicates_once(app: Backburner, client: TestClient,
                                      seeded: Seeded) -> None:
    response = post_action(client, "requeue", [seeded.failed, seeded.failed, seeded.deleted])

    assert response.headers["location"].endswith("changed=2&unchanged=0")


def test_action_without_ids_422(client: TestClient, seeded: Seeded) -> None:
    response = post_action(client, "delete", [])

    assert response.status_code == 422


def test_unknown_action_404(client: TestClient, seeded: Seeded) -> None:
    response = post_action(client, "explode", [seeded.failed])

    assert response.status_code == 404


def test_action_get_405(client: TestClient) -> None:
    response = client.get("/actions/delete")

    assert response.status_code == 405


def test_open_redirect_blocked(client: TestClient, seeded: Seeded) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "jobs"):
        response = post_action(client, "requeue", [seeded.failed], next_path=target)

        assert response.headers["location"].startswith("/?done=requeue"), target


def test_old_report_dropped_from_next(client: TestClient, seeded: Seeded) -> None:
    response = post_action(client, "requeue", [seeded.failed],
                           next_path="/jobs/failed?done=delete&changed=9&size=50")

    assert response.headers["location"] == \
        "/jobs/failed?size=50&done=requeue&changed=1&unchanged=0"


def test_flash_ignores_forged_text(client: TestClient) -> None:
    html = client.get("/?done=<b>hi</b>&changed=1").text
    bad_number = client.get("/?done=delete&changed=lots").text

    assert "<b>hi</b>" not in html
    assert "data-flash" not in html
    assert "data-flash" not in bad_number


def test_json_action(app: Backburner, client: TestClient, seeded: Seeded) -> None:
    token = csrf_token(client)

    response = client.post("/api/jobs/requeue", json={"ids": [seeded.failed, "nope"]},
                           headers={"X-CSRF-Token": token})

    assert response.status_code == 200
    assert response.json() == {"action": "requeue", "changed": [seeded.failed],
                               "unchanged": ["nope"]}
    assert state_of(app, seeded.failed) == "Enqueued"


def test_json_action_bad_body_422(client: TestClient) -> None:
    token = csrf_token(client)

    not_json = client.post("/api/jobs/delete", content=b"{", headers={"X-CSRF-Token": token})
    no_ids = client.post("/api/jobs/delete", json={"ids": []}, headers={"X-CSRF-Token": token})
    bad_ids = client.post("/api/jobs/delete", json={"ids": [1]}, headers={"X-CSRF-Token": token})

    assert not_json.status_code == 422
    assert no_ids.status_code == 422
    assert bad_ids.status_code == 422


def test_json_api_stats(client: TestClient, seeded: Seeded) -> None:
    data = client.get("/api/stats").json()

    assert data["states"]["Enqueued"] == 4
    assert data["queues"] == {"critical": 1, "default": 3}
    assert data["totals"] == {"succeeded": 1, "failed": 1, "deleted": 1}
    assert data["servers"] == 1
    assert data["retries"] == 1


def test_json_api_lists(client: TestClient, seeded: Seeded) -> None:
    failed = client.get("/api/jobs?state=failed").json()
    queue = client.get("/api/jobs?state=Enqueued&queue=critical").json()
    invalid = client.get("/api/jobs?state=finished")

    assert [job["id"] for job in failed["jobs"]] == [seeded.failed]
    assert failed["total"] == 1
    assert [job["id"] for job in queue["jobs"]] == [seeded.enqueued[-1]]
    assert invalid.status_code == 422


def test_json_api_missing_job(client: TestClient) -> None:
    response = client.get("/api/jobs/nope")

    assert response.status_code == 404
    assert "not found" in response.json()["error"]


def test_json_api_servers_history(client: TestClient, seeded: Seeded) -> None:
    servers = client.get("/api/servers").json()["servers"]
    day = client.get("/api/history").json()
    week = client.get("/api/history?days=7").json()

    assert [server["id"] for server in servers] == ["test-server"]
    assert len(day["succeeded"]) == 24
    assert sum(day["succeeded"]) == 1
    assert len(week["failed"]) == 7
    assert sum(week["failed"]) == 1


def test_metrics(client: TestClient, seeded: Seeded) -> None:
    response = client.get("/metrics")
    lines = response.text.splitlines()

    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'backburner_jobs{state="enqueued"} 4' in lines
    assert 'backburner_queue_length{queue="critical"} 1' in lines
    assert 'backburner_jobs_finished_total{state="succeeded"} 1' in lines
    assert "backburner_servers 1" in lines
    assert "backburner_workers 4" in lines
