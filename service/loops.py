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
    process anyway); objects made later are collected as usual.
    """
    gc.collect()
    gc.freeze()
