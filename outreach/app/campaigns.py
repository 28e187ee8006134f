"""Bulk campaigns, run: the one home of everything a campaign does (docs/campaigns.md).

The engine decides (outreach/engine/campaigns.py); this module reads the store, asks it, and writes the answers.

- `apply_runs`: in `apply`'s transaction, each campaign's run follows its definition (new: scheduled; edited
  inside the freeze: stopped; removed: deleted), and no slot of module and send time holds more than
  `limits.campaigns_per_slot` scheduled campaigns (SlotFull, and nothing is applied).
- `Campaigns.run`, a phase of the scheduler's tick: a campaign due starts sending; its recipients are picked in
  batches (`PICK` at a time, each batch and the cursor after it written together: a restart resumes after the
  last batch, and nobody is picked twice); their mail is rendered into the outbox a window at a time (at most
  `RENDER_AHEAD` campaign messages wait there), so that a campaign of 100,000 takes seconds to pick and the
  outbox never holds it all; the dispatcher sends it with the sequences' mail. Follow-ups start when due.
- `fire` applies a trigger's actions (field updates, tasks, calls) when a recipient first opens or clicks (the web
  side, RuleTests) or the mail bounces (the IMAP poller).
- `overview`, `detail`, `stop`, `start`, `delete`, `statistics` and `recipients` serve `outreach campaigns`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from outreach import store as store_module
from outreach.app import sending
from outreach.engine import campaigns as engine
from outreach.engine import render
from outreach.engine import sequences as seq
from outreach.mail import dkim
from outreach.mail import links as mail_links
from outreach.mail import message as mail_message
from outreach.rules import model
from outreach.store import campaigning, changes, rows

log = logging.getLogger("outreach")

PICK = 2000  # candidates read and decided per transaction
RENDER_AHEAD = 500  # campaign messages rendered ahead of the relay
BATCH_SECONDS = 5.0  # a tick's campaign work yields after this long; the next tick goes on


class SlotFull(Exception):
    """More campaigns of one module scheduled for one send time than `limits.campaigns_per_slot` allows."""


class NotAllowed(Exception):
    """Only a campaign's owner may stop or start it."""


class NoSuchCampaign(LookupError):
    pass


class CampaignStore(Protocol):
    async def campaign_runs(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]: ...
    async def campaign_steps(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]: ...
    async def save_campaign_run(self, values: Mapping[str, Any]) -> None: ...
    async def start_campaign_run(self, campaign: str, now: dt.datetime) -> bool: ...
    async def start_campaign_step(self, campaign: str, step: int, now: dt.datetime) -> bool: ...
    def campaign_expansion(self, scope: campaigning.Scope, limit: int) -> Any: ...
    def campaign_rendering(self, steps: Sequence[tuple[str, int]], limit: int, now: dt.datetime) -> Any: ...
    async def campaign_backlog(self) -> int: ...
    async def campaign_queued_steps(self, steps: Sequence[tuple[str, int]]) -> set[tuple[str, int]]: ...
    async def set_campaign_status(self, campaign: str, values: Mapping[str, Any]) -> int: ...
    async def campaign_counts(self, campaign: str) -> dict[int, dict[str, Any]]: ...
    async def campaign_recipient_list(self, campaign: str, step: int, category: str,
                                      limit: int | None = None) -> list[dict[str, Any]]: ...  # fmt: skip
    async def daily_usage(self, since: dt.datetime) -> dict[str, tuple[int, dt.datetime]]: ...


def run_of(row: Mapping[str, Any]) -> engine.Run:
    return engine.Run(row["campaign"], row["hash"], row["module"], row["owner"], engine.RunStatus(row["status"]),
                      row["send_at"], row["started_at"], row["finished_at"], row["cursor"], row["reason"],
                      row["changed_at"])  # fmt: skip


def columns_of(run: engine.Run) -> dict[str, Any]:
    values = dataclasses.asdict(run)
    values["status"] = str(run.status)
    return values


