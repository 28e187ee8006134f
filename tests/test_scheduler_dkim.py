"""DKIM and Auto-Submitted through the scheduler, the store and the Maildir, on SQLite and PostgreSQL: the rule set
put in force as the daemon does (`InForce.swap`) signs sequence and reminder mail when it is queued, with the key
Settings.dkim names; reminders say `Auto-Submitted: auto-generated`, a rep's sequence mail does not."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import dkim
import pytest
import sqlalchemy as sa
import yaml

from outreach.app import enrolling
from outreach.app import rules as app_rules
from outreach.engine import sequences as seq
from outreach.mail import dkim as mail_dkim
from outreach.mail import transport as mail_transport
from outreach.store import Store, tables
from tests import dkim_keys
from tests.conftest import ROOT
from tests.worlds import MONDAY, Row, rows

pytestmark = pytest.mark.store

UTC = dt.UTC
PEOPLE = (
    Row(2, "L1", "lead", "jo@example.org", {"first_name": "Jo", "owner": "anna", "company": "Fjord AS"}),
    # partner-leads: in New since Saturday, overdue Monday 10:00, reminded Tuesday at 07:00 UTC
    Row(3, "L2", "lead", "kim@example.net", {"first_name": "Kim", "owner": "anna", "company": "Kim GmbH",
                                             "stage": "New", "stage_entered_at": dt.datetime(2026, 11, 21, 10, tzinfo=UTC)}),
)  # fmt: skip


@dataclasses.dataclass
class World:
    store: Store
    rules_dir: Path
    key_file: Path
    in_force: app_rules.InForce
    outbox: Path

    def record(self) -> tuple[str, str]:
        key = mail_dkim.parse_key("example.com", "s2026", self.key_file.read_text(encoding="utf-8"))
        return mail_dkim.dns_record(key)

    def verifies(self, data: bytes) -> bool:
        return bool(dkim.verify(data, dnsfunc=dkim_keys.dns(dict([self.record()]))))

    async def queued(self) -> list[bytes]:
        """The bytes the outbox keeps, in the order they were queued."""
        async with self.store.engine.connect() as conn:
            o = tables.outbox
            return [bytes(m) for m in (await conn.execute(sa.select(o.c.message).order_by(o.c.id))).scalars()]

    def sent(self) -> list[bytes]:
        """The Maildir's files (LF line ends, the envelope's Return-Path and Envelope-To in front)."""
        new = self.outbox / "new"
        return [p.read_bytes() for p in sorted(new.iterdir())] if new.exists() else []


@pytest.fixture
async def world(backend: tuple[str, str | None], tmp_path: Path) -> AsyncIterator[World]:
    rules_dir = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules_dir)
    key_file = tmp_path / "dkim-example.com"
    key_file.write_text(dkim_keys.rsa_pem(2048), encoding="utf-8")
    path = rules_dir / "settings.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["dkim"] = [{"domain": "example.com", "selector": "s2026", "private_key_file": str(key_file)}]
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    ruleset = app_rules.load(str(rules_dir), MONDAY)
    url, schema = backend
    store = await Store.open(url, fields=ruleset.settings.fields, upgrade=True, schema=schema)
    await store.import_records(rows(*PEOPLE), now=MONDAY - dt.timedelta(days=3))
    in_force = app_rules.InForce(store)  # as the daemon builds it: the signer of Settings.dkim by default
    outbox = tmp_path / "outbox"
    await in_force.swap(ruleset, mail_transport.MaildirTransport(str(outbox)), now=MONDAY - dt.timedelta(days=3))
    try:
        yield World(store, rules_dir, key_file, in_force, outbox)
    finally:
        await store.close()


async def test_sequence_mail_is_queued_signed_and_verifies_against_the_published_key(world: World) -> None:
    w = world
    ruleset = w.in_force.ruleset
    record = await w.store.get_record("L1")
    enrolled = await enrolling.enroll(w.store, ruleset, record, ruleset.sequences["inbound-nurture"],
                                      enrolled_by="anna", now=MONDAY)  # fmt: skip
    assert isinstance(enrolled, seq.Enrollment)
    assert w.in_force.scheduler is not None
    report = await w.in_force.scheduler.tick(MONDAY)
    assert (report.queued, report.sent) == (1, 1)
    (stored,) = await w.queued()
    assert stored.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;\r\n s=s2026;")
    assert w.verifies(stored)
    (sent,) = w.sent()
    assert w.verifies(sent)  # as written to the Maildir: LF line ends and the envelope's headers in front
    assert not w.verifies(stored.replace(b"Quick question, Jo", b"Quick question, Al"))
    parsed = email.message_from_bytes(stored, policy=email.policy.default)
    assert parsed["From"] == "Anna Berger <anna@example.com>"
    assert "Auto-Submitted" not in parsed  # a rep's own mail: replies and auto-replies are wanted


async def test_reminder_mail_is_auto_submitted_and_signed(world: World) -> None:
    w = world
    assert w.in_force.scheduler is not None
    await w.in_force.scheduler.tick(dt.datetime(2026, 11, 24, 6, 0, tzinfo=UTC))
    report = await w.in_force.scheduler.tick(dt.datetime(2026, 11, 24, 7, 0, tzinfo=UTC))
    assert report.reminders == 1
    (stored,) = await w.queued()
    parsed = email.message_from_bytes(stored, policy=email.policy.default)
    assert parsed["Subject"] == "Overdue: Kim GmbH is still in New"
    assert parsed["From"] == "Example GmbH <sales@example.com>" and parsed["Auto-Submitted"] == "auto-generated"
    assert w.verifies(stored)
    assert b"auto-submitted" in stored.split(b"bh=", 1)[0]  # the header is signed: it cannot be taken off
    assert not w.verifies(stored.replace(b"Auto-Submitted: auto-generated", b"Auto-Submitted: no"))


async def test_a_reload_whose_dkim_key_is_gone_keeps_the_old_set(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    w = world
    running = w.in_force.scheduler
    assert running is not None and running.signer is not None
    w.key_file.unlink()
    with caplog.at_level(logging.ERROR, logger="outreach"):
        assert await w.in_force.reload(str(w.rules_dir), now=MONDAY) is False
    assert w.in_force.scheduler is running
    assert f"the DKIM key of example.com: cannot read {w.key_file}" in caplog.text
    w.key_file.write_text("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n", encoding="utf-8")
    assert await w.in_force.reload(str(w.rules_dir), now=MONDAY) is False
    assert "the DKIM key of example.com is a public key, not a private key" in caplog.text
    assert w.in_force.scheduler is running
