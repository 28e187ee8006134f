"""The ingest API's use cases: records created or updated, events, enrollments and a record with its sequences,
from JSON bodies another system sends (outreach/web/api.py serves them; docs/api.md is the user's view).

Every request carries the bearer token Settings names (`web.api_token_env` or `web.api_token_file`), compared in
constant time; without one configured the API is off. A body is checked whole before anything is written:
`parse_body` takes only strict JSON whose text the databases can keep, each use case checks its shape and the
types of its values and raises `InvalidBody` naming the field; records get the very checks of `records import`
(`importing.json_rows`) and are written all or nothing. What a request names that the rules do not know is
`Unprocessable`; what the store's state refuses is `Conflict` (an enrollment the engine refuses, converting a
contact); a record that is not there is the store's `NotFound`. Events are recorded through app/events.py and
enrollments through app/enrolling.py, with source "api". The store comes through narrow Protocols and `now` is
passed in: nothing here reads the clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from outreach import store as store_module
from outreach.app import enrolling, events, importing
from outreach.engine import events as engine_events
from outreach.engine import sequences as seq
from outreach.mail import credentials, links
from outreach.rules import model
from outreach.rules.criteria import FieldType
from outreach.store import rows

SOURCE = "api"
MissingSecret = credentials.MissingSecret  # a token Settings names is not there (for the daemon, which reads it)
WeakSecret = links.WeakSecret  # a token under MIN_SECRET_BYTES
MIN_SECRET_BYTES = links.MIN_SECRET_BYTES  # as for the tracking secret: a token is a secret too

# The store's column sizes (outreach/store/tables.py): a longer value is refused here, not by the database.
MAX_ID = 64
MAX_NAME = 64  # an owner, a time zone
MAX_STAGE = 128
MAX_SUBJECT = 500
MAX_PROBLEMS = 20  # problems named in one answer; the count says how many more there were

TASK_TYPES = ("call", "email", "todo", "meeting")
TASK_PRIORITIES = ("highest", "high", "normal", "low", "lowest")
EVENT_KINDS = ("reply", "convert", "delete", "stage_change", "task", "appointment", "unsubscribe")
OFF = (
    "the ingest API is off: it needs a bearer token, and Settings web.api_token_env or web.api_token_file names "
    "none (or one that is not set); set one to turn it on"
)


class InvalidBody(ValueError):
    """The body is not JSON, not of the documented shape, or a value has the wrong type (HTTP 400)."""


class Unprocessable(Exception):
    """The request names what the rules do not know: a sequence, a user (HTTP 422)."""


class Conflict(Exception):
    """The store's state refuses it: the engine refuses the enrollment, a contact cannot be converted (HTTP 409)."""


# --- the token ---------------------------------------------------------------------------------------------


def api_token(settings: model.Settings) -> str | None:
    """The bearer token `web.api_token_env` or `web.api_token_file` names, stripped; None when Settings names
    none (the API is off). Raises MissingSecret when the variable is unset or the file cannot be read, WeakSecret
    when the token is shorter than MIN_SECRET_BYTES (one character would be guessed at once)."""
    value = credentials.read("the ingest API token (Settings web.api_token_env or web.api_token_file)",
                             env=settings.web.api_token_env, file=settings.web.api_token_file)  # fmt: skip
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise MissingSecret("the ingest API token (Settings web.api_token_env or web.api_token_file) is blank")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size < MIN_SECRET_BYTES:
        raise WeakSecret(f"an ingest API token of {size} bytes is too short: use at least {MIN_SECRET_BYTES} "
                         "(e.g. `openssl rand -hex 32`)")  # fmt: skip
    return value


def check_token(expected: str | None, given_header: str | None) -> bool:
    """Whether an Authorization header carries the expected bearer token (constant time; never without one)."""
    return token_problem(expected, given_header) is None


