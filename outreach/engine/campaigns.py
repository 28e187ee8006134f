"""Bulk campaigns, decided: what an applied definition does to a campaign's run, who of its candidates gets the
mail and who is skipped (and why), who sends it, when a follow-up is due, what a trigger does, and the statistics.

Pure: the application layer (outreach/app/campaigns.py) reads the store, asks here, and writes the answers. A
campaign's life (docs/campaigns.md): `scheduled` until its send time, `sending` while its recipients are picked and
its mail rendered into the outbox, `sent` once every recipient of the campaign mail is mailed or skipped; `stopped`
by its owner, or by an edit closer than `limits.campaign_freeze` to its send time; `deleted` by anyone. Its
follow-ups (steps 1 to 3; the campaign mail is step 0) each wait for their own time, then go the same way.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
from collections.abc import Mapping, Sequence
from typing import Any

from outreach import calendar
from outreach.rules import model, timing

MAIN = 0  # the step of the campaign mail; follow-ups are 1, 2, 3


class RunStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    STOPPED = "stopped"
    DELETED = "deleted"


LIVE = (RunStatus.SCHEDULED, RunStatus.SENDING)  # a run whose mail is still to go


@dataclasses.dataclass(frozen=True)
class Run:
    """A campaign's run as the store keeps it (campaign_runs)."""

    campaign: str
    hash: str
    module: str
    owner: str
    status: RunStatus
    send_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    cursor: str | None = None
    reason: str | None = None
    changed_at: dt.datetime | None = None


def send_time(campaign: model.Campaign, applied_at: dt.datetime) -> dt.datetime:
    """When the campaign mail goes: its `send_at`, or at once when it has none (or one already past: validate
    warns of that, and `validate --strict` refuses it)."""
    if campaign.send_at is None or campaign.send_at < applied_at:
        return applied_at
    return campaign.send_at


def applied(campaign: model.Campaign, digest: str, run: Run | None, now: dt.datetime, limits: model.Limits) -> Run:
    """A campaign's run once its definition (`digest`) is applied at `now`.

    New: scheduled at its send time. Unchanged: as it was. Changed while scheduled: rescheduled, unless the change
    comes less than `limits.campaign_freeze` before the time it was scheduled for, which stops it (its owner
    starts it again: `outreach campaigns start`). Changed once sending or sent: the mail already rendered stays as
    it is; the rest, and follow-ups not sent yet, use the new definition. Stopped or deleted: it stays so."""
    if run is None:
        return Run(campaign.name, digest, campaign.module, campaign.owner, RunStatus.SCHEDULED,
                   send_time(campaign, now), changed_at=now)  # fmt: skip
    if run.hash == digest:
        return run
    changed = dataclasses.replace(run, hash=digest, owner=campaign.owner, module=campaign.module, changed_at=now)
    if run.status is RunStatus.SCHEDULED:
        freeze = limits.campaign_freeze.as_timedelta()
        if now <= run.send_at < now + freeze:
            return dataclasses.replace(changed, status=RunStatus.STOPPED, reason=frozen_reason(run, now, limits))
        return dataclasses.replace(changed, send_at=send_time(campaign, now))
    if run.status is RunStatus.STOPPED and run.started_at is None:
        return dataclasses.replace(changed, send_at=send_time(campaign, now))
    return changed


