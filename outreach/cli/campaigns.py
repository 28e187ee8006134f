"""Commands on bulk campaigns: list and show them, stop, start and delete them, and their statistics (a table, the
recipients of a category, or the funnel as a chart)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from outreach.app import campaigns as app_campaigns
    from outreach.engine import campaigns as engine
    from outreach.store import Store

from outreach.cli import options, output
from outreach.rules import model

F = TypeVar("F", bound=Callable[..., Any])

# The categories of a step's statistics whose recipients `stats --recipients` lists: app.campaigns.CATEGORIES, kept
# here so that the option's choices (and Tab completion) need not import the application layer;
# tests/test_campaigns_cli.py checks that the two agree.
CATEGORIES = ("recipients", "skipped", "pending", "sent", "delivered", "not_delivered", "bounced", "opened",
              "clicked", "unclicked", "unknown")  # fmt: skip

# What the funnel chart draws of each step, widest first, with the rate each stage has in the statistics.
FUNNEL = (("sent", None), ("delivered", "delivered"), ("opened", "opened"), ("clicked", "clicked"))


@click.group()
def campaigns() -> None:
    """Bulk campaigns: list, show, stop, start, delete and their statistics.

    A campaign is defined in the rules (kind: Campaign) and goes at its
    send_at once applied; the daemon (`outreach run`) picks its recipients,
    sends its mail and, when due, its follow-ups. Only its owner may stop or
    start it; anyone may delete it. Times are in UTC.

    \b
    Examples:
      outreach campaigns list
      outreach campaigns show spring-webinar
      outreach campaigns stats spring-webinar --recipients opened
      outreach campaigns stop spring-webinar --as anna
    """


def _label(step: int) -> str:
    return "campaign mail" if step == 0 else f"follow-up {step}"


def _named(ruleset: model.RuleSet, name: str) -> model.Campaign | None:
    return ruleset.campaigns.get(name)


def _check_user(ruleset: model.RuleSet, user: str) -> None:
    if user not in ruleset.settings.users:
        raise click.BadParameter(f"no user {user!r} (users: {', '.join(ruleset.settings.users)})", param_hint="--as")


def _detail(db_url: str | None, ruleset: model.RuleSet, name: str) -> app_campaigns.CampaignView:
    """One campaign as `show` and `stats` tell it; exit 1 when neither the rules nor the store know it."""
    from outreach.app import campaigns as app_campaigns

    async def go(store: Store) -> app_campaigns.CampaignView:
        return await app_campaigns.detail(store, ruleset, name)

    try:
        return options.on_store(db_url, ruleset, go)
    except app_campaigns.NoSuchCampaign as exc:
        raise click.ClickException(f"{exc} (campaigns: {', '.join(ruleset.campaigns) or 'none'})") from None


def _send_at(view: app_campaigns.CampaignView, campaign: model.Campaign | None) -> str:
    """When the campaign mail goes: the run's time, or, for a campaign not applied yet, what its rules say."""
    if view.send_at is not None:
        return options.when(view.send_at)
    if campaign is not None and campaign.send_at is not None:
        return options.when(campaign.send_at)
    return "when applied"


def _skipped(stats: engine.Stats) -> int:
    return sum(stats.skipped.values())


# --- list ---------------------------------------------------------------------------------------------------


@campaigns.command("list")
@output.output_format(help="text: a table; json: a list of objects, one per campaign, with every step's statistics "
                           "(times in ISO 8601).")  # fmt: skip