# --- applying definitions --------------------------------------------------------------------------------


async def apply_runs(tx: changes.Changes, ruleset: model.RuleSet, digests: Mapping[str, str], now: dt.datetime,
                     removed: Sequence[str] = ()) -> list[str]:  # fmt: skip
    """Bring every campaign's run in line with the definitions applied (in `apply`'s transaction). Returns what
    changed of the runs, one line each (for the log). SlotFull when a slot would hold too many."""
    limits = ruleset.settings.limits
    before = {r["campaign"]: run_of(r) for r in await tx.campaign_runs()}
    said = []
    after = dict(before)
    for name, campaign in ruleset.campaigns.items():
        old = before.get(name)
        new = engine.applied(campaign, digests[name], old, now, limits)
        if new != old:
            after[name] = new
            await tx.save_campaign_run(columns_of(new))
            past = campaign.send_at if campaign.send_at is not None and campaign.send_at < now else None
            if past is not None and new.status is engine.RunStatus.SCHEDULED and (old is None or old.hash != new.hash):
                said.append(f"campaign {name}: send_at {past.isoformat()} is in the past: it goes out at once")
            if new.status is engine.RunStatus.STOPPED and (old is None or old.status is not engine.RunStatus.STOPPED):
                said.append(f"campaign {name} stopped: {new.reason}")
    for name in removed:
        old = before.get(name)
        if old is not None and old.status is not engine.RunStatus.DELETED:
            gone = dataclasses.replace(old, status=engine.RunStatus.DELETED, reason="removed from the rules",
                                       changed_at=now)  # fmt: skip
            after[name] = gone
            await tx.save_campaign_run(columns_of(gone))
    full = engine.overfull_slots(list(after.values()), limits.campaigns_per_slot)
    if full:
        raise SlotFull(engine.slots_said(full, limits))
    return said


# --- running -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Report:
    picked: int = 0  # recipients who will get a mail
    skipped: int = 0
    rendered: int = 0  # mail put in the outbox
    held: int = 0  # recipients whose mail waits (a send window, a daily limit)


