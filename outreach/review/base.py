"""What a rule change does, for review (`outreach plan --base`): pure, both rule sets come in.

Definitions added, changed and removed between a base rule set (a git ref) and
the working tree; for each change a semantic diff ("step 2 (nudge) wait: 2
business days → 3 business days"), and for each added or changed sequence the
timeline of a sample enrollment before and after, run with the engine's own
functions on a virtual clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from outreach.engine import sequences as seq
from outreach.review import plan
from outreach.rules import criteria, model

# A Monday at 08:00 UTC, fixed so that a plan reads the same whenever it runs.
SAMPLE_START = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
SAMPLE_UNSUBSCRIBE_URL = "https://unsubscribe.example/sample"
_MAX_MOVES = 1000  # a timeline of more steps than a sequence can have means a loop; stop there


@dataclasses.dataclass(frozen=True)
class TimelineStep:
    at: dt.datetime
    local: str  # weekday and time in the sequence's zone, e.g. "Mon 09:00 CET"
    step: int  # 1-based
    id: str
    action: str  # email | task | blocked
    what: str  # the template, the task subject, or why the step is blocked
    subject: str | None = None  # of an email, rendered for the sample record


@dataclasses.dataclass(frozen=True)
class Change:
    action: str  # add | change | rename | remove
    kind: str
    name: str
    old_hash: str | None
    new_hash: str | None
    details: tuple[str, ...]  # the semantic diff, one line each
    diff: str  # unified diff of the YAML (changes only)
    before: tuple[TimelineStep, ...] | None = None  # sequences: the sample enrollment at the base
    after: tuple[TimelineStep, ...] | None = None  # and in the working tree
    old_name: str | None = None  # a rename (`renamed_from`): its name at the base


@dataclasses.dataclass(frozen=True)
class KnockOn:
    """An unchanged sequence that sends differently because Settings or a template changed."""

    sequence: str
    before: tuple[TimelineStep, ...]
    after: tuple[TimelineStep, ...]


@dataclasses.dataclass(frozen=True)
class Review:
    base: str  # the ref as given
    commit: str
    sample_start: dt.datetime
    changes: tuple[Change, ...]
    unchanged: int
    knock_on: tuple[KnockOn, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)


def compare(
    base: model.RuleSet, head: model.RuleSet, *, ref: str, commit: str, sample_start: dt.datetime = SAMPLE_START
) -> Review:
    """The definitions of `head` (the working tree) against those of `base` (the rules at `ref`)."""
    old, new = base.live_definitions(), head.live_definitions()
    moves = model.renames(head.renamed_from(), old)  # {(kind, name at the base): name in the working tree}
    was = {(kind, name): earlier for (kind, earlier), name in moves.items()}
    changes: list[Change] = []
    unchanged = 0
    keys = (set(old) | set(new)) - set(moves)
    for kind, name in sorted(keys, key=lambda k: (plan.KIND_ORDER.index(k[0]), k[1])):
        o, n = old.get((kind, name)), new.get((kind, name))
        if o is not None and n is not None and o.hash == n.hash:
            unchanged += 1
            continue
        if (kind, name) in was:
            assert n is not None
            earlier = was[(kind, name)]
            o = old[(kind, earlier)]
            details = tuple(describe(kind, o.body, n.body))
            diff = plan.yaml_diff(kind, name, o.body, n.body, old_label=ref, old_name=earlier)
            before = after = None
            if kind == "Sequence":
                before = timeline(base, base.sequences[earlier], sample_start)
                after = timeline(head, head.sequences[name], sample_start)
            changes.append(Change("rename", kind, name, o.hash, n.hash, details, diff, before, after, earlier))
        elif o is None:
            assert n is not None
            after = timeline(head, head.sequences[name], sample_start) if kind == "Sequence" else None
            changes.append(Change("add", kind, name, None, n.hash, (), "", None, after))
        elif n is None:
            changes.append(Change("remove", kind, name, o.hash, None, (), ""))
        else:
            details = tuple(describe(kind, o.body, n.body))
            diff = plan.yaml_diff(kind, name, o.body, n.body, old_label=ref)
            before = after = None
            if kind == "Sequence":
                before = timeline(base, base.sequences[name], sample_start)
                after = timeline(head, head.sequences[name], sample_start)
            changes.append(Change("change", kind, name, o.hash, n.hash, details, diff, before, after))
    knock_on = []
    if any(c.kind in ("Settings", "Template") for c in changes):  # calendars, send windows, subjects
        for name in sorted(set(base.sequences) & set(head.sequences)):
            if base.sequences[name].source.hash == head.sequences[name].source.hash:
                before = timeline(base, base.sequences[name], sample_start)
                after = timeline(head, head.sequences[name], sample_start)
                if before != after:
                    knock_on.append(KnockOn(name, before, after))
    return Review(ref, commit, sample_start, tuple(changes), unchanged, tuple(knock_on))


# --- the semantic diff ----------------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if "{" in value or "," in value or not value else value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return str(value)
    text: str = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def _long(value: Any) -> bool:
    return isinstance(value, str) and ("\n" in value.strip() or len(value) > 80)


def _keyed(items: Any) -> str | None:
    """The key that names every item of a list of mappings (`id` for steps and users, `name` for stages)."""
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        return None
    for key in ("id", "name"):
        names = [i.get(key) for i in items]
        if all(isinstance(n, str) for n in names) and len(set(names)) == len(names):
            return key
    return None


_ITEM_WORD = {"steps": "step", "stages": "stage", "users": "user", "follow_ups": "follow-up"}


def _item(parent: str, name: str, index: int | None) -> str:
    word = _ITEM_WORD.get(parent, f"{parent} item")
    if parent == "steps" and index is not None:
        return f"step {index + 1} ({name})"
    return f"{word} {name}"


def _summary_of_item(parent: str, item: Mapping[str, Any], key: str) -> str:
    rest = {k: v for k, v in item.items() if k != key}
    if parent == "steps":
        what = f"email {item['email']}" if "email" in item else f"task {_show(item.get('task'))!r}"
        return f"{what}, wait {_show(item.get('wait', 'immediately'))}"
    return _show(rest) if rest else ""


def describe(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """One line per difference between two versions of a definition's document, as a reviewer reads them."""
    return _walk((), old, new)