@options.rules_option
@options.db_option
def campaigns_list(fmt: str, rules_dir: str, db_url: str | None) -> None:
    """Every campaign (scheduled, sending, sent, stopped, deleted, or not applied yet) with its counts.

    Each row: the campaign's status, owner, module and send time, and of its
    campaign mail how many recipients were picked, skipped, sent, opened
    (by people) and clicked. A campaign removed from the rules stays listed,
    deleted, with what it sent.

    \b
    Examples:
      outreach campaigns list
      outreach campaigns list --json
    """
    from outreach.app import campaigns as app_campaigns

    ruleset = options.load_rules(rules_dir)

    async def go(store: Store) -> list[app_campaigns.CampaignView]:
        return await app_campaigns.overview(store, ruleset)

    found = options.on_store(db_url, ruleset, go)
    if fmt == "json":
        click.echo(options.dumps([_json(v) for v in found]))
        return
    lines = []
    for v in found:
        main = v.steps[0].stats
        lines.append([v.name, v.status, v.owner, v.module, _send_at(v, _named(ruleset, v.name)),
                      f"{main.recipients:,}", f"{_skipped(main):,}", f"{main.sent:,}", f"{main.opened:,}",
                      f"{main.clicked:,}", f"{len(v.steps) - 1}", v.reason or ""])  # fmt: skip
    columns = ["campaign", "status", "owner", "module", "send at", "recipients", "skipped", "sent", "opened",
               "clicked", "follow-ups", "reason"]  # fmt: skip
    output.print_tables(output.table(columns, lines, title=output.plural(len(found), "campaign"), free=["reason"],
                                     numbers=columns[5:11]))  # fmt: skip


def _json(v: app_campaigns.CampaignView) -> dict[str, Any]:
    """A campaign for scripts: its run, and each step with its statistics (the same keys `stats --json` gives)."""
    return {"name": v.name, "status": v.status, "owner": v.owner, "module": v.module, "send_at": v.send_at,
            "started_at": v.started_at, "reason": v.reason, "steps": [_step_json(s) for s in v.steps]}  # fmt: skip


def _step_json(s: app_campaigns.StepView) -> dict[str, Any]:
    return {"step": s.step, "label": _label(s.step), "template": s.template, "to": s.to, "due_at": s.due_at,
            "status": s.status, **{k: v for k, v in s.stats.as_dict().items() if k not in ("step", "template")}}  # fmt: skip


# --- show ---------------------------------------------------------------------------------------------------


def _to(campaign: model.Campaign | None) -> str:
    """Whom the campaign mail goes to, as its rules say."""
    if campaign is None:
        return "(no longer in the rules)"
    if campaign.to.view is not None:
        return f"view {campaign.to.view}"
    if campaign.to.records:
        return f"records {', '.join(campaign.to.records)}"
    return "its own criteria (to.where)"


def _due(s: app_campaigns.StepView, campaign: model.Campaign | None) -> str:
    """When a step goes (or went); for a follow-up whose campaign mail has not gone yet, what its rules say."""
    if s.due_at is not None:
        return options.when(s.due_at)
    if campaign is None:
        return ""
    if s.step == 0:
        return options.when(campaign.send_at) if campaign.send_at is not None else "when applied"
    if s.step > len(campaign.follow_ups):
        return ""
    f = campaign.follow_ups[s.step - 1]
    if f.at is not None:
        return f"{options.when(f.at)} (or at once after the campaign mail)"
    return f"{f.after} after the campaign mail"


def _state_rows(steps: Sequence[app_campaigns.StepView]) -> list[list[str]]:
    """Recipients by state, a column per step: picked, where their mail stands, and the skipped by reason."""
    stats = [s.stats for s in steps]
    rows = [
        ["picked", *(f"{x.recipients:,}" for x in stats)],
        ["pending", *(f"{x.pending:,}" for x in stats)],
        ["sent", *(f"{x.sent:,}" for x in stats)],
        ["delivered", *(f"{x.delivered:,}" for x in stats)],
        ["not delivered", *(f"{x.not_delivered:,}" for x in stats)],
        ["bounced", *(f"{x.bounced:,}" for x in stats)],
        ["unknown", *(f"{x.unknown:,}" for x in stats)],
        ["opened", *(f"{x.opened:,}" for x in stats)],
        ["clicked", *(f"{x.clicked:,}" for x in stats)],
        ["skipped", *(f"{_skipped(x):,}" for x in stats)],
    ]
    reasons = sorted({reason for x in stats for reason in x.skipped})
    rows += [[f"  {reason}", *(f"{x.skipped.get(reason, 0):,}" for x in stats)] for reason in reasons]
    return rows


@campaigns.command("show")
@click.argument("name")
@output.output_format(help="text: the run, its steps and its recipients by state, as tables; json: one object (the "
                           "run and every step with its statistics; times in ISO 8601).")  # fmt: skip
