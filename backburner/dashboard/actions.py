"""Dashboard actions on jobs; every one goes through the state machine."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backburner.app import Backburner

logger = logging.getLogger(__name__)

#: Action names in URLs and forms, with the past tense shown to the user.
ACTIONS = {"requeue": "requeued", "delete": "deleted", "enqueue-now": "enqueued"}
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

    def as_dict(self) -> dict[str, object]:
        """Return the result for the JSON API."""
        return {"action": self.action, "changed": self.changed, "unchanged": self.unchanged}


def clean_ids(values: Iterable[object]) -> list[str]:
    """Return the distinct non-empty ids in order.

    Raises TypeError for an id that is not a string and ValueError for one that
    is too long or for more than MAX_IDS ids.
    """
    ids: list[str] = []
    seen: set[str] = set()
    for value in values:
        if not isinstance(value, str):
            raise TypeError("job ids must be strings")
        value = value.strip()
        if not value or value in seen:
            continue
        if len(value) > MAX_ID_CHARS:
            raise ValueError(f"job id longer than {MAX_ID_CHARS} characters")
        seen.add(value)
        ids.append(value)
    if len(ids) > MAX_IDS:
        raise ValueError(f"{len(ids)} job ids in one request; the maximum is {MAX_IDS}")
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
