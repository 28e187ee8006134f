"""RuleTests of campaigns: the clock stops when a campaign or a follow-up is due and while its mail is rendered, the
`open`, `click` and `bounce` events reach its triggers through the web side's and the IMAP poller's application
layer, and `campaigns` expectations compare its statistics, with a diff when they differ."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from outreach import cli
from outreach.app import campaigns as app_campaigns
from outreach.app import events, suppressions
from outreach.engine import campaigns as engine
from outreach.review import simulation
from outreach.rules import model
from outreach.store import Store
from tests.conftest import ROOT, write_rule_test
from tests.worlds import RULES as RULES_IN_FORCE
from tests.worlds import Row, rows

# Tiers: a test that runs RuleTests is `store` (each runs on an SQLite store in memory); one that stops at the
# errors of a RuleTest file is `acceptance` (the CLI alone); the constants' agreement is `unit`.

RULES = ROOT / "rules"

# The spring webinar (rules/campaigns/spring-webinar.yaml) goes at 18:00 UTC; its reminder to openers three days
# later, its last call on 8 March at 08:00 UTC.
LEADS = """
    records:
      - {id: L1, type: lead, email: lena@example.at, first_name: Lena, country: AT, stage: Qualified, owner: ben}
      - {id: L2, type: lead, email: kai@example.ch, first_name: Kai, country: CH, stage: Qualified, owner: ben}
      - {id: L3, type: lead, country: DE, stage: Qualified, owner: ben}
"""

WEBINAR = (
    """
    kind: RuleTest
    name: everyone invited gets the reminder three days later
    start: 2027-03-02T17:00:00Z
"""
    + LEADS
    + """
    events:
      - {at: 2027-03-03T09:00:00Z, open: {record: L1, campaign: spring-webinar}}
    expect:
      sent:
        - {at: 2027-03-02T18:00:00Z, to: lena@example.at, template: webinar-invite}
        - {at: 2027-03-02T18:00:00Z, to: kai@example.ch, template: webinar-invite}
        - {at: 2027-03-05T18:00:00Z, to: lena@example.at, template: webinar-reminder}
        - {at: 2027-03-05T18:00:00Z, to: kai@example.ch, template: webinar-reminder}
      tasks:
        - {record: L1, subject: Send product details}
      campaigns:
        - {campaign: spring-webinar, step: 0, sent: 2, opened: 1, skipped: 0}
        - {campaign: spring-webinar, step: 1, sent: 2}
