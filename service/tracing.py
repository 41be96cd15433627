"""Traces with OpenTelemetry: one trace per submission, from the door to each Close call.

Off unless the standard ``OTEL_*`` variables configure an exporter (``OTEL_TRACES_EXPORTER``
``otlp`` or ``console``, or an ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``) and the ``otel`` extra
is installed (``pip install 'lead-intake[otel]'``; the image has it). The SDK reads the rest
itself: sampler, batch sizes, endpoint, headers, resource attributes.

The spans of one submission, all in the trace of the ``traceparent`` its sender sent (or a new
one):

- ``POST /hooks/{source}`` (server): the receiver's answer. Its context is carried in the
  envelope (``Envelope.trace``), stored with the record, so it survives the stream, retries hours
  later and replays;
- ``process <source>`` (consumer): one per attempt of a worker, a child of the door's span;
- ``Close <METHOD> <path>`` (client): each request to Close during the attempt (ids in the
  path written ``{id}``).

Attributes name the submission id, the source, states and HTTP facts; never a payload, an email,
a phone number, a name or a client address. Only W3C trace context is read from senders
(no baggage, which could carry anything).

With tracing off every hook is a check of one module variable.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from service import __version__

try:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    AVAILABLE = True
except ImportError:  # the otel extra is not installed: tracing stays off
    AVAILABLE = False

logger = logging.getLogger(__name__)

SUBMISSION_ID = "intake.submission.id"
SOURCE = "intake.source"
STATE = "intake.state"


class _State:
    """The process's tracer while tracing is on (``tracer`` None: off, all the hooks check)."""

    tracer: Any = None
    provider: Any = None


_on = _State()
_propagator: Any = TraceContextTextMapPropagator() if AVAILABLE else None
_ID_SEGMENT = re.compile(r"^[a-z]+_[A-Za-z0-9]{6,}$")


def exporter_named(environ: Mapping[str, str]) -> str | None:
    """The exporter the OTEL_* variables ask for, or None when they leave tracing off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named:
        return None if named == "none" else named
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return "otlp" if any(environ.get(name) for name in endpoints) else None


def _exporter(named: str, environ: Mapping[str, str]) -> SpanExporter | None:
    if named == "console":
        return ConsoleSpanExporter()
    if named != "otlp":
        logger.warning("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console): no traces", named)
        return None
    protocol = environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if protocol.strip() not in ("", "http/protobuf"):
        logger.warning(
            "OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported (http/protobuf): no traces",
            protocol,
        )
        return None
    # Imported only when asked for: the exporter and its protobuf encoder take about 70 ms to
    # import, which every process and command would pay with tracing off.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

    # The exporter reads its endpoint, headers, timeout and certificate from OTEL_* itself.
    return OTLPSpanExporter()


def setup(role: str, environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on for this process when the OTEL_* variables ask for it; True if on.
    ``role``: receiver, worker or dev (the default service name is ``lead-intake-<role>``)."""
    environ = os.environ if environ is None else environ
    named = exporter_named(environ)
    if named is None:
        return False
    if not AVAILABLE:
        logger.warning(
            "OTEL_* variables ask for traces but OpenTelemetry is not installed: "
            "pip install 'lead-intake[otel]'"
        )
        return False
    exporter = _exporter(named, environ)
    if exporter is None:
        return False
    attributes: dict[str, str] = {"service.version": __version__, "lead_intake.role": role}
    if not environ.get("OTEL_SERVICE_NAME") and "service.name=" not in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes["service.name"] = "lead-intake" if role == "dev" else f"lead-intake-{role}"
    provider = TracerProvider(resource=Resource.create(attributes))  # sampler: OTEL_TRACES_SAMPLER
    install(provider, BatchSpanProcessor(exporter))
    logger.info("traces on: %s exporter", named)
    return True


def install(provider: TracerProvider, processor: SpanProcessor | None = None) -> None:
    """Trace into ``provider`` (tests pass one with an in-memory exporter)."""
    if processor is not None:
        provider.add_span_processor(processor)
    _on.provider = provider
    _on.tracer = provider.get_tracer("lead-intake", __version__)


def shutdown() -> None:
    """Send what is buffered and turn tracing off."""
    if _on.provider is not None:
        _on.provider.shutdown()
    _on.tracer = _on.provider = None


def enabled() -> bool:
    return _on.tracer is not None


# --- the hooks -------------------------------------------------------------------------------


@contextmanager
def door(headers: Mapping[str, str], method: str, source: str) -> Iterator[Span]:
    """The receiver's span of one hook request, continuing the sender's ``traceparent``."""
    parent = _propagator.extract(
        {k: v for k, v in headers.items() if k.lower() in ("traceparent", "tracestate")}
    )
    with _on.tracer.start_as_current_span(
        f"{method} /hooks/{{source}}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": method,
            "http.route": "/hooks/{source}",
            SOURCE: source,
        },
    ) as span:
        yield span


def answered(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


def name_submission(sub_id: str, *, duplicate: bool = False) -> None:
    """Put the submission's id on the current span (the door's)."""
    if _on.tracer is None:
        return
    span = trace.get_current_span()
    span.set_attribute(SUBMISSION_ID, sub_id)
    if duplicate:
        span.set_attribute("intake.duplicate", True)


def carried() -> dict[str, str]:
    """The current span's context, to carry in the envelope (empty when tracing is off)."""
    if _on.tracer is None:
        return {}
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


@contextmanager
def attempt(carrier: Mapping[str, str], sub_id: str, source: str, stream: str) -> Iterator[Span]:
    """A worker's span of one attempt, a child of the span the envelope carries."""
    with _on.tracer.start_as_current_span(
        f"process {source}",
        context=_propagator.extract(dict(carrier)),
        kind=SpanKind.CONSUMER,
        attributes={
            SUBMISSION_ID: sub_id,
            SOURCE: source,
            "messaging.system": "redis",
            "messaging.operation.type": "process",
            "messaging.destination.name": stream,
        },
    ) as span:
        yield span


def outcome(span: Span, state: str) -> None:
    span.set_attribute(STATE, state)


class _CloseCall:
    """The span of one Close request; a no-op while tracing is off."""

    __slots__ = ("_manager", "span")

    def __init__(self, method: str, base_url: str, path: str, group: str) -> None:
        self.span: Span | None = None
        self._manager: Any = None
        if _on.tracer is None:
            return
        template = "/".join("{id}" if _ID_SEGMENT.match(p) else p for p in path.split("/"))
        self._manager = _on.tracer.start_as_current_span(
            f"Close {method} /{template.lstrip('/')}",
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": method,
                "url.template": template,
                "server.address": urlsplit(base_url).hostname or "",
                "intake.close.group": group,
            },
        )

    def __enter__(self) -> _CloseCall:
        if self._manager is not None:
            self.span = self._manager.__enter__()
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        if self._manager is None:
            return
        if kind is not None and self.span is not None:
            self.span.set_attribute("error.type", kind.__name__)
            self.span.set_status(Status(StatusCode.ERROR))
        # The exception is not recorded on the span: its message could quote Close's answer.
        self._manager.__exit__(None, None, None)

    def status(self, status: int) -> None:
        if self.span is not None:
            self.span.set_attribute("http.response.status_code", status)
            if status >= 400:
                self.span.set_status(Status(StatusCode.ERROR))


def close_call(method: str, base_url: str, path: str, group: str) -> _CloseCall:
    return _CloseCall(method, base_url, path, group)
