"""`outreach simulate SEQUENCE`: one record enrolled in a sequence, run as a RuleTest, told as a timeline;
`outreach simulate --campaign NAME`: a campaign sent to a sample of its recipients, the same way.

The record (a file, a JSON string or a sample) and the events (a file holding a list) are checked as the
`records` and `events` of a RuleTest would be, by the rule set's own validator, and each problem is reported in
the file it is in, with its line and column. The run is the RuleTest runner's (`ruletests.trace`): the real
scheduler and an SQLite store in memory on a virtual clock, with an `enroll` at --start before the events.

A campaign's recipients are a file of records (`--records`), or the first records of the database that the
campaign would pick now (`audience`: only read, with their suppressions and whether they are deleted), copied
into the store in memory. Nothing here writes the user's database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import yaml
import yaml.error
import yaml.nodes

from outreach import store as store_module
from outreach.engine import campaigns as campaign_engine
from outreach.engine import sequences as seq
from outreach.review import ruletests
from outreach.rules import criteria, diagnostics, loader, model
from outreach.rules import validate as rules_validate
from outreach.rules.diagnostics import Code, Diagnostic, Severity

SAMPLE_ID = "SAMPLE"
SAMPLE_EMAIL = "sample@example.org"
SAMPLE_FIRST_NAME = "Sam"
SAMPLE_LABEL = "the sample record"
SPAN = dt.timedelta(days=90)  # without --until the run looks this far past --start (or past the last event)
AFTER = dt.timedelta(days=1)  # ... and the timeline ends a day after the last thing that happened
NAME = "outreach simulate"  # the RuleTest the simulation runs
_ENROLL_LINE = 0  # the enroll at --start is written nowhere

_NOWHERE = yaml.error.Mark("", 0, 0, 0, "", 0)
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_STR = "tag:yaml.org,2002:str"


class BadInput(Exception):
    """The simulation cannot run as asked; the message says why (with file:line:col lines where there is a file)."""


@dataclasses.dataclass(frozen=True)
class Piece:
    """The record or the list of events as read: its data, its YAML node (for positions), where it came from."""

    label: str  # the file, --record-json or "the sample record"
    data: Any
    node: yaml.nodes.Node | None = None


# --- reading --------------------------------------------------------------------------------------------------


def _fail(label: str, problems: Sequence[Diagnostic]) -> BadInput:
    return BadInput(f"{label} cannot be read:\n{diagnostics.format_text(problems)}")


def _json_problem(label: str, text: str) -> Diagnostic | None:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return Diagnostic(label, exc.lineno, exc.colno, Severity.ERROR, Code.YAML_SYNTAX, f"not JSON: {exc.msg}")
    return None


def read_record(path: str) -> Piece:
    """A --record file: one record mapping, YAML or JSON."""
    text = _text(path)
    if path.lower().endswith(".json") and (problem := _json_problem(path, text)) is not None:
        raise _fail(path, [problem])
    return _record(path, text)


def record_json(text: str) -> Piece:
    """--record-json: one record mapping as a JSON string."""
    problem = _json_problem("--record-json", text)
    if problem is not None:
        raise _fail("--record-json", [problem])
    return _record("--record-json", text)


def _record(label: str, text: str) -> Piece:
    docs, problems = loader.parse_text(text, label)
    if problems and problems[0].code is Code.YAML_NOT_MAPPING:
        problems = [dataclasses.replace(problems[0], message="the record must be one mapping: id, type, email, "
                                        "owner, stage, ... and declared fields")]  # fmt: skip
    if problems:
        raise _fail(label, problems)
    if len(docs) > 1:
        raise _fail(label, [docs[1].diag((), Code.YAML_SYNTAX, "one record is simulated; this file holds more")])
    return Piece(label, docs[0].data, docs[0].root)


def sample_record(sequence: model.Sequence, settings: model.Settings) -> Piece:
    """A record of the sequence's first `applies_to` type, owned by the first user of Settings."""
    data: dict[str, Any] = {"id": SAMPLE_ID, "type": sequence.applies_to[0], "email": SAMPLE_EMAIL}
    if "first_name" in settings.fields:
        data["first_name"] = SAMPLE_FIRST_NAME
    owner = next(iter(settings.users), None)
    if owner is not None:
        data["owner"] = owner
    return Piece(SAMPLE_LABEL, data)


