"""Dashboard security: authorisation hooks, read-only, CSRF, headers and escaping."""

from __future__ import annotations

import base64
import html as html_lib
from typing import Any

import pytest
from dashboard_helpers import (
    LOCAL,
    LOCAL_URL,
    REMOTE,
    XSS_CORPUS,
    Seeded,
    add_raw_job,
    add_raw_recurring,
    csrf_token,
    details_path,
    fail,
    post_action,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount
from starlette.testclient import TestClient

from backburner import Backburner
from backburner.dashboard import Access, basic_auth, local_requests_only, read_only
from backburner.recurring import MAX_ERRORS

GUARDED = ["/", "/jobs/failed", "/jobs/details/x", "/static/dashboard.css",
           "/static/dashboard.js", "/api/stats", "/metrics", "/servers", "/search?q=x"]


def basic(name: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# -- who may connect ------------------------------------------------------------------


@pytest.mark.parametrize("path", GUARDED)
def test_remote_rejected(app: Backburner, path: str) -> None:
    with TestClient(app.dashboard(), client=REMOTE, base_url=LOCAL_URL) as client:
        response = client.get(path)

    assert response.status_code == 403
    assert "only requests from this machine" in response.text


def test_remote_post_rejected(app: Backburner, seeded: Seeded) -> None:
    with TestClient(app.dashboard(), client=REMOTE, base_url=LOCAL_URL) as client:
        response = client.post("/actions/delete", data={"ids": [seeded.failed]})

    assert response.status_code == 403
    assert app.get_job(seeded.failed).state == "Failed"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1", "::ffff:127.0.0.1"])
def test_loopback_allowed(app: Backburner, host: str) -> None:
    with TestClient(app.dashboard(), client=(host, 1), base_url=LOCAL_URL) as client:
        assert client.get("/").status_code == 200


@pytest.mark.parametrize("host", ["testclient", "", "10.0.0.1", "::ffff:10.0.0.1"])
def test_unknown_or_remote_rejected(app: Backburner, host: str) -> None:
    with TestClient(app.dashboard(), client=(host, 1), base_url=LOCAL_URL) as client:
        assert client.get("/").status_code == 403


def test_forwarded_header_ignored(app: Backburner) -> None:
    with TestClient(app.dashboard(), client=REMOTE, base_url=LOCAL_URL) as client:
        response = client.get("/", headers={"X-Forwarded-For": "127.0.0.1"})

    assert response.status_code == 403


def test_trusted_proxy_forwarding(app: Backburner) -> None:
    hook = local_requests_only(trusted_proxies=["10.0.0.0/8"])
    with TestClient(app.dashboard(authorization=hook), client=("10.1.2.3", 1), base_url=LOCAL_URL) as client:
        local = client.get("/", headers={"X-Forwarded-For": "127.0.0.1"})
        remote = client.get("/", headers={"X-Forwarded-For": "203.0.113.9"})
        spoofed = client.get("/", headers={"X-Forwarded-For": "127.0.0.1, 203.0.113.9"})
        chained = client.get("/", headers={"X-Forwarded-For": "127.0.0.1, 10.9.9.9"})
        garbage = client.get("/", headers={"X-Forwarded-For": "not-an-ip"})

    assert local.status_code == 200
    assert remote.status_code == 403
    assert spoofed.status_code == 403
    assert chained.status_code == 200
    assert garbage.status_code == 403


def test_custom_hook_async(app: Backburner) -> None:
    async def header_hook(request: Request) -> bool:
        return request.headers.get("x-team") == "ops"

    with TestClient(app.dashboard(authorization=[header_hook]), client=REMOTE, base_url=LOCAL_URL) as client:
        allowed = client.get("/", headers={"X-Team": "ops"})
        denied = client.get("/static/dashboard.css")

    assert allowed.status_code == 200
    assert denied.status_code == 403


def test_all_hooks_must_pass(app: Backburner) -> None:
    hooks = [local_requests_only(), lambda request: Access(False, status=418, reason="tea")]
    with TestClient(app.dashboard(authorization=hooks), client=LOCAL, base_url=LOCAL_URL) as client:
        response = client.get("/")

    assert response.status_code == 418
    assert "tea" in response.text


def test_empty_hook_list_rejected(app: Backburner) -> None:
    with pytest.raises(ValueError):
        app.dashboard(authorization=[])


# -- basic auth and read-only ---------------------------------------------------------


def test_basic_auth(app: Backburner) -> None:
    hook = basic_auth({"admin": "s3cret"})
    with TestClient(app.dashboard(authorization=hook), client=REMOTE, base_url=LOCAL_URL) as client:
        missing = client.get("/")
        wrong = client.get("/", headers=basic("admin", "nope"))
        wrong_user = client.get("/", headers=basic("root", "s3cret"))
        garbled = client.get("/", headers={"Authorization": "Basic !!!"})
        right = client.get("/", headers=basic("admin", "s3cret"))
        static = client.get("/static/dashboard.css")

    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith('Basic realm="backburner"')
    assert wrong.status_code == 401
    assert wrong_user.status_code == 401
    assert garbled.status_code == 401
    assert right.status_code == 200
    assert static.status_code == 401


def test_basic_auth_read_only_user(app: Backburner, seeded: Seeded) -> None:
    hook = basic_auth({"admin": "a"}, read_only_users={"viewer": "v"})
    with TestClient(app.dashboard(authorization=hook), client=REMOTE, base_url=LOCAL_URL) as client:
        client.headers.update(basic("viewer", "v"))
        page = client.get("/jobs/failed").text
        token = client.cookies.get("backburner_csrf")
        response = post_action(client, "delete", [seeded.failed], token=token)

    assert "formaction=" not in page
    assert response.status_code == 403
    assert app.get_job(seeded.failed).state == "Failed"


def test_read_only_dashboard(app: Backburner, seeded: Seeded) -> None:
    with TestClient(app.dashboard(read_only=True), client=LOCAL, base_url=LOCAL_URL) as client:
        listing = client.get("/jobs/failed").text
        details = client.get(f"/jobs/details/{seeded.failed}").text
        token = client.cookies.get("backburner_csrf")
        response = post_action(client, "requeue", [seeded.failed], token=token)
        api = client.post("/api/jobs/requeue", json={"ids": [seeded.failed]},
                          headers={"X-CSRF-Token": token or ""})

    assert "formaction=" not in listing
    assert 'name="ids"' not in listing
    assert "formaction=" not in details
    assert "read-only" in listing
    assert response.status_code == 403
    assert api.status_code == 403
    assert app.get_job(seeded.failed).state == "Failed"


def test_read_only_hook(app: Backburner, seeded: Seeded) -> None:
    hooks = [local_requests_only(), read_only]
    with TestClient(app.dashboard(authorization=hooks), client=LOCAL, base_url=LOCAL_URL) as client:
        token = csrf_token(client)
        response = post_action(client, "requeue", [seeded.failed], token=token)

    assert response.status_code == 403


# -- CSRF -----------------------------------------------------------------------------


def test_post_without_token_rejected(client: TestClient, app: Backburner,
                                     seeded: Seeded) -> None:
    client.get("/")

    response = client.post("/actions/delete", data={"ids": [seeded.failed]})

    assert response.status_code == 403
    assert "CSRF" in response.text
    assert app.get_job(seeded.failed).state == "Failed"


def test_post_with_forged_token_rejected(client: TestClient, seeded: Seeded) -> None:
    csrf_token(client)

    response = post_action(client, "delete", [seeded.failed], token="forged.")

    assert response.status_code == 403


def test_post_without_cookie_rejected(app: Backburner, seeded: Seeded) -> None:
    with TestClient(app.dashboard(), client=LOCAL, base_url=LOCAL_URL) as first:
        token = csrf_token(first)
    with TestClient(app.dashboard(), client=LOCAL, base_url=LOCAL_URL) as second:
        response = post_action(second, "delete", [seeded.failed], token=token)

    assert response.status_code == 403
    assert app.get_job(seeded.failed).state == "Failed"


def test_json_post_needs_header(client: TestClient, seeded: Seeded) -> None:
    csrf_token(client)

    response = client.post("/api/jobs/delete", json={"ids": [seeded.failed]})

    assert response.status_code == 403


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1.evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
])
def test_cross_origin_rejected(client: TestClient, app: Backburner, seeded: Seeded,
                               headers: dict[str, str]) -> None:
    response = post_action(client, "delete", [seeded.failed], headers=headers)

    assert response.status_code == 403
    assert "cross-origin" in response.text
    assert app.get_job(seeded.failed).state == "Failed"