def frozen_reason(run: Run, now: dt.datetime, limits: model.Limits) -> str:
    minutes = max(int((run.send_at - now).total_seconds() // 60), 0)
    return (f"its definition changed {minutes} min before its send time {run.send_at.isoformat()}, inside "
            f"limits.campaign_freeze ({limits.campaign_freeze}): start it again to send it")  # fmt: skip


def would_stop(campaign: model.Campaign, digest: str, run: Run | None, now: dt.datetime,
               limits: model.Limits) -> str | None:  # fmt: skip
    """Why applying this definition now would stop the campaign (for `outreach plan`); None when it would not."""
    after = applied(campaign, digest, run, now, limits)
    if run is not None and run.status is not RunStatus.STOPPED and after.status is RunStatus.STOPPED:
        return after.reason
    return None


def slot_key(module: str, send_at: dt.datetime) -> tuple[str, dt.datetime]:
    """The slot a scheduled campaign takes: its module and its send time to the minute."""
    return module, send_at.astimezone(dt.UTC).replace(second=0, microsecond=0)


def overfull_slots(runs: Sequence[Run], limit: int) -> dict[tuple[str, dt.datetime], list[str]]:
    """The slots holding more than `limit` scheduled campaigns, with their names (`limits.campaigns_per_slot`)."""
    slots: dict[tuple[str, dt.datetime], list[str]] = {}
    for run in runs:
        if run.status is RunStatus.SCHEDULED:
            slots.setdefault(slot_key(run.module, run.send_at), []).append(run.campaign)
    return {k: sorted(v) for k, v in slots.items() if len(v) > limit}


def slots_said(full: Mapping[tuple[str, dt.datetime], Sequence[str]], limits: model.Limits) -> str:
    """The overfull slots, a line each: why apply (or a start) is refused, and what `outreach plan` says of it."""
    return "\n".join(f"{len(names)} {module} campaigns are scheduled for {at.isoformat()} ({', '.join(names)}); "
                     f"limits.campaigns_per_slot allows {limits.campaigns_per_slot}"
                     for (module, at), names in sorted(full.items()))  # fmt: skip


# --- who gets it ------------------------------------------------------------------------------------


class Skip(enum.StrEnum):
    """Why a candidate gets no mail; `campaigns show` counts them by these."""

    NO_EMAIL = "no valid email"
    SUPPRESSED = "suppressed"
    DELETED = "deleted"
    DUPLICATE = "same address twice"
    EXCEPTED = "excepted"  # a follow-up's `except` criteria matched when it was due
    BOUNCED = "bounced"  # a follow-up: the campaign mail bounced
    NOT_OPENED = "not opened"  # a follow-up to those who opened


CANNOT_SEND = "cannot be sent"  # the skip of a recipient whose mail could not be made (no sender, a template error)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A record a step may mail, as the store found it."""

    record_id: str
    email: str | None
    deleted: bool
    suppressed: str | None  # the suppression's reason (unsubscribed, bounced, complaint, manual); None: none
    excepted: bool = False  # a follow-up's `except` criteria match it now
    bounced: bool = False  # a follow-up: the campaign mail to it bounced


_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f]")  # \s is str.isspace, one pass in C (a campaign asks 100,000 times)


def valid_email(email: str | None) -> bool:
    """An address mail can go to: one @, a local part, a dotted domain, no spaces or control characters."""
    if not email or len(email) > 320 or _SPACE_OR_CONTROL.search(email):
        return False
    local, at, domain = email.rpartition("@")
    return bool(at and local and "." in domain.strip(".") and "@" not in domain)


def skip(c: Candidate, seen: set[str]) -> Skip | None:
    """Whether a candidate is skipped, and why; `seen` holds the addresses (lower case) this step has already
    mailed, and gets this one's when it is not skipped, so the same address is mailed once."""
    if c.deleted:
        return Skip.DELETED
    if not valid_email(c.email):
        return Skip.NO_EMAIL
    assert c.email is not None
    if c.suppressed is not None:
        return Skip.SUPPRESSED
    if c.bounced:
        return Skip.BOUNCED
    if c.excepted:
        return Skip.EXCEPTED
    address = c.email.lower()
    if address in seen:
        return Skip.DUPLICATE
    seen.add(address)
    return None


def skip_reason(why: Skip, c: Candidate) -> str:
    """The reason kept with a skipped recipient: the kind, and for a suppression its own reason."""
    return f"{why}: {c.suppressed}" if why is Skip.SUPPRESSED and c.suppressed else str(why)


# --- who sends it ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sender:
    """Who the mail is from and where replies go."""

    sender: model.User | model.Organization
    reply_to: model.User | model.Organization | None  # None: to the sender


def _party(kind: str, campaign: model.Campaign, record_owner: str | None,
           settings: model.Settings) -> model.User | model.Organization | str:  # fmt: skip
    if kind == "organization":
        return settings.organization or "the campaign sends as the organization and Settings has none"
    user_id = campaign.owner if kind == "owner" else record_owner
    if user_id is None:
        return "the campaign sends as the record owner and the record has no owner"
    user = settings.users.get(user_id)
    return user if user is not None else f"the sender {user_id!r} is not a user in Settings.users"


def sender_of(campaign: model.Campaign, record_owner: str | None, settings: model.Settings) -> Sender | str:
    """Who the campaign's mail to a record is from (`from`) and where its replies go (`reply_to`), or why it
    cannot go."""
    sender = _party(campaign.from_, campaign, record_owner, settings)
    if isinstance(sender, str):
        return sender
    if campaign.reply_to == "from":
        return Sender(sender, None)
    reply_to = _party(campaign.reply_to, campaign, record_owner, settings)
    if isinstance(reply_to, str):
        return reply_to
    return Sender(sender, None if reply_to.email == sender.email else reply_to)


def window_opens(campaign: model.Campaign, record_timezone: str | None, settings: model.Settings,
                 now: dt.datetime) -> dt.datetime:  # fmt: skip
    """When the campaign's mail to a record may go: now without a calendar; else at the next send time of the
    calendar's working days and window, on the record's clock."""
    if campaign.calendar is None:
        return now
    cal = settings.calendar(campaign.calendar)
    return calendar.next_send_time(now, cal, calendar.zone_for(record_timezone, cal, settings.timezone))


def over_daily_limit(sender: model.User | model.Organization, used: int) -> str | None:
    """Why a sender's mail waits: it sent its Settings.users daily_limit in the last 24 hours; None: it may go."""
    limit = sender.daily_limit if isinstance(sender, model.User) else None
    if limit is not None and used >= limit:
        return f"waits: {sender.email} sent its daily limit of {limit} in the last 24 hours"
    return None


def step_template(campaign: model.Campaign, step: int) -> str:
    return campaign.template if step == MAIN else campaign.follow_ups[step - 1].template


def step_triggers(campaign: model.Campaign, step: int) -> model.Triggers:
    return campaign.triggers if step == MAIN else campaign.follow_ups[step - 1].triggers


# --- follow-ups -----------------------------------------------------------------------------------


def follow_up_due(follow_up: model.FollowUp, main_sent_at: dt.datetime) -> dt.datetime:
    """When a follow-up goes: N days (or the duration given) after the campaign mail started going, or at its
    date. A follow-up dated before the campaign mail went goes at once after it."""
    if follow_up.at is not None:
        return max(follow_up.at, main_sent_at)
    assert follow_up.after is not None  # the schema asks for one of them
    return main_sent_at + follow_up.after.as_timedelta()


# --- trigger actions -------------------------------------------------------------------------------


class Trigger(enum.StrEnum):
    OPENED = "opened"
    CLICKED = "clicked"
    BOUNCED = "bounced"


@dataclasses.dataclass(frozen=True)
class UpdateField:
    field: str
    value: Any


@dataclasses.dataclass(frozen=True)
class AddTask:
    subject: str
    type: str  # todo | call
    due_at: dt.datetime | None
    owner: str | None
    priority: str = "normal"
    status: str = "not started"


Action = UpdateField | AddTask


def _who(who: model.Who, campaign: model.Campaign, record_owner: str | None) -> str | None:
    if who.kind == "campaign_owner":
        return campaign.owner
    if who.kind == "record_owner":
        return record_owner or campaign.owner  # a record without owner: the campaign's owner follows it up
    return who.user


def later(now: dt.datetime, wait: timing.Duration, campaign: model.Campaign, settings: model.Settings | None,
          record_timezone: str | None) -> dt.datetime:  # fmt: skip
    """`wait` after `now`: business days counted on the campaign's calendar (the default one without) in the
    record's zone, and landing in its send window, as a sequence task's `due_within` does."""
    if not wait.is_business:
        return now + wait.as_timedelta()
    cal = settings.calendar(campaign.calendar or "default") if settings is not None else model.DEFAULT_CALENDAR
    zone = calendar.zone_for(record_timezone, cal, settings.timezone if settings is not None else "UTC")
    return calendar.add_wait(now, wait, cal, zone)


def actions(campaign: model.Campaign, step: int, trigger: Trigger, record_owner: str | None,
            now: dt.datetime, settings: model.Settings | None = None,
            record_timezone: str | None = None) -> tuple[Action, ...]:  # fmt: skip
    """What a trigger does for one recipient (once: the application layer fires a trigger at its first
    occurrence for a recipient and step). Automated opens and clicks fire nothing; the caller does not ask."""
    triggers = step_triggers(campaign, step)
    out: list[Action] = []
    for a in getattr(triggers, str(trigger)):
        if isinstance(a, model.FieldUpdate):
            out.append(UpdateField(a.field, a.value))
        elif isinstance(a, model.TaskAction):
            due = later(now, a.due, campaign, settings, record_timezone) if a.due is not None else None
            out.append(AddTask(a.subject, "todo", due, _who(a.assign_to, campaign, record_owner), a.priority,
                               a.status))  # fmt: skip
        else:
            at = later(now, a.at, campaign, settings, record_timezone) if a.at is not None else now
            out.append(AddTask(a.subject, "call", at, _who(a.owner, campaign, record_owner)))
    return tuple(out)


# --- statistics ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Counts:
    """What the store counted of one step's recipients."""

    recipients: int = 0  # mailed or to be mailed (not skipped)
    skipped: Mapping[str, int] = dataclasses.field(default_factory=dict)
    pending: int = 0  # queued or rendered, not answered yet
    sent: int = 0  # accepted by the relay (including those that bounced later)
    failed: int = 0  # refused by the relay (5xx, or retries used up)
    unknown: int = 0  # handed over, the answer lost (never retried)
    bounced: int = 0  # a bounce came back
    opened: int = 0  # by a person
    automated_opens: int = 0  # recipients whose only opens looked automated (scanners, prefetch)
    clicked: int = 0


@dataclasses.dataclass(frozen=True)
class Stats:
    step: int
    template: str
    recipients: int
    skipped: Mapping[str, int]
    pending: int
    sent: int
    delivered: int
    not_delivered: int
    bounced: int
    opened: int
    automated_opens: int
    clicked: int
    unclicked: int
    unknown: int
    rates: Mapping[str, float]  # share of `sent` (delivered, not delivered, bounced) or `delivered` (the rest)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def stats(step: int, template: str, c: Counts) -> Stats:
    """A step's statistics. Delivered: accepted and not bounced. Not delivered: refused by the relay, or bounced.
    Opened counts people only; `automated_opens` says how many recipients were left out because every open of
    theirs looked automated. Unclicked: delivered, not clicked. Rates are shares of what was sent (delivery) or
    delivered (engagement)."""
    delivered = max(c.sent - c.bounced, 0)
    not_delivered = c.failed + c.bounced
    attempted = c.sent + c.failed

    def share(n: int, of: int) -> float:
        return round(n / of, 4) if of else 0.0

    rates = {
        "delivered": share(delivered, attempted), "not_delivered": share(not_delivered, attempted),
        "bounced": share(c.bounced, attempted), "opened": share(c.opened, delivered),
        "clicked": share(c.clicked, delivered), "unclicked": share(delivered - c.clicked, delivered),
    }  # fmt: skip
    return Stats(step, template, c.recipients, dict(c.skipped), c.pending, c.sent, delivered, not_delivered,
                 c.bounced, c.opened, c.automated_opens, c.clicked, max(delivered - c.clicked, 0), c.unknown,
                 rates)  # fmt: skip
