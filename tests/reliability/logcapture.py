"""Every log line a test makes, written as production writes it, checked for what it gives away.

``captured_logs`` puts a handler on the root logger with the service's own JSON formatter and
``ContextFilter`` (masking on: what ``configure_logging`` sets up in production; pytest's
``caplog`` bypasses them), records INFO and above for the test, and at the end fails the test
if any line holds a known secret, an email address in the clear or a phone number the test
registered. Use it with ``pytestmark = pytest.mark.usefixtures("captured_logs")``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from service.logs import ContextFilter, JsonFormatter
from tests.conftest import ADMIN_TOKEN, API_KEY
from tests.reliability.harness import ADMIN_TOKEN as CHAOS_ADMIN_TOKEN
from tests.reliability.harness import CLOSE_KEY as CHAOS_CLOSE_KEY
from tests.reliability.harness import leaks

KNOWN_SECRETS = (API_KEY, ADMIN_TOKEN, CHAOS_CLOSE_KEY, CHAOS_ADMIN_TOKEN)


@dataclass
class CapturedLogs:
    stream: io.StringIO = field(default_factory=io.StringIO)
    secrets: set[str] = field(default_factory=lambda: set(KNOWN_SECRETS))
    phones: set[str] = field(default_factory=set)

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def leaks(self) -> list[str]:
        return leaks(self.text, secrets=self.secrets, phones=self.phones)


@pytest.fixture
def captured_logs() -> Iterator[CapturedLogs]:
    captured = CapturedLogs()
    handler = logging.StreamHandler(captured.stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter(mask=True))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield captured
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    found = captured.leaks()
    assert not found, f"the logs give away: {found[:10]}"
