"""One supervisor for the daemon's loops: each runs as a task; one that fails is logged with its reason and
started again after a growing delay; the process gives up (and systemd restarts it) only when a loop keeps
failing. On stop, the loops are cancelled at once, except the graceful ones (the dispatcher, with mail in
flight), which are given a grace period to finish first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("outreach")


class Unrecoverable(Exception):
    """A loop failed too many times in a row: the daemon stops (exit 1) and its supervisor (systemd) restarts it."""


@dataclasses.dataclass
class Job:
    name: str
    run: Callable[[], Awaitable[None]]
    graceful: bool = False  # on stop, let it finish within the grace period instead of cancelling it
    failures: int = 0


class Supervisor:
    def __init__(self, *, base: float = 1.0, cap: float = 300.0, give_up_after: int = 10,
                 healthy_after: float = 300.0, rng: random.Random | None = None) -> None:  # fmt: skip
        self.base, self.cap = base, cap
        self.give_up_after = give_up_after  # failures in a row (a loop that ran healthy_after seconds resets it)
        self.healthy_after = healthy_after
        self.rng = rng or random.Random()
        self.jobs: list[Job] = []

    def add(self, name: str, run: Callable[[], Awaitable[None]], *, graceful: bool = False) -> None:
        self.jobs.append(Job(name, run, graceful))

    def backoff(self, failures: int) -> float:
        """Seconds before the failures-th restart: 1, 2, 4 ... at most `cap`, with a random half (equal jitter)."""
        ceiling = float(min(self.base * 2 ** (failures - 1), self.cap))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    async def run(self, stopping: asyncio.Event, *, grace: float) -> None:
        """Run every job until `stopping` is set (then stop them; graceful ones get `grace` seconds), or until one
        gives up (Unrecoverable, after stopping the others)."""
        tasks = {asyncio.create_task(self._keep(job, stopping), name=job.name): job for job in self.jobs}
        stop = asyncio.create_task(stopping.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
            failed = [t for t in done if t is not stop and not t.cancelled() and t.exception() is not None]
        finally:
            stop.cancel()
            await self._stop(tasks, grace)
        if failed:
            raise failed[0].exception()  # type: ignore[misc]

    async def _stop(self, tasks: dict[asyncio.Task[None], Job], grace: float) -> None:
        running = {t: j for t, j in tasks.items() if not t.done()}
        for task, job in running.items():
            if not job.graceful:
                task.cancel()
        graceful = [t for t, j in running.items() if j.graceful]
        if graceful:
            _done, late = await asyncio.wait(graceful, timeout=grace)
            for task in late:
                log.warning("%s did not finish within the grace period of %g s; cancelled", task.get_name(), grace)
                task.cancel()
        if running:
            await asyncio.wait(running)

    async def _keep(self, job: Job, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            started = time.monotonic()
            try:
                await job.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop's failure: logged, and the loop starts again
                reason = f"{type(exc).__name__}: {exc}"
                if time.monotonic() - started >= self.healthy_after:
                    job.failures = 0
                job.failures += 1
                if job.failures >= self.give_up_after:
                    log.error("%s failed %d times in a row (%s); the daemon stops", job.name, job.failures, reason,
                              exc_info=True, extra={"task": job.name})  # fmt: skip
                    raise Unrecoverable(f"{job.name} failed {job.failures} times in a row: {reason}") from exc
                delay = self.backoff(job.failures)
                log.error("%s failed (%s); starting it again in %.1f s", job.name, reason, delay, exc_info=True,
                          extra={"task": job.name})  # fmt: skip
            else:
                if stopping.is_set():
                    return
                job.failures = 0
                delay = self.backoff(1)
                log.warning("%s ended by itself; starting it again in %.1f s", job.name, delay, extra={"task": job.name})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=delay)
