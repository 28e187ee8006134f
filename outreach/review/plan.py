"""What `outreach apply` would change, and what that does to live state (pure: the store's facts come in).

Like `terraform plan`: definitions added, changed (with a diff of the YAML),
renamed (`renamed_from`, like terraform's `moved`) and removed, and for each
the effect on people in flight.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import json
from collections.abc import Mapping
from typing import Any

import yaml

from outreach.engine import campaigns as engine_campaigns
from outreach.rules import model

KIND_ORDER = ("Settings", "Template", "View", "Sequence", "Campaign", "SalesProcess")


@dataclasses.dataclass(frozen=True)
class Change:
    action: str  # add | change | rename | remove
    kind: str
    name: str
    old_hash: str | None
    new_hash: str | None
    diff: str  # unified diff of the YAML (empty for an addition or removal)
    effects: tuple[str, ...]
    old_name: str | None = None  # a rename: the name it is applied under now


@dataclasses.dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    unchanged: int
    refusals: tuple[str, ...] = ()  # why `apply` would refuse these rules, and apply nothing

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)


class _Dumper(yaml.SafeDumper):
    """Multi-line text as `|` blocks, as rule authors write templates, so diffs show whole lines."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not value.endswith((" ", "\t")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def _yaml(body: Mapping[str, Any]) -> str:
    return yaml.dump(dict(body), Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False,
                     width=100)  # fmt: skip


def yaml_diff(
    kind: str, name: str, old: Mapping[str, Any], new: Mapping[str, Any], *, old_label: str = "applied",
    old_name: str | None = None,
) -> str:  # fmt: skip
    """A unified diff of two bodies of a definition as YAML, the old one labelled `old_label` (and named
    `old_name` when it was renamed)."""
    lines = difflib.unified_diff(
        _yaml(old).splitlines(), _yaml(new).splitlines(), f"{kind}/{old_name or name} ({old_label})",
        f"{kind}/{name} (rules)", lineterm="", n=2,
    )  # fmt: skip
    return "\n".join(lines)


def make_plan(
    ruleset: model.RuleSet,
    active: Mapping[tuple[str, str], tuple[str, Mapping[str, Any]]],
    live: Mapping[tuple[str, str], int],
    *,
    runs: Mapping[str, engine_campaigns.Run] | None = None,
    now: dt.datetime | None = None,
) -> Plan:
    """Compare the rule set with what is applied.

    `active` is {(kind, name): (hash, body)} in force in the store; `live` the
    count of active or blocked enrollments by (sequence, version hash). With
    the campaigns' runs in the store (`runs`, by name) and the time apply
    would run (`now`), a campaign's effects say what applying does to it then
    (scheduled, rescheduled, stopped by the freeze ...), and `refusals` why
    apply would refuse the rules (a slot of campaigns overfull).
    """
    wanted = ruleset.live_definitions()
    renamed_from = ruleset.renamed_from()
    moves = model.renames(renamed_from, active)  # {(kind, earlier name): new name}
    was = {(kind, new): old for (kind, old), new in moves.items()}
    known: _Runs | None = None
    if runs is not None and now is not None:
        by_name = dict(runs)  # under the names apply leaves them: a renamed campaign's run moves with it
        for (kind, earlier), new_name in moves.items():
            if kind == "Campaign" and earlier in by_name:
                by_name[new_name] = dataclasses.replace(by_name.pop(earlier), campaign=new_name)
        known = _Runs(by_name, now)
    changes: list[Change] = []
    unchanged = 0
    keys = sorted((set(wanted) | set(active)) - set(moves), key=lambda k: (KIND_ORDER.index(k[0]), k[1]))
    for kind, name in keys:
        new, old = wanted.get((kind, name)), active.get((kind, name))
        if new is not None and old is not None and new.hash == old[0]:
            unchanged += 1
            continue
        if (kind, name) in was:
            assert new is not None
            earlier = was[(kind, name)]
            old = active[(kind, earlier)]
            effects = _effects_of_rename(ruleset, kind, earlier, name, old, live)
            if kind == "Campaign" and known is not None:
                effects += known.effects(ruleset, name, new.hash)
            changes.append(Change("rename", kind, name, old[0], new.hash,
                                  yaml_diff(kind, name, old[1], new.body, old_name=earlier), effects, earlier))  # fmt: skip
        elif old is None:
            assert new is not None
            effects = _effects_of_add(ruleset, kind, name)
            if kind == "Campaign" and known is not None:
                effects = known.effects(ruleset, name, new.hash)
            if renamed_from.get((kind, name)):
                effects += (f"{_WORDS[kind]} {name}: renamed_from {', '.join(renamed_from[(kind, name)])}, but no "
                            f"{_WORDS[kind]} of that name is applied here: added as a new one",)  # fmt: skip
            changes.append(Change("add", kind, name, None, new.hash, "", effects))
        elif new is None:
            changes.append(Change("remove", kind, name, old[0], None, "", _effects_of_remove(kind, name, live)))
        else:
            effects = _effects_of_change(ruleset, kind, name, old, new.hash, live)
            if kind == "Campaign" and known is not None:
                effects = known.effects(ruleset, name, new.hash)
            changes.append(
                Change("change", kind, name, old[0], new.hash, yaml_diff(kind, name, old[1], new.body), effects)
            )
    removed = [c.name for c in changes if c.kind == "Campaign" and c.action == "remove"]
    refusals = known.refusals(ruleset, wanted, removed) if known is not None else ()
    return Plan(tuple(changes), unchanged, refusals)


