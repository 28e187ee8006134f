"""The ingest API (outreach/web/api.py over outreach/app/ingest.py) against a real store, on SQLite and PostgreSQL:
the bearer token, records created and updated all or nothing with the checks of `records import`, every event
kind and what it means, enrollments and their refusals, a record with its sequences widget, the limits of a body,
and the OpenAPI document naming exactly the routes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from outreach.app import enrolling, ingest
from outreach.app import importing as import_rows
from outreach.rules import model
from outreach.store import Store, rows
from outreach.web import api, openapi, server, service
from tests.worlds import RULES

pytestmark = pytest.mark.store

MONDAY = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
TOKEN = "s3cret-token-of-the-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PEOPLE = (
    import_rows.Row(0, "L1", "lead", "jo@example.org", {"first_name": "Jo", "owner": "anna", "country": "DE"}),
    import_rows.Row(1, "L2", "lead", "kim@example.net", {"first_name": "Kim", "owner": "ben", "country": "DE"}),
    import_rows.Row(2, "C1", "contact", "sam@example.com", {"first_name": "Sam", "owner": "anna", "country": "AT"}),
)


@pytest.fixture
def store(people_store: Store) -> Store:
    """The example rules' store with this module's PEOPLE (conftest.py)."""
    return people_store


def _app(store: Store, token: Callable[[], str | None] = lambda: TOKEN) -> web.Application:
    ctx = server.Context(store=store, keys=lambda: None, ruleset=lambda: RULES, clock=lambda: MONDAY, api_token=token)
    return server.make_app(ctx, routes=api.add_routes)


@pytest.fixture
async def client(store: Store) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(_app(store), host="127.0.0.1")) as c:
        yield c


Client = TestClient[web.Request, web.Application]


async def call(client: Client, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:  # fmt: skip
    """(status, JSON body) of a request with the test token (or `headers`); every answer must be JSON."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    async with client.request(method, path, data=data, headers=AUTH if headers is None else headers) as response:
        assert response.content_type == "application/json", (response.status, await response.text())
        return response.status, await response.json()


async def snapshot(store: Store) -> tuple[list[rows.Record], list[list[str]], list[dict[str, Any]]]:
    """Everything a request could write: the records, their events, the enrollments."""
    records = await store.list_records(now=MONDAY, include_deleted=True)
    activity = [[f"{e.kind}/{e.source}" for e in await store.events(r.id)] for r in records]
    return records, activity, await store.enrollments()


# --- the token ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer "},
     {"Authorization": f"Bearer {TOKEN}x"}],
    ids=["none", "wrong", "not-bearer", "empty", "longer"],
)  # fmt: skip
async def test_a_missing_or_wrong_token_is_401_and_records_nothing(store: Store, client: Client,
                                                                   headers: dict[str, str]) -> None:  # fmt: skip
    before = await snapshot(store)
    requests = [
        ("POST", "/api/v1/records", {"id": "N1", "type": "lead", "email": "new@example.org"}),
        ("POST", "/api/v1/events", {"kind": "unsubscribe", "record": "L1"}),
        ("POST", "/api/v1/events", {"kind": "delete", "record": "L2"}),
        ("POST", "/api/v1/enrollments", {"record": "L1", "sequence": "inbound-nurture", "as": "anna"}),
        ("GET", "/api/v1/records/L1", None),
    ]
    for method, path, body in requests:
        async with client.request(method, path, json=body, headers=headers) as response:
            assert response.status == 401, path
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "token" in (await response.json())["error"]
    assert await snapshot(store) == before
    assert await store.unsubscribed_at("jo@example.org") is None


async def test_without_a_token_in_settings_the_api_is_off_and_says_how_to_turn_it_on(store: Store) -> None:
    async with TestClient(TestServer(_app(store, token=lambda: None), host="127.0.0.1")) as c:
        status, body = await call(c, "POST", "/api/v1/events", {"kind": "unsubscribe", "record": "L1"})
        assert status == 401
        assert "web.api_token_env" in body["error"] and "web.api_token_file" in body["error"]
        status, _ = await call(c, "GET", "/api/v1/openapi.json", headers={})  # the document needs no token
        assert status == 200
    assert await store.unsubscribed_at("jo@example.org") is None


