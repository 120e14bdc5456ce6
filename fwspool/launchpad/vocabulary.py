"""The words the steps of an application share: what happened to each event, what a replayed
write set came to, whose lock a workflow carries, and the result of applying a batch.

A leaf of :mod:`fwspool.launchpad`: every step module (:mod:`~fwspool.launchpad.running`,
:mod:`~fwspool.launchpad.completion`, :mod:`~fwspool.launchpad.one_by_one`, ...) imports it, and
it imports none of them, so the steps and :mod:`~fwspool.launchpad.apply` that routes between
them import no circle.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from fwspool.outcomes import PushedLaunch
from fwspool.runs import Final, LaunchEvents, LaunchReading

__all__ = ["ApplyResult", "Disposition", "LockToken", "Routed", "Verdict", "lock_holder"]


class Disposition(enum.StrEnum):
    """What became of one pending event (``events.push_outcome`` in the journal)."""

    #: On the LaunchPad now.
    APPLIED = "applied"
    #: The LaunchPad moved on (a rerun, a deleted Firework, ``forget_offline``): never applied.
    SUPERSEDED = "superseded"
    #: Nothing to apply (a note).
    SKIPPED = "skipped"
    #: Another LaunchPad's launch, or another directory's (:mod:`fwspool.identity`): kept in
    #: the journal, never applied. Only the journal gives it (``Outbox.settle_identities``).
    STRAY = "stray"


class Verdict(enum.StrEnum):
    """What :meth:`~fwspool.launchpad.writeset.WriteSet.replay` did with a write set a dead push left."""

    #: Finished: its workflows were still as it left them.
    WRITTEN = "written"
    #: Someone else holds one of its workflows, or is taking its half back: next pass.
    WAITING = "waiting"
    #: Someone else wrote one of its workflows since: nothing written, its events stay pending.
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class LockToken:
    """``<owner>:<run>``, the value of :data:`~fwspool.launchpad.locks.LOCK_FIELD` on a workflow
    fwspool locked: the journal that locked it (``owner``) and the pass (``run``)."""

    owner: str
    run: str

    @classmethod
    def new(cls, owner: str) -> LockToken:
        """A token for a new run of this owner."""
        return cls(owner, uuid.uuid4().hex)

    @classmethod
    def parse(cls, text: str) -> LockToken:
        """The token stored on a workflow (an owner may contain ':'; the run does not). A value
        without ':' is all owner."""
        owner, colon, run = text.rpartition(":")
        return cls(owner, run) if colon else cls(text, "")

    def __str__(self) -> str:
        return f"{self.owner}:{self.run}"

    def of(self, owner: str) -> bool:
        """Whether this token is one of ``owner``'s runs."""
        return self.owner == owner


def lock_holder(value: Any) -> LockToken | None:
    """The token a workflow document's lock field carries, or None when it carries none."""
    return LockToken.parse(str(value)) if value else None


class Routed(NamedTuple):
    """A launch sent one way by the router: what its events say, its LaunchPad document, and
    whether they undo an inferred FIZZLED there (:meth:`~fwspool.runs.LaunchReading.reopens`)."""

    reading: LaunchReading
    doc: dict[str, Any]
    reopen: bool = False

    @property
    def launch(self) -> LaunchEvents:
        return self.reading.launch

    @property
    def final(self) -> Final:
        """How the launch ends (only for a launch routed to completion)."""
        assert self.reading.final is not None, f"launch {self.launch.launch_id} does not end"
        return self.reading.final


@dataclass(slots=True)
class ApplyResult:
    """What applying a batch did, filled in by each step in turn."""

    #: (event_id, disposition, detail).
    outcomes: list[tuple[str, Disposition, str | None]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    completed_launches: list[int] = field(default_factory=list)
    superseded_launches: list[int] = field(default_factory=list)
    touched_launches: list[int] = field(default_factory=list)
    #: Reservations handed back (``released`` events): the Firework is READY again.
    released_launches: list[int] = field(default_factory=list)
    #: What the application left of each launch it moved, for ``fwspool status`` (filled last).
    pushed: list[PushedLaunch] = field(default_factory=list)
    #: Launches whose events stay pending, with why (``fwspool status``: need attention).
    held: dict[int, str] = field(default_factory=dict)
    #: What the batch could not reach besides the LaunchPad (a jobflow JobStore), in one line
    #: each: its launches are held, and the pass ends as for an unreachable database (exit 75).
    unreachable: list[str] = field(default_factory=list)

    def applied(self, launch: LaunchEvents) -> None:
        """Every pending event of this launch is on the LaunchPad now (notes are only skipped)."""
        self.outcomes.extend(
            (e.event_id, Disposition.SKIPPED if e.type == "note" else Disposition.APPLIED, None)
            for e in launch.events
        )

    def hold(self, launch: LaunchEvents, reason: str) -> None:
        """This launch's events stay pending, for ``reason`` (said now, and by ``fwspool status``)."""
        self.problems.append(reason)
        self.held[launch.launch_id] = reason

    def superseded(self, launch: LaunchEvents, reason: str, *, deprecate: bool = True) -> None:
        """None of this launch's events will be applied; ``deprecate`` its offline run too, so
        that ``recover_offline`` does not apply them either (FireWorks #326)."""
        self.outcomes.extend((e.event_id, Disposition.SUPERSEDED, reason) for e in launch.events)
        if deprecate:
            self.superseded_launches.append(launch.launch_id)

    def completed(self, launch: LaunchEvents) -> None:
        """This launch ended on the LaunchPad in this batch, with every pending event applied."""
        self.completed_launches.append(launch.launch_id)
        self.applied(launch)

    def ran(self, launch: LaunchEvents) -> None:
        """This launch's running phase is on the LaunchPad, every pending event applied."""
        self.touched_launches.append(launch.launch_id)
        self.applied(launch)

    def handed_back(self, launch: LaunchEvents) -> None:
        """This launch's reservation was handed back (its ``released``), every event applied."""
        self.released_launches.append(launch.launch_id)
        self.applied(launch)

    def retry(self, problem: str) -> None:
        """Something of this batch waits for the next pass (its events stay pending)."""
        self.problems.append(problem)