@dataclasses.dataclass(frozen=True)
class _Runs:
    """The campaigns' runs in the store and the time apply would run: what applying does to each campaign, as
    apply decides it (outreach/engine/campaigns.py)."""

    runs: Mapping[str, engine_campaigns.Run]
    now: dt.datetime

    def effects(self, ruleset: model.RuleSet, name: str, digest: str) -> tuple[str, ...]:
        c, run, now = ruleset.campaigns[name], self.runs.get(name), self.now
        limits = ruleset.settings.limits
        why = engine_campaigns.would_stop(c, digest, run, now, limits)
        if why is not None:
            return (f"campaign {name} will be stopped: {why}",)
        after = engine_campaigns.applied(c, digest, run, now, limits)
        status = run.status if run is not None else None
        reason = f" ({run.reason})" if run is not None and run.reason else ""
        if status is engine_campaigns.RunStatus.STOPPED:
            return (f"campaign {name} stays stopped{reason}: its owner starts it again "
                    f"(`outreach campaigns start {name}`)",)  # fmt: skip
        if status is engine_campaigns.RunStatus.DELETED:
            return (f"campaign {name} was deleted{reason} and stays so: give it a new name to send it again",)
        if status in (engine_campaigns.RunStatus.SENDING, engine_campaigns.RunStatus.SENT):
            return (f"campaign {name} is {status}: the mail already rendered stays as it is; the rest, and "
                    "follow-ups not sent yet, use the new definition",)  # fmt: skip
        if c.send_at is not None and c.send_at < now:
            return (f"campaign {name}: send_at {c.send_at.isoformat()} is in the past: it goes out as soon as it is "
                    "applied",)  # fmt: skip
        if c.send_at is None:
            return (f"campaign {name}: scheduled to send as soon as it is applied",)
        if run is not None and run.send_at != after.send_at:
            return (f"campaign {name}: rescheduled from {run.send_at.isoformat()} to {after.send_at.isoformat()}",)
        when = f"campaign {name}: scheduled to send {after.send_at.isoformat()}"
        if run is not None:  # changed, at the same time, before the freeze
            when += f" (changed more than limits.campaign_freeze, {limits.campaign_freeze}, before it)"
        return (when,)

    def refusals(self, ruleset: model.RuleSet, wanted: Mapping[tuple[str, str], model.Source],
                 removed: list[str]) -> tuple[str, ...]:  # fmt: skip
        """The slots that applying would overfill (apply refuses the rules then, and applies nothing)."""
        limits = ruleset.settings.limits
        after = dict(self.runs)
        for name, c in ruleset.campaigns.items():
            after[name] = engine_campaigns.applied(c, wanted[("Campaign", name)].hash, self.runs.get(name), self.now,
                                                   limits)  # fmt: skip
        for name in removed:
            if name in after:
                after[name] = dataclasses.replace(after[name], status=engine_campaigns.RunStatus.DELETED)
        full = engine_campaigns.overfull_slots(list(after.values()), limits.campaigns_per_slot)
        if not full:
            return ()
        return tuple(f"apply would refuse these rules and apply nothing: {line}"
                     for line in engine_campaigns.slots_said(full, limits).splitlines())  # fmt: skip


