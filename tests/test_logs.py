"""Logs: JSON lines with the submission's id and source; emails and phones never unmasked."""

from __future__ import annotations

import io
import json
import logging

import pytest

from service.logs import (
    AccessLogger,
    ContextFilter,
    DevFormatter,
    JsonFormatter,
    mask_pii,
    submission_context,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail Ann.Lee+x@Example.co.uk now", "mail A***@Example.co.uk now"),
        ("call +1 415 555 2671 or (415) 555-2671", "call +*********71 or ********71"),
        ("+442079460958", "+**********58"),
        ("peer 203.0.113.9 answered 200 in 3.2ms", "peer 203.0.113.9 answered 200 in 3.2ms"),
        (
            "sub_01M8DYJ89PBW13ARF59T4WARJR lead_abc123",
            "sub_01M8DYJ89PBW13ARF59T4WARJR lead_abc123",
        ),
        ("attempt 12 of 50, 2026-11-27", "attempt 12 of 50, 2026-11-27"),
    ],
)
def test_mask_pii(text: str, expected: str) -> None:
    assert mask_pii(text) == expected


def logger_into(stream: io.StringIO, formatter: logging.Formatter, name: str) -> logging.Logger:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_json_line_has_submission_context_and_masks_args_and_tracebacks() -> None:
    stream = io.StringIO()
    logger = logger_into(stream, JsonFormatter(), "test.json")
    with submission_context("sub_1", "website"):
        logger.warning("could not reach %s at %s", "bo@example.com", "+44 20 7946 0958")
        try:
            raise ValueError("bad address ann@example.com")
        except ValueError:
            logger.exception("failed")
    logger.info("outside")
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["submission_id"] == "sub_1" and first["source"] == "website"
    assert first["message"] == "could not reach b***@example.com at +**********58"
    assert (
        "ann@example.com" not in second["exception"] and "a***@example.com" in second["exception"]
    )
    assert "submission_id" not in third
    assert third["level"] == "info" and third["time"].endswith("Z")


def test_dev_lines_are_readable_and_masked() -> None:
    stream = io.StringIO()
    logger = logger_into(stream, DevFormatter(), "test.dev")
    with submission_context("sub_2", "partner"):
        logger.info("lead for jo@example.com")
    line = stream.getvalue().strip()
    assert line.endswith("lead for j***@example.com  [sub_2 partner]")


@pytest.mark.parametrize(("level", "enabled"), [(logging.INFO, True), (logging.WARNING, False)])
def test_the_access_log_is_skipped_when_its_lines_would_not_be_written(
    level: int, enabled: bool
) -> None:
    logger = logging.getLogger("tests.access")
    logger.setLevel(level)
    assert AccessLogger(logger, "").enabled is enabled