class Campaigns:
    """The campaigns phase of a tick, for one rule set."""

    def __init__(self, store: CampaignStore, ruleset: model.RuleSet, *, links: mail_links.Links | None = None,
                 signer: dkim.Signer | None = None) -> None:  # fmt: skip
        self.store = store
        self.ruleset = ruleset
        self.links = links
        self.signer = signer

    async def run(self, now: dt.datetime, stop: Callable[[], bool] | None = None) -> Report:
        """Start what is due, pick recipients, render mail ahead of the relay. Cheap when nothing is to do."""
        report = Report()
        if not self.ruleset.campaigns:
            return report
        started = time.monotonic()
        runs = {r["campaign"]: run_of(r) for r in await self.store.campaign_runs(list(self.ruleset.campaigns))}
        steps = {(s["campaign"], s["step"]): s for s in await self.store.campaign_steps(list(runs))}
        rendering: list[tuple[str, int]] = []
        for name, run in runs.items():
            campaign = self.ruleset.campaigns.get(name)
            if campaign is None:
                continue
            try:
                await self._advance(campaign, run, steps, now, report, started, stop, rendering)
            except store_module.DatabaseError:
                raise  # the daemon logs it and tries again next tick
            except Exception:  # one broken campaign must not stop the others, the sequences, nor the daemon
                log.exception("campaign %s failed", name)
        if rendering:  # of the steps that may render, those with mail left to render: one query, not one a step
            queued = await self.store.campaign_queued_steps(rendering)
            rendering = [step for step in rendering if step in queued]
        if rendering:
            await self._render(rendering, now, report)
        return report

    async def _advance(self, campaign: model.Campaign, run: engine.Run, steps: Mapping[tuple[str, int], Any],
                       now: dt.datetime, report: Report, started: float, stop: Callable[[], bool] | None,
                       rendering: list[tuple[str, int]]) -> None:  # fmt: skip
        """One campaign's work of a tick: start it when due, pick, start its follow-ups when due."""
        name = campaign.name
        if run.status is engine.RunStatus.SCHEDULED and run.send_at <= now:
            if not await self.store.start_campaign_run(name, now):
                return
            run = dataclasses.replace(run, status=engine.RunStatus.SENDING, started_at=now, reason=None)
            log.info("campaign %s: sending", name)
        if run.status is engine.RunStatus.SENDING:
            await self._pick(campaign, 0, now, report, started, stop)
        if run.status in (engine.RunStatus.SENDING, engine.RunStatus.SENT):
            rendering.append((name, 0))
        if run.status is engine.RunStatus.SENDING:  # picking may just have finished it
            found = await self.store.campaign_runs([name])
            run = run_of(found[0]) if found else run
        if run.status is not engine.RunStatus.SENT or run.started_at is None:
            return
        for i, follow_up in enumerate(campaign.follow_ups, start=1):
            kept = steps.get((name, i))
            if kept is None:
                if engine.follow_up_due(follow_up, run.started_at) > now:
                    continue
                if not await self.store.start_campaign_step(name, i, now):
                    continue
                log.info("campaign %s: follow-up %d sending", name, i)
                kept = {"status": "sending"}
            if kept["status"] == "sending":
                await self._pick(campaign, i, now, report, started, stop)
            rendering.append((name, i))

    async def _pick(self, campaign: model.Campaign, step: int, now: dt.datetime, report: Report, started: float,
                    stop: Callable[[], bool] | None) -> None:  # fmt: skip
        """Pick a step's recipients, a batch per transaction, until done or the tick's time is up."""
        scope = self._scope(campaign, step, now)
        while True:
            async with self.store.campaign_expansion(scope, PICK) as x:
                if x is None:
                    return  # picked meanwhile to the end (another daemon), stopped or deleted
                seen = set(x.mailed_before)
                skip, candidate_of, add = engine.skip, engine.Candidate, x.add  # 100,000 times a campaign
                picked = 0
                for c in x.candidates:
                    candidate = candidate_of(c.record_id, c.email, c.deleted, c.suppressed, c.excepted, c.bounced)
                    why = skip(candidate, seen)
                    if why is None:
                        add(c.record_id, c.email, "queued", None)
                        picked += 1
                    else:
                        add(c.record_id, c.email, "skipped", engine.skip_reason(why, candidate))
                report.picked += picked
                report.skipped += len(x.candidates) - picked
                done = not x.more
                await x.flush(x.after, finished_at=now if done else None)
            if done:
                await self._picked(campaign, step)
                return
            if time.monotonic() - started > BATCH_SECONDS or (stop is not None and stop()):
                return

    async def _picked(self, campaign: model.Campaign, step: int) -> None:
        """A step's recipients are all picked: the log says how many get the mail and how many were skipped. A
        campaign mail that goes to nobody (its recipients matched no record, or each one was skipped) says so as a
        warning, and in its run's reason for `outreach campaigns`: it is sent, with nothing sent."""
        counts = _counts((await self.store.campaign_counts(campaign.name)).get(step))
        skipped = sum(counts.skipped.values())
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(counts.skipped.items()))
        what = "the campaign mail" if step == 0 else f"follow-up {step}"
        if counts.recipients or step != 0:
            log.info("campaign %s: %s goes to %d recipient%s%s", campaign.name, what, counts.recipients,
                     "" if counts.recipients == 1 else "s", f" ({skipped} skipped: {reasons})" if skipped else "")  # fmt: skip
            return
        matched = "the one record" if skipped == 1 else f"all {skipped} records"
        why = (f"{matched} it matched {'was' if skipped == 1 else 'were'} skipped ({reasons})" if skipped
               else f"no {campaign.module} record matched its recipients")  # fmt: skip
        log.warning("campaign %s: sent to nobody: %s", campaign.name, why)
        await self.store.set_campaign_status(campaign.name, {"reason": f"sent to nobody: {why}"})

    def _scope(self, campaign: model.Campaign, step: int, now: dt.datetime) -> campaigning.Scope:
        if step == 0:
            where = campaign.to.where
            if campaign.to.view is not None:
                view = self.ruleset.views.get(campaign.to.view)
                if view is None:  # validate refuses this; never read it as "no criteria", which is everyone
                    raise LookupError(f"the view {campaign.to.view!r} of campaign {campaign.name} does not exist")
                where = view.where
            return campaigning.Scope(campaign.name, 0, campaign.module, now, where, campaign.to.records)
        f = campaign.follow_ups[step - 1]
        return campaigning.Scope(campaign.name, step, campaign.module, now, opened_only=f.to == "opened",
                                 except_=f.except_)  # fmt: skip

    async def _render(self, steps: Sequence[tuple[str, int]], now: dt.datetime, report: Report) -> None:
        """Render queued mail into the outbox until RENDER_AHEAD messages wait there. Mail that must wait is marked
        so (held_until) and passed over, so the recipients behind it go in the same tick."""
        room = RENDER_AHEAD - await self.store.campaign_backlog()
        settings = self.ruleset.settings
        limited = any(u.daily_limit is not None for u in settings.users.values())
        usage = await self.store.daily_usage(now - seq.DAY) if limited and room > 0 else {}
        began = time.monotonic()
        while room > 0:
            async with self.store.campaign_rendering(steps, room, now) as batch:
                for q in batch.queued:
                    campaign = self.ruleset.campaigns[q.campaign]
                    try:
                        outcome = self._one(batch, campaign, q, now, usage)
                    except Exception as exc:  # one bad recipient must not stop the campaign
                        log.exception("campaign %s: the mail to record %s failed", q.campaign, q.record.id)
                        outcome = Refused(f"internal error: {type(exc).__name__}: {exc}")
                    if outcome is None:
                        report.rendered += 1
                        room -= 1
                    elif isinstance(outcome, Held):
                        batch.hold(q.id, outcome.reason, outcome.until)
                        report.held += 1
                    else:
                        log.warning("campaign %s: no mail to record %s: %s", q.campaign, q.record.id, outcome.reason)
                        batch.refuse(q.id, f"{engine.CANNOT_SEND}: {outcome.reason}")
                        report.skipped += 1
                await batch.flush()
            if not batch.queued or time.monotonic() - began > BATCH_SECONDS:
                return

    def _one(self, batch: campaigning.Rendering, campaign: model.Campaign, q: campaigning.Queued,
             now: dt.datetime, usage: dict[str, tuple[int, dt.datetime]]) -> Held | Refused | None:  # fmt: skip
        """Render one recipient's mail into the outbox (None); or say why it waits (Held: a send window, the
        sender's daily limit), or why it cannot be made at all (Refused: no sender, a template that does not
        render; the recipient is skipped with the reason, as `campaigns show` counts it)."""
        settings = self.ruleset.settings
        record = q.record
        who = engine.sender_of(campaign, record.owner, settings)
        if isinstance(who, str):
            return Refused(who)
        opens = engine.window_opens(campaign, record.timezone, settings, now)
        if opens > now:
            return Held(f"waits for the send window of calendar {campaign.calendar} ({opens.isoformat()})", opens)
        sender = who.sender
        used, oldest = usage.get(sender.email, (0, now))
        why = engine.over_daily_limit(sender, used)
        if why is not None:
            return Held(why, oldest + seq.DAY)
        template = self.ruleset.templates.get(engine.step_template(campaign, q.step))
        if template is None:
            return Refused(f"template {engine.step_template(campaign, q.step)!r} no longer exists")
        key = mail_links.new_key() if self.links is not None else None
        url = self.links.unsubscribe(key) if self.links is not None and key is not None else None
        owner = settings.users.get(record.owner) if record.owner else None
        user = sender if isinstance(sender, model.User) else None
        merge = render.context(record.as_dict(), sender=user, owner=owner, organization=settings.organization,
                               unsubscribe_url=url)  # fmt: skip
        try:
            rendered = render.render(template, merge, settings.limits)
            data, message_id, urls = sending.compose(
                rendered, sender=(sender.name, sender.email), to=str(record.email), now=now, links_=self.links,
                key=key, unsubscribe_url=url, list_unsubscribe=campaign.unsubscribe_language is not None,
                signer=self.signer, reply_to=who.reply_to.email if who.reply_to is not None else None,
                headers={"X-Outreach-Campaign": campaign.name, "X-Outreach-Step": str(q.step)},
            )  # fmt: skip
        except (render.RenderError, mail_message.HeaderError) as exc:
            return Refused(str(getattr(exc, "reason", exc)))
        usage[sender.email] = (used + 1, oldest)  # counted once the mail is made
        batch.enqueue(q.id, {
            "enrollment_id": None, "campaign": campaign.name, "record_id": record.id, "template": template.name,
            "step_id": str(q.step), "sender": sender.email, "recipient": str(record.email),
            "subject": rendered.subject, "message_id": message_id, "message": data, "state": "queued", "attempts": 0,
            "created_at": now, "link_key": key.hex() if key is not None else None,
            "link_urls": list(urls) if urls else None, "language": campaign.unsubscribe_language,
        })  # fmt: skip
        return None


