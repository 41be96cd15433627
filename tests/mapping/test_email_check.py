"""The email check's one-match path gives exactly the answers of the steps it replaced.

``_valid_email`` answers printable ASCII with one compiled pattern (the door's mapping check
runs it on every form post and webhook); the reference here is the step-by-step check it
replaced, kept verbatim, IDNA codec and all.
"""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.mapping.normalize import _valid_email, normalize_email

_LOCAL_PART = re.compile(r"^[^\s@\"(),:;<>\[\]\\.]+(?:\.[^\s@\"(),:;<>\[\]\\.]+)*$")
_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def reference_valid_email(text: str) -> bool:
    """The check as it was before the one-match path."""
    if len(text) > 254 or text.count("@") != 1:
        return False
    local, domain = text.split("@")
    if not local or len(local) > 64 or not _LOCAL_PART.match(local):
        return False
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.match(label) for label in labels):
        return False
    tld = labels[-1]
    return tld.startswith("xn--") or (tld.isalpha() and len(tld) >= 2)


# Characters that decide the answer: the local part's forbidden ones, label characters and
# their edges, upper case (labels are lower-case only), white space and line breaks, and a few
# that are not ASCII (an IDNA domain, a full-width stop, a dotless i).
_PIECES = st.sampled_from(
    [
        *"aZz09-._+@ \t\n\"(),:;<>[]\\!#$%&'*/=?^`{|}~",
        *("xn--", "xn--p1ai", "com", "co.uk", "\u00e9", "\u00fc", "\u00df", "\u3002", "\u0131"),
        "\u0000",
    ]
)
_CHUNKS = st.lists(_PIECES | st.text(max_size=3), max_size=24).map("".join)
_LABELS = st.lists(
    st.from_regex(r"[a-z0-9-]{0,66}", fullmatch=True) | st.sampled_from(["xn--", "xn--a", "com"]),
    min_size=1,
    max_size=5,
).map(".".join)
_LOCALS = st.from_regex(r"[a-zA-Z0-9.+_\"-]{0,66}", fullmatch=True) | _CHUNKS
_ADDRESSES = st.builds(lambda local, domain: f"{local}@{domain}", _LOCALS, _LABELS | _CHUNKS)
_LONG = st.builds(
    lambda n, m: f"{'a' * n}@{'b' * 63}.{'c' * 63}.{'d' * m}.com",
    st.integers(1, 70),
    st.integers(1, 70),
)


@settings(max_examples=3000)
@given(text=_ADDRESSES | _CHUNKS | _LONG | st.text(max_size=40))
@example(text="a@b.xn--")
@example(text="a@b.xn--a")
@example(text="a@b.xn---")
@example(text="a@b.c0m")
@example(text="ab\n@x.com")
@example(text="a@b\n.com")
@example(text="a@b.xn--ab\n")
@example(text="a@-b.com")
@example(text="a@b-.com")
@example(text="a@.com")
@example(text="a@b..com")
@example(text="a@b.com.")
@example(text="a@B.com")
@example(text=".a@b.com")
@example(text="a.@b.com")
@example(text="a..b@c.com")
@example(text="a@" + "b" * 63 + ".com")
@example(text="a@" + "b" * 64 + ".com")
@example(text="a" * 64 + "@b.com")
@example(text="a" * 65 + "@b.com")
@example(text="a@" + ".".join(["b" * 63] * 3) + "." + "c" * 61 + ".com")
@example(text="a@b.c" + "o" * 62)
@example(text="a@b.c" + "o" * 63)
@example(text="a@b.xn--" + "p" * 59)
@example(text="a@b.xn--" + "p" * 60)
def test_the_email_check_answers_as_the_steps_did(text: str) -> None:
    assert _valid_email(text) == reference_valid_email(text)


@settings(max_examples=500)
@given(text=_ADDRESSES | _CHUNKS)
def test_normalize_email_keeps_its_answers(text: str) -> None:
    value, notice = normalize_email(text)
    if value is not None:
        assert reference_valid_email(value)
        assert notice is None
