"""/metrics in Prometheus' text format (prometheus-client), from the store and from the daemon's loops.

What the store holds (messages by state, enrollments by status, the due backlog, each mailbox's lag, opens and
clicks by person or machine, unsubscribes) is read at each scrape; what only the process sees (how long ticks
take, the SMTP replies by class) is counted as it happens. Every daemon and `outreach web` has its own registry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from outreach.app import status
from outreach.store import rows

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _FromStore(Collector):
    def __init__(self) -> None:
        self.status: rows.Status | None = None
        self.now = dt.datetime.min.replace(tzinfo=dt.UTC)  # set with the status, at each scrape

    def collect(self) -> Iterator[Metric]:
        s = self.status
        if s is None:
            return
        messages = GaugeMetricFamily("outreach_messages", "Outbox messages by state.", labels=["state"])
        for state, n in sorted(s.messages.items()):
            messages.add_metric([state], n)
        yield messages
        enrollments = GaugeMetricFamily("outreach_enrollments", "Enrollments by status.", labels=["status"])
        for state, n in sorted(s.enrollments.items()):
            enrollments.add_metric([state], n)
        yield enrollments
        yield GaugeMetricFamily("outreach_due_backlog", "Active enrollments whose next step is due and not run yet.",
                                value=s.due)  # fmt: skip
        lag = GaugeMetricFamily("outreach_imap_lag_seconds", "Seconds since each mailbox was last read through.",
                                labels=["mailbox"])  # fmt: skip
        for name, at in sorted(s.mailboxes.items()):
            if at is not None:
                lag.add_metric([name], max(0.0, (self.now - at).total_seconds()))
        yield lag
        for kind, plural in (("open", "opens"), ("click", "clicks")):
            family = CounterMetricFamily(f"outreach_{plural}", f"Tracked {plural}, by a person or automated "
                                         "(scanners, prefetch).", labels=["automated"])  # fmt: skip
            for automated in (False, True):
                family.add_metric(["true" if automated else "false"], s.hits.get((kind, automated), 0))
            yield family
        yield CounterMetricFamily("outreach_unsubscribes", "Unsubscribes recorded.", value=s.unsubscribes)


class Metrics:
    """The registry of one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tick_seconds = Histogram(
            "outreach_tick_seconds", "How long a scheduler tick took.", registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )  # fmt: skip
        self.smtp_replies = Counter("outreach_smtp_replies", "Replies of the SMTP relay to messages, by class "
                                    "(2xx, 4xx, 5xx; none: no reply, the connection failed).", ["class"],
                                    registry=self.registry)  # fmt: skip
        self._store = _FromStore()
        self.registry.register(self._store)

    def observe_tick(self, seconds: float, replies: Mapping[str, int]) -> None:
        """A scheduler tick (`run --once` dispatches in it too, whence its replies)."""
        self.tick_seconds.observe(seconds)
        self.count_replies(replies)

    def count_replies(self, replies: Mapping[str, int]) -> None:
        """The relay's replies by class, as the dispatcher got them."""
        for cls, n in replies.items():
            self.smtp_replies.labels(cls).inc(n)

    async def render(self, store: status.StatusStore, now: dt.datetime) -> bytes:
        self._store.status = await status.snapshot(store, now)
        self._store.now = now
        return generate_latest(self.registry)
