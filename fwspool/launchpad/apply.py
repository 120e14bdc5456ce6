"""Applying a batch of launches' pending events to one LaunchPad: read, route, write.

:meth:`LaunchPadApplier.apply` reads the launches, Fireworks and offline runs of the batch in
three queries (taking back first what another journal's dead push half-wrote behind a broken
lock: :mod:`~fwspool.launchpad.undo`), then sends each launch one way: superseded (:mod:`~fwspool.launchpad.supersede`),
released (:mod:`~fwspool.launchpad.release`), running (:mod:`~fwspool.launchpad.running`),
ending (a jobflow job's outputs to its JobStore first, :mod:`~fwspool.launchpad.job_outputs`;
then :mod:`~fwspool.launchpad.completion`, in bulk) or already ended
(:mod:`~fwspool.launchpad.one_by_one`, the idempotent re-check). Then the batch system's
record of a job is added to the launch its signal FIZZLED (:mod:`~fwspool.launchpad.job_record`).
Last, the offline runs are marked as ``recover_offline`` would leave them, and what the batch left of each launch is
said for the journal (:mod:`~fwspool.launchpad.pushed`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from fwspool.events import FINAL_STATES, untag_nonfinite
from fwspool.launchpad.completion import complete_in_bulk
from fwspool.launchpad.job_outputs import fill_inputs, write_job_outputs
from fwspool.launchpad.job_record import add_batch_ends
from fwspool.launchpad.one_by_one import complete_one_by_one
from fwspool.launchpad.pushed import pushed_launches
from fwspool.launchpad.release import release
from fwspool.launchpad.running import apply_running
from fwspool.launchpad.supersede import HELD_FW_STATES, same_launch, superseded_reason
from fwspool.launchpad.undo import take_back_broken_writes
from fwspool.launchpad.vocabulary import ApplyResult, Routed
from fwspool.runs import INFERRED_KEYS, LaunchEvents, LaunchReading, read_launch

if TYPE_CHECKING:
    from fwspool.jobstore.real import JobStores

__all__ = ["ApplyResult", "LaunchPadApplier"]


class _LaunchPadView(NamedTuple):
    """What the LaunchPad holds for a batch: its launches, their Fireworks, their offline runs."""

    launches: dict[int, dict[str, Any]]
    fireworks: dict[int, dict[str, Any]]
    offline_runs: dict[int, dict[str, Any]]


@dataclass(slots=True)
class _Routes:
    """Where each launch of a batch goes, in the order they are applied."""

    running: list[Routed] = field(default_factory=list)
    ending: list[Routed] = field(default_factory=list)
    one_by_one: list[Routed] = field(default_factory=list)
    releasing: list[Routed] = field(default_factory=list)
    #: Fireworks a user paused or defused: their launches take events, they keep their state.
    held_fireworks: set[int] = field(default_factory=set)


class LaunchPadApplier:
    """Applies batches of journal events to one FireWorks LaunchPad, for one owner."""

    def __init__(self, launchpad: Any, owner: str = "fwspool", job_stores: JobStores | None = None) -> None:
        self.lp = launchpad
        self._owner = owner
        #: Where jobflow jobs' outputs go before their launches complete (connected on first use).
        self.job_stores = job_stores

    @property
    def owner(self) -> str:
        """Whose workflow locks this applier takes: one journal (one pusher at a time)."""
        return self._owner

    def apply(
        self, launches: list[LaunchEvents], now: dt.datetime, redo: Callable[[bytes], None] | None = None
    ) -> ApplyResult:
        """Apply the pending events of these launches. ``redo`` receives the serialized write set of
        the bulk completion before it is written (see :class:`~fwspool.launchpad.writeset.WriteSet`);
        None skips saving it."""
        result = ApplyResult()
        readings = [read_launch(_untagged(launch)) for launch in launches]
        lids = [launch.launch_id for launch in launches]
        launch_docs = self._read_launches(lids)
        # Before the Fireworks are read: another journal's half-written completion behind a
        # broken lock is taken back, so these launches are routed by what the LaunchPad will be.
        result.problems.extend(take_back_broken_writes(self.lp, self.owner, _fw_ids(launch_docs)))
        view = self._read(lids, launch_docs)
        reopen = self._reopened(readings, view.launches)
        routes = self._route(readings, view, reopen, result)
        apply_running(self.lp, routes.running, now, result, held=routes.held_fireworks)
        if routes.ending:
            routes.ending = write_job_outputs(self._job_stores(), routes.ending, result)  # outputs first
        if routes.ending:
            routes.one_by_one.extend(complete_in_bulk(self.lp, self.owner, routes.ending, result, redo))
        for routed in routes.one_by_one:
            complete_one_by_one(self.lp, self.owner, routed, result)
        if routes.releasing:
            fill_inputs(self.lp, self._job_stores(), routes.releasing, result)  # inputs before READY
        for routed in routes.releasing:
            release(self.lp, routed, result)
        add_batch_ends(self.lp, readings, result)  # after the FIZZLED it amends
        self._update_offline_runs(result, now)
        result.pushed = pushed_launches(readings, view.launches, view.fireworks, reopen, result)
        return result

    def _job_stores(self) -> JobStores:
        if self.job_stores is None:
            from fwspool.jobstore.real import JobStores

            self.job_stores = JobStores()
        return self.job_stores

    def _read_launches(self, lids: list[int]) -> dict[int, dict[str, Any]]:
        return {d["launch_id"]: d for d in self.lp.launches.find({"launch_id": {"$in": lids}}, {"action": 0})}

    def _read(self, lids: list[int], launch_docs: dict[int, dict[str, Any]]) -> _LaunchPadView:
        """The Fireworks and offline runs of these launches, with the launches themselves."""
        lp = self.lp
        fw_ids = _fw_ids(launch_docs)
        fw_docs = {
            d["fw_id"]: d
            for d in lp.fireworks.find(
                {"fw_id": {"$in": fw_ids}}, {"fw_id": 1, "name": 1, "state": 1, "launches": 1}
            )
        }
        offline = {
            d["launch_id"]: d
            for d in lp.offline_runs.find({"launch_id": {"$in": lids}}, {"launch_id": 1, "deprecated": 1})
        }
        return _LaunchPadView(launch_docs, fw_docs, offline)

    def _reopened(
        self, readings: list[LaunchReading], launch_docs: dict[int, dict[str, Any]]
    ) -> frozenset[int]:
        """The launches FIZZLED by fwspool's own inference (an exit, a lost job) that these events
        reopen: a requeued job's new run, or the real result arriving late (fwspool.runs)."""
        candidates = {
            r.launch.launch_id: r
            for r in readings
            if (launch_docs.get(r.launch.launch_id) or {}).get("state") == "FIZZLED" and r.restarts
        }
        if not candidates:
            return frozenset()
        actions = {
            d["launch_id"]: d.get("action")
            for d in self.lp.launches.find(
                {"launch_id": {"$in": list(candidates)}},
                {"launch_id": 1, **{f"action.stored_data.{k}": 1 for k in INFERRED_KEYS}},
            )
        }
        reopen = frozenset(lid for lid, r in candidates.items() if r.reopens("FIZZLED", actions.get(lid)))
        if reopen:
            # Undoing the inferred end keeps it in interrupted_runs: read the action too.
            launch_docs.update(
                (d["launch_id"], d) for d in self.lp.launches.find({"launch_id": {"$in": sorted(reopen)}})
            )
        return reopen

    def _route(
        self, readings: list[LaunchReading], view: _LaunchPadView, reopen: frozenset[int], result: ApplyResult
    ) -> _Routes:
        """Send each launch its way; those that cannot be applied now are noted or superseded."""
        routes = _Routes()
        for reading in readings:
            launch = reading.launch
            doc = view.launches.get(launch.launch_id)
            fw = view.fireworks.get(doc["fw_id"]) if doc is not None else None
            if fw is not None and fw.get("state") in HELD_FW_STATES:
                routes.held_fireworks.add(fw["fw_id"])
            if doc is None:
                result.hold(
                    launch,
                    f"launch {launch.launch_id} is not on this LaunchPad (yet): its {len(launch.events)} events stay pending",
                )
            elif not same_launch(launch, doc):
                result.hold(
                    launch,
                    f"launch {launch.launch_id} on this LaunchPad runs in {doc.get('launch_dir')}, but its files are "
                    f"in {', '.join(launch.announced_dirs)}: its events stay pending until the next push sets aside "
                    "what is not this LaunchPad's",
                )
            elif (reason := superseded_reason(doc, fw, view.offline_runs.get(launch.launch_id))) is not None:
                result.superseded(launch, reason)
            else:
                self._route_applicable(Routed(reading, doc, launch.launch_id in reopen), routes, result)
        return routes

    @classmethod
    def _route_applicable(cls, routed: Routed, routes: _Routes, result: ApplyResult) -> None:
        """A launch this LaunchPad has, still current: where its events go."""
        reading, doc = routed.reading, routed.doc
        if reading.released:
            routes.releasing.append(routed)
        elif doc.get("state") in FINAL_STATES and not routed.reopen:
            routes.one_by_one.append(routed)  # applied before: the idempotent re-check
        elif reading.waits_on is not None:
            cls._hold_for_quarantine(routed, routes, result)
        elif reading.final is not None:
            routes.ending.append(routed)
        else:
            routes.running.append(routed)

    @staticmethod
    def _hold_for_quarantine(routed: Routed, routes: _Routes, result: ApplyResult) -> None:
        """Apply what the launch did while running; keep its exit pending, visibly, every pass."""
        launch, doc = routed.launch, routed.doc
        result.hold(
            launch,
            f"launch {launch.launch_id} (Firework {doc.get('fw_id')}): its job exited cleanly but its "
            f"completion is not in the journal and {launch.quarantined} of its records are quarantined; "
            "it waits: see `fwspool status` and the quarantined view, then raise --max-record and run "
            "`fwspool ingest --retry-quarantined` (or rerun the Firework)",
        )
        running = [e for e in launch.events if e is not routed.reading.waits_on]
        if running:
            # Only its running phase goes on: the reading stays (the exit still waits).
            trimmed = replace(routed.reading, launch=replace(launch, events=running))
            routes.running.append(routed._replace(reading=trimmed))

    def _update_offline_runs(self, result: ApplyResult, now: dt.datetime) -> None:
        """The offline runs as recover_offline leaves them: completed, forgotten, touched."""
        lp = self.lp
        if result.completed_launches:
            lp.offline_runs.update_many(
                {"launch_id": {"$in": result.completed_launches}}, {"$set": {"completed": True}}
            )
        if result.superseded_launches:
            # recover_offline would otherwise clobber the LaunchPad with these (FireWorks #326).
            lp.offline_runs.update_many(
                {"launch_id": {"$in": result.superseded_launches}, "deprecated": False},
                {"$set": {"deprecated": True}},
            )
        touched = result.touched_launches + result.completed_launches
        if touched:
            lp.offline_runs.update_many(
                {"launch_id": {"$in": touched}}, {"$set": {"updated_on": now.isoformat()}}
            )


def _untagged(launch: LaunchEvents) -> LaunchEvents:
    """The spool spells NaN and ±Infinity as Extended JSON does; the LaunchPad keeps floats."""
    for event in launch.events:
        event.payload = untag_nonfinite(event.payload)
    return launch


def _fw_ids(launch_docs: dict[int, dict[str, Any]]) -> list[int]:
    return sorted({d["fw_id"] for d in launch_docs.values()})
