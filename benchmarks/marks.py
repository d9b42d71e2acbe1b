"""Job-side timing: each benchmark job appends one line to a file shared by all processes.

The file is named by the environment variable BENCH_MARKS. Each line is
``index enqueued_at started_at`` (seconds since the epoch), written with one
``os.write`` on an ``O_APPEND`` descriptor, so lines from several threads and
processes never interleave.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_descriptor: int | None = None
_descriptor_pid: int | None = None


def mark(index: int, enqueued_at: float) -> None:
    """Append this job's index, its enqueue time and the current time to the marks file."""
    started_at = time.time()
    descriptor = _open()
    if descriptor is not None:
        os.write(descriptor, f"{index} {enqueued_at!r} {started_at!r}\n".encode())


def _open() -> int | None:
    global _descriptor, _descriptor_pid

    path = os.environ.get("BENCH_MARKS")
    if path is None:
        return None
    if _descriptor is None or _descriptor_pid != os.getpid():
        _descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _descriptor_pid = os.getpid()
    return _descriptor


@dataclass(frozen=True)
class Mark:
    """One job run as recorded by ``mark``."""

    index: int
    enqueued_at: float
    started_at: float


def read_marks(path: str) -> list[Mark]:
    """Return the complete lines of the marks file at ``path``, or none if it does not exist."""
    try:
        with open(path, encoding="ascii") as file:
            text = file.read()
    except FileNotFoundError:
        return []

    marks = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # a line still being written
        index, enqueued_at, started_at = line.split()
        marks.append(Mark(int(index), float(enqueued_at), float(started_at)))
    return marks
