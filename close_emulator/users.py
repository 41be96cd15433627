"""The organisation's people as Close shows them: ``GET /me/``, ``/user/``, ``/user/{id}/`` and
``/organization/{id}/`` (close-api-actions.md §1).

Close has no ``active`` flag on a user: a user who left is still listed by ``/user/`` with
``"organizations": []`` and appears under the organisation's ``inactive_memberships``. The
emulator's users (``EmulatorOptions.users``, from the organisation file) are shown that way.
"""

from __future__ import annotations

from aiohttp import web

from close_emulator.fields import JSONObject
from close_emulator.ids import derived_id
from close_emulator.options import EmulatorOptions, User
from close_emulator.state import EMULATOR_STATE

API = "/api/v1"
_CREATED = "2020-01-01T00:00:00+00:00"  # the emulated organisation's users date from then


def _names(user: User) -> tuple[str, str]:
    first, _, last = user.name.partition(" ")
    return first, last


def user_json(user: User, options: EmulatorOptions) -> JSONObject:
    first, last = _names(user)
    return {
        "id": user.id,
        "email": user.email,
        "first_name": first,
        "last_name": last,
        "image": None,
        "organizations": [options.organization_id] if user.active else [],
        "date_created": _CREATED,
        "date_updated": _CREATED,
    }


def _membership(user: User, options: EmulatorOptions) -> JSONObject:
    return {
        "id": derived_id("memb_", f"{options.organization_id}|{user.id}"),
        "organization_id": options.organization_id,
        "user_id": user.id,
        "role_id": "admin" if user.id == options.user_id else "user",
        "user_email": user.email,
        "user_full_name": user.name,
    }


def organization_json(options: EmulatorOptions) -> JSONObject:
    return {
        "id": options.organization_id,
        "name": options.organization_name,
        "lead_statuses": [status.model_dump() for status in options.lead_statuses],
        "memberships": [_membership(u, options) for u in options.users if u.active],
        "inactive_memberships": [_membership(u, options) for u in options.users if not u.active],
        "date_created": _CREATED,
    }


def _options(request: web.Request) -> EmulatorOptions:
    return request.app[EMULATOR_STATE].options


def _not_found(model: str) -> web.Response:
    body = {"error": f"Empty query: {model} matching query does not exist."}
    return web.json_response(body, status=404)


async def get_me(request: web.Request) -> web.Response:
    options = _options(request)
    owner = next((u for u in options.users if u.id == options.user_id), None)
    if owner is None:  # a user_id set on its own, outside the users list
        owner = User(id=options.user_id, email="emulator@example.com", name=options.user_name)
    me = user_json(owner, options)
    me["organizations"] = [organization_json(options)]
    return web.json_response(me)


async def list_users(request: web.Request) -> web.Response:
    options = _options(request)
    users = [user_json(user, options) for user in options.users]
    return web.json_response({"has_more": False, "data": users})


async def get_user(request: web.Request) -> web.Response:
    options = _options(request)
    for user in options.users:
        if user.id == request.match_info["user_id"]:
            return web.json_response(user_json(user, options))
    return _not_found("User")


async def get_organization(request: web.Request) -> web.Response:
    options = _options(request)
    if request.match_info["org_id"] != options.organization_id:
        return _not_found("Organization")
    return web.json_response(organization_json(options))


def add_user_routes(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.get(f"{API}/me/", get_me),
            web.get(f"{API}/user/", list_users),
            web.get(f"{API}/user/{{user_id}}/", get_user),
            web.get(f"{API}/organization/{{org_id}}/", get_organization),
        ]
    )