def read_events(path: str) -> Piece:
    """An --events file: a YAML list of RuleTest events."""
    return _list_file(path, "events", "{at: ..., KIND: {...}}")


def _list_file(path: str, what: str, shape: str) -> Piece:
    """A file of one YAML list (an --events or --records file), with its nodes for file:line:col; BadInput
    saying what the file must hold otherwise."""
    text = _text(path)
    docs, problems = loader.parse_text(text, path)
    if problems and problems[0].code is not Code.YAML_NOT_MAPPING:
        raise _fail(path, problems)
    if docs:
        raise _fail(path, [docs[0].diag((), Code.YAML_NOT_MAPPING, f"the {what} file holds a list of {what}, each `{shape}`")])
    try:
        data, node = loader.compose_one(text)  # the loader walked it already: no surprise here
    except yaml.YAMLError:
        raise _fail(path, [Diagnostic(path, 1, 1, Severity.ERROR, Code.YAML_SYNTAX,
                                      f"the {what} file holds one YAML document, a list")]) from None  # fmt: skip
    if not isinstance(data, list):
        raise _fail(path, [Diagnostic(path, problems[0].line, problems[0].column, Severity.ERROR,
                                      Code.YAML_NOT_MAPPING, f"the {what} file holds a list of {what}")])  # fmt: skip
    return Piece(path, data, node)


def _text(path: str) -> str:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read the file: {exc}") from None


# --- checking: a RuleTest put together from the pieces ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Assembled(loader.Document):
    """A RuleTest document whose `records` and `events` were read from other files: a problem is reported in
    the file that its path leads into."""

    parts: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def diag(
        self,
        path: Sequence[str | int],
        code: Code,
        message: str,
        *,
        severity: Severity = Severity.ERROR,
        at_key: bool = False,
    ) -> Diagnostic:
        found = super().diag(path, code, message, severity=severity, at_key=at_key)
        head = found.path.split("[", 1)[0].split(".", 1)[0]  # records or events, whatever part of them `path` is
        return dataclasses.replace(found, file=self.parts.get(head, self.file))


def _key(name: str) -> yaml.nodes.ScalarNode:
    return yaml.nodes.ScalarNode(_STR, name, _NOWHERE, _NOWHERE)


def _assemble(
    record: Piece, events: Piece | None, start: dt.datetime, until: dt.datetime | None, sequence: model.Sequence
) -> _Assembled:
    rid = record.data.get("id") if isinstance(record.data, dict) else None
    listed = [_about(e, rid) for e in (events.data if events is not None else [])]
    data: dict[str, Any] = {
        "kind": "RuleTest", "name": NAME, "start": start.isoformat(), "records": [record.data], "events": listed,
        "expect": {"enrollments": [{"record": str(rid), "sequence": sequence.name, "status": "active"}]},
    }  # fmt: skip
    if until is not None:
        data["until"] = until.isoformat()
    records = yaml.nodes.SequenceNode(_SEQ, [record.node] if record.node is not None else [], _NOWHERE, _NOWHERE)
    listed_node = events.node if events is not None and events.node is not None else records
    root = yaml.nodes.MappingNode(_MAP, [(_key("records"), records), (_key("events"), listed_node)], _NOWHERE, _NOWHERE)
    parts = {"records": record.label, "events": events.label if events is not None else "--events"}
    return _Assembled(file=record.label, index=1, data=data, line=1, text="", _root=[root], parts=parts)


def _about(event: Any, rid: Any) -> Any:
    """An event whose `record` is left out is about the simulated record (`reply:` alone too)."""
    if not isinstance(event, dict):
        return event
    out = {}
    for kind, args in event.items():
        if kind != "at" and args is None:
            args = {}
        if kind != "at" and isinstance(args, dict) and "record" not in args:
            args = {"record": rid, **args}
        out[kind] = args
    return out


