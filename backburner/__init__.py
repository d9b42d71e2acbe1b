"""backburner: background jobs for Python.

>>> from backburner import Backburner
>>> app = Backburner("sqlite:///jobs.db")
>>> @app.job
... def send_email(to: str) -> None: ...
>>> job_id = send_email.enqueue("ada@example.com")
"""

from backburner.app import Backburner, EnqueueOptions
from backburner.context import CancellationToken, JobCancelled, JobContext
from backburner.cron import CronSchedule, InvalidCronExpression, InvalidTimeZone
from backburner.errors import (BackburnerError, ConfigurationError, InvalidArguments,
                               InvalidPayload, JobNotFound, JobNotRegistered, JobTimeout,
                               PayloadTooLarge, StorageError)
from backburner.job import Job, StateRecord
from backburner.recurring import RecurringJob
from backburner.registry import JobCall, JobFunction
from backburner.retry import RetryPolicy
from backburner.server import Server

__all__ = [
    "Backburner", "BackburnerError", "CancellationToken", "ConfigurationError", "CronSchedule",
    "EnqueueOptions", "InvalidArguments", "InvalidCronExpression", "InvalidPayload",
    "InvalidTimeZone", "Job", "JobCall", "JobCancelled",
    "JobContext", "JobFunction", "JobNotFound", "JobNotRegistered", "JobTimeout",
    "PayloadTooLarge", "RecurringJob", "RetryPolicy", "Server", "StateRecord", "StorageError",
]
__version__ = "0.1.0"
