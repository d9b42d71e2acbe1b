"""An outside probe of the dashboard: crawl, hostile data, fuzzed queries and forged POSTs.

Everything runs in process through Starlette's TestClient on a SQLite file,
except one headless Chromium check. Random choices use fixed seeds, so a
failure repeats on the next run.
"""

from __future__ import annotations

import base64
import html as html_lib
import os
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

import pytest
from dashboard_helpers import LOCAL, REMOTE, make_app, run_one, seed
from probe_helpers import (
    PAYLOADS,
    SURROGATE,
    HostileSeed,
    markup_problems,
    parse_page,
    seed_hostile,
    snapshot,
)
from starlette.testclient import TestClient

from backburner import Backburner
from backburner.dashboard import basic_auth

ORIGIN = "http://127.0.0.1"
HOST = "127.0.0.1"
FUZZ_SEED = 18
#: Query values sent to each route by the fuzzer.
VALUES_PER_ROUTE = 1000
MAX_CRAWL = 3000

JOB_ACTIONS = ("requeue", "delete", "enqueue-now")
RECURRING_ACTIONS = ("trigger", "pause", "resume", "remove")
#: Every state-changing route: (path, kind of ids, JSON body or form).
MUTATION_ROUTES = [
    *[(f"/actions/{name}", "jobs", "form") for name in JOB_ACTIONS],
    *[(f"/actions/recurring/{name}", "recurring", "form") for name in RECURRING_ACTIONS],
    *[(f"/api/jobs/{name}", "jobs", "json") for name in JOB_ACTIONS],
    *[(f"/api/recurring/{name}", "recurring", "json") for name in RECURRING_ACTIONS],
]


@dataclass
class Probe:
    """A dashboard on storage seeded with normal and hostile jobs, and a client of it."""

    app: Backburner
    hostile: HostileSeed
    client: TestClient


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    app = make_app(tmp_path_factory.mktemp("probe"))
    seed(app)
    hostile = seed_hostile(app, PAYLOADS)
    client = TestClient(app.dashboard(), client=LOCAL, base_url=ORIGIN,
                        raise_server_exceptions=False)
    with client:
        yield Probe(app=app, hostile=hostile, client=client)
    app.close()


def is_html(response: Any) -> bool:
    return response.headers.get("content-type", "").startswith("text/html")


def offsite(location: str, current: str = "/") -> bool:
    """Tell whether a redirect to ``location`` would leave the dashboard's origin."""
    if location.startswith(("//", "/\\", "\\")) or "\\" in location.split("?")[0]:
        return True
    target = urlsplit(urljoin(ORIGIN + current, location))
    return target.scheme != "http" or target.netloc != HOST


def local_path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# -- crawl every link on hostile data ---------------------------------------------------


@dataclass
class Crawl:
    """What a crawl saw: statuses by path, problems, and the POST forms found."""

    statuses: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    post_forms: dict[str, set[str]] = field(default_factory=dict)
    truncated: bool = False


def api_paths(probe: Probe) -> list[str]:
    """Return the JSON and metrics paths that no HTML page links to."""
    paths = ["/api/stats", "/api/servers", "/api/recurring?size=500", "/api/history?days=1",
             "/api/history?days=7", "/metrics"]
    paths += [f"/api/jobs?{urlencode({'state': state, 'size': 500})}"
              for state in ("Enqueued", "Scheduled", "Processing", "Succeeded", "Failed",
                            "Deleted", "Awaiting")]
    paths += [f"/api/jobs/{quote(job_id, safe='')}" for job_id in probe.hostile.job_ids]
    paths += ["/api/recurring/details?" + urlencode({"id": recurring_id})
              for recurring_id in probe.hostile.recurring_ids]
    return paths


def crawl(client: TestClient, start: list[str]) -> Crawl:
    result = Crawl()
    pending = deque(start)
    searched: set[str] = set()
    while pending:
        path = pending.popleft()
        if path in result.statuses:
            continue
        if len(result.statuses) >= MAX_CRAWL:
            result.truncated = True
            break
        response = client.get(path, follow_redirects=False)
        result.statuses[path] = response.status_code
        pending.extend(_check_response(path, response, result, searched))
    return result