def test_check_token_takes_the_bearer_scheme_in_any_case_and_nothing_without_a_token() -> None:
    assert ingest.check_token("abc", "Bearer abc")
    assert ingest.check_token("abc", "bearer  abc ")
    assert not ingest.check_token("abc", "Bearer abd")
    assert not ingest.check_token("abc", "abc")
    assert not ingest.check_token("abc", None)
    assert not ingest.check_token(None, "Bearer abc")
    assert not ingest.check_token("", "Bearer ")


def test_api_token_reads_the_variable_or_file_settings_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    def settings(api_token_env: str | None = None, api_token_file: str | None = None) -> model.Settings:
        return dataclasses.replace(RULES.settings, web=model.Web(api_token_env=api_token_env,
                                                                 api_token_file=api_token_file))  # fmt: skip

    assert ingest.api_token(settings()) is None
    monkeypatch.setenv("OUTREACH_API_TOKEN", "  from-env-from-env-from-env-from-env \n")
    assert ingest.api_token(settings(api_token_env="OUTREACH_API_TOKEN")) == "from-env-from-env-from-env-from-env"
    (tmp_path / "token").write_text("from-file-from-file-from-file-from-file\n", encoding="utf-8")
    assert ingest.api_token(settings(api_token_file=str(tmp_path / "token"))) == "from-file-from-file-from-file-from-file"
    monkeypatch.delenv("OUTREACH_API_TOKEN")
    with pytest.raises(ingest.MissingSecret, match="OUTREACH_API_TOKEN"):
        ingest.api_token(settings(api_token_env="OUTREACH_API_TOKEN"))


def test_a_one_character_api_token_is_refused_and_the_api_stays_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # issue 18, item 3: a token is a secret, at least 32 bytes like the tracking secret
    settings = dataclasses.replace(RULES.settings, web=model.Web(api_token_env="OUTREACH_API_TOKEN"))
    for short in ("x", "a" * 31, "\u00e9" * 15):
        monkeypatch.setenv("OUTREACH_API_TOKEN", short)
        with pytest.raises(ingest.WeakSecret, match="too short: use at least 32"):
            ingest.api_token(settings)
    assert service.api_token(settings) is None
    assert "the ingest API is off: an ingest API token of 30 bytes is too short" in caplog.text
    monkeypatch.setenv("OUTREACH_API_TOKEN", "a" * 32)
    assert service.api_token(settings) == "a" * 32


# --- records -----------------------------------------------------------------------------------------------


async def test_a_record_is_created_then_updated_by_id_and_by_email(store: Store, client: Client) -> None:
    status, body = await call(client, "POST", "/api/v1/records",
                              {"id": "N1", "type": "lead", "email": "New@Example.ORG", "first_name": "Nia",
                               "score": 12, "purchased": False, "next_appointment_at": "2026-12-01T10:00:00+01:00",
                               "owner": "ben", "timezone": "Europe/Oslo"})  # fmt: skip
    assert (status, body) == (200, {"inserted": 1, "updated": 0, "ids": ["N1"]})
    record = await store.get_record("N1")
    assert (record.email, record.owner, record.timezone) == ("New@example.org", "ben", "Europe/Oslo")
    assert record.fields == {"first_name": "Nia", "score": 12, "purchased": False,
                             "next_appointment_at": dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)}  # fmt: skip
    assert record.created_at == MONDAY

    status, body = await call(client, "POST", "/api/v1/records", [
        {"id": "N1", "type": "lead", "score": 40, "stage": "Contacted"},
        {"type": "lead", "email": "kim@example.net", "company": "Fjord AS"},  # no id: L2 by its address
        {"type": "contact", "email": "someone@example.com", "first_name": "Ola"},  # a new one, with a new id
    ])  # fmt: skip
    assert status == 200 and (body["inserted"], body["updated"]) == (1, 2)
    assert body["ids"][:2] == ["N1", "L2"] and body["ids"][2].startswith("r-")
    updated = await store.get_record("N1")
    assert updated.fields["score"] == 40 and updated.fields["first_name"] == "Nia"  # fields merged
    assert updated.email == "New@example.org"  # not given: left as it was
    assert (updated.stage, updated.stage_entered_at) == ("Contacted", MONDAY)
    assert (await store.get_record("L2")).fields["company"] == "Fjord AS"
    assert (await store.get_record(body["ids"][2])).email == "someone@example.com"


