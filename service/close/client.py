"""The Close API client: one shared aiohttp session, wrapped by aiohttp-retry, deliberately.

aiohttp-retry retries POST by default, retries no exception unless told, has no jitter and
ignores Retry-After. Here it is configured so a request is repeated only when it surely had no
effect: a 429 (any method), a connection that failed before anything was sent (any method), and
5xx/timeouts for GETs only. A POST whose outcome is unknown raises ``CloseUnavailable`` and the
caller decides (the worker looks the person up again before creating).
"""

from __future__ import annotations

import base64
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp_retry import RetryClient, RetryOptionsBase
from pydantic import SecretStr

from service import __version__, jsoncodec, tracing
from service.backoff import retry_delay
from service.close.objects import FollowupCalls
from service.close.pacing import Pacer, endpoint_group
from service.close.ratelimit import RateLimitInfo, parse_ratelimit, wait_after_429
from service.close.search import leads_of_person
from service.errors import (
    CloseAuthFailed,
    CloseRateLimited,
    CloseRefused,
    CloseResponseInfo,
    CloseUnavailable,
)
from service.metrics import Metrics

logger = logging.getLogger(__name__)

PERMANENT_STATUSES = frozenset({400, 402, 404, 405, 415})
AUTH_STATUSES = frozenset({401, 403})


class CloseRetry(RetryOptionsBase):
    """Retry rules for one method family; waits follow Close's rate-limit headers with jitter."""

    def __init__(
        self,
        *,
        attempts: int,
        retry_server_errors: bool,
        exceptions: tuple[type[Exception], ...],
        base: float = 0.25,
        cap: float = 30.0,
        pacer: Pacer | None = None,
    ) -> None:
        super().__init__(
            attempts=attempts,
            statuses=set(),
            exceptions=set(exceptions),
            retry_all_server_errors=False,
            evaluate_response_callback=self._done,
        )
        self.retry_server_errors = retry_server_errors
        self.base = base
        self.cap = cap
        self.pacer = pacer
        self._waits: dict[int, float] = {}

    async def _done(self, response: aiohttp.ClientResponse) -> bool:
        """True when the response is final; False to retry (the response is released then)."""
        retry = response.status == 429 or (self.retry_server_errors and response.status >= 500)
        if not retry:
            return True
        body = await response.read() if response.status == 429 else b""
        if self.pacer is not None:
            # Tell every worker (the shared pause starts now), then queue up like any other
            # request: the retry goes out only when the pause is over and the bucket allows.
            group = endpoint_group(response.method, response.url.path)
            await self.pacer.observe(group, response.status, response.headers, body)
            await self.pacer.before(group)
            self._waits[id(response)] = 0.0
        elif response.status == 429:
            wait = wait_after_429(response.headers, body)
            if wait is not None:
                self._waits[id(response)] = wait
        response.release()
        return False

    def get_timeout(self, attempt: int, response: aiohttp.ClientResponse | None = None) -> float:
        told = self._waits.pop(id(response), None) if response is not None else None
        if told == 0.0:
            return 0.0  # the wait already happened in the shared limiter
        if told is not None:
            return told + random.uniform(0, min(1.0, told * 0.1 + 0.05))  # noqa: S311
        return retry_delay(attempt + 1, base=self.base, cap=self.cap)


def retry_rules(attempts: int, pacer: Pacer | None = None) -> dict[str, CloseRetry]:
    """The per-method retry rules (see the module docstring)."""
    before_send = (aiohttp.ClientConnectorError,)
    return {
        "GET": CloseRetry(
            attempts=attempts,
            retry_server_errors=True,
            exceptions=(aiohttp.ClientError, TimeoutError),
            pacer=pacer,
        ),
        "WRITE": CloseRetry(
            attempts=attempts, retry_server_errors=False, exceptions=before_send, pacer=pacer
        ),
    }