@dataclasses.dataclass(frozen=True)
class Held:
    """A recipient's mail waits until `until`, and why."""

    reason: str
    until: dt.datetime


@dataclasses.dataclass(frozen=True)
class Refused:
    """A recipient's mail cannot be made, and why."""

    reason: str


# --- trigger actions ------------------------------------------------------------------------------------


async def fire(tx: changes.Changes, ruleset: model.RuleSet | None, campaign_name: str, step: int, record_id: str,
               triggers: Sequence[str], now: dt.datetime, source: str) -> int:  # fmt: skip
    """A recipient's first open, click or bounce of a campaign mail: its trigger's actions, in the event's
    transaction, each with an event on the record's activity. Returns how many actions ran. Without the rule set
    (or once the campaign left it) the hit is kept and nothing fires."""
    campaign = ruleset.campaigns.get(campaign_name) if ruleset is not None else None
    if campaign is None or step > len(campaign.follow_ups):
        return 0
    record = await tx.record(record_id)
    if record is None:
        return 0
    # A trigger that fails (a value the database refuses, a bug) must not lose the open, click or bounce itself:
    # its writes are undone alone, and the failure is logged. (Had the connection gone, the commit fails too.)
    try:
        async with tx.savepoint():
            return await _run_actions(tx, ruleset, campaign, step, record, triggers, now, source)
    except Exception:
        log.exception("campaign %s: the %s trigger of record %s failed", campaign_name, "/".join(triggers), record_id)
        return 0


