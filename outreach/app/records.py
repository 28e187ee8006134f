"""Reading records for a list: the first of those that match, and how many match in all."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Protocol

from outreach.rules import criteria
from outreach.store import rows


class RecordStore(Protocol):
    async def list_records(self, where: criteria.Criteria | None = None, *, now: dt.datetime,
                           module: str | None = None, include_deleted: bool = False,
                           limit: int | None = None, not_enrolled: bool = False) -> list[rows.Record]: ...  # fmt: skip

    async def count_records(self, where: criteria.Criteria | None = None, *, now: dt.datetime,
                            module: str | None = None, include_deleted: bool = False,
                            not_enrolled: bool = False) -> int: ...  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Page:
    """The first records that match, by id, and how many match in all (the limit aside)."""

    records: tuple[rows.Record, ...]
    total: int

    @property
    def cut(self) -> bool:
        """Whether the limit left records out."""
        return len(self.records) < self.total


async def page(store: RecordStore, where: criteria.Criteria | None, *, now: dt.datetime, module: str | None,
               limit: int, not_enrolled: bool = False) -> Page:  # fmt: skip
    """At most `limit` live records that match (with `not_enrolled`, of those in no sequence), by id; they are
    counted only when the limit was reached."""
    found = await store.list_records(where, now=now, module=module, limit=limit, not_enrolled=not_enrolled)
    total = len(found) if len(found) < limit else await store.count_records(where, now=now, module=module,
                                                                             not_enrolled=not_enrolled)  # fmt: skip
    return Page(tuple(found), total)
