"""What an event means, decided by the engine alone (outreach/engine/events.py): pure, no store, no clock."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from outreach.engine import events
from outreach.engine import sequences as seq

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)
STARTED = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


def enrollment(id_: int, status: seq.Status = seq.Status.ACTIVE, *, sequence: str = "nurture",
               reason: str | None = None, awaiting_task: bool = False) -> seq.Enrollment:  # fmt: skip
    return seq.Enrollment(id_, "L1", "jo@example.org", sequence, "h1", "anna", status, 1, 1,
                          STARTED + dt.timedelta(days=2), STARTED, reason=reason, awaiting_task=awaiting_task)  # fmt: skip


LIVE = (enrollment(1), enrollment(2, seq.Status.BLOCKED, sequence="welcome", reason="missing merge field x"))


@pytest.mark.parametrize(("kind", "reason"), [
    (events.Kind.REPLIED, "replied"), (events.Kind.UNSUBSCRIBED, "unsubscribed"), (events.Kind.CONVERTED, "converted"),
    (events.Kind.DELETED, "deleted"), (events.Kind.COMPLAINED, "complained"), (events.Kind.SUPPRESSED, "suppressed"),
])  # fmt: skip
def test_a_reply_unsubscribe_conversion_deletion_complaint_or_suppression_stops_every_live_sequence(
    kind: events.Kind, reason: str
) -> None:
    effects = events.of_record_event(kind, live=LIVE, email="Jo@Example.org", now=NOW)
    assert [(e.id, e.status, e.reason, e.ended_at, e.next_due_at) for e in effects.enrollments] == [
        (1, seq.Status.STOPPED, reason, NOW, None), (2, seq.Status.STOPPED, reason, NOW, None),
    ]  # fmt: skip
    assert effects.stopped == 2 and effects.blocked == 0


def test_a_stopped_task_step_no_longer_waits_for_its_task() -> None:
    (stopped,) = events.of_record_event(events.Kind.REPLIED, live=[enrollment(1, awaiting_task=True)], email=None,
                                        now=NOW).enrollments  # fmt: skip
    assert not stopped.awaiting_task


@pytest.mark.parametrize(("kind", "reason"), [
    (events.Kind.UNSUBSCRIBED, "unsubscribed"), (events.Kind.COMPLAINED, "complaint"), (events.Kind.SUPPRESSED, "manual"),
])  # fmt: skip
def test_an_unsubscribe_a_complaint_or_a_suppression_suppresses_the_address_in_lower_case(kind: events.Kind, reason: str) -> None:
    effects = events.of_record_event(kind, live=(), email="Jo@Example.org", now=NOW)
    assert effects.suppressions == (events.Suppression("jo@example.org", reason),)
    assert events.of_record_event(kind, live=(), email=None, now=NOW).suppressions == ()  # no address, none kept


@pytest.mark.parametrize("kind", [
    events.Kind.AUTO_REPLY, events.Kind.BOUNCE_DELAYED, events.Kind.STAGE_CHANGED, events.Kind.TASK_COMPLETED,
    events.Kind.APPOINTMENT, events.Kind.OPENED, events.Kind.CLICKED,
])  # fmt: skip
def test_activity_changes_no_enrollment_and_suppresses_nobody(kind: events.Kind) -> None:
    assert events.of_record_event(kind, live=LIVE, email="jo@example.org", now=NOW) == events.NOTHING


def test_a_reply_recorded_on_a_record_suppresses_nobody() -> None:
    assert events.of_record_event(events.Kind.REPLIED, live=(), email="jo@example.org", now=NOW).suppressions == ()
    # a bounce is about an address (of_bounce), not a record: as a record event it suppresses nobody either
    assert events.of_record_event(events.Kind.BOUNCED, live=LIVE, email="jo@example.org", now=NOW) == events.NOTHING


def test_ended_enrollments_are_left_as_they_ended() -> None:
    done = dataclasses.replace(enrollment(3), status=seq.Status.COMPLETED, ended_at=STARTED)
    stopped = dataclasses.replace(enrollment(4), status=seq.Status.STOPPED, reason="stopped by ben")
    effects = events.of_record_event(events.Kind.REPLIED, live=(done, stopped), email=None, now=NOW)
    assert effects.enrollments == ()
    assert events.of_removed_sequence((done,), NOW).enrollments == ()
    assert events.of_hand_stop((stopped,), by="anna", now=NOW).enrollments == ()


def test_a_permanent_bounce_blocks_the_address_with_the_servers_words_and_suppresses_it() -> None:
    effects = events.of_bounce(live=LIVE, address="Jo@Example.org", diagnostic="550 5.1.1 user unknown",
                               permanent=True)  # fmt: skip
    assert [(e.id, e.status, e.reason) for e in effects.enrollments] == [
        (1, seq.Status.BLOCKED, "bounced: 550 5.1.1 user unknown"), (2, seq.Status.BLOCKED, "bounced: 550 5.1.1 user unknown"),
    ]  # fmt: skip
    assert effects.blocked == 2 and effects.stopped == 0
    assert effects.suppressions == (events.Suppression("jo@example.org", "bounced"),)
    assert all(e.ended_at is None for e in effects.enrollments)  # blocked, not ended: a retry can send again


def test_a_delay_warning_changes_nothing() -> None:
    assert events.of_bounce(live=LIVE, address="jo@example.org", diagnostic="4.4.7", permanent=False) == events.NOTHING


def test_a_very_long_diagnostic_is_cut_to_the_reasons_column() -> None:
    (blocked, _) = events.of_bounce(live=LIVE, address="jo@example.org", diagnostic="x" * 2000,
                                    permanent=True).enrollments  # fmt: skip
    assert blocked.reason is not None and len(blocked.reason) == 500


def test_a_user_stops_by_hand_with_their_name_or_without_one() -> None:
    (by_anna,) = events.of_hand_stop(LIVE[:1], by="anna", now=NOW).enrollments
    assert (by_anna.status, by_anna.reason, by_anna.ended_at) == (seq.Status.STOPPED, "stopped by anna", NOW)
    (nameless,) = events.of_hand_stop(LIVE[:1], by=None, now=NOW).enrollments
    assert nameless.reason == "stopped by hand"


def test_a_removed_sequence_stops_its_live_enrollments() -> None:
    effects = events.of_removed_sequence(LIVE, NOW)
    assert {(e.status, e.reason) for e in effects.enrollments} == {(seq.Status.STOPPED, "sequence removed")}
    assert effects.stopped == 2


def test_mail_refused_for_good_blocks_a_live_enrollment_or_one_its_last_step_completed() -> None:
    (blocked,) = events.of_failed_send(enrollment(1), "550 5.7.1 relaying denied").enrollments
    assert (blocked.status, blocked.reason) == (seq.Status.BLOCKED, "undeliverable: 550 5.7.1 relaying denied")
    ended = dataclasses.replace(enrollment(1), status=seq.Status.COMPLETED, ended_at=NOW)
    (reopened,) = events.of_failed_send(ended, "550").enrollments  # the last step's mail never arrived
    assert (reopened.status, reopened.reason, reopened.ended_at) == (seq.Status.BLOCKED, "undeliverable: 550", None)
    assert events.of_failed_send(ended, "550", reopen=False) == events.NOTHING  # the address is live again
    stopped = dataclasses.replace(enrollment(1), status=seq.Status.STOPPED, ended_at=NOW)
    assert events.of_failed_send(stopped, "550") == events.NOTHING
    assert events.of_failed_send(None, "550") == events.NOTHING  # a reminder mail has no enrollment


def test_only_leads_are_converted() -> None:
    assert events.conversion_refusal("lead") is None
    assert events.conversion_refusal("contact") == "is a contact; only leads are converted"


def test_effects_add_up() -> None:
    a = events.of_record_event(events.Kind.UNSUBSCRIBED, live=LIVE[:1], email="jo@example.org", now=NOW)
    b = events.of_bounce(live=LIVE[1:], address="kim@example.net", diagnostic="550", permanent=True)
    both = a + b
    assert (both.stopped, both.blocked, len(both.suppressions)) == (1, 1, 2)
