"""The daemon's supervisor: a failing loop is restarted with backoff and its reason logged; one that keeps failing
stops the daemon; on stop, loops are cancelled and the graceful one finishes within the grace period."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from outreach.daemon import supervisor

pytestmark = pytest.mark.unit


def quick(**options: object) -> supervisor.Supervisor:
    return supervisor.Supervisor(base=0.0, rng=random.Random(1), **options)  # type: ignore[arg-type]


async def test_a_failing_loop_is_restarted_and_its_reason_logged(caplog: pytest.LogCaptureFixture) -> None:
    stopping = asyncio.Event()
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise ConnectionResetError("the database went away")
        stopping.set()  # the third run works; the daemon is then stopped

    jobs = quick()
    jobs.add("scheduler", flaky)
    with caplog.at_level(logging.ERROR, logger="outreach"):
        await jobs.run(stopping, grace=1.0)
    assert len(runs) == 3
    failures = [r for r in caplog.records if "scheduler failed" in r.getMessage()]
    assert len(failures) == 2 and "ConnectionResetError: the database went away" in failures[0].getMessage()
    assert failures[0].__dict__["task"] == "scheduler" and failures[0].exc_info is not None


async def test_a_loop_that_keeps_failing_stops_the_daemon_and_the_others() -> None:
    stopping = asyncio.Event()
    other_cancelled = asyncio.Event()

    async def broken() -> None:
        raise RuntimeError("no transport")

    async def other() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            other_cancelled.set()
            raise

    jobs = quick(give_up_after=4)
    jobs.add("dispatcher", broken)
    jobs.add("leases", other)
    with pytest.raises(supervisor.Unrecoverable, match="dispatcher failed 4 times in a row: RuntimeError: no transport"):
        await jobs.run(stopping, grace=1.0)
    assert other_cancelled.is_set()


async def test_on_stop_loops_are_cancelled_and_the_graceful_one_finishes_its_work() -> None:
    stopping = asyncio.Event()
    in_flight = asyncio.Event()
    finished, cancelled = [], []

    async def dispatcher() -> None:
        while not stopping.is_set():
            in_flight.set()
            await asyncio.sleep(0)  # a group of mail being sent ...
            for _ in range(5):
                await asyncio.sleep(0)
            finished.append("group")

    async def scheduler() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append("scheduler")
            raise

    jobs = quick()
    jobs.add("dispatcher", dispatcher, graceful=True)
    jobs.add("scheduler", scheduler)
    task = asyncio.create_task(jobs.run(stopping, grace=5.0))
    await in_flight.wait()
    stopping.set()
    await task
    assert cancelled == ["scheduler"] and finished  # the group in flight was not cut


async def test_a_graceful_loop_past_its_grace_is_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    stopping = asyncio.Event()
    started = asyncio.Event()

    async def stuck() -> None:
        started.set()
        await asyncio.Event().wait()  # a relay that never answers

    jobs = quick()
    jobs.add("dispatcher", stuck, graceful=True)
    task = asyncio.create_task(jobs.run(stopping, grace=0.0))
    await started.wait()
    stopping.set()
    with caplog.at_level(logging.WARNING, logger="outreach"):
        await task
    assert any("did not finish within the grace period" in r.getMessage() for r in caplog.records)


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    jobs = supervisor.Supervisor(base=1.0, cap=300.0, rng=random.Random(7))
    delays = [jobs.backoff(n) for n in range(1, 12)]
    assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0 and 2.0 <= delays[2] <= 4.0
    assert all(150.0 <= d <= 300.0 for d in delays[9:])
