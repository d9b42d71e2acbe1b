"""Properties of backburner.serialization: round trips, rejections and hostile payloads."""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backburner.errors import InvalidArguments, InvalidPayload
from backburner.serialization import MAX_DEPTH, TAG, dumps, loads

# -- strategies ---------------------------------------------------------------

#: Any code point, including NUL, astral characters, lone surrogates and
#: bidirectional marks (the Cs category is excluded from st.text by default).
any_text = st.text(st.characters(codec=None, exclude_categories=()))

#: UTC offsets in whole seconds. Offsets with a fraction of a second are
#: tested on their own in test_subsecond_offset.
fixed_offsets = st.builds(
    dt.timezone,
    st.integers(min_value=-(24 * 3600 - 1), max_value=24 * 3600 - 1).map(
        lambda seconds: dt.timedelta(seconds=seconds)))
time_zones = st.none() | fixed_offsets | st.timezones()

decimals = (st.decimals(allow_nan=True, allow_infinity=True)
            | st.sampled_from([Decimal("NaN"), Decimal("-NaN"), Decimal("sNaN"),
                               Decimal("Infinity"), Decimal("-Infinity"), Decimal("-0"),
                               Decimal("0E-30"), Decimal("1E+999999")]))

scalars = st.one_of(
    st.none(), st.booleans(), any_text,
    st.integers(), st.integers(min_value=2**63, max_value=2**200),
    st.integers(min_value=-2**200, max_value=-2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes(timezones=time_zones),
    st.dates(),
    st.times(timezones=st.none() | fixed_offsets),
    st.uuids(), decimals, st.binary(),
    st.sampled_from(["\u200f\u202e", "\x00", "\U0001f600", "\ud800", "$bb", "\ufeff"]),
)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = any_text | st.sampled_from([TAG, "v", "__class__", "py/object"])
    return st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.dictionaries(keys, children, max_size=5),
        st.dictionaries(keys, children, max_size=5).map(lambda d: {TAG: "datetime", **d}),
    )


values = st.recursive(scalars, containers, max_leaves=30)


def canonical(value: Any) -> Any:
    """Return a form of ``value`` that compares types too, and NaN and -0 by their text."""
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [canonical(item) for item in value])
    if isinstance(value, dict):
        return ("dict", [(key, canonical(item)) for key, item in value.items()])
    if isinstance(value, (float, Decimal)):
        return (type(value).__name__, repr(value))
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return (type(value).__name__, value.isoformat())
    return (type(value).__name__, value)


# -- round trips --------------------------------------------------------------


@given(values)
def test_round_trip(value: Any) -> None:
    assert canonical(loads(dumps(value))) == canonical(value)


@given(values)
def test_dumps_ascii(value: Any) -> None:
    encoded = dumps(value)

    assert encoded.isascii()
    assert dumps(loads(encoded)) == encoded


@given(values)
def test_loads_bytes(value: Any) -> None:
    encoded = dumps(value)

    assert canonical(loads(encoded.encode("ascii"))) == canonical(value)


@given(st.datetimes(timezones=time_zones))
def test_datetime_offset_kept(value: dt.datetime) -> None:
    # Compared field by field: == between time zones is False for times in a
    # DST fold or gap (PEP 495), although the offset is kept.
    decoded = loads(dumps(value))

    assert decoded.replace(tzinfo=None) == value.replace(tzinfo=None)
    assert decoded.utcoffset() == value.utcoffset()
    assert (decoded.tzinfo is None) == (value.tzinfo is None)


@given(st.floats(allow_nan=False))
def test_float_exact(value: float) -> None:
    decoded = loads(dumps(value))

    assert decoded == value
    assert math.copysign(1.0, decoded) == math.copysign(1.0, value)


@given(decimals)
def test_decimal_exact(value: Decimal) -> None:
    decoded = loads(dumps(value))

    assert str(decoded) == str(value)
    assert decoded.is_signed() == value.is_signed()


@pytest.mark.parametrize("value", [2**63, -2**63 - 1, 2**64 + 1, 10**100])
def test_big_int(value: int) -> None:
    assert loads(dumps(value)) == value


def test_huge_int() -> None:
    # Python 3.11 refuses to convert ints over 4300 digits to text by default.
    with pytest.raises(InvalidArguments):
        dumps(10**5000)


