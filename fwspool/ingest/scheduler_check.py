"""What the batch system says about open launches: lost runs and reservations to release.

Once per pass each batch system is asked, in one query, which of the open launches' jobs it
still has. A job gone for ``lost_after`` seconds that never started its launch releases the
reservation; one that started it and recorded no end makes it lost (:mod:`fwspool.runs`). The
batch system's record of how a job ended is asked as soon as the job is seen gone, once per job
and pass (a packed job's launches share it), and kept (``job_ended``): Slurm forgets the job
``MinJobAge`` after its end, often before ``lost_after`` has passed. A query that fails decides
nothing. The conclusions are journal events with ids that make the same conclusion drawn twice
one event.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping

import msgspec

from fwspool import scheduler
from fwspool.events import Event, JobEnd, JobEnded, Lost, Released, as_utc, event_id, iso
from fwspool.ingest.batches import IngestSummary
from fwspool.journal import Journal
from fwspool.journal.rows import EventRow, ScheduledLaunch, SchedulerView
from fwspool.scheduler import Scheduler, SchedulerQueryError

_encoder = msgspec.json.Encoder()


class SchedulerCheck:
    """Asks the batch systems about a journal's open launches and records what follows."""

    def __init__(
        self,
        journal: Journal,
        systems: Mapping[str, Scheduler],
        *,
        default_system: str | None,
        lost_after: float,
        report_once: Callable[[IngestSummary, str], None],
    ) -> None:
        self.journal = journal
        #: Who is asked which jobs still run, by batch system name.
        self.systems = dict(systems)
        #: The batch system of launches whose own is unknown (``-q``'s ``_fw_q_type``).
        self.default_system = default_system
        self.lost_after = lost_after
        self.report_once = report_once

    def run(self, now: dt.datetime, summary: IngestSummary) -> None:
        view = SchedulerView()
        groups: dict[str, list[ScheduledLaunch]] = {}
        for launch in self.journal.scheduled_launches():
            if launch.last_run_event in ("lost", "released"):
                continue
            system = (
                launch.batch_system
                or self.default_system
                or (scheduler.system_of_launch_dir(launch.launch_dir) if launch.launch_dir else None)
            )
            if system is not None and system != launch.batch_system:
                view.systems[launch.launch_id] = system
            if system in self.systems:
                groups.setdefault(system, []).append(launch)
            elif launch.killed_by_signal:
                view.terminal.append(launch.launch_id)  # nobody to ask whether it runs again
            elif system is not None:
                self.report_once(
                    summary,
                    f"cannot ask {system} which jobs still run: fwspool knows only Slurm and Grid Engine",
                )
        for system, group in groups.items():
            try:
                alive = self.systems[system].active_jobs({launch.batch_job_id for launch in group})
            except SchedulerQueryError as exc:
                summary.problems.append(f"cannot ask {system} which jobs still run ({exc}); nothing decided")
                continue
            asked = AskedOnce(self.systems[system])
            for launch in group:
                self._judge(launch, launch.batch_job_id in alive, now, view, summary, asked)
        summary.lost += sum(1 for row in view.inferred if row.type == "lost")
        summary.released += sum(1 for row in view.inferred if row.type == "released")
        self.journal.record_scheduler_view(view)

    def _judge(
        self,
        launch: ScheduledLaunch,
        alive: bool,
        now: dt.datetime,
        view: SchedulerView,
        summary: IngestSummary,
        system: AskedOnce,
    ) -> None:
        if alive:
            if launch.batch_gone_at is not None:
                view.back.append(launch.launch_id)  # requeued, or the query before was wrong
            return
        if launch.batch_gone_at is None:
            view.gone.append(launch.launch_id)
            if launch.killed_by_signal or launch.last_run_event == "started":
                _record_fresh(system, launch, now, view)
            return
        gone_since = as_utc(launch.batch_gone_at)
        if (now - gone_since).total_seconds() < self.lost_after:
            return  # NFS may still be hiding the job's last records
        what = f"launch {launch.launch_id} (Firework {launch.fw_id}): batch job {launch.batch_job_id}"
        if launch.last_run_event is None:
            event: Event = Released(
                reason=f"batch job {launch.batch_job_id} ended without starting the launch",
                batch_job_id=launch.batch_job_id,
            )
            view.terminal.append(launch.launch_id)
            summary.problems.append(f"{what} ended without starting it: its reservation is released")
        elif launch.last_run_event == "started":
            end = self._lost_end(system, launch, summary)
            # A directory that is gone can never give the run's end: the launch ends with it.
            gone_dir = (
                launch.launch_dir if launch.launch_dir and not os.path.isdir(launch.launch_dir) else None
            )
            event = Lost(
                batch_job_id=launch.batch_job_id,
                gone_since=gone_since,
                batch_system=launch.batch_system or system.name,
                batch_end=end,
                launch_dir_gone=gone_dir,
            )
            said = f" ({end.cause}: {end.source} says {end.words})" if end is not None else ""
            if end is not None and end.query_error is not None:
                said = f" ({end.words})"
            if gone_dir is not None:
                view.terminal.append(launch.launch_id)
                said = f": its launch directory {gone_dir} is gone, so its results can never be read"
            summary.problems.append(f"{what} is gone and the launch recorded no end: lost{said}")
        elif launch.killed_by_signal:
            # Ended by a signal (scancel, walltime) and not requeued: over. The run recorded
            # the signal, only the batch system knows why it came: asked once, recorded once.
            ended = _job_ended(system, launch, self._kept_end(launch), summary)
            if ended is None:
                return  # the query failed: nothing decided, asked again next pass
            event = ended
            view.terminal.append(launch.launch_id)
        else:
            view.terminal.append(launch.launch_id)
            return
        view.inferred.append(inferred_event(launch, event, now))

    def _lost_end(self, system: AskedOnce, launch: ScheduledLaunch, summary: IngestSummary) -> JobEnd | None:
        """How the job of a lost launch ended: the batch system's record now, else the one kept
        when the job was first seen gone (:func:`_record_fresh`: Slurm may have forgotten the
        job since), else None (asked, no record), else :func:`fwspool.scheduler.not_asked`
        (the query failed: the job is gone all the same, but nothing is known of its end)."""
        try:
            end = system.how_ended(launch.batch_job_id)
        except SchedulerQueryError as exc:
            summary.problems.append(f"cannot ask {system.name} how job {launch.batch_job_id} ended ({exc})")
            return self._kept_end(launch) or scheduler.not_asked(system.name, str(exc))
        return end or self._kept_end(launch)

    def _kept_end(self, launch: ScheduledLaunch) -> JobEnd | None:
        """The record of the launch's job kept by a ``job_ended`` event, if any (one indexed read,
        done only for a lost launch whose batch system has no record of the job now)."""
        kept = self.journal.batch_ends([launch.launch_id]).get(launch.launch_id)
        if kept is None or kept["event"] != "job_ended" or not kept["batch_end"]:
            return None
        return msgspec.convert(kept["batch_end"], JobEnd)


