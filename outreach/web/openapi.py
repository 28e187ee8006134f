"""The ingest API's OpenAPI 3.1 document, served at /api/v1/openapi.json (outreach/web/api.py).

`DOCUMENT` is the document for any rule set: a record's fields are whatever Settings declares. `document(settings)`
is the one served: it names the record fields Settings declares with their types, the modules a record may be
and the users an owner may be, so a client (and schemathesis, tests/test_web_schemathesis.py) sees exactly what
the checks of `records import` accept. tests/test_web_api.py checks that its paths and methods are the routes.
"""

from __future__ import annotations

import copy
from typing import Any

from outreach.app.ingest import EVENT_KINDS, MAX_ID, MAX_NAME, MAX_STAGE, MAX_SUBJECT, TASK_PRIORITIES, TASK_TYPES
from outreach.rules import model
from outreach.rules.criteria import FieldType

VERSION = "1.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"$ref": f"#/components/responses/{_ERROR_RESPONSES[code][0]}"} for code in codes}


_ERROR_RESPONSES: dict[int, tuple[str, str]] = {
    400: (
        "BadRequest",
        "The body is not JSON, not of the documented shape, or a value has the wrong type; the "
        "message names the field (and a record's index in a list). Nothing was written.",
    ),
    401: (
        "Unauthorized",
        "No bearer token, a wrong one, or the API is off (no web.api_token_env/file in Settings). Nothing was written.",
    ),
    404: ("NotFound", "No such record."),
    409: (
        "Conflict",
        "The record's state refuses it (the reason): an enrollment the engine refuses, a contact "
        "converted, a sequence not applied. Nothing was written.",
    ),
    413: ("TooLarge", "The body is over 1 MB (1048576 bytes). Nothing was written."),
    422: ("Unprocessable", "The request names a sequence or user the rules do not have. Nothing was written."),
    503: ("Unavailable", "The database is not available; try again later."),
}

_TEXT_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID}
_INSTANT = {"type": "string", "format": "date-time",
            "description": "RFC 3339 with a UTC offset (2027-03-02T10:00:00Z), or a date (midnight UTC)"}  # fmt: skip
_OPTIONAL_INSTANT = {**_INSTANT, "type": ["string", "null"]}
_FIELD_TYPES: dict[FieldType, dict[str, Any]] = {
    FieldType.STRING: {"type": ["string", "null"]},
    FieldType.NUMBER: {"type": ["number", "null"]},
    FieldType.BOOLEAN: {"type": ["boolean", "null"]},
    FieldType.DATETIME: _OPTIONAL_INSTANT,
}


