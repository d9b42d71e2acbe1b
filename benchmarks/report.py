"""Report helpers that every benchmark script shares: load average and BENCHMARKS.md sections."""

from __future__ import annotations

import os
from pathlib import Path


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def write_section(path: Path, section: str, start: str, end: str) -> None:
    """Replace the text between the ``start`` and ``end`` markers of ``path``.

    The markers and the section are appended when ``path`` lacks them.
    """
    text = path.read_text() if path.exists() else ""
    block = f"{start}\n\n{section}\n\n{end}"
    if start in text and end in text:
        text = text.split(start, 1)[0] + block + text.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    path.write_text(text)