async def _run_actions(tx: changes.Changes, ruleset: model.RuleSet | None, campaign: model.Campaign, step: int,
                       record: rows.Record, triggers: Sequence[str], now: dt.datetime, source: str) -> int:  # fmt: skip
    record_id, campaign_name = record.id, campaign.name
    done = 0
    for trigger in triggers:
        for action in engine.actions(campaign, step, engine.Trigger(trigger), record.owner, now,
                                     ruleset.settings if ruleset is not None else None, record.timezone):  # fmt: skip
            data: dict[str, Any] = {"campaign": campaign_name, "step": step, "trigger": trigger}
            if isinstance(action, engine.UpdateField):
                await tx.set_fields(record_id, {action.field: action.value}, now)
                data |= {"action": "update", "field": action.field, "value": rows_jsonable(action.value)}
            else:
                task_id = await tx.add_task({
                    "record_id": record_id, "subject": action.subject, "type": action.type,
                    "priority": action.priority, "status": action.status if action.type == "todo" else None,
                    "owner": action.owner, "due_at": action.due_at, "created_at": now,
                })  # fmt: skip
                data |= {"action": "call" if action.type == "call" else "task", "task": task_id,
                         "subject": action.subject, "owner": action.owner,
                         "due_at": action.due_at.isoformat() if action.due_at else None}  # fmt: skip
            await tx.event(record_id, "campaign_action", now, data, source)
            done += 1
    return done