@options.rules_option
@options.db_option
def campaigns_show(name: str, fmt: str, rules_dir: str, db_url: str | None) -> None:
    """Show one campaign: its run, its steps with their times, and its recipients by state.

    The run: its status, when it goes (or went), when it started, and why it
    is stopped or deleted. The steps: the campaign mail and each follow-up,
    to whom, when due and their status. Recipients by state: picked (to be
    mailed), pending (not yet answered by the relay), sent, delivered, not
    delivered, bounced, unknown (the relay's answer lost), opened and
    clicked, and the skipped by reason (no valid email, suppressed, deleted,
    same address twice ...).

    \b
    Examples:
      outreach campaigns show spring-webinar
      outreach campaigns show spring-webinar --json
    """
    ruleset = options.load_rules(rules_dir)
    v = _detail(db_url, ruleset, name)
    if fmt == "json":
        click.echo(options.dumps(_json(v)))
        return
    campaign = _named(ruleset, name)
    click.echo(output.visible(f"campaign {v.name}: {v.status}" + (f" ({v.reason})" if v.reason else "")))
    click.echo(f"owner {v.owner}, module {v.module}, to {_to(campaign)}")
    started = f", started {options.when(v.started_at)}" if v.started_at is not None else ""
    click.echo(f"send at {_send_at(v, campaign)}{started}")
    steps = [[_label(s.step), s.template, _to(campaign) if s.step == 0 else s.to, _due(s, campaign), s.status]
             for s in v.steps]  # fmt: skip
    states = _state_rows(v.steps)
    output.print_tables(
        output.table(["step", "template", "to", "due", "status"], steps, title="steps", free=["due"]),
        output.table(["recipients", *(_label(s.step) for s in v.steps)], states, title="recipients by state",
                     numbers=[_label(s.step) for s in v.steps]),
    )  # fmt: skip


# --- stop, start, delete ------------------------------------------------------------------------------------


def _as_option(help: str) -> Callable[[F], F]:
    return click.option("--as", "as_user", required=True, metavar="USER", help=help)


async def _status(store: Store, ruleset: model.RuleSet, name: str) -> str:
    """The campaign's status before a stop or start: they change nothing of one stopped (or started) already."""
    from outreach.app import campaigns as app_campaigns

    return (await app_campaigns.detail(store, ruleset, name)).status


def _manage(db_url: str | None, ruleset: model.RuleSet, action: Any) -> Any:
    """Run a stop, start or delete; a campaign never applied, or a user who may not, is a one-line error (exit 1)."""
    from outreach.app import campaigns as app_campaigns

    try:
        return options.on_store(db_url, ruleset, action)
    except (app_campaigns.NoSuchCampaign, app_campaigns.NotAllowed) as exc:
        raise click.ClickException(str(exc)) from None


def _taken(n: int) -> str:
    if n == 1:
        return "1 message rendered but not yet sent was taken back"
    return f"{output.plural(n, 'message')} rendered but not yet sent were taken back"


@campaigns.command("stop")
@click.argument("name")
@_as_option("Who stops it: only the campaign's owner may.")
@options.rules_option
@options.db_option
def campaigns_stop(name: str, as_user: str, rules_dir: str, db_url: str | None) -> None:
    """Stop a campaign (its owner only): nothing more of it goes, its follow-ups neither, until it is started again.

    Mail already handed to the relay stays sent. Mail rendered into the
    outbox but not yet sent is taken back: it goes when the campaign starts
    again. Stopping a campaign whose mail went out stops its follow-ups.
    Anyone else gets an error (exit status 1): they may view or delete it.

    \b
    Example:
      outreach campaigns stop spring-webinar --as anna
    """
    from outreach.app import campaigns as app_campaigns

    ruleset = options.load_rules(rules_dir)
    _check_user(ruleset, as_user)
    now = options.now()

    async def go(store: Store) -> tuple[str, tuple[engine.Run, int]]:
        before = await _status(store, ruleset, name)
        return before, await app_campaigns.stop(store, name, user=as_user, now=now)

    before, (run, taken) = _manage(db_url, ruleset, go)
    if before in ("stopped", "deleted"):  # nothing changed
        why = f" ({run.reason})" if run.reason else ""
        click.echo(output.visible(f"campaign {name} is {run.status} already{why}; nothing changed"))
        return
    click.echo(f"campaign {name} stopped by {as_user}: nothing more of it goes until "
               f"`outreach campaigns start {name} --as {as_user}`")  # fmt: skip
    if taken:
        click.echo(f"{_taken(taken)} (they go when it starts again)")