@pytest.mark.parametrize(
    ("record", "named"),
    [({"id": "N1", "type": "lead", "score": "high"}, "score: expected a number, got the text 'high'"),
     ({"id": "N1", "type": "lead", "purchased": "yes"}, "purchased: expected true or false"),
     ({"id": "N1", "type": "lead", "first_name": 7}, "first_name: expected text, got the number 7"),
     ({"id": "N1", "type": "lead", "next_appointment_at": "soon"}, "next_appointment_at: expected a date and time"),
     ({"id": "N1", "type": "lead", "favourite": "tea"}, "unknown field 'favourite'"),
     ({"id": "N1", "type": "lead", "owner": "zoe"}, "owner: 'zoe' is not a user"),
     ({"id": "N1", "type": "lead", "timezone": "Mars/Base"}, "unknown time zone 'Mars/Base'"),
     ({"id": "N1", "type": "person"}, "type 'person' is not a module"),
     ({"id": "N1"}, "no type"),
     ({"id": 5, "type": "lead"}, "id: expected text, got the number 5"),
     ({"id": "N1", "type": "lead", "email": "not an address"}, "invalid email 'not an address'"),
     ({"id": "x" * 65, "type": "lead"}, "id: at most 64 characters"),
     ({"id": "N1", "type": "lead", "stage": "s" * 129}, "stage: at most 128 characters")],
    ids=["number", "boolean", "text", "datetime", "unknown-field", "owner", "timezone", "module", "no-type", "id-type",
         "email", "long-id", "long-stage"],
)  # fmt: skip
async def test_a_bad_value_is_400_naming_its_field_and_writes_nothing(store: Store, client: Client,
                                                                      record: dict[str, Any], named: str) -> None:  # fmt: skip
    before = await snapshot(store)
    status, body = await call(client, "POST", "/api/v1/records", record)
    assert status == 400
    assert named in body["error"]
    assert await snapshot(store) == before


async def test_a_list_is_all_or_nothing_and_each_problem_names_its_index(store: Store, client: Client) -> None:
    before = await snapshot(store)
    status, body = await call(client, "POST", "/api/v1/records", [
        {"id": "N1", "type": "lead", "email": "a@example.org"},
        {"id": "L1", "type": "lead", "score": 90},
        {"id": "N2", "type": "lead", "score": "ninety"},
        {"id": "N1", "type": "lead"},
        "L3",
    ])  # fmt: skip
    assert status == 400
    assert "records[2]: score: expected a number" in body["error"]
    assert "records[3]: duplicate id 'N1' (first on index 0)" in body["error"]
    assert "records[4]: expected a JSON object" in body["error"]
    assert "records[0]" not in body["error"] and "records[1]" not in body["error"]
    assert await snapshot(store) == before


