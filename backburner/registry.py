"""Job functions: registration, names and argument checks."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import re
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from backburner.context import JobContext
from backburner.errors import ConfigurationError, InvalidArguments, JobNotRegistered
from backburner.retry import RetryPolicy

if TYPE_CHECKING:
    from backburner.app import Backburner

P = ParamSpec("P")
R = TypeVar("R")

QUEUE_NAME = re.compile(r"[a-z0-9_-]{1,50}")
DEFAULT_QUEUE = "default"


def check_queue_name(queue: object) -> str:
    """Return ``queue`` if it is a valid queue name, else raise ConfigurationError."""
    if not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue):
        raise ConfigurationError(
            f"invalid queue name {queue!r}: use 1 to 50 lowercase letters, digits, '_' or '-'")
    return queue


#: Maximum delay, timeout or retention accepted: 100 years, in seconds.
MAX_SECONDS = 100 * 365.25 * 24 * 3600


def to_seconds(value: float | dt.timedelta | None, what: str) -> float | None:
    """Convert a number of seconds or a timedelta to seconds, rejecting negatives,
    NaN and anything over 100 years."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or \
            not 0 <= seconds <= MAX_SECONDS:
        raise ConfigurationError(
            f"invalid {what} {value!r}: use seconds from 0 to 100 years, or a timedelta")
    return float(seconds)


def to_timestamp(value: dt.datetime, what: str) -> float:
    """Convert an aware datetime to Unix seconds, rejecting naive or far-off times."""
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise ConfigurationError(
            f"invalid {what} {value!r}: use a timezone-aware datetime, e.g. "
            "datetime.now(timezone.utc) + timedelta(minutes=5)")
    try:
        timestamp = value.timestamp()
    except (OverflowError, ValueError, OSError):
        timestamp = -1.0
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ConfigurationError(f"invalid {what} {value!r}: use a time between 1970 and 9999")
    return timestamp


#: 9999-12-31 00:00 UTC, the last day Python's datetime can show in every zone.
MAX_TIMESTAMP = 253_402_214_400.0


class JobFunction(Generic[P, R]):
    """A registered job function. Calling it runs the function directly."""

    def __init__(self, app: Backburner, func: Callable[P, R], *, name: str, queue: str,
                 retry: RetryPolicy, timeout: float | None) -> None:
        functools.update_wrapper(self, func)
        self.app = app
        self.func = func
        self.name = name
        self.queue = check_queue_name(queue)
        self.retry = retry
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(func)
        self.context_parameter, self._call_signature = _split_context(func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<job function {self.name}>"

    def enqueue(self, *args: Any, **kwargs: Any) -> str:
        """Enqueue a call on this function's queue; return the job id."""
        return self.app.enqueue(self, *args, **kwargs)

    def schedule(self, when: float | dt.timedelta | dt.datetime, /, *args: Any,
                 **kwargs: Any) -> str:
        """Schedule a call after a delay (seconds or timedelta) or at an aware datetime."""
        return self.app.schedule(when, self, *args, **kwargs)

    def call(self, *args: Any, **kwargs: Any) -> JobCall:
        """Capture a call for ``Backburner.enqueue_many``."""
        return JobCall(self, args, kwargs)

    def check_arguments(self, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Raise InvalidArguments unless the call matches the function's signature."""
        if self.context_parameter in kwargs:
            raise InvalidArguments(
                f"{self.name}: do not pass {self.context_parameter!r}; the server fills in the "
                "JobContext when the job runs")
        try:
            self._call_signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"{self.name}: arguments do not match the function: {exc}"
                                   ) from None


class JobCall:
    """A captured call of a job function, for bulk enqueue."""

    def __init__(self, function: JobFunction[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        self.function = function
        self.args = args
        self.kwargs = kwargs


def default_name(func: Callable[..., Any]) -> str:
    """Return ``module:qualname``, the default job function name."""
    return f"{func.__module__}:{func.__qualname__}"


def _split_context(func: Callable[..., Any]) -> tuple[str | None, inspect.Signature]:
    """Find the parameter annotated JobContext; return it and the signature without it."""
    signature = inspect.signature(func)
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable annotations: fall back to the raw ones
        hints = {name: p.annotation for name, p in signature.parameters.items()}

    context = None
    for name, parameter in signature.parameters.items():
        hint = hints.get(name)
        if hint is JobContext or hint == "JobContext" or typing.get_args(hint) and \
                JobContext in typing.get_args(hint):
            if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
                raise ConfigurationError(
                    f"{default_name(func)}: the JobContext parameter {name!r} must accept "
                    "a keyword argument, so it cannot be positional-only")
            context = name
    parameters = [p for name, p in signature.parameters.items() if name != context]
    return context, signature.replace(parameters=parameters)


class Registry:
    """Job functions by name."""

    def __init__(self) -> None:
        self._by_name: dict[str, JobFunction[..., Any]] = {}

    def add(self, function: JobFunction[..., Any]) -> None:
        """Register ``function``, rejecting a second function under the same name."""
        existing = self._by_name.get(function.name)
        if existing is not None and existing.func is not function.func:
            raise ConfigurationError(
                f"job function name {function.name!r} is already registered for "
                f"{default_name(existing.func)}; pass a different name= to @app.job")
        self._by_name[function.name] = function

    def get(self, name: str) -> JobFunction[..., Any] | None:
        """Return the job function registered as ``name``, or None."""
        return self._by_name.get(name)

    def resolve(self, target: object) -> JobFunction[..., Any]:
        """Return the registered job function for a JobFunction, a plain function or a name."""
        if isinstance(target, JobFunction) and self._by_name.get(target.name) is target:
            return target
        if isinstance(target, str):
            found = self._by_name.get(target)
            if found is not None:
                return found
            raise JobNotRegistered(
                f"no job function is registered as {target!r}; registered: "
                f"{', '.join(sorted(self._by_name)) or 'none'}")
        for function in self._by_name.values():
            if function.func is target:
                return function
        name = default_name(target) if callable(target) else repr(target)
        raise JobNotRegistered(
            f"{name} is not a registered job function of this app; decorate it with @app.job")

    def names(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self._by_name)