def _label(path: tuple[str, ...]) -> str:
    return " ".join(path)


def _walk(path: tuple[str, ...], old: Any, new: Any) -> list[str]:
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in [*old, *(k for k in new if k not in old)]:
            label = _label((*path, str(key)))
            if key not in new:
                out.append(f"{label} removed" + ("" if _long(old[key]) else f" (was {_show(old[key])})"))
            elif key not in old:
                out.append(f"{label} added" + ("" if _long(new[key]) else f": {_show(new[key])}"))
            else:
                out += _walk((*path, str(key)), old[key], new[key])
        return out
    key = _keyed(old) if _keyed(old) == _keyed(new) else None
    parent = path[-1] if path else ""
    if key is not None and isinstance(old, list) and isinstance(new, list):
        return _walk_items(path[:-1], parent, key, old, new)
    label = _label(path)
    if _long(old) or _long(new):
        if isinstance(old, str) and isinstance(new, str):
            a, b = old.rstrip("\n").count("\n") + 1, new.rstrip("\n").count("\n") + 1
            return [f"{label} changed ({a} → {b} lines)" if a != b else f"{label} changed"]
        return [f"{label} changed"]
    return [f"{label}: {_show(old)} → {_show(new)}"]


def _walk_items(path: tuple[str, ...], parent: str, key: str, old: list[Any], new: list[Any]) -> list[str]:
    olds = {i[key]: (n, i) for n, i in enumerate(old)}
    news = {i[key]: (n, i) for n, i in enumerate(new)}
    prefix = " ".join(path)
    lead = f"{prefix} " if prefix else ""
    out: list[str] = []
    for name, (n, _item_old) in olds.items():
        if name not in news:
            out.append(f"{lead}removed {_item(parent, name, n)}")
    for name, (n, item) in news.items():
        if name not in olds:
            summary = _summary_of_item(parent, item, key)
            out.append(f"{lead}added {_item(parent, name, n)}" + (f": {summary}" if summary else ""))
        else:
            o = olds[name][1]
            out += _walk((*path, _item(parent, name, n)), {k: v for k, v in o.items() if k != key},
                         {k: v for k, v in item.items() if k != key})  # fmt: skip
    common_old = [k for k in olds if k in news]
    common_new = [k for k in news if k in olds]
    if common_old != common_new:
        out.append(f"{lead}{parent} order: {', '.join(common_old)} → {', '.join(common_new)}")
    return out


