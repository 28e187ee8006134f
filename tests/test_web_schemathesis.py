"""Schemathesis against the ingest API's OpenAPI document: the application (outreach/web/server.py with
outreach/web/api.py) listens on 127.0.0.1 on a free port over an SQLite store seeded with the example rules, and
for each operation of the document it serves, schemathesis sends generated requests, valid and not, with the
bearer token. No answer may be a 5xx, and each must be what the document says: a documented status, JSON, the
documented headers and a body of the documented schema."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from outreach.app import importing as import_rows
from outreach.app import rules as app_rules
from outreach.store import Store
from outreach.web import api, openapi, server
from tests.worlds import RULES

if TYPE_CHECKING:
    import schemathesis

pytestmark = pytest.mark.integration

MONDAY = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
TOKEN = "schemathesis-token"
PEOPLE = (
    import_rows.Row(0, "L1", "lead", "jo@example.org", {"first_name": "Jo", "owner": "anna", "country": "DE"}),
    import_rows.Row(1, "C1", "contact", "sam@example.com", {"first_name": "Sam", "owner": "anna"}),
    import_rows.Row(2, "L7", "lead", "lee@example.org", {"first_name": "Lee", "owner": "anna", "country": "DE"}),
)


class LiveServer:
    """The application on its own event loop in a thread, so that schemathesis' blocking requests reach it."""

    def __init__(self, database: Path) -> None:
        self.url = f"sqlite+aiosqlite:///{database}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ingest-api", daemon=True)
        self.port = 0

    def __enter__(self) -> LiveServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    async def _start(self) -> None:
        self.store = await Store.open(self.url, fields=RULES.settings.fields, upgrade=True)
        assert (await self.store.import_records(PEOPLE, now=MONDAY - dt.timedelta(days=1))).committed
        await app_rules.apply(self.store, RULES, now=MONDAY - dt.timedelta(days=1))
        ctx = server.Context(store=self.store, keys=lambda: None, ruleset=lambda: RULES, clock=lambda: MONDAY,
                             api_token=lambda: TOKEN)  # fmt: skip
        self.runner = await server.start(server.make_app(ctx, routes=api.add_routes), "127.0.0.1", 0)
        self.port = self.runner.addresses[0][1]

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.store.close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("api") / "outreach.db") as running:
        yield running


# The document the server serves for these rules (the last test checks it is). Each operation is tested with
# hypothesis through the operation's own strategy, not through schemathesis' pytest plugin: the plugin is turned
# off for the whole suite (pyproject.toml: `-p no:schemathesis`), and schemathesis is imported only when these
# tests run, as loading it costs every run of the suite some seconds.
DOCUMENT = openapi.document(RULES.settings)
OPERATIONS = ("GET /api/v1/openapi.json", "GET /api/v1/records/{id}", "POST /api/v1/enrollments",
              "POST /api/v1/events", "POST /api/v1/records")  # fmt: skip


def _checks() -> list[Any]:
    from schemathesis import checks

    return [
        checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_headers_conformance,
        checks.response_schema_conformance,
        checks.ignored_auth,  # each operation that needs the token answers 401 without it
        checks.unsupported_method,  # a method a path does not have: 405 ...
        checks.allow_header_conformance,  # ... with the Allow header naming those it has
    ]


@pytest.fixture(scope="module")
def schema() -> schemathesis.schemas.BaseSchema:
    import schemathesis

    return schemathesis.openapi.from_dict(DOCUMENT)


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_answer_is_a_server_error_or_breaks_the_document(label: str, live: LiveServer,
                                                            schema: schemathesis.schemas.BaseSchema) -> None:  # fmt: skip
    from schemathesis.core.result import Ok

    found = {f"{r.ok().method.upper()} {r.ok().path}": r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)}
    checks = _checks()

    @settings(max_examples=30, deadline=None, phases=[Phase.explicit, Phase.generate], database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=found[label].as_strategy())
    def check(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(base_url=live.base, headers={"Authorization": f"Bearer {TOKEN}"}, checks=checks)

    check()


def test_the_document_served_is_the_one_tested_is_valid_and_names_every_operation(
    live: LiveServer, schema: schemathesis.schemas.BaseSchema
) -> None:  # fmt: skip
    import schemathesis
    from schemathesis.core.result import Ok

    served = schemathesis.openapi.from_url(f"{live.base}/api/v1/openapi.json")
    assert served.raw_schema == json.loads(json.dumps(DOCUMENT))
    schema.validate()  # against OpenAPI 3.1's own schema
    schemathesis.openapi.from_dict(openapi.DOCUMENT).validate()  # and the one for any rule set
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results  # every operation of the document is valid
    operations = {(r.ok().method.upper(), r.ok().path) for r in results if isinstance(r, Ok)}
    assert operations == {tuple(label.split(" ")) for label in OPERATIONS}  # each tested above