#: fromisoformat() in CPython 3.11.7 reads an offset under one second as UTC.
def test_offset_with_subseconds() -> None:
    zone = dt.timezone(dt.timedelta(seconds=7, microseconds=3))
    moment = dt.datetime(2024, 3, 1, 12, 30, tzinfo=zone)
    clock = dt.time(12, 30, tzinfo=zone)

    assert loads(dumps(moment)).utcoffset() == zone.utcoffset(None)
    assert loads(dumps(clock)).utcoffset() == zone.utcoffset(None)


@pytest.mark.parametrize("offset", [dt.timedelta(microseconds=1),
                                    dt.timedelta(microseconds=-999_999)])
def test_offset_under_a_second_rejected(offset: dt.timedelta) -> None:
    zone = dt.timezone(offset)

    with pytest.raises(InvalidArguments, match="offset under one second"):
        dumps(dt.datetime(2024, 3, 1, 12, 30, tzinfo=zone))
    with pytest.raises(InvalidArguments, match="offset under one second"):
        dumps(dt.time(12, 30, tzinfo=zone))


def test_bool_stays_bool() -> None:
    assert loads(dumps([True, 1, False, 0])) == [True, 1, False, 0]
    assert [type(item) for item in loads(dumps([True, 1]))] == [bool, int]


def test_tag_key_dict() -> None:
    value = {TAG: "bytes", "v": "not base64!"}

    assert loads(dumps(value)) == value


def test_nested_tag_dicts() -> None:
    value = {TAG: {TAG: "tuple", "v": [1]}, "v": [{TAG: "dict", "v": {}}]}

    assert loads(dumps(value)) == value


@pytest.mark.parametrize("value", [bytearray(b"\x00\xff"), memoryview(b"\x00\xff")])
def test_bytes_like(value: Any) -> None:
    assert loads(dumps(value)) == b"\x00\xff"


# -- rejected arguments -------------------------------------------------------


@pytest.mark.parametrize(("value", "words"), [
    ({1, 2}, ["args[0]", "set", "cannot be stored"]),
    (frozenset(), ["frozenset"]),
    (object(), ["builtins.object", "cannot be stored"]),
    (dt.timedelta(seconds=1), ["datetime.timedelta"]),
    (1 + 2j, ["complex"]),
    (len, ["builtin_function_or_method"]),
])
def test_reject_type(value: Any, words: list[str]) -> None:
    with pytest.raises(InvalidArguments) as info:
        dumps([value])

    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(("key", "words"), [
    (1, ["dict key 1", "int", "string keys"]),
    (None, ["dict key None", "NoneType"]),
    ((1, 2), ["dict key (1, 2)", "tuple"]),
    (b"k", ["dict key b'k'", "bytes"]),
])
def test_reject_key(key: Any, words: list[str]) -> None:
    with pytest.raises(InvalidArguments) as info:
        dumps({"outer": {key: "value"}})

    for word in words:
        assert word in str(info.value)
    assert "args['outer']" in str(info.value)


def test_reject_nested_path() -> None:
    with pytest.raises(InvalidArguments, match=r"args\[1\]\['k'\]\[0\]: value"):
        dumps([0, {"k": ({1},)}])


def nested(depth: int, kind: str = "list") -> Any:
    value: Any = 0
    for level in range(depth):
        if kind == "mixed":
            value = [value] if level % 3 == 0 else (value,) if level % 3 == 1 else {TAG: value}
        else:
            value = [value]
    return value


@pytest.mark.parametrize("depth", [MAX_DEPTH + 5, 10_000])
def test_reject_deep(depth: int) -> None:
    with pytest.raises(InvalidArguments, match=f"nested deeper than {MAX_DEPTH} levels"):
        dumps(nested(depth))


def test_reject_recursive() -> None:
    value: list[Any] = []
    value.append(value)

    with pytest.raises(InvalidArguments, match="nested deeper"):
        dumps(value)


@pytest.mark.parametrize("kind", ["list", "mixed"])
def test_depth_limit_symmetric(kind: str) -> None:
    # Whatever dumps accepts near the limit, loads must decode.
    accepted = 0
    for depth in range(MAX_DEPTH - 5, MAX_DEPTH + 5):
        try:
            encoded = dumps(nested(depth, kind))
        except InvalidArguments:
            continue
        accepted += 1
        assert canonical(loads(encoded)) == canonical(nested(depth, kind))

    assert accepted > 0


# -- hostile payloads ---------------------------------------------------------


