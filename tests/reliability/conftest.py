"""Fixtures of the reliability tests (the log capture is shared with tests/fuzz)."""

from tests.reliability.logcapture import captured_logs

__all__ = ["captured_logs"]