# --- the sample enrollment ---------------------------------------------------------------------


def sample_recipient(sequence: model.Sequence, settings: model.Settings, start: dt.datetime) -> seq.Recipient:
    """A record of the sequence's first `applies_to` type with every declared field filled."""
    owner = next(iter(settings.users), None)
    fields: dict[str, Any] = {}
    for name, ftype in settings.fields.items():
        if ftype is criteria.FieldType.STRING:
            fields[name] = f"<{name}>"
        elif ftype is criteria.FieldType.NUMBER:
            fields[name] = 1
        elif ftype is criteria.FieldType.BOOLEAN:
            fields[name] = False
        else:
            fields[name] = start
    kind = sequence.applies_to[0] if sequence.applies_to else "lead"
    fields.update(id="sample", type=kind, email="sample@example.com", owner=owner, timezone=None)
    return seq.Recipient("sample", kind, "sample@example.com", owner, None, fields)


def timeline(ruleset: model.RuleSet, sequence: model.Sequence, start: dt.datetime) -> tuple[TimelineStep, ...]:
    """When each step of `sequence` runs for the sample record enrolled at `start` (tasks done when created), each
    step decided as the daemon decides it (the facts of a message: outreach/app/sending.py)."""
    from outreach.app import sending  # here: the CLI imports this module, and the app layer only when it runs

    settings = ruleset.settings
    who = sample_recipient(sequence, settings, start)
    zone = seq.zone(who, sequence, settings)
    e = seq.enroll(0, who, sequence, settings, enrolled_by=who.owner or "", now=start)
    out: list[TimelineStep] = []
    walked = seq.walk(e, sequence, who, ruleset, facts=lambda _e: sending.facts(SAMPLE_UNSUBSCRIBE_URL),
                      limit=_MAX_MOVES)  # fmt: skip
    for at, index, decision in walked:
        step = sequence.steps[index]
        mine = at.astimezone(zone)
        local = f"{mine:%a %H:%M} {mine.tzname()}"
        if isinstance(decision, seq.SendEmail):
            out.append(TimelineStep(at, local, index + 1, step.id, "email", step.template or "",
                                    decision.rendered.subject))  # fmt: skip
        elif isinstance(decision, seq.CreateTask):
            out.append(TimelineStep(at, local, index + 1, step.id, "task", decision.subject))
        else:
            out.append(TimelineStep(at, local, index + 1, step.id, "blocked", decision.reason))
    return tuple(out)


def timeline_lines(steps: Sequence[TimelineStep]) -> list[str]:
    if not steps:
        return ["(no step runs)"]
    width = max(len(s.id) for s in steps)
    out = []
    for s in steps:
        what = {"email": f"email {s.what}", "task": f'task "{s.what}"', "blocked": f"BLOCKED: {s.what}"}[s.action]
        subject = f'  "{s.subject}"' if s.subject is not None else ""
        out.append(f"{s.at:%a %Y-%m-%d %H:%M} UTC  {s.local:<10}  step {s.step} {s.id:<{width}}  {what}{subject}")
    return out


# --- output -----------------------------------------------------------------------------------


def _summary(r: Review) -> str:
    counts = {a: sum(1 for c in r.changes if c.action == a) for a in ("add", "change", "rename", "remove")}
    where = f"{r.base} ({r.commit[:8]})"
    if not r.has_changes:
        return f"No changes against {where}: {r.unchanged} definitions are the same."
    renamed = f", {counts['rename']} to rename" if counts["rename"] else ""
    return (f"Plan against {where}: {counts['add']} to add, {counts['change']} to change, {counts['remove']} to remove"
            f"{renamed} ({r.unchanged} unchanged).")  # fmt: skip


def _sample_line(r: Review) -> str:
    return (f"Timelines: a sample record enrolled {r.sample_start:%a %Y-%m-%d %H:%M} UTC, its declared fields filled; "
            "a task counts as done when it is created.")  # fmt: skip