def rows_jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value


# --- managing ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StepView:
    """A step of a campaign as `campaigns show` tells it: the campaign mail (0) or a follow-up."""

    step: int
    template: str
    to: str  # everyone (the campaign mail), received or opened
    due_at: dt.datetime | None  # None: the campaign mail before it went, or a follow-up of a run not sent yet
    status: str  # waiting | sending | sent | deleted | stopped
    stats: engine.Stats


@dataclasses.dataclass(frozen=True)
class CampaignView:
    name: str
    module: str
    owner: str
    status: str  # scheduled | sending | sent | stopped | deleted | not applied
    send_at: dt.datetime | None
    started_at: dt.datetime | None
    reason: str | None
    steps: tuple[StepView, ...]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _counts(c: Mapping[str, Any] | None) -> engine.Counts:
    if c is None:
        return engine.Counts()
    states = c["states"]
    return engine.Counts(
        recipients=c["queued"] + sum(states.values()), skipped=c["skipped"],
        pending=c["queued"] + sum(states.get(s, 0) for s in ("queued", "sending", "deferred")),
        sent=states.get("sent", 0) + states.get("bounced", 0), failed=states.get("failed", 0),
        unknown=states.get("unknown", 0), bounced=c["bounced"], opened=c["opened"],
        automated_opens=c["automated_opens"], clicked=c["clicked"],
    )  # fmt: skip


async def detail(store: CampaignStore, ruleset: model.RuleSet, name: str) -> CampaignView:
    """One campaign: its run, and each step's times and statistics. NoSuchCampaign when neither the rules nor
    the store know it."""
    campaign = ruleset.campaigns.get(name)
    found = await store.campaign_runs([name])
    if campaign is None and not found:
        raise NoSuchCampaign(f"no campaign {name!r}")
    run = run_of(found[0]) if found else None
    counts = await store.campaign_counts(name) if run is not None else {}
    kept = {s["step"]: s for s in await store.campaign_steps([name])} if run is not None else {}
    steps = []
    main_status = str(run.status) if run is not None else "not applied"
    template = campaign.template if campaign is not None else "?"
    steps.append(StepView(0, template, "everyone", run.started_at or run.send_at if run else None, main_status,
                          engine.stats(0, template, _counts(counts.get(0)))))  # fmt: skip
    for i, f in enumerate(campaign.follow_ups if campaign is not None else (), start=1):
        due = engine.follow_up_due(f, run.started_at) if run is not None and run.started_at is not None else None
        status = kept[i]["status"] if i in kept else "waiting"
        if run is not None and run.status in (engine.RunStatus.STOPPED, engine.RunStatus.DELETED) and i not in kept:
            status = str(run.status)
        steps.append(StepView(i, f.template, f.to, due, status, engine.stats(i, f.template, _counts(counts.get(i)))))
    return CampaignView(name, run.module if run else campaign.module if campaign else "?",
                        run.owner if run else campaign.owner if campaign else "?", main_status,
                        run.send_at if run else None, run.started_at if run else None,
                        run.reason if run else None, tuple(steps))  # fmt: skip


async def overview(store: CampaignStore, ruleset: model.RuleSet) -> list[CampaignView]:
    """Every campaign the rules or the store know, with its counts."""
    names = sorted({*ruleset.campaigns, *(r["campaign"] for r in await store.campaign_runs())})
    return [await detail(store, ruleset, n) for n in names]


