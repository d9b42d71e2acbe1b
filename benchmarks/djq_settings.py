"""Django settings for the Django-Q2 peer: the ORM broker on SQLite, Django-Q2's defaults.

The database file comes from BENCH_DJQ_DB, which the harness sets to a fresh
file for every measurement.
"""

from __future__ import annotations

import os

SECRET_KEY = "benchmark-only-not-secret"
INSTALLED_APPS = ["django_q"]
USE_TZ = True
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_DJQ_DB", "djq-bench.db"),
    },
}
# Only the name and the broker are set, so the worker count defaults to the CPU count.
Q_CLUSTER = {"name": "bench", "orm": "default"}
LOGGING_CONFIG = None
