"""The receiver's hot-path helpers give exactly what their plain versions gave.

Each of these was rewritten for speed (bench/RESULTS.md, section 1); the reference each is
checked against is the straightforward code it replaced.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from service import envelope, jsoncodec
from service.loops import event_loop_factory
from service.queue.records import history_event, history_event_head
from service.receiver.bodies import BodyError, ParseLimits, parse_body
from service.times import iso

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def reference_id(millis: int, random_bytes: bytes) -> str:
    """Base32 of the 128 bits: the millisecond time, then 5 random bits from each byte."""
    value = millis
    for byte in random_bytes:
        value = (value << 5) | (byte & 31)
    chars = []
    for _ in range(26):
        chars.append(CROCKFORD[value & 31])
        value >>= 5
    return "sub_" + "".join(reversed(chars))


def test_submission_ids_match_the_plain_base32_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    for _ in range(2000):
        ts = rng.randrange(0, 2**48) / 1000
        randomness = rng.randbytes(16)
        monkeypatch.setattr(envelope, "_random_bytes", lambda _n, r=randomness: r)
        expected = reference_id(int(ts * 1000), randomness)
        assert envelope.new_submission_id(ts) == expected
        assert envelope.new_submission_id(ts) == expected  # its millisecond's time kept


def test_random_bytes_are_not_handed_out_twice() -> None:
    chunks = [envelope._random_bytes(10) for _ in range(2000)]  # several 4 KiB refills
    assert all(len(c) == 10 for c in chunks)
    assert len(set(chunks)) == 2000


def test_a_forked_child_does_not_reuse_the_parents_random_bytes() -> None:
    envelope._random_bytes(10)  # the buffer holds bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write its next bytes and leave at once
        os.write(write, envelope._random_bytes(10))
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 10)
    os.close(read)
    assert child != envelope._random_bytes(10)


def test_submission_ids_sort_by_time() -> None:
    ids = [envelope.new_submission_id(1_700_000_000 + i * 0.001) for i in range(200)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 200
    assert all(len(i) == 30 for i in ids)


def test_iso_times_match_datetime() -> None:
    rng = random.Random(11)
    samples = [0.0, 0.9995, 0.9999995, 1.0005, 1_700_000_000.0, 2_147_483_647.9999996, -1.5]
    samples += [rng.uniform(-1e9, 4e9) for _ in range(20000)]
    samples += [round(rng.uniform(0, 4e9), 3) for _ in range(5000)]
    for ts in samples:
        expected = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
        assert iso(ts) == expected.replace("+00:00", "Z"), ts


def test_history_events_are_json_with_or_without_detail() -> None:
    assert json.loads(history_event(1.25, "queued")) == {
        "at": "1970-01-01T00:00:01.250Z",
        "state": "queued",
    }
    assert json.loads(history_event(1.25, "dead", {"reason": 'a "quoted" é'})) == {
        "at": "1970-01-01T00:00:01.250Z",
        "state": "dead",
        "detail": {"reason": 'a "quoted" é'},
    }


def test_a_history_event_head_closed_by_the_script_is_the_whole_event() -> None:
    # The claim script appends the attempt number and "}}" (scripts.CLAIM).
    for attempt in (1, 12):
        closed = history_event_head(1.25, "processing", "attempt") + f"{attempt}}}}}"
        assert closed == history_event(1.25, "processing", {"attempt": attempt})


DOCUMENTS = [
    b'{"email": "a@example.com", "n": [1, 2.5, -3e-7, true, false, null], "s": "\\u00e9\\n"}',
    b'{"id": 123456789012345678901234567890, "neg": -9223372036854775809}',
    b'{"max": 9223372036854775807, "min": -9223372036854775808, "f": 1e300}',
    b'{"pair": "\\ud83d\\ude00", "dup": 1, "dup": 2}',
    b'  [ {"a": {"b": {"c": []}}} ]  ',
    b'"just a string"',
    b"12345678901234567890123",
]


@pytest.mark.parametrize("raw", DOCUMENTS, ids=lambda raw: repr(raw[:20]))
def test_json_parse_matches_the_standard_library(raw: bytes) -> None:
    expected = json.loads(raw)
    assert jsoncodec.loads(raw) == expected
    assert parse_body("application/json", raw).body == expected
    # Exact types too: an integer past 64 bits stays an int.
    assert repr(jsoncodec.loads(raw)) == repr(expected)


def test_a_deep_document_with_a_big_integer_parses_like_the_standard_library() -> None:
    # The big-float check must not recurse: it once hit the recursion limit near 400 levels.
    raw = b"[" * 500 + b"12345678901234567890" + b"]" * 500
    expected = json.loads(raw)
    assert jsoncodec.loads(raw) == expected
    assert parse_body("application/json", raw, ParseLimits(json_depth=512)).body == expected


def test_the_door_counts_opening_brackets_in_the_pass_that_looks_for_big_integers() -> None:
    # Both kinds of bracket count toward the depth bound, also inside strings (a bound, not
    # the depth); the digits' rewriting does not make brackets of them, nor them of brackets.
    raw = b'{"a": [{"b": 1234567890123456789}], "s": "{[x"}'
    value, brackets = jsoncodec.fast_loads_counted(raw)
    assert value == json.loads(raw) and brackets == 5
    assert jsoncodec.fast_loads_counted(raw.decode()) == (value, 5)
    assert jsoncodec.fast_loads_counted(b"[1,") == (jsoncodec.UNPARSED, 0)
    big = b'{"n": 123456789012345678901234567890}'
    assert jsoncodec.fast_loads_counted(big) == (jsoncodec.UNPARSED, 0)  # json's, exactly


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b"[Infinity]", b'{"a": -1e400}'])
def test_the_door_refuses_numbers_json_does_not_have(raw: bytes) -> None:
    with pytest.raises(BodyError) as caught:
        parse_body("application/json", raw)
    assert (caught.value.status, caught.value.slug) == (400, "malformed-body")
    assert "not a JSON number" in caught.value.detail


def test_lone_surrogates_and_limits_still_apply_on_the_fast_path() -> None:
    body = parse_body("application/json", b'{"name": "cut \\ud83d"}').body
    assert body == {"name": "cut \ufffd"}
    with pytest.raises(BodyError) as deep:
        parse_body("application/json", b'{"a":' * 5 + b"1" + b"}" * 5, ParseLimits(json_depth=4))
    assert deep.value.status == 400
    with pytest.raises(BodyError) as many:
        parse_body("application/json", b'{"a": 1, "b": [1, 2, 3]}', ParseLimits(json_keys=4))
    assert many.value.status == 413


@pytest.mark.parametrize(
    "value",
    [
        {"a": "é", "b": [1, 2.5, None, True], "c": {}},
        {"big": 2**70, "neg": -(2**64)},
        {"lone": "x\ud800y"},
    ],
)
def test_json_dumps_round_trips_like_the_standard_library(value: Any) -> None:
    written = jsoncodec.dumps(value)
    assert isinstance(written, bytes)
    written.decode("utf-8")  # always valid UTF-8, even with a lone surrogate in the value
    assert json.loads(written) == value


def test_event_loop_choice() -> None:
    assert event_loop_factory("asyncio") is None
    factory = event_loop_factory("uvloop")
    assert factory is not None
    loop = factory()
    try:
        assert loop.run_until_complete(asyncio.sleep(0, result=42)) == 42
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


def test_the_startup_heap_is_frozen_out_of_collections() -> None:
    import gc  # noqa: PLC0415

    from service.loops import GC_THRESHOLDS, freeze_startup_heap  # noqa: PLC0415

    kept = [object() for _ in range(10)]
    thresholds = gc.get_threshold()
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > thresholds[0]  # young collections less often than Python's
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    assert kept
