"""The web endpoints against the real store (SQLite and PostgreSQL): the unsubscribe page, POST and RFC 8058
one-click POST, the open pixel, the click redirect, forged tokens, /healthz and /metrics.

Each test sends a real message first (the scheduler, the maildir transport), then asks for its links as a
browser, a mail provider or a scanner would."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.message
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from outreach.app import enrolling, scheduler
from outreach.app import rules as app_rules
from outreach.engine import sequences as seq
from outreach.mail import links
from outreach.mail import transport as mail_transport
from outreach.rules import model
from outreach.store import Store
from outreach.web import server
from tests.conftest import ROOT
from tests.worlds import MONDAY, PEOPLE, seeded_store

pytestmark = pytest.mark.store

KEYS = links.Keys((b"web-tests-web-tests-web-tests-web-tests",))
LATER = MONDAY + dt.timedelta(hours=3)
PRICING = "https://www.example.com/pricing?utm_source=mail&x=2"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"


@dataclasses.dataclass
class Site:
    store: Store
    client: TestClient
    ctx: server.Context
    clock: list[dt.datetime]
    enrollment: seq.Enrollment
    mail: email.message.Message

    def link(self, kind: str) -> str:
        """The path of the sent message's unsubscribe (u), pixel (o) or first click (c) link."""
        if kind == "u":
            (url,) = re.findall(r"<([^>]+)>", self.mail["List-Unsubscribe"])
        else:
            html = next(p for p in self.mail.walk() if p.get_content_type() == "text/html")
            payload = html.get_payload(decode=True)
            assert isinstance(payload, bytes)
            url = re.findall(rf'(https://t\.example\.com/{kind}/[A-Za-z0-9_-]+)', payload.decode())[0]
        return urlsplit(url).path

    async def status(self) -> tuple[str, str | None]:
        row = await self.store.get_enrollment(self.enrollment.id)
        assert row is not None
        return row["status"], row["reason"]

    async def events(self, kind: str) -> list[dict[str, object]]:
        return [dict(e.data) for e in await self.store.events("L1") if e.kind == kind]


def _rules(tmp_path: Path) -> model.RuleSet:
    """The example rules, the intro's HTML with two links (one with an &amp;)."""
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    nurture = tmp_path / "rules" / "templates" / "nurture.yaml"
    text = nurture.read_text()
    html = "  <p>Best,<br>{{ sender.name }}</p>\n"
    assert html in text
    nurture.write_text(text.replace(html, html + '  <p><a href="https://www.example.com/pricing?utm_source=mail&amp;x=2">'
                                    'Pricing</a> <a href="https://www.example.com/cases">Cases</a></p>\n', 1))  # fmt: skip
    return app_rules.load(str(tmp_path / "rules"), MONDAY)


@pytest.fixture
async def site(backend: tuple[str, str | None], tmp_path: Path) -> AsyncIterator[Site]:
    ruleset = _rules(tmp_path)
    store = await seeded_store(backend, PEOPLE)
    await app_rules.apply(store, ruleset, now=MONDAY)
    outbox = tmp_path / "outbox"
    signed = links.Links("https://t.example.com", KEYS)
    sched = scheduler.Scheduler(store, ruleset, mail_transport.MaildirTransport(str(outbox)), links=signed)
    record = await store.get_record("L1")
    e = await enrolling.enroll(store, ruleset, record, ruleset.sequences["inbound-nurture"], enrolled_by="anna",
                               now=MONDAY)  # fmt: skip
    assert isinstance(e, seq.Enrollment)
    assert (await sched.tick(MONDAY)).sent == 1
    (path,) = (outbox / "new").iterdir()
    mail = email.message_from_bytes(path.read_bytes())
    clock = [LATER]
    ctx = server.Context(store=store, keys=lambda: KEYS, ruleset=lambda: ruleset, clock=lambda: clock[0])
    client = TestClient(TestServer(server.make_app(ctx)))
    await client.start_server()
    try:
        yield Site(store, client, ctx, clock, e, mail)
    finally:
        await client.close()
        await store.close()


# --- unsubscribe ---------------------------------------------------------------------------------------------


async def test_the_page_asks_in_the_rules_language_and_changes_nothing(site: Site) -> None:
    for method in ("GET", "HEAD"):
        answer = await site.client.request(method, site.link("u"), headers={"User-Agent": "Mimecast scanner"})
        assert answer.status == 200
        assert "no-store" in answer.headers["Cache-Control"] and answer.headers["X-Robots-Tag"] == "noindex"
    page = await (await site.client.get(site.link("u"))).text()
    assert '<html lang="de">' in page and '<form method="post" action="/u/' in page
    assert '<button type="submit"' in page and "Abmelden</button>" in page and "jo@example.org" in page
    assert await site.status() == ("active", None)  # a link scanner's GET unsubscribes nobody
    assert await site.store.unsubscribed_at("jo@example.org") is None
    assert await site.events("unsubscribed") == []


