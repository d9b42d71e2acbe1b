"""Helpers for the outside probe of the dashboard: hostile data, an HTML link parser and checks.

The probe seeds a storage with hostile values in every field a job, a
recurring job or a server controls, then checks that no page writes one of
them into its HTML as markup.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from dashboard_helpers import add_raw_job, add_raw_recurring, run_one

from backburner import Backburner
from backburner.recurring import MAX_ERRORS
from backburner.retry import RetryPolicy

#: Evaluates to this text only if a template engine runs the payload as a template.
TEMPLATE_CANARY = "zqjx"

#: Hostile strings for every job-controlled field. Lone surrogates are left out
#: here because the storage cannot hold them in every field; see SURROGATE.
PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "</script><script>alert(1)</script>",
    "</textarea></pre></title><iframe src=javascript:alert(1)>",
    "javascript:alert(1)",
    " JaVaScRiPt:alert(1)",
    "{{ 'zq' ~ 'jx' }}{% raw %}<b>raw</b>{% endraw %}",
    "${7*7}<%= 7*7 %>#{7*7}<object data=x>",
    "\u202eevil\u200b\u200d\ufeff<i>rtl</i>",
    "nul\x00<u>byte</u>",
    "<!--",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "a" * 20_000 + "<b>long</b>",
]
#: A lone surrogate: valid in a Python str, impossible to encode as UTF-8.
SURROGATE = "lone\ud800surrogate"

#: Elements that no dashboard template writes, so any of them is injected markup.
FOREIGN_TAGS = frozenset({"img", "iframe", "object", "embed", "b", "i", "u", "textarea",
                          "style", "base"})
URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "data", "xlink:href"})
CONTROL_OR_SPACE = re.compile(r"[\x00-\x20]+")


# -- HTML parsing ---------------------------------------------------------------------


@dataclass
class Form:
    """One form of a page: where it goes, its method and its fields."""

    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)


class PageParser(HTMLParser):
    """Collect links, forms, scripts and every start tag of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.forms: list[Form] = []
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.inline_script = False
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        values = {name: value or "" for name, value in attrs}
        if tag == "a" and "href" in values:
            self.links.append(values["href"])
        if tag in ("link", "script") and ("href" in values or "src" in values):
            self.links.append(values.get("href") or values["src"])
        if tag == "script":
            self._in_script = True
            self.inline_script = self.inline_script or "src" not in values
        if tag == "form":
            self.forms.append(Form(values.get("action", ""), values.get("method", "get").lower()))
        if tag == "input" and self.forms and "name" in values:
            self.forms[-1].fields.append((values["name"], values.get("value", "")))
        if tag == "button" and "formaction" in values and self.forms:
            self.forms.append(Form(values["formaction"], self.forms[-1].method,
                                   list(self.forms[-1].fields)))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_script = True


def parse_page(html: str) -> PageParser:
    """Parse ``html`` and return the collected links, forms and tags."""
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


