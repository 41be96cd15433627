"""The two baselines the receiver is measured against, as bare aiohttp apps.

- ``ceiling``: reads the body and answers 202. Nothing else: what one aiohttp process can
  answer at all on this core (the ceiling no receiver can pass).
- ``xadd``: reads the body and awaits one XADD of it per request before answering 202: the
  naive Redis-queued receiver (no signature check, no parsing, no idempotency).

``python -m bench.baselines ceiling|xadd --port N [--redis URL] [--loop asyncio|uvloop]``;
listens on 127.0.0.1 only. ``--loop`` picks the event loop, so that a baseline runs on the same
loop as the receiver it is compared with.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis

from service.loops import event_loop_factory

REDIS = web.AppKey("redis", Redis)
STREAM = "{bench}:naive-stream"


async def ceiling(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"status": "queued"}, status=202)


async def xadd(request: web.Request) -> web.Response:
    body = await request.read()
    entry = await request.app[REDIS].xadd(STREAM, {"body": body})
    return web.json_response({"id": str(entry), "status": "queued"}, status=202)


def create(kind: str, redis_url: str | None) -> web.Application:
    app = web.Application()
    if kind == "xadd":
        if not redis_url:
            raise SystemExit("xadd needs --redis")

        async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
            app[REDIS] = Redis.from_url(redis_url, decode_responses=True)
            yield
            await app[REDIS].aclose()

        app.cleanup_ctx.append(redis_ctx)
        app.router.add_post("/hooks/{source}", xadd)
    else:
        app.router.add_post("/hooks/{source}", ceiling)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["ceiling", "xadd"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    factory = event_loop_factory(args.loop)
    web.run_app(
        create(args.kind, args.redis),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        loop=factory() if factory else None,
    )


if __name__ == "__main__":
    main()
