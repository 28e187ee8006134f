"""What people look at: a blocked enrollment names the step it stopped at, `enrollments show` lists every mail still
ahead with its planned time and the history, `records list --not-enrolled` finds the records in no sequence, and a
reply step whose template has a subject of its own gets a warning."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach import cli
from outreach.app import enrolling, scheduler
from outreach.cli import options
from outreach.engine import sequences as seq
from outreach.mail import transport as mail_transport
from outreach.rules import validate
from outreach.rules.diagnostics import Code
from outreach.store import Store
from tests import worlds
from tests.conftest import FIXTURES
from tests.worlds import MONDAY, PEOPLE, RULES, seeded_store

CSV = (
    "id,type,email,first_name,company,country,owner,source\n"
    "L1,lead,jo@example.org,Jo,Fjord AS,NO,anna,\n"
    "L2,lead,kim@example.net,,,DE,ben,\n"
    "L3,lead,lu@example.net,Lu,,DE,ben,\n"
)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args))
    return result.exit_code, result.output


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    worlds.scratch(tmp_path, monkeypatch, CSV)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    assert run("apply", "rules")[0] == 0
    return tmp_path


def link(_e: seq.Enrollment) -> str:
    """A signed unsubscribe link (the promo shows it)."""
    return "https://t.example.com/u/token"


async def enroll(store: Store, record_id: str, at: dt.datetime) -> int:
    got = await enrolling.enroll(store, RULES, await store.get_record(record_id), RULES.sequences["inbound-nurture"],
                                 enrolled_by="anna", now=at)  # fmt: skip
    assert isinstance(got, seq.Enrollment), got
    return got.id


# --- a blocked enrollment and its step ----------------------------------------------------------------------------


@pytest.mark.unit
def test_a_blocked_line_names_the_step_it_stopped_at() -> None:
    nurture = RULES.sequences["inbound-nurture"]
    e = seq.Enrollment(6, "S6", "a@example.org", nurture.name, nurture.source.hash, "ben", seq.Status.BLOCKED,
                       step_index=1, steps_done=1, next_due_at=MONDAY, started_at=MONDAY,
                       reason="missing merge field record.first_name")  # fmt: skip
    line = seq.widget_line(e, nurture)
    assert line.blocked_at == "step 2 nudge"
    assert line.detail == "step 2 nudge: missing merge field record.first_name"
    older = seq.widget_line(seq.evolve(e, version="0" * 64), nurture)  # a version the rules no longer have
    assert older.detail == "step 2: missing merge field record.first_name"


@pytest.mark.acceptance
def test_enrollments_list_and_records_show_name_the_step_a_blocked_enrollment_stopped_at(here: Path) -> None:
    run("enroll", "inbound-nurture", "--record", "L2", "--as", "ben", "--now", "2026-11-24T08:00:00Z")
    assert run("run", "--once", "--now", "2026-11-24T08:00:00Z")[0] == 0
    code, out = run("enrollments", "list", "--record", "L2")
    assert code == 0 and "step 1 intro: missing merge field record.first_name" in out
    [line] = json.loads(run("records", "show", "L2", "--json")[1])["sequences"]["enrollments"]
    assert (line["blocked_at"], line["detail"]) == ("step 1 intro", "step 1 intro: missing merge field "
                                                                    "record.first_name")  # fmt: skip
    assert "step 1 intro: missing merge field record.first_name" in run("records", "show", "L2")[1]


# --- enrollments show ---------------------------------------------------------------------------------------------


@pytest.mark.store
async def test_an_enrollment_s_course_is_every_step_ahead_at_its_time_and_its_history(
    backend: tuple[str, str | None], tmp_path: Path
) -> None:
    store = await seeded_store(backend, PEOPLE)
    try:
        sched = scheduler.Scheduler(store, RULES, mail_transport.MaildirTransport(str(tmp_path / "out")))
        jo = await enroll(store, "L1", MONDAY)
        await sched.tick(MONDAY)  # the intro
        found = await enrolling.course(store, RULES, jo, now=MONDAY + dt.timedelta(hours=1), links=link)

        steps = [(at, i, type(d).__name__) for at, i, d in found.upcoming]
        assert steps == [(dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC), 1, "SendEmail"),  # 2 business days
                         (dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC), 2, "CreateTask"),
                         (dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC), 3, "SendEmail")]  # fmt: skip
        nudge = found.upcoming[0][2]
        assert isinstance(nudge, seq.SendEmail) and nudge.rendered.subject == "Re: Quick question, Jo"
        assert found.assuming is None
        assert [x.kind for x in found.history] == ["enrolled", "sequence_email"]

        # waiting for its call task: what comes after it, if it were completed now
        await sched.tick(dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC))  # the nudge
        await sched.tick(dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC))  # the call task
        now = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)
        found = await enrolling.course(store, RULES, jo, now=now, links=link)
        assert found.enrollment.awaiting_task and found.assuming == "its task is completed now"
        assert [(at, i) for at, i, _d in found.upcoming] == [(dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC), 3)]
        assert [x.kind for x in found.history][-1] == "task_created"
    finally:
        await store.close()


@pytest.mark.store
async def test_a_blocked_enrollment_s_course_is_what_a_retry_would_run(backend: tuple[str, str | None],
                                                                        tmp_path: Path) -> None:  # fmt: skip
    store = await seeded_store(backend, PEOPLE)
    try:
        sched = scheduler.Scheduler(store, RULES, mail_transport.MaildirTransport(str(tmp_path / "out")))
        kim = await enroll(store, "L2", MONDAY)  # no first name: the intro blocks
        await sched.tick(MONDAY)
        found = await enrolling.course(store, RULES, kim, now=MONDAY + dt.timedelta(hours=2), links=lambda _e: None)
        assert found.assuming == "it is retried now"
        first = found.upcoming[0]
        assert first[:2] == (MONDAY + dt.timedelta(hours=2), 0)
        assert first[2] == seq.Block("missing merge field record.first_name")
        assert [x.kind for x in found.history] == ["enrolled", "sequence_blocked"]
    finally:
        await store.close()


@pytest.mark.acceptance
def test_enrollments_show_prints_every_mail_ahead_with_its_planned_time(here: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(options, "now", lambda: dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC))
    run("enroll", "inbound-nurture", "--record", "L1", "--as", "anna", "--now", "2026-11-24T08:00:00Z")
    assert run("run", "--once", "--now", "2026-11-24T08:00:00Z")[0] == 0
    [e] = json.loads(run("enrollments", "list", "--json")[1])

    code, out = run("enrollments", "show", str(e["id"]))
    assert code == 0, out
    assert out.splitlines()[0].startswith(f"enrollment {e['id']}: record L1 (jo@example.org) in inbound-nurture")
    assert "│ 2026-11-26 08:00 UTC │ step 2 nudge │ mail follow-up to jo@example.org from anna@example.com, reply: " \
           "\"Re: Quick question, Jo\"" in out  # fmt: skip
    assert "step 4 promo" in out and "sequence mail" in out and "intro: Quick question, Jo" in out
    shown = json.loads(run("enrollments", "show", str(e["id"]), "--json")[1])
    assert [(s["number"], s["kind"], s["at"]) for s in shown["upcoming"]] == [
        (2, "email", "2026-11-26T08:00:00+00:00"), (3, "task", "2026-11-27T08:00:00+00:00"),
        (4, "email", "2026-12-01T08:00:00+00:00")]  # fmt: skip
    assert [h["kind"] for h in shown["history"]] == ["enrolled", "sequence_email"]
    code, out = run("enrollments", "show", "42")
    assert code == 1 and "no enrollment 42" in out


# --- records in no sequence ---------------------------------------------------------------------------------------


@pytest.mark.store
async def test_records_in_no_sequence_are_those_without_a_live_enrollment(backend: tuple[str, str | None],
                                                                          tmp_path: Path) -> None:  # fmt: skip
    store = await seeded_store(backend, PEOPLE)  # L1, L2, W1
    try:
        await enroll(store, "L1", MONDAY)  # active
        w1 = await enroll(store, "W1", MONDAY)
        await enrolling.stop(store, enrollment_id=w1, by="anna", now=MONDAY)  # stopped: in no sequence again
        found = await store.list_records(now=MONDAY, not_enrolled=True)
        assert [r.id for r in found] == ["L2", "W1"]
        assert await store.count_records(now=MONDAY, not_enrolled=True) == 2
        assert [r.id for r in await store.list_records(now=MONDAY)] == ["L1", "L2", "W1"]
    finally:
        await store.close()


@pytest.mark.acceptance
def test_records_list_not_enrolled_finds_whom_to_enroll_next(here: Path) -> None:
    run("enroll", "inbound-nurture", "--record", "L1", "--as", "anna")
    code, out = run("records", "list", "--not-enrolled", "--where", "country=DE", "--json")
    assert code == 0, out
    assert [r["id"] for r in json.loads(out)] == ["L2", "L3"]
    assert [r["id"] for r in json.loads(run("records", "list", "--not-enrolled", "--json")[1])] == ["L2", "L3"]


# --- a reply step's subject ----------------------------------------------------------------------------------------


@pytest.mark.unit
def test_a_reply_step_whose_template_has_its_own_subject_gets_a_warning(tmp_path: Path) -> None:
    (tmp_path / "seq.yaml").write_text(textwrap.dedent("""
        kind: Template
        name: bump
        subject: "Following up"
        text: "Any news? {{ sender.name }}"
        ---
        kind: Sequence
        name: trial
        steps:
          - {id: intro, email: intro}
          - {id: nudge, email: nudge, wait: 2 business days, thread: reply}
          - {id: bump, email: bump, wait: 2 business days, thread: reply}
          - {id: other, email: bump, wait: 1 week, thread: new}
          - {id: again, email: nudge, wait: 1 day, thread: reply}
    """).lstrip(), encoding="utf-8")  # fmt: skip
    result = validate.validate([str(FIXTURES / "base"), str(tmp_path)])
    assert result.errors == []
    warned = [(d.line, d.path, d.message) for d in result.warnings if d.code is Code.STEP_REPLY_SUBJECT]
    assert warned == [
        (11, "steps[2].thread", "step 3 (bump) replies in the thread of step 1 (intro), so it goes out as "
         "\"Re: Hello {{ record.first_name }}\"; the subject of template 'bump', 'Following up', is not used (give "
         "both templates one subject, or use `thread: new`)"),
        (13, "steps[4].thread", "step 5 (again) replies in the thread of step 4 (other), so it goes out as "
         "\"Re: Following up\"; the subject of template 'nudge', 'Hello {{ record.first_name }}', is not used "
         "(give both templates one subject, or use `thread: new`)"),
    ]  # fmt: skip
