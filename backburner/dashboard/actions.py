"""Dashboard actions on jobs and recurring jobs.

Job actions go through the state machine; recurring job actions go through
``app.recurring``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from backburner.errors import ConfigurationError, JobNotFound

if TYPE_CHECKING:
    from backburner.app import Backburner

logger = logging.getLogger(__name__)

#: Action names in URLs and forms, with the past tense shown to the user.
ACTIONS = {"requeue": "requeued", "delete": "deleted", "enqueue-now": "enqueued"}
#: Recurring job action names in URLs and forms, with the past tense shown to the user.
RECURRING_ACTIONS = {"trigger": "triggered", "pause": "paused", "resume": "resumed",
                     "remove": "removed"}
#: Most job ids one request may act on.
MAX_IDS = 5_000
MAX_ID_CHARS = 200


@dataclass
class ActionResult:
    """The jobs an action changed and the jobs it left as they were."""

    action: str
    changed: list[str] = field(default_factory=list)
    #: Jobs that do not exist, expired, or were in a state the action does not apply to.
    unchanged: list[str] = field(default_factory=list)
    #: For "trigger": the job created for each recurring job id.
    created: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """Return the result for the JSON API."""
        result: dict[str, object] = {"action": self.action, "changed": self.changed,
                                     "unchanged": self.unchanged}
        if self.action == "trigger":
            result["jobs"] = self.created
        return result


def clean_ids(values: Iterable[object], *, strip: bool = True) -> list[str]:
    """Return the distinct non-empty ids in order.

    ``strip=False`` keeps surrounding spaces, which recurring job ids may have.
    Raises TypeError for an id that is not a string and ValueError for one that
    is too long or for more than MAX_IDS ids.
    """
    ids: list[str] = []
    seen: set[str] = set()
    for value in values:
        if not isinstance(value, str):
            raise TypeError("ids must be strings")
        if strip:
            value = value.strip()
        if not value or value in seen:
            continue
        if len(value) > MAX_ID_CHARS:
            raise ValueError(f"id longer than {MAX_ID_CHARS} characters")
        seen.add(value)
        ids.append(value)
    if len(ids) > MAX_IDS:
        raise ValueError(f"{len(ids)} ids in one request; the maximum is {MAX_IDS}")
    return ids


def run_action(app: Backburner, action: str, job_ids: Iterable[str]) -> ActionResult:
    """Apply ``action`` to each job in turn through the state machine."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    machine = app.state_machine
    apply = {"requeue": machine.requeue, "delete": machine.delete,
             "enqueue-now": machine.enqueue_now}[action]
    reason = {"requeue": "Requeued from the dashboard", "delete": "Deleted from the dashboard",
              "enqueue-now": "Enqueued from the dashboard"}[action]

    result = ActionResult(action)
    for job_id in job_ids:
        if apply(job_id, reason):
            result.changed.append(job_id)
        else:
            result.unchanged.append(job_id)
    logger.info("dashboard %s: %d changed, %d unchanged (first ids: %s)", action,
                len(result.changed), len(result.unchanged),
                ", ".join((result.changed + result.unchanged)[:5]))
    return result


def run_recurring_action(app: Backburner, action: str, recurring_ids: Iterable[str],
                         ) -> ActionResult:
    """Apply ``action`` to each recurring job in turn through ``app.recurring``.

    A recurring job counts as unchanged when it does not exist, when pausing
    one already paused, and when resuming one that is not paused (resuming
    recomputes the next run, which would skip a due one).
    """
    if action not in RECURRING_ACTIONS:
        raise ValueError(f"unknown action {action!r}; use one of {', '.join(RECURRING_ACTIONS)}")

    result = ActionResult(action)
    for recurring_id in recurring_ids:
        job_id = _apply_recurring(app, action, recurring_id)
        if job_id is None:
            result.unchanged.append(recurring_id)
            continue
        result.changed.append(recurring_id)
        if action == "trigger":
            result.created[recurring_id] = job_id
    logger.info("dashboard %s recurring: %d changed, %d unchanged (first ids: %s)", action,
                len(result.changed), len(result.unchanged),
                ", ".join(repr(item) for item in (result.changed + result.unchanged)[:5]))
    return result


def _apply_recurring(app: Backburner, action: str, recurring_id: str) -> str | None:
    """Apply one action to one recurring job.

    Return the created job id for "trigger", "" for another change, or None
    when nothing changed.
    """
    recurring = app.recurring
    try:
        if action == "trigger":
            return recurring.trigger(recurring_id)
        if action == "remove":
            return "" if recurring.remove(recurring_id) else None

        record = app.storage.get_recurring(recurring_id)
        if record is None or record.paused == (action == "pause"):
            return None
        if action == "pause":
            recurring.pause(recurring_id)
        else:
            recurring.resume(recurring_id)
        return ""
    except JobNotFound:
        return None
    except ConfigurationError as exc:
        logger.warning("dashboard could not %s recurring job %r: %s", action, recurring_id, exc)
        return None