@campaigns.command("start")
@click.argument("name")
@_as_option("Who starts it: only the campaign's owner may.")
@options.rules_option
@options.db_option
def campaigns_start(name: str, as_user: str, rules_dir: str, db_url: str | None) -> None:
    """Start a stopped campaign again (its owner only).

    One that had not started goes at its send time, or at once when that has
    passed; one whose campaign mail had started sending goes on where it
    stopped; one whose campaign mail went out sends its follow-ups when they
    are due. A deleted campaign cannot be started (exit status 1): give it a
    new name in the rules to send it again.

    \b
    Example:
      outreach campaigns start spring-webinar --as anna
    """
    from outreach.app import campaigns as app_campaigns

    ruleset = options.load_rules(rules_dir)
    _check_user(ruleset, as_user)
    now = options.now()

    async def go(store: Store) -> tuple[str, engine.Run]:
        before = await _status(store, ruleset, name)
        try:
            return before, await app_campaigns.start(store, name, user=as_user, now=now,
                                                     limits=ruleset.settings.limits)  # fmt: skip
        except app_campaigns.SlotFull as exc:
            raise click.ClickException(f"campaign {name} was not started: {exc}") from None

    before, run = _manage(db_url, ruleset, go)
    if before != "stopped":  # nothing changed
        if run.status == "deleted":
            raise click.ClickException(f"campaign {name} is deleted and cannot be started again; give it a new name "
                                       f"in the rules to send it again")  # fmt: skip
        click.echo(f"campaign {name} is {run.status}, not stopped; nothing changed")
        return
    if run.status == "scheduled":
        then = f"scheduled for {options.when(run.send_at)}"
    elif run.status == "sending":
        then = "its campaign mail goes on where it stopped"
    else:
        then = "its campaign mail went out; its follow-ups go when due"
    click.echo(f"campaign {name} started again by {as_user}: {then}")


@campaigns.command("delete")
@click.argument("name")
@_as_option("Who deletes it: anyone may.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before deleting (for scripts).")
@options.rules_option
@options.db_option
def campaigns_delete(name: str, as_user: str, yes: bool, rules_dir: str, db_url: str | None) -> None:
    """Delete a campaign (anyone may): it and its follow-ups send nothing more.

    Asks first (--yes does not). Mail rendered into the outbox but not yet
    sent is taken back; mail already sent stays in the statistics. A deleted
    campaign stays deleted, even if its definition stays in the rules: give
    it a new name to send it again.

    \b
    Examples:
      outreach campaigns delete spring-webinar --as ben
      outreach campaigns delete spring-webinar --as ben --yes
    """
    from outreach.app import campaigns as app_campaigns

    ruleset = options.load_rules(rules_dir)
    _check_user(ruleset, as_user)
    before = _detail(db_url, ruleset, name)
    if before.status == "deleted":
        click.echo(output.visible(f"campaign {name} is deleted already ({before.reason}); nothing changed"))
        return
    follow_ups = output.plural(len(before.steps) - 1, "follow-up")
    if not yes:
        click.confirm(f"delete campaign {name} ({before.status}, owner {before.owner}) and its {follow_ups}?",
                      abort=True, err=True)  # fmt: skip
    now = options.now()

    async def go(store: Store) -> tuple[tuple[engine.Run, int], app_campaigns.CampaignView]:
        done = await app_campaigns.delete(store, name, user=as_user, now=now)
        return done, await app_campaigns.detail(store, ruleset, name)

    (_run, taken), after = _manage(db_url, ruleset, go)
    sent = sum(s.stats.sent for s in after.steps)
    click.echo(f"campaign {name} deleted by {as_user}: it and its {follow_ups} send nothing more")
    if taken:
        click.echo(_taken(taken))
    click.echo(f"{output.plural(sent, 'message')} already sent stay in its statistics "
               f"(`outreach campaigns stats {name}`)")  # fmt: skip


# --- stats --------------------------------------------------------------------------------------------------


def _percent(rate: float) -> str:
    text = f"{rate * 100:.1f}".removesuffix(".0")
    return f"{text}%"


def _counted(n: int, rate: float, base: int) -> str:
    """A count and its rate; the count alone when the rate has no base (nothing sent, or nothing delivered)."""
    return f"{n:,} ({_percent(rate)})" if base else f"{n:,}"