def token_problem(expected: str | None, given_header: str | None) -> str | None:
    """Why a request may not use the API (the message of its 401), or None when its bearer token is right."""
    if not expected:
        return OFF
    scheme, _, given = (given_header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return "a bearer token is needed: send the header `Authorization: Bearer TOKEN`"
    if not hmac.compare_digest(
        given.strip().encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    ):
        return "the bearer token is not the one this installation expects"
    return None


# --- bodies ------------------------------------------------------------------------------------------------


def parse_body(raw: bytes) -> Any:
    """A request's body as JSON, strictly: UTF-8, no NaN or Infinity, and no text the databases cannot keep (a NUL
    character, half of a surrogate pair). Raises InvalidBody saying what is wrong and where."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidBody(f"the body is not UTF-8 text (byte {exc.start + 1})") from None
    if not text.strip():
        raise InvalidBody("the body is empty: send a JSON document (Content-Type: application/json)")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidBody(f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # NaN, an integer of too many digits, nesting too deep
        raise InvalidBody(f"the body is not JSON: {exc}") from None
    _check_text(data)
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_text(data: Any) -> None:
    """Every key and string of the document can be stored (walked without recursion: nesting may be deep)."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            _storable(value, where)
        elif isinstance(value, dict):
            for key, item in value.items():
                _storable(key, f"{where}.{key}" if where else key)
                stack.append((f"{where}.{key}" if where else key, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))


def _storable(text: str, where: str) -> None:
    what = f"{where[:80]}: " if where else ""
    if "\x00" in text:
        raise InvalidBody(f"{what}text may not hold a NUL character (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidBody(f"{what}text holds half of a surrogate pair (\\ud800-\\udfff alone)") from None


class _Object:
    """A JSON object's properties, taken one by one with their types; what is left at the end is unknown."""

    def __init__(self, data: Any, what: str) -> None:
        if not isinstance(data, dict):
            raise InvalidBody(f"{what}: expected a JSON object ({{...}}), got {importing.describe(data)}")
        self.data = dict(data)
        self.what = what

    def text(self, name: str, *, required: bool = True, max_length: int | None = None,
             choices: Iterable[str] | None = None) -> str | None:  # fmt: skip
        value = self.data.pop(name, None)
        if value is None:
            if required:
                raise InvalidBody(f"{name}: required ({self.what})")
            return None
        if not isinstance(value, str):
            raise InvalidBody(f"{name}: expected text, got {importing.describe(value)}")
        if not value.strip():
            raise InvalidBody(f"{name}: expected text, got an empty string")
        if max_length is not None and len(value) > max_length:
            raise InvalidBody(f"{name}: at most {max_length} characters, got {len(value)}")
        if choices is not None:
            allowed = tuple(choices)
            if value not in allowed:
                raise InvalidBody(f"{name}: one of {', '.join(allowed)}, got {value[:60]!r}")
        return value

    def instant(self, name: str, *, required: bool = True) -> dt.datetime | None:
        text = self.text(name, required=required)
        if text is None:
            return None
        try:
            value = importing.convert_text(FieldType.DATETIME, text)
        except ValueError as exc:
            raise InvalidBody(f"{name}: {exc}") from None
        assert isinstance(value, dt.datetime)
        return value

    def done(self) -> None:
        if self.data:
            names = ", ".join(repr(n[:60]) for n in sorted(self.data)[:5])
            raise InvalidBody(f"unknown propert{'ies' if len(self.data) > 1 else 'y'} {names} ({self.what})")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def record_json(record: rows.Record) -> dict[str, Any]:
    """A record as the API answers it: every field by name, datetimes as RFC 3339 text."""
    return {name: _jsonable(value) for name, value in record.as_dict().items()}


# --- records -----------------------------------------------------------------------------------------------


class RecordStore(Protocol):
    """The store's verbs that writing records uses (outreach.store.Store has them)."""

    async def import_records(self, items: Iterable[Any], *, now: dt.datetime, update: bool = False,
                             skip_invalid: bool = False) -> rows.ImportResult: ...  # fmt: skip

    async def records_with_email(self, email: str) -> list[str]: ...


@dataclasses.dataclass(frozen=True)
class Upserted:
    """What POST /api/v1/records did: records created, records updated, and each record's id in the body's order."""

    inserted: int
    updated: int
    ids: tuple[str, ...]

    def json(self) -> dict[str, Any]:
        return {"inserted": self.inserted, "updated": self.updated, "ids": list(self.ids)}


async def upsert_records(store: RecordStore, settings: model.Settings, body: Any, *, now: dt.datetime) -> Upserted:
    """Create or update records (one JSON object or a list of them), all or nothing, with the checks of `records
    import` (types of the fields Settings declares, the type a module, a valid address, the owner a user, a known
    time zone, no id twice). A record is matched by id, else by email (any case); one matched by neither is
    created, with the id given or a new one. InvalidBody names each bad record's index and field."""
    single = isinstance(body, dict)
    if single:
        objects: list[Any] = [body]
    elif isinstance(body, list):
        if not body:
            raise InvalidBody("expected a record or a non-empty list of records, got an empty list")
        objects = body
    else:
        raise InvalidBody(f"expected a record (a JSON object) or a list of them, got {importing.describe(body)}")
    checked: list[importing.Row] = []
    problems: list[str] = []
    found = importing.json_rows(objects, fields=settings.fields, modules=settings.all_modules,
                                owners=list(settings.users) or None)  # fmt: skip
    for item in found:
        where = "" if single else f"records[{item.line}]: "
        if isinstance(item, importing.RowError):
            problems.append(where + item.message)
            continue
        too_long = [f"{name}: at most {limit} characters, got {len(value)}"
                    for name, value, limit in (("id", item.id, MAX_ID), ("owner", item.fields.get("owner"), MAX_NAME),
                                               ("timezone", item.fields.get("timezone"), MAX_NAME),
                                               ("stage", item.fields.get("stage"), MAX_STAGE))
                    if isinstance(value, str) and len(value) > limit]  # fmt: skip
        if too_long:
            problems.append(where + "; ".join(too_long))
        else:
            checked.append(item)
    if problems:
        more = f"; ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise InvalidBody("; ".join(problems[:MAX_PROBLEMS]) + more + "; nothing was written")
    targets = [await _target(store, row) for row in checked]
    result = await store.import_records(targets, now=now, update=True)
    if not result.committed:  # what the store refused (its messages name the index as their line)
        raise Conflict("; ".join(f"records[{p.line}]: {p.message}" for p in result.problems) + "; nothing was written")
    return Upserted(result.inserted, result.updated, tuple(row.id or "" for row in targets))


async def _target(store: RecordStore, row: importing.Row) -> importing.Row:
    """The row with the id of the record it is written to: the id given, the record with its address, or new."""
    if row.id:
        return row
    existing = await store.records_with_email(row.email) if row.email else []
    return dataclasses.replace(row, id=existing[0] if existing else f"r-{uuid.uuid4().hex[:12]}")


# --- events ------------------------------------------------------------------------------------------------


async def record_event(store: events.EventStore, settings: model.Settings, body: Any, *,
                       now: dt.datetime) -> dict[str, Any]:  # fmt: skip
    """An event on a record, recorded with what it means (app/events.py), source "api": `reply` (stops the
    record's live sequences), `convert` (a lead becomes a contact), `delete`, `stage_change` {stage}, `task`
    {subject, type, priority, owner, due_at}, `appointment` {starts_at, subject}, `unsubscribe` (stops them and
    suppresses the address). Returns the answer's body; NotFound for an unknown record, Conflict for a contact
    converted."""
    obj = _Object(body, "an event")
    kind = obj.text("kind", choices=EVENT_KINDS)
    record_id = obj.text("record", max_length=MAX_ID)
    assert kind is not None and record_id is not None
    answer: dict[str, Any] = {"record": record_id, "kind": kind}
    if kind == "stage_change":
        stage = obj.text("stage", max_length=MAX_STAGE)
        obj.done()
        changed = await events.set_fields(store, record_id, {"stage": stage}, now=now, source=SOURCE)
        return {**answer, "stage": changed.stage}
    if kind == "task":
        subject = obj.text("subject", max_length=MAX_SUBJECT)
        task_type = obj.text("type", required=False, choices=TASK_TYPES) or "todo"
        priority = obj.text("priority", required=False, choices=TASK_PRIORITIES) or "normal"
        owner = obj.text("owner", required=False, choices=settings.users)
        due_at = obj.instant("due_at", required=False)
        obj.done()
        assert subject is not None
        task = await events.add_task(store, record_id, subject, now=now, type=task_type, priority=priority,
                                     owner=owner, due_at=due_at, source=SOURCE)  # fmt: skip
        return {**answer, "task": task.id}
    if kind == "appointment":
        starts_at = obj.instant("starts_at")
        subject = obj.text("subject", max_length=MAX_SUBJECT)
        obj.done()
        assert starts_at is not None and subject is not None
        appointment = await events.add_appointment(store, record_id, starts_at, subject, now=now, source=SOURCE)
        return {**answer, "appointment": appointment.id}
    obj.done()
    if kind == "convert":
        try:
            converted = await events.convert(store, record_id, now=now, source=SOURCE)
        except store_module.NotFound:
            raise
        except store_module.StoreError as exc:
            raise Conflict(str(exc)) from None
        return {**answer, "type": converted.type}
    if kind == "delete":
        done = await events.delete(store, record_id, now=now, source=SOURCE)
    elif kind == "unsubscribe":
        done = await events.unsubscribe(store, record_id, now=now, source=SOURCE)
    else:
        done = await events.record(store, record_id, engine_events.Kind.REPLIED, now=now, source=SOURCE)
    return {**answer, "stopped": done.stopped, "suppressed": list(done.suppressed)}


# --- enrollments -------------------------------------------------------------------------------------------


async def enroll(store: enrolling.ManyStore, ruleset: model.RuleSet, body: Any, *,
                 now: dt.datetime) -> dict[str, Any]:  # fmt: skip
    """Enroll one record in a sequence as a user ({record, sequence, as}), source "api". Returns the answer's
    body (the enrollment, when its first mail goes). NotFound: no such record; Unprocessable: no such sequence or
    user; Conflict: the engine refuses (deleted, unsubscribed, already active, not of the sequence's types, no
    address) or the sequence in the rules is not the applied version."""
    obj = _Object(body, "an enrollment")
    record_id = obj.text("record", max_length=MAX_ID)
    name = obj.text("sequence")
    user = obj.text("as")
    obj.done()
    assert record_id is not None and name is not None and user is not None
    if name not in ruleset.sequences:
        raise Unprocessable(f"no sequence {name[:80]!r} (sequences: {', '.join(ruleset.sequences) or 'none'})")
    if user not in ruleset.settings.users:
        raise Unprocessable(f"{user[:80]!r} is not a user in Settings.users ({', '.join(ruleset.settings.users)})")
    if record_id not in await store.records_by_id([record_id]):
        raise store_module.NotFound(f"no record {record_id!r}")
    try:
        [(_, result)] = await enrolling.enroll_many(store, ruleset, ruleset.sequences[name], record_ids=[record_id],
                                                    enrolled_by=user, now=now, source=SOURCE)  # fmt: skip
    except enrolling.NotApplied as exc:
        raise Conflict(str(exc)) from None
    if isinstance(result, str):
        raise Conflict(result)
    return {"enrollment": result.id, "record": result.record_id, "sequence": result.sequence, "email": result.email,
            "enrolled_by": result.enrolled_by, "status": str(result.status),
            "next_due_at": _jsonable(result.next_due_at)}  # fmt: skip


# --- a record with its sequences ---------------------------------------------------------------------------


class ViewStore(enrolling.WidgetStore, Protocol):
    async def get_record(self, record_id: str) -> rows.Record: ...


async def record_view(store: ViewStore, ruleset: model.RuleSet, record_id: str) -> dict[str, Any]:
    """A record's fields and its sequences widget (counts, a line per enrollment: `enrolling.widget`), as the
    answer's body. NotFound: no such record (deleted ones are shown, with their deleted_at)."""
    try:
        _storable(record_id, "id")
    except InvalidBody:
        raise store_module.NotFound("no such record") from None
    if not record_id or len(record_id) > MAX_ID:
        raise store_module.NotFound(f"no record {record_id[:80]!r}")
    record = await store.get_record(record_id)
    counts, lines = await enrolling.widget(store, ruleset, record_id)
    return {"record": record_json(record),
            "sequences": {"counts": counts, "enrollments": [_line_json(line) for line in lines]}}  # fmt: skip


def _line_json(line: seq.SequenceLine) -> dict[str, Any]:
    return {"enrollment": line.enrollment, "sequence": line.sequence, "status": str(line.status),
            "last_step": line.last_step, "next_email": _jsonable(line.next_email), "detail": line.detail,
            "blocked_at": line.blocked_at}  # fmt: skip