def _rewritten(d: Diagnostic, start: dt.datetime, until: dt.datetime | None, rid: str) -> Diagnostic:
    """A problem as the command line says it: the record file has no `records`, the events no `start`."""
    if d.path.startswith("records[0]"):
        return dataclasses.replace(d, path=d.path.removeprefix("records[0]").removeprefix("."))
    if d.code is Code.RULETEST_WINDOW and d.path.startswith("events"):
        message = f"the event is before --start ({start:%a %Y-%m-%d %H:%M} UTC)"
        if until is not None:
            message += f" or after --until ({until:%a %Y-%m-%d %H:%M} UTC)"
        return dataclasses.replace(d, message=message)
    if d.code is Code.REF_RECORD and d.path.startswith("events"):
        return dataclasses.replace(d, message=f"{d.message.split(':')[0]}: the events are about the simulated "
                                              f"record {rid} (leave `record` out)")  # fmt: skip
    return d


@dataclasses.dataclass(frozen=True)
class Simulation:
    """What to run: the RuleTest (the enroll at --start first) on the rule set, and what the timeline names."""

    test: model.RuleTest
    ruleset: model.RuleSet
    sequence: model.Sequence
    record: model.TestRecord
    record_label: str
    events_label: str | None
    enrolled_by: str
    until_given: bool


def prepare(
    rules_dir: str,
    ruleset: model.RuleSet,
    sequence: model.Sequence,
    record: Piece,
    events: Piece | None,
    *,
    start: dt.datetime,
    until: dt.datetime | None,
    as_user: str | None,
) -> Simulation:
    """Check the record and the events as a RuleTest's against the rules in `rules_dir`; BadInput if they are not."""
    files, docs, found = loader.load([rules_dir])
    mine = _assemble(record, events, start, until, sequence)
    result = rules_validate.check_documents(files, [*docs, mine], found)  # the validator's own checks of a RuleTest
    errors = [_rewritten(d, start, until, str(record.data.get("id"))) for d in result.errors]
    if errors or result.ruleset is None or NAME not in result.ruleset.tests:
        raise BadInput(f"the record or the events have errors:\n{diagnostics.format_text(errors)}")
    test = result.ruleset.tests[NAME]
    simulated = test.records[0]
    user = as_user or _owner(simulated)
    if user is None:
        raise BadInput(f"record {simulated.id} has no owner: say who enrolls it with --as USER")
    if user not in ruleset.settings.users:
        raise BadInput(f"--as: {user!r} is not a user in Settings.users (users: {', '.join(ruleset.settings.users)})")
    refused = seq.refusal(_recipient(simulated), sequence, live_in_sequence=False, unsubscribed_at=None)
    if refused is not None:
        raise BadInput(f"the scheduler refuses to enroll it: {refused}")
    enroll = model.TestEvent(start, "enroll", {"sequence": sequence.name, "record": simulated.id, "as": user},
                             _ENROLL_LINE)  # fmt: skip
    last = max((e.at for e in test.events), default=start)
    span = until if until is not None else max(start + SPAN, last + AFTER)
    test = dataclasses.replace(test, until=span, events=(enroll, *test.events))
    return Simulation(test, ruleset, sequence, simulated, record.label, events.label if events else None, user,
                      until is not None)  # fmt: skip


def heading(sim: Simulation) -> str:
    """The first line: the sequence, which record (and where it comes from), who enrolls it and when."""
    r = sim.record
    which = (
        f"the sample record {r.id}" if sim.record_label == SAMPLE_LABEL else f"record {r.id} from {sim.record_label}"
    )
    facts = [f"a {r.type}", *(f"{k} {r.fields[k]}" for k in ("email", "owner", "stage") if r.fields.get(k) is not None)]
    return (f"{sim.sequence.name} for {which} ({', '.join(facts)}), enrolled by {sim.enrolled_by} "
            f"{sim.test.start:%a %Y-%m-%d %H:%M} UTC")  # fmt: skip


def _owner(record: model.TestRecord) -> str | None:
    owner = record.fields.get("owner")
    return owner if isinstance(owner, str) else None


def _recipient(record: model.TestRecord) -> seq.Recipient:
    fields = dict(record.fields)
    email = fields.get("email")
    address = email.strip().lower() if isinstance(email, str) and email.strip() else None
    zone = fields.get("timezone")
    return seq.Recipient(record.id, record.type, address, _owner(record), zone if isinstance(zone, str) else None,
                         {**fields, "id": record.id, "type": record.type})  # fmt: skip


