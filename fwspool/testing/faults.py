"""The fault-injecting doubles, in one place: each wraps (or stands in for) a real implementation
of one of fwspool's small interfaces and fails where a test says.

- :class:`FlakyUplink` (:class:`fwspool.uplink.Uplink`): refuses the check, or fails before or
  after the real ``apply`` (a write whose acknowledgement never arrived).
- :class:`FlakyScheduler` (:class:`fwspool.scheduler.Scheduler`): the next queries time out.
- :class:`ShortReads` and :class:`ShortReadSource` (:class:`fwspool.spool.SourceFile`): reads
  return fewer bytes than asked, as a real filesystem may at any time.

The failpoints (:mod:`fwspool.failpoints`) are not here: the installed commands read them from
the environment, so the chaos harness can kill a real ``fwspool push`` at a named place.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Collection, Sequence
from typing import Any

from fwspool.binding import LaunchPadIdentity
from fwspool.errors import UplinkUnavailable
from fwspool.events import JobEnd
from fwspool.launchpad import ApplyResult, Verdict
from fwspool.runs import LaunchEvents
from fwspool.scheduler import Scheduler, SchedulerQueryError
from fwspool.spool import OsSourceFile
from fwspool.testing.spool_files import MemorySource
from fwspool.uplink import Uplink

__all__ = ["SHORT_READ_CHANCE", "FlakyScheduler", "FlakyUplink", "ShortReadSource", "ShortReads"]

#: How often a read is cut short.
SHORT_READ_CHANCE = 0.7


def _cut_short(data: bytes, rng: random.Random) -> bytes:
    """``data`` or a non-empty prefix of it, at random: a short read never looks like EOF."""
    if len(data) > 1 and rng.random() < SHORT_READ_CHANCE:
        data = data[: rng.randint(1, len(data) - 1)]
    return data


class ShortReads(MemorySource):
    """A SourceFile over bytes that returns fewer bytes than asked, at random (never 0 before EOF)."""

    def __init__(self, data: bytes, seed: int = 0) -> None:
        super().__init__(data)
        self.rng = random.Random(seed)

    def pread(self, size: int, offset: int) -> bytes:
        return _cut_short(super().pread(size, offset), self.rng)


class ShortReadSource(OsSourceFile):
    """A real file whose reads return fewer bytes than asked, at random; an opener for ingest.

    One random sequence for the class (ingest opens one instance per file); set ``rng`` on an
    instance for a sequence of its own.
    """

    rng = random.Random(7)

    def pread(self, size: int, offset: int) -> bytes:
        return _cut_short(super().pread(size, offset), self.rng)


class FlakyScheduler:
    """Wraps a batch system and fails the next ``fail_next`` queries (tests)."""

    def __init__(self, inner: Scheduler, *, fail_next: int = 0) -> None:
        self.inner = inner
        self.name = inner.name
        self.fail_next = fail_next
        self.queries = 0

    def _fault(self) -> None:
        self.queries += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            raise SchedulerQueryError(f"injected fault: {self.name}'s query timed out")

    def active_jobs(self, job_ids: Collection[str]) -> set[str]:
        self._fault()
        return self.inner.active_jobs(job_ids)

    def how_ended(self, job_id: str) -> JobEnd | None:
        self._fault()
        return self.inner.how_ended(job_id)


class FlakyUplink:
    """Wraps an uplink and fails where a test says: before or after the wrapped ``apply``.

    ``fail_before_apply`` / ``fail_after_apply`` count down: when one reaches zero, the call raises
    UplinkUnavailable — after the real write for ``fail_after_apply``, which is the case of a
    database that applied a write whose acknowledgement never arrived.
    """

    def __init__(
        self,
        inner: Uplink,
        *,
        fail_before_apply: int | None = None,
        fail_after_apply: int | None = None,
        fail_check: bool = False,
    ) -> None:
        self.inner = inner
        self.fail_before_apply = fail_before_apply
        self.fail_after_apply = fail_after_apply
        self.fail_check = fail_check
        self.applied_batches = 0

    def where(self) -> str:
        return self.inner.where()

    def launchpad_file(self) -> str | None:
        return self.inner.launchpad_file()

    def check(self) -> None:
        if self.fail_check:
            raise UplinkUnavailable(f"cannot reach MongoDB at {self.where()}: injected fault")
        self.inner.check()

    @staticmethod
    def _tick(counter: int | None) -> tuple[int | None, bool]:
        if counter is None:
            return None, False
        return counter - 1, counter - 1 < 0

    def apply(
        self,
        launches: list[LaunchEvents],
        now: dt.datetime,
        redo: Callable[[bytes], None] | None = None,
        owner: str = "fwspool",
    ) -> ApplyResult:
        self.fail_before_apply, fire = self._tick(self.fail_before_apply)
        if fire:
            raise UplinkUnavailable("injected fault before apply")
        result = self.inner.apply(launches, now, redo, owner)
        self.applied_batches += 1
        self.fail_after_apply, fire = self._tick(self.fail_after_apply)
        if fire:
            raise UplinkUnavailable("injected fault after apply (acknowledgement lost)")
        return result

    def replay(self, write_set: bytes) -> Verdict:
        return self.inner.replay(write_set)

    def open_offline_runs(self) -> list[dict[str, Any]]:
        return self.inner.open_offline_runs()

    def set_deprecated(self, kind: str, values: Sequence[int], deprecated: bool) -> None:
        self.inner.set_deprecated(kind, values, deprecated)

    def identity(self, *, claim: bool) -> LaunchPadIdentity:
        return self.inner.identity(claim=claim)

    def launch_homes(self, launch_ids: Sequence[int]) -> tuple[dict[int, dict[str, Any]], int]:
        return self.inner.launch_homes(launch_ids)

    def fireworks_of(self, fw_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        return self.inner.fireworks_of(fw_ids)

    def close(self) -> None:
        self.inner.close()
