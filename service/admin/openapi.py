"""The OpenAPI 3.1 document of the admin API, served at ``GET /openapi.json``.

Written as data, next to the handlers it describes (``api.py``); the limits and state names
come from the same constants the handlers check. ``tests/admin/test_openapi.py`` asserts that
every ``/v1`` route of the application is described here and nothing else, and runs
schemathesis against the running application with this document.

Longer than 400 lines because it is one document, written out as data: split across modules it
would no longer read as the API it describes.
"""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from service import __version__
from service.admin.params import (
    DEFAULT_LINKS,
    INCLUDES,
    LINK_STATUSES,
    MAX_LIMIT,
    MAX_TEXT,
    MAX_TIME,
)
from service.close.pacing import GROUPS
from service.queue.records import REPLAYABLE, STATES

JSON = "application/json"
PROBLEM = "application/problem+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# What every submission record has, in a full record and in a listing row alike.
_RECORD_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string"},
    "source": {"type": "string"},
    "state": _ref("State"),
    "received_at": {"type": "string", "format": "date-time"},
    "updated_at": {"type": "string", "format": "date-time"},
    "attempts": {"type": "integer", "minimum": 0},
    "lead_id": {"type": ["string", "null"]},
    "lead_url": {"type": ["string", "null"]},
    "owner": {
        "type": ["string", "null"],
        "description": "The lead's owner (a Close user id) as the source's follow-ups chose or "
        "kept it; null without an owner step, or when nobody was available.",
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _limit(default: int) -> dict[str, Any]:
    """The ``limit`` query parameter of a listing."""
    schema = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": default}
    return {"name": "limit", "in": "query", "schema": schema}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": _ref("Problem")}}}


UNAUTHORIZED = {
    **_problem("No bearer token, or not one of the configured admin tokens."),
    "headers": {
        "WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer realm=...`"}
    },
}
THROTTLED = {
    **_problem(
        "Too many wrong admin tokens from this address (`rate-limited`); every request from it "
        "is refused until `Retry-After` seconds have passed."
    ),
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
}
UNAVAILABLE = _problem("Redis cannot be reached (`queue-unavailable`); try again later.")
NOT_FOUND = _problem("No such submission: never received, or its record expired.")
INVALID = _problem(
    "A parameter is invalid (`invalid-parameter`, naming it in `detail` and `invalid-params`)."
)

TIME = {
    "anyOf": [
        {"type": "string", "format": "date-time", "examples": ["2024-05-01T12:00:00Z"]},
        {"type": "number", "minimum": 0, "maximum": MAX_TIME, "examples": [1714564800]},
    ],
    "description": "ISO-8601 (UTC when no offset is given) or unix seconds.",
}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}