def _check_response(path: str, response: Any, result: Crawl, searched: set[str]) -> list[str]:
    """Check one crawled response and return the same-app paths it leads to."""
    status = response.status_code
    if status == 303:
        location = response.headers["location"]
        if offsite(location, path):
            result.problems.append(f"{path}: redirect off the dashboard to {location!r}")
            return []
        return [local_path(urljoin(ORIGIN + path, location))]
    if status not in (200, 404):
        result.problems.append(f"{path}: status {status}")
    if path.startswith(("/api/", "/metrics", "/static/")) or not is_html(response):
        return []

    policy = response.headers.get("content-security-policy", "")
    if "script-src 'self'" not in policy or "unsafe-inline" in policy:
        result.problems.append(f"{path}: weak or missing CSP {policy!r}")
    result.problems += [f"{path}: {problem}" for problem in markup_problems(response.text)]
    return _links(path, response.text, result, searched)


def _links(path: str, html: str, result: Crawl, searched: set[str]) -> list[str]:
    parsed = parse_page(html)
    found = []
    for link in parsed.links:
        target = urljoin(ORIGIN + path, link)
        if urlsplit(target).netloc == HOST:
            found.append(local_path(target))
        else:
            result.problems.append(f"{path}: link off the dashboard {link!r}")
    for form in parsed.forms:
        action = local_path(urljoin(ORIGIN + path, form.action))
        if form.method == "post":
            result.post_forms.setdefault(action, set()).update(name for name, _ in form.fields)
        elif action not in searched:
            searched.add(action)
            found += [f"{action}?{urlencode({'q': value})}" for value in [*PAYLOADS, "x"]]
    return found


@pytest.fixture(scope="module")
def crawled(probe: Probe) -> Crawl:
    return crawl(probe.client, ["/", *api_paths(probe)])


@pytest.mark.parametrize("html", [
    "<p><script>alert(1)</script></p>",
    '<p title=""><img src=x onerror=alert(1)>"></p>',
    "<p><svg onload=alert(1)></p>",
    '<a href=" JaVaScRiPt:alert(1)">x</a>',
    "<p>zqjx</p>",
    "<p><b>raw</b></p>",
], ids=["script", "attribute break", "event handler", "script URL", "template", "tag"])
def test_checker_finds_injection(html: str) -> None:
    """The checks the crawl and the fuzzer rely on do report injected markup."""
    assert markup_problems(html) != []


def test_checker_passes_escaped() -> None:
    escaped = "".join(f"<td title=\"{html_lib.escape(value)}\">{html_lib.escape(value)}</td>"
                      for value in PAYLOADS if "zq" not in value)

    assert markup_problems(escaped) == []


@pytest.mark.parametrize(("location", "leaves"), [
    ("/jobs/failed?done=requeue", False), ("?page=2", False), ("//evil.example/", True),
    ("/\\evil.example", True), ("https://evil.example/", True), ("http://127.0.0.1/x", False),
])
def test_offsite_detects(location: str, leaves: bool) -> None:
    assert offsite(location) is leaves


def test_crawl_no_errors(crawled: Crawl) -> None:
    assert not crawled.truncated, f"more than {MAX_CRAWL} pages"
    assert crawled.problems == [], "\n".join(crawled.problems[:20])
    assert len(crawled.statuses) > 300


def test_crawl_reaches_every_job(probe: Probe, crawled: Crawl) -> None:
    visited = {path for path, status in crawled.statuses.items() if status == 200}

    for job_id in probe.hostile.job_ids:
        assert f"/jobs/details/{quote(job_id, safe='')}" in visited, job_id
    for recurring_id in probe.hostile.recurring_ids:
        assert "/recurring/details?" + urlencode({"id": recurring_id}) in visited, \
            recurring_id[:60]


def test_crawl_post_forms_known(crawled: Crawl) -> None:
    known = {path for path, _, kind in MUTATION_ROUTES if kind == "form"}

    assert crawled.post_forms, "the crawl found no action form"
    for action, names in crawled.post_forms.items():
        assert action in known, f"unknown state-changing form {action}"
        assert "csrf_token" in names, f"form {action} has no CSRF field"


def test_api_keeps_hostile_values(probe: Probe) -> None:
    raw_job = probe.hostile.job_ids[1]  # the raw job with PAYLOADS[0] as function, queue and argument
    job = probe.client.get(f"/api/jobs/{raw_job}").json()
    servers = probe.client.get("/api/servers").json()["servers"]
    recurring = probe.client.get("/api/recurring/details",
                                 params={"id": PAYLOADS[1]}).json()

    assert job["function"] == PAYLOADS[0]
    assert job["queue"] == PAYLOADS[0]
    assert job["args"] == [PAYLOADS[0]]
    assert {server["id"] for server in servers} >= set(PAYLOADS)
    assert recurring["id"] == PAYLOADS[1]
    assert recurring["cron"] == PAYLOADS[1]
    assert recurring["error"] == PAYLOADS[1]


