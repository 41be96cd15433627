"""The emulator's sales team (close-api-actions.md §1, §6): groups and connected (sender)
accounts, and what the follow-up routes share (paging, time filters, finding a user).

The follow-ups themselves: ``tasks.py`` (tasks), ``sequences.py`` (sequences, subscriptions, the
unsubscribe list), ``deals.py`` (opportunities, custom activities). Faults, latency and rate
limits come from the middleware, like for every ``/api/`` route.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from close_emulator.api import API, ObjectNotFound, _int_param
from close_emulator.fields import JSONObject, ValidationFailed
from close_emulator.options import EmulatorOptions, User
from close_emulator.state import EMULATOR_STATE, EmulatorState
from close_emulator.team import ConnectedAccount, Group

TASK_TYPES = ("lead", "outgoing_call")
"""The only task types the API creates (D:tasks)."""


def _state(request: web.Request) -> EmulatorState:
    return request.app[EMULATOR_STATE]


def page(request: web.Request, items: list[JSONObject], **extra: Any) -> web.Response:
    """``{"has_more", "data"}`` of one page (``_limit``, ``_skip``)."""
    state = _state(request)
    limit = _int_param(request, "_limit", 100, state.options.max_list_limit)
    skip = _int_param(request, "_skip", 0, None)
    body = {"has_more": skip + limit < len(items), "data": items[skip : skip + limit], **extra}
    return web.json_response(body)


def created_filter(prefix: str, query: Any) -> Callable[[JSONObject], bool]:
    """``<prefix>__gt/gte/lt/lte`` filters on an ISO time field (``date_created``...)."""
    bounds: list[tuple[Callable[[datetime, datetime], bool], datetime]] = []
    for suffix, test in (
        ("gt", operator.gt),
        ("gte", operator.ge),
        ("lt", operator.lt),
        ("lte", operator.le),
    ):
        raw = query.get(f"{prefix}__{suffix}")
        if raw is not None:
            try:
                moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                raise ValidationFailed.single(
                    f"{prefix}__{suffix}", "Not a valid datetime."
                ) from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            bounds.append((test, moment))

    def keep(obj: JSONObject) -> bool:
        value = datetime.fromisoformat(str(obj[prefix]))
        return all(test(value, moment) for test, moment in bounds)

    return keep


# -- users, groups, accounts ---------------------------------------------------------------------


def find_user(options: EmulatorOptions, ref: str) -> User | None:
    """A user by id or (any case) email."""
    for user in options.users:
        if ref in (user.id,) or ref.casefold() == user.email.casefold():
            return user
    return None


def accounts(options: EmulatorOptions) -> list[tuple[ConnectedAccount, User]]:
    """Every connected account with its user (one per user when none are configured)."""
    given = options.connected_accounts
    if given is None:
        given = [ConnectedAccount.model_validate({"user": user.id}) for user in options.users]
    out = []
    for account in given:
        user = find_user(options, account.user)
        if user is not None:
            out.append((account, user))
    return out


def account_json(account: ConnectedAccount, user: User, options: EmulatorOptions) -> JSONObject:
    email = account.email or user.email
    return {
        "_type": account.type,
        "id": account.id,
        "user_id": user.id,
        "organization_id": options.organization_id,
        "identities": [{"email": email, "name": user.name}],
        "email": email,
        "smtp": None,
        "synced_calendars": [],
    }


def group_json(group: Group, options: EmulatorOptions, *, members: bool) -> JSONObject:
    body: JSONObject = {
        "id": group.id,
        "name": group.name,
        "organization_id": options.organization_id,
    }
    if members:
        users = [find_user(options, ref) for ref in group.members]
        body["members"] = [{"user_id": user.id} for user in users if user is not None]
    return body


async def list_groups(request: web.Request) -> web.Response:
    options = _state(request).options
    return page(request, [group_json(g, options, members=False) for g in options.groups])


async def get_group(request: web.Request) -> web.Response:
    options = _state(request).options
    for group in options.groups:
        if group.id == request.match_info["group_id"]:
            return web.json_response(group_json(group, options, members=True))
    raise ObjectNotFound("Group")


async def list_connected_accounts(request: web.Request) -> web.Response:
    options = _state(request).options
    user_id = request.query.get("user_id")
    rows = [
        account_json(account, user, options)
        for account, user in accounts(options)
        if user_id is None or user.id == user_id
    ]
    return page(request, rows)


def add_sales_routes(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.get(f"{API}/group/", list_groups),
            web.get(f"{API}/group/{{group_id}}/", get_group),
            web.get(f"{API}/connected_account/", list_connected_accounts),
        ]
    )


def equals(name: str, wanted: object) -> Callable[[JSONObject], bool]:
    """A list filter: ``obj[name] == wanted``."""
    return lambda obj: bool(obj.get(name) == wanted)


def one_of(name: str, wanted: set[str]) -> Callable[[JSONObject], bool]:
    """A list filter: ``obj[name]`` is one of ``wanted``."""
    return lambda obj: obj.get(name) in wanted