@pytest.mark.parametrize(
    ("raw", "named"),
    [(b"{not json", "not JSON"), (b"", "empty"), (b'{"id": NaN, "type": "lead"}', "NaN"), (b"\xff\xfe", "UTF-8"),
     (b"42", "got the number 42"), (b"[]", "empty list"), (b'{"id": "a\\u0000b", "type": "lead"}', "NUL"),
     (b'{"id": "\\ud800", "type": "lead"}', "surrogate"), (b"[" * 100_000 + b"]" * 100_000, "not JSON")],
    ids=["syntax", "empty", "nan", "not-utf8", "number", "empty-list", "nul", "lone-surrogate", "deep"],
)  # fmt: skip
async def test_a_body_that_is_not_json_or_not_records_is_400(store: Store, client: Client, raw: bytes,
                                                             named: str) -> None:  # fmt: skip
    before = await snapshot(store)
    status, body = await call(client, "POST", "/api/v1/records", raw=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert status == 400
    assert named in body["error"]
    assert await snapshot(store) == before


async def test_a_body_over_1_mb_is_413_and_writes_nothing(store: Store, client: Client) -> None:
    before = await snapshot(store)
    big = [{"type": "lead", "first_name": "x" * 1000} for _ in range(1100)]
    for path in ("/api/v1/records", "/api/v1/events", "/api/v1/enrollments"):
        status, body = await call(client, "POST", path, big)
        assert status == 413, path
        assert "1048576" in body["error"]
    assert await snapshot(store) == before


# --- events ------------------------------------------------------------------------------------------------


async def enroll(client: Client, record: str, sequence: str = "inbound-nurture") -> int:
    status, body = await call(client, "POST", "/api/v1/enrollments", {"record": record, "sequence": sequence,
                                                                       "as": "anna"})  # fmt: skip
    assert status == 201, body
    return int(body["enrollment"])


async def status_of(store: Store, enrollment_id: int) -> tuple[str, str | None]:
    row = await store.get_enrollment(enrollment_id)
    assert row is not None
    return row["status"], row["reason"]


async def kinds(store: Store, record_id: str) -> list[str]:
    return [f"{e.kind}/{e.source}" for e in await store.events(record_id)]


async def test_a_reply_stops_the_records_sequences(store: Store, client: Client) -> None:
    mine, other = await enroll(client, "L1"), await enroll(client, "L2")
    status, body = await call(client, "POST", "/api/v1/events", {"kind": "reply", "record": "L1"})
    assert (status, body) == (200, {"record": "L1", "kind": "reply", "stopped": 1, "suppressed": []})
    assert await status_of(store, mine) == ("stopped", "replied")
    assert await status_of(store, other) == ("active", None)
    assert "replied/api" in await kinds(store, "L1")


async def test_an_unsubscribe_stops_the_sequences_and_suppresses_the_address(store: Store, client: Client) -> None:
    mine = await enroll(client, "L1")
    status, body = await call(client, "POST", "/api/v1/events", {"kind": "unsubscribe", "record": "L1"})
    assert (status, body) == (200, {"record": "L1", "kind": "unsubscribe", "stopped": 1,
                                    "suppressed": ["jo@example.org"]})  # fmt: skip
    assert await status_of(store, mine) == ("stopped", "unsubscribed")
    assert await store.unsubscribed_at("jo@example.org") == MONDAY
    status, body = await call(client, "POST", "/api/v1/enrollments", {"record": "L1", "sequence": "welcome",
                                                                       "as": "anna"})  # fmt: skip
    assert status == 409 and "unsubscribed" in body["error"]


async def test_convert_and_delete_end_the_sequences_and_change_the_record(store: Store, client: Client) -> None:
    first, second = await enroll(client, "L1"), await enroll(client, "L2")
    status, body = await call(client, "POST", "/api/v1/events", {"kind": "convert", "record": "L1"})
    assert (status, body) == (200, {"record": "L1", "kind": "convert", "type": "contact"})
    assert (await store.get_record("L1")).converted_at == MONDAY
    assert await status_of(store, first) == ("stopped", "converted")
    status, body = await call(client, "POST", "/api/v1/events", {"kind": "convert", "record": "C1"})
    assert status == 409 and "C1" in body["error"]  # a contact is not converted

    status, body = await call(client, "POST", "/api/v1/events", {"kind": "delete", "record": "L2"})
    assert (status, body) == (200, {"record": "L2", "kind": "delete", "stopped": 1, "suppressed": []})
    assert (await store.get_record("L2")).deleted_at == MONDAY
    assert await status_of(store, second) == ("stopped", "deleted")
    status, _ = await call(client, "POST", "/api/v1/events", {"kind": "delete", "record": "L2"})
    assert status == 404  # deleted already


async def test_a_stage_change_a_task_and_an_appointment_are_recorded(store: Store, client: Client) -> None:
    status, body = await call(client, "POST", "/api/v1/events", {"kind": "stage_change", "record": "L1",
                                                                  "stage": "Qualified"})  # fmt: skip
    assert (status, body) == (200, {"record": "L1", "kind": "stage_change", "stage": "Qualified"})
    record = await store.get_record("L1")
    assert (record.stage, record.stage_entered_at) == ("Qualified", MONDAY)

    status, body = await call(client, "POST", "/api/v1/events", {
        "kind": "task", "record": "L1", "subject": "Call Jo", "type": "call", "due_at": "2026-11-24T09:00:00+01:00",
        "owner": "ben", "priority": "high"})  # fmt: skip
    assert status == 200 and body["kind"] == "task"
    [task] = await store.list_tasks("L1")
    assert (task.id, task.subject, task.type, task.priority, task.owner, task.due_at) == (
        body["task"], "Call Jo", "call", "high", "ben", dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC))
    status, body = await call(client, "POST", "/api/v1/events", {"kind": "task", "record": "L2", "subject": "Write"})
    assert status == 200
    [task] = await store.list_tasks("L2")
    assert (task.type, task.priority, task.due_at) == ("todo", "normal", None)

    status, body = await call(client, "POST", "/api/v1/events", {
        "kind": "appointment", "record": "L1", "starts_at": "2026-11-30T14:00:00Z", "subject": "Demo"})  # fmt: skip
    assert status == 200 and isinstance(body["appointment"], int)
    assert set(await kinds(store, "L1")) >= {"stage_changed/api", "task_created/api", "appointment/api"}