def test_api_json_headers(probe: Probe) -> None:
    for path in [path for path in api_paths(probe) if path.startswith("/api/")][:20]:
        response = probe.client.get(path)

        assert response.headers["content-type"].startswith("application/json"), path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert isinstance(response.json(), dict), path


METRIC_LINE = re.compile(
    r'^(#.*|[a-z_]+(\{[a-z_]+="(?:[^"\\\n]|\\[\\"n])*"(,[a-z_]+="(?:[^"\\\n]|\\[\\"n])*")*\})?'
    r" -?\d+(\.\d+)?)$")


def test_metrics_hostile_labels(probe: Probe) -> None:
    response = probe.client.get("/metrics")
    lines = response.text.rstrip("\n").split("\n")

    assert response.status_code == 200
    assert all(METRIC_LINE.match(line) for line in lines), \
        [line[:80] for line in lines if not METRIC_LINE.match(line)][:5]
    assert sum(line.startswith("backburner_queue_length{") for line in lines) >= len(PAYLOADS)


# -- fuzzed query parameters ------------------------------------------------------------

FLASH = ["done", "changed", "unchanged", "job"]
PAGE_PARAMS = ["page", "size", "state", "queue", "id", "args", "next", "q", *FLASH]
#: (path with at most one {placeholder}, query parameters, allowed statuses).
FUZZ_ROUTES = [
    ("/", PAGE_PARAMS, {200}),
    ("/jobs/enqueued", PAGE_PARAMS, {200}),
    ("/jobs/enqueued/{}", PAGE_PARAMS, {200, 404, 307}),
    ("/jobs/details/{}", PAGE_PARAMS, {200, 404, 307}),
    ("/jobs/{}", PAGE_PARAMS, {200, 404, 307}),
    ("/retries", PAGE_PARAMS, {200}),
    ("/servers", PAGE_PARAMS, {200}),
    ("/search", ["q", *FLASH], {303, 404}),
    ("/recurring", PAGE_PARAMS, {200}),
    ("/recurring/details", ["id", "page", "next", *FLASH], {200, 404}),
    ("/api/stats", ["state", "page"], {200}),
    ("/api/jobs", ["state", "queue", "page", "size"], {200, 422}),
    ("/api/jobs/{}", ["args"], {200, 404, 307}),
    ("/api/recurring", ["page", "size"], {200}),
    ("/api/recurring/details", ["id"], {200, 404}),
    ("/api/servers", ["id"], {200}),
    ("/api/history", ["days"], {200}),
    ("/metrics", ["state", "name"], {200}),
    ("/static/{}", ["v"], {200, 404, 307}),
]

FUZZ_VALUES = [
    "", " ", "0", "-1", "-99999999999999999999", "1" * 5000, "9" * 30, "1e9", "0x10", "1.5",
    "NaN", "inf", "-inf", "+5", " 7 ", "\u0663", "\uff11\uff12", "\u00bd", "null", "[]", "{}",
    "\x00", "\t", "\n", "\r\n", "../../etc/passwd", "..\\..\\windows\\win.ini", "/etc/passwd",
    "....//....//", "//evil.example", "https://evil.example/", "http:evil.example",
    "/\\evil.example", "\\\\evil.example", "/%2F%2Fevil.example", "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>", "Enqueued", "failed", "FAILED", "default",
    "full", "7", "1", "20", "500", "requeue", "trigger", "remove", "dashboard.js",
    "dashboard.css", "favicon.svg", "\u202e", "\ufeff", "\uffff", "\U0010ffff",
    "x" * 5000, "nightly/report", *PAYLOADS[:-1],
]
#: Percent-escapes sent as they are: bad UTF-8, an encoded surrogate, encoded NUL and slash.
RAW_ESCAPES = ["%ff", "%ed%a0%80", "%00", "%2e%2e%2f%2e%2e%2f", "%c0%ae%c0%ae/", "%", "%zz"]
RANDOM_ALPHABET = ("abcXYZ0123456789-_./\\%&=?#;:'\"<>`{}()[]|!@$^*~+ \t\x00\x01\x7f"
                   "\u00e9\u0130\u202e\u200b\ufeff\u4e2d\U0001f600")