class CloseClient(FollowupCalls):
    """Typed calls to the parts of the Close API Lead Intake uses (the follow-ups' in
    ``objects.py``)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: SecretStr,
        timeout: float,
        connect_timeout: float,
        attempts: int,
        pacer: Pacer | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.pacer = pacer
        self.metrics = metrics
        token = base64.b64encode(f"{api_key.get_secret_value()}:".encode()).decode()
        self._headers = {
            "Authorization": f"Basic {token}",  # Close: the API key as user, empty password
            "User-Agent": f"lead-intake/{__version__}",
            "Accept": "application/json",
        }
        self.timeout = timeout
        """How long one request may take (seconds)."""
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        self._rules = retry_rules(attempts, pacer)
        self._client = RetryClient(client_session=session, retry_options=self._rules["GET"])

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request; return the parsed JSON of a 2xx or raise a CloseError."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        rules = self._rules["GET" if method == "GET" else "WRITE"]
        endpoint = f"{method} /{path.lstrip('/')}"
        group = endpoint_group(method, path)
        with tracing.close_call(method, self.base_url, path, group) as span:
            status, headers, raw = await self._send(
                method, url, rules=rules, endpoint=endpoint, group=group, body=body, params=params
            )
            span.status(status)
        return self._result(endpoint, status, headers, raw)

    async def _send(
        self,
        method: str,
        url: str,
        *,
        rules: CloseRetry,
        endpoint: str,
        group: str,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """The request through the shared limiter and the in-request retries, counted."""
        if self.pacer is not None:
            await self.pacer.before(group)
        started = time.monotonic()
        try:
            async with self._client.request(
                method,
                url,
                retry_options=rules,
                json=body,
                params=params,
                timeout=self._timeout,
                headers=self._headers,
            ) as response:
                raw = await response.read()
                status = response.status
                headers = response.headers
        except aiohttp.ClientConnectorError as exc:
            self._count(group, "error", started)
            raise CloseUnavailable(
                f"{endpoint}: cannot connect ({exc.os_error})", maybe_applied=False
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._count(group, "error", started)
            raise CloseUnavailable(f"{endpoint}: {type(exc).__name__} (outcome unknown)") from None
        info = parse_ratelimit(headers)  # read once, for the metrics and the pacer
        self._count(group, str(status), started, info)
        if self.pacer is not None:
            await self.pacer.observe(group, status, headers, raw, info=info)
        return status, headers, raw

    def _count(
        self, group: str, status: str, started: float, info: RateLimitInfo | None = None
    ) -> None:
        if self.metrics is None:
            return
        self.metrics.close_requests.labels(group, status).inc()
        self.metrics.close_seconds.labels(group).observe(time.monotonic() - started)
        if info is not None:
            self.metrics.close_remaining.labels(group).set(info.remaining)

    @staticmethod
    def _result(endpoint: str, status: int, headers: Mapping[str, str], raw: bytes) -> Any:
        try:
            parsed: Any = jsoncodec.loads(raw) if raw else None
        except ValueError:
            parsed = raw[:500].decode("utf-8", "replace")
        if 200 <= status < 300:
            return parsed
        info = CloseResponseInfo(status=status, body=parsed, endpoint=endpoint)
        if status == 429:
            wait = wait_after_429(headers, raw)
            raise CloseRateLimited(
                f"{endpoint}: 429", info, retry_after=5.0 if wait is None else wait
            )
        if status in AUTH_STATUSES:
            raise CloseAuthFailed(f"{endpoint}: {status} (API key refused)", info)
        if status in PERMANENT_STATUSES:
            raise CloseRefused(f"{endpoint}: {status}", info)
        raise CloseUnavailable(f"{endpoint}: {status}", info)

    # -- the calls -------------------------------------------------------------------------

    async def create_lead(self, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", "lead/", body=body)
        return result

    async def create_note(self, lead_id: str, note: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", "activity/note/", body={"lead_id": lead_id, "note": note}
        )
        return result

    async def merge_leads(self, source: str, destination: str) -> None:
        """``POST /lead/merge/``: ``source`` merged into ``destination``, then deleted."""
        await self.request(
            "POST", "lead/merge/", body={"source": source, "destination": destination}
        )

    async def get_lead(self, lead_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"lead/{lead_id}/")
        return result

    async def create_contact(self, lead_id: str, contact: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", "contact/", body={**contact, "lead_id": lead_id}
        )
        return result

    async def find_leads(self, email: str | None, phone: str | None) -> list[dict[str, Any]]:
        """Leads having a contact with this email or this E.164 phone, in one search (id,
        name, dates, and the contacts with their emails and phones)."""
        result = await self.request("POST", "data/search/", body=leads_of_person(email, phone))
        data = result.get("data") if isinstance(result, dict) else None
        return [row for row in data or [] if isinstance(row, dict) and row.get("id")]

    async def custom_field_schema(self, object_type: str = "lead") -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", f"custom_field_schema/{object_type}/")
        return result

    async def lead_statuses(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "status/lead/")
        return result