@pytest.mark.parametrize(
    ("event", "status", "named"),
    [({"kind": "reply", "record": "NOPE"}, 404, "NOPE"),
     ({"kind": "stage_change", "record": "NOPE", "stage": "New"}, 404, "NOPE"),
     ({"kind": "task", "record": "NOPE", "subject": "x"}, 404, "NOPE"),
     ({"kind": "wave", "record": "L1"}, 400, "kind: one of reply, convert"),
     ({"record": "L1"}, 400, "kind: required"),
     ({"kind": "reply"}, 400, "record: required"),
     ({"kind": "reply", "record": 7}, 400, "record: expected text, got the number 7"),
     ({"kind": "reply", "record": "L1", "note": "hi"}, 400, "unknown property 'note'"),
     ({"kind": "stage_change", "record": "L1"}, 400, "stage: required"),
     ({"kind": "task", "record": "L1", "subject": "x", "type": "lunch"}, 400, "type: one of call"),
     ({"kind": "task", "record": "L1", "subject": "x", "owner": "zoe"}, 400, "owner: one of anna, ben"),
     ({"kind": "task", "record": "L1", "subject": "x", "due_at": "tomorrow"}, 400, "due_at: expected a date"),
     ({"kind": "appointment", "record": "L1", "subject": "x", "starts_at": 5}, 400, "starts_at: expected text"),
     ({"kind": "task", "record": "L1", "subject": "s" * 501}, 400, "subject: at most 500 characters"),
     (["reply"], 400, "expected a JSON object")],
    ids=["reply-unknown", "stage-unknown", "task-unknown", "kind", "no-kind", "no-record", "record-type", "extra",
         "no-stage", "task-type", "owner", "due-at", "starts-at", "long-subject", "not-object"],
)  # fmt: skip
async def test_a_bad_event_is_refused_and_records_nothing(store: Store, client: Client, event: Any, status: int,
                                                           named: str) -> None:  # fmt: skip
    before = await snapshot(store)
    got, body = await call(client, "POST", "/api/v1/events", event)
    assert got == status
    assert named in body["error"]
    assert await snapshot(store) == before


# --- enrollments -------------------------------------------------------------------------------------------


