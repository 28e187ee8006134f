"""How the process is doing, for /healthz and /metrics: whether the database answers, and what it holds."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Protocol

from outreach.store import rows


class StatusStore(Protocol):
    async def ping(self) -> None: ...

    async def status(self, now: dt.datetime) -> rows.Status: ...


async def database_problem(store: StatusStore, *, timeout: float = 2.0) -> str | None:
    """Why the database does not answer within `timeout` seconds, or None when it does."""
    try:
        await asyncio.wait_for(store.ping(), timeout)
    except TimeoutError:
        return f"the database did not answer within {timeout:g} s"
    except Exception as exc:  # whatever the driver says, for the operator
        return f"the database does not answer: {type(exc).__name__}: {str(exc)[:200]}"
    return None


async def snapshot(store: StatusStore, now: dt.datetime) -> rows.Status:
    """Messages by state, enrollments by status, the due backlog, the mailboxes' last reads, opens and clicks."""
    return await store.status(now)