# --- running and telling ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Timeline:
    """What happened, in time order, and how the enrollment stands at `until`."""

    steps: tuple[tuple[dt.datetime, str], ...]
    until: dt.datetime
    mails: int
    tasks: int
    outcome: str  # completed, stopped (replied), blocked (...), still active (...)


async def run(sim: Simulation) -> Timeline:
    """Run the simulation's RuleTest and tell what it did; BadInput when an event cannot happen (file:line)."""
    try:
        trace = await ruletests.trace(sim.test, sim.ruleset)
    except ruletests.RuleTestError as exc:
        raise BadInput(f"{sim.events_label}:{exc.line}: {exc}") from None
    rid, name = sim.record.id, sim.sequence.name
    if (rid, name) not in trace.actual.enrollments:
        raise BadInput("the scheduler refused to enroll it: " + "; ".join(trace.actual.notices))
    ranked: list[tuple[dt.datetime, int, str]] = [(sim.test.start, 0, f"enrolled in {name} by {sim.enrolled_by}")]
    ranked += [(e.at, 1, _event_text(e, sim)) for e in sim.test.events[1:]]
    sequences = {row["id"]: row["sequence"] for row in trace.enrollments}
    steps = {s.id: (i + 1, s) for i, s in enumerate(sim.sequence.steps)}
    reminders = {p.follow_up.template: p.name for p in sim.ruleset.processes.values() if p.follow_up.template}
    for sent, row in zip(trace.actual.sent, trace.outbox, strict=True):
        ranked.append((sent.at, 2, _mail_text(sent, row, sequences, steps, name, reminders)))
    for task in trace.tasks:
        ranked.append((_utc(task.created_at), 3, _task_text(task, sequences, steps, name)))
    ranked += [(n_at, 2, text) for n_at, text in _notices(trace.actual.notices)]
    row = [r for r in trace.enrollments if r["record_id"] == rid and r["sequence"] == name][-1]
    outcome, ended = _outcome(row, trace, sim)
    if ended is not None:
        ranked.append((ended, 4, f"{name} {outcome}"))
    ranked.sort(key=lambda x: (x[0], x[1]))
    assert sim.test.until is not None
    until = sim.test.until if sim.until_given else min(sim.test.until, max(x[0] for x in ranked) + AFTER)
    return Timeline(tuple((at, text) for at, _, text in ranked), until, len(trace.actual.sent), len(trace.tasks),
                    outcome)  # fmt: skip


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _step_name(step: str | None, steps: Mapping[str, tuple[int, model.Step]]) -> str:
    if step is None or step not in steps:
        return ""
    return f"step {steps[step][0]} {step}: "


def _mail_text(sent: ruletests.Sent, row: Mapping[str, Any], sequences: Mapping[int, str],
               steps: Mapping[str, tuple[int, model.Step]], name: str, reminders: Mapping[str, str]) -> str:  # fmt: skip
    thread = "new thread" if sent.thread == "new" else "reply"
    what = f"mail {sent.template} to {sent.to} from {sent.sender}, {thread}: {json.dumps(sent.subject, ensure_ascii=False)}"
    owner = sequences.get(row.get("enrollment_id") or -1)
    if owner is None:
        process = reminders.get(sent.template) if row.get("enrollment_id") is None else None
        return f"reminder ({process}): {what}" if process else what
    if owner != name:
        return f"{owner} step {row.get('step_id')}: {what}"
    return _step_name(row.get("step_id"), steps) + what


def _task_text(task: Any, sequences: Mapping[int, str], steps: Mapping[str, tuple[int, model.Step]], name: str) -> str:
    due = f", due {_utc(task.due_at):%a %Y-%m-%d %H:%M} UTC" if task.due_at is not None else ""
    what = f"task {json.dumps(task.subject, ensure_ascii=False)} ({task.type}) for {task.owner or 'nobody'}{due}"
    owner = sequences.get(task.enrollment_id or -1)
    if owner is None:
        return what
    if owner != name:
        return f"{owner} step {task.step_id}: {what}"
    return _step_name(task.step_id, steps) + what


