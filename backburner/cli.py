"""The ``backburner`` command line."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import json
import logging
import os
import sys
from typing import Any

import click

from backburner import serialization, states
from backburner.app import Backburner
from backburner.errors import BackburnerError
from backburner.job import Job
from backburner.storage import DEFAULT_STORAGE_URL, Storage, open_storage

logger = logging.getLogger(__name__)

APP_HELP = ("Application as MODULE:ATTR (or MODULE, whose attribute 'app' is used), imported "
            "from the current directory. Env: BACKBURNER_APP.")
STORAGE_HELP = ("Storage URL, overriding the app's. Default: the app's URL, else "
                f"{DEFAULT_STORAGE_URL}. Env: BACKBURNER_STORAGE_URL.")


def load_app(target: str) -> Backburner:
    """Import ``MODULE:ATTR`` (or ``MODULE`` with an ``app`` attribute) and return the app."""
    module_name, _, attribute = target.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import module {module_name!r}: {exc}",
                                 param_hint="--app") from None
    app = getattr(module, attribute or "app", None)
    if not isinstance(app, Backburner):
        raise click.BadParameter(
            f"{target!r} is not a Backburner app: module {module_name!r} has no attribute "
            f"{attribute or 'app'!r} holding one", param_hint="--app")
    return app


def _storage(storage_url: str | None) -> Storage:
    return open_storage(storage_url or DEFAULT_STORAGE_URL)


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class _Group(click.Group):
    """A command group that reports backburner errors as messages, not tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BackburnerError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="backburner")
def main() -> None:
    """backburner: background jobs for Python."""


@main.command()
@click.option("--app", "app_target", envvar="BACKBURNER_APP", required=True, help=APP_HELP)
@click.option("--queues", default="default", show_default=True,
              help="Comma-separated queues to serve, highest priority first.")
@click.option("--workers", type=click.IntRange(1, 1000), default=None,
              help="Worker threads (jobs run at once). Default: 5 per CPU, at most 20.")
@click.option("--storage", "storage_url", envvar="BACKBURNER_STORAGE_URL", help=STORAGE_HELP)
@click.option("--shutdown-timeout", type=click.FloatRange(0), default=15.0, show_default=True,
              help="Seconds to let running jobs finish after SIGTERM or SIGINT before they "
                   "are put back in their queues.")
@click.option("--log-level", envvar="BACKBURNER_LOG_LEVEL", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              help="Logging level. Env: BACKBURNER_LOG_LEVEL.")
def server(app_target: str, queues: str, workers: int | None, storage_url: str | None,
           shutdown_timeout: float, log_level: str) -> None:
    """Run a server that performs jobs until SIGTERM or SIGINT (a second signal exits at once)."""
    _configure_logging(log_level)
    app = load_app(app_target)
    if storage_url:
        app.use_storage(storage_url)
    queue_list = [q.strip() for q in queues.split(",") if q.strip()]
    try:
        code = app.server(queues=queue_list, workers=workers,
                          shutdown_timeout=shutdown_timeout).run()
    except BackburnerError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


@main.command()
@click.argument("name")
@click.option("--app", "app_target", envvar="BACKBURNER_APP", required=True, help=APP_HELP)
@click.option("--args", "args_json", default="[]", show_default=True,
              help="Positional arguments as a JSON array.")
@click.option("--kwargs", "kwargs_json", default="{}", show_default=True,
              help="Keyword arguments as a JSON object.")
@click.option("--queue", default=None, help="Queue to use instead of the function's own.")
@click.option("--delay", type=click.FloatRange(0), default=None,
              help="Seconds to wait before the job is enqueued (creates a Scheduled job).")
@click.option("--storage", "storage_url", envvar="BACKBURNER_STORAGE_URL", help=STORAGE_HELP)
def enqueue(name: str, app_target: str, args_json: str, kwargs_json: str, queue: str | None,
            delay: float | None, storage_url: str | None) -> None:
    """Enqueue a call of the job function registered as NAME and print the job id."""
    app = load_app(app_target)
    if storage_url:
        app.use_storage(storage_url)
    args = _parse_json(args_json, list, "--args", "a JSON array, e.g. '[1, \"a\"]'")
    kwargs = _parse_json(kwargs_json, dict, "--kwargs", "a JSON object, e.g. '{\"x\": 1}'")
    try:
        job_id = app.options(queue=queue, delay=delay).enqueue(name, *args, **kwargs)
    except BackburnerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(job_id)