def test_same_origin_accepted(client: TestClient, seeded: Seeded) -> None:
    headers = {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"}

    response = post_action(client, "requeue", [seeded.failed], headers=headers)

    assert response.status_code == 303


def test_allowed_origin_accepted(app: Backburner, seeded: Seeded) -> None:
    dashboard = app.dashboard(allowed_origins=["https://ops.example.com"])
    with TestClient(dashboard, client=LOCAL, base_url=LOCAL_URL) as client:
        response = post_action(client, "requeue", [seeded.failed],
                               headers={"Origin": "https://ops.example.com"})

    assert response.status_code == 303


def test_signed_tokens_shared_by_processes(app: Backburner, seeded: Seeded) -> None:
    with TestClient(app.dashboard(secret="shared"), client=LOCAL, base_url=LOCAL_URL) as first:
        token = csrf_token(first)
    with TestClient(app.dashboard(secret="shared"), client=LOCAL, base_url=LOCAL_URL) as second:
        second.cookies.set("backburner_csrf", token)
        response = post_action(second, "requeue", [seeded.failed], token=token)

    assert response.status_code == 303


def test_signed_tokens_other_secret(app: Backburner, seeded: Seeded) -> None:
    with TestClient(app.dashboard(secret="one"), client=LOCAL, base_url=LOCAL_URL) as first:
        token = csrf_token(first)
    with TestClient(app.dashboard(secret="two"), client=LOCAL, base_url=LOCAL_URL) as second:
        second.cookies.set("backburner_csrf", token)
        response = post_action(second, "requeue", [seeded.failed], token=token)

    assert response.status_code == 403


def test_planted_cookie_rejected_with_secret(app: Backburner, seeded: Seeded) -> None:
    with TestClient(app.dashboard(secret="shared"), client=LOCAL, base_url=LOCAL_URL) as client:
        client.cookies.set("backburner_csrf", "chosen-by-attacker.")
        response = post_action(client, "requeue", [seeded.failed], token="chosen-by-attacker.")

    assert response.status_code == 403


def test_unsigned_tokens_shared(app: Backburner, seeded: Seeded) -> None:
    with TestClient(app.dashboard(), client=LOCAL, base_url=LOCAL_URL) as first:
        token = csrf_token(first)
    with TestClient(app.dashboard(), client=LOCAL, base_url=LOCAL_URL) as second:
        second.cookies.set("backburner_csrf", token)
        response = post_action(second, "requeue", [seeded.failed], token=token)

    assert response.status_code == 303


def test_csrf_cookie_attributes(app: Backburner) -> None:
    outer = Starlette(routes=[Mount("/ops", app=app.dashboard())])
    with TestClient(outer, client=LOCAL, base_url=LOCAL_URL) as client:
        cookie = client.get("/ops/").headers["set-cookie"]

    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/ops/" in cookie


def test_body_too_large_rejected(client: TestClient) -> None:
    token = csrf_token(client)

    response = client.post("/actions/delete", content=b"a" * (1024 * 1024 + 1),
                           headers={"X-CSRF-Token": token,
                                    "Content-Type": "application/x-www-form-urlencoded"})

    assert response.status_code == 413


# -- headers and escaping -------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/static/dashboard.js", "/jobs/details/none", "/nope",
                                  "/api/stats"])
