"""A job function that only the test process registers.

Servers load ``jobapp:app`` without importing this module, so jobs of
``e2e.client_only`` reach them under a name they do not know.
"""

from __future__ import annotations

from jobapp import app


@app.job(name="e2e.client_only", retries=0)
def client_only(value: int) -> int:
    """Return ``value``; a server never has this function registered."""
    return value