def _event(kind: str, description: str, properties: dict[str, Any] | None = None,
           required: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    return {
        "type": "object", "description": description,
        "properties": {"kind": {"const": kind}, "record": _TEXT_ID, **(properties or {})},
        "required": ["kind", "record", *required], "additionalProperties": False,
    }  # fmt: skip


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string", "description": "What is wrong, for a person"}},
        "required": ["error"],
    },
    "Record": {
        "type": "object",
        "description": "A record to create or update, as one line of a JSON Lines import: `type` (a module: lead, "
        "contact, deal or one Settings adds), `id` (optional: matched first), `email` (matched "
        "when there is no id), and the fields Settings declares with values of their types. An "
        "absent, null or empty field is left as it is.",
        "properties": {
            "id": {"type": ["string", "null"], "maxLength": MAX_ID},
            "type": {"type": "string", "minLength": 1},
            "email": {"type": ["string", "null"]},
            "owner": {"type": ["string", "null"], "maxLength": MAX_NAME},
            "timezone": {"type": ["string", "null"], "maxLength": MAX_NAME},
            "stage": {"type": ["string", "null"], "maxLength": MAX_STAGE},
        },
        "required": ["type"],
        "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
    },
    "Records": {
        "oneOf": [_ref("Record"), {"type": "array", "items": _ref("Record"), "minItems": 1}],
    },
    "Upserted": {
        "type": "object",
        "properties": {
            "inserted": {"type": "integer", "minimum": 0},
            "updated": {"type": "integer", "minimum": 0},
            "ids": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Each record's id, in the order of the body",
            },
        },
        "required": ["inserted", "updated", "ids"],
    },
    "Event": {
        "oneOf": [
            _event("reply", "The person replied: the record's live sequences stop."),
            _event("convert", "A lead becomes a contact: its live sequences stop."),
            _event("delete", "The record is deleted (kept for history): its live sequences stop."),
            _event(
                "stage_change",
                "The record enters a stage (its process's reminders follow).",
                {"stage": {"type": "string", "minLength": 1, "maxLength": MAX_STAGE}},
                ("stage",),
            ),
            _event(
                "task",
                "A task for the record.",
                {
                    "subject": {"type": "string", "minLength": 1, "maxLength": MAX_SUBJECT},
                    "type": {"type": ["string", "null"], "enum": [*TASK_TYPES, None], "default": "todo"},
                    "priority": {"type": ["string", "null"], "enum": [*TASK_PRIORITIES, None], "default": "normal"},
                    "owner": {"type": ["string", "null"], "description": "A user of Settings.users"},
                    "due_at": _OPTIONAL_INSTANT,
                },
                ("subject",),
            ),
            _event(
                "appointment",
                "An appointment with the record.",
                {
                    "starts_at": _INSTANT,
                    "subject": {"type": "string", "minLength": 1, "maxLength": MAX_SUBJECT},
                },
                ("starts_at", "subject"),
            ),
            _event("unsubscribe", "The person asked for no more mail: its sequences stop, the address is suppressed."),
        ],
    },
    "Recorded": {
        "type": "object",
        "properties": {
            "record": {"type": "string"},
            "kind": {"type": "string", "enum": list(EVENT_KINDS)},
            "stopped": {"type": "integer", "minimum": 0, "description": "Live sequences it stopped"},
            "suppressed": {"type": "array", "items": {"type": "string"}, "description": "Addresses newly suppressed"},
            "stage": {"type": ["string", "null"]},
            "task": {"type": "integer", "description": "The new task's id"},
            "appointment": {"type": "integer", "description": "The new appointment's id"},
            "type": {"type": "string", "description": "The record's type after a conversion"},
        },
        "required": ["record", "kind"],
    },
    "EnrollmentRequest": {
        "type": "object",
        "properties": {
            "record": _TEXT_ID,
            "sequence": {"type": "string", "minLength": 1},
            "as": {"type": "string", "minLength": 1, "description": "The enrolling user (mail goes out as them)"},
        },
        "required": ["record", "sequence", "as"],
        "additionalProperties": False,
    },
    "Enrollment": {
        "type": "object",
        "properties": {
            "enrollment": {"type": "integer"},
            "record": {"type": "string"},
            "sequence": {"type": "string"},
            "email": {"type": "string"},
            "enrolled_by": {"type": "string"},
            "status": {"type": "string", "enum": ["active", "blocked", "completed", "stopped"]},
            "next_due_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "When the first step runs",
            },
        },
        "required": ["enrollment", "record", "sequence", "email", "enrolled_by", "status", "next_due_at"],
    },
    "RecordView": {
        "type": "object",
        "properties": {
            "record": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "type": {"type": "string"},
                    "email": {"type": ["string", "null"]},
                    "owner": {"type": ["string", "null"]},
                    "stage": {"type": ["string", "null"]},
                    "stage_entered_at": {"type": ["string", "null"], "format": "date-time"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time"},
                    "converted_at": {"type": ["string", "null"], "format": "date-time"},
                    "deleted_at": {"type": ["string", "null"], "format": "date-time"},
                    "timezone": {"type": ["string", "null"]},
                },
                "required": ["id", "type", "email", "created_at", "updated_at"],
                "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
            },
            "sequences": {
                "type": "object",
                "properties": {
                    "counts": {
                        "type": "object",
                        "properties": {
                            s: {"type": "integer", "minimum": 0} for s in ("active", "blocked", "completed")
                        },
                        "required": ["active", "blocked", "completed"],
                    },
                    "enrollments": {"type": "array", "items": _ref("SequenceLine")},
                },
                "required": ["counts", "enrollments"],
            },
        },
        "required": ["record", "sequences"],
    },
    "SequenceLine": {
        "type": "object",
        "description": "One enrollment of the record, live ones first (as `outreach records show` shows it)",
        "properties": {
            "enrollment": {"type": "integer"},
            "sequence": {"type": "string"},
            "status": {"type": "string", "enum": ["active", "blocked", "completed", "stopped"]},
            "last_step": {"type": ["string", "null"], "description": "The last completed step's id"},
            "next_email": {"type": ["string", "null"], "format": "date-time"},
            "detail": {"type": "string", "description": "What it waits for, the step a blocked one stopped at and "
                                                        "why, or why it ended"},
            "blocked_at": {"type": ["string", "null"], "description": "Blocked: the step it stopped at, e.g. "
                                                                      "`step 2 nudge`"},
        },
        "required": ["enrollment", "sequence", "status", "last_step", "next_email", "detail"],
    },
}


def _body(name: str, description: str, examples: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "description": description,
        "content": {
            "application/json": {"schema": _ref(name), "examples": {k: {"value": v} for k, v in examples.items()}}
        },
    }