"""
)

# What the spring webinar does to those leads, expected right: the reminder to Lena alone (Kai did not open),
# the last call to both.
RIGHT = (
    WEBINAR.replace(
        "    - {at: 2027-03-05T18:00:00Z, to: kai@example.ch, template: webinar-reminder}\n",
        "    - {at: 2027-03-08T08:00:00Z, to: lena@example.at, template: webinar-last-call}\n"
        "        - {at: 2027-03-08T08:00:00Z, to: kai@example.ch, template: webinar-last-call}\n",
    )
    .replace("skipped: 0}", "skipped: {no valid email: 1}, status: sent}")
    .replace("step: 1, sent: 2}", "step: 1, sent: 1, opened: 0, status: sent}")
)


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    """A copy of the example rules, their campaign and view included, without their tests."""
    where = tmp_path / "rules"
    shutil.copytree(RULES, where, ignore=shutil.ignore_patterns("tests"))
    (where / "tests").mkdir()
    return where


def write(rules: Path, text: str, name: str = "t.yaml") -> Path:
    return write_rule_test(rules, text, name)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, ["test", *args])
    return result.exit_code, result.output


def campaign(rules: Path, text: str) -> None:
    """Another campaign in the rules (dedented YAML)."""
    (rules / "campaigns" / "extra.yaml").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


# --- the example rules ---------------------------------------------------------------------------------------


@pytest.mark.store
def test_the_example_rules_test_the_spring_webinar_and_pass() -> None:
    code, out = run(str(RULES))

    assert code == 0, out
    webinar = [line for line in out.splitlines() if "rules/tests/spring-webinar.yaml" in line]
    assert len(webinar) == 5 and all(line.startswith("ok ") for line in webinar), out


@pytest.mark.unit
def test_what_a_campaigns_expectation_compares_is_what_the_statistics_count() -> None:
    stats = {f.name for f in dataclasses.fields(engine.Stats)}
    assert set(model.CAMPAIGN_COUNTS) == stats - {"step", "template", "skipped", "rates"}
    assert set(model.CAMPAIGN_SKIPS) == {str(s) for s in engine.Skip}
    assert set(model.CAMPAIGN_STATUSES) == {*map(str, engine.RunStatus), "waiting"}


# --- passing and failing --------------------------------------------------------------------------------------


@pytest.mark.store
def test_the_campaign_its_follow_ups_and_its_statistics_as_expected_pass(rules: Path) -> None:
    write(rules, RIGHT)

    code, out = run(str(rules))

    assert code == 0, out
    assert out.splitlines() == ["ok    rules/tests/t.yaml:1  everyone invited gets the reminder three days later"
                                .replace("rules/tests", str(rules / "tests")), "1 RuleTest, 0 failed"]  # fmt: skip


@pytest.mark.store
def test_a_campaign_expectation_that_differs_shows_each_count_expected_and_what_it_is(
    rules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(rules, WEBINAR)
    monkeypatch.chdir(rules.parent)

    code, out = run("rules/")

    assert code == 1
    assert out == textwrap.dedent("""\
        FAIL  rules/tests/t.yaml:1  everyone invited gets the reminder three days later
              sent (- expected, not sent; + sent, not expected):
                Tue 2027-03-02 18:00 UTC  webinar-invite to lena@example.at from anna@example.com, new: 'Webinar on 9 March: outreach rules as code'
                Tue 2027-03-02 18:00 UTC  webinar-invite to kai@example.ch from anna@example.com, new: 'Webinar on 9 March: outreach rules as code'
                Fri 2027-03-05 18:00 UTC  webinar-reminder to lena@example.at from anna@example.com, new: 'Tomorrow: the outreach webinar'
              - Fri 2027-03-05 18:00 UTC  webinar-reminder to kai@example.ch   [rules/tests/t.yaml:17]
              + Mon 2027-03-08 08:00 UTC  webinar-last-call to lena@example.at from anna@example.com, new: 'Last seats for the webinar'
              + Mon 2027-03-08 08:00 UTC  webinar-last-call to kai@example.ch from anna@example.com, new: 'Last seats for the webinar'
              campaigns:
              - spring-webinar campaign mail (webinar-invite): sent 2, opened 1, skipped 0 (it is 1)   [rules/tests/t.yaml:21]
              - spring-webinar follow-up 1 (webinar-reminder): sent 2 (it is 1)   [rules/tests/t.yaml:22]
        1 RuleTest, 1 failed
        """)  # fmt: skip


@pytest.mark.store
def test_a_status_and_skips_by_reason_are_compared_too(rules: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(rules, RIGHT.replace("skipped: {no valid email: 1}, status: sent}",
                               "skipped: {suppressed: 1, no valid email: 1}, status: stopped}"))  # fmt: skip
    monkeypatch.chdir(rules.parent)

    code, out = run("rules/")

    assert code == 1
    assert ("      - spring-webinar campaign mail (webinar-invite): status stopped (it is sent), sent 2, opened 1, "
            "skipped suppressed 1 (it is 0), skipped no valid email 1   [rules/tests/t.yaml:22]") in out  # fmt: skip
    assert (
        "\n        spring-webinar follow-up 1 (webinar-reminder): status sent, sent 1, opened 0\n" in out
    )  # as expected


@pytest.mark.store
def test_json_has_each_campaign_steps_statistics_and_junit_names_the_expectation(rules: Path) -> None:
    write(rules, WEBINAR)

    code, out = run("--format", "json", str(rules))

    assert code == 1
    test = json.loads(out)["tests"][0]
    steps = {(c["campaign"], c["step"]): c for c in test["campaigns"]}
    assert set(steps) == {("spring-webinar", 0), ("spring-webinar", 1), ("spring-webinar", 2)}
    assert steps[("spring-webinar", 0)] | {"skipped_by_reason": None} == {
        "campaign": "spring-webinar", "step": 0, "template": "webinar-invite", "status": "sent", "recipients": 2,
        "pending": 0, "sent": 2, "delivered": 2, "not_delivered": 0, "bounced": 0, "opened": 1,
        "automated_opens": 0, "clicked": 0, "unclicked": 2, "unknown": 0, "skipped": 1, "skipped_by_reason": None,
    }  # fmt: skip
    assert steps[("spring-webinar", 0)]["skipped_by_reason"] == {"no valid email": 1}
    assert [d["kind"] for d in test["diff"]] == ["sent", "sent", "sent", "campaign", "campaign"]

    write(rules, RIGHT.replace("sent: 1, opened: 0, status: sent}", "sent: 3}"))
    code, out = run("--format", "junit", str(rules))

    assert code == 1
    failure = ElementTree.fromstring(out).find("testsuite/testcase/failure")
    assert failure is not None and failure.get("type") == "expect.campaigns"
    assert failure.get("message", "").startswith(
        "expected: spring-webinar follow-up 1 (webinar-reminder): sent 3 (it is 1)"
    )


# --- the virtual clock ------------------------------------------------------------------------------------------


@pytest.mark.store
def test_without_until_the_run_goes_on_to_a_day_after_the_last_follow_up_of_the_campaigns_named(rules: Path) -> None:
    write(rules, """
        kind: RuleTest
        name: the last call goes on 8 March
        start: 2027-03-02T17:00:00Z
        records:
          - {id: L1, type: lead, email: lena@example.at, country: AT, stage: Qualified, owner: ben}
        expect:
          campaigns:
            - {campaign: spring-webinar, step: 2, status: sent, sent: 1}
    """)  # fmt: skip

    code, out = run(str(rules))

    assert code == 0, out


@pytest.mark.store
def test_mail_is_rendered_a_window_at_a_time_a_tick_a_second_apart(
    rules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_campaigns, "RENDER_AHEAD", 2)  # as if 500 ahead of the relay were 2
    people = "\n".join(f"          - {{id: L{i}, type: lead, email: p{i}@example.de, country: DE, stage: Qualified}}"
                       for i in range(5))  # fmt: skip
    write(rules, f"""
        kind: RuleTest
        name: five invitations, two at a time
        start: 2027-03-02T17:00:00Z
        until: 2027-03-03T00:00:00Z
        records:
{people}
        expect:
          sent:
            - {{at: 2027-03-02T18:00:00Z, to: p0@example.de, template: webinar-invite}}
            - {{at: 2027-03-02T18:00:00Z, to: p1@example.de, template: webinar-invite}}
            - {{at: 2027-03-02T18:00:01Z, to: p2@example.de, template: webinar-invite}}
            - {{at: 2027-03-02T18:00:01Z, to: p3@example.de, template: webinar-invite}}
            - {{at: 2027-03-02T18:00:02Z, to: p4@example.de, template: webinar-invite}}
          campaigns:
            - {{campaign: spring-webinar, sent: 5, pending: 0}}
    """)  # fmt: skip

    code, out = run(str(rules))

    assert code == 0, out


@pytest.mark.store
def test_a_campaign_without_send_at_goes_at_start_in_its_send_window_on_each_recipients_clock(
    rules: Path,
) -> None:
    campaign(rules, """
        kind: Campaign
        name: flash-news
        module: lead
        owner: ben
        to: {records: [N1, N2]}
        template: webinar-last-call
        calendar: default
    """)  # fmt: skip
    write(rules, """
        kind: RuleTest
        name: applied at 19:00 Berlin time, the news waits for 08:00 on a Berlin clock
        start: 2027-03-02T18:00:00Z
        until: 2027-03-04T00:00:00Z
        records:
          - {id: N1, type: lead, email: ana@example.de, first_name: Ana}
          - {id: N2, type: lead, email: bob@example.com, first_name: Bob, timezone: America/New_York}
        expect:
          sent:
            # Ana's clock (Berlin, Settings' zone): 19:00, after the window; Bob's (New York): 13:00, inside it
            - {at: 2027-03-02T18:00:00Z, to: bob@example.com, template: webinar-last-call, from: ben@example.com}
            - {at: 2027-03-03T07:00:00Z, to: ana@example.de, template: webinar-last-call}
          campaigns:
            - {campaign: flash-news, status: sent, sent: 2}
    """)  # fmt: skip

    code, out = run(str(rules))

    assert code == 0, out


@pytest.mark.store
def test_mail_over_the_senders_daily_limit_goes_when_the_oldest_of_the_day_is_a_day_old(rules: Path) -> None:
    settings = rules / "settings.yaml"
    text = settings.read_text(encoding="utf-8")
    settings.write_text(
        text.replace("mailbox: ben, daily_limit: 300", "mailbox: ben, daily_limit: 2"), encoding="utf-8"
    )
    campaign(rules, """
        kind: Campaign
        name: flash-news
        module: lead
        owner: ben
        to: {records: [N1, N2, N3]}
        template: webinar-last-call
        send_at: 2027-03-02T18:00:00Z
    """)  # fmt: skip
    write(rules, """
        kind: RuleTest
        name: two go at once, the third a day later
        start: 2027-03-02T17:00:00Z
        until: 2027-03-04T00:00:00Z
        records:
          - {id: N1, type: lead, email: ana@example.de}
          - {id: N2, type: lead, email: bob@example.de}
          - {id: N3, type: lead, email: cem@example.de}
        expect:
          sent:
            - {at: 2027-03-02T18:00:00Z, to: ana@example.de, template: webinar-last-call}
            - {at: 2027-03-02T18:00:00Z, to: bob@example.de, template: webinar-last-call}
            - {at: 2027-03-03T18:00:00Z, to: cem@example.de, template: webinar-last-call}
    """)  # fmt: skip

    code, out = run(str(rules))

    assert code == 0, out


# --- events --------------------------------------------------------------------------------------------------


@pytest.mark.store
def test_a_bounce_of_the_campaign_mail_fires_its_bounced_trigger_and_a_click_its_clicked_one(rules: Path) -> None:
    write(rules, """
        kind: RuleTest
        name: a bounce and a click
        start: 2027-03-02T17:00:00Z
        until: 2027-03-04T00:00:00Z
        records:
          - {id: L1, type: lead, email: lena@example.at, country: AT, stage: Qualified, owner: ben}
          - {id: L2, type: lead, email: kai@example.ch, country: CH, stage: Qualified, owner: ben}
        events:
          - {at: 2027-03-02T19:00:00Z, bounce: {record: L1, campaign: spring-webinar, status: 5.1.1}}
          - {at: 2027-03-03T08:00:00Z, click: {record: L2, campaign: spring-webinar}}
        expect:
          tasks:
            - {record: L2, subject: Send product details, at: 2027-03-03T08:00:00Z}
          updates:
            - {record: L1, field: email_status, value: bounced}
            - {record: L2, field: interest, value: hot}
          campaigns:
            - {campaign: spring-webinar, sent: 2, bounced: 1, delivered: 1, opened: 1, clicked: 1, unclicked: 0}
    """)  # fmt: skip

    code, out = run(str(rules))

    assert code == 0, out


@pytest.mark.store
def test_an_open_within_ten_seconds_of_delivery_is_automated_and_fires_nothing(rules: Path) -> None:
    write(rules, """
        kind: RuleTest
        name: a mail provider fetched the pixel on delivery
        start: 2027-03-02T17:00:00Z
        until: 2027-03-03T00:00:00Z
        records:
          - {id: L1, type: lead, email: lena@example.at, country: AT, stage: Qualified, owner: ben}
        events:
          - {at: 2027-03-02T18:00:05Z, open: {record: L1, campaign: spring-webinar}}
        expect:
          campaigns:
            - {campaign: spring-webinar, opened: 0, automated_opens: 1}
    """)  # fmt: skip

    code, out = run(str(rules))

    assert code == 0, out


@pytest.mark.store
def test_a_second_open_fires_nothing_more(rules: Path) -> None:
    write(rules, """
        kind: RuleTest
        name: the trigger fires once per recipient
        start: 2027-03-02T17:00:00Z
        until: 2027-03-04T00:00:00Z
        records:
          - {id: L1, type: lead, email: lena@example.at, country: AT, stage: Qualified, owner: ben}
        events:
          - {at: 2027-03-03T08:00:00Z, open: {record: L1, campaign: spring-webinar}}
          - {at: 2027-03-03T09:00:00Z, open: {record: L1}}
        expect:
          tasks:
            - {record: L1, subject: Send product details, at: 2027-03-03T08:00:00Z}
            - {record: L1, subject: Send product details, at: 2027-03-03T09:00:00Z}
    """)  # fmt: skip

    code, out = run(str(rules))

    assert code == 1
    assert "- task for L1: 'Send product details' at Wed 2027-03-03 09:00 UTC (its tasks: 'Send product details' " \
        "at Wed 2027-03-03 08:00 UTC, 'Intro call' at Wed 2027-03-03 08:00 UTC)" in out  # fmt: skip


@pytest.mark.store
def test_an_open_of_mail_without_a_pixel_is_an_error_that_says_why(rules: Path) -> None:
    campaign(rules, """
        kind: Campaign
        name: flash-news
        module: lead
        owner: ben
        to: {records: [N1]}
        template: webinar-last-call
        send_at: 2027-03-02T18:00:00Z
    """)  # fmt: skip
    path = write(rules, """
        kind: RuleTest
        name: a text mail has no pixel
        start: 2027-03-02T17:00:00Z
        records:
          - {id: N1, type: lead, email: ana@example.de}
        events:
          - {at: 2027-03-03T08:00:00Z, open: {record: N1, campaign: flash-news}}
        expect:
          campaigns:
            - {campaign: flash-news, opened: 1}
    """)  # fmt: skip

    code, out = run(str(rules))

    assert code == 1
    assert (f"error: {path}:7: open: the mail 'Last seats for the webinar' of Tue 2027-03-02 18:00 UTC carries no "
            "open pixel: it goes in the HTML part of a mail (the template has `html`) when Settings.tracking has "
            "`opens`") in out  # fmt: skip


@pytest.mark.store
def test_a_click_on_a_link_the_mail_does_not_have_is_an_error_naming_its_links(rules: Path) -> None:
    path = write(rules, """
        kind: RuleTest
        name: no such link
        start: 2027-03-02T17:00:00Z
        records:
          - {id: L1, type: lead, email: lena@example.at, country: AT, stage: Qualified, owner: ben}
        events:
          - {at: 2027-03-03T08:00:00Z, click: {record: L1, campaign: spring-webinar, url: "https://example.org/"}}
        expect:
          campaigns:
            - {campaign: spring-webinar, clicked: 1}
    """)  # fmt: skip

    code, out = run(str(rules))

    assert code == 1
    assert (
        f"error: {path}:7: click: the mail 'Webinar on 9 March: outreach rules as code' of Tue 2027-03-02 18:00 "
        "UTC has no tracked link to https://example.org/ (its links: https://www.example.com/webinar)"
    ) in out


@pytest.mark.store
def test_a_bounce_of_a_campaign_that_sent_the_record_nothing_is_an_error(rules: Path) -> None:
    path = write(rules, """
        kind: RuleTest
        name: too early
        start: 2027-03-02T17:00:00Z
        records:
          - {id: L1, type: lead, email: lena@example.at, country: AT, stage: Qualified, owner: ben}
        events:
          - {at: 2027-03-02T17:30:00Z, bounce: {record: L1, campaign: spring-webinar}}
        expect:
          campaigns:
            - {campaign: spring-webinar, bounced: 1}
    """)  # fmt: skip

    code, out = run(str(rules))

    assert code == 1
    assert f"error: {path}:7: bounce: nothing of campaign spring-webinar was sent to L1 before 2027-03-02T17:30" in out


# --- validation ------------------------------------------------------------------------------------------------


@pytest.mark.acceptance
def test_an_unknown_campaign_or_follow_up_in_an_expectation_is_an_error_with_file_and_line(rules: Path) -> None:
    path = write(rules, """
        kind: RuleTest
        name: misspelt
        start: 2027-03-02T17:00:00Z
        expect:
          campaigns:
            - {campaign: spring-webinr, sent: 1}
            - {campaign: spring-webinar, step: 3, sent: 1}
    """)  # fmt: skip

    code, out = run(str(rules))

    assert code == 1
    assert f"{path}:6:" in out and "unknown campaign 'spring-webinr'; did you mean 'spring-webinar'?" in out
    assert f"{path}:7:" in out and "campaign 'spring-webinar' has 2 follow-ups: step is 0 (the campaign mail) or 1 " \
        "or 2" in out  # fmt: skip
    assert out.splitlines()[-1].endswith(": 2 error(s); no RuleTest ran")


@pytest.mark.acceptance
def test_a_skip_reason_or_count_the_statistics_do_not_have_is_an_error(rules: Path) -> None:
    path = write(rules, """
        kind: RuleTest
        name: no such count
        start: 2027-03-02T17:00:00Z
        expect:
          campaigns:
            - {campaign: spring-webinar, skipped: {unsubscribed: 1}}
            - {campaign: spring-webinar, replied: 1}
    """)  # fmt: skip

    code, out = run(str(rules))

    assert code == 1
    assert f"{path}:6:" in out and "unknown key 'unsubscribed'" in out
    assert f"{path}:7:" in out and "unknown key 'replied'" in out


@pytest.mark.acceptance
def test_a_campaign_expectation_that_compares_nothing_is_an_error(rules: Path) -> None:
    path = write(rules, """
        kind: RuleTest
        name: expects nothing
        start: 2027-03-02T17:00:00Z
        expect:
          campaigns:
            - {campaign: spring-webinar, step: 1}
    """)  # fmt: skip

    code, out = run(str(rules))

    assert code == 1
    assert f"{path}:6:7: error: expects nothing of campaign 'spring-webinar': give its `status`, `skipped` or a " \
        "count (recipients, " in out  # fmt: skip


# --- simulate's sample, read from a database ---------------------------------------------------------------------


@pytest.mark.store
async def test_simulate_reads_the_first_records_the_campaign_picks_with_their_suppressions_and_deletions(
    store: Store,
) -> None:
    monday = dt.datetime(2027, 3, 1, 8, 0, tzinfo=dt.UTC)
    lead = {"stage": "Qualified", "country": "DE", "owner": "ben"}
    done = await store.import_records(rows(
        Row(2, "L1", "lead", "lena@example.at", {**lead, "first_name": "Lena", "country": "AT"}),
        Row(3, "L2", "lead", "ute@example.de", lead),
        Row(4, "L3", "lead", "bo@example.de", lead),
        Row(5, "L4", "lead", "kai@example.ch", {**lead, "country": "CH"}),
        Row(6, "L5", "lead", "eva@example.fr", {**lead, "country": "FR"}),  # not in the view
        Row(7, "C1", "contact", "cy@example.de", lead),  # not a lead
    ), now=monday)  # fmt: skip
    assert done.committed
    await suppressions.add(store, "ute@example.de", reason="complaint", now=monday)
    await events.delete(store, "L3", now=monday)

    found = await simulation.audience(store, RULES_IN_FORCE, RULES_IN_FORCE.campaigns["spring-webinar"], limit=3,
                                      now=monday)  # fmt: skip

    assert found.total == 4
    assert [r["id"] for r in found.records.data] == ["L1", "L2", "L3"]
    assert found.records.data[0] == {"id": "L1", "type": "lead", "email": "lena@example.at", "owner": "ben",
                                     "stage": "Qualified", "stage_entered_at": "2027-03-01T08:00:00+00:00",
                                     "created_at": "2027-03-01T08:00:00+00:00", "first_name": "Lena",
                                     "country": "AT"}  # fmt: skip
    assert found.suppressed == (("ute@example.de", "complaint"),)
    assert found.deleted == ("L3",)


# --- a trigger's durations ----------------------------------------------------------------------------------


@pytest.mark.unit
def test_a_trigger_task_due_in_business_days_counts_them_on_the_calendar_in_the_records_zone(rules: Path) -> None:
    """It was a ValueError ("a business-day duration needs a calendar") in the open's transaction."""
    from outreach.rules import validate

    campaign(rules, """
        kind: Campaign
        name: flash-news
        module: lead
        owner: ben
        to: {records: [N1]}
        template: webinar-invite
        on:
          opened:
            - {task: {subject: Send the deck, due: 2 business days}}
            - {call: {subject: Call, owner: campaign_owner, at: 3 days}}
    """)  # fmt: skip
    ruleset = validate.validate([str(rules)]).ruleset
    assert ruleset is not None
    friday = dt.datetime(2027, 3, 5, 12, 0, tzinfo=dt.UTC)  # 13:00 in Berlin

    task, call = engine.actions(ruleset.campaigns["flash-news"], 0, engine.Trigger.OPENED, "anna", friday,
                                ruleset.settings, None)  # fmt: skip

    assert isinstance(task, engine.AddTask) and isinstance(call, engine.AddTask)
    # two business days after a Friday: not Monday 8 March (Women's Day, a holiday in Berlin), Tuesday, Wednesday
    wednesday = dt.datetime(2027, 3, 10, 12, 0, tzinfo=dt.UTC)
    assert (task.subject, task.owner, task.due_at) == ("Send the deck", "anna", wednesday)
    assert (call.type, call.owner, call.due_at) == ("call", "ben", friday + dt.timedelta(days=3))  # plain days
