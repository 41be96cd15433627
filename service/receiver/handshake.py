"""``GET /hooks/{source}``: the sender verifies the endpoint before it sends anything.

Meta calls ``GET <callback>?hub.mode=subscribe&hub.challenge=<n>&hub.verify_token=<token>``
when a webhook subscription is made; the answer must be ``200`` with the challenge as the body,
and only when the token is the one configured (``auth.verify_tokens`` of the ``meta`` scheme).
Any other source answers the GET with 405, as before.
"""

from __future__ import annotations

import logging

from aiohttp import web

from service.problems import ProblemError
from service.receiver.auth import AuthFailed
from service.receiver.door import VERIFIERS, request_client
from service.receiver.state import METRICS, SOURCES

logger = logging.getLogger(__name__)


async def handshake(request: web.Request) -> web.Response:
    name = request.match_info["source"]
    if request.app[SOURCES].get(name) is None:
        raise ProblemError(404, "unknown-source", f"there is no source named {name!r}")
    verifier = request.app[VERIFIERS].get(name)
    if verifier is None or not verifier.handshakes:
        raise web.HTTPMethodNotAllowed(request.method, ["POST", "OPTIONS"])
    try:
        challenge = verifier.handshake(request.query)
    except AuthFailed as exc:
        request.app[METRICS].auth_failures.labels(name, exc.reason).inc()
        logger.warning(
            "source %s: verification GET refused: %s (client %s)",
            name,
            exc.reason,
            request_client(request),
        )
        raise ProblemError(
            403, "handshake-refused", "hub.mode must be subscribe and hub.verify_token match"
        ) from None
    logger.info("source %s: endpoint verified by the sender (subscription handshake)", name)
    return web.Response(text=challenge, content_type="text/plain")
