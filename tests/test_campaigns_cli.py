"""`outreach campaigns`: list, show, stop, start, delete and stats, as a rep uses them on the example campaign
(rules/campaigns/spring-webinar.yaml: leads of the view dach-qualified, anna's, at 2027-03-02T18:00Z; follow-up 1 to
those who opened it, 3 days later; follow-up 2 to all who received it, on 2027-03-08T08:00Z)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from outreach import cli
from outreach.app import campaigns as app_campaigns
from outreach.app import tracking
from outreach.cli import campaigns as cli_campaigns
from outreach.cli import options
from outreach.mail import links
from outreach.mail import transport as mail_transport
from outreach.store import Store
from tests import worlds

pytestmark = pytest.mark.acceptance

SECRET = "a-campaign-test-secret-of-at-least-32-bytes"
CLOCK = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)  # what the management commands take as now
SEND = "2027-03-02T18:00:00Z"  # the campaign's send_at
PERSON = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)

# Who the view dach-qualified holds (stage Qualified, country DE/AT/CH, not purchased) and who it does not.
CSV = (
    "id,type,email,first_name,company,country,owner,stage,purchased\n"
    "L1,lead,jo@example.org,Jo,Fjord AS,DE,anna,Qualified,false\n"
    "L2,lead,kim@example.net,Kim,Roth GmbH,AT,ben,Qualified,\n"
    "L3,lead,,Ida,Paul AG,CH,anna,Qualified,\n"  # no email: skipped
    "L4,lead,JO@example.org,Jo,Fjord AS,DE,anna,Qualified,\n"  # L1's address in capitals: skipped
    "L5,lead,lea@example.org,Lea,Alpenblick AG,CH,anna,Qualified,\n"
    "L6,lead,ola@example.com,Ola,Nordmann AS,NO,ben,Qualified,\n"  # not in DACH
    "L7,lead,max@example.de,Max,Kauf AG,DE,anna,Qualified,true\n"  # bought already
)

# The campaign's mails with HTML, so that they carry the open pixel and a tracked link (the test's own: what it
# opens and clicks does not change with the example templates).
TEMPLATES = """\
kind: Template
name: webinar-invite
subject: "Webinar on 9 March"
text: "Hello {{ record.first_name | default('there') }}, join us: https://www.example.com/webinar"
html: '<p>Hello {{ record.first_name | default("there") }}, <a href="https://www.example.com/webinar">join us</a>.</p>'
---
kind: Template
name: webinar-reminder
subject: "Tomorrow: the webinar"
text: "A reminder: https://www.example.com/webinar"
html: '<p>A reminder: <a href="https://www.example.com/webinar">join us</a>.</p>'
---
kind: Template
name: webinar-last-call
subject: "Last seats"
text: "A few seats are left: https://www.example.com/webinar"
"""


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch project: the example rules (with the templates above), the leads, the rules applied; links signed
    with SECRET; the management commands' clock at CLOCK, before the send time."""
    monkeypatch.setenv("OUTREACH_SECRET", SECRET)
    monkeypatch.setattr(options, "now", lambda: CLOCK)
    worlds.scratch(tmp_path, monkeypatch, CSV)
    (tmp_path / "rules" / "templates" / "campaigns.yaml").write_text(TEMPLATES, encoding="utf-8")
    assert run("apply", "rules")[0] == 0
    return tmp_path


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args), input=input)
    return result.exit_code, result.output


def daemon(at: str) -> None:
    code, out = run("run", "--once", "--now", at)
    assert code == 0, out


def campaign_mail(here: Path) -> list[Any]:
    """The campaign's messages the transport delivered (the maildir), oldest first."""
    box = here / "var" / "outbox"
    found = mail_transport.read_all(box) if box.exists() else []
    return [m for m in found if m["X-Outreach-Campaign"] == "spring-webinar"]


def shown(*args: str) -> Any:
    code, out = run(*args, "--json")
    assert code == 0, out
    return json.loads(out)


def stats(step: int = 0) -> dict[str, Any]:
    found = shown("campaigns", "stats", "spring-webinar")
    return next(s for s in found["steps"] if s["step"] == step)