def _live_of(sequence: str, live: Mapping[tuple[str, str], int]) -> dict[str, int]:
    return {h: n for (seq, h), n in live.items() if seq == sequence and n}


def _enrollments(n: int) -> str:
    return f"{n} live enrollment{'' if n == 1 else 's'}"


def _effects_of_add(ruleset: model.RuleSet, kind: str, name: str) -> tuple[str, ...]:
    if kind == "Sequence" and ruleset.sequences[name].enroll_when is not None:
        return (f"sequence {name}: records matching enroll_when are enrolled from the next scheduler tick",)
    if kind == "Campaign":
        c = ruleset.campaigns[name]
        when = c.send_at.isoformat() if c.send_at else "as soon as it is applied"
        return (f"campaign {name}: scheduled to send {when}",)
    return ()


def _effects_of_remove(kind: str, name: str, live: Mapping[tuple[str, str], int]) -> tuple[str, ...]:
    if kind == "Sequence":
        n = sum(_live_of(name, live).values())
        return (f"sequence {name} removed: {_enrollments(n)} will be stopped",) if n else ()
    if kind == "Campaign":
        return (f"campaign {name} removed: it and its follow-ups will not be sent",)
    return ()


_WORDS = {"Settings": "settings", "Template": "template", "View": "view", "Sequence": "sequence",
          "Campaign": "campaign", "SalesProcess": "sales process"}  # fmt: skip


def _effects_of_rename(
    ruleset: model.RuleSet, kind: str, old_name: str, name: str, old: tuple[str, Mapping[str, Any]],
    live: Mapping[tuple[str, str], int],
) -> tuple[str, ...]:  # fmt: skip
    """What renaming `old_name` to `name` does: what the store keeps under the old name moves, nobody starts over;
    edits made with the rename are edits as well."""
    word = _WORDS[kind]
    if kind == "Sequence":
        n = sum(_live_of(old_name, live).values())
        out = [f"sequence {old_name} renamed to {name}: " + (f"its {_enrollments(n)} go on where they are, under the "
                                                             "new name" if n else "no live enrollments")]  # fmt: skip
        if n and not model.same_but_naming(old[1], ruleset.sequences[name].source.body):
            out += _effects_of_change(ruleset, kind, name, old, ruleset.sequences[name].source.hash,
                                      {(name, v): k for (s, v), k in live.items() if s == old_name})  # fmt: skip
        return tuple(out)
    kept = {"Template": "steps and mail that name it by its old name follow it",
            "Campaign": "its run, recipients and mail stay its own",
            "SalesProcess": "its reminders go on where they are",
            "View": "campaigns and enrollments by view use the new name"}[kind]  # fmt: skip
    return (f"{word} {old_name} renamed to {name}: {kept}",)


def _effects_of_change(
    ruleset: model.RuleSet, kind: str, name: str, old: tuple[str, Mapping[str, Any]], new_hash: str,
    live: Mapping[tuple[str, str], int],
) -> tuple[str, ...]:  # fmt: skip
    if kind == "Sequence":
        seq = ruleset.sequences[name]
        if model.same_but_naming(old[1], seq.source.body):
            n = _live_of(name, live).get(old[0], 0)
            return (f"sequence {name}: only its renamed_from changed; "
                    + (f"its {_enrollments(n)} on {old[0][:8]} move to {new_hash[:8]}, which runs the same steps"
                       if n else f"new enrollments use {new_hash[:8]}"),)  # fmt: skip
        out = []
        for version, n in sorted(_live_of(name, live).items()):
            if seq.on_edit is model.OnEdit.PIN:
                out.append(f"sequence {name}: {_enrollments(n)} stay on version {version[:8]} (on_edit: pin); "
                           f"new enrollments use {new_hash[:8]}")  # fmt: skip
            else:
                out.append(f"sequence {name}: {_enrollments(n)} on version {version[:8]} move to {new_hash[:8]} "
                           "after their next step (on_edit: next_step)")  # fmt: skip
        return tuple(out) or (f"sequence {name}: no live enrollments; new enrollments use {new_hash[:8]}",)
    if kind == "Template":
        users = [s for s in ruleset.sequences.values() if any(st.template == name for st in s.steps)]
        n = sum(sum(_live_of(s.name, live).values()) for s in users)
        out = [f"template {name} changed: applies to the next send of {_enrollments(n)}"
               + (f" (sequences {', '.join(s.name for s in users)})" if users else "")]  # fmt: skip
        campaigns = [c.name for c in ruleset.campaigns.values()
                     if c.template == name or any(f.template == name for f in c.follow_ups)]  # fmt: skip
        if campaigns:
            out.append(f"template {name} changed: used by campaign{'s' if len(campaigns) > 1 else ''} "
                       f"{', '.join(campaigns)} when it sends")  # fmt: skip
        return tuple(out)
    if kind == "Campaign":
        return (f"campaign {name} changed: a scheduled campaign edited within limits.campaign_freeze of its send "
                "time is stopped and must be started again",)  # fmt: skip
    if kind == "SalesProcess":
        return (f"sales process {name} changed: reminders follow the new stages from the next daily run",)
    return ()