def _parse_json(text: str, kind: type, option: str, expected: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not valid JSON ({exc}); pass {expected}",
                                 param_hint=option) from None
    if not isinstance(value, kind):
        raise click.BadParameter(f"{text!r} is not {expected}", param_hint=option)
    return value


@main.group()
def jobs() -> None:
    """List, show, requeue and delete jobs."""


@jobs.command("list")
@click.option("--state", "state", default=states.ENQUEUED, show_default=True,
              type=click.Choice(states.ALL_STATES, case_sensitive=False),
              help="State of the jobs to list.")
@click.option("--queue", default=None, help="Only jobs of this queue.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="Maximum number of jobs to print.")
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True,
              help="Jobs to skip, for paging.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@click.option("--storage", "storage_url", envvar="BACKBURNER_STORAGE_URL", help=STORAGE_HELP)
def list_jobs(state: str, queue: str | None, limit: int, offset: int, as_json: bool,
              storage_url: str | None) -> None:
    """List jobs in one state (newest first; enqueued and scheduled in run order)."""
    state = next(s for s in states.ALL_STATES if s.lower() == state.lower())
    storage = _storage(storage_url)
    records = storage.list_jobs(state, queue=queue, offset=offset, limit=limit)
    for record in records:
        job = Job.from_record(record)
        if as_json:
            click.echo(json.dumps(_job_summary(job)))
        else:
            click.echo(f"{job.id}  {job.state:<10}  {job.queue:<12}  "
                       f"{job.state_changed_at:%Y-%m-%d %H:%M:%S}Z  {job.function}")
    if len(records) == limit and not as_json:
        click.echo(f"(showing {limit} jobs from offset {offset}; use --limit and --offset "
                   "for more)", err=True)


@jobs.command("show")
@click.argument("job_id")
@click.option("--storage", "storage_url", envvar="BACKBURNER_STORAGE_URL", help=STORAGE_HELP)
def show_job(job_id: str, storage_url: str | None) -> None:
    """Print a job, its arguments and its state history as JSON."""
    record = _storage(storage_url).get_job(job_id)
    if record is None:
        raise click.ClickException(f"job {job_id!r} not found; it may have expired")
    job = Job.from_record(record)
    summary = _job_summary(job)
    summary["history"] = [{"state": h.state, "at": h.at.isoformat(), "reason": h.reason,
                           "data": h.data} for h in job.history]
    click.echo(json.dumps(summary, indent=2, default=str))


@jobs.command("requeue")
@click.argument("job_id")
@click.option("--storage", "storage_url", envvar="BACKBURNER_STORAGE_URL", help=STORAGE_HELP)
def requeue_job(job_id: str, storage_url: str | None) -> None:
    """Put a job back in its queue, whatever its state."""
    app = Backburner(storage_url)
    if not app.requeue(job_id):
        raise click.ClickException(f"job {job_id!r} not found; it may have expired")
    click.echo(f"requeued {job_id}")


@jobs.command("delete")
@click.argument("job_id")
@click.option("--storage", "storage_url", envvar="BACKBURNER_STORAGE_URL", help=STORAGE_HELP)
def delete_job(job_id: str, storage_url: str | None) -> None:
    """Move a job to Deleted (a running job is cancelled at its server's next heartbeat)."""
    app = Backburner(storage_url)
    if not app.delete(job_id):
        raise click.ClickException(f"job {job_id!r} not found or already deleted")
    click.echo(f"deleted {job_id}")


@main.group()
def recurring() -> None:
    """List, trigger, pause, resume and remove recurring jobs."""


@recurring.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@click.option("--storage", "storage_url", envvar="BACKBURNER_STORAGE_URL", help=STORAGE_HELP)
def list_recurring(as_json: bool, storage_url: str | None) -> None:
    """List recurring jobs with their schedule, next and last run."""
    for job in Backburner(storage_url).recurring.list():
        if as_json:
            click.echo(json.dumps(dataclasses.asdict(job), default=str))
            continue
        status = "active"
        if job.paused:
            status = "paused"
        elif job.disabled:
            status = "disabled"
        next_run = f"{job.next_at:%Y-%m-%d %H:%M:%S}Z" if job.next_at else "never"
        click.echo(f"{job.id}  {job.cron!r} ({job.tz}, {job.description})  next {next_run}  "
                   f"{status}  {job.function}")
        if job.error:
            click.echo(f"    error: {job.error}")


def _recurring_action(name: str, help_text: str) -> None:
    @recurring.command(name, help=help_text)
    @click.argument("recurring_id")
    @click.option("--storage", "storage_url", envvar="BACKBURNER_STORAGE_URL",
                  help=STORAGE_HELP)
    def command(recurring_id: str, storage_url: str | None) -> None:
        manager = Backburner(storage_url).recurring
        try:
            if name == "trigger":
                click.echo(manager.trigger(recurring_id))
            elif name == "remove":
                removed = manager.remove(recurring_id)
                click.echo(f"removed {recurring_id}" if removed else
                           f"recurring job {recurring_id!r} did not exist")
            else:
                getattr(manager, name)(recurring_id)
                click.echo(f"{name}d {recurring_id}")
        except BackburnerError as exc:
            raise click.ClickException(str(exc)) from None


_recurring_action("trigger", "Enqueue a recurring job's call now and print the job id; the "
                             "schedule is unchanged.")
_recurring_action("pause", "Stop a recurring job from creating jobs until it is resumed.")
_recurring_action("resume", "Resume a paused recurring job from its next occurrence after now.")
_recurring_action("remove", "Remove a recurring job; jobs it created are kept. No error if "
                            "it does not exist.")


@main.command()
@click.argument("expression")
@click.option("--tz", default="UTC", show_default=True,
              help="Time zone: an IANA name such as Europe/Berlin, or a Windows id.")
@click.option("--count", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Number of occurrences to print.")
def cron(expression: str, tz: str, count: int) -> None:
    """Describe a cron EXPRESSION and print its next occurrences.

    5 fields (minute hour day-of-month month day-of-week), or 6 with leading
    seconds, or a macro such as @daily. When both day fields are restricted,
    a day matches if either matches, as in standard cron.
    """
    from backburner.recurring import parse_schedule

    try:
        schedule = parse_schedule(expression, tz)
    except BackburnerError as exc:
        raise click.BadParameter(str(exc), param_hint="EXPRESSION or --tz") from None
    click.echo(f"{expression}: {schedule.describe()} ({schedule.tz})")
    now = dt.datetime.now(dt.timezone.utc)
    occurrences = schedule.occurrences(now, count)
    if not occurrences:
        click.echo("never fires: the expression has no future occurrence")
    for occurrence in occurrences:
        click.echo(f"  {occurrence.isoformat()}  ({occurrence.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC)")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--storage", "storage_url", envvar="BACKBURNER_STORAGE_URL", help=STORAGE_HELP)
def stats(as_json: bool, storage_url: str | None) -> None:
    """Print jobs per state, queue lengths, totals and servers."""
    storage = _storage(storage_url)
    now = storage.now()
    servers: list[dict[str, Any]] = [{"id": s.id, "queues": list(s.queues), "workers": s.workers,
                "heartbeat_age_seconds": round(now - s.heartbeat_at, 1)}
               for s in storage.list_servers()]
    by_state, queues = storage.count_jobs_by_state(), storage.queue_lengths()
    totals = storage.counter_totals()
    if as_json:
        click.echo(json.dumps({"states": by_state, "queues": queues, "totals": totals,
                               "servers": servers}, indent=2))
        return
    click.echo("jobs:    " + "  ".join(f"{k} {v}" for k, v in by_state.items()))
    click.echo("queues:  " + ("  ".join(f"{k} {v}" for k, v in queues.items()) or "(all empty)"))
    click.echo("totals:  " + "  ".join(f"{k} {v}" for k, v in totals.items()))
    click.echo(f"servers: {len(servers)}")
    for item in servers:
        click.echo(f"  {item['id']}  workers {item['workers']}  queues "
                   f"{','.join(item['queues'])}  heartbeat {item['heartbeat_age_seconds']} s ago")


@main.command()
@click.option("--dir", "directory", default="backburner-demo", show_default=True,
              type=click.Path(file_okay=False),
              help="Folder for the demo database and report (created if missing).")
@click.option("--source", default=None, type=click.Path(exists=True, file_okay=False),
              help="Folder of files to analyse. Default: the Python standard library.")
@click.option("--limit", type=click.IntRange(1), default=600, show_default=True,
              help="Maximum number of files to analyse, one job each.")
@click.option("--workers", type=click.IntRange(1, 1000), default=None,
              help="Worker threads. Default: 5 per CPU, at most 20.")
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="TCP port of the dashboard on 127.0.0.1. A free port is used when this one "
                   "is taken, and 0 always picks a free one.")
@click.option("--no-dashboard", is_flag=True, help="Do not serve the dashboard.")
@click.option("--keep-open", is_flag=True,
              help="Keep the dashboard and the server running after the jobs end, until Ctrl-C.")
def demo(directory: str, source: str | None, limit: int, workers: int | None,
         dashboard_port: int, no_dashboard: bool, keep_open: bool) -> None:
    """Run a demo workload on embedded SQLite: analyse real files, one job per file."""
    from backburner.demo import run_demo

    sys.exit(run_demo(directory=directory, source=source, limit=limit, workers=workers,
                      dashboard_port=None if no_dashboard else dashboard_port,
                      keep_open=keep_open))


def _job_summary(job: Job) -> dict[str, Any]:
    def iso(value: dt.datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {"id": job.id, "function": job.function, "state": job.state, "queue": job.queue,
            # Tagged JSON: valid JSON for every argument, bytes and NaN included.
            "args": json.loads(serialization.dumps(job.args)),
            "kwargs": json.loads(serialization.dumps(job.kwargs)),
            "created_at": iso(job.created_at),
            "state_changed_at": iso(job.state_changed_at), "attempt": job.attempt,
            "retry_count": job.retry_count, "parent_id": job.parent_id,
            "due_at": iso(job.due_at), "payload_error": job.payload_error}


@main.command()
@click.option("--app", "app_target", envvar="BACKBURNER_APP", required=True, help=APP_HELP)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Remote clients are rejected: to let them in, mount "
                   "app.dashboard(authorization=...) in your own ASGI app.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="TCP port to listen on.")
@click.option("--storage", "storage_url", envvar="BACKBURNER_STORAGE_URL", help=STORAGE_HELP)
@click.option("--root-path", default="", help="Path prefix when served behind a proxy "
                                             "under a sub-path, such as /jobs.")
@click.option("--read-only", is_flag=True, help="Hide actions and reject them for everyone.")
@click.option("--secret", envvar="BACKBURNER_DASHBOARD_SECRET", default=None,
              help="Key that signs CSRF tokens; give every dashboard process behind one load "
                   "balancer the same value. Env: BACKBURNER_DASHBOARD_SECRET.")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True,
              help="Address or network of a reverse proxy whose X-Forwarded-For header "
                   "names the client. Repeat for several.")
@click.option("--allowed-host", "allowed_hosts", multiple=True,
              help="Another name of this machine that browsers may open the dashboard by "
                   "(besides localhost and its addresses). Repeat for several.")
@click.option("--log-level", envvar="BACKBURNER_LOG_LEVEL", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              help="Logging level. Env: BACKBURNER_LOG_LEVEL.")
def dashboard(app_target: str, host: str, port: int, storage_url: str | None, root_path: str,
              read_only: bool, secret: str | None, trusted_proxies: tuple[str, ...],
              allowed_hosts: tuple[str, ...], log_level: str) -> None:
    """Serve the web dashboard with uvicorn (local requests only)."""
    import uvicorn

    from backburner.dashboard import local_requests_only

    _configure_logging(log_level)
    app = load_app(app_target)
    if storage_url:
        app.use_storage(storage_url)
    try:
        hooks = [local_requests_only(trusted_proxies=trusted_proxies,
                                     allowed_hosts=allowed_hosts)]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--trusted-proxy") from None
    asgi_app = app.dashboard(authorization=hooks, read_only=read_only, secret=secret)
    click.echo(f"backburner dashboard on http://{host}:{port}{root_path}/ "
               f"(storage {app.storage.describe()})")
    # proxy_headers=False: the client address is the TCP peer, so a forwarded
    # header counts only through --trusted-proxy.
    uvicorn.run(asgi_app, host=host, port=port, root_path=root_path, proxy_headers=False,
                log_level=log_level.lower())


@main.command()
@click.option("--storage", "storage_url", envvar="BACKBURNER_STORAGE_URL", help=STORAGE_HELP)
def migrate(storage_url: str | None) -> None:
    """Apply pending PostgreSQL schema migrations and print the schema version.

    Servers and clients also apply them on first use. Run this to migrate
    before a deployment, or with database rights the application lacks.
    """
    storage = _storage(storage_url)
    try:
        if not hasattr(storage, "migrate") or not hasattr(storage, "schema_version"):
            click.echo(f"{storage.describe()}: nothing to migrate (this storage sets up its "
                       "schema when it is opened)")
            return
        before = storage.schema_version()
        after = storage.migrate()
    except BackburnerError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        storage.close()
    applied = f"applied {after - before} migration(s)" if after > before else "up to date"
    click.echo(f"{storage.describe()}: schema version {after} ({applied})")
