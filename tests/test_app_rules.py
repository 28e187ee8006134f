"""A rule set put in force (outreach/app/rules.py): validated whole, applied, and swapped with its scheduler and
transport at once; a reload that cannot hold leaves the old set running."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from outreach.app import rules as app_rules
from outreach.app import sending
from outreach.mail import links
from outreach.mail import transport as mail_transport
from outreach.store import Store
from tests.conftest import ROOT

MONDAY = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


class Counting:
    """A transport that takes every message and counts its closes."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = 0

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> mail_transport.SendResult:
        self.sent.append(message)
        return mail_transport.SendResult(True, detail="taken")

    async def close(self) -> None:
        self.closed += 1


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    where = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", where, ignore=shutil.ignore_patterns("tests"))
    return where


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite:///{tmp_path / 'o.db'}")
    try:
        yield s
    finally:
        await s.close()


@pytest.mark.unit
def test_load_validates_the_whole_directory_and_lists_every_error(rules_dir: Path) -> None:
    assert app_rules.load(str(rules_dir), MONDAY).sequences.keys() >= {"welcome", "inbound-nurture"}
    (rules_dir / "sequences" / "welcome.yaml").write_text("kind: Sequence\nname: welcome\nsteps: 3\n")
    with pytest.raises(app_rules.RulesInvalid) as caught:
        app_rules.load(str(rules_dir), MONDAY)
    assert "welcome.yaml:3:8: error" in str(caught.value)


@pytest.mark.store
async def test_a_swap_applies_the_set_then_replaces_scheduler_and_transport_together(
    rules_dir: Path, store: Store
) -> None:
    in_force = app_rules.InForce(store)
    first, second = Counting(), Counting()
    done = await in_force.swap(app_rules.load(str(rules_dir), MONDAY), first, now=MONDAY)
    assert ("Sequence", "welcome") in done["added"]
    old_scheduler = in_force.scheduler
    assert old_scheduler is not None and in_force.transport is first

    shutil.rmtree(rules_dir / "campaigns")  # the campaign goes: a changed set
    changed = app_rules.load(str(rules_dir), MONDAY)
    done = await in_force.swap(changed, second, now=MONDAY + dt.timedelta(hours=1))
    assert done["removed"] == [("Campaign", "spring-webinar")]
    assert in_force.ruleset is changed and in_force.scheduler is not old_scheduler and in_force.transport is second
    assert (first.closed, second.closed) == (1, 0)  # the replaced transport lets its connections go
    await in_force.swap(changed, second, now=MONDAY + dt.timedelta(hours=2))
    assert second.closed == 0  # the same transport kept is not closed
    active = await store.active_definitions()
    assert ("Campaign", "spring-webinar") not in active and ("Sequence", "welcome") in active


@pytest.mark.store
async def test_a_reload_of_invalid_rules_keeps_the_old_set_running(
    rules_dir: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    in_force = app_rules.InForce(store)
    transport = Counting()
    await in_force.swap(app_rules.load(str(rules_dir), MONDAY), transport, now=MONDAY)
    running = in_force.ruleset
    (rules_dir / "sequences" / "welcome.yaml").write_text("kind: Sequence\nname: welcome\nsteps: 3\n")
    with caplog.at_level(logging.ERROR, logger="outreach"):
        assert await in_force.reload(str(rules_dir), now=MONDAY) is False
    assert in_force.ruleset is running and in_force.transport is transport and transport.closed == 0
    assert "the rules were not reloaded; the old ones keep running" in caplog.text
    assert "welcome.yaml:3:8" in caplog.text


@pytest.mark.store
async def test_a_reload_of_an_alias_bomb_is_refused_at_the_alias_quickly_and_the_old_set_runs(
    rules_dir: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's 1 MB View (a 600,000-character value aliased 100,000 times) once took a reload 97 s and 6 GB."""
    import time

    in_force = app_rules.InForce(store)
    await in_force.swap(app_rules.load(str(rules_dir), MONDAY), Counting(), now=MONDAY)
    running = in_force.ruleset
    aliases = ", ".join(["*a"] * 100_000)
    (rules_dir / "views" / "hostile.yaml").write_text(
        f"kind: View\nname: hostile\nmodule: lead\nwhere:\n  field: country\n  in: [&a {'a' * 600_000}, {aliases}]\n"
    )
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="outreach"):
        assert await in_force.reload(str(rules_dir), now=MONDAY) is False
    assert time.monotonic() - started < 10
    assert in_force.ruleset is running
    assert "hostile.yaml:6:600033: error: aliases expand the file to more than 4194304 characters" in caplog.text


@pytest.mark.store
async def test_a_reload_whose_transport_cannot_be_built_keeps_the_old_set(
    rules_dir: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_force = app_rules.InForce(store)
    await in_force.swap(app_rules.load(str(rules_dir), MONDAY), Counting(), now=MONDAY)
    running = in_force.ruleset
    settings = rules_dir / "settings.yaml"
    settings.write_text(settings.read_text().replace(
        "  type: maildir              # embedded default: every message lands as a file in var/outbox\n"
        "  maildir: var/outbox\n",
        "  type: smtp\n  smtp: {host: smtp.example.com, port: 587, security: starttls, username: outreach,\n"
        "         password_env: OUTREACH_TEST_SMTP_PASSWORD}\n",
    ))  # fmt: skip
    monkeypatch.delenv("OUTREACH_TEST_SMTP_PASSWORD", raising=False)
    assert await in_force.reload(str(rules_dir), now=MONDAY) is False
    assert in_force.ruleset is running
    monkeypatch.setenv("OUTREACH_TEST_SMTP_PASSWORD", "s3cret")
    assert await in_force.reload(str(rules_dir), now=MONDAY) is True
    assert in_force.ruleset.settings.transport.type == "smtp"
    await in_force.close()


@pytest.mark.unit
def test_links_are_signed_with_the_given_keys_or_the_settings_secret(
    rules_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ruleset = app_rules.load(str(rules_dir), MONDAY)
    assert ruleset.settings.tracking is not None
    monkeypatch.delenv(ruleset.settings.tracking.secret_env or "OUTREACH_SECRET", raising=False)
    assert sending.links_for(ruleset) is None  # no secret, no state directory: no link (a template asking blocks)
    given = sending.links_for(ruleset, keys=links.Keys((b"k" * 32,)))
    assert given is not None and given.unsubscribe(bytes(16)).startswith(ruleset.settings.tracking.base_url)
    monkeypatch.setenv(ruleset.settings.tracking.secret_env or "OUTREACH_SECRET", "k" * 32)
    from_settings = sending.links_for(ruleset)
    assert from_settings is not None and from_settings.unsubscribe(bytes(16)) == given.unsubscribe(bytes(16))
