"""The unsubscribe round trip as a person and a mail provider make it, against the daemon as the README starts it.

`outreach run` (the example rules, no secret set: the daemon creates one) sends the welcome mails into the
maildir; a real Chromium (Debian's, headless, driven by Playwright) opens the unsubscribe link of one of them,
sees the confirmation page, clicks its button, and the test checks the suppression and the stopped sequence.
The other mail's List-Unsubscribe is answered with the RFC 8058 one-click POST, as Gmail sends it. Screenshots
of the page before and after the click are saved as artifacts ($OUTREACH_ARTIFACTS, else var/artifacts/).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from outreach.store import Store
from tests.conftest import ROOT

pytestmark = pytest.mark.acceptance

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("OUTREACH_ARTIFACTS", ROOT / "var" / "artifacts"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium is not installed at {CHROMIUM}: CI installs Debian's chromium (.ci/run)")
        pytest.skip("Chromium is not installed (apt-get install chromium); CI runs this test")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    def __init__(self, work: Path, port: int) -> None:
        self.work, self.port = work, port
        self.env = {k: v for k, v in os.environ.items() if k not in ("OUTREACH_SECRET", "OUTREACH_DB")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.proc: subprocess.Popen[str] | None = None
        self.log = work / "daemon.log"

    def outreach(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "outreach.cli", *args], cwd=self.work, env=self.env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "outreach.cli", "run", "--rules", "rules", "--tick", "0.2"],
            cwd=self.work, env=self.env, stderr=self.log.open("w"), text=True,
        )  # fmt: skip

    def stop(self) -> str:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.log.read_text()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """The README's quick start in a directory of its own, its web endpoints on a free port (the links too)."""
    port = _free_port()
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    settings = tmp_path / "rules" / "settings.yaml"
    text = settings.read_text().replace("127.0.0.1:8025", f"127.0.0.1:{port}")
    assert f'base_url: "http://127.0.0.1:{port}"' in text and f"listen: 127.0.0.1:{port}" in text
    settings.write_text(text)
    d = Daemon(tmp_path, port)
    d.outreach("records", "import", "samples/leads.csv", "--update")
    d.start()
    try:
        yield d
    finally:
        log = d.stop()
        assert "Traceback" not in log, log


def _welcome_mails(d: Daemon, want: int, timeout: float = 60) -> dict[str, email.message.Message]:
    work = d.work
    deadline = time.monotonic() + timeout
    found: dict[str, email.message.Message] = {}
    while time.monotonic() < deadline and d.proc is not None and d.proc.poll() is None:
        new = work / "var" / "outbox" / "new"
        for path in new.iterdir() if new.exists() else ():
            m = email.message_from_bytes(path.read_bytes())
            found[m["To"]] = m
        if len(found) >= want:
            return found
        time.sleep(0.2)
    raise AssertionError(f"only {len(found)} mail(s) in {work / 'var/outbox/new'}: {(work / 'daemon.log').read_text()}")


def _unsubscribe_url(m: email.message.Message) -> str:
    (url,) = re.findall(r"<(http[^>]+)>", m["List-Unsubscribe"])
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = m.get_payload(decode=True) if not m.is_multipart() else next(
        p for p in m.walk() if p.get_content_type() == "text/plain").get_payload(decode=True)  # fmt: skip
    assert isinstance(text, bytes) and f"Unsubscribe: {url}" in text.decode()  # the footer carries the same link
    return str(url)


def state(work: Path, email_address: str) -> tuple[object, list[tuple[str, str | None]]]:
    """When the address was unsubscribed, and its welcome enrollments: read from the daemon's database (in a
    thread of its own, beside Playwright's event loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _state(work, email_address)).result()


async def _state(work: Path, email_address: str) -> tuple[object, list[tuple[str, str | None]]]:
    store = await Store.open(f"sqlite:///{work / 'var' / 'outreach.db'}")
    try:
        when = await store.unsubscribed_at(email_address)
        enrolled = [(e["status"], e["reason"]) for e in await store.enrollments(sequence="welcome")
                    if e["email"] == email_address]  # fmt: skip
    finally:
        await store.close()
    return when, enrolled


def test_a_person_unsubscribes_in_chromium_from_a_mail_the_daemon_sent(daemon: Daemon) -> None:
    _need_chromium()
    from playwright.sync_api import sync_playwright

    mails = _welcome_mails(daemon, 2)
    url = _unsubscribe_url(mails["mila.novak@example.org"])
    assert url.startswith(f"http://127.0.0.1:{daemon.port}/u/") and "mila" not in url
    secret = daemon.work / "var" / "tracking-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600  # created by the daemon, for its owner only
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            answer = page.goto(url)
            assert answer is not None and answer.status == 200
            assert page.get_attribute("html", "lang") == "en"
            assert page.get_by_text("Stop all emails from us to mila.novak@example.org?").is_visible()
            page.screenshot(path=str(ARTIFACTS / "unsubscribe-page.png"))
            assert state(daemon.work, "mila.novak@example.org")[0] is None  # the GET changed nothing
            with page.expect_navigation():
                page.get_by_role("button", name="Unsubscribe").click()
            assert page.get_by_role("status").inner_text() == (
                "mila.novak@example.org is unsubscribed. You will get no more emails from us.")
            page.screenshot(path=str(ARTIFACTS / "unsubscribe-done.png"))
        finally:
            browser.close()
    when, enrolled = state(daemon.work, "mila.novak@example.org")
    assert when is not None
    assert enrolled == [("stopped", "unsubscribed")]
    assert (ARTIFACTS / "unsubscribe-done.png").stat().st_size > 1000


def test_a_mail_providers_one_click_post_unsubscribes(daemon: Daemon) -> None:
    mails = _welcome_mails(daemon, 2)
    url = _unsubscribe_url(mails["tom.berg@example.net"])
    request = urllib.request.Request(url, data=b"List-Unsubscribe=One-Click", method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "User-Agent": "Mozilla/5.0 (compatible; Google)"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200 and answer.url == url  # answered in place, never redirected
        assert "tom.berg@example.net is unsubscribed" in answer.read().decode()
    when, enrolled = state(daemon.work, "tom.berg@example.net")
    assert when is not None and enrolled == [("stopped", "unsubscribed")]
    assert state(daemon.work, "mila.novak@example.org") == (None, [("active", None)])
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/healthz", timeout=10) as health:
        assert health.status == 200
    log = daemon.stop()
    assert "links are signed with a secret created in var/tracking-secret" in log
    assert "unsubscribed tom.berg@example.net (one-click" in log