async def test_the_button_unsubscribes_at_once_and_a_second_post_changes_nothing(site: Site) -> None:
    answer = await site.client.post(site.link("u"), allow_redirects=False)
    assert answer.status == 200  # never a redirect
    assert "jo@example.org ist abgemeldet" in await answer.text()
    assert await site.status() == ("stopped", "unsubscribed")
    assert await site.store.unsubscribed_at("jo@example.org") == LATER
    (event,) = await site.events("unsubscribed")
    assert event["via"] == "page"
    again = await site.client.post(site.link("u"), allow_redirects=False)
    assert again.status == 200 and "war bereits abgemeldet" in await again.text()
    assert len(await site.events("unsubscribed")) == 1
    page = await (await site.client.get(site.link("u"))).text()
    assert "war bereits abgemeldet" in page and "<button" not in page


async def test_the_one_click_post_of_a_mail_provider_unsubscribes(site: Site) -> None:
    assert site.mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    answer = await site.client.post(site.link("u"), data="List-Unsubscribe=One-Click", allow_redirects=False,
                                    headers={"Content-Type": "application/x-www-form-urlencoded",
                                             "User-Agent": "Google-One-Click-Unsubscribe"})  # fmt: skip
    assert answer.status == 200
    assert await site.status() == ("stopped", "unsubscribed")
    (event,) = await site.events("unsubscribed")
    assert event["via"] == "one-click" and event["email"] == "jo@example.org"


def _mangled(path: str) -> list[str]:
    prefix, token = path.rsplit("/", 1)
    flip = "A" if token[-1] != "A" else "B"
    return [f"{prefix}/{token[:-1]}{flip}", f"{prefix}/{token[:-1]}", f"{prefix}/{token}x", f"{prefix}/x{token[1:]}",
            f"{prefix}/{links.sign(links.Keys((b'an-attacker-secret-an-attacker-00',)), links.verify(KEYS, token))}"]  # fmt: skip


async def test_a_forged_altered_or_truncated_token_gets_404_and_changes_nothing(site: Site) -> None:
    for kind in ("u", "o", "c"):
        for path in _mangled(site.link(kind)):
            for method in ("GET", "POST") if kind == "u" else ("GET",):
                answer = await site.client.request(method, path, data="List-Unsubscribe=One-Click",
                                                   allow_redirects=False)  # fmt: skip
                assert answer.status == 404, (method, path)
    pixel_as_unsubscribe = "/u/" + site.link("o").rsplit("/", 1)[1]  # a genuine token of another kind
    assert (await site.client.post(pixel_as_unsubscribe)).status == 404
    assert await site.status() == ("active", None)
    assert await site.store.unsubscribed_at("jo@example.org") is None
    assert (await site.store.status(LATER)).hits == {}
    assert await site.events("opened") == await site.events("clicked") == []


# --- opens and clicks ----------------------------------------------------------------------------------------


async def test_the_pixel_records_an_open_and_is_never_cached(site: Site) -> None:
    answer = await site.client.get(site.link("o"), headers={"User-Agent": BROWSER})
    assert answer.status == 200 and answer.headers["Content-Type"] == "image/gif"
    assert await answer.read() == server.PIXEL and "no-store" in answer.headers["Cache-Control"]
    (event,) = await site.events("opened")
    assert event["automated"] is False
    assert (await site.store.status(LATER)).hits == {("open", False): 1}
    assert await site.status() == ("active", None)  # an open changes no sequence


@pytest.mark.parametrize(("method", "agent", "after", "why"), [
    ("HEAD", BROWSER, dt.timedelta(hours=3), "HEAD"),
    ("GET", "Mozilla/5.0 (compatible; Proofpoint URL Defense)", dt.timedelta(hours=3), "proofpoint"),
    ("GET", BROWSER, dt.timedelta(seconds=2), "within 10 s"),
])  # fmt: skip
async def test_an_automated_open_is_recorded_and_flagged(site: Site, method: str, agent: str, after: dt.timedelta,
                                                         why: str) -> None:  # fmt: skip
    site.clock[0] = MONDAY + after
    answer = await site.client.request(method, site.link("o"), headers={"User-Agent": agent})
    assert answer.status == 200
    (event,) = await site.events("opened")
    assert event["automated"] is True and why in str(event["why"])
    assert (await site.store.status(LATER)).hits == {("open", True): 1}