# --- output -----------------------------------------------------------------------------------

SYMBOL = {"add": "+", "change": "~", "rename": ">", "remove": "-"}


def _summary(plan: Plan) -> str:
    counts = {a: sum(1 for c in plan.changes if c.action == a) for a in ("add", "change", "rename", "remove")}
    if not plan.has_changes:
        return f"No changes: {plan.unchanged} definitions are applied as they are."
    renamed = f", {counts['rename']} to rename" if counts["rename"] else ""
    return (f"Plan: {counts['add']} to add, {counts['change']} to change, {counts['remove']} to remove{renamed} "
            f"({plan.unchanged} unchanged).")  # fmt: skip


def version_text(action: str, old_hash: str | None, new_hash: str | None, old_name: str | None = None) -> str:
    """What the parentheses after a change's name say: its version, or the old and the new one (and the name it
    had, for a rename)."""
    both = f"{(old_hash or '')[:8]} -> {(new_hash or '')[:8]}"
    return {"add": (new_hash or "")[:8], "change": both, "rename": f"renamed from {old_name}; {both}",
            "remove": (old_hash or "")[:8]}[action]  # fmt: skip


def format_text(plan: Plan) -> str:
    out = []
    for c in plan.changes:
        out.append(f"{SYMBOL[c.action]} {c.kind} {c.name} ({version_text(c.action, c.old_hash, c.new_hash, c.old_name)})")
        out.extend(f"    {line}" for line in c.diff.splitlines())
        out.extend(f"    => {e}" for e in c.effects)
    out.extend(f"! {r}" for r in plan.refusals)
    out.append(_summary(plan))
    return "\n".join(out)


def format_markdown(plan: Plan) -> str:
    """A comment ready to post on a pull request."""
    out = ["### outreach plan", "", _summary(plan)]
    if plan.refusals:
        out += ["", "**Apply would refuse these rules:**", *(f"- {r}" for r in plan.refusals)]
    if plan.changes:
        out += ["", "| | kind | name | version |", "|---|---|---|---|"]
        for c in plan.changes:
            version = (c.new_hash or c.old_hash or "")[:8]
            was = f" (renamed from `{c.old_name}`)" if c.old_name else ""
            out.append(f"| {SYMBOL[c.action]} | {c.kind} | `{c.name}`{was} | `{version}` |")
        for c in plan.changes:
            if not (c.diff or c.effects):
                continue
            was = f" (renamed from `{c.old_name}`)" if c.old_name else ""
            out += ["", f"#### {SYMBOL[c.action]} {c.kind} `{c.name}`{was}"]
            out += [f"- {e}" for e in c.effects]
            if c.diff:
                out += ["", "```diff", c.diff, "```"]
    return "\n".join(out)


def format_json(plan: Plan) -> str:
    return json.dumps(
        {"changes": [dataclasses.asdict(c) for c in plan.changes], "unchanged": plan.unchanged,
         "has_changes": plan.has_changes, "refusals": list(plan.refusals)},
        indent=2, ensure_ascii=False,
    )  # fmt: skip