# The examples of docs/api.md: the record L7, a lead, enrolled in inbound-nurture by anna.
_RECORD_EXAMPLES = {
    "one": {"id": "L7", "type": "lead", "email": "jo@example.org", "stage": "New"},
    "many": [{"id": "L7", "type": "lead", "stage": "Contacted"}, {"type": "contact", "email": "sam@example.com"}],
}
_EVENT_EXAMPLES = {
    "stage_change": {"kind": "stage_change", "record": "L7", "stage": "Qualified"},
    "task": {"kind": "task", "record": "L7", "subject": "Call Jo", "type": "call", "due_at": "2026-11-24T09:00:00Z"},
    "appointment": {"kind": "appointment", "record": "L7", "starts_at": "2026-11-30T14:00:00+01:00", "subject": "Demo"},
    "reply": {"kind": "reply", "record": "L7"},
    "unsubscribe": {"kind": "unsubscribe", "record": "L7"},
    "convert": {"kind": "convert", "record": "L7"},
    "delete": {"kind": "delete", "record": "L7"},
}
_ENROLLMENT_EXAMPLES = {"enroll": {"record": "L7", "sequence": "inbound-nurture", "as": "anna"}}


DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "outreach ingest API",
        "version": VERSION,
        "description": "Records, events and enrollments from another system, and a record with its sequences. "
        "Every operation but this document needs `Authorization: Bearer TOKEN` (the token "
        "Settings web.api_token_env or web.api_token_file names). Every 4xx is JSON "
        '`{"error": message}`; a body is at most 1 MB. See docs/api.md.',
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/records": {
            "post": {
                "operationId": "upsertRecords",
                "summary": "Create or update records (one or a list, all or nothing)",
                "requestBody": _body("Records", "A record, or a non-empty list of records", _RECORD_EXAMPLES),
                "responses": {"200": _json(_ref("Upserted"), "Written"), **_errors(400, 401, 409, 413, 503)},
            },
        },
        "/api/v1/records/{id}": {
            "get": {
                "operationId": "getRecord",
                "summary": "A record with its sequences widget",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}, "example": "L7"}
                ],
                "responses": {"200": _json(_ref("RecordView"), "The record"), **_errors(401, 404, 503)},
            },
        },
        "/api/v1/enrollments": {
            "post": {
                "operationId": "enroll",
                "summary": "Enroll a record in a sequence",
                "requestBody": _body(
                    "EnrollmentRequest", "Who, in which sequence, as which user", _ENROLLMENT_EXAMPLES
                ),
                "responses": {
                    "201": _json(_ref("Enrollment"), "Enrolled"),
                    **_errors(400, 401, 404, 409, 413, 422, 503),
                },
            },
        },
        "/api/v1/events": {
            "post": {
                "operationId": "recordEvent",
                "summary": "Record an event on a record (reply, convert, delete, stage change, task, appointment, "
                "unsubscribe)",
                "requestBody": _body("Event", "The event; `kind` says which", _EVENT_EXAMPLES),
                "responses": {"200": _json(_ref("Recorded"), "Recorded"), **_errors(400, 401, 404, 409, 413, 503)},
            },
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document (no token needed)",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "The OpenAPI 3.1 document")},
            },
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "The token of Settings web.api_token_env / api_token_file",
            }
        },
        "schemas": _SCHEMAS,
        "responses": {
            name: {
                "description": description,
                "content": {"application/json": {"schema": _ref("Error")}},
                **(
                    {
                        "headers": {
                            "WWW-Authenticate": {
                                "description": "`Bearer`",
                                "schema": {"type": "string"},
                                "required": True,
                            }
                        }
                    }
                    if code == 401
                    else {}
                ),
            }
            for code, (name, description) in _ERROR_RESPONSES.items()
        },
    },
}


def document(settings: model.Settings | None = None) -> dict[str, Any]:
    """The document; with `settings`, a record names the fields Settings declares with their types (no others),
    its type one of the modules and its owner one of the users."""
    out = copy.deepcopy(DOCUMENT)
    if settings is None:
        return out
    record = out["components"]["schemas"]["Record"]
    properties: dict[str, Any] = {name: dict(_FIELD_TYPES[ftype]) for name, ftype in settings.fields.items()}
    properties["id"] = {"type": ["string", "null"], "maxLength": MAX_ID}
    properties["type"] = {"type": "string", "enum": list(settings.all_modules)}
    properties["email"] = {"type": ["string", "null"], "description": "An address; normalized as an import does"}
    properties["stage"] = {"type": ["string", "null"], "maxLength": MAX_STAGE}
    properties["timezone"] = {"type": ["string", "null"], "maxLength": MAX_NAME,
                              "description": "An IANA time zone, e.g. Europe/Berlin"}  # fmt: skip
    properties["owner"] = ({"type": ["string", "null"], "enum": [*settings.users, None]} if settings.users
                           else {"type": ["string", "null"], "maxLength": MAX_NAME})  # fmt: skip
    record["properties"] = properties
    record["additionalProperties"] = False
    return out
