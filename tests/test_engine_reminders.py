"""Stage-duration reminders, pure, on a virtual clock: overdue, the daily run, the cadence, stops, digests.

The daemon is played by `simulate`: it ticks every ten minutes, seven seconds past
(07:00:07, 07:10:07, ...), can be down for stretches, and applies stage changes
when their time comes. Dates: 2026-11-21 is a Saturday, 2026-11-23 a Monday;
Berlin's clocks go forward on 2027-03-28 and back on 2027-10-31 (Sundays).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from outreach.engine import reminders, render
from outreach.rules import criteria, model, timing

pytestmark = pytest.mark.unit

UTC = dt.UTC
BERLIN = timing.zone("Europe/Berlin")
STAGES: tuple[tuple[str, str | None], ...] = (("New", "2 days"), ("Contacted", "1 week"), ("Won", None))
OWNER = model.Who("record_owner")


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def process(
    name: str = "partner-leads",
    *,
    module: str = "lead",
    stages: Sequence[tuple[str, str | None]] = STAGES,
    every: str | None = "1 week",
    at: str = "0 7 * * *",
    tz: str = "UTC",
    enabled: bool = True,
    to: model.Who = OWNER,
    where: criteria.Criteria | None = None,
) -> model.SalesProcess:
    return model.SalesProcess(
        source=model.Source(f"rules/processes/{name}.yaml", 1, ""),
        name=name,
        module=module,
        stages=tuple(model.Stage(n, timing.parse_duration(m) if m else None) for n, m in stages),
        where=where,
        follow_up=model.ReminderPolicy(
            enabled=enabled, every=timing.parse_duration(every) if every else None, at=at, timezone=tz, to=to,
            template="overdue-reminder",
        ),
    )  # fmt: skip


def lead(
    id: str = "L2", stage: str | None = "New", entered: str = "2026-11-21T10:00:00", owner: str | None = "anna",
    **fields: Any,
) -> dict[str, Any]:  # fmt: skip
    return {"id": id, "type": "lead", "owner": owner, "stage": stage, "stage_entered_at": utc(entered), **fields}


@dataclasses.dataclass
class Sent:
    at: dt.datetime  # the tick that sent it
    reminder: reminders.Reminder


def simulate(
    proc: model.SalesProcess,
    record: Mapping[str, Any],
    *,
    until: str,
    start: str = "2026-11-21T00:00:00",
    down: Sequence[tuple[str, str]] = (),
    changes: Sequence[tuple[str, Mapping[str, Any]]] = (),
    activity: reminders.Activity = reminders.NO_ACTIVITY,
    step: dt.timedelta = dt.timedelta(minutes=10),
) -> tuple[list[Sent], reminders.ReminderState | None]:
    """Tick from start to until (every `step`, 7 s past), except while down; `changes` update the record."""
    outages = [(utc(a), utc(b)) for a, b in down]
    pending = sorted((utc(at), dict(c)) for at, c in changes)
    current = dict(record)
    state: reminders.ReminderState | None = None
    sent: list[Sent] = []
    now, end = utc(start) + dt.timedelta(seconds=7), utc(until)
    while now < end:
        while pending and pending[0][0] <= now:
            current.update(pending.pop(0)[1])
        if not any(a <= now < b for a, b in outages):
            outcome = reminders.tick(proc, current, state, now, activity=activity)
            state = outcome.state
            if outcome.reminder is not None:
                sent.append(Sent(now, outcome.reminder))
        now += step
    return sent, state


def due(sent: list[Sent]) -> list[dt.datetime]:
    return [s.reminder.due_at for s in sent]


def sent_at(sent: list[Sent]) -> list[dt.datetime]:
    return [s.at for s in sent]


# --- the example from the product notes ---------------------------------------------------------


def test_a_lead_overdue_on_monday_is_reminded_tuesday_at_seven_utc_and_again_the_next_tuesday() -> None:
    # New since Saturday 10:00, max 2 days: overdue Monday 10:00 (RULES-LANGUAGE.md's RuleTest)
    sent, state = simulate(process(), lead(), until="2026-12-09T00:00:00")
    assert due(sent) == [utc("2026-11-24T07:00:00"), utc("2026-12-01T07:00:00"), utc("2026-12-08T07:00:00")]
    assert sent_at(sent) == [t + dt.timedelta(seconds=7) for t in due(sent)]  # the first tick at or after the run
    assert [s.reminder.number for s in sent] == [1, 2, 3]
    assert state is not None and state.next_due_at == utc("2026-12-15T07:00:00")


def test_the_reminder_goes_to_the_owner_with_what_the_template_shows() -> None:
    (first, *_), _ = simulate(process(), lead(), until="2026-11-25T00:00:00")
    r = first.reminder
    assert (r.process, r.record_id, r.to, r.stage) == ("partner-leads", "L2", "anna", "New")
    assert r.max == timing.Duration(seconds=2 * 86400)
    assert r.stage_entered_at == utc("2026-11-21T10:00:00")
    assert r.overdue_since == utc("2026-11-23T10:00:00")
    assert r.in_stage == dt.timedelta(days=2, hours=21, seconds=7)  # at the tick, Tuesday 07:00:07


def test_a_fixed_user_is_reminded_when_follow_up_names_one() -> None:
    sent, _ = simulate(process(to=model.Who("user", "carol")), lead(owner=None), until="2026-11-25T00:00:00")
    assert [s.reminder.to for s in sent] == ["carol"]


# --- overdue ------------------------------------------------------------------------------------


def test_max_in_days_is_calendar_time_so_two_days_from_saturday_is_monday_at_the_same_hour() -> None:
    p = process()
    assert reminders.overdue_since(p, "New", utc("2026-11-21T10:00:00")) == utc("2026-11-23T10:00:00")
    assert reminders.overdue_since(p, "Contacted", utc("2026-11-21T10:00:00")) == utc("2026-11-28T10:00:00")


def test_a_max_in_business_days_counts_working_days_of_the_default_calendar_without_its_send_window() -> None:
    p = process(stages=(("Qualified", "2 business days"),))
    # Friday 10:00 + 2 business days: Tuesday 10:00, reminded Wednesday 07:00
    assert reminders.overdue_since(p, "Qualified", utc("2026-11-27T10:00:00")) == utc("2026-12-01T10:00:00")
    assert reminders.reminder_times(p, "Qualified", utc("2026-11-27T10:00:00"), utc("2026-11-27T00:00:00"),
                                    utc("2026-12-03T00:00:00")) == [utc("2026-12-02T07:00:00")]  # fmt: skip
    settings = model.Settings(
        source=model.Source("rules/settings.yaml", 1, ""), timezone="Europe/Berlin",
        calendars={"default": model.Calendar("default", frozenset(range(5)), holiday_country="DE",
                                             send_window=timing.parse_window("08:00-18:00"))},
    )  # fmt: skip
    # Thursday 24 December 20:00 Berlin; the 25th is a holiday, the 26th a Saturday: Tuesday 29th 20:00 Berlin,
    # outside the send window (which is for mail, not for being overdue)
    entered = dt.datetime(2026, 12, 24, 20, 0, tzinfo=BERLIN)
    assert reminders.overdue_since(p, "Qualified", entered, settings=settings) == utc("2026-12-29T19:00:00")


def test_a_stage_without_max_is_never_overdue() -> None:
    p = process()
    won = lead(stage="Won", entered="2026-01-01T00:00:00")
    assert reminders.overdue_since(p, "Won", utc("2026-01-01T00:00:00")) is None
    assert reminders.tick(p, won, None, utc("2026-11-24T07:00:00")).state is None
    assert reminders.status(p, won, None, utc("2026-11-24T07:00:00")) is None
    assert simulate(p, won, until="2026-12-09T00:00:00")[0] == []


def test_a_stage_value_that_is_not_one_of_the_processes_stages_is_never_overdue() -> None:
    p = process()
    for odd in (lead(stage="Negotiation"), lead(stage="new"), lead(stage=None)):
        assert reminders.tick(p, odd, None, utc("2026-12-24T07:00:00")).state is None
        assert reminders.status(p, odd, None, utc("2026-12-24T07:00:00")) is None
    assert reminders.reminder_times(p, "Negotiation", utc("2026-01-01T00:00:00"), utc("2026-01-01T00:00:00"),
                                    utc("2027-01-01T00:00:00")) == []  # fmt: skip


def test_a_lead_is_overdue_only_once_it_stayed_longer_than_max() -> None:
    p = process()
    assert reminders.status(p, lead(), None, utc("2026-11-23T10:00:00")) is None  # exactly max: not longer
    seen = reminders.status(p, lead(), None, utc("2026-11-23T10:00:01"))
    assert seen is not None and seen.overdue_since == utc("2026-11-23T10:00:00")


# --- the daily run and the cadence -----------------------------------------------------------------


def test_a_lead_overdue_on_a_saturday_is_reminded_on_sunday_and_then_every_sunday() -> None:
    # New since Thursday 10:00: overdue Saturday 10:00; the daily run runs on weekends too
    sent, _ = simulate(process(), lead(entered="2026-11-26T10:00:00"), until="2026-12-14T00:00:00")
    assert due(sent) == [utc("2026-11-29T07:00:00"), utc("2026-12-06T07:00:00"), utc("2026-12-13T07:00:00")]


def test_a_lead_overdue_before_the_run_still_waits_for_the_run_of_the_next_day() -> None:
    # overdue Monday 06:00: not Monday 07:00, Tuesday 07:00
    sent, _ = simulate(process(), lead(entered="2026-11-21T06:00:00"), until="2026-11-25T00:00:00")
    assert due(sent) == [utc("2026-11-24T07:00:00")]


def test_a_tick_a_few_seconds_after_the_run_time_sends_and_one_just_before_does_not() -> None:
    p = process()
    assert reminders.tick(p, lead(), None, utc("2026-11-24T06:59:59")).reminder is None
    outcome = reminders.tick(p, lead(), None, utc("2026-11-24T07:00:00"))
    assert outcome.reminder is not None and outcome.reminder.due_at == utc("2026-11-24T07:00:00")
    assert reminders.tick(p, lead(), outcome.state, utc("2026-11-24T07:00:00")).reminder is None  # not twice
    late = reminders.tick(p, lead(), None, utc("2026-11-24T07:00:04"))
    assert late.reminder is not None and late.reminder.due_at == utc("2026-11-24T07:00:00")


def test_reminders_every_few_days_count_days_from_the_first_reminder() -> None:
    sent, _ = simulate(process(every="3 days"), lead(), until="2026-12-04T00:00:00")
    assert due(sent) == [utc(f"2026-{d}T07:00:00") for d in ("11-24", "11-27", "11-30", "12-03")]


def test_reminders_every_two_weeks_follow_the_weekday_of_the_first_reminder() -> None:
    sent, _ = simulate(process(every="2 weeks"), lead(), until="2026-12-23T00:00:00")
    assert due(sent) == [utc("2026-11-24T07:00:00"), utc("2026-12-08T07:00:00"), utc("2026-12-22T07:00:00")]


def test_without_every_a_single_reminder_is_sent() -> None:
    sent, state = simulate(process(every=None), lead(), until="2026-12-24T00:00:00")
    assert due(sent) == [utc("2026-11-24T07:00:00")]
    assert state is not None and state.sent == 1 and state.next_due_at is None


def test_an_interval_under_a_day_behaves_like_one_day_and_parts_of_days_round_up() -> None:
    sent, _ = simulate(process(every="4h"), lead(), until="2026-11-27T00:00:00")
    assert due(sent) == [utc(f"2026-11-{d}T07:00:00") for d in (24, 25, 26)]
    sent, _ = simulate(process(every="36h"), lead(), until="2026-11-29T00:00:00")
    assert due(sent) == [utc(f"2026-11-{d}T07:00:00") for d in (24, 26, 28)]


def test_the_listed_reminder_times_are_what_the_daemon_sends() -> None:
    for p, entered in ((process(), "2026-11-21T10:00:00"), (process(every="3 days"), "2026-11-26T10:00:00"),
                       (process(every="1 day", at="0 9 * * *", tz="Europe/Berlin"), "2026-11-21T23:30:00")):  # fmt: skip
        sent, _ = simulate(p, lead(entered=entered), until="2026-12-20T00:00:00")
        listed = reminders.reminder_times(
            p, "New", utc(entered), utc("2026-11-21T00:00:00"), utc("2026-12-20T00:00:00")
        )
        assert listed == due(sent)
    # the range is [start, end)
    assert reminders.reminder_times(process(), "New", utc("2026-11-21T10:00:00"), utc("2026-12-01T07:00:00"),
                                    utc("2026-12-08T07:00:00")) == [utc("2026-12-01T07:00:00")]  # fmt: skip


def test_a_disabled_follow_up_shows_the_lead_overdue_but_sends_nothing() -> None:
    p = process(enabled=False)
    assert simulate(p, lead(), until="2026-12-09T00:00:00")[0] == []
    seen = reminders.status(p, lead(), None, utc("2026-11-25T00:00:00"))
    assert seen is not None and seen.overdue_since == utc("2026-11-23T10:00:00") and seen.next_reminder is None
    assert reminders.reminder_times(p, "New", utc("2026-11-21T10:00:00"), utc("2026-11-21T00:00:00"),
                                    utc("2026-12-09T00:00:00")) == []  # fmt: skip


# --- downtime -------------------------------------------------------------------------------------------


def test_after_downtime_one_reminder_catches_up_and_the_weekly_cadence_stays_on_tuesdays() -> None:
    # down from Monday 30 November to Thursday 3 December noon: Tuesday's reminder is missed
    sent, _ = simulate(process(), lead(), until="2026-12-16T00:00:00",
                       down=[("2026-11-30T12:00:00", "2026-12-03T12:00:00")])  # fmt: skip
    assert sent_at(sent) == [utc("2026-11-24T07:00:07"), utc("2026-12-03T12:00:07"), utc("2026-12-08T07:00:07"),
                             utc("2026-12-15T07:00:07")]  # fmt: skip
    assert due(sent)[1] == utc("2026-12-01T07:00:00")


def test_a_long_downtime_with_daily_reminders_sends_one_not_a_burst() -> None:
    sent, _ = simulate(process(every="1 day"), lead(), until="2026-12-03T00:00:00",
                       down=[("2026-11-25T00:00:00", "2026-12-01T12:00:00")])  # fmt: skip
    assert sent_at(sent) == [utc("2026-11-24T07:00:07"), utc("2026-12-01T12:00:07"), utc("2026-12-02T07:00:07")]


def test_a_catch_up_before_the_days_run_leaves_no_second_reminder_that_day() -> None:
    # daily reminders; down over Tuesday's run, back Wednesday 06:00: one then, the next on Thursday
    sent, _ = simulate(process(every="1 day"), lead(), until="2026-11-27T00:00:00",
                       down=[("2026-11-24T06:00:00", "2026-11-25T06:00:00")])  # fmt: skip
    assert sent_at(sent) == [utc("2026-11-25T06:00:07"), utc("2026-11-26T07:00:07")]


def test_a_first_reminder_caught_up_late_sets_the_weekday_of_the_ones_after() -> None:
    # the product notes count later reminders from the day the first one was sent: here a Wednesday
    sent, state = simulate(process(), lead(), until="2026-12-10T00:00:00",
                           down=[("2026-11-24T06:00:00", "2026-11-25T12:00:00")])  # fmt: skip
    assert sent_at(sent) == [utc("2026-11-25T12:00:07"), utc("2026-12-02T07:00:07"), utc("2026-12-09T07:00:07")]
    assert state is not None and state.first_sent_at == utc("2026-11-25T12:00:07")


# --- time zones and daylight saving -------------------------------------------------------------------


def berlin_hours(times: list[dt.datetime]) -> list[int]:
    return [t.astimezone(BERLIN).hour for t in times]


def test_a_berlin_run_at_nine_stays_at_nine_local_when_the_clocks_go_forward_in_march() -> None:
    p = process(every="1 day", at="0 9 * * *", tz="Europe/Berlin")
    sent, _ = simulate(p, lead(entered="2027-03-23T08:00:00"), start="2027-03-23T00:00:00",
                       until="2027-03-30T00:00:00")  # fmt: skip
    assert due(sent) == [utc("2027-03-26T08:00:00"), utc("2027-03-27T08:00:00"), utc("2027-03-28T07:00:00"),
                         utc("2027-03-29T07:00:00")]  # fmt: skip
    assert berlin_hours(due(sent)) == [9, 9, 9, 9]


def test_a_berlin_run_at_nine_stays_at_nine_local_when_the_clocks_go_back_in_october() -> None:
    p = process(every="1 day", at="0 9 * * *", tz="Europe/Berlin")
    sent, _ = simulate(p, lead(entered="2027-10-26T08:00:00"), start="2027-10-26T00:00:00",
                       until="2027-11-02T00:00:00")  # fmt: skip
    assert due(sent) == [utc("2027-10-29T07:00:00"), utc("2027-10-30T07:00:00"), utc("2027-10-31T08:00:00"),
                         utc("2027-11-01T08:00:00")]  # fmt: skip
    assert berlin_hours(due(sent)) == [9, 9, 9, 9]


def test_a_weekly_berlin_reminder_across_the_march_change_is_a_week_of_days_not_of_hours() -> None:
    p = process(at="0 9 * * *", tz="Europe/Berlin")
    sent, _ = simulate(p, lead(entered="2027-03-20T10:00:00"), start="2027-03-20T00:00:00",
                       until="2027-04-01T00:00:00")  # fmt: skip
    assert due(sent) == [utc("2027-03-23T08:00:00"), utc("2027-03-30T07:00:00")]  # 167 hours apart


def test_the_default_utc_run_is_at_eight_in_berlin_in_winter_and_nine_in_summer() -> None:
    sent, _ = simulate(process(every="1 day"), lead(entered="2027-03-23T08:00:00"), start="2027-03-23T00:00:00",
                       until="2027-03-30T00:00:00")  # fmt: skip
    assert [t.hour for t in due(sent)] == [7, 7, 7, 7]
    assert berlin_hours(due(sent)) == [8, 8, 9, 9]


def test_the_day_after_is_the_next_calendar_day_in_the_runs_time_zone() -> None:
    # overdue Monday 22 March 23:30 UTC, which is Tuesday 00:30 in Berlin
    entered = "2027-03-20T23:30:00"
    in_berlin = process(at="0 9 * * *", tz="Europe/Berlin")
    assert reminders.reminder_times(in_berlin, "New", utc(entered), utc(entered),
                                    utc("2027-03-25T00:00:00")) == [utc("2027-03-24T08:00:00")]  # fmt: skip
    assert reminders.reminder_times(process(), "New", utc(entered), utc(entered),
                                    utc("2027-03-25T00:00:00")) == [utc("2027-03-23T07:00:00")]  # fmt: skip


def test_a_run_time_the_clocks_skip_happens_when_they_jump() -> None:
    p = process(every="1 day", at="30 2 * * *", tz="Europe/Berlin")
    times = reminders.reminder_times(p, "New", utc("2027-03-24T12:00:00"), utc("2027-03-24T00:00:00"),
                                     utc("2027-03-30T00:00:00"))  # fmt: skip
    assert times == [utc("2027-03-27T01:30:00"), utc("2027-03-28T01:00:00"), utc("2027-03-29T00:30:00")]


# --- what stops reminders -------------------------------------------------------------------------------


def test_a_stage_change_stops_the_reminders() -> None:
    sent, state = simulate(process(), lead(), until="2026-12-02T00:00:00",
                           changes=[("2026-11-25T09:00:00", {"stage": "Won", "stage_entered_at": utc("2026-11-25T09:00:00")})])  # fmt: skip
    assert due(sent) == [utc("2026-11-24T07:00:00")]
    assert state is None  # Won has no max: nothing to keep


def test_a_new_stage_overstayed_starts_the_cycle_again() -> None:
    # Contacted from Wednesday 09:00, max 1 week: overdue Wednesday 2 December, reminded Thursday, and weekly
    sent, state = simulate(process(), lead(), until="2026-12-11T00:00:00",
                           changes=[("2026-11-25T09:00:00", {"stage": "Contacted", "stage_entered_at": utc("2026-11-25T09:00:00")})])  # fmt: skip
    assert due(sent) == [utc("2026-11-24T07:00:00"), utc("2026-12-03T07:00:00"), utc("2026-12-10T07:00:00")]
    assert [s.reminder.number for s in sent] == [1, 1, 2]
    assert [s.reminder.stage for s in sent] == ["New", "Contacted", "Contacted"]
    assert state is not None and state.stage == "Contacted"


def test_a_stage_changed_and_overstayed_while_the_daemon_was_down_starts_a_new_cycle() -> None:
    # the stored state still describes New when the daemon is back and Contacted is already overdue
    task = reminders.Activity(tasks_created_at=(utc("2026-11-24T12:00:00"),))  # stops New's reminders
    sent, state = simulate(process(), lead(), until="2026-12-12T00:00:00", activity=task,
                           down=[("2026-11-25T00:00:00", "2026-12-04T12:00:00")],
                           changes=[("2026-11-25T09:00:00", {"stage": "Contacted", "stage_entered_at": utc("2026-11-25T09:00:00")})])  # fmt: skip
    assert [(s.at, s.reminder.stage, s.reminder.number) for s in sent] == [
        (utc("2026-11-24T07:00:07"), "New", 1), (utc("2026-12-04T12:00:07"), "Contacted", 1),
        (utc("2026-12-11T07:00:07"), "Contacted", 2)]  # fmt: skip
    assert state is not None and state.stopped is None and state.first_sent_at == utc("2026-12-04T12:00:07")


def test_entering_the_same_stage_again_is_a_new_overdue_period() -> None:
    p = process(every=None)
    sent, _ = simulate(p, lead(), until="2026-11-29T00:00:00",
                       changes=[("2026-11-25T09:00:00", {"stage_entered_at": utc("2026-11-25T09:00:00")})])  # fmt: skip
    assert due(sent) == [utc("2026-11-24T07:00:00"), utc("2026-11-28T07:00:00")]


def test_an_appointment_in_the_future_stops_the_reminders() -> None:
    demo = reminders.Appointment(entered_at=utc("2026-11-25T10:00:00"), starts_at=utc("2026-12-05T10:00:00"))
    sent, state = simulate(process(), lead(), until="2026-12-16T00:00:00",
                           activity=reminders.Activity(appointments=(demo,)))  # fmt: skip
    assert due(sent) == [utc("2026-11-24T07:00:00")]
    assert state is not None and state.stopped is reminders.StopReason.APPOINTMENT
    assert state.stopped_at == utc("2026-11-25T10:00:00") and state.next_due_at is None


def test_an_appointment_in_the_past_does_not_stop_the_reminders() -> None:
    # entered on Wednesday for a call that took place on Tuesday
    past = reminders.Appointment(entered_at=utc("2026-11-25T10:00:00"), starts_at=utc("2026-11-24T15:00:00"))
    sent, state = simulate(process(), lead(), until="2026-12-09T00:00:00",
                           activity=reminders.Activity(appointments=(past,)))  # fmt: skip
    assert due(sent) == [utc("2026-11-24T07:00:00"), utc("2026-12-01T07:00:00"), utc("2026-12-08T07:00:00")]
    assert state is not None and state.stopped is None


def test_creating_a_task_stops_the_reminders() -> None:
    sent, state = simulate(process(), lead(), until="2026-12-16T00:00:00",
                           activity=reminders.Activity(tasks_created_at=(utc("2026-11-26T15:00:00"),)))  # fmt: skip
    assert due(sent) == [utc("2026-11-24T07:00:00")]
    assert state is not None and state.stopped is reminders.StopReason.TASK


def test_a_task_or_appointment_entered_before_the_lead_was_overdue_does_not_stop_its_reminders() -> None:
    early = reminders.Activity(
        tasks_created_at=(utc("2026-11-22T09:00:00"),),
        appointments=(reminders.Appointment(utc("2026-11-22T09:00:00"), utc("2026-11-30T09:00:00")),),
    )
    sent, _ = simulate(process(), lead(), until="2026-12-02T00:00:00", activity=early)
    assert due(sent) == [utc("2026-11-24T07:00:00"), utc("2026-12-01T07:00:00")]


def test_a_task_created_after_the_lead_became_overdue_but_before_the_first_reminder_means_no_reminder() -> None:
    sent, state = simulate(process(), lead(), until="2026-12-09T00:00:00",
                           activity=reminders.Activity(tasks_created_at=(utc("2026-11-23T15:00:00"),)))  # fmt: skip
    assert sent == []
    assert state is not None and state.stopped is reminders.StopReason.TASK and state.sent == 0


def test_a_stop_that_comes_between_the_run_and_a_late_tick_wins() -> None:
    state = reminders.tick(process(), lead(), None, utc("2026-11-24T06:00:00")).state
    task = reminders.Activity(tasks_created_at=(utc("2026-11-24T07:00:30"),))
    assert reminders.tick(process(), lead(), state, utc("2026-11-24T07:01:00"), activity=task).reminder is None


def test_after_a_stop_a_new_stage_overstayed_starts_the_reminders_again() -> None:
    task = reminders.Activity(tasks_created_at=(utc("2026-11-25T10:00:00"),))
    sent, state = simulate(process(), lead(), until="2026-12-11T00:00:00", activity=task,
                           changes=[("2026-11-26T09:00:00", {"stage": "Contacted", "stage_entered_at": utc("2026-11-26T09:00:00")})])  # fmt: skip
    assert due(sent) == [utc("2026-11-24T07:00:00"), utc("2026-12-04T07:00:00")]
    assert state is not None and state.stopped is None


def test_a_stopped_period_stays_stopped_when_the_activity_is_no_longer_passed() -> None:
    task = reminders.Activity(tasks_created_at=(utc("2026-11-25T10:00:00"),))
    stopped = reminders.tick(process(), lead(), None, utc("2026-11-25T11:00:00"), activity=task).state
    assert stopped is not None and stopped.stopped is reminders.StopReason.TASK
    assert reminders.tick(process(), lead(), stopped, utc("2026-12-01T07:00:00")).reminder is None


# --- seeing it ------------------------------------------------------------------------------------------


def test_the_overdue_standing_says_since_when_and_the_next_reminder() -> None:
    p = process()
    seen = reminders.status(p, lead(), None, utc("2026-11-23T12:00:00"))
    assert seen == reminders.Overdue(
        process="partner-leads", record_id="L2", stage="New", stage_entered_at=utc("2026-11-21T10:00:00"),
        max=timing.Duration(seconds=2 * 86400), overdue_since=utc("2026-11-23T10:00:00"),
        next_reminder=utc("2026-11-24T07:00:00"), sent=0, stopped=None, stopped_at=None,
    )  # fmt: skip
    _, state = simulate(p, lead(), until="2026-11-25T00:00:00")
    later = reminders.status(p, lead(), state, utc("2026-11-25T00:00:00"))
    assert later is not None and (later.sent, later.next_reminder) == (1, utc("2026-12-01T07:00:00"))
    task = reminders.Activity(tasks_created_at=(utc("2026-11-24T12:00:00"),))
    stopped = reminders.status(p, lead(), state, utc("2026-11-25T00:00:00"), activity=task)
    assert stopped is not None and stopped.stopped is reminders.StopReason.TASK and stopped.next_reminder is None


def test_a_lead_without_an_owner_is_not_reminded_and_is_caught_up_once_it_has_one() -> None:
    p = process()
    no_owner = reminders.tick(p, lead(owner=None), None, utc("2026-11-24T07:00:07"))
    assert no_owner.reminder is None and no_owner.problem == "record L2 has no owner to remind"
    assert no_owner.state is not None and no_owner.state.sent == 0
    later = reminders.tick(p, lead(), no_owner.state, utc("2026-11-26T10:00:00"))
    assert later.reminder is not None and later.reminder.due_at == utc("2026-11-24T07:00:00")


# --- digests and several processes ------------------------------------------------------------------------


def owners_book() -> list[reminders.Entry]:
    """At Tuesday 24 November 07:00: anna has two leads due, one overdue since today, one stopped; bob one due."""
    task = reminders.Activity(tasks_created_at=(utc("2026-11-23T12:00:00"),))
    return [
        reminders.Entry(lead("L1")),
        reminders.Entry(lead("L2", entered="2026-11-20T10:00:00")),
        reminders.Entry(lead("L3", entered="2026-11-22T05:00:00")),  # overdue Tuesday 05:00: reminded Wednesday
        reminders.Entry(lead("L4", entered="2026-11-20T10:00:00"), activity=task),
        reminders.Entry(lead("L5", owner="bob")),
    ]


def test_without_digest_each_due_lead_is_its_own_mail() -> None:
    result = reminders.run(process(), owners_book(), utc("2026-11-24T07:00:00"))
    assert [(m.to, [r.record_id for r in m.reminders]) for m in result.mails] == [
        ("anna", ["L1"]), ("anna", ["L2"]), ("bob", ["L5"])]  # fmt: skip
    assert all(m.template == "overdue-reminder" and m.also_overdue == () for m in result.mails)


def test_a_digest_is_one_mail_per_owner_per_run_listing_their_overdue_leads() -> None:
    p = process()
    p = dataclasses.replace(p, follow_up=dataclasses.replace(p.follow_up, digest=True))
    result = reminders.run(p, owners_book(), utc("2026-11-24T07:00:00"))
    assert [(m.to, [r.record_id for r in m.reminders], [o.record_id for o in m.also_overdue])
            for m in result.mails] == [("anna", ["L1", "L2"], ["L3"]), ("bob", ["L5"], [])]  # fmt: skip
    # the states count the reminders each lead got, digest or not
    assert {o.record_id: o.state.sent for o in result.outcomes if o.state is not None} == {
        "L1": 1, "L2": 1, "L3": 0, "L4": 0, "L5": 1}  # fmt: skip
    # an explicit argument wins over the model
    assert len(reminders.run(p, owners_book(), utc("2026-11-24T07:00:00"), digest=False).mails) == 3
    assert len(reminders.run(process(), owners_book(), utc("2026-11-24T07:00:00"), digest=True).mails) == 2


def test_no_digest_goes_to_an_owner_with_nothing_due() -> None:
    # Wednesday: only L3 is due
    state = {o.record_id: o.state for o in reminders.run(process(), owners_book(), utc("2026-11-24T07:00:00")).outcomes}
    entries = [dataclasses.replace(e, state=state[str(e.record["id"])]) for e in owners_book()]
    result = reminders.run(process(), entries, utc("2026-11-25T07:00:00"), digest=True)
    assert [(m.to, [r.record_id for r in m.reminders], [o.record_id for o in m.also_overdue])
            for m in result.mails] == [("anna", ["L3"], ["L1", "L2"])]  # fmt: skip


def source_is(value: str) -> criteria.Criteria:
    return criteria.Leaf("source", criteria.Op.EQ, value)


def by_source(p: model.SalesProcess, record: Mapping[str, Any]) -> bool:
    """The test's stand-in for the store's criteria evaluation (only `source eq` leaves here)."""
    assert isinstance(p.where, criteria.Leaf)
    return bool(record.get(p.where.field) == p.where.value)


def test_a_record_follows_the_process_of_its_module_whose_criteria_it_matches() -> None:
    partner = process("partner-leads", where=source_is("partner"))
    web = process("web-leads", stages=(("New", "5 days"),), where=source_is("web"))
    deals = process("deal-desk", module="deal", stages=(("New", "1 day"),))
    everything = [web, deals, partner]
    assert reminders.processes_of(lead(source="partner"), everything, by_source) == (partner,)
    assert reminders.processes_of(lead(source="web"), everything, by_source) == (web,)
    assert reminders.processes_of(lead(source="fair"), everything, by_source) == ()
    assert reminders.processes_of({**lead(), "type": "deal"}, everything, by_source) == (deals,)
    with pytest.raises(ValueError, match="pass `matches`"):
        reminders.follows(partner, lead(source="partner"))


def test_each_process_reminds_only_the_records_that_follow_it_on_its_own_timing() -> None:
    partner = process("partner-leads", where=source_is("partner"))
    web = process("web-leads", stages=(("New", "5 days"),), where=source_is("web"))
    book = [reminders.Entry(lead("P1", source="partner")), reminders.Entry(lead("W1", source="web")),
            reminders.Entry({**lead("D1"), "type": "deal"})]  # fmt: skip
    on_tuesday = reminders.run(partner, book, utc("2026-11-24T07:00:00"), matches=by_source)
    assert [m.reminders[0].record_id for m in on_tuesday.mails] == ["P1"]
    assert {o.record_id: o.state is not None for o in on_tuesday.outcomes} == {"P1": True, "W1": False, "D1": False}
    # web leads: New for 5 days, overdue Thursday 26 10:00, reminded Friday
    assert reminders.run(web, book, utc("2026-11-24T07:00:00"), matches=by_source).mails == ()
    on_friday = reminders.run(web, book, utc("2026-11-27T07:00:00"), matches=by_source)
    assert [m.reminders[0].record_id for m in on_friday.mails] == ["W1"]


def test_a_record_that_leaves_the_process_is_no_longer_reminded() -> None:
    partner = process("partner-leads", where=source_is("partner"))
    first = reminders.tick(partner, lead(source="partner"), None, utc("2026-11-24T07:00:00"), matches=by_source)
    assert first.reminder is not None
    moved = reminders.tick(partner, lead(source="web"), first.state, utc("2026-12-01T07:00:00"), matches=by_source)
    assert moved.reminder is None and moved.state is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "less than a minute"), (60, "1 minute"), (7200, "2 hours"), (86400, "1 day"), (86400 * 9 + 5000, "9 days")],
)
def test_how_long_in_a_stage_reads_like_a_person_says_it(seconds: int, text: str) -> None:
    assert render.human_duration(dt.timedelta(seconds=seconds)) == text