SUBMISSION_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The submission id the receiver answered with (`sub_...`).",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"},
    "example": "sub_01J0ZX5Q8D3V9K2M4N6P7R8S9T",
}

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details; `type` is stable (`urn:lead-intake:problem:*`).",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string", "examples": ["urn:lead-intake:problem:invalid-parameter"]},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "invalid-params": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "reason"],
                    "properties": {"name": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
        },
    },
    "State": {"type": "string", "enum": list(STATES)},
    "HistoryEvent": {
        "type": "object",
        "required": ["at", "state"],
        "properties": {
            "at": {"type": "string", "format": "date-time"},
            "state": {"type": "string"},
            "detail": {"type": "object"},
        },
    },
    "StepMark": {
        "type": "object",
        "description": (
            "How far one step after the lead got. `started`: its request may have reached Close "
            "(the next attempt looks for its effect before sending again); `done` (`close_id`: "
            "what it made or found: a contact, note, task, subscription, opportunity, custom "
            "activity, the owner's user id, the updated lead), `skipped` (`reason`: why "
            "nothing was needed, e.g. the email is unsubscribed) and `failed` (Close refused "
            "it for good: `error` holds Close's answer) are final. `detail` is the step's own: "
            "the owner's `how`, `pool` and `turn`; an update's `changes` (field: before and "
            "after); a task's `assigned_to` and `date`; `how: found after a lost answer`."
        ),
        "required": ["state", "at"],
        "properties": {
            "state": {"type": "string", "enum": ["started", "done", "skipped", "failed"]},
            "at": {"type": "string", "format": "date-time"},
            "close_id": {"type": "string"},
            "reason": {"type": "string"},
            "error": {"description": "Close's answer to a refused step (status, field errors)."},
            "detail": {"type": "object"},
        },
    },
    "Submission": {
        "type": "object",
        "description": (
            "A submission's record: state, attempts, the Close lead, the last error, the "
            "payload as received (personal data) and every state change. Fields the worker "
            "records along the way (`steps`, `warnings`, `close_response`, `matched_via`, "
            "`previous_lead_id`, ...) are included as they are. An erased submission is a "
            "tombstone: id, source, times, `erased_from` and one history event."
        ),
        "required": [
            *_RECORD_PROPERTIES,
            "history",
        ],
        "properties": {
            **_RECORD_PROPERTIES,
            "last_error": {"description": "What the last failed attempt met (object or text)."},
            "payload": {"description": "The body as received: personal data."},
            "fetched": {
                "type": "object",
                "description": (
                    "What hydration fetched from the provider for a thin payload (provider, "
                    "request, at, body): personal data."
                ),
            },
            "erased_from": {"type": "string", "description": "The state before erasure."},
            "steps": {
                "type": "object",
                "description": "The steps after the lead by name, in the order they ran: "
                "`owner`, `update`, `contact_details`, `contact`, `task`, `note`, `activity`, "
                "`opportunity`, `sequence` (those the source has).",
                "additionalProperties": _ref("StepMark"),
            },
            "history": {"type": "array", "items": _ref("HistoryEvent")},
        },
        "additionalProperties": True,
    },
    "SubmissionSummary": {
        "type": "object",
        "description": "A listing row; `payload` and `history` only when `include` asks.",
        "required": [
            *_RECORD_PROPERTIES,
            "last_error",
            "next_attempt_at",
            "replayed_at",
        ],
        "properties": {
            **_RECORD_PROPERTIES,
            "last_error": {"description": "What the last failed attempt met (object, text, null)."},
            "next_attempt_at": NULLABLE_TIME,
            "replayed_at": NULLABLE_TIME,
            "erased_from": {"type": ["string", "null"]},
            "payload": {"description": "The body as received: personal data."},
            "history": {"type": "array", "items": _ref("HistoryEvent")},
        },
        "additionalProperties": False,
    },
    "SubmissionList": {
        "type": "object",
        "required": ["submissions", "limit", "more"],
        "properties": {
            "submissions": {"type": "array", "items": _ref("SubmissionSummary")},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            "more": {
                "type": "boolean",
                "description": "More submissions match; ask again with `until` set earlier.",
            },
        },
        "additionalProperties": False,
    },
    "Queued": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {"id": {"type": "string"}, "status": {"const": "queued"}},
    },
    "ReplayByIds": {
        "type": "object",
        "required": ["ids"],
        "properties": {
            "ids": {"type": "array", "items": TEXT, "minItems": 1, "maxItems": MAX_LIMIT}
        },
        "additionalProperties": False,
    },
    "ReplayByFilter": {
        "type": "object",
        "description": (
            "The finished submissions in `state`, newest first, optionally of one source and "
            "received in [since, until]: the same selection `GET /v1/submissions` shows."
        ),
        "required": ["state"],
        "properties": {
            "state": {"type": "string", "enum": list(REPLAYABLE)},
            "source": TEXT,
            "since": TIME,
            "until": TIME,
            "limit": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_LIMIT,
                "default": MAX_LIMIT,
            },
        },
        "additionalProperties": False,
    },
    "ReplayResults": {
        "type": "object",
        "required": ["results", "replayed", "more"],
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "outcome"],
                    "properties": {
                        "id": {"type": "string"},
                        "outcome": {
                            "type": "string",
                            "enum": ["replayed", "in-progress", "erased", "unknown"],
                        },
                    },
                    "additionalProperties": False,
                },
            },
            "replayed": {"type": "integer", "minimum": 0},
            "more": {
                "type": "boolean",
                "description": "With a filter: more submissions matched than `limit`.",
            },
        },
        "additionalProperties": False,
    },
    "Counts": {
        "type": "object",
        "required": ["states", "total", "queue", "delivery", "redis", "links"],
        "properties": {
            "states": {
                "type": "object",
                "description": "Retained submissions in each state.",
                "required": list(STATES),
                "properties": {s: {"type": "integer", "minimum": 0} for s in STATES},
                "additionalProperties": False,
            },
            "total": {"type": "integer", "minimum": 0, "description": "All but `erased`."},
            "queue": {
                "type": "object",
                "required": ["stream_length", "pending", "retry_scheduled", "dead_letters"],
                "properties": {
                    "stream_length": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Entries in the work stream (waiting or in progress).",
                    },
                    "pending": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Entries a worker has read and not finished.",
                    },
                    "retry_scheduled": {"type": "integer", "minimum": 0},
                    "dead_letters": {"type": "integer", "minimum": 0},
                },
                "additionalProperties": False,
            },
            "delivery": {
                "type": "object",
                "required": ["status", "paused_reason", "rate_limit_pauses"],
                "properties": {
                    "status": {"type": "string", "enum": ["running", "paused", "rate-limited"]},
                    "paused_reason": {
                        "type": ["string", "null"],
                        "description": "Why delivery is paused (Close refused the API key).",
                    },
                    "rate_limit_pauses": {
                        "type": "object",
                        "description": "Seconds each Close endpoint group stays paused.",
                        "required": list(GROUPS),
                        "properties": {g: {"type": "number", "minimum": 0} for g in GROUPS},
                        "additionalProperties": False,
                    },
                },
                "additionalProperties": False,
            },
            "redis": {
                "type": "object",
                "required": ["data_lost_at"],
                "properties": {
                    "data_lost_at": {
                        "type": ["string", "null"],
                        "format": "date-time",
                        "description": "When Redis was last found back without its data (a "
                        "restart without persistence): what was accepted before and not yet "
                        "delivered is lost. Kept a week; null when none.",
                    }
                },
                "additionalProperties": False,
            },
            "links": {
                "type": "object",
                "description": "Identity links kept per status: `flagged` ones are possible "
                "duplicates (`GET /v1/links?status=flagged`).",
                "required": list(LINK_STATUSES),
                "properties": {s: {"type": "integer", "minimum": 0} for s in LINK_STATUSES},
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    },
    "LinkLead": {
        "type": "object",
        "required": ["id", "url"],
        "properties": {
            "id": {"type": "string", "examples": ["lead_abc"]},
            "url": {"type": "string", "description": "The lead's page in Close's app."},
        },
        "additionalProperties": False,
    },
    "Link": {
        "type": "object",
        "description": (
            "An identity link: one submission's email led to one lead and its phone to another "
            "(two of the person's submissions with disjoint identities each made a lead). "
            "`status`: `flagged` (kept as a possible duplicate: the source's `dedup.link` is "
            "`flag`, or a merge was refused, `reason` says why) or `merged` (`kept` is the lead "
            "kept, `merged` the one merged into it). `identities` maps identity keys (hashes of "
            "the normalised email or phone, never the address itself) to the lead each led to."
        ),
        "required": [
            "leads",
            "status",
            "policy",
            "source",
            "submission",
            "via",
            "identities",
            "reason",
            "kept",
            "merged",
            "first_seen_at",
            "updated_at",
        ],
        "properties": {
            "leads": {"type": "array", "items": _ref("LinkLead"), "minItems": 2, "maxItems": 2},
            "status": {"type": "string", "enum": list(LINK_STATUSES)},
            "policy": {"type": ["string", "null"], "enum": ["merge", "flag", "ignore", None]},
            "source": {"type": ["string", "null"]},
            "submission": {
                "type": ["string", "null"],
                "description": "The submission that found the link (`GET /v1/submissions/{id}`).",
            },
            "via": {
                "type": ["string", "null"],
                "enum": ["search", "cache", None],
                "description": "Found by Close's search or by the lead cache.",
            },
            "identities": {"type": "object", "additionalProperties": {"type": "string"}},
            "reason": {
                "type": ["string", "null"],
                "description": "Why a merge was refused and the pair flagged instead.",
            },
            "kept": {"type": ["string", "null"]},
            "merged": {"type": ["string", "null"]},
            "first_seen_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
        "additionalProperties": False,
    },
    "LinkList": {
        "type": "object",
        "required": ["links", "limit", "more", "next_before"],
        "properties": {
            "links": {"type": "array", "items": _ref("Link")},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            "more": {"type": "boolean", "description": "Older links match."},
            "next_before": {
                "type": ["number", "null"],
                "description": "Give it as `before` for the next page (null on the last).",
            },
        },
        "additionalProperties": False,
    },
}

