"""What an event means for a person's sequences and address (pure): the one place that decides it.

A reply, an unsubscribe, a conversion, a deletion, a complaint or an operator's suppression by hand ends every live
sequence of the record; a permanent bounce blocks every live enrollment of the address; an unsubscribe, a
complaint, a permanent bounce and a suppression by hand keep the address off every sequence and campaign from then
on. Everything else (an auto-reply, a delay warning,
a stage change, a task done, an appointment, an open, a click) is kept as activity and changes no enrollment
here (the scheduler and the reminders read that activity on their own).

The application layer (outreach/app/events.py, outreach/app/inbox.py) reads the live enrollments an event is
about inside the event's transaction, asks this module, and has the store write the answer in that same
transaction. Nothing here reads the clock, the store or the mail.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterable, Mapping
from typing import Any

from outreach.engine import sequences as seq
from outreach.rules import model

# Why an address is suppressed (the suppression list's `reason`); `manual`: by an operator.
SUPPRESSION_REASONS = ("manual", "unsubscribed", "bounced", "complaint")


class Kind(enum.StrEnum):
    """The kinds of event a record's activity keeps (the `kind` of its events)."""

    REPLIED = "replied"
    AUTO_REPLY = "auto_reply"
    BOUNCED = "bounced"
    BOUNCE_DELAYED = "bounce_delayed"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    CONVERTED = "converted"
    DELETED = "deleted"
    STAGE_CHANGED = "stage_changed"
    TASK_COMPLETED = "task_completed"
    APPOINTMENT = "appointment"
    OPENED = "opened"
    CLICKED = "clicked"
    SUPPRESSED = "suppressed"  # an operator put the address on the suppression list by hand


# The events that end every live sequence of the record, and the reason each stopped enrollment keeps
# ("a sequence ends for a person when they reply, are converted, deleted, unsubscribe, or are stopped by hand";
# a spam complaint ends them too, as an unsubscribe would).
ENDS_SEQUENCES: Mapping[Kind, str] = {
    Kind.REPLIED: "replied",
    Kind.UNSUBSCRIBED: "unsubscribed",
    Kind.CONVERTED: "converted",
    Kind.DELETED: "deleted",
    Kind.COMPLAINED: "complained",
    Kind.SUPPRESSED: "suppressed",
}
# The events that keep the address off every sequence and campaign, and the suppression's reason.
SUPPRESSES: Mapping[Kind, str] = {
    Kind.UNSUBSCRIBED: "unsubscribed",
    Kind.COMPLAINED: "complaint",
    Kind.BOUNCED: "bounced",
    Kind.SUPPRESSED: "manual",
}
SEQUENCE_REMOVED = "sequence removed"


@dataclasses.dataclass(frozen=True)
class Suppression:
    """An address kept off every sequence and campaign from now on, and why."""

    email: str
    reason: str  # unsubscribed | bounced | complaint | manual


@dataclasses.dataclass(frozen=True)
class Effects:
    """What an event changes: the new states of the enrollments it ends or blocks, the addresses it suppresses."""

    enrollments: tuple[seq.Enrollment, ...] = ()
    suppressions: tuple[Suppression, ...] = ()

    @property
    def stopped(self) -> int:
        return sum(e.status is seq.Status.STOPPED for e in self.enrollments)

    @property
    def blocked(self) -> int:
        return sum(e.status is seq.Status.BLOCKED for e in self.enrollments)

    def __add__(self, other: Effects) -> Effects:
        return Effects(self.enrollments + other.enrollments, self.suppressions + other.suppressions)


NOTHING = Effects()


def _changed(before: Iterable[seq.Enrollment], after: Iterable[seq.Enrollment]) -> tuple[seq.Enrollment, ...]:
    return tuple(new for old, new in zip(before, after, strict=True) if new is not old)