async def runs(store: CampaignStore) -> dict[str, engine.Run]:
    """Every campaign's run the store keeps, by name (`outreach plan` asks the engine what applying does to them)."""
    return {r["campaign"]: run_of(r) for r in await store.campaign_runs()}


async def _run(store: CampaignStore, name: str) -> engine.Run:
    found = await store.campaign_runs([name])
    if not found:
        raise NoSuchCampaign(f"no campaign {name!r} has been applied (`outreach apply` first)")
    return run_of(found[0])


async def stop(store: CampaignStore, name: str, *, user: str, now: dt.datetime) -> tuple[engine.Run, int]:
    """The owner stops a scheduled or sending campaign (and its follow-ups); mail already handed to the relay
    stays sent. Returns the run and how many rendered messages were taken back from the outbox."""
    run = await _run(store, name)
    if user != run.owner:
        raise NotAllowed(f"only its owner {run.owner!r} may stop campaign {name}; {user!r} may view or delete it")
    if run.status in (engine.RunStatus.STOPPED, engine.RunStatus.DELETED):
        return run, 0
    stopped = dataclasses.replace(run, status=engine.RunStatus.STOPPED, reason=f"stopped by {user}", changed_at=now)
    taken = await store.set_campaign_status(name, {"status": "stopped", "reason": stopped.reason, "changed_at": now})
    return stopped, taken


async def start(store: CampaignStore, name: str, *, user: str, now: dt.datetime,
                limits: model.Limits | None = None) -> engine.Run:  # fmt: skip
    """The owner starts a stopped campaign again: it goes at its send time, or at once when that has passed;
    one whose campaign mail had started goes on where it stopped. With the rule set's `limits`, SlotFull when it
    would be one campaign too many of its module at its send time (`limits.campaigns_per_slot`), as apply says."""
    run = await _run(store, name)
    if user != run.owner:
        raise NotAllowed(f"only its owner {run.owner!r} may start campaign {name}")
    if run.status is not engine.RunStatus.STOPPED:
        return run
    if run.finished_at is not None:
        status = engine.RunStatus.SENT
    elif run.started_at is not None:
        status = engine.RunStatus.SENDING
    else:
        status = engine.RunStatus.SCHEDULED
    started = dataclasses.replace(run, status=status, reason=None, changed_at=now,
                                  send_at=max(run.send_at, now) if status is engine.RunStatus.SCHEDULED else run.send_at)  # fmt: skip
    if limits is not None and status is engine.RunStatus.SCHEDULED:
        others = [run_of(r) for r in await store.campaign_runs() if r["campaign"] != name]
        full = engine.overfull_slots([*others, started], limits.campaigns_per_slot)
        if any(name in names for names in full.values()):
            raise SlotFull(engine.slots_said(full, limits))
    await store.set_campaign_status(name, {"status": str(status), "reason": None, "changed_at": now,
                                           "send_at": started.send_at})  # fmt: skip
    return started


async def delete(store: CampaignStore, name: str, *, user: str, now: dt.datetime) -> tuple[engine.Run, int]:
    """Anyone deletes a campaign: it and its follow-ups send nothing more; what was sent stays in the statistics.
    The rules keep it deleted (apply does not bring it back): give it a new name to send it again."""
    run = await _run(store, name)
    gone = dataclasses.replace(run, status=engine.RunStatus.DELETED, reason=f"deleted by {user}", changed_at=now)
    taken = await store.set_campaign_status(name, {"status": "deleted", "reason": gone.reason, "changed_at": now})
    return gone, taken


CATEGORIES = ("recipients", "skipped", "pending", "sent", "delivered", "not_delivered", "bounced", "opened",
              "clicked", "unclicked", "unknown")  # fmt: skip


async def recipients(store: CampaignStore, name: str, step: int, category: str,
                     limit: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Who of a step is in a category of its statistics."""
    await _run(store, name)
    return await store.campaign_recipient_list(name, step, category, limit)
