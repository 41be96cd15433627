"""``POST /lead/merge/``: one lead merged into another (close-api-actions.md section 10).

The body names ``source`` and ``destination``; the answer is ``{"status": "ok"}``, or 404
``{"errors": ["Source lead does not exist."]}`` (and "Destination lead does not exist." for the
other one). The source's contacts, notes, custom activities, tasks, opportunities and sequence
subscriptions move to the destination, then the source is deleted (``GET`` answers 404, no
search shows it). What Close keeps on a custom field both leads have is UNKNOWN: the option
``merge_custom_fields`` says whose single value wins (the destination's by default); the other
lead's values fill the fields one lacks, and multi-value fields get the union. The event log
gets, each with ``meta.merge_source_lead_id`` and ``meta.merge_destination_lead_id``: an
``updated`` event for every moved contact, note, task, opportunity, custom activity and
subscription, ``deleted`` for the source, ``updated`` and ``merged`` for the destination; and
``state.merges`` remembers the merge (``GET /_emulator/merges``). The fault middleware treats it
like every write (``error_after_apply_rate`` answers 5xx after the merge).
"""

from __future__ import annotations

import copy

from aiohttp import web

from close_emulator.api import API, read_body
from close_emulator.fields import JSONObject, ValidationFailed
from close_emulator.state import EMULATOR_STATE, EmulatorState, now_iso


def _missing(which: str) -> web.Response:
    return web.json_response({"errors": [f"{which} lead does not exist."]}, status=404)


def merged_custom(source: JSONObject, destination: JSONObject, state: EmulatorState) -> JSONObject:
    """The destination's custom fields after the merge (see the module docstring)."""
    multi = {
        f"custom.{spec.id}"
        for spec in state.options.lead_custom_fields
        if spec.accepts_multiple_values
    }
    winner, other = (
        (destination, source)
        if state.options.merge_custom_fields == "destination"
        else (source, destination)
    )
    keys = [k for k in {**destination, **source} if k.startswith("custom.")]
    out: JSONObject = {}
    for key in keys:
        if key in multi:
            union: list[object] = []
            for lead in (destination, source):
                value = lead.get(key)
                for item in value if isinstance(value, list) else [] if value is None else [value]:
                    if item not in union:
                        union.append(item)
            if union:
                out[key] = union
        elif winner.get(key) is not None:
            out[key] = winner[key]
        elif other.get(key) is not None:
            out[key] = other[key]
    return out


def merge_leads(source_id: str, destination_id: str, state: EmulatorState) -> None:
    """Move everything of ``source_id`` to ``destination_id``, then delete the source; log the
    events Close's merge gives (every one with the merge's two lead ids in ``meta``)."""
    source, destination = state.leads[source_id], state.leads[destination_id]
    meta: JSONObject = {
        "merge_source_lead_id": source_id,
        "merge_destination_lead_id": destination_id,
    }
    gone, before = copy.deepcopy(source), copy.deepcopy(destination)
    custom = merged_custom(source, destination, state)
    for key in [k for k in destination if k.startswith("custom.")]:
        del destination[key]
    destination.update(custom)
    for contact in source["contacts"]:
        previous = dict(contact)
        contact["lead_id"] = destination_id
        state.events.record("contact", "updated", contact, previous=previous, meta=meta)
    destination["contacts"] = [*destination["contacts"], *source["contacts"]]
    source["contacts"] = []
    for note in state.notes_for(source_id):
        state.events.record(
            "note", "updated", {**note, "lead_id": destination_id}, previous=note, meta=meta
        )
    state.move_notes(source_id, destination_id)
    for kind, table in (
        ("task", state.tasks),
        ("opportunity", state.opportunities),
        ("custom_activity", state.custom_activities),
        ("subscription", state.subscriptions),
    ):
        for obj in table.values():
            if obj.get("lead_id") == source_id:
                previous = dict(obj)
                obj["lead_id"] = destination_id
                state.events.record(kind, "updated", obj, previous=previous, meta=meta)
    state.delete_lead(source_id)
    destination["date_updated"] = now_iso()
    state.store_lead(destination)  # the moved contacts searchable on the destination
    state.events.record(
        "lead", "deleted", None, object_id=source_id, lead_id=source_id, previous=gone, meta=meta
    )
    state.events.record("lead", "updated", destination, previous=before, meta=meta)
    state.events.record("lead", "merged", destination, meta=meta)
    state.merges[source_id] = {
        "lead_id": source_id,
        "destination": destination_id,
        "date": destination["date_updated"],
    }


async def post_merge(request: web.Request) -> web.Response:
    body = await read_body(request)
    state = request.app[EMULATOR_STATE]
    source, destination = body.get("source"), body.get("destination")
    if not isinstance(source, str) or not isinstance(destination, str):
        raise ValidationFailed(
            {"errors": [], "field-errors": {"source": "required", "destination": "required"}}
        )
    if source not in state.leads:
        return _missing("Source")
    if destination not in state.leads:
        return _missing("Destination")
    if source == destination:  # Close's answer is UNKNOWN
        raise ValidationFailed.single("destination", "Cannot merge a lead into itself.")
    merge_leads(source, destination, state)
    return web.json_response({"status": "ok"})


def add_merge_routes(app: web.Application) -> None:
    app.router.add_routes([web.post(f"{API}/lead/merge/", post_merge)])