def test_security_headers(client: TestClient, path: str) -> None:
    headers = client.get(path).headers

    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"


def test_rejection_has_csp(app: Backburner) -> None:
    with TestClient(app.dashboard(), client=REMOTE, base_url=LOCAL_URL) as client:
        headers = client.get("/").headers

    assert "content-security-policy" in headers


def test_no_inline_script_or_style(client: TestClient, seeded: Seeded) -> None:
    for path in ["/", "/jobs/failed", f"/jobs/details/{seeded.failed}", "/servers"]:
        html = client.get(path).text

        assert "<script>" not in html, path
        assert "<style" not in html, path
        assert " style=" not in html, path
        assert " onclick=" not in html, path
        assert "https://" not in html, path


@pytest.fixture
def hostile(app: Backburner) -> dict[str, list[str]]:
    """Jobs, recurring jobs, a server and history entries whose every text field is hostile."""
    created: dict[str, list[str]] = {"jobs": [], "recurring": []}
    for payload in XSS_CORPUS:
        created["jobs"].append(app.enqueue("tests.echo", payload, key=payload))
        app.enqueue("tests.echo", payload)
        created["jobs"].append(fail(app, payload))
        created["jobs"].append(add_raw_job(app, function=payload, payload='{"args":[],"kwargs":{}}'))
        created["jobs"].append(add_raw_job(app, queue=payload))
        deleted = app.enqueue("tests.echo", 1)
        app.state_machine.delete(deleted, reason=payload)
        created["jobs"].append(deleted)
        created["recurring"].append(add_raw_recurring(
            app, payload, cron=payload, tz=payload, function=payload, queue=payload,
            errors=1, error=payload))
        created["jobs"].append(app.recurring.trigger(payload))
        created["recurring"].append(add_raw_recurring(
            app, f"cron {payload}", cron=f"{payload} * * * *", errors=MAX_ERRORS,
            error=payload))
    app.storage.announce_server(XSS_CORPUS[0], list(XSS_CORPUS), 2, {"note": XSS_CORPUS[1]})
    created["jobs"].append(add_raw_job(app, job_id="<b>id</b>"))
    return created


