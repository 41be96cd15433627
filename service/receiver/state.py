"""Typed application state shared by the receiver's handlers."""

from __future__ import annotations

import asyncio

from aiohttp import web

from service.admin import AdminPlane
from service.config.settings import Settings
from service.config.sources import Sources
from service.mapping import Mapper
from service.metrics import Metrics
from service.queue import Queue
from service.queue.connection import RedisClient

SETTINGS = web.AppKey("settings", Settings)
SOURCES = web.AppKey("sources", Sources)
REDIS: web.AppKey[RedisClient] = web.AppKey("redis")
QUEUE = web.AppKey("queue", Queue)
ADMIN_PLANE = web.AppKey("admin_plane", AdminPlane)
MAPPERS = web.AppKey("mappers", dict[str, Mapper])
METRICS = web.AppKey("metrics", Metrics)
DRAINING = web.AppKey("draining", asyncio.Event)
"""Set when the process was asked to stop: /readyz fails so no new traffic is sent here."""