PATHS: dict[str, Any] = {
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
        }
    },
    "/v1/submissions": {
        "get": {
            "operationId": "listSubmissions",
            "summary": "List submissions, newest first",
            "description": (
                "Summaries (no personal data unless `include=payload`), newest received first. "
                "When `more` is true, page on with `until` set to the oldest `received_at`."
            ),
            "parameters": [
                {
                    "name": "state",
                    "in": "query",
                    "description": "Only these states (repeat the parameter, or comma-separate).",
                    "schema": {"type": "array", "items": _ref("State")},
                    "style": "form",
                    "explode": True,
                },
                {"name": "source", "in": "query", "schema": TEXT},
                {
                    "name": "since",
                    "in": "query",
                    "description": "Received at or after.",
                    "schema": TIME,
                },
                {
                    "name": "until",
                    "in": "query",
                    "description": "Received at or before.",
                    "schema": TIME,
                },
                _limit(50),
                {
                    "name": "include",
                    "in": "query",
                    "description": "Add the payload (personal data) and/or the history.",
                    "schema": {
                        "type": "array",
                        "items": {"type": "string", "enum": list(INCLUDES)},
                    },
                    "style": "form",
                    "explode": True,
                },
            ],
            "responses": {
                "200": _json(_ref("SubmissionList"), "The submissions."),
                "400": INVALID,
                "401": UNAUTHORIZED,
                "429": THROTTLED,
                "503": UNAVAILABLE,
            },
        }
    },
    "/v1/submissions/replay": {
        "post": {
            "operationId": "replaySubmissions",
            "summary": "Queue many finished submissions again",
            "description": (
                "By ids, or by a filter (state, source, received time). Each is looked up in "
                "Close again before anything is created, so no second lead is made. Every id "
                "gets an outcome; ids that are unknown or still in progress are not errors."
            ),
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {
                        "schema": {"oneOf": [_ref("ReplayByIds"), _ref("ReplayByFilter")]},
                        "examples": {
                            "ids": {"value": {"ids": ["sub_01J0ZX5Q8D3V9K2M4N6P7R8S9T"]}},
                            "dead": {"value": {"state": "dead", "source": "website"}},
                        },
                    }
                },
            },
            "responses": {
                "200": _json(_ref("ReplayResults"), "What happened to each submission."),
                "400": _problem("Not JSON, or not one of the two forms (`invalid-parameter`)."),
                "401": UNAUTHORIZED,
                "429": THROTTLED,
                "413": _problem("The body is too large."),
                "503": UNAVAILABLE,
            },
        }
    },
    "/v1/submissions/{id}": {
        "parameters": [SUBMISSION_ID],
        "get": {
            "operationId": "getSubmission",
            "summary": "One submission with its payload and history",
            "responses": {
                "200": _json(_ref("Submission"), "The record."),
                "401": UNAUTHORIZED,
                "429": THROTTLED,
                "404": NOT_FOUND,
                "503": UNAVAILABLE,
            },
        },
        "delete": {
            "operationId": "eraseSubmission",
            "summary": "Erase a submission's personal data",
            "description": (
                "The payload, the mapped lead, Close's answers and the history go; a tombstone "
                "(id, source, times, the state it had) stays until the record expires. Its "
                "dead-letter entry goes too. Idempotent: erasing again answers the tombstone. "
                "The lead in Close is not touched."
            ),
            "responses": {
                "200": _json(_ref("Submission"), "The tombstone."),
                "401": UNAUTHORIZED,
                "429": THROTTLED,
                "404": NOT_FOUND,
                "503": UNAVAILABLE,
            },
        },
    },
    "/v1/submissions/{id}/replay": {
        "parameters": [SUBMISSION_ID],
        "post": {
            "operationId": "replaySubmission",
            "summary": "Queue a finished submission again",
            "responses": {
                "202": _json(_ref("Queued"), "Queued again."),
                "401": UNAUTHORIZED,
                "429": THROTTLED,
                "404": NOT_FOUND,
                "409": _problem("Still in progress, or erased (`conflict`)."),
                "503": UNAVAILABLE,
            },
        },
    },
    "/v1/links": {
        "get": {
            "operationId": "listLinks",
            "summary": "List identity links (possible duplicates, merged leads), newest first",
            "description": (
                "Pairs of leads one person's email and phone led to, newest first seen first; "
                "no personal data. When `more` is true, page on with `before` set to "
                "`next_before` (the boundary is exclusive: nothing comes twice, even while new "
                "links arrive)."
            ),
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "description": "Only this status (absent: both).",
                    "schema": {"type": "string", "enum": list(LINK_STATUSES)},
                },
                _limit(DEFAULT_LINKS),
                {
                    "name": "before",
                    "in": "query",
                    "description": "Only links first seen before this time (exclusive): the "
                    "previous page's `next_before`.",
                    "schema": TIME,
                },
            ],
            "responses": {
                "200": _json(_ref("LinkList"), "The links."),
                "400": INVALID,
                "401": UNAUTHORIZED,
                "429": THROTTLED,
                "503": UNAVAILABLE,
            },
        }
    },
    "/v1/counts": {
        "get": {
            "operationId": "counts",
            "summary": "Submissions per state, queue depth, delivery status, links per status",
            "responses": {
                "200": _json(_ref("Counts"), "The figures."),
                "401": UNAUTHORIZED,
                "429": THROTTLED,
                "503": UNAVAILABLE,
            },
        }
    },
}


@functools.cache
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Lead Intake admin API",
            "version": __version__,
            "description": (
                "Inspect, replay and erase the submissions Lead Intake received, and list the "
                "identity links (possible duplicate leads) it found. Every route "
                "but this document needs `Authorization: Bearer <admin token>` "
                "(`INTAKE_ADMIN_TOKEN`; several comma-separated tokens are all accepted). "
                "Errors are `application/problem+json` (RFC 9457)."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An admin token from INTAKE_ADMIN_TOKEN.",
                }
            },
        },
    }


async def serve_document(request: web.Request) -> web.Response:
    return web.json_response(document(), headers={"Cache-Control": "no-cache"})