async def test_a_click_redirects_only_to_the_url_recorded_at_send_time(site: Site) -> None:
    answer = await site.client.get(f"{site.link('c')}?url=https://evil.example/&next=https://evil.example/",
                                   headers={"User-Agent": BROWSER}, allow_redirects=False)  # fmt: skip
    assert answer.status == 302 and answer.headers["Location"] == PRICING
    (event,) = await site.events("clicked")
    assert event == {"outbox": event["outbox"], "automated": False, "link": 0, "url": PRICING}


async def test_many_links_of_one_message_clicked_within_a_second_look_automated(site: Site) -> None:
    first = site.link("c")
    html = next(p for p in site.mail.walk() if p.get_content_type() == "text/html").get_payload(decode=True)
    assert isinstance(html, bytes)
    second = urlsplit(re.findall(r"https://t\.example\.com/c/[A-Za-z0-9_-]+", html.decode())[1]).path
    assert (await site.client.get(first, headers={"User-Agent": BROWSER}, allow_redirects=False)).status == 302
    site.clock[0] = LATER + dt.timedelta(milliseconds=300)
    answer = await site.client.get(second, headers={"User-Agent": BROWSER}, allow_redirects=False)
    assert answer.headers["Location"] == "https://www.example.com/cases"
    human, scanner = await site.events("clicked")
    assert human["automated"] is False and scanner["automated"] is True and "several links" in str(scanner["why"])


# --- health and metrics --------------------------------------------------------------------------------------


async def test_healthz_names_the_failing_part(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    answer = await site.client.get("/healthz")
    assert answer.status == 200 and await answer.json() == {"status": "ok", "checks": {"database": "ok"}}
    site.ctx.health.beat("scheduler", LATER - dt.timedelta(minutes=10), dt.timedelta(minutes=5))
    site.ctx.health.watch("mailboxes", lambda: "the reading of mailbox(es) anna stopped")
    answer = await site.client.get("/healthz")
    body = await answer.json()
    assert answer.status == 503 and body["status"] == "failing" and body["checks"]["database"] == "ok"
    assert body["checks"]["scheduler"].startswith("no round for 600 s")
    assert body["checks"]["mailboxes"] == "the reading of mailbox(es) anna stopped"
    site.ctx.health.beat("scheduler", LATER, dt.timedelta(minutes=5))
    site.ctx.health.watch("mailboxes", lambda: None)
    assert (await site.client.get("/healthz")).status == 200


    async def refused() -> None:  # the database server gone (a fault the test's own server is not put into)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(site.store, "ping", refused)
    answer = await site.client.get("/healthz")
    body = await answer.json()
    assert answer.status == 503 and body["checks"]["database"].startswith("the database does not answer")


async def test_metrics_are_prometheus_text_from_the_store_and_the_process(site: Site) -> None:
    await site.client.get(site.link("o"), headers={"User-Agent": BROWSER})
    await site.client.request("HEAD", site.link("o"), headers={"User-Agent": BROWSER})
    await site.client.post(site.link("u"))
    site.ctx.metrics.observe_tick(0.02, {"2xx": 3, "4xx": 1})
    answer = await site.client.get("/metrics")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await answer.text()
    for line in ('outreach_messages{state="sent"} 1.0', 'outreach_enrollments{status="stopped"} 1.0',
                 "outreach_due_backlog 0.0", 'outreach_opens_total{automated="false"} 1.0',
                 'outreach_opens_total{automated="true"} 1.0', 'outreach_clicks_total{automated="false"} 0.0',
                 "outreach_unsubscribes_total 1.0", 'outreach_smtp_replies_total{class="2xx"} 3.0',
                 'outreach_smtp_replies_total{class="4xx"} 1.0', "outreach_tick_seconds_count 1.0"):  # fmt: skip
        assert line in text.splitlines(), line


# --- bounds --------------------------------------------------------------------------------------------------


async def test_a_body_over_a_megabyte_is_refused_and_changes_nothing(site: Site) -> None:
    answer = await site.client.post(site.link("u"), data=b"List-Unsubscribe=One-Click&" + b"x" * (server.MAX_BODY + 1))
    assert answer.status == 413
    assert await site.status() == ("active", None) and await site.store.unsubscribed_at("jo@example.org") is None


async def test_a_body_that_trickles_in_is_cut_off(site: Site) -> None:
    async def slowly() -> AsyncIterator[bytes]:
        yield b"List-Unsubscribe="
        await asyncio.sleep(2)
        yield b"One-Click"

    client = TestClient(TestServer(server.make_app(site.ctx, timeout=0.3)))
    await client.start_server()
    try:
        answer = await client.post(site.link("u"), data=slowly())
        assert answer.status == 408
    finally:
        await client.close()
    assert await site.status() == ("active", None) and await site.store.unsubscribed_at("jo@example.org") is None