class AskedOnce:
    """A batch system whose ``how_ended`` answers each job id once per pass (a failure too):
    the launches of a packed job (one batch job, many launches) share one query."""

    def __init__(self, system: Scheduler) -> None:
        self.system = system
        self.name = system.name
        self._answers: dict[str, JobEnd | None | SchedulerQueryError] = {}

    def how_ended(self, job_id: str) -> JobEnd | None:
        """:meth:`fwspool.scheduler.Scheduler.how_ended`, asked at most once per job id."""
        if job_id not in self._answers:
            try:
                self._answers[job_id] = self.system.how_ended(job_id)
            except SchedulerQueryError as exc:
                self._answers[job_id] = exc
        answer = self._answers[job_id]
        if isinstance(answer, SchedulerQueryError):
            raise answer
        return answer


def _record_fresh(system: AskedOnce, launch: ScheduledLaunch, now: dt.datetime, view: SchedulerView) -> None:
    """The record of a job whose launch is open (started, or ended by a signal), asked as soon
    as the job is seen gone: Slurm forgets a job ``MinJobAge`` after its end (300 s by default,
    as long as the default ``--lost-after``). Only a record is kept; no answer now is asked again
    when the launch is judged (:func:`_job_ended`, :meth:`SchedulerCheck._lost_end`), and the
    event's id keeps the first answer."""
    try:
        end = system.how_ended(launch.batch_job_id)
    except SchedulerQueryError:
        return
    if end is not None:
        # Kept for a launch still open (its signal's record may not be read yet): an id of its
        # own, so that the record a killed launch gets at its verdict is a new event, which the
        # push adds to the launch the signal FIZZLED (job_record.py).
        kept = "" if launch.killed_by_signal else "-started"
        view.inferred.append(inferred_event(launch, _job_ended_event(system, launch, end), now, kept))


def _job_ended(
    system: AskedOnce, launch: ScheduledLaunch, kept: JobEnd | None, summary: IngestSummary
) -> JobEnded | None:
    """The batch system's record of a job whose run ended by a signal (none now: the one
    ``kept`` when the job was first seen gone, else ``unknown``); None when it cannot be asked now."""
    try:
        end = system.how_ended(launch.batch_job_id)
    except SchedulerQueryError as exc:
        summary.problems.append(f"cannot ask {system.name} how job {launch.batch_job_id} ended ({exc})")
        return None
    return _job_ended_event(system, launch, end or kept or scheduler.no_record())


def _job_ended_event(system: AskedOnce, launch: ScheduledLaunch, end: JobEnd) -> JobEnded:
    return JobEnded(
        batch_job_id=launch.batch_job_id, batch_system=launch.batch_system or system.name, batch_end=end
    )


def inferred_event(launch: ScheduledLaunch, event: Event, now: dt.datetime, suffix: str = "") -> EventRow:
    """The login node's conclusion as an event of a writer of its own: one per launch and job
    (and ``suffix``: a record kept while the launch was open is not its killed launch's)."""
    kind = str(type(event).__struct_config__.tag)
    writer = f"batch-{kind}-{launch.launch_id}-{launch.batch_job_id}{suffix}"
    payload = _encoder.encode(event).decode("utf-8")
    return EventRow(
        event_id(writer, 1), writer, 1, launch.launch_id, launch.fw_id, kind, iso(now), payload, None
    )
