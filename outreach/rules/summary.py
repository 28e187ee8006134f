"""One line per definition of a RuleSet, for `outreach validate --summary`."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from outreach.rules import model


class Row(NamedTuple):
    kind: str
    name: str
    where: str
    details: str
    hash: str


def _at(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%a %Y-%m-%d %H:%M UTC")


def _n(n: int, word: str, many: str | None = None) -> str:
    """`1 record`, `2 records` (`many`: the plural when it is not WORD + s)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def rows(rs: model.RuleSet) -> list[Row]:
    s = rs.settings
    out = [
        Row(
            "Settings",
            "settings",
            f"{s.source.file}:{s.source.line}",
            f"{_n(len(s.users), 'user')}, {_n(len(s.record_fields), 'custom field')}, {s.transport.type} transport, "
            f"{_n(len(s.mailboxes), 'mailbox', 'mailboxes')}, zone {s.timezone}",
            s.source.hash[:12],
        )
    ]
    for t in rs.templates.values():
        out.append(
            Row(
                "Template",
                t.name,
                f"{t.source.file}:{t.source.line}",
                f"subject {t.subject!r}" + (", text + html" if t.html else ", text"),
                t.source.hash[:12],
            )
        )
    for q in rs.sequences.values():
        emails = sum(1 for st in q.steps if st.kind is model.StepKind.EMAIL)
        auto = ", auto-enrolls" if q.enroll_when is not None else ""
        out.append(
            Row(
                "Sequence",
                q.name,
                f"{q.source.file}:{q.source.line}",
                f"{_n(len(q.steps), 'step')} ({emails} email, {len(q.steps) - emails} task), "
                f"{'/'.join(q.applies_to)}, sent as {q.sender.user or q.sender.kind}, on_edit {q.on_edit}{auto}",
                q.source.hash[:12],
            )
        )
    for v in rs.views.values():
        out.append(Row("View", v.name, f"{v.source.file}:{v.source.line}", f"{v.module} records", v.source.hash[:12]))
    for c in rs.campaigns.values():
        to = f"view {c.to.view}" if c.to.view else ("criteria" if c.to.where else _n(len(c.to.records), "record"))
        when = _at(c.send_at) if c.send_at else "when applied"
        out.append(
            Row(
                "Campaign",
                c.name,
                f"{c.source.file}:{c.source.line}",
                f"{c.module} via {to}, {when}, {_n(len(c.follow_ups), 'follow-up')}, owner {c.owner}",
                c.source.hash[:12],
            )
        )
    for p in rs.processes.values():
        fu = p.follow_up
        rem = f"reminders every {fu.every or 'once'} at {fu.at!r} {fu.timezone}" if fu.enabled else "no reminders"
        rem += ", as a digest" if fu.enabled and fu.digest else ""
        out.append(
            Row(
                "SalesProcess",
                p.name,
                f"{p.source.file}:{p.source.line}",
                f"{p.module}, {_n(len(p.stages), 'stage')} ({sum(1 for x in p.stages if x.max)} with max), {rem}",
                p.source.hash[:12],
            )
        )
    for r in rs.tests.values():
        out.append(
            Row(
                "RuleTest",
                r.name,
                f"{r.source.file}:{r.source.line}",
                f"{_n(len(r.records), 'record')}, {_n(len(r.events), 'event')}, from {_at(r.start)}",
                r.source.hash[:12],
            )
        )
    return out