_SYMBOL = plan.SYMBOL  # as `outreach plan` marks them


def format_text(r: Review) -> str:
    out = []
    for c in r.changes:
        out.append(f"{_SYMBOL[c.action]} {c.kind} {c.name} "
                   f"({plan.version_text(c.action, c.old_hash, c.new_hash, c.old_name)})")  # fmt: skip
        out.extend(f"    {line}" for line in c.details)
        if c.before is not None:
            out.append(f"    before ({r.base}):")
            out.extend(f"      {line}" for line in timeline_lines(c.before))
        if c.after is not None:
            out.append("    after:" if c.before is not None else "    timeline:")
            out.extend(f"      {line}" for line in timeline_lines(c.after))
    for k in r.knock_on:
        out.append(f"= Sequence {k.sequence} (unchanged; sends differently with the changes above)")
        out.append(f"    before ({r.base}):")
        out.extend(f"      {line}" for line in timeline_lines(k.before))
        out.append("    after:")
        out.extend(f"      {line}" for line in timeline_lines(k.after))
    if r.knock_on or any(c.after is not None for c in r.changes):
        out.append(_sample_line(r))
    out.append(_summary(r))
    return "\n".join(out)


def format_markdown(r: Review) -> str:
    """A comment ready to post on a pull request."""
    out = [f"### outreach plan against `{r.base}`", "", _summary(r)]
    if not r.has_changes:
        return "\n".join(out)
    out += ["", "| | kind | name | what changes |", "|---|---|---|---|"]
    for c in r.changes:
        what = "; ".join(c.details) if c.details else {"add": "added", "remove": "removed", "change": "changed",
                                                        "rename": "renamed"}[c.action]  # fmt: skip
        cell = what.replace("|", "\\|")
        was = f" (renamed from `{c.old_name}`)" if c.old_name else ""
        out.append(f"| {_SYMBOL[c.action]} | {c.kind} | `{c.name}`{was} | {cell} |")
    for c in r.changes:
        if c.after is None and not c.diff:
            continue
        was = f" (renamed from `{c.old_name}`)" if c.old_name else ""
        out += ["", f"#### {_SYMBOL[c.action]} {c.kind} `{c.name}`{was}"]
        if c.before is not None:
            out += ["", f"Before (`{r.base}`):", "", "```text", *timeline_lines(c.before), "```"]
        if c.after is not None:
            out += ["", "After:" if c.before is not None else "Timeline:", "", "```text", *timeline_lines(c.after),
                    "```"]  # fmt: skip
        if c.diff:
            out += ["", "<details><summary>YAML diff</summary>", "", "```diff", c.diff, "```", "", "</details>"]
    for k in r.knock_on:
        out += ["", f"#### = Sequence `{k.sequence}` (unchanged; sends differently with the changes above)"]
        out += ["", f"Before (`{r.base}`):", "", "```text", *timeline_lines(k.before), "```"]
        out += ["", "After:", "", "```text", *timeline_lines(k.after), "```"]
    if r.knock_on or any(c.after is not None for c in r.changes):
        out += ["", f"_{_sample_line(r)}_"]
    return "\n".join(out)


def _steps_json(steps: tuple[TimelineStep, ...] | None) -> list[dict[str, Any]] | None:
    if steps is None:
        return None
    return [{**dataclasses.asdict(s), "at": s.at.isoformat(), "weekday": f"{s.at:%a}"} for s in steps]


def format_json(r: Review) -> str:
    changes = [{**{k: v for k, v in dataclasses.asdict(c).items() if k not in ("before", "after")},
                "before": _steps_json(c.before), "after": _steps_json(c.after)} for c in r.changes]  # fmt: skip
    return json.dumps(
        {"base": r.base, "commit": r.commit, "sample_start": r.sample_start.isoformat(), "changes": changes,
         "knock_on": [{"sequence": k.sequence, "before": _steps_json(k.before), "after": _steps_json(k.after)}
                      for k in r.knock_on],
         "unchanged": r.unchanged, "has_changes": r.has_changes},
        indent=2, ensure_ascii=False,
    )  # fmt: skip
