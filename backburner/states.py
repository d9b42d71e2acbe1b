"""Job states and the transitions between them."""

from __future__ import annotations

ENQUEUED = "Enqueued"
SCHEDULED = "Scheduled"
AWAITING = "Awaiting"
PROCESSING = "Processing"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
DELETED = "Deleted"

ALL_STATES = (ENQUEUED, SCHEDULED, AWAITING, PROCESSING, SUCCEEDED, FAILED, DELETED)

#: States a job can be created in.
INITIAL_STATES = frozenset({ENQUEUED, SCHEDULED, AWAITING})

#: Final states: they trigger continuations and expire after the retention period.
#: Failed is not final; a failed job waits for an operator to requeue or delete it.
FINAL_STATES = frozenset({SUCCEEDED, DELETED})

#: Legal transitions. Requeue (to Enqueued) is allowed from every state, as in
#: Hangfire; Deleted is reachable from every other state.
TRANSITIONS: dict[str, frozenset[str]] = {
    ENQUEUED: frozenset({PROCESSING, SCHEDULED, ENQUEUED, DELETED}),
    SCHEDULED: frozenset({ENQUEUED, SCHEDULED, DELETED}),
    AWAITING: frozenset({ENQUEUED, DELETED}),
    PROCESSING: frozenset({SUCCEEDED, FAILED, SCHEDULED, ENQUEUED, DELETED}),
    SUCCEEDED: frozenset({ENQUEUED, SCHEDULED, DELETED}),
    FAILED: frozenset({ENQUEUED, SCHEDULED, DELETED}),
    DELETED: frozenset({ENQUEUED, SCHEDULED}),
}

#: When a continuation runs, by its ``on`` option: the parent states that enqueue it.
CONTINUATION_TRIGGERS: dict[str, frozenset[str]] = {
    "succeeded": frozenset({SUCCEEDED}),
    "finished": FINAL_STATES,
    "deleted": frozenset({DELETED}),
}


def sources_of(state: str) -> tuple[str, ...]:
    """Return the states from which a job may move to ``state``."""
    return tuple(source for source, targets in TRANSITIONS.items() if state in targets)


def continuation_outcome(on: str, parent_state: str) -> str | None:
    """Return the state an awaiting continuation moves to when its parent is in ``parent_state``.

    None means the parent is not final yet, so the continuation keeps waiting.
    A parent that ends in a final state the option does not accept deletes the
    continuation, which in turn releases its own continuations.
    """
    if parent_state not in FINAL_STATES:
        return None
    return ENQUEUED if parent_state in CONTINUATION_TRIGGERS[on] else DELETED
