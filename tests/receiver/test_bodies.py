from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.receiver.bodies import BodyError, ParseLimits, form_pairs, media_type_of, parse_body


def test_json_object_parses() -> None:
    parsed = parse_body("application/json; charset=utf-8", b'{"email": "a@b.co", "n": [1, 2]}')
    assert parsed.media_type == "application/json"
    assert parsed.body == {"email": "a@b.co", "n": [1, 2]}


def test_vendor_json_suffix_is_json() -> None:
    assert parse_body("application/vnd.partner+json", b"[1]").body == [1]


def test_form_repeated_field_becomes_list_and_blank_kept() -> None:
    parsed = parse_body("application/x-www-form-urlencoded", b"name=Ann+Lee&tag=a&tag=b&empty=")
    assert parsed.body == {"name": "Ann Lee", "tag": ["a", "b"], "empty": ""}


@pytest.mark.parametrize(
    ("content_type", "raw", "status", "fragment"),
    [
        ("application/json", b'{"a": ', 400, "invalid JSON at line 1"),
        ("application/json", b'{"a": "\xff"}', 400, "not valid UTF-8"),
        ("application/x-www-form-urlencoded", b"a=\xff", 400, "not valid UTF-8"),
        ("text/plain", b"hi", 415, "'text/plain' is not accepted"),
        (None, b"hi", 415, "(none)"),
        ("multipart/form-data", b"--x\r\n", 400, "boundary"),
    ],
)
def test_bad_bodies_raise_with_status(
    content_type: str | None, raw: bytes, status: int, fragment: str
) -> None:
    with pytest.raises(BodyError) as info:
        parse_body(content_type, raw)
    assert info.value.status == status
    assert fragment in info.value.detail


def test_deep_json_is_a_clear_400() -> None:
    with pytest.raises(BodyError) as info:
        parse_body("application/json", b"[" * 100_000 + b"]" * 100_000)
    assert info.value.status == 400


def test_multipart_keeps_fields_and_drops_files() -> None:
    raw = (
        b"--BOUND\r\n"
        b'Content-Disposition: form-data; name="email"\r\n\r\n'
        b"ann@example.com\r\n"
        b"--BOUND\r\n"
        b'Content-Disposition: form-data; name="cv"; filename="cv.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n"
        b"%PDF-1.4 binary\r\n"
        b"--BOUND\r\n"
        b'Content-Disposition: form-data; name="name"\r\n\r\n'
        b"Ann L\xc3\xa9e\r\n"
        b"--BOUND--\r\n"
    )
    parsed = parse_body("multipart/form-data; boundary=BOUND", raw)
    assert parsed.body == {"email": "ann@example.com", "name": "Ann Lée", "_files_dropped": ["cv"]}


@pytest.mark.parametrize(
    ("part", "limits", "status", "fragment"),
    [
        (
            b'Content-Disposition: form-data; name="cv"; filename="cv.pdf"\r\n\r\n%PDF',
            ParseLimits(files="refuse"),
            415,
            "does not accept file uploads (field 'cv')",
        ),
        (
            b'Content-Disposition: form-data; name="n"\r\n'
            b"Content-Type: text/plain; charset=no-such-charset\r\n\r\nAnn",
            ParseLimits(),
            400,
            "multipart field 'n' is not valid text",
        ),
        (b"Content-Type: text/plain\r\n\r\nAnn", ParseLimits(), 400, "without a field name"),
    ],
)
def test_multipart_parts_it_cannot_keep_are_refused(
    part: bytes, limits: ParseLimits, status: int, fragment: str
) -> None:
    raw = b"--BOUND\r\n" + part + b"\r\n--BOUND--\r\n"
    with pytest.raises(BodyError) as info:
        parse_body("multipart/form-data; boundary=BOUND", raw, limits)
    assert info.value.status == status and fragment in info.value.detail


def test_media_type_is_lower_cased_with_params() -> None:
    assert media_type_of("Application/JSON; Charset=UTF-8") == (
        "application/json",
        {"charset": "UTF-8"},
    )


_FORM_PIECES = ["a", "b", "=", "&", "+", " ", "é", "€", ";", "%", "%2", "%20", "%41"]
_FORM_TEXT = st.lists(
    st.sampled_from([*_FORM_PIECES, "%C3", "%A9", "%zz", "%E2%82", "%82%AC", "%3D", "%26"]),
    max_size=30,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(text=_FORM_TEXT, encoding=st.sampled_from(["utf-8", "latin-1", "shift_jis"]))
def test_form_pairs_are_parse_qsl_pairs(text: str, encoding: str) -> None:
    expected = parse_qsl(text, keep_blank_values=True, encoding=encoding, max_num_fields=10**6)
    assert form_pairs(text, encoding) == expected


def test_form_escapes_and_blank_names_parse_like_parse_qsl() -> None:
    text = "a%20b=c+d%C3%A9&&=&flag&%zz=%4&e=%C3"
    assert form_pairs(text) == [
        ("a b", "c dé"),
        ("", ""),
        ("flag", ""),
        ("%zz", "%4"),
        ("e", "\ufffd"),
    ]
