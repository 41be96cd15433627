"""Typed application state shared by the receiver's handlers."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from service.mapping import Mapper
from service.queue.stream import WorkQueue
from service.settings import Settings
from service.sources import Sources

SETTINGS = web.AppKey("settings", Settings)
SOURCES = web.AppKey("sources", Sources)
REDIS = web.AppKey("redis", Redis)
QUEUE = web.AppKey("queue", WorkQueue)
MAPPERS = web.AppKey("mappers", dict[str, Mapper])
