"""Open and click tracking, decided: which links of a message are tracked, and which hits look automated.

`instrument` rewrites the links of a message's HTML part to signed click URLs and adds the open pixel; the URLs
the links led to are returned, to be kept with the message, so that a click redirects only to a URL recorded at
send time. The text part keeps its links as written (a reader of plain text sees where a link goes). The
unsubscribe link and mailto:/tel: links are never rewritten.

`automated` says why a hit looks like a machine rather than a person: a security scanner following every link,
a mail provider fetching images at delivery, a link preview. Such hits are recorded, flagged, and fire nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html as html_module
import re
from collections.abc import Callable

import markupsafe

from outreach.engine import render

MAX_TRACKED_LINKS = 200  # links past this many in one message stay as written
_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"'<>\s]*)\2""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)

AUTOMATED_WITHIN = dt.timedelta(seconds=10)  # a hit this soon after the message left was not a person reading it
BURST = dt.timedelta(seconds=1)  # two different links of one message clicked within this: a scanner
# User agents of security scanners, link previews, prefetchers and HTTP libraries (lower case, as substrings).
# Gmail's image proxy (GoogleImageProxy) is not among them: it fetches when a person opens the mail.
SCANNER_AGENTS = (
    "bot", "crawler", "spider", "preview", "scanner", "scan/", "barracuda", "mimecast", "proofpoint", "ironport",
    "messagelabs", "symantec", "trendmicro", "trend micro", "sophos", "fortinet", "fortiguard", "forcepoint",
    "zscaler", "paloalto", "checkpoint", "cisco", "bitdefender", "kaspersky", "safelinks", "slackbot",
    "facebookexternalhit", "whatsapp", "skypeuripreview", "headlesschrome", "phantomjs", "python-requests",
    "python-urllib", "aiohttp", "curl/", "wget/", "go-http-client", "okhttp", "java/", "libwww", "apache-httpclient",
    "httpclient", "axios/", "node-fetch",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Instrumented:
    rendered: render.Rendered
    urls: tuple[str, ...]  # the tracked links' targets, by link number


def instrument(
    rendered: render.Rendered, *, click: Callable[[int], str] | None, pixel: str | None, keep: str | None = None
) -> Instrumented:
    """The message with its HTML links going through `click(n)` (the n-th tracked link) and the pixel `pixel`
    before </body>; `keep` (the unsubscribe URL) stays as it is. Without an HTML part nothing changes."""
    html = rendered.html
    if html is None or (click is None and pixel is None):
        return Instrumented(rendered, ())
    urls: list[str] = []
    if click is not None:

        def rewrite(m: re.Match[str]) -> str:
            target = html_module.unescape(m.group(3))
            if target == keep or len(urls) >= MAX_TRACKED_LINKS:
                return m.group(0)
            urls.append(target)
            return f"{m.group(1)}{m.group(2)}{markupsafe.escape(click(len(urls) - 1))}{m.group(2)}"

        html = _HREF.sub(rewrite, html)
    if pixel is not None:
        img = f'<img src="{markupsafe.escape(pixel)}" width="1" height="1" alt="" style="display:block;border:0">'
        ends = list(_BODY_END.finditer(html))
        html = f"{html[: ends[-1].start()]}{img}{html[ends[-1].start() :]}" if ends else f"{html}\n{img}\n"
    return Instrumented(render.Rendered(rendered.subject, rendered.text, html), tuple(urls))


@dataclasses.dataclass(frozen=True)
class Hit:
    """What a request for a tracked link tells: how it asked, who it says it is, when, and what came before."""

    method: str  # GET | HEAD
    user_agent: str
    at: dt.datetime
    sent_at: dt.datetime | None  # when the message left (None: not sent yet)
    other_links_clicked: int = 0  # different links of the same message clicked within BURST before `at`


def automated(hit: Hit) -> str | None:
    """Why the hit looks automated, or None for a person."""
    if hit.method.upper() == "HEAD":
        return "a HEAD request"
    agent = hit.user_agent.strip().lower()
    if not agent:
        return "no user agent"
    for marker in SCANNER_AGENTS:
        if marker in agent:
            return f"a scanner or preview user agent ({marker.strip('/')})"
    if hit.sent_at is None:
        return "before the message was sent"
    if hit.at - hit.sent_at < AUTOMATED_WITHIN:
        return f"within {AUTOMATED_WITHIN.seconds} s of delivery"
    if hit.other_links_clicked >= 1:
        return "several links of the message clicked within a second"
    return None