def of_record_event(
    kind: Kind, *, live: Iterable[seq.Enrollment], email: str | None, now: dt.datetime
) -> Effects:
    """An event on a record: `live` are the record's live enrollments, `email` its address (None: it has none)."""
    reason = ENDS_SEQUENCES.get(kind)
    live = tuple(live)
    ended = _changed(live, (seq.stop(e, reason, now) for e in live)) if reason is not None else ()
    suppressed = SUPPRESSES.get(kind) if kind is not Kind.BOUNCED else None  # a bounce is about an address
    if suppressed is None or not email:
        return Effects(ended)
    return Effects(ended, (Suppression(email.lower(), suppressed),))


def of_bounce(*, live: Iterable[seq.Enrollment], address: str, diagnostic: str, permanent: bool) -> Effects:
    """A bounce of our mail to `address`: permanent, it blocks every live enrollment of the address with the
    server's words ("bounced: 550 5.1.1 user unknown") and suppresses the address; a delay changes nothing."""
    if not permanent:
        return NOTHING
    reason = f"bounced: {diagnostic}"[:500]
    live = tuple(live)
    blocked = _changed(live, (seq.block(e, reason) if e.status in seq.LIVE else e for e in live))
    return Effects(blocked, (Suppression(address.lower(), SUPPRESSES[Kind.BOUNCED]),))


def of_hand_stop(live: Iterable[seq.Enrollment], *, by: str | None, now: dt.datetime) -> Effects:
    """A user stops enrollments by hand: "stopped by anna", or "stopped by hand" when nobody is named."""
    reason = f"stopped by {by}" if by else "stopped by hand"
    live = tuple(live)
    return Effects(_changed(live, (seq.stop(e, reason, now) for e in live)))


def of_removed_sequence(live: Iterable[seq.Enrollment], now: dt.datetime) -> Effects:
    """A sequence removed from the rules stops its live enrollments."""
    live = tuple(live)
    return Effects(_changed(live, (seq.stop(e, SEQUENCE_REMOVED, now) for e in live)))


def same_steps(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether two versions of a sequence run the same steps in the same way: they differ in nothing but the name
    and `renamed_from` (a rename, or `renamed_from` taken out once every database has applied it)."""
    return model.same_but_naming(old, new)


def of_renamed_sequence(live: Iterable[seq.Enrollment], old_version: str, old: Mapping[str, Any], new_version: str,
                        new: Mapping[str, Any]) -> Effects:  # fmt: skip
    """A sequence renamed (its enrollments are already its own under the new name), or an edit of its
    `renamed_from` alone: when the version in force before and the new one run the same steps, the live
    enrollments on the former move to the latter and go on where they are. Otherwise nothing changes here: the
    edit is an edit, and `on_edit` says what the enrollments do."""
    if not same_steps(old, new):
        return NOTHING
    live = tuple(live)
    return Effects(_changed(live, (seq.evolve(e, version=new_version) if e.version == old_version and e.status in seq.LIVE
                                   else e for e in live)))  # fmt: skip


def of_failed_send(enrollment: seq.Enrollment | None, detail: str, *, reopen: bool = True) -> Effects:
    """Mail refused for good (or out of attempts) blocks its enrollment with the server's reply: a live one, and
    one that completed when its last step's mail was queued (the mail never arrived, so the sequence did not
    end well), unless `reopen` is False (the address is live in the sequence again: one live enrollment per
    address). A stopped enrollment stays stopped."""
    if enrollment is None:
        return NOTHING
    reason = f"undeliverable: {detail}"[:500]
    if enrollment.status in seq.LIVE:
        return Effects((seq.block(enrollment, reason),))
    if enrollment.status is seq.Status.COMPLETED and reopen:
        return Effects((seq.evolve(enrollment, status=seq.Status.BLOCKED, reason=reason, ended_at=None),))
    return NOTHING


def conversion_refusal(record_type: str) -> str | None:
    """Why a record cannot be converted (only leads become contacts); None when it can."""
    return None if record_type == "lead" else f"is a {record_type}; only leads are converted"