def test_hostile_values_escaped(client: TestClient, hostile: dict[str, list[str]]) -> None:
    pages = ["/", "/jobs/enqueued", "/jobs/failed", "/jobs/deleted", "/servers",
             "/jobs/enqueued/default", *(f"/jobs/details/{job_id}" for job_id in hostile["jobs"])]
    pages += [f"/jobs/enqueued/{payload}" for payload in XSS_CORPUS]
    pages += ["/recurring", *(details_path(recurring_id) for recurring_id in hostile["recurring"])]
    for path in pages:
        response = client.get(path)
        html = response.text

        assert response.status_code in (200, 404), path
        for payload in XSS_CORPUS:
            if "<" in payload:
                assert payload not in html, (path, payload)
        assert "<b>" not in html, path
        assert 'href="javascript:' not in html, path
        assert "<svg onload" not in html, path


def test_hostile_values_shown_escaped(client: TestClient, hostile: dict[str, list[str]]) -> None:
    html = client.get("/jobs/failed").text

    assert html_lib.escape(XSS_CORPUS[0], quote=False) in html.replace("&#39;", "'")


def test_hostile_recurring_shown_escaped(client: TestClient,
                                         hostile: dict[str, list[str]]) -> None:
    listing = client.get("/recurring").text
    details = client.get(details_path(XSS_CORPUS[0])).text
    escaped = html_lib.escape(XSS_CORPUS[0])

    assert f"<code class=\"cron\">{escaped}</code>" in listing
    assert f"data-recurring-id>{escaped}<" in details
    assert details.count(escaped) >= 4


def test_hostile_search_escaped(client: TestClient) -> None:
    for payload in XSS_CORPUS:
        html = client.get("/search", params={"q": payload}).text

        assert payload not in html or "<" not in payload
        assert "<b>" not in html


@pytest.mark.parametrize(("host", "hooks", "status"), [
    ("localhost:8000", None, 200),
    ("[::1]:8000", None, 200),
    ("jobs.internal:8000", None, 403),
    ("jobs.internal:8000", [local_requests_only(allowed_hosts=["Jobs.Internal"])], 200),
])
def test_host_must_name_this_machine(app: Backburner, host: str,
                                     hooks: list[Any] | None, status: int) -> None:
    with TestClient(app.dashboard(authorization=hooks), client=LOCAL,
                    base_url=LOCAL_URL) as client:
        response = client.get("/", headers={"Host": host})

    assert response.status_code == status
    if status == 403:
        assert "allowed_hosts" in response.text


def test_same_origin_referer_accepted(client: TestClient, seeded: Seeded) -> None:
    response = post_action(client, "delete", seeded.enqueued[:1],
                           headers={"Referer": "http://127.0.0.1/jobs/enqueued"})

    assert response.status_code == 303
