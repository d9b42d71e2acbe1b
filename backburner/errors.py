"""Exceptions raised by backburner.

::

    BackburnerError
    ├── ConfigurationError        invalid setting, storage URL or registration
    ├── JobNotRegistered          enqueue of a function the app does not know
    ├── InvalidArguments          arguments that JSON with tags cannot carry
    │   └── PayloadTooLarge       encoded arguments over the size limit
    ├── InvalidPayload            stored job data that does not decode
    ├── JobNotFound               no job with that id (or it expired)
    ├── StorageError              the storage failed or is unreachable
    └── JobTimeout                a job ran longer than its timeout
"""

from __future__ import annotations


class BackburnerError(Exception):
    """Base class of every error raised by backburner."""


class ConfigurationError(BackburnerError, ValueError):
    """Raised for an invalid setting, storage URL, queue name or job option."""


class JobNotRegistered(BackburnerError, LookupError):
    """Raised when a job function is not registered with the app."""


class InvalidArguments(BackburnerError, TypeError):
    """Raised at enqueue when an argument cannot be stored as tagged JSON."""


class PayloadTooLarge(InvalidArguments):
    """Raised at enqueue when the encoded arguments exceed the size limit."""


class InvalidPayload(BackburnerError, ValueError):
    """Raised when stored job data does not decode (corrupt or hostile rows)."""


class JobNotFound(BackburnerError, LookupError):
    """Raised when no job has the requested id; it may have expired."""


class StorageError(BackburnerError):
    """Raised when the storage fails or cannot be reached."""


class JobTimeout(BackburnerError, TimeoutError):
    """Raised inside the state machine when a job exceeds its timeout."""
