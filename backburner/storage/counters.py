"""Counter names and history buckets, shared by every backend."""

from __future__ import annotations

from backburner import states

#: Entering these states adds one to the named counter. A failure that is
#: retried enters Scheduled instead of Failed, so it is not counted.
COUNTED_STATES = {states.SUCCEEDED: "succeeded", states.FAILED: "failed",
                  states.DELETED: "deleted"}

#: Bucket width and how long buckets are kept, in seconds, per resolution.
RESOLUTIONS = {"minute": (60, 24 * 3600), "hour": (3600, 30 * 24 * 3600)}


def buckets(now: float) -> list[tuple[str, float, float]]:
    """Return (resolution, bucket start, expiry time) for every history bucket of ``now``."""
    return [(resolution, now - now % width, now + keep)
            for resolution, (width, keep) in RESOLUTIONS.items()]


def check_resolution(resolution: str) -> None:
    """Raise ValueError unless ``resolution`` is "minute" or "hour"."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"invalid counter resolution {resolution!r}; use 'minute' or 'hour'")
