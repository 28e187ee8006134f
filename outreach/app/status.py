"""How things are going: for /healthz and /metrics, whether the database answers and what it holds; for
`outreach status`, the daemons on the database, what each holds and when it last ticked."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Protocol

from outreach.store import rows

DAEMON = "daemon:"  # the lease that says a daemon is alive (outreach/store/leasing.py)


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


class DaemonStore(Protocol):
    async def leases(self) -> list[rows.Lease]: ...


@dataclasses.dataclass(frozen=True)
class DaemonState:
    """A daemon as its lease says: alive while its lease runs; what it holds, when it last ticked."""

    id: str
    alive: bool
    expires_at: dt.datetime
    renewed_at: dt.datetime | None
    host: str | None
    pid: int | None
    last_tick: str | None
    sent_today: int | None
    holds: tuple[str, ...]


async def daemons(store: DaemonStore, now: dt.datetime) -> tuple[list[DaemonState], list[rows.Lease]]:
    """The daemons on this database (alive first, then those whose lease expired) and every other lease."""
    found = await store.leases()
    work = [x for x in found if not x.name.startswith(DAEMON)]
    states = []
    for lease in found:
        if not lease.name.startswith(DAEMON):
            continue
        holds = tuple(x.name for x in work if x.holder == lease.holder and x.expires_at > now)
        info = lease.info
        pid = info.get("pid")
        sent = info.get("sent_today")
        states.append(DaemonState(
            lease.holder, lease.expires_at > now, lease.expires_at, lease.renewed_at,
            str(info["host"]) if info.get("host") else None, int(pid) if isinstance(pid, int) else None,
            str(info["last_tick"]) if info.get("last_tick") else None, int(sent) if isinstance(sent, int) else None,
            holds,
        ))  # fmt: skip
    states.sort(key=lambda d: (not d.alive, d.id))
    return states, work