def _notices(notices: Sequence[str]) -> list[tuple[dt.datetime, str]]:
    """The runner's notices ("Fri 2026-11-27 15:00 UTC  enroll ... refused: ...") at their times."""
    out = []
    for notice in notices:
        stamp, _, text = notice.partition(" UTC  ")
        at = dt.datetime.strptime(stamp, "%a %Y-%m-%d %H:%M").replace(tzinfo=dt.UTC)
        out.append((at, f"notice: {text}"))
    return out


def _event_text(e: model.TestEvent, sim: Simulation) -> str:
    args = e.args
    mine = args.get("record") == sim.record.id
    email = sim.record.fields.get("email") if mine else None
    who = email if isinstance(email, str) else f"record {args.get('record')}"
    texts = {
        "reply": f"reply from {who}",
        "auto_reply": f"auto-reply (out of office) from {who}",
        "bounce": f"bounce of the latest mail to {who} ({args.get('status') or '5.1.1'})",
        "open": f"{who} opens a mail",
        "click": f"{who} clicks a link",
        "unsubscribe": f"{who} unsubscribes",
        "convert": f"record {args.get('record')} converted to a contact",
        "delete": f"record {args.get('record')} deleted",
        "task": f"task {json.dumps(args.get('subject'), ensure_ascii=False)} added by hand",
        "complete_task": f"the open sequence task of {args.get('record')} completed",
        "appointment": f"appointment entered, starting {_show(args.get('starts'))}",
        "enroll": f"enroll {args.get('record')} in {args.get('sequence')} as {args.get('as')}",
        "stop": f"stop {args.get('sequence')} for {args.get('record')}" + (f" (by {args['as']})" if args.get("as") else ""),
    }  # fmt: skip
    if e.kind == "set":
        text = "set " + ", ".join(f"{k} = {_show(v)}" for k, v in args.items() if k != "record")
    else:
        text = texts.get(e.kind, e.kind)
    return f"{text}  [{sim.events_label}:{e.line}]" if e.line else text


