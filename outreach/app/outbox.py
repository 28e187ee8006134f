"""The outbox by hand: which messages an operator may send again, and sending them again (`outreach outbox
requeue`). A message `unknown` may have reached its recipient already (the relay may have taken it before the
answer was lost), so sending it again is a decision, shown before it is taken."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any, Protocol

STATES = ("unknown", "failed")  # the states a message can be sent again from


class OutboxStore(Protocol):
    async def requeue_candidates(
        self, *, ids: Sequence[int] = (), states: Sequence[str] = STATES, since: dt.datetime | None = None,
        to_domain: str | None = None, limit: int = 100_000,
    ) -> list[dict[str, Any]]: ...  # fmt: skip

    async def requeue(self, ids: Sequence[int]) -> int: ...


@dataclasses.dataclass(frozen=True)
class Requeue:
    """What `requeue` would do: the messages, and counts by state and by recipient domain."""

    messages: tuple[dict[str, Any], ...]
    missing: tuple[int, ...]  # ids asked for that are not in a state to send again (or do not exist)

    @property
    def by_state(self) -> dict[str, int]:
        return dict(collections.Counter(m["state"] for m in self.messages).most_common())

    @property
    def by_domain(self) -> dict[str, int]:
        return dict(collections.Counter(m["recipient"].rpartition("@")[2].lower() for m in self.messages).most_common())


async def plan(store: OutboxStore, *, ids: Sequence[int] = (), states: Sequence[str] = STATES,
               since: dt.datetime | None = None, to_domain: str | None = None) -> Requeue:  # fmt: skip
    """The messages these criteria pick (all that are given hold), nothing written."""
    unknown_states = [s for s in states if s not in STATES]
    if unknown_states:
        raise ValueError(f"a message is sent again from {' or '.join(STATES)}, not {', '.join(unknown_states)}")
    found = await store.requeue_candidates(ids=ids, states=states, since=since, to_domain=to_domain)
    taken = {m["id"] for m in found}
    return Requeue(tuple(found), tuple(i for i in ids if i not in taken))


async def requeue(store: OutboxStore, chosen: Requeue) -> int:
    """Queue the planned messages again (those still unknown or failed); how many were."""
    return await store.requeue([m["id"] for m in chosen.messages])
