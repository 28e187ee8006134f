"""A rule set put in force: validated whole, its definitions stored, and the running scheduler swapped at once.

- `load`: the whole rule directory validated (decision 6: all or nothing), or RulesInvalid with every error;
- `apply`: the rule set's definitions become the ones in force in the store (`outreach apply`, the daemon's start
  and reload, a RuleTest's start and `apply` event); a sequence removed stops its live enrollments, as the engine
  decides (outreach/engine/events.py), in the same transaction;
- `InForce`: the rule set a process runs and the scheduler (with its transport) that runs it; `swap` replaces
  them together only once the new set is applied, so a tick runs wholly on the old set or wholly on the new one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from outreach.app import campaigns, enrolling, sending
from outreach.app import scheduler as scheduler_module
from outreach.engine import events
from outreach.mail import credentials, dkim
from outreach.mail import links as mail_links
from outreach.mail import transport as mail_transport
from outreach.rules import diagnostics, model
from outreach.rules import validate as rules_validate
from outreach.store import changes

log = logging.getLogger("outreach")

Applied = dict[str, list[tuple[str, str]]]  # {"added" | "changed" | "removed" | "renamed": [(kind, name), ...]}


class RulesInvalid(Exception):
    """The rule directory has errors; the message lists them (file:line:col: ...)."""


class ApplyStore(Protocol):
    def applying_definitions(
        self, wanted: Mapping[tuple[str, str], tuple[str, Mapping[str, Any]]], *, now: dt.datetime,
        renamed_from: Mapping[tuple[str, str], tuple[str, ...]] | None = None,
    ) -> AbstractAsyncContextManager[changes.AppliedDefinitions]: ...  # fmt: skip


class RulesStore(scheduler_module.SchedulerStore, ApplyStore, Protocol):
    """What a rule set in force needs of the store: applying it, and running it."""


def load(rules_dir: str, now: dt.datetime) -> model.RuleSet:
    """The whole rule directory, validated; RulesInvalid with every error when anything is wrong."""
    result = rules_validate.validate([rules_dir], now=now)
    if result.ruleset is None:
        raise RulesInvalid(diagnostics.format_text(result.errors))
    return result.ruleset


def definitions(ruleset: model.RuleSet) -> dict[tuple[str, str], tuple[str, Mapping[str, Any]]]:
    """{(kind, name): (hash, body)} of every definition `apply` stores."""
    return {key: (src.hash, src.body) for key, src in ruleset.live_definitions().items()}


async def apply(store: ApplyStore, ruleset: model.RuleSet, *, now: dt.datetime) -> Applied:
    """Make the rule set's definitions the ones in force, in one transaction; returns what was added, changed,
    renamed and removed. Active enrollments stay on their version (or move at their next step, `on_edit:
    next_step`); the live enrollments of a removed sequence stop ("sequence removed"); those of a renamed one go on
    under its new name (`renamed_from`)."""
    return await apply_definitions(store, definitions(ruleset), now=now, renamed_from=ruleset.renamed_from(),
                                   ruleset=ruleset)  # fmt: skip


async def apply_definitions(
    store: ApplyStore, wanted: Mapping[tuple[str, str], tuple[str, Mapping[str, Any]]], *, now: dt.datetime,
    renamed_from: Mapping[tuple[str, str], tuple[str, ...]] | None = None, ruleset: model.RuleSet | None = None,
) -> Applied:  # fmt: skip
    """`apply`, given the definitions ({(kind, name): (hash, body)}, and {(kind, name): earlier names}) rather
    than the rule set. In the same transaction: the live enrollments of a removed sequence stop; those on the
    version in force of a sequence that was only renamed (or lost its `renamed_from`), which runs the same steps
    as the new one, move to the new version (the engine decides both: outreach/engine/events.py)."""
    async with store.applying_definitions(wanted, now=now, renamed_from=renamed_from) as tx:
        removed = [name for kind, name in tx.done["removed"] if kind == "Sequence"]
        if removed:
            live = [enrolling.enrollment_of(r) for r in await tx.enrollments(sequences=removed)]
            for e in events.of_removed_sequence(live, now).enrollments:
                await tx.save_enrollment(enrolling.columns_of(e))
        before = {(r.kind, r.new): r.old_hash for r in tx.renamed}
        changed = [name for kind, name in tx.done["changed"] if kind == "Sequence"]
        for name in sorted({*changed, *(new for kind, new in before if kind == "Sequence")}):
            digest, body = wanted[("Sequence", name)]
            old = before.get(("Sequence", name)) or tx.previous.get(("Sequence", name))
            old_body = await tx.definition_body("Sequence", name, old) if old is not None else None
            if old is None or old_body is None or not events.same_steps(old_body, body):
                continue
            live = [enrolling.enrollment_of(r) for r in await tx.enrollments(sequences=[name])]
            for e in events.of_renamed_sequence(live, old, old_body, digest, body).enrollments:
                await tx.save_enrollment(enrolling.columns_of(e))
        if ruleset is not None:  # each campaign's run follows its definition (campaigns.SlotFull: nothing applied)
            digests = {name: wanted[("Campaign", name)][0] for name in ruleset.campaigns}
            gone = [name for kind, name in tx.done["removed"] if kind == "Campaign"]
            for line in await campaigns.apply_runs(tx, ruleset, digests, now, gone):
                log.warning("%s", line)
        done: Applied = {**tx.done, "renamed": [(r.kind, r.new) for r in tx.renamed]}
        return done


class InForce:
    """The rule set a process runs, and its scheduler and transport. `links` makes the signed links of a rule set
    (the daemon's sign with the secret Settings names or the one in its state directory; a RuleTest's with its
    own); the web side verifies tokens with `links_in_force`."""

    def __init__(
        self,
        store: RulesStore,
        *,
        links: Callable[[model.RuleSet], mail_links.Links | None] = sending.links_for,
        signer: Callable[[model.RuleSet], dkim.Signer | None] = sending.signer_for,
        **scheduler_options: Any,
    ) -> None:
        self.store = store
        self.links = links
        self.signer = signer  # the DKIM signer of a rule set (Settings.dkim); RuleTests sign nothing
        self.scheduler_options = scheduler_options  # more Scheduler keywords (batch sizes, rng)
        self.scheduler: scheduler_module.Scheduler | None = None
        self.links_in_force: mail_links.Links | None = None

    @property
    def ruleset(self) -> model.RuleSet:
        assert self.scheduler is not None, "no rule set is in force yet"
        return self.scheduler.ruleset

    @property
    def transport(self) -> mail_transport.Transport | None:
        return self.scheduler.transport if self.scheduler is not None else None

    async def swap(self, ruleset: model.RuleSet, transport: mail_transport.Transport | None, *,
                   now: dt.datetime) -> Applied:  # fmt: skip
        """Apply `ruleset` and make it, with `transport`, the one the scheduler runs; the old transport, when it
        is replaced, lets its connections go. Nothing is swapped when applying fails."""
        signed = self.links(ruleset)  # before anything changes: a weak secret refuses the rule set
        signer = self.signer(ruleset)  # and so does a DKIM key that is missing or cannot sign
        done = await apply(self.store, ruleset, now=now)
        changed = {k: len(v) for k, v in done.items() if v}
        if changed:
            log.info("rules applied: %s", ", ".join(f"{n} {k}" for k, n in changed.items()))
        old = self.transport
        self.scheduler = scheduler_module.Scheduler(self.store, ruleset, transport, links=signed, signer=signer,
                                                    **self.scheduler_options)  # fmt: skip
        self.links_in_force = signed
        if old is not None and old is not transport:
            await old.close()
        return done

    async def reload(self, rules_dir: str, *, now: dt.datetime) -> bool:
        """SIGHUP: the rule directory validated whole and its transport built first; the new set replaces the
        old one only when both hold, else the errors are logged and the old set keeps running."""
        try:
            ruleset = load(rules_dir, now)
            transport = sending.transport_for(ruleset)
        except (RulesInvalid, sending.NotBuilt, credentials.MissingSecret) as exc:
            log.error("the rules were not reloaded; the old ones keep running:\n%s", exc)
            return False
        try:
            await self.swap(ruleset, transport, now=now)
        # a weak secret, a DKIM key missing (dkim.KeyInvalid too), a campaign slot over its limit
        except (mail_links.WeakSecret, credentials.MissingSecret, campaigns.SlotFull) as exc:
            await transport.close()
            log.error("the rules were not reloaded; the old ones keep running:\n%s", exc)
            return False
        except BaseException:
            if transport is not self.transport:
                await transport.close()
            raise
        return True

    async def close(self) -> None:
        if self.transport is not None:
            await self.transport.close()
