"""How a long-lived process runs: which event loop (``INTAKE_EVENT_LOOP``), and its heap
once started.

uvloop (libuv under asyncio's API) does the socket work of aiohttp and redis-py in C: in the
intake benchmark it is the largest single saving of receiver CPU per request (bench/RESULTS.md).
``auto`` takes it when it is installed and falls back to asyncio's loop otherwise (Windows).
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
from collections.abc import Callable
from typing import Literal

EventLoopChoice = Literal["auto", "uvloop", "asyncio"]


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def event_loop_factory(choice: EventLoopChoice) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A loop factory for :class:`asyncio.Runner`; None means asyncio's default loop."""
    if choice == "asyncio" or (choice == "auto" and not uvloop_available()):
        return None
    import uvloop  # noqa: PLC0415 - optional on platforms without it

    return uvloop.new_event_loop


def freeze_startup_heap() -> None:
    """Move everything alive after start-up (modules, settings, compiled mappings, phone
    metadata) out of the garbage collector's sight.

    Python's cyclic collector walks every tracked object in a full collection; start-up
    leaves a large, permanent heap, so each full collection under load is a pause of
    milliseconds for nothing. Frozen objects are never collected (they live for the whole
    process anyway); objects made later are collected as usual, less often
    (:data:`GC_THRESHOLDS`).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


GC_THRESHOLDS = (50_000, 20, 100)
"""The collector's thresholds once started (Python's: 700, 10, 10). A request allocates a few
hundred objects, nearly all freed by reference counting as it ends; at 700 allocations a young
collection ran every few requests and walked what the requests in flight hold, and promoted it
to be walked again by the older generations. 50,000 makes that one collection in a few hundred
requests (and at most that many young objects kept a little longer: some MB); the older
generations follow less often as well."""
