"""The Close emulator the benchmarks drain into: the service's own, plus a preload route.

``python -m bench.emulator --port N [--latency-ms X --rate-limit N --rate-window W ...]`` takes
the flags of ``lead-intake emulator`` and serves the same application
(``create_emulator_app``: latency, auth, rate limits with ``RateLimit`` headers and 429s,
faults, the same objects, answers and indexed search), with two additions that only serve
the benchmarks:

- ``POST /_bench/preload {"count": N, "tag": T}`` stores N leads of distinct people (one
  contact each, email and phone from ``bench.payloads.person``) through the emulator's own
  lead creation, as an organisation that already holds many leads; answers the time it took
  and how many leads the emulator then holds. No rate limit, latency or log entry applies.
  The preloaded objects are then frozen out of the garbage collector's passes (see
  ``preload``).
- no access log line per request.
"""

from __future__ import annotations

import argparse
import gc
import time

from aiohttp import web

from bench.payloads import person
from close_emulator import (
    EMULATOR_STATE,
    add_emulator_arguments,
    create_emulator_app,
    options_from_args,
)
from close_emulator.objects import create_lead

PRELOAD_PATH = "/_bench/preload"


def preload_leads(app: web.Application, count: int, tag: str) -> float:
    """Store ``count`` leads of distinct people; the seconds it took."""
    state = app[EMULATOR_STATE]
    started = time.monotonic()
    for index in range(count):
        p = person(tag, index)
        contact = {
            "name": f"{p['given']} {p['family']}",
            "emails": [{"email": p["email"], "type": "office"}],
            "phones": [{"phone": p["phone"], "type": "office"}],
        }
        create_lead({"name": p["company"], "contacts": [contact]}, state)
    return time.monotonic() - started


async def preload(request: web.Request) -> web.Response:
    body = await request.json()
    count, tag = int(body["count"]), str(body.get("tag", "pre"))
    seconds = preload_leads(request.app, count, tag)
    # The preloaded objects live as long as the process: collected once now and frozen out
    # of the cyclic garbage collector's later passes. Otherwise the next full pass, due soon
    # after the heap grew by those millions of objects, stalls the emulator for about a
    # second in the middle of the measured drain (a cost of this Python stand-in's heap,
    # not of anything Close or the worker does).
    gc.collect()
    gc.freeze()
    held = len(request.app[EMULATOR_STATE].leads)
    return web.json_response({"stored": count, "seconds": seconds, "leads": held})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_emulator_arguments(parser)
    args = parser.parse_args()
    app = create_emulator_app(options_from_args(args))
    app.router.add_post(PRELOAD_PATH, preload)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
