"""The login daemon's side of a pilot pool (:mod:`fwspool.pool`): ``fwspool sync --watch --submit
--pilot POOL --pool-size K``. Each submission round (:mod:`fwspool.submit`):

1. *tidies the claims*: a ``claimed/`` entry whose pilot's batch job is gone (for
   :data:`GONE_GRACE` seconds: its pilot was killed) goes back to ``ready/`` when its launch never started, and is removed when it did
   (its run is then lost through the batch-system check, as a packed job's);
2. *hands back stale stock*: an entry no pilot took within ``ttl`` seconds is taken out of
   ``ready/`` and its reservation handed back on the LaunchPad (``cancel_reservation`` and
   ``forget_offline``, as a failed ``qlaunch -r`` submission does): the Firework is READY again;
3. *stocks* the pool up to ``size`` entries, each reserved as ``qlaunch -r`` reserves one
   (:func:`fwspool.qlaunch.reserve_one`), into a directory of ``POOL/launches``;
4. *submits a pilot* (the user's queue adapter, its ``rocket_launch`` line with ``--pilot POOL``
   appended) when there is stock and no pilot of the pool runs, or when stock has waited
   :data:`STOCK_WAIT` seconds and no pilot is queued; within ``--maxjobs_queue``.

Steps 2 and 3 need the database; while it is down they fail (one line, the round backs off) and
steps 1 and 4 still run: pilots work through the stock meanwhile.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fwspool.errors import FwspoolError
from fwspool.failpoints import failpoint
from fwspool.plural import counted
from fwspool.pool import PILOTS, Pool, job_of_pilot

if TYPE_CHECKING:
    from fwspool.journal import Journal
    from fwspool.scheduler import Scheduler
    from fwspool.submit import Submitter

__all__ = ["STOCK_WAIT", "Stocker"]

#: Seconds stock may wait untaken before one more pilot is submitted (when none is queued).
STOCK_WAIT = 10.0
#: Seconds a pilot's job must have been missing from the queue before its unstarted claims are
#: given back: one query that misses a job (a controller restarting) decides nothing.
GONE_GRACE = 5.0


class StockError(FwspoolError):
    """The pool could not be stocked or its stale stock handed back (the database is down...)."""

    exit_code = 75


@dataclass
class Stocker:
    """The pool's stocking (see the module's description)."""

    pool: Pool
    size: int
    ttl: float
    idle_exit: float
    #: Who says which pilot jobs still run (the queue adapter's batch system); None: nobody.
    scheduler: Scheduler | None
    #: The pilot jobs this daemon submitted that may still be queued or running.
    pilot_jobs: set[str] = field(default_factory=set)
    #: Fireworks whose stock went stale, and when: not stocked again before ``ttl`` has passed
    #: (handed back so that something else may run them, not to be taken back at once).
    handed_back: dict[int, dt.datetime] = field(default_factory=dict)
    #: Pilot jobs seen missing from the queue, and since when (``time.monotonic()``).
    gone_since: dict[str, float] = field(default_factory=dict)
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    #: Whether this daemon has looked for reservations an earlier one left unstocked.
    orphans_checked: bool = False

    def describe(self) -> str:
        return f"pilots on {self.pool.root}, {counted(self.size, 'launch')} in stock, handed back after {self.ttl:g}s"

    def round(self, journal: Journal, submitter: Submitter, should_stop: Callable[[], bool]) -> int:
        """One round; how many pilots it submitted. Raises when the database part failed, after
        the rest was done."""
        self.tidy_claims(submitter.say)
        failure: BaseException | None = None
        try:
            lp = submitter.site.launchpad
            # FireWorks' reserve_fw and cancel_reservation would wait on these workflows' locks.
            locked = submitter.look_at_the_launchpad()
            if not self.orphans_checked:
                self.orphans_checked = self.hand_back_orphans(lp, submitter.say, locked)
            self.hand_back_stale(lp, submitter.say, locked)
            self.fill(lp, submitter.site.fworker, should_stop, locked)
        except Exception as exc:  # noqa: BLE001 - raised after the pilots: they need no database
            failure = exc
        submitted = 0 if should_stop() else self.submit_pilots(journal, submitter)
        if failure is not None:
            raise failure
        return submitted

    # -- 1. claims of pilots that are gone -----------------------------------------------------

    def tidy_claims(self, say: Callable[[str], None]) -> None:
        from fwspool.rlaunch import recorded_events

        claims = [c for c in self.pool.claims() if not c.holder.startswith("stocker-")]
        jobs = {job for c in claims if (job := job_of_pilot(c.holder))}
        if not claims or self.scheduler is None or not jobs:
            return
        from fwspool.scheduler import SchedulerQueryError

        try:
            alive = self.scheduler.active_jobs(jobs)
        except SchedulerQueryError as exc:
            say(
                f"pool: cannot ask {self.scheduler.name} which pilots still run ({exc}); claims left as they are"
            )
            return
        now = time.monotonic()
        self.gone_since = {job: self.gone_since.get(job, now) for job in jobs - alive}
        for claim in claims:
            job = job_of_pilot(claim.holder)
            if job is None or job in alive or now - self.gone_since[job] < GONE_GRACE:
                continue
            e = claim.entry
            if recorded_events(e.launch_dir, e.launch_id, ("started",)):
                self.pool.drop(claim)  # the run is the batch-system check's (lost, or its end recorded)
                continue
            self.pool.give_back(claim)
            say(
                f"pool: launch {e.launch_id} (Firework {e.fw_id}), claimed by pilot job {job} which is gone "
                "before starting it: back in the pool"
            )

    # -- 2. stock nobody took ------------------------------------------------------------------

    def hand_back_stale(
        self, launchpad: Any, say: Callable[[str], None], locked: frozenset[int] | set[int] = frozenset()
    ) -> None:
        """``locked``: Fireworks whose workflow lock is held; theirs wait for a later round."""
        from fwspool.qlaunch import hand_back

        now = self.clock()
        holder = f"stocker-{socket.gethostname().split('.')[0]}-{os.getpid()}"
        stale = [
            (name, e)
            for name, e in self.pool.ready()
            if (now - e.stocked_on).total_seconds() >= self.ttl and e.fw_id not in locked
        ]
        # A hand-back this daemon (or an earlier one) did not finish: the LaunchPad part again.
        unfinished = [
            c for c in self.pool.claims() if c.holder.startswith("stocker-") and c.entry.fw_id not in locked
        ]
        for name, _e in stale:
            claim = self.pool.take(name, holder)
            if claim is not None:
                unfinished.append(claim)
        for claim in unfinished:
            e = claim.entry
            failpoint("stock.before_hand_back")  # chaos: the daemon killed holding the entry
            problems = hand_back(launchpad, [e.launch_id])
            if problems:
                if claim.holder == holder:
                    self.pool.give_back(claim)  # still in stock; tried again next round
                raise StockError(f"cannot hand back stale stock: {'; '.join(problems)}")
            failpoint("stock.after_hand_back")  # chaos: handed back, the entry still held
            self.pool.drop(claim)
            self.handed_back[e.fw_id] = now
            say(
                f"pool: launch {e.launch_id} (Firework {e.fw_id}) not taken within {self.ttl:g}s: handed back (READY)"
            )

    def hand_back_orphans(
        self, launchpad: Any, say: Callable[[str], None], locked: frozenset[int] | set[int] = frozenset()
    ) -> bool:
        """Reservations into ``POOL/launches`` that an earlier daemon made but never stocked (it
        died between ``reserve_fw`` and the entry's rename into ``ready/``): RESERVED on the
        LaunchPad, yet in no entry and with no claim record, so no pilot would ever run them.
        Handed back (READY), once, at this daemon's first round, or at the first after its
        workflow's lock is free. (A reservation into a spec's ``_launch_dir`` outside the pool
        is not looked for.) Whether none is left for a later round."""
        import re

        from fwspool.pool import CLAIM_NAME
        from fwspool.qlaunch import hand_back

        prefix = self.pool.path("launches") + os.sep
        reserved = list(
            launchpad.launches.find(
                {"state": "RESERVED", "launch_dir": {"$regex": f"^{re.escape(prefix)}"}},
                {"launch_id": 1, "fw_id": 1, "launch_dir": 1},
            )
        )
        if not reserved:
            return True
        # In this order: a pilot takes ready/ -> claimed/, then writes its claim record, then
        # drops its claim; whatever it did meanwhile, its launch is seen in one of the three.
        held = {e.launch_id for _n, e in self.pool.ready()}
        held |= {c.entry.launch_id for c in self.pool.claims()}
        left = False
        for doc in reserved:
            launch_id, launch_dir = int(doc["launch_id"]), str(doc["launch_dir"])
            if launch_id in held or os.path.lexists(os.path.join(launch_dir, CLAIM_NAME)):
                continue
            if doc.get("fw_id") in locked:
                left = True
                continue
            problems = hand_back(launchpad, [launch_id])
            if problems:
                raise StockError(f"cannot hand back an unstocked reservation: {'; '.join(problems)}")
            say(
                f"pool: launch {launch_id} (Firework {doc.get('fw_id')}) reserved but never stocked "
                "(an earlier daemon died): handed back (READY)"
            )
        return not left

    # -- 3. stocking ---------------------------------------------------------------------------

    def fill(
        self,
        launchpad: Any,
        fworker: Any,
        should_stop: Callable[[], bool],
        locked: frozenset[int] | set[int] = frozenset(),
    ) -> int:
        from fwspool.qlaunch import estimate_of, offline_capable, refreshes_together, reserve_one, restricted

        fworker = offline_capable(fworker)  # a pilot has no database route either: no expose_store
        now = self.clock()
        self.handed_back = {i: t for i, t in self.handed_back.items() if (now - t).total_seconds() < self.ttl}
        avoid = set(self.handed_back) | set(locked)
        if avoid:
            # Only the READY Fireworks not handed back lately and not locked, by name ($in, as
            # packing asks: the database may not know $nin).
            query = {**fworker.query, "state": "READY"}
            allowed = [
                doc["fw_id"]
                for doc in launchpad.fireworks.find(query, {"fw_id": 1}, limit=4 * self.size + len(avoid))
                if doc["fw_id"] not in avoid
            ]
            fworker = restricted(fworker, {"fw_id": {"$in": allowed}})
        stocked = 0
        have = len(self.pool.ready())
        # Each launch is stocked as soon as it is reserved; the workflows are refreshed once,
        # after the last (a fan-out's children were each a refresh of the whole workflow).
        with refreshes_together(launchpad):
            while have + stocked < self.size and not should_stop():
                got = reserve_one(launchpad, fworker, self.pool.path("launches"))
                if got is None:
                    break
                fw, launch_id, launch_dir = got
                failpoint("stock.after_reserve")  # chaos: the daemon killed before the entry exists
                self.pool.stock(launch_id, fw.fw_id, launch_dir, estimate_of(fw.spec))
                stocked += 1
        return stocked

    # -- 4. pilots -----------------------------------------------------------------------------

    def submit_pilots(self, journal: Journal, submitter: Submitter) -> int:
        records = self._pilot_records()
        if self.scheduler is not None and (self.pilot_jobs or records):
            try:
                alive = self.scheduler.active_jobs(self.pilot_jobs | set(records))
            except Exception:  # noqa: BLE001 - unknown: count them all as alive
                alive = self.pilot_jobs | set(records)
            self.pilot_jobs &= alive
            for job in set(records) - alive:
                # Its pilot was killed before it could remove its record.
                with contextlib.suppress(OSError):
                    os.unlink(records.pop(job))
        ready = self.pool.ready()
        if not ready:
            return 0
        # Pilots that run, this daemon's or an earlier one's (a restarted daemon knows them so).
        running = set(records)
        queued = self.pilot_jobs - running
        oldest = min((self.clock() - e.stocked_on).total_seconds() for _n, e in ready)
        wanted = not (self.pilot_jobs | running) or (not queued and oldest >= STOCK_WAIT)
        if not wanted or not submitter.under_cap():
            return 0
        job = self.submit_one(submitter)
        self.pilot_jobs.add(job)
        submitter.record(journal, job, "pilot", self.pool.root, [])
        return 1

    def _pilot_records(self) -> dict[str, str]:
        """The pilot records in ``pilots/`` (``schema/POOL.md``): their paths by batch job."""
        import msgspec

        from fwspool.pilot import PilotRecord

        records = {}
        for name in os.listdir(self.pool.path(PILOTS)):
            path = self.pool.path(PILOTS, name)
            if not name.endswith(".json"):
                continue
            try:
                with open(path, "rb") as f:
                    record = msgspec.json.decode(f.read(), type=PilotRecord)
            except (OSError, msgspec.DecodeError, msgspec.ValidationError):
                continue
            if record.batch_job_id:
                records[record.batch_job_id] = path
        return records

    def submit_one(self, submitter: Submitter) -> str:
        return submit_pilot(submitter.site, self.pool, self.idle_exit, submitter.say)


def submit_pilot(site: Any, pool: Pool, idle_exit: float, say: Callable[[str], None]) -> str:
    """Submit one pilot job for ``pool`` through the site's queue adapter (its ``rocket_launch``
    line with ``--pilot POOL --idle-exit S``, and ``--walltime``, ``--margin``, ``--parallel``
    from the site), in a new ``pilots/pilot_*`` directory; its job id."""
    from fireworks.utilities.fw_utilities import create_datestamp_dir, get_fw_logger

    from fwspool.qlaunch import check_rocket_launch, submit_job, walltime_seconds

    check_rocket_launch(site.qadapter)
    directory = str(
        create_datestamp_dir(
            pool.path(PILOTS), get_fw_logger("fwspool.stock", stream_level="CRITICAL"), prefix="pilot_"
        )
    )
    walltime = walltime_seconds(site.qadapter.get("walltime"))
    suffix = f" --pilot {pool.root} --idle-exit {idle_exit:g}"
    if walltime is not None:
        suffix += f" --walltime {walltime:g}"
    if site.margin is not None:
        suffix += f" --margin {site.margin:g}"
    if site.parallel > 1:
        suffix += f" --parallel {site.parallel}"
    job, _settings = submit_job(
        site.qadapter,
        directory,
        job_name="fwspool_pilot",
        settings={},
        rocket_launch_suffix=suffix,
        what="the pool keeps its stock",
    )
    say(f"pool: pilot job {job} submitted in {directory}")
    return job