def _stats_row(s: app_campaigns.StepView) -> list[str]:
    x = s.stats
    attempted = x.sent + x.not_delivered - x.bounced  # sent, and refused by the relay: the base of delivery rates
    r = x.rates
    return [_label(s.step), s.template, s.status, f"{x.sent:,}", _counted(x.delivered, r["delivered"], attempted),
            _counted(x.not_delivered, r["not_delivered"], attempted), _counted(x.bounced, r["bounced"], attempted),
            _counted(x.opened, r["opened"], x.delivered), _counted(x.clicked, r["clicked"], x.delivered),
            _counted(x.unclicked, r["unclicked"], x.delivered)]  # fmt: skip


def _chosen(v: app_campaigns.CampaignView, step: int | None) -> list[app_campaigns.StepView]:
    if step is None:
        return list(v.steps)
    if step >= len(v.steps):
        has = "no follow-ups" if len(v.steps) == 1 else f"follow-ups 1 to {len(v.steps) - 1}"
        raise click.BadParameter(f"campaign {v.name} has no {_label(step)} (it has {has})",
                                 param_hint="--step/--follow-up")  # fmt: skip
    return [v.steps[step]]


def _recipient_lines(found: Sequence[Mapping[str, Any]], category: str) -> list[str]:
    """Aligned lines, one per recipient, quick even for 100,000 of them (no table to lay out)."""
    if not found:
        return []
    header = ["record", "email", "state", "sent", "opened", "clicked", "bounced"]
    if category in ("skipped", "pending"):
        header.append("reason")
    rows = []
    for r in found:
        state = r["state"] or r["status"]
        cells = [r["record_id"], r["email"] or r["record_email"] or "", state, options.when(r["sent_at"]),
                 options.when(r["opened_at"]), options.when(r["clicked_at"]), options.when(r["bounced_at"])]  # fmt: skip
        if len(header) == 8:
            cells.append(r["reason"] or "")
        rows.append([output.visible(c) for c in cells])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    return ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
            for cells in [header, *rows]]  # fmt: skip


@campaigns.command("stats")
@click.argument("name")
@click.option("--step", type=click.IntRange(0, 3), metavar="N",
              help="Only this step: 0 the campaign mail, 1 to 3 its follow-ups.")  # fmt: skip
@click.option("--follow-up", "follow_up", type=click.IntRange(1, 3), metavar="N",
              help="Only this follow-up (the same as --step N).")  # fmt: skip
@click.option("--recipients", "category", type=click.Choice(CATEGORIES), metavar="CATEGORY",
              help=f"List the recipients of a category instead, of the campaign mail unless --step or --follow-up "
                   f"says otherwise: {', '.join(CATEGORIES)}.")  # fmt: skip
@click.option("--chart", "chart", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Also draw the funnel (sent, delivered, opened, clicked of each step) into FILE, a .png or .svg; "
                   "needs matplotlib: pip install 'outreach[charts]'.")  # fmt: skip
@output.output_format(help="text: a table, or aligned lines with --recipients; json: one object (with "
                           "--recipients: the recipients as a list of objects; times in ISO 8601).")  # fmt: skip