def token(message: Any, kind: str) -> str:
    """The signed token of the message's open pixel (`o`) or its first tracked link (`c`), as its reader's mail
    program would fetch it."""
    html = message.get_body(("html",)).get_content()
    found = re.search(rf"/{kind}/([A-Za-z0-9_-]{{48}})", html)
    assert found, html
    return found.group(1)


def hit(here: Path, message: Any, kind: str, at: dt.datetime, user_agent: str = PERSON) -> None:
    """An open (`o`) or a click (`c`) of a delivered message, through the application layer the web side calls."""
    ruleset = worlds.ruleset(here / "rules")

    async def go() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{here / 'var' / 'outreach.db'}",
                                 fields=ruleset.settings.fields)  # fmt: skip
        try:
            verb = tracking.opened if kind == "o" else tracking.clicked
            await verb(store, links.Keys.parse(SECRET), token(message, kind), now=at, user_agent=user_agent,
                       ruleset=ruleset)  # fmt: skip
        finally:
            await store.close()

    asyncio.run(go())


def to(message: Any) -> str:
    return str(message["To"])


# --- list and show ------------------------------------------------------------------------------------------


def test_a_campaign_in_the_rules_and_never_applied_is_listed_as_not_applied(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    worlds.scratch(tmp_path, monkeypatch, CSV)
    code, out = run("campaigns", "list")
    assert code == 0, out
    assert re.search(r"spring-webinar\s+│ not applied │ anna\s+│ lead\s+│ 2027-03-02 18:00 UTC", out), out
    [found] = shown("campaigns", "list")
    assert (found["name"], found["status"], found["send_at"]) == ("spring-webinar", "not applied", None)
    code, out = run("campaigns", "stop", "spring-webinar", "--as", "anna")
    assert code == 1 and "no campaign 'spring-webinar' has been applied (`outreach apply` first)" in out


def test_list_and_show_say_what_a_scheduled_campaign_will_do_and_what_it_did_once_sent(here: Path) -> None:
    code, out = run("campaigns", "list")
    assert code == 0, out
    assert re.search(r"spring-webinar\s+│ scheduled │ anna\s+│ lead\s+│ 2027-03-02 18:00 UTC", out), out
    code, out = run("campaigns", "show", "spring-webinar")
    assert code == 0, out
    assert "campaign spring-webinar: scheduled" in out
    assert "3 days after the campaign mail" in out  # follow-up 1, before the campaign mail went
    assert re.search(r"follow-up 2\s+│ webinar-last-call │ received\s+│ 2027-03-08 08:00 UTC", out), out  # +01:00

    daemon(SEND)

    assert sorted(to(m) for m in campaign_mail(here)) == ["jo@example.org", "kim@example.net", "lea@example.org"]
    code, out = run("campaigns", "list")
    assert re.search(r"spring-webinar\s+│ sent\s+│ anna\s+│ lead\s+│ 2027-03-02 18:00 UTC\s+│\s+3 │\s+2 │\s+3 │\s+0 │"
                     r"\s+0 │\s+2 │", out), out  # fmt: skip
    [listed] = shown("campaigns", "list")
    assert listed["status"] == "sent" and listed["steps"][0]["sent"] == 3
    code, out = run("campaigns", "show", "spring-webinar")
    assert code == 0, out
    assert "owner anna, module lead, to view dach-qualified" in out
    assert "send at 2027-03-02 18:00 UTC, started 2027-03-02 18:00 UTC" in out
    assert re.search(r"campaign mail\s+│ webinar-invite\s+│ view dach-qualified │ 2027-03-02 18:00 UTC │ sent", out)
    assert re.search(r"follow-up 1\s+│ webinar-reminder\s+│ opened\s+│ 2027-03-05 18:00 UTC │ waiting", out), out
    assert re.search(r"picked\s+│\s+3 │\s+0 │\s+0 │", out), out
    assert re.search(r"sent\s+│\s+3 │", out) and re.search(r"skipped\s+│\s+2 │", out)
    assert re.search(r"no valid email\s+│\s+1 │", out) and re.search(r"same address twice\s+│\s+1 │", out)
    view = shown("campaigns", "show", "spring-webinar")
    assert (view["status"], view["started_at"]) == ("sent", "2027-03-02T18:00:00+00:00")
    assert [(s["label"], s["to"], s["status"]) for s in view["steps"]] == [
        ("campaign mail", "everyone", "sent"), ("follow-up 1", "opened", "waiting"),
        ("follow-up 2", "received", "waiting")]  # fmt: skip
    assert view["steps"][0]["skipped"] == {"no valid email": 1, "same address twice": 1}
    assert view["steps"][1]["due_at"] == "2027-03-05T18:00:00+00:00"


def test_an_unknown_campaign_is_an_error(here: Path) -> None:
    for args in (["show", "autumn"], ["stats", "autumn"], ["delete", "autumn", "--as", "ben", "--yes"]):
        code, out = run("campaigns", *args)
        assert code == 1 and "Error: no campaign 'autumn' (campaigns: spring-webinar)" in out, out


# --- stop, start, delete ------------------------------------------------------------------------------------


def test_only_the_owner_stops_and_starts_a_campaign(here: Path) -> None:
    code, out = run("campaigns", "stop", "spring-webinar", "--as", "ben")
    assert code == 1
    assert "Error: only its owner 'anna' may stop campaign spring-webinar; 'ben' may view or delete it" in out
    code, out = run("campaigns", "stop", "spring-webinar", "--as", "zoe")
    assert code == 2 and "no user 'zoe'" in out
    code, out = run("campaigns", "stop", "spring-webinar", "--as", "anna")
    assert code == 0, out
    assert "campaign spring-webinar stopped by anna" in out
    assert run("campaigns", "stop", "spring-webinar", "--as", "anna")[1].startswith(
        "campaign spring-webinar is stopped already (stopped by anna); nothing changed"
    )

    daemon(SEND)  # its time came while it was stopped: nothing goes

    assert campaign_mail(here) == []
    assert shown("campaigns", "show", "spring-webinar")["status"] == "stopped"
    code, out = run("campaigns", "list")
    assert re.search(r"spring-webinar\s+│ stopped\s+│ anna .*│ stopped by anna", out), out
    code, out = run("campaigns", "start", "spring-webinar", "--as", "ben")
    assert code == 1 and "Error: only its owner 'anna' may start campaign spring-webinar" in out
    code, out = run("campaigns", "start", "spring-webinar", "--as", "anna")
    assert code == 0, out
    assert "campaign spring-webinar started again by anna: scheduled for 2027-03-02 18:00 UTC" in out
    assert run("campaigns", "start", "spring-webinar", "--as", "anna")[1].startswith(
        "campaign spring-webinar is scheduled, not stopped; nothing changed"
    )

    daemon("2027-03-02T18:05:00Z")

    assert len(campaign_mail(here)) == 3
    assert shown("campaigns", "show", "spring-webinar")["status"] == "sent"


def test_anyone_deletes_a_campaign_after_saying_yes_and_its_follow_ups_never_go(here: Path) -> None:
    daemon(SEND)
    code, out = run("campaigns", "delete", "spring-webinar", "--as", "ben", input="n\n")
    assert code == 1 and "delete campaign spring-webinar (sent, owner anna) and its 2 follow-ups? [y/N]" in out
    assert shown("campaigns", "show", "spring-webinar")["status"] == "sent"  # not deleted

    code, out = run("campaigns", "delete", "spring-webinar", "--as", "ben", input="y\n")

    assert code == 0, out
    assert "campaign spring-webinar deleted by ben: it and its 2 follow-ups send nothing more" in out
    assert "3 messages already sent stay in its statistics (`outreach campaigns stats spring-webinar`)" in out
    hit(here, campaign_mail(here)[0], "o", dt.datetime(2027, 3, 3, 9, tzinfo=dt.UTC))  # opened after the delete
    daemon("2027-03-05T18:05:00Z")  # follow-up 1 would be due
    daemon("2027-03-09T10:00:00Z")  # follow-up 2 would be due
    assert [m["X-Outreach-Step"] for m in campaign_mail(here)] == ["0", "0", "0"]
    view = shown("campaigns", "show", "spring-webinar")
    assert (view["status"], view["reason"]) == ("deleted", "deleted by ben")
    assert [s["status"] for s in view["steps"]] == ["deleted", "deleted", "deleted"]
    assert view["steps"][0]["sent"] == 3  # what was sent stays in the statistics
    code, out = run("campaigns", "delete", "spring-webinar", "--as", "anna", "--yes")
    assert code == 0 and "campaign spring-webinar is deleted already (deleted by ben); nothing changed" in out
    code, out = run("campaigns", "start", "spring-webinar", "--as", "anna")
    assert code == 1 and "campaign spring-webinar is deleted and cannot be started again" in out


def test_a_campaign_deleted_before_its_time_sends_nothing(here: Path) -> None:
    code, out = run("campaigns", "delete", "spring-webinar", "--as", "ben", "--yes")
    assert code == 0, out
    assert "0 messages already sent stay in its statistics" in out
    daemon(SEND)
    daemon("2027-03-09T10:00:00Z")
    assert campaign_mail(here) == []
    code, out = run("campaigns", "list")
    assert re.search(r"spring-webinar\s+│ deleted\s+│ anna .*│ deleted by ben", out), out


# --- stats --------------------------------------------------------------------------------------------------


def test_stats_count_what_the_outbox_sent_and_who_opened_and_clicked(here: Path) -> None:
    daemon(SEND)
    mail = {to(m): m for m in campaign_mail(here)}
    later = dt.datetime(2027, 3, 2, 20, 0, tzinfo=dt.UTC)
    hit(here, mail["jo@example.org"], "o", later)  # a person opens
    hit(here, mail["kim@example.net"], "c", later)  # a person clicks (an open, too)
    hit(here, mail["lea@example.org"], "o", later, user_agent="")  # a scanner: no user agent

    main = stats()

    assert main["sent"] == len(mail) == 3
    assert (main["recipients"], main["skipped"]) == (3, {"no valid email": 1, "same address twice": 1})
    assert (main["delivered"], main["not_delivered"], main["bounced"], main["pending"]) == (3, 0, 0, 0)
    assert (main["opened"], main["automated_opens"], main["clicked"], main["unclicked"]) == (2, 1, 1, 2)
    assert main["rates"] == {"delivered": 1.0, "not_delivered": 0.0, "bounced": 0.0, "opened": 0.6667,
                             "clicked": 0.3333, "unclicked": 0.6667}  # fmt: skip
    code, out = run("campaigns", "stats", "spring-webinar")
    assert code == 0, out
    assert "campaign spring-webinar: sent, 3 recipients of the campaign mail, 2 skipped" in out
    assert re.search(r"campaign mail │ webinar-invite\s+│ sent\s+│\s+3 │\s+3 \(100%\) │\s+0 \(0%\) │\s+0 \(0%\) │"
                     r"\s+2 \(66.7%\) │\s+1 \(33.3%\) │\s+2 \(66.7%\) │", out), out  # fmt: skip
    assert (
        "campaign mail: opened leaves out 1 recipient whose every open looked automated (a mail scanner or a preview)"
    ) in out

    daemon("2027-03-05T18:05:00Z")  # follow-up 1: to those who opened

    reminders = [to(m) for m in campaign_mail(here) if m["X-Outreach-Step"] == "1"]
    assert sorted(reminders) == ["jo@example.org", "kim@example.net"]
    first = stats(1)
    assert (first["sent"], first["delivered"], first["opened"], first["status"]) == (2, 2, 0, "sent")
    only = shown("campaigns", "stats", "spring-webinar", "--follow-up", "1")
    assert [s["step"] for s in only["steps"]] == [1]
    assert shown("campaigns", "stats", "spring-webinar", "--step", "1") == only


def test_recipients_lists_who_is_in_a_category(here: Path) -> None:
    daemon(SEND)
    mail = {to(m): m for m in campaign_mail(here)}
    hit(here, mail["kim@example.net"], "c", dt.datetime(2027, 3, 2, 20, 0, tzinfo=dt.UTC))
    hit(here, mail["jo@example.org"], "o", dt.datetime(2027, 3, 2, 21, 0, tzinfo=dt.UTC))

    code, out = run("campaigns", "stats", "spring-webinar", "--recipients", "opened")

    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["record", "email", "state", "sent", "opened", "clicked", "bounced"]
    assert re.match(r"L1\s+jo@example.org\s+sent\s+2027-03-02 18:00 UTC\s+2027-03-02 21:00 UTC$", lines[1]), out
    assert re.match(r"L2\s+kim@example.net\s+sent\s+2027-03-02 18:00 UTC\s+2027-03-02 20:00 UTC\s+"
                    r"2027-03-02 20:00 UTC$", lines[2]), out  # fmt: skip
    assert lines[3:] == ["2 recipients of spring-webinar's campaign mail: opened"]
    found = shown("campaigns", "stats", "spring-webinar", "--recipients", "unclicked")
    assert [r["record_id"] for r in found["recipients"]] == ["L1", "L5"]
    skipped = shown("campaigns", "stats", "spring-webinar", "--recipients", "skipped")["recipients"]
    assert [(r["record_id"], r["reason"]) for r in skipped] == [("L3", "no valid email"), ("L4", "same address twice")]
    code, out = run("campaigns", "stats", "spring-webinar", "--recipients", "skipped")
    assert "reason" in out.splitlines()[0] and re.search(r"^L3 .*no valid email$", out, re.M), out
    code, out = run("campaigns", "stats", "spring-webinar", "--follow-up", "2", "--recipients", "sent")
    assert (code, out) == (0, "0 recipients of spring-webinar's follow-up 2: sent\n")
    code, out = run("campaigns", "stats", "spring-webinar", "--recipients", "everyone")
    assert code == 2 and "Invalid value for '--recipients'" in out


def test_the_recipient_categories_are_those_of_the_application_layer() -> None:
    assert cli_campaigns.CATEGORIES == app_campaigns.CATEGORIES


def test_stats_refuse_a_step_the_campaign_does_not_have(here: Path) -> None:
    code, out = run("campaigns", "stats", "spring-webinar", "--follow-up", "3")
    assert code == 2 and "campaign spring-webinar has no follow-up 3 (it has follow-ups 1 to 2)" in out
    code, out = run("campaigns", "stats", "spring-webinar", "--step", "0", "--follow-up", "1")
    assert code == 2 and "--step and --follow-up both name a step" in out
    code, out = run("campaigns", "stats", "spring-webinar", "--step", "4")
    assert code == 2


# --- the funnel chart ---------------------------------------------------------------------------------------


def test_chart_draws_the_funnel_as_png_and_svg(here: Path) -> None:
    daemon(SEND)
    mail = {to(m): m for m in campaign_mail(here)}
    hit(here, mail["kim@example.net"], "c", dt.datetime(2027, 3, 2, 20, 0, tzinfo=dt.UTC))

    code, out = run("campaigns", "stats", "spring-webinar", "--chart", "funnel.png")

    assert code == 0, out
    assert "the funnel of spring-webinar is in funnel.png" in out
    png = (here / "funnel.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    code, out = run("campaigns", "stats", "spring-webinar", "--json", "--chart", "funnel.svg")
    assert code == 0, out
    svg = (here / "funnel.svg").read_text(encoding="utf-8")
    assert "<svg" in svg
    for label in ("sent", "delivered", "opened", "clicked", "campaign mail (webinar-invite): sent",
                  "follow-up 2 (webinar-last-call): waiting", "1 (33.3%)"):  # fmt: skip
        assert label in svg, label
    code, out = run("campaigns", "stats", "spring-webinar", "--chart", "funnel.pdf")
    assert code == 2 and "name a .png or .svg file" in out
    assert not (here / "funnel.pdf").exists()


def test_chart_without_matplotlib_says_which_extra_to_install(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError

    code, out = run("campaigns", "stats", "spring-webinar", "--chart", "funnel.png")

    assert code == 1
    assert out == "Error: --chart needs matplotlib: pip install 'outreach[charts]'\n"
    assert not (here / "funnel.png").exists()
