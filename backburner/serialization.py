"""JSON encoding of job arguments, with tags for the types JSON lacks.

Arguments are stored as ASCII JSON text. Values JSON cannot express are
written as a one-key object ``{"$bb": TAG, "v": VALUE}``; a dict that itself
has a ``$bb`` key is tagged as ``"dict"`` so user data can never pass for a tag.
Decoding builds only plain values and the tagged types below: it never
imports or calls anything named in the data, and pickle is never used.

Tags: datetime, date, time, uuid, decimal, bytes, tuple, float (NaN and the
infinities), str (a string holding a surrogate pair as two code points) and
dict (a dict whose own keys include ``$bb``). Dicts with non-string keys are
rejected, because JSON would turn the keys into strings.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from backburner.errors import InvalidArguments, InvalidPayload

TAG = "$bb"

#: Nesting depth beyond which arguments are rejected (JSON decoders recurse too).
MAX_DEPTH = 200


def dumps(value: Any) -> str:
    """Encode ``value`` as tagged JSON text, raising InvalidArguments for unsupported values."""
    try:
        return json.dumps(_encode(value, "args", 0), ensure_ascii=True, allow_nan=False,
                          separators=(",", ":"))
    except RecursionError:
        raise InvalidArguments(f"arguments are nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # such as an int too long to convert to text
        raise InvalidArguments(f"arguments cannot be written as JSON: {exc}") from None


def loads(text: str | bytes) -> Any:
    """Decode tagged JSON text, raising InvalidPayload when it is malformed."""
    try:
        raw = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidPayload(f"job data is not valid JSON: {exc}") from None
    return _decode(raw, 0)


def _encode(value: Any, path: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise InvalidArguments(f"{path}: nested deeper than {MAX_DEPTH} levels")

    if isinstance(value, str):
        if _SURROGATE_PAIR.search(value):
            # JSON would write a high and low surrogate as an escape pair that
            # decodes to one astral character, so keep their exact code points.
            return {TAG: "str", "v": base64.b64encode(
                value.encode("utf-8", "surrogatepass")).decode("ascii")}
        return value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {TAG: "float", "v": repr(value)}
    if isinstance(value, list):
        return [_encode(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, tuple):
        items = [_encode(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
        return {TAG: "tuple", "v": items}
    if isinstance(value, dict):
        return _encode_dict(value, path, depth)
    return _encode_scalar(value, path)


def _encode_dict(value: dict[Any, Any], path: str, depth: int) -> Any:
    for key in value:
        if not isinstance(key, str):
            raise InvalidArguments(
                f"{path}: dict key {key!r} is a {type(key).__name__}; only string keys are "
                "supported, so convert the keys to str or pass a list of pairs")
        if _SURROGATE_PAIR.search(key):
            raise InvalidArguments(
                f"{path}: dict key {key!r} holds a surrogate pair as two code points, which "
                "JSON keys cannot keep; pass a list of pairs instead")
    encoded = {key: _encode(item, f"{path}[{key!r}]", depth + 1) for key, item in value.items()}
    if TAG in value:
        return {TAG: "dict", "v": encoded}
    return encoded


def _encode_scalar(value: Any, path: str) -> Any:
    # datetime is a subclass of date, so it is tested first.
    if isinstance(value, (dt.datetime, dt.time)):
        _check_offset(value, path)
        tag = "datetime" if isinstance(value, dt.datetime) else "time"
        return {TAG: tag, "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "v": str(value)}
    if isinstance(value, Decimal):
        return {TAG: "decimal", "v": str(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {TAG: "bytes", "v": base64.b64encode(bytes(value)).decode("ascii")}
    raise InvalidArguments(
        f"{path}: value {_short_repr(value)} of type {type(value).__module__}."
        f"{type(value).__qualname__} cannot be stored as a job argument; pass JSON values "
        "(str, int, float, bool, None, list, dict) or datetime, date, time, UUID, Decimal, "
        "bytes or tuple, for example an id instead of an object")


def _check_offset(value: dt.datetime | dt.time, path: str) -> None:
    # fromisoformat reads a UTC offset under one second as UTC, so such
    # values would not come back equal; no real time zone has one.
    offset = value.utcoffset()
    if offset and abs(offset) < dt.timedelta(seconds=1):
        raise InvalidArguments(
            f"{path}: {value!r} has a UTC offset under one second, which cannot be stored; "
            "use a whole-second offset")


def _decode(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise InvalidPayload(f"job data is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list):
        return [_decode(item, depth + 1) for item in value]
    if not isinstance(value, dict):
        return value
    if TAG not in value:
        return {key: _decode(item, depth + 1) for key, item in value.items()}
    return _decode_tagged(value, depth)


def _decode_tagged(value: dict[str, Any], depth: int) -> Any:
    tag, inner = value.get(TAG), value.get("v")
    if set(value) != {TAG, "v"}:
        raise InvalidPayload(f"tagged value has unexpected keys {sorted(value)}")
    try:
        if tag == "dict" and isinstance(inner, dict):
            return {key: _decode(item, depth + 1) for key, item in inner.items()}
        if tag == "tuple" and isinstance(inner, list):
            return tuple(_decode(item, depth + 1) for item in inner)
        if isinstance(inner, str) and tag in _SCALAR_DECODERS:
            return _SCALAR_DECODERS[tag](inner)
    except (ValueError, TypeError, InvalidOperation, binascii.Error) as exc:
        raise InvalidPayload(f"tagged {tag!r} value {inner!r:.80} does not decode: {exc}") from None
    raise InvalidPayload(f"unknown tag {tag!r} with value {inner!r:.80}")


def _decode_float(text: str) -> float:
    if text not in ("nan", "inf", "-inf"):
        raise ValueError("expected nan, inf or -inf")
    return float(text)


_SCALAR_DECODERS: dict[str, Any] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "uuid": uuid.UUID,
    "decimal": Decimal,
    "bytes": lambda text: base64.b64decode(text.encode("ascii"), validate=True),
    "float": _decode_float,
    "str": lambda text: base64.b64decode(text.encode("ascii"), validate=True).decode(
        "utf-8", "surrogatepass"),
}

#: A high surrogate followed by a low one: JSON would read their escapes back
#: as one astral character. Lone surrogates round-trip as they are.
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"bare {name} is not allowed in job data")


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