def fuzz_value(rng: random.Random) -> tuple[str, str]:
    """Return a value and its query-string form (percent-encoded unless raw)."""
    roll = rng.random()
    if roll < 0.08:
        raw = rng.choice(RAW_ESCAPES)
        return raw, raw
    if roll < 0.55:
        value = rng.choice(FUZZ_VALUES)
    else:
        value = "".join(rng.choice(RANDOM_ALPHABET) for _ in range(rng.randint(0, 40)))
    return value, quote(value, safe="")


def fuzz_request(rng: random.Random, template: str, params: list[str],
                 ) -> tuple[str, list[str]]:
    """Return one fuzzed path with its query, and the decoded values it carries."""
    values: list[str] = []
    path = template
    if "{}" in template:
        value, encoded = fuzz_value(rng)
        if rng.random() < 0.1:
            encoded = rng.choice(["../../etc/passwd", "..%2f..%2fapp.py", "a/b", "%2e%2e/x"])
        path = template.replace("{}", encoded)
        values.append(value)
    pairs = []
    for name in rng.sample(params, k=min(len(params), rng.randint(2, 6))):
        for _ in range(2 if rng.random() < 0.2 else 1):
            value, encoded = fuzz_value(rng)
            pairs.append(f"{quote(name)}={encoded}")
            values.append(value)
    if rng.random() < 0.1:
        pairs.append("page&size=&=x&%=1")
    return path + ("?" + "&".join(pairs) if pairs else ""), values


@pytest.mark.parametrize(("template", "params", "allowed"), FUZZ_ROUTES,
                         ids=[route[0] for route in FUZZ_ROUTES])
def test_fuzz_route(probe: Probe, template: str, params: list[str], allowed: set[int]) -> None:
    rng = random.Random(f"{FUZZ_SEED}:{template}")
    failures: list[str] = []
    sent = 0
    while sent < VALUES_PER_ROUTE:
        path, values = fuzz_request(rng, template, params)
        sent += len(values)
        response = probe.client.get(path, follow_redirects=False)
        failures += fuzz_failures(path, values, response, allowed)

    assert failures == [], "\n".join(failures[:10])


def fuzz_failures(path: str, values: list[str], response: Any, allowed: set[int]) -> list[str]:
    status = response.status_code
    if status not in allowed:
        return [f"GET {path[:200]!r}: status {status}: {response.text[:200]!r}"]
    if 300 <= status < 400 and offsite(response.headers.get("location", ""), path):
        return [f"GET {path[:200]!r}: redirect off-site to {response.headers['location']!r}"]
    if is_html(response):
        reflected = tuple(value for value in values if len(value) >= 6)
        return [f"GET {path[:200]!r}: {problem}"
                for problem in markup_problems(response.text, reflected)]
    return []


# -- open redirects through an action's "next" -------------------------------------------


def test_action_next_stays_inside(probe: Probe) -> None:
    rng = random.Random(FUZZ_SEED)
    client = probe.client
    client.get("/")
    token = client.cookies.get("backburner_csrf")
    before = snapshot(probe.app)
    targets = [*FUZZ_VALUES, *RAW_ESCAPES, "/\t/evil.example", "/ /evil.example",
               "/..//evil.example", "/.%2e//evil.example", "/\x7f/evil.example",
               "/?next=//evil.example", "/jobs/failed#//evil.example", "\u3002evil.example"]
    targets += [fuzz_value(rng)[0] for _ in range(100)]
    failures = []
    for index, target in enumerate(targets):
        action = "/actions/requeue" if index % 2 else "/actions/recurring/pause"
        response = client.post(action, data={"csrf_token": token, "ids": ["no-such-id"],
                                             "next": target}, follow_redirects=False)
        location = response.headers.get("location", "")
        if response.status_code != 303 or offsite(location, action):
            failures.append(f"POST {action} next={target[:80]!r}: {response.status_code} "
                            f"{location[:120]!r}")

    assert failures == [], "\n".join(failures[:10])
    assert snapshot(probe.app) == before


# -- forged state-changing requests -----------------------------------------------------


@dataclass
class Forgery:
    """One way to forge a state-changing request."""

    name: str
    #: own: the client's cookie token; other: another session's; none: no token.
    token: str = "own"
    headers: dict[str, str] = field(default_factory=dict)
    client: tuple[str, int] = LOCAL
    options: dict[str, Any] = field(default_factory=dict)
    drop_cookie: bool = False