@pytest.mark.parametrize(("payload", "words"), [
    ('{"$bb":"pickle","v":"gASV"}', ["unknown tag", "pickle"]),
    ('{"$bb":"os.system","v":"echo hi"}', ["unknown tag", "os.system"]),
    ('{"$bb":"datetime","v":"2024-01-01","x":1}', ["unexpected keys"]),
    ('{"$bb":"datetime"}', ["unexpected keys"]),
    ('{"$bb":"bytes","v":"!!not base64!!"}', ["bytes", "does not decode"]),
    ('{"$bb":"bytes","v":"\\u00e9"}', ["bytes"]),
    ('{"$bb":"datetime","v":"yesterday"}', ["datetime", "does not decode"]),
    ('{"$bb":"date","v":"2024-02-30"}', ["date"]),
    ('{"$bb":"uuid","v":"xyz"}', ["uuid"]),
    ('{"$bb":"decimal","v":"one"}', ["decimal"]),
    ('{"$bb":"float","v":"1.5"}', ["float"]),
    ('{"$bb":"datetime","v":5}', ["datetime"]),
    ('{"$bb":"tuple","v":"abc"}', ["tuple"]),
    ('{"$bb":"dict","v":[1]}', ["dict"]),
    ('{"$bb":["list"],"v":"x"}', ["list"]),
    ('[NaN]', ["NaN"]),
    ('Infinity', ["Infinity"]),
    ('-Infinity', ["Infinity"]),
    ('{', ["not valid JSON"]),
    ('', ["not valid JSON"]),
    ("{'a': 1}", ["not valid JSON"]),
    ('[1,]', ["not valid JSON"]),
    ('1' * 5000, ["not valid JSON"]),
    ('[' * 100_000 + ']' * 100_000, []),
    ('[' * (MAX_DEPTH + 5) + ']' * (MAX_DEPTH + 5), ["nested deeper"]),
])
def test_loads_rejects(payload: str, words: list[str]) -> None:
    with pytest.raises(InvalidPayload) as info:
        loads(payload)

    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("payload", [b"\xff\xfe\x00", b"\x80abc"])
def test_loads_rejects_bytes(payload: bytes) -> None:
    with pytest.raises(InvalidPayload):
        loads(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        any_text | st.just(TAG) | st.just("v"), children, max_size=4),
    max_leaves=20)

tagged_values = st.fixed_dictionaries({
    TAG: st.sampled_from(["datetime", "date", "time", "uuid", "decimal", "bytes", "tuple",
                          "float", "dict", "os.system", ""]) | json_values,
    "v": json_values,
})


@settings(max_examples=300)
@given(any_text | st.binary() | st.builds(json.dumps, json_values | tagged_values))
def test_loads_only_invalid_payload(payload: str | bytes) -> None:
    # Hostile or corrupt data may fail to decode, but only with InvalidPayload,
    # and whatever decodes can be stored again.
    try:
        decoded = loads(payload)
    except InvalidPayload:
        return

    assert canonical(loads(dumps(decoded))) == canonical(decoded)


def test_loads_names_stay_strings() -> None:
    payload = ('[["os.system", "subprocess:call"], '
               '{"__class__": "os.system", "py/object": "os.system", '
               '"__reduce__": ["os.system", ["echo hi"]]}]')
    decoded = loads(payload)

    assert decoded == [["os.system", "subprocess:call"],
                       {"__class__": "os.system", "py/object": "os.system",
                        "__reduce__": ["os.system", ["echo hi"]]}]


def test_loads_imports_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "bb_canary.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef run(*args):\n    open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    payloads = [
        '"bb_canary"', '"bb_canary:run"', '["bb_canary.run", ["x"]]',
        '{"__class__": "bb_canary.run", "py/object": "bb_canary:run"}',
        '{"$bb": "dict", "v": {"$bb": "bb_canary:run", "v": "x"}}',
    ]
    for payload in payloads:
        loads(payload)
    for payload in ('{"$bb": "bb_canary:run", "v": "x"}', '{"$bb": "bb_canary.run", "v": []}'):
        with pytest.raises(InvalidPayload):
            loads(payload)

    assert "bb_canary" not in sys.modules
    assert not marker.exists()


@pytest.mark.parametrize("text", ["\ud83d\ude00", "a\ud800\udc00b", "\ud800", "\udc00\ud800"])
def test_surrogate_code_points_kept(text: str) -> None:
    decoded = loads(dumps([text]))

    assert decoded == [text]
    assert len(decoded[0]) == len(text)


def test_surrogate_pair_key_rejected() -> None:
    with pytest.raises(InvalidArguments, match="surrogate pair"):
        dumps({"\ud83d\ude00": 1})
