"""Logging: one JSON object a line in production, readable lines in dev.

Every line carries the submission id and source when it is written while a submission is being
handled (a context variable set by the receiver and the worker). Emails and phone numbers in
messages and tracebacks are masked unless ``INTAKE_LOG_PII=true`` (debugging only). The access
log has the path without the query string (it may carry emails).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import BaseRequest, StreamResponse
from aiohttp.web_protocol import RequestPayloadError

SUBMISSION: ContextVar[tuple[str, str] | None] = ContextVar("submission", default=None)
"""(submission id, source) of the submission being handled in this task, if any."""

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
# A phone: a '+' and 7+ digits, or 9+ digits, with the usual separators; never an IPv4 address.
_PHONE = re.compile(r"(?<![\w.])(\+?\(?\d[\d\s().-]{5,}\d)(?![\w.])")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def _mask_phone(match: re.Match[str]) -> str:
    text: str = match.group(1)
    digits = sum(ch.isdigit() for ch in text)
    plus = text.startswith("+")
    if _IPV4.match(text) or digits < (7 if plus else 9):
        return text
    return ("+" if plus else "") + "*" * (digits - 2) + "".join(c for c in text if c.isdigit())[-2:]


def mask_pii(text: str) -> str:
    """``ann@example.com`` → ``a***@example.com``; ``+1 415 555 2671`` → ``+*********71``."""
    return _PHONE.sub(_mask_phone, _EMAIL.sub(r"\1***@\2", text))


@contextmanager
def submission_context(submission_id: str, source: str) -> Iterator[None]:
    """Stamp every log line written inside the block with this submission."""
    token = SUBMISSION.set((submission_id, source))
    try:
        yield
    finally:
        SUBMISSION.reset(token)


class ContextFilter(logging.Filter):
    """Adds ``submission_id`` and ``source`` from the context; masks personal data."""

    def __init__(self, *, mask: bool = True) -> None:
        super().__init__()
        self.mask = mask

    def filter(self, record: logging.LogRecord) -> bool:
        current = SUBMISSION.get()
        if current is not None and not hasattr(record, "submission_id"):
            record.submission_id, record.source = current
        if self.mask:
            record.msg = mask_pii(record.getMessage())
            record.args = None
        return True


class _Masking(logging.Formatter):
    mask = True

    def formatException(self, ei: Any) -> str:
        text = super().formatException(ei)
        return mask_pii(text) if self.mask else text


class JsonFormatter(_Masking):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("submission_id", "source", "method", "path", "status", "duration_ms"):
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class DevFormatter(_Masking):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if hasattr(record, "submission_id"):
            line += f"  [{record.submission_id} {getattr(record, 'source', '')}]"
        return line


def configure_logging(env: str, level: str = "INFO", *, log_pii: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter: _Masking = JsonFormatter() if env == "production" else DevFormatter()
    formatter.mask = not log_pii
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter(mask=not log_pii))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class AccessLogger(AbstractAccessLogger):
    """Method, path without the query string, status and duration."""

    @property
    def enabled(self) -> bool:
        """Whether a line would be written (INFO): when not, aiohttp skips the call, and the
        request's timing, altogether (as its own access logger does)."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %d %.1fms",
            request.method,
            request.path,
            response.status,
            time * 1000,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "duration_ms": round(time * 1000, 2),
            },
        )


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger, made quiet about requests that are broken on the client's side.

    aiohttp logs every request it cannot parse (a bad request line, conflicting lengths, a
    body that breaks its framing) at ERROR with a traceback, so any client could fill the
    error log. Here each is one WARNING line without a traceback, at most ``per_minute`` a
    minute; the next line after a quiet spell says how many were left out. Everything else
    (a real unhandled error) is logged as aiohttp would. Give it to the server as
    ``handler_args={"logger": ServerLog()}``.
    """

    def __init__(self, per_minute: int = 10, logger: logging.Logger | None = None) -> None:
        super().__init__(logger or logging.getLogger("aiohttp.server"), {})
        self.per_minute = per_minute
        self._window = 0.0
        self._logged = 0
        self._dropped = 0

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if not isinstance(error, (HttpProcessingError, RequestPayloadError)):
            self.logger.error(msg, *args, exc_info=exc_info, **kwargs)
            return
        now = time.monotonic()
        if now - self._window >= 60:
            self._window, self._logged = now, 0
        if self._logged >= self.per_minute:
            self._dropped += 1
            return
        self._logged += 1
        left_out = f" ({self._dropped} more left out before this one)" if self._dropped else ""
        self._dropped = 0
        peer = str(args[0]) if args else "?"
        reason = " ".join(str(getattr(error, "message", "") or error).split())[:200]
        self.logger.warning(
            "malformed HTTP request from %s: %s%s", peer, reason or type(error).__name__, left_out
        )
