"""Caps on mail per hour to a recipient domain (Settings.limits.domains), counted as this daemon sends.

Big mailbox providers throttle or junk a sudden burst from one sender; a cap spreads it out. The count lives in
the daemon's memory over a sliding hour of the scheduler's `now`: a restart or a reload starts it again, and
several daemons on PostgreSQL each count their own.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Mapping

HOUR = dt.timedelta(hours=1)


class DomainCaps:
    def __init__(self, caps: Mapping[str, int]) -> None:
        self.caps = {domain.lower(): cap for domain, cap in caps.items()}
        self._sent: dict[str, collections.deque[dt.datetime]] = {}

    def take(self, recipient: str, now: dt.datetime) -> dt.datetime | None:
        """Count a message to `recipient` at `now` and return None, or, when its domain's cap is reached,
        return when the next slot frees (nothing counted)."""
        domain = recipient.rpartition("@")[2].lower()
        cap = self.caps.get(domain)
        if cap is None:
            return None
        times = self._sent.setdefault(domain, collections.deque())
        while times and times[0] <= now - HOUR:
            times.popleft()
        if len(times) >= cap:
            return times[0] + HOUR
        times.append(now)
        return None

    def why(self, recipient: str) -> str:
        domain = recipient.rpartition("@")[2].lower()
        return f"waiting: at most {self.caps[domain]} messages an hour to {domain}"