async def test_an_enrollment_is_created_and_a_refusal_is_a_4xx_with_its_reason(store: Store, client: Client) -> None:
    status, body = await call(client, "POST", "/api/v1/enrollments", {"record": "L1", "sequence": "inbound-nurture",
                                                                       "as": "anna"})  # fmt: skip
    assert status == 201
    assert {k: body[k] for k in ("record", "sequence", "email", "enrolled_by", "status")} == {
        "record": "L1", "sequence": "inbound-nurture", "email": "jo@example.org", "enrolled_by": "anna",
        "status": "active"}  # fmt: skip
    assert dt.datetime.fromisoformat(body["next_due_at"]) >= MONDAY
    [row] = await store.enrollments(record_id="L1")
    assert (row["id"], row["status"]) == (body["enrollment"], "active")
    assert "enrolled/api" in await kinds(store, "L1")

    before = await snapshot(store)
    refusals = [
        ({"record": "L1", "sequence": "inbound-nurture", "as": "anna"}, 409, "already active in inbound-nurture"),
        ({"record": "C1", "sequence": "welcome", "as": "anna"}, 409, "welcome enrolls lead"),
        ({"record": "L1", "sequence": "nope", "as": "anna"}, 422, "no sequence 'nope'"),
        ({"record": "L1", "sequence": "welcome", "as": "zoe"}, 422, "'zoe' is not a user"),
        ({"record": "NOPE", "sequence": "welcome", "as": "anna"}, 404, "NOPE"),
        ({"record": "L1", "sequence": "welcome"}, 400, "as: required"),
        ({"record": "L1", "sequence": "welcome", "as": "anna", "when": "now"}, 400, "unknown property 'when'"),
    ]
    for request, expected, named in refusals:
        got, answer = await call(client, "POST", "/api/v1/enrollments", request)
        assert (got, named in answer["error"]) == (expected, True), (request, answer)
    assert await snapshot(store) == before


# --- a record with its sequences ---------------------------------------------------------------------------


async def test_get_a_record_shows_its_fields_and_its_sequences_widget(store: Store, client: Client) -> None:
    active = await enroll(client, "L1")
    stopped = await enroll(client, "L1", "welcome")
    await call(client, "POST", "/api/v1/events", {"kind": "stage_change", "record": "L1", "stage": "New"})
    await enrolling.stop(store, enrollment_id=stopped, by="anna", now=MONDAY)  # the welcome sequence ends by hand

    status, body = await call(client, "GET", "/api/v1/records/L1")
    assert status == 200
    assert body["record"]["id"] == "L1" and body["record"]["first_name"] == "Jo"
    assert body["record"]["stage"] == "New"
    assert body["record"]["stage_entered_at"] == MONDAY.isoformat()
    assert body["sequences"]["counts"] == {"active": 1, "blocked": 0, "completed": 0}
    lines = body["sequences"]["enrollments"]
    assert [(line["enrollment"], line["sequence"], line["status"]) for line in lines] == [
        (active, "inbound-nurture", "active"), (stopped, "welcome", "stopped")]  # fmt: skip
    assert lines[0]["next_email"] is not None and lines[0]["detail"].startswith("next mail")

    status, body = await call(client, "GET", "/api/v1/records/NOPE")
    assert status == 404 and "NOPE" in body["error"]
    status, body = await call(client, "GET", "/api/v1/records/" + "x" * 300)
    assert status == 404


# --- the document ------------------------------------------------------------------------------------------


def _routes(app: web.Application) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api/v1"):
            out.add((path, route.method.lower()))
    return out


async def test_the_openapi_document_names_exactly_the_routes_and_is_served(store: Store, client: Client) -> None:
    documented = {(path, method) for path, item in openapi.DOCUMENT["paths"].items() for method in item}
    assert _routes(_app(store)) == documented
    status, served = await call(client, "GET", "/api/v1/openapi.json", headers={})
    assert status == 200
    assert served == json.loads(json.dumps(openapi.document(RULES.settings)))
    assert served["openapi"].startswith("3.1")
    record = served["components"]["schemas"]["Record"]
    assert record["properties"]["score"] == {"type": ["number", "null"]}
    assert record["properties"]["type"]["enum"] == list(RULES.settings.all_modules)
    # every error response is {"error": string}, and each status a handler answers is documented
    for item in openapi.DOCUMENT["paths"].values():
        for operation in item.values():
            for code in operation["responses"]:
                if code.startswith("4"):
                    assert operation["responses"][code]["$ref"].startswith("#/components/responses/")


async def test_an_unknown_api_path_or_method_is_json(client: Client) -> None:
    status, body = await call(client, "GET", "/api/v1/nothing")
    assert status == 404 and body["error"]
    status, body = await call(client, "DELETE", "/api/v1/records")
    assert status == 405 and body["error"]