def basic(name: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


ROLES = {"authorization": basic_auth({"admin": "a-pass"}, read_only_users={"viewer": "v-pass"})}
FORGERIES = [
    Forgery("no token", token="none"),
    Forgery("another session's token", token="other"),
    Forgery("token without cookie", drop_cookie=True),
    Forgery("cross-site origin", headers={"Origin": "https://evil.example"}),
    Forgery("null origin", headers={"Origin": "null"}),
    Forgery("origin on another port", headers={"Origin": "http://127.0.0.1:8081"}),
    Forgery("sec-fetch-site cross-site", headers={"Sec-Fetch-Site": "cross-site"}),
    Forgery("sec-fetch-site same-site", headers={"Sec-Fetch-Site": "same-site"}),
    Forgery("remote client", client=REMOTE),
    Forgery("remote client claiming loopback", client=REMOTE,
            headers={"X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1"}),
    Forgery("read-only dashboard", options={"read_only": True}),
    Forgery("read-only user", options=ROLES, headers=basic("viewer", "v-pass")),
    Forgery("wrong password", options=ROLES, headers=basic("admin", "wrong")),
    Forgery("cross-site referer", headers={"Referer": "https://evil.example/x"}),
    Forgery("DNS rebinding", headers={"Host": "evil.example:8000",
                                      "Origin": "http://evil.example:8000"}),
]


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Backburner]:
    app = make_app(tmp_path)
    seed(app)
    app.recurring.add_or_update("nightly/report", "tests.add", "0 9 * * *", args=[1, 2])
    app.recurring.add_or_update("paused", "tests.add", "@hourly", args=[1, 2])
    app.recurring.pause("paused")
    yield app
    app.close()


def post_ids(app: Backburner, kind: str) -> list[str]:
    if kind == "recurring":
        return [record.id for record in app.storage.list_recurring()]
    return list(snapshot(app)["jobs"])


def send_mutation(client: TestClient, path: str, kind: str, body: str, ids: list[str],
                  token: str | None, headers: dict[str, str]) -> Any:
    if body == "json":
        extra = {"X-CSRF-Token": token} if token else {}
        return client.post(path, json={"ids": ids}, headers={**headers, **extra},
                           follow_redirects=False)
    data: dict[str, Any] = {"ids": ids, "next": "/"}
    if token:
        data["csrf_token"] = token
    return client.post(path, data=data, headers=headers, follow_redirects=False)


def forged_token(app: Any, forgery: Forgery, client: TestClient) -> str | None:
    """Load a page as a local client would and return the token the forgery submits."""
    auth = basic("admin", "a-pass") if forgery.options is ROLES else {}
    with TestClient(app, client=LOCAL, base_url=ORIGIN) as local:
        local.get("/", headers=auth)
        own = local.cookies.get("backburner_csrf")
        with TestClient(app, client=LOCAL, base_url=ORIGIN) as other_session:
            other_session.get("/", headers=auth)
            other = other_session.cookies.get("backburner_csrf")
    assert own, "the dashboard set no CSRF cookie"
    assert other, "the dashboard set no CSRF cookie for the second session"
    assert own != other
    if not forgery.drop_cookie:
        client.cookies.set("backburner_csrf", own)
    return {"own": own, "other": other, "none": None}[forgery.token]


@pytest.mark.parametrize("forgery", FORGERIES,
                         ids=lambda forgery: forgery.name)
def test_forged_post_rejected(fresh: Backburner, forgery: Forgery) -> None:
    dashboard = fresh.dashboard(**forgery.options)
    before = snapshot(fresh)
    statuses = {}
    with TestClient(dashboard, client=forgery.client, base_url=ORIGIN) as client:
        token = forged_token(dashboard, forgery, client)
        for path, kind, body in MUTATION_ROUTES:
            ids = post_ids(fresh, kind)
            response = send_mutation(client, path, kind, body, ids, token, forgery.headers)
            statuses[path] = response.status_code

    assert {path: status for path, status in statuses.items()
            if status not in (400, 401, 403)} == {}
    assert snapshot(fresh) == before


@pytest.mark.parametrize(("path", "kind", "body"), MUTATION_ROUTES,
                         ids=[route[0] for route in MUTATION_ROUTES])