@options.rules_option
@options.db_option
def campaigns_stats(name: str, step: int | None, follow_up: int | None, category: str | None, chart: str | None,
                    fmt: str, rules_dir: str, db_url: str | None) -> None:  # fmt: skip
    """A campaign's statistics, for its campaign mail and each follow-up; or who is in a category.

    Sent: accepted by the relay. Delivered: sent and not bounced. Not
    delivered: refused by the relay, or bounced. Opened and clicked count
    people, once each: opens that looked automated (mail scanners, previews)
    are left out, and the line under the table says how many recipients that
    left out. Unclicked: delivered and not clicked. Rates of delivered, not
    delivered and bounced are shares of the mail sent (or refused); those of
    opened, clicked and unclicked, shares of the mail delivered.

    \b
    Examples:
      outreach campaigns stats spring-webinar
      outreach campaigns stats spring-webinar --json
      outreach campaigns stats spring-webinar --recipients opened
      outreach campaigns stats spring-webinar --follow-up 1 --recipients not_delivered
      outreach campaigns stats spring-webinar --chart funnel.png
    """
    from outreach.app import campaigns as app_campaigns

    if step is not None and follow_up is not None:
        raise click.UsageError("--step and --follow-up both name a step: give one of them")
    chosen = follow_up if follow_up is not None else step
    figure = _chart_format(chart) if chart is not None else None
    ruleset = options.load_rules(rules_dir)
    v = _detail(db_url, ruleset, name)
    steps = _chosen(v, chosen)
    if figure is not None and chart is not None:
        _draw(Path(chart), figure, v, steps)
        click.echo(f"the funnel of {name} is in {chart}", err=True)
    if category is not None:
        which = chosen or 0

        async def go(store: Store) -> list[dict[str, Any]]:
            return await app_campaigns.recipients(store, name, which, category)

        found = options.on_store(db_url, ruleset, go)
        if fmt == "json":
            click.echo(options.dumps({"campaign": name, "step": which, "category": category, "recipients": found}))
            return
        for line in _recipient_lines(found, category):
            click.echo(line)
        click.echo(f"{output.plural(len(found), 'recipient')} of {name}'s {_label(which)}: "
                   f"{category.replace('_', ' ')}")  # fmt: skip
        return
    if fmt == "json":
        click.echo(options.dumps({"campaign": v.name, "status": v.status, "steps": [_step_json(s) for s in steps]}))
        return
    main = v.steps[0].stats
    click.echo(f"campaign {v.name}: {v.status}, {output.plural(main.recipients, 'recipient')} of the campaign mail, "
               f"{_skipped(main):,} skipped")  # fmt: skip
    columns = ["step", "template", "status", "sent", "delivered", "not delivered", "bounced", "opened", "clicked",
               "unclicked"]  # fmt: skip
    output.print_tables(output.table(columns, [_stats_row(s) for s in steps], numbers=columns[3:]))
    for s in steps:
        if s.stats.automated_opens:
            click.echo(f"{_label(s.step)}: opened leaves out {output.plural(s.stats.automated_opens, 'recipient')} "
                       f"whose every open looked automated (a mail scanner or a preview)")  # fmt: skip
    if any(s.stats.pending for s in steps):
        waiting = ", ".join(f"{s.stats.pending:,} of the {_label(s.step)}" for s in steps if s.stats.pending)
        click.echo(f"pending (rendered or to be rendered, not yet answered by the relay): {waiting}")


# --- the funnel chart ---------------------------------------------------------------------------------------


def _chart_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in (".png", ".svg"):
        raise click.BadParameter(f"{path!r}: name a .png or .svg file", param_hint="--chart")
    return suffix[1:]


def _draw(path: Path, fmt: str, v: app_campaigns.CampaignView, steps: Sequence[app_campaigns.StepView]) -> None:
    """The funnel of each step as horizontal bars, widest (sent) on top, each with its count and rate. matplotlib
    is an extra (outreach[charts]), imported here only: without it every other command works."""
    try:
        import matplotlib
    except ImportError:
        raise click.ClickException("--chart needs matplotlib: pip install 'outreach[charts]'") from None
    matplotlib.use("Agg")  # no display: draw into the file only
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 1.2 + 1.6 * len(steps)), layout="constrained")
    axes = figure.subplots(len(steps), 1, squeeze=False)[:, 0]
    colours = ("#4c72b0", "#55a868", "#dd8452", "#c44e52")
    for ax, s in zip(axes, steps, strict=True):
        x = s.stats
        counts = [getattr(x, stage) for stage, _rate in FUNNEL]
        labels = [f"{c:,}" + (f" ({_percent(x.rates[rate])})" if rate is not None and c else "")
                  for c, (_stage, rate) in zip(counts, FUNNEL, strict=True)]  # fmt: skip
        names = [stage for stage, _rate in FUNNEL]
        bars = ax.barh(names, counts, color=colours)
        ax.invert_yaxis()  # sent on top
        ax.bar_label(bars, labels=labels, padding=3)
        ax.set_xlim(0, max(max(counts), 1) * 1.3)
        ax.set_title(f"{_label(s.step)} ({s.template}): {s.status}", loc="left", fontsize=10)
        ax.spines[["top", "right"]].set_visible(False)
        ax.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(f"campaign {v.name}: the funnel", fontweight="bold")
    try:
        figure.savefig(path, format=fmt)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None
