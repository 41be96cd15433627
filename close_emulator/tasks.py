"""The emulator's tasks (close-api-actions.md §4): ``POST /task/`` (only ``lead`` and
``outgoing_call`` tasks), ``GET /task/`` with its filters (only ``lead`` tasks unless ``_type``
says otherwise), ``GET`` and ``PUT /task/{id}/``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from close_emulator.api import API, creates, one, read_body
from close_emulator.events import snapshot
from close_emulator.fields import DOES_NOT_EXIST, REQUIRED, Errors, JSONObject
from close_emulator.sales import created_filter, equals, find_user, page
from close_emulator.state import EMULATOR_STATE, EmulatorState, now_iso

TASK_TYPES = ("lead", "outgoing_call")
"""The only task types the API creates (D:tasks)."""


def _state(request: web.Request) -> EmulatorState:
    return request.app[EMULATOR_STATE]


# -- tasks --------------------------------------------------------------------------------------


def _user_names(state: EmulatorState, user_id: str) -> str:
    user = find_user(state.options, user_id)
    return user.name if user is not None else ""


def _task_date(value: Any, errors: Errors) -> str | None:
    if value is None:
        return None
    try:
        if isinstance(value, str) and "T" in value:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        else:
            date.fromisoformat(str(value))
    except ValueError:
        errors.add("date", "Not a valid date or datetime.")
        return None
    return str(value)


def _task_view(task: JSONObject) -> None:
    if task["is_complete"]:
        task["view"], task["object_type"] = "archive", "taskcompleted"
        task["object_id"] = task.get("object_id") or "acti_" + task["id"][5:]
        return
    today = datetime.now(UTC).date().isoformat()
    task["view"] = "future" if str(task["date"])[:10] > today else "inbox"
    task["object_type"], task["object_id"] = None, None


def create_task(body: JSONObject, state: EmulatorState) -> JSONObject:
    """``POST /task/``: a ``lead`` or ``outgoing_call`` task (recorded defaults: assigned to the
    key's user, dated today and ``is_dateless`` when no date is sent)."""
    errors = Errors()
    kind = body.get("_type", "lead")
    if kind not in TASK_TYPES:
        errors.add("_type", "Not a valid choice.")
    lead = (
        state.leads.get(body.get("lead_id") or "") if isinstance(body.get("lead_id"), str) else None
    )
    if body.get("lead_id") is None:
        errors.add("lead", REQUIRED)
    elif lead is None:
        errors.add("lead", DOES_NOT_EXIST)
    text = body.get("text")
    if kind == "lead" and not (isinstance(text, str) and text.strip()):
        errors.add("text", REQUIRED)
    contact_id = body.get("contact_id")
    contact = state.contacts.get(contact_id) if isinstance(contact_id, str) else None
    if kind == "outgoing_call" and contact_id is None:
        errors.add("contact", REQUIRED)
    elif contact_id is not None and (
        contact is None or (lead and contact["lead_id"] != lead["id"])
    ):
        errors.add("contact", DOES_NOT_EXIST)
    assigned = body.get("assigned_to") or state.options.user_id
    if find_user(state.options, str(assigned)) is None or not str(assigned).startswith("user_"):
        errors.add("assigned_to", DOES_NOT_EXIST)
    when = _task_date(body.get("date", body.get("due_date")), errors)
    if "is_complete" in body and not isinstance(body["is_complete"], bool):
        errors.add("is_complete", "Must be a boolean.")
    if body.get("priority") not in (None, "high", "medium"):
        errors.add("priority", "Not a valid choice.")
    errors.raise_if_any()
    assert lead is not None
    stamp = now_iso()
    options = state.options
    task: JSONObject = {
        "id": state.new_id("task_"),
        "_type": kind,
        "lead_id": lead["id"],
        "lead_name": lead["display_name"],
        "contact_id": contact_id,
        "contact_name": contact["display_name"] if contact else None,
        "assigned_to": assigned,
        "assigned_to_name": _user_names(state, str(assigned)),
        "text": text if isinstance(text, str) else None,
        "date": when or datetime.now(UTC).date().isoformat(),
        "due_date": when,
        "is_dateless": when is None,
        "is_complete": bool(body.get("is_complete", False)),
        "priority": body.get("priority"),
        "organization_id": options.organization_id,
        "created_by": options.user_id,
        "created_by_name": options.user_name,
        "updated_by": options.user_id,
        "updated_by_name": options.user_name,
        "date_created": stamp,
        "date_updated": stamp,
    }
    _task_view(task)
    state.tasks[task["id"]] = task
    state.events.record("task", "created", task)
    return task


def _task_filters(request: web.Request) -> list[Callable[[JSONObject], bool]]:
    q = request.query
    kinds = q.get("_type__in", "").split(",") if "_type__in" in q else [q.get("_type", "lead")]
    tests: list[Callable[[JSONObject], bool]] = []
    if "all" not in kinds:
        tests.append(lambda t: t["_type"] in kinds)
    for name in ("lead_id", "assigned_to", "id"):
        if name in q:
            tests.append(equals(name, q[name]))
    if "id__in" in q:
        wanted = set(q["id__in"].split(","))
        tests.append(lambda t: t["id"] in wanted)
    if "is_complete" in q:
        done = q["is_complete"].lower() in ("true", "1")
        tests.append(lambda t: t["is_complete"] is done)
    if "view" in q:
        tests.append(lambda t: t["view"] == q["view"])
    tests.append(created_filter("date_created", q))
    return tests


async def list_tasks(request: web.Request) -> web.Response:
    tests = _task_filters(request)
    rows = [t for t in _state(request).tasks.values() if all(test(t) for test in tests)]
    order = request.query.get("_order_by", "date_created")
    rows.sort(key=lambda t: str(t.get(order.lstrip("-"), "")), reverse=order.startswith("-"))
    return page(request, rows)


def _task(request: web.Request) -> JSONObject:
    return one(_state(request).tasks, request, "task_id", "Task")


async def get_task(request: web.Request) -> web.Response:
    return web.json_response(_task(request))


async def put_task(request: web.Request) -> web.Response:
    task, state = _task(request), _state(request)
    body, errors = await read_body(request), Errors()
    changes: JSONObject = {}
    if "assigned_to" in body:
        if find_user(state.options, str(body["assigned_to"])) is None:
            errors.add("assigned_to", DOES_NOT_EXIST)
        changes["assigned_to"] = body["assigned_to"]
    if "date" in body:
        changes["date"] = changes["due_date"] = _task_date(body["date"], errors)
        changes["is_dateless"] = False
    if "is_complete" in body:
        if not isinstance(body["is_complete"], bool):
            errors.add("is_complete", "Must be a boolean.")
        changes["is_complete"] = body["is_complete"]
    if "text" in body:
        if task["_type"] != "lead":
            errors.add("text", "Only lead tasks have a text.")
        changes["text"] = body["text"]
    errors.raise_if_any()
    before = snapshot(task)
    task.update(changes)
    task["date_updated"] = now_iso()
    _task_view(task)
    state.events.record("task", "updated", task, previous=before)
    return web.json_response(task)


def add_task_routes(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.post(f"{API}/task/", creates(create_task)),
            web.get(f"{API}/task/", list_tasks),
            web.get(f"{API}/task/{{task_id}}/", get_task),
            web.put(f"{API}/task/{{task_id}}/", put_task),
        ]
    )