def test_genuine_post_changes(fresh: Backburner, path: str, kind: str, body: str) -> None:
    """The control for the forgeries: the same request with a valid token does act."""
    before = snapshot(fresh)
    dashboard = fresh.dashboard()
    with TestClient(dashboard, client=LOCAL, base_url=ORIGIN) as client:
        token = forged_token(dashboard, Forgery("genuine"), client)
        response = send_mutation(client, path, kind, body, post_ids(fresh, kind), token,
                                 {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"})

    assert response.status_code in (200, 303), response.text
    assert snapshot(fresh) != before


# -- lone surrogates in job data ------------------------------------------------------------


def surrogate_in_arguments(app: Backburner) -> list[str]:
    job_id = app.enqueue("tests.echo", SURROGATE)
    return [f"/jobs/details/{job_id}", f"/api/jobs/{job_id}", "/jobs/enqueued",
            "/jobs/enqueued/default", "/api/jobs?state=Enqueued"]


def surrogate_in_traceback(app: Backburner) -> list[str]:
    job_id = app.options(queue="probe").enqueue("tests.echo", 1)
    record = run_one(app, "probe")
    try:
        raise RuntimeError(SURROGATE)
    except RuntimeError as exc:
        error = exc
    machine = app.state_machine
    assert machine.apply([machine.failed(record, error, None)]) == [True]
    return [f"/jobs/details/{job_id}", f"/api/jobs/{job_id}", "/jobs/failed"]


def surrogate_in_server_info(app: Backburner) -> list[str]:
    app.storage.announce_server("probe-server", ["default"], 1, {"host": SURROGATE})
    return ["/servers", "/", "/api/servers"]


@pytest.mark.parametrize("put", [
    surrogate_in_arguments, surrogate_in_traceback, surrogate_in_server_info,
], ids=["arguments", "traceback", "server info"])
def test_surrogate_no_500(app: Backburner, put: Any) -> None:
    seed(app)
    paths = put(app)
    with TestClient(app.dashboard(), client=LOCAL, base_url=ORIGIN,
                    raise_server_exceptions=False) as client:
        statuses = {path: client.get(path).status_code for path in paths}

    assert {path: status for path, status in statuses.items() if status >= 500} == {}


def test_dns_rebinding_get_rejected(app: Backburner) -> None:
    seed(app)
    with TestClient(app.dashboard(), client=LOCAL, base_url=ORIGIN) as client:
        response = client.get("/", headers={"Host": "evil.example:8000"})

    assert response.status_code in (400, 403)



# -- headless Chromium on hostile data ---------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: Records CSP violations where the page's own script cannot hide them.
CSP_LISTENER = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
  (event) => window.__violations.push(event.violatedDirective + " " + event.blockedURI));
"""


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return "playwright or uvicorn is not installed"
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing; install it with apt-get install chromium"
    return None


def serve(app: Backburner) -> tuple[Any, threading.Thread, str]:
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(app.dashboard(poll_interval=0.5), host="127.0.0.1", port=port,
                            log_level="warning", proxy_headers=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def browser_paths(probe: Probe, crawled: Crawl) -> list[str]:
    """Return every list page plus one page per hostile job and recurring job."""
    lists = [path for path, status in crawled.statuses.items()
             if status == 200 and "?" not in path and not path.startswith(
                 ("/jobs/details/", "/api/", "/metrics", "/static/"))]
    details = [f"/jobs/details/{quote(job_id, safe='')}" for job_id in probe.hostile.job_ids]
    recurring = ["/recurring/details?" + urlencode({"id": recurring_id})
                 for recurring_id in probe.hostile.recurring_ids]
    searches = ["/search?" + urlencode({"q": payload}) for payload in PAYLOADS[:5]]
    return [*lists, *details[::6], *recurring[::2], *searches,
            "/recurring?done=trigger&changed=1&job=" + quote(probe.hostile.job_ids[0])]


def record_dialog(dialog: Any, dialogs: list[str]) -> None:
    dialogs.append(dialog.message)
    dialog.dismiss()


@pytest.mark.skipif(_browser_missing() is not None, reason=_browser_missing() or "")
def test_browser_runs_no_script(probe: Probe, crawled: Crawl) -> None:
    from playwright.sync_api import sync_playwright

    server, thread, url = serve(probe.app)
    dialogs: list[str] = []
    violations: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.add_init_script(CSP_LISTENER)
            page.on("dialog", lambda dialog: record_dialog(dialog, dialogs))
            page.on("console", lambda message: violations.append(message.text)
                    if "Content Security Policy" in message.text else None)
            for path in browser_paths(probe, crawled):
                page.goto(url + path, wait_until="load")
                violations += [f"{path}: {item}" for item in page.evaluate("window.__violations")]
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)

    assert dialogs == []
    assert violations == []
