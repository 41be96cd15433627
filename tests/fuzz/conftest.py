"""Fixtures of the fuzz tests: the log capture of tests/reliability."""

from tests.reliability.logcapture import captured_logs

__all__ = ["captured_logs"]
