"""The admin plane: the ``/v1`` API, the ``/admin`` dashboard and the API's OpenAPI document.

Its own aiohttp sub-applications with their own state (``context.ADMIN``), mounted on the
receiver's application by :func:`mount`; the receiver hands it the queue when its Redis client
opens (:func:`attach`). Nothing here is on the path of a submission.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from service.admin import openapi
from service.admin.api import create_api_app
from service.admin.context import AdminContext
from service.admin.dashboard import create_dashboard_app
from service.queue import Queue

__all__ = ["AdminContext", "AdminPlane", "mount"]


@dataclass(frozen=True, slots=True)
class AdminPlane:
    """The admin sub-applications of one receiver, sharing one context."""

    context: AdminContext

    def attach(self, queue: Queue | None) -> None:
        """Give the admin plane the queue (None once the receiver's Redis client closes)."""
        self.context.queue = queue


def mount(app: web.Application, context: AdminContext) -> AdminPlane:
    """Add ``/v1``, ``/admin`` and ``/openapi.json`` to ``app``."""
    app.router.add_get("/openapi.json", openapi.serve_document)
    app.add_subapp("/v1", create_api_app(context))
    app.add_subapp("/admin", create_dashboard_app(context))
    return AdminPlane(context)