def _show(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return f"{_utc(value):%a %Y-%m-%d %H:%M} UTC"
    return json.dumps(value, ensure_ascii=False)


def _outcome(row: Mapping[str, Any], trace: ruletests.Trace, sim: Simulation) -> tuple[str, dt.datetime | None]:
    """How the enrollment stands at the end, and since when (None: still active)."""
    status, reason = row["status"], row["reason"]
    if status == "active":
        if row["awaiting_task"]:
            task = next((t for t in reversed(trace.tasks) if t.enrollment_id == row["id"]), None)
            subject = json.dumps(task.subject, ensure_ascii=False) if task is not None else "its task"
            return f"still active: waiting for the task {subject} to be completed", None
        if row["next_due_at"] is not None:
            index = row["step_index"]
            step = sim.sequence.steps[index] if index < len(sim.sequence.steps) else None
            named = f"step {index + 1} {step.id}" if step is not None else "the next step"
            return f"still active: {named} is due {_utc(row['next_due_at']):%a %Y-%m-%d %H:%M} UTC", None
        return "still active", None
    shown = f"{status} ({reason})" if reason else status
    if row["ended_at"] is not None:
        return shown, _utc(row["ended_at"])
    blocked = [e.at for e in trace.activity
               if (e.kind == "sequence_blocked" and e.data.get("sequence") == row["sequence"])
               or (e.kind == "bounced" and e.data.get("blocked"))]  # fmt: skip
    return shown, (_utc(blocked[-1]) if blocked else None)


# --- a campaign ------------------------------------------------------------------------------------------------

DATABASE_LABEL = "the database"
_BUILTIN_FIELDS = ("email", "owner", "stage", "stage_entered_at", "created_at", "timezone")


class AudienceStore(Protocol):
    """The store's verbs `audience` reads with (outreach.store.Store has them)."""

    async def list_records(self, where: criteria.Criteria | None = None, *, now: dt.datetime,
                           module: str | None = None, include_deleted: bool = False,
                           limit: int | None = None, not_enrolled: bool = False) -> list[store_module.rows.Record]: ...  # fmt: skip

    async def count_records(self, where: criteria.Criteria | None = None, *, now: dt.datetime,
                            module: str | None = None, include_deleted: bool = False,
                            not_enrolled: bool = False) -> int: ...  # fmt: skip

    async def records_by_id(self, ids: list[str]) -> dict[str, store_module.rows.Record]: ...

    async def get_suppression(self, email: str) -> store_module.rows.Suppression | None: ...


@dataclasses.dataclass(frozen=True)
class Audience:
    """The records a campaign's simulation sends to, as RuleTest records, and what it copies with them."""

    records: Piece
    total: int | None  # how many records the campaign would pick now; None: the records came from a file
    suppressed: tuple[tuple[str, str], ...] = ()  # (address, reason) on the database's suppression list
    deleted: tuple[str, ...] = ()  # ids of deleted records (a campaign skips them)


async def audience(store: AudienceStore, ruleset: model.RuleSet, campaign: model.Campaign, *, limit: int,
                   now: dt.datetime) -> Audience:  # fmt: skip
    """The first `limit` records (by id) the campaign would pick from the database now, deleted ones too, as
    RuleTest records, with how many it would pick in all and what of the suppression list concerns them."""
    to = campaign.to
    if to.records:
        found = await store.records_by_id(list(to.records))
        mine = sorted((r for r in found.values() if r.type == campaign.module), key=lambda r: r.id)
        total, records = len(mine), mine[:limit]
    else:
        where = to.where
        if to.view is not None:
            view = ruleset.views.get(to.view)
            where = view.where if view is not None else None
        records = await store.list_records(where, now=now, module=campaign.module, include_deleted=True, limit=limit)
        total = len(records)
        if total >= limit:
            total = await store.count_records(where, now=now, module=campaign.module, include_deleted=True)
    fields = ruleset.settings.fields
    data = []
    suppressed = []
    for r in records:
        item: dict[str, Any] = {"id": r.id, "type": r.type}
        for name in _BUILTIN_FIELDS:
            if r.value(name) is not None:
                item[name] = _plain(r.value(name))
        item.update({k: _plain(v) for k, v in r.fields.items() if k in fields and v is not None})
        data.append(item)
        found_suppression = await store.get_suppression(r.email) if r.email else None
        if found_suppression is not None:
            suppressed.append((found_suppression.email, found_suppression.reason))
    deleted = tuple(r.id for r in records if r.deleted_at is not None)
    return Audience(Piece(DATABASE_LABEL, data), total, tuple(dict.fromkeys(suppressed)), deleted)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def read_records(path: str) -> Audience:
    """A --records file: a YAML list of records, each as a RuleTest's `records` item."""
    return Audience(_list_file(path, "records", "{id: ..., type: ..., ...}"), None)


@dataclasses.dataclass(frozen=True)
class CampaignSimulation:
    """What to run: the RuleTest of the campaign's recipients on the rule set, and what the timeline names."""

    test: model.RuleTest
    ruleset: model.RuleSet
    campaign: model.Campaign
    audience: Audience
    events_label: str | None
    until_given: bool


def prepare_campaign(
    rules_dir: str,
    ruleset: model.RuleSet,
    campaign: model.Campaign,
    found: Audience,
    events: Piece | None,
    *,
    start: dt.datetime,
    until: dt.datetime | None,
) -> CampaignSimulation:
    """Check the records and the events as a RuleTest's against the rules in `rules_dir`; BadInput if they are
    not. The run goes to `until`, else to a day after the last follow-up is due (or the last event)."""
    files, docs, loaded = loader.load([rules_dir])
    data: dict[str, Any] = {
        "kind": "RuleTest", "name": NAME, "start": start.isoformat(), "records": found.records.data,
        "events": events.data if events is not None else [],
        "expect": {"campaigns": [{"campaign": campaign.name, "status": "sent"}]},  # not checked: a trace
    }  # fmt: skip
    if until is not None:
        data["until"] = until.isoformat()
    records = found.records.node or yaml.nodes.SequenceNode(_SEQ, [], _NOWHERE, _NOWHERE)
    listed = events.node if events is not None and events.node is not None else records
    root = yaml.nodes.MappingNode(_MAP, [(_key("records"), records), (_key("events"), listed)], _NOWHERE, _NOWHERE)
    parts = {"records": found.records.label, "events": events.label if events is not None else "--events"}
    mine = _Assembled(file=found.records.label, index=1, data=data, line=1, text="", _root=[root], parts=parts)
    result = rules_validate.check_documents(files, [*docs, mine], loaded)
    errors = [_in_a_list(d, start, until) for d in result.errors]
    if errors or result.ruleset is None or NAME not in result.ruleset.tests:
        raise BadInput(f"the records or the events have errors:\n{diagnostics.format_text(errors)}")
    test = result.ruleset.tests[NAME]
    sends = campaign_engine.send_time(campaign, start)
    last = max([sends, *(campaign_engine.follow_up_due(f, sends) for f in campaign.follow_ups),
                *(e.at for e in test.events)])  # fmt: skip
    test = dataclasses.replace(test, until=until if until is not None else last.astimezone(dt.UTC) + AFTER)
    return CampaignSimulation(test, ruleset, campaign, found, events.label if events else None, until is not None)


def _in_a_list(d: Diagnostic, start: dt.datetime, until: dt.datetime | None) -> Diagnostic:
    """A problem as the command line says it: the records file is a list, the events have no `start`."""
    if d.path.startswith("records["):
        return dataclasses.replace(d, path=d.path.removeprefix("records"))
    return _rewritten(d, start, until, "")


def campaign_heading(sim: CampaignSimulation) -> str:
    """The first line: the campaign, whom it goes to, when, and which of them the timeline follows."""
    c, found = sim.campaign, sim.audience
    to = (f"the view {c.to.view}" if c.to.view is not None else
          f"{len(c.to.records)} listed records" if c.to.records else "its criteria")  # fmt: skip
    sends = campaign_engine.send_time(c, sim.test.start).astimezone(dt.UTC)
    n = len(found.records.data)
    if found.total is None:
        whom = f"{_plural(n, 'record')} from {found.records.label}"
    elif found.total == n:
        whom = f"the {_plural(n, 'record')} it picks now in {DATABASE_LABEL}"
    else:
        whom = f"the first {n} of the {found.total} records it picks now in {DATABASE_LABEL} (by id)"
    return (f"{c.name}: a {c.module} campaign of {c.owner} to {to}, sent {sends:%a %Y-%m-%d %H:%M} UTC; "
            f"{whom}")  # fmt: skip


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


@dataclasses.dataclass(frozen=True)
class StepSummary:
    step: int
    label: str  # campaign mail, follow-up 1 ...
    template: str
    to: str  # everyone, received, opened
    status: str
    at: dt.datetime | None
    counts: Mapping[str, int]
    skipped: Mapping[str, int]


@dataclasses.dataclass(frozen=True)
class CampaignTimeline:
    """What happened, in time order, and each step's statistics at `until`."""

    steps: tuple[tuple[dt.datetime, str], ...]
    until: dt.datetime
    summary: tuple[StepSummary, ...]


def _step_word(step: int) -> str:
    return "campaign mail" if step == 0 else f"follow-up {step}"


async def run_campaign(sim: CampaignSimulation) -> CampaignTimeline:
    """Run the simulation's RuleTest and tell what the campaign did; BadInput when an event cannot happen."""
    try:
        trace = await ruletests.trace(sim.test, sim.ruleset, suppressed=sim.audience.suppressed,
                                      deleted=sim.audience.deleted)  # fmt: skip
    except ruletests.RuleTestError as exc:
        raise BadInput(f"{sim.events_label}:{exc.line}: {exc}") from None
    name = sim.campaign.name
    emails = {r.id: r.fields.get("email") for r in sim.test.records}
    ranked: list[tuple[dt.datetime, int, str]] = []
    ranked += [(e.at, 1, _campaign_event_text(e, sim)) for e in sim.test.events]
    sequences = {row["id"]: row["sequence"] for row in trace.enrollments}
    reminders = {p.follow_up.template: p.name for p in sim.ruleset.processes.values() if p.follow_up.template}
    for sent, row in zip(trace.actual.sent, trace.outbox, strict=True):
        if sent.campaign == name:  # the others: what the rest of the rules send these records and their owners
            subject = json.dumps(sent.subject, ensure_ascii=False)
            ranked.append((sent.at, 2, f"{_step_word(int(row.get('step_id') or 0))} {sent.template} to {sent.to} "
                                       f"({row.get('record_id')}) from {sent.sender}: {subject}"))  # fmt: skip
        else:
            ranked.append((sent.at, 2, _mail_text(sent, row, sequences, {}, "", reminders)))
    for st in trace.steps:
        if st.campaign != name or st.at is None:
            continue
        for rid, reason in st.skipped:
            address = emails.get(rid)
            who = f"{rid} ({address})" if isinstance(address, str) else rid
            ranked.append((_utc(st.at), 3, f"{_step_word(st.step)}: {who} skipped: {reason}"))
    for e in trace.activity:
        if e.kind == "campaign_action" and e.data.get("campaign") == name:
            ranked.append((_utc(e.at), 4, _action_text(e.record_id, e.data)))
    ranked.sort(key=lambda x: (x[0], x[1]))
    summary = []
    for i, (template, to) in enumerate([(sim.campaign.template, "everyone"),
                                        *((f.template, f.to) for f in sim.campaign.follow_ups)]):  # fmt: skip
        got = trace.actual.campaigns.get((name, i))
        at = next((_utc(st.at) for st in trace.steps if st.campaign == name and st.step == i and st.at), None)
        summary.append(StepSummary(i, _step_word(i), template, to, got.status if got else "not applied", at,
                                   dict(got.counts) if got else {}, dict(got.skipped) if got else {}))  # fmt: skip
    assert sim.test.until is not None
    return CampaignTimeline(tuple((at, text) for at, _, text in ranked), sim.test.until, tuple(summary))


def _action_text(record: str | None, data: Mapping[str, Any]) -> str:
    """A trigger action on a record's activity, as the timeline tells it."""
    head = f"{_step_word(int(data.get('step') or 0))} {data.get('trigger')} by {record}"
    due = data.get("due_at")
    when = f", due {_utc(dt.datetime.fromisoformat(due)):%a %Y-%m-%d %H:%M} UTC" if isinstance(due, str) else ""
    if data.get("action") == "update":
        return f"{head}: {data.get('field')} = {json.dumps(data.get('value'), ensure_ascii=False)}"
    what = "call" if data.get("action") == "call" else "task"
    subject = json.dumps(data.get("subject"), ensure_ascii=False)
    return f"{head}: {what} {subject} for {data.get('owner') or 'nobody'}{when}"


def _campaign_event_text(e: model.TestEvent, sim: CampaignSimulation) -> str:
    args = e.args
    rid = args.get("record")
    which = f"the {args['campaign']} mail" if args.get("campaign") else "the latest mail"
    scanner = " (automated: a link scanner)" if args.get("automated") else ""
    texts = {
        "open": f"{rid} opens {which}{scanner}",
        "click": f"{rid} clicks " + (f"{args['url']} in " if args.get("url") else "a link in ") + which + scanner,
        "bounce": f"{which} to {rid} bounces ({args.get('status') or '5.1.1'})",
        "reply": f"{rid} replies to the latest mail",
        "auto_reply": f"auto-reply (out of office) from {rid}",
        "unsubscribe": f"{rid} unsubscribes",
        "convert": f"{rid} converted to a contact",
        "delete": f"{rid} deleted",
        "task": f"task {json.dumps(args.get('subject'), ensure_ascii=False)} for {rid} added by hand",
        "complete_task": f"the open sequence task of {rid} completed",
        "appointment": f"appointment for {rid} entered, starting {_show(args.get('starts'))}",
        "enroll": f"enroll {rid} in {args.get('sequence')} as {args.get('as')}",
        "stop": f"stop {args.get('sequence')} for {rid}",
    }
    if e.kind == "set":
        text = f"set {rid} " + ", ".join(f"{k} = {_show(v)}" for k, v in args.items() if k != "record")
    else:
        text = texts.get(e.kind, e.kind)
    return f"{text}  [{sim.events_label}:{e.line}]"
