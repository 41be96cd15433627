"""Server-side CAPTCHA checks: Cloudflare Turnstile, hCaptcha and reCAPTCHA.

All three take the same form post (``secret``, ``response``, optional ``remoteip``) to a
``siteverify`` URL and answer ``{"success": bool, "error-codes": [...], "hostname": ...}``
(reCAPTCHA v3 adds ``score``). The URLs are settings, so tests point them at a local fake.

A missing or refused token is 403 ``captcha-failed``; a provider that cannot be reached is
503 ``captcha-unavailable`` (the visitor may send again). Nothing is stored in either case.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from service.config.policy import CaptchaSpec
from service.config.settings import Settings
from service.problems import ProblemError

logger = logging.getLogger(__name__)


def verify_urls(settings: Settings) -> dict[str, str]:
    return {
        "turnstile": settings.turnstile_verify_url,
        "hcaptcha": settings.hcaptcha_verify_url,
        "recaptcha": settings.recaptcha_verify_url,
    }


class CaptchaVerifier:
    """Checks tokens with the providers over one shared HTTP session."""

    def __init__(self, session: aiohttp.ClientSession, urls: Mapping[str, str]) -> None:
        self.session = session
        self.urls = dict(urls)

    async def _ask(self, url: str, data: dict[str, str]) -> Mapping[str, Any]:
        try:
            async with self.session.post(url, data=data) as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.warning("CAPTCHA provider not usable: %s", type(exc).__name__)
            raise ProblemError(
                503,
                "captcha-unavailable",
                "the CAPTCHA could not be checked; nothing was stored, send the form again",
            ) from None
        return answer if isinstance(answer, dict) else {}

    async def check(
        self, spec: CaptchaSpec, source: str, token: Any, remote_ip: str | None
    ) -> None:
        """Raise 403 unless the provider accepts ``token`` for this source."""
        if isinstance(token, list):
            token = next((t for t in token if isinstance(t, str) and t), None)
        if not isinstance(token, str) or not token.strip():
            raise ProblemError(403, "captcha-failed", "the CAPTCHA was not solved")
        secret = spec.secret.value.get_secret_value() if spec.secret.value else ""
        data = {"secret": secret, "response": token.strip()}
        if remote_ip:
            data["remoteip"] = remote_ip
        answer = await self._ask(self.urls[spec.provider], data)
        ok = answer.get("success") is True
        if ok and spec.min_score is not None:
            score = answer.get("score")
            ok = isinstance(score, (int, float)) and score >= spec.min_score
        if ok and spec.hostnames:
            ok = answer.get("hostname") in spec.hostnames
        if not ok:
            codes = answer.get("error-codes")
            logger.info("CAPTCHA refused for source %s: %s", source, codes or "low score/host")
            raise ProblemError(
                403, "captcha-failed", "the CAPTCHA was not accepted; solve it again"
            )


CAPTCHA = web.AppKey("captcha", CaptchaVerifier)


def captcha_ctx(settings: Settings, needed: bool) -> Any:
    """A cleanup context holding the shared HTTP session, when some source uses a CAPTCHA."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if not needed:
            yield
            return
        timeout = aiohttp.ClientTimeout(total=settings.captcha_timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            app[CAPTCHA] = CaptchaVerifier(session, verify_urls(settings))
            yield

    return ctx
