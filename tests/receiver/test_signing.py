"""The signature schemes' HMAC, with each key's padded blocks hashed once, gives exactly what
``hmac.digest`` gives, for every algorithm a source may name and keys of every length."""

from __future__ import annotations

import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from service.receiver.auth import signatures


@settings(max_examples=500)
@given(
    algorithm=st.sampled_from(["sha1", "sha256", "sha512"]),
    key=st.binary(max_size=200),  # shorter and longer than a block (64 or 128 bytes)
    parts=st.lists(st.binary(max_size=300), max_size=3),
)
def test_hmac_with_keys_kept_is_hmac(algorithm: str, key: bytes, parts: list[bytes]) -> None:
    expected = hmac.digest(key, b"".join(parts), algorithm)
    assert signatures._sign(algorithm, key, *parts) == expected
    assert signatures._sign(algorithm, key, *parts) == expected  # the kept key's second use


def test_the_kept_keys_are_bounded() -> None:
    for index in range(signatures._KEYED_MAX + 10):
        signatures._sign("sha256", index.to_bytes(4, "big"), b"x")
    assert len(signatures._KEYED) <= signatures._KEYED_MAX