def markup_problems(html: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Return every sign that a hostile value became markup in ``html``, or an empty list.

    ``extra`` are more raw values (such as fuzzed query values) that must not
    appear unescaped.
    """
    problems = []
    for value in [*PAYLOADS, *extra]:
        if re.search(r"[<>\"']", value) and value in html:
            problems.append(f"raw value in the page: {value[:60]!r}")
    if TEMPLATE_CANARY in html:
        problems.append("a template expression from the data was evaluated")

    parsed = parse_page(html)
    if parsed.inline_script:
        problems.append("an inline script")
    for tag, attrs in parsed.tags:
        if tag in FOREIGN_TAGS:
            problems.append(f"an injected <{tag}> element")
        for name, attribute in attrs:
            if name.startswith("on"):
                problems.append(f"an event handler attribute {name!r} on <{tag}>")
            cleaned = CONTROL_OR_SPACE.sub("", attribute or "").lower()
            if name in URL_ATTRIBUTES and cleaned.startswith(("javascript:", "data:text")):
                problems.append(f"a script URL in {name}= of <{tag}>: {cleaned[:60]!r}")
    return problems


# -- hostile data ---------------------------------------------------------------------


@dataclass
class HostileSeed:
    """Ids of the jobs and recurring jobs that carry hostile values."""

    job_ids: list[str] = field(default_factory=list)
    recurring_ids: list[str] = field(default_factory=list)


def hostile_error(text: str) -> BaseException:
    """Return a raised exception with ``text`` in its class name, module, message and traceback."""
    name = text[:200].replace("\x00", "") or "Empty"
    kind = type(name, (RuntimeError,), {"__module__": text[:200]})
    try:
        raise kind(text)
    except RuntimeError as exc:
        return exc


def seed_hostile(app: Backburner, payloads: list[str]) -> HostileSeed:
    """Put every payload into every job-controlled field, with jobs in every state."""
    seed = HostileSeed()
    machine = app.state_machine
    app.recurring.add_or_update("nightly/report", "tests.add", "0 9 * * MON-FRI", args=[1, 2],
                                tz="Europe/Berlin")
    seed.job_ids.append(app.recurring.trigger("nightly/report"))
    seed.recurring_ids.append("nightly/report")

    for payload in payloads:
        seed.job_ids.append(add_raw_job(app, function=payload, queue=payload,
                                        payload=json.dumps({"args": [payload], "kwargs": {}})))
        seed.job_ids.append(app.enqueue("tests.echo", payload, note={payload: [payload]}))

        seed.job_ids.append(app.options(queue="probe").enqueue("tests.echo", payload))
        record = run_one(app, "probe", server_id=payload)
        assert machine.apply([machine.failed(record, hostile_error(payload), None)]) == [True]

        seed.job_ids.append(app.options(queue="probe").enqueue("tests.echo", payload))
        record = run_one(app, "probe", server_id=payload)
        policy = RetryPolicy(retries=3, delays=[3600])
        assert machine.apply([machine.failed(record, hostile_error(payload), policy)]) == [True]

        seed.job_ids.append(app.options(queue="probe").enqueue("tests.echo", payload))
        run_one(app, "probe", server_id=payload)

        seed.job_ids.append(app.options(queue="probe").enqueue("tests.echo", payload))
        record = run_one(app, "probe", server_id=payload)
        assert machine.apply([machine.succeeded(record, 0.5, {payload: payload})]) == [True]

        deleted = app.enqueue("tests.echo", payload)
        assert machine.delete(deleted, payload)
        parent = app.schedule(3600, "tests.echo", payload)
        seed.job_ids += [deleted, parent, app.continue_with(parent, "tests.echo", payload)]

        seed.recurring_ids += _hostile_recurring(app, payload)
        app.storage.announce_server(payload, [payload, "default"], 2, {payload: payload})
    return seed


def _hostile_recurring(app: Backburner, payload: str) -> list[str]:
    failing = add_raw_recurring(app, payload, cron=payload, tz=payload, function=payload,
                                queue=payload, errors=1, error=payload)
    disabled = add_raw_recurring(app, payload + " (disabled)", cron="*/5 * * * *", tz=payload,
                                 function=payload, queue=payload, errors=MAX_ERRORS,
                                 error=payload)
    app.recurring.trigger(failing)
    return [failing, disabled]


# -- storage snapshots ----------------------------------------------------------------


def snapshot(app: Backburner) -> dict[str, Any]:
    """Return every job's state and history length and every recurring job's settings."""
    storage = app.storage
    jobs: dict[str, Any] = {}
    for state in ("Enqueued", "Scheduled", "Processing", "Succeeded", "Failed", "Deleted",
                  "Awaiting"):
        for record in storage.list_jobs(state, limit=10_000):
            full = storage.get_job(record.id)
            assert full is not None
            jobs[record.id] = (full.state, len(full.history), full.queue)
    recurring = {record.id: (record.paused, record.next_at, record.last_job_id,
                             record.error_count)
                 for record in storage.list_recurring()}
    return {"jobs": jobs, "recurring": recurring}
