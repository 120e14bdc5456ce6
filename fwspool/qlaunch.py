"""``fwspool qlaunch``: many reserved Fireworks in one batch job (job packing), on the login node.

FireWorks' ``qlaunch -r`` reserves one Firework per batch job. This reserves up to K the same
way — FireWorks' own ``reserve_fw`` and ``setup_offline_job`` (``FW.json``, ``FW_offline.json``,
the offline run), each Firework in a ``launcher_*`` directory of its own under one ``block_*``
directory — writes the block's manifest (:mod:`fwspool.block`, ``schema/BLOCK.md``), and writes
and submits one queue script through the user's own FireWorks queue adapter (its template,
``pre_rocket``, ``post_rocket``, ``get_script_str``, ``submit_to_queue``), whose
``rocket_launch`` line is the ``fwspool rlaunch ... singleshot --offline`` line of a single
launch with ``--block DIR`` appended (as ``qlaunch -r`` appends ``--fw_id N``). The batch job id
is recorded on every launch of the block (``set_reservation_id``), so the login node's checks
(lost runs, reservations to release) work per launch as for single jobs.

- The FWorker's query and category decide which Fireworks are taken, in FireWorks' own order
  (``_priority``, then FireWorks' ``SORT_FWS``).
- Fireworks whose ``_queueadapter`` settings differ are never packed together: a job takes the
  next Firework, then only Fireworks with the same ``_queueadapter`` (the others go in other jobs).
- A submission that fails hands back every reservation it made (``cancel_reservation`` and
  ``forget_offline``, as FireWorks does for its one).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fwspool.block import ESTIMATE_KEY, BlockLaunch, BlockManifest, write_manifest
from fwspool.errors import ConfigError, FwspoolError
from fwspool.events import utcnow
from fwspool.plural import counted
from fwspool.reserve import prepare_offline

__all__ = ["PackJob", "SubmissionError", "rapidfire", "submit_pack", "walltime_seconds", "work_to_come"]

#: How many READY Fireworks are looked at per query when filling a pack.
_CANDIDATES_PER_SLOT = 4


class SubmissionError(FwspoolError):
    """The queue script could not be submitted; the reservations were handed back."""

    exit_code = 1


@dataclass(slots=True)
class PackJob:
    """One submitted batch job and the launches it runs."""

    batch_job_id: str
    block_dir: str
    launches: list[BlockLaunch] = field(default_factory=list)
    queueadapter: dict[str, Any] = field(default_factory=dict)


def walltime_seconds(value: Any) -> float | None:
    """A queue adapter's ``walltime`` in seconds: Slurm's ``[D-]HH:MM:SS``, ``MM:SS``, minutes,
    ``D-HH[:MM]``, or a number of minutes; None when absent or not understood."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value) * 60
    text = str(value).strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        return None
    days, a, b, c = m.groups()
    if days is not None:
        # D-HH, D-HH:MM, D-HH:MM:SS
        seconds = int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
        return float(int(days) * 86400 + seconds)
    if c is not None:
        return float(int(a) * 3600 + int(b) * 60 + int(c))
    if b is not None:
        return float(int(a) * 60 + int(b))  # MM:SS
    return float(int(a) * 60)  # minutes


def queueadapter_settings(spec: dict[str, Any]) -> dict[str, Any]:
    """What a Firework changes in its job's queue settings (``spec._queueadapter``); {} for none."""
    value = spec.get("_queueadapter")
    return dict(value) if isinstance(value, dict) else {}


def check_rocket_launch(qadapter: Any, path: str = "the queue adapter") -> None:
    """Refuse a queue adapter whose ``rocket_launch`` line ``fwspool doctor`` fails (the words
    :func:`rocket_launch_problem` wants, the files :func:`rocket_launch_files_problem` checks):
    every job would die of it. The error has the fix doctor gives."""
    line = str(qadapter.get("rocket_launch") or "")
    problem = rocket_launch_problem(line) or rocket_launch_files_problem(line)
    if problem is not None:
        found, fix = problem
        raise ConfigError(f"{path}: {found}; fix: {fix}")


def line_words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def fwspool_here() -> str:
    """The absolute path of this ``fwspool``: what the fixes suggest."""
    return os.path.join(os.path.dirname(sys.executable), "fwspool")


def rocket_launch_problem(line: str) -> tuple[str, str] | None:
    """What is wrong with a queue adapter's ``rocket_launch`` line for ``qlaunch -r`` and
    ``fwspool qlaunch``, and its fix; None when it runs ``fwspool rlaunch`` with the words
    ``singleshot`` and ``--offline``."""
    words = line_words(line)
    the_line = f"rocket_launch: {line}"
    good = f"rocket_launch: {fwspool_here()} rlaunch -w /path/to/my_fworker.yaml singleshot --offline"
    if not words or os.path.basename(words[0]) != "fwspool" or words[1:2] != ["rlaunch"]:
        runs = f"runs {words[0]!r}" if words else "is empty"
        return f"{the_line!r} {runs}, not `fwspool rlaunch`", f"make it {good}"
    missing = [w for w in ("singleshot", "--offline") if w not in words]
    if missing:
        why = "qlaunch -r refuses a line without singleshot, and reserves offline only with --offline"
        return f"{the_line!r} lacks {' and '.join(missing)} ({why})", f"make it {good}"
    return None


#: ``fwspool rlaunch``'s options that name a file or a directory, and which.
PATH_OPTIONS = {
    "-w": "FWorker file",
    "--fworker-file": "FWorker file",
    "--fworker_file": "FWorker file",
    "-l": "launchpad file",
    "--launchpad-file": "launchpad file",
    "--launchpad_file": "launchpad file",
    "-c": "config directory",
    "--config-dir": "config directory",
    "--config_dir": "config directory",
}


def rocket_launch_paths(line: str) -> list[tuple[str, str, str]]:
    """The files and directories a ``rocket_launch`` line names: (option, what, path as written)."""
    words = line_words(line)
    found = []
    for i, word in enumerate(words):
        option, _, value = word.partition("=")
        if option in PATH_OPTIONS:
            if not value and i + 1 < len(words):
                value = words[i + 1]
            if value:
                found.append((option, PATH_OPTIONS[option], value))
    return found


def rocket_launch_files_problem(line: str) -> tuple[str, str] | None:
    """What is wrong with the files a ``rocket_launch`` line names, as the batch job will see them
    (its shell expands ``$HOME``; it runs in its launch directory, so a relative path is wrong),
    and the fix; None when each exists (an FWorker file must also read as one). A path with a
    variable this login node does not set (``$SCRATCH`` of the job's environment) is not judged."""
    from fwspool.rlaunch import read_fworker

    for option, what, written in rocket_launch_paths(line):
        path = os.path.expanduser(os.path.expandvars(written))
        if "$" in path:
            continue
        fix = f"name an existing {what} by its absolute path ({option} $HOME/fw/...)"
        if not os.path.isabs(path):
            return f"{option} {written}: a relative path, which the job reads in its launch directory", fix
        exists = os.path.isdir(path) if what == "config directory" else os.path.isfile(path)
        if not exists:
            return f"{option} {written}: {what} {path} does not exist (every job would exit 66)", fix
        if what == "FWorker file":
            try:
                read_fworker(path)
            except FwspoolError as exc:
                return f"{option} {written}: {exc.message}", "fix the FWorker file (name, category, query)"
    return None


def restricted(fworker: Any, also: dict[str, Any]) -> Any:
    """``fworker`` whose query also requires ``also`` (``{"fw_id": {"$in": ids}}``: the
    Fireworks that may join the pack): FireWorks' own atomic checkout (READY only, in its
    order) among them. The restriction is part of the FWorker's own query, so that a FWorker
    made from this one (:func:`offline_capable`, a restriction of it) keeps it: one that lived in
    a ``query`` override was dropped there, and the daemon's packs reserved a locked workflow's
    Firework and waited on its lock."""
    from fireworks.core.fworker import FWorker

    return FWorker(fworker.name, fworker.category, {"$and": [fworker._query, also]}, fworker.env)


def _launcher_dir(block_dir: str) -> str:
    from fireworks.utilities.fw_utilities import create_datestamp_dir, get_fw_logger

    return str(
        create_datestamp_dir(
            block_dir, get_fw_logger("fwspool.qlaunch", stream_level="CRITICAL"), prefix="launcher_"
        )
    )


def reserve_one(launchpad: Any, fworker: Any, block_dir: str) -> tuple[Any, int, str] | None:
    """``qlaunch -r``'s reservation of one Firework into a new launcher directory of the block
    (or the spec's ``_launch_dir``); None when nothing READY matches."""
    launcher_dir = _launcher_dir(block_dir)
    try:
        fw, launch_id = launchpad.reserve_fw(fworker, launcher_dir)
    except BaseException:
        os.rmdir(launcher_dir)  # the database went away: leave no empty directory behind
        raise
    if fw is None:
        os.rmdir(launcher_dir)
        return None
    launch_dir = launcher_dir
    try:
        if "_launch_dir" in fw.spec:
            launch_dir = os.path.expandvars(fw.spec["_launch_dir"])
            if not os.path.isabs(launch_dir):
                launch_dir = os.path.join(block_dir, launch_dir)
            os.makedirs(launch_dir, exist_ok=True)
            launchpad.change_launch_dir(launch_id, launch_dir)
            os.rmdir(launcher_dir)
        prepare_offline(launchpad, fw, int(launch_id), launch_dir)
    except BaseException:
        hand_back(launchpad, [int(launch_id)])
        raise
    return fw, int(launch_id), launch_dir


#: Where a jobflow Firework says its job needs the JobStore while it runs (``expose_store``),
#: which no compute node without a database route can give: fwspool never reserves one.
NEEDS_STORE_FIELD = "spec._tasks.job.config.expose_store"


@contextlib.contextmanager
def refreshes_together(launchpad: Any) -> Iterator[None]:
    """Reserve several Fireworks (``reserve_one`` in the ``with`` block) and refresh each
    workflow once, at the end, under one lock.

    FireWorks' ``reserve_fw`` ends each reservation with a refresh of the Firework's whole
    workflow under its lock: a fan-out's twenty children reserved one by one loaded and wrote
    their 21-Firework workflow twenty times, and the last child waited for all of it. Here the
    refreshes are collected and made per workflow once the block ends (or fails). Nothing is
    lost if the daemon dies before: the reservations are written, and the workflow document's
    Firework states are refreshed by the next refresh of that workflow (a push of one of its
    launches, a hand-back), as after a ``reserve_fw`` killed before its own refresh.
    """
    deferred: list[int] = []
    launchpad._refresh_wf = deferred.append  # shadows the method for this LaunchPad object only
    try:
        yield
    finally:
        del launchpad._refresh_wf
        _refresh_workflows(launchpad, list(dict.fromkeys(deferred)))


def _refresh_workflows(launchpad: Any, fw_ids: list[int]) -> None:
    """``_refresh_wf`` of each of ``fw_ids``, one lock, load and write per workflow; FireWorks'
    own ``_refresh_wf`` (its lock and failure handling) for a workflow where that fails."""
    from fireworks.core.launchpad import WFLock

    while fw_ids:
        first = fw_ids[0]
        together = [first]
        try:
            with WFLock(launchpad, first):
                wf = launchpad.get_wf_by_fw_id_lzyfw(first)
                together = [i for i in fw_ids if i in wf.id_fw]
                updated: set[int] = set()
                for fw_id in together:
                    updated = wf.refresh(fw_id, updated)
                launchpad._update_wf(wf, updated)
        except Exception:  # noqa: BLE001 - one by one, as reserve_fw would have (it logs or fizzles)
            for fw_id in together:
                launchpad._refresh_wf(fw_id)
        fw_ids = [i for i in fw_ids if i not in together]


def offline_capable(fworker: Any) -> Any:
    """``fworker`` whose query leaves out the Fireworks that cannot run offline (:data:`NEEDS_STORE_FIELD`)."""
    from fireworks.core.fworker import FWorker

    return FWorker(
        fworker.name, fworker.category, {**fworker._query, NEEDS_STORE_FIELD: {"$ne": True}}, fworker.env
    )


def refused_for_the_store(launchpad: Any, fworker: Any) -> list[str]:
    """One line per READY Firework of ``fworker`` that is not reserved because its jobflow job
    needs the JobStore while it runs."""
    query = {**fworker.query, "state": "READY", NEEDS_STORE_FIELD: True}
    return [
        f"fwspool qlaunch: Firework {d['fw_id']} ({d.get('name')}) is not reserved: its jobflow job sets "
        "expose_store=True and needs the JobStore while it runs; run it online (docs/jobflow.md)"
        for d in launchpad.fireworks.find(query, {"fw_id": 1, "name": 1}, sort=[("fw_id", 1)])
    ]


def reserve_pack(launchpad: Any, fworker: Any, block_dir: str, pack: int) -> list[tuple[Any, int, str]]:
    """Reserve up to ``pack`` Fireworks with the same ``_queueadapter`` into ``block_dir``; never
    one that cannot run offline (:func:`offline_capable`)."""
    fworker = offline_capable(fworker)
    first = reserve_one(launchpad, fworker, block_dir)
    if first is None:
        return []
    reserved = [first]
    try:
        _fill(launchpad, fworker, block_dir, pack, reserved)
    except BaseException:
        # Reserved into a directory no job will run: hand them back.
        hand_back(launchpad, [launch_id for _fw, launch_id, _d in reserved])
        raise
    return reserved


def _fill(
    launchpad: Any, fworker: Any, block_dir: str, pack: int, reserved: list[tuple[Any, int, str]]
) -> None:
    wanted = queueadapter_settings(reserved[0][0].spec)
    races = 0
    while len(reserved) < pack and races < 10:
        query = dict(fworker.query)
        query["state"] = "READY"
        candidates = [
            doc["fw_id"]
            for doc in launchpad.fireworks.find(
                query,
                {"fw_id": 1, "spec._queueadapter": 1},
                sort=[("spec._priority", -1)],
                limit=_CANDIDATES_PER_SLOT * pack,
            )
            if queueadapter_settings(doc.get("spec") or {}) == wanted
        ]
        if not candidates:
            break
        got = reserve_one(launchpad, restricted(fworker, {"fw_id": {"$in": candidates}}), block_dir)
        if got is None:
            races += 1  # another qlaunch took them meanwhile: look again
            continue
        reserved.append(got)


def hand_back(launchpad: Any, launch_ids: list[int]) -> list[str]:
    """FireWorks' answer to a failed submission, for each launch; the problems, if any."""
    problems = []
    for launch_id in launch_ids:
        try:
            # Only a launch still RESERVED: FireWorks' cancel_reservation of one it already
            # cancelled (a hand-back done again after a kill) finds no RESERVED launch to
            # replace and upserts a copy, refused by the launch_id index (duplicate key).
            if launchpad.launches.find_one({"launch_id": launch_id, "state": "RESERVED"}, {"_id": 1}):
                launchpad.cancel_reservation(launch_id)
            elif launchpad.launches.find_one({"launch_id": launch_id, "state": "READY"}, {"_id": 1}):
                # cancel_reservation killed between its two writes (the launch READY, then the
                # Firework rerun: the daemon killed while FireWorks' rerun waited on a workflow
                # lock): its Firework, still RESERVED on this launch, is rerun as it would have.
                for fw in launchpad.fireworks.find(
                    {"launches": launch_id, "state": "RESERVED"}, {"fw_id": 1}
                ):
                    launchpad.rerun_fw(fw["fw_id"], rerun_duplicates=False)
            launchpad.forget_offline(launch_id, launch_mode=True)
        except Exception as exc:  # one launch's trouble must not keep the others reserved
            problems.append(f"launch {launch_id}: {exc}")
    return problems


#: Seconds a Firework must be seen RESERVED with no launch before :class:`HalfReservations`
#: takes it for a reservation killed half-way (one in flight takes milliseconds).
HALF_RESERVATION_AGE = 30.0


@dataclass
class HalfReservations:
    """Fireworks a reservation killed half-way left RESERVED with no launch.

    FireWorks' ``reserve_fw`` first marks a READY Firework RESERVED, then inserts its launch,
    then writes that launch into the Firework. A process killed in between (the daemon, by
    ``kill -9``) leaves the Firework RESERVED with no launch: no job runs it, no hand-back finds
    it (a hand-back starts from a launch), and FireWorks' ``lpad detect_unreserved`` looks at
    launches too (chaos scenario 15 left one so for good). Seen so for
    :data:`HALF_RESERVATION_AGE` seconds, the daemon reruns it (READY again), as
    ``lpad rerun_fws`` would.
    """

    say: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    #: Each such Firework: when it was first seen so.
    _since: dict[int, float] = field(default_factory=dict)

    def mend(self, launchpad: Any, locked: frozenset[int] | set[int] = frozenset()) -> list[int]:
        """Rerun those seen long enough (not ``locked`` ones: FireWorks would wait on their
        lock); the Fireworks it reran."""
        now = self.clock()
        found = launchpad.fireworks.find({"state": "RESERVED", "launches": []}, {"fw_id": 1})
        self._since = {int(d["fw_id"]): self._since.get(int(d["fw_id"]), now) for d in found}
        mended = []
        for fw_id, since in sorted(self._since.items()):
            if now - since < HALF_RESERVATION_AGE or fw_id in locked:
                continue
            launchpad.rerun_fw(fw_id, rerun_duplicates=False)
            del self._since[fw_id]
            mended.append(fw_id)
            self.say(
                f"Firework {fw_id}: RESERVED with no launch for {now - since:.0f}s (a reservation "
                "killed half-way): READY again"
            )
        return mended


@dataclass(slots=True)
class Block:
    """A block directory and the Fireworks reserved into it (not submitted yet)."""

    block_dir: str
    #: (Firework, launch id, launch directory), in the order they run.
    reserved: list[tuple[Any, int, str]]

    @property
    def launch_ids(self) -> list[int]:
        return [launch_id for _fw, launch_id, _d in self.reserved]

    @property
    def queueadapter(self) -> dict[str, Any]:
        """The ``_queueadapter`` settings its Fireworks share."""
        return queueadapter_settings(self.reserved[0][0].spec)

    def manifest(
        self, *, walltime_seconds: float | None, parallel: int = 1, margin: float | None = None
    ) -> BlockManifest:
        launches = [
            BlockLaunch(
                os.path.relpath(d, self.block_dir) if os.path.dirname(d) == self.block_dir else d,
                launch_id,
                fw.fw_id,
                estimate_of(fw.spec),
            )
            for fw, launch_id, d in self.reserved
        ]
        extra: dict[str, Any] = {} if margin is None else {"margin_seconds": margin}
        return BlockManifest(
            "fwspool-block",
            1,
            utcnow(),
            launches,
            walltime_seconds=walltime_seconds,
            parallel=parallel,
            **extra,
        )


def reserve_block(launchpad: Any, fworker: Any, launch_root: str, pack: int) -> Block | None:
    """A new ``block_*`` directory of ``launch_root`` with up to ``pack`` Fireworks reserved into
    it (:func:`reserve_pack`); None, and no directory, when nothing is READY."""
    from fireworks.utilities.fw_utilities import create_datestamp_dir, get_fw_logger

    launch_root = os.path.abspath(launch_root)
    if not os.path.isdir(launch_root):
        raise ConfigError(f"launch directory {launch_root} does not exist")
    block_dir = str(
        create_datestamp_dir(
            launch_root, get_fw_logger("fwspool.qlaunch", stream_level="CRITICAL"), prefix="block_"
        )
    )
    try:
        reserved = reserve_pack(launchpad, fworker, block_dir, pack)
    except BaseException:
        shutil.rmtree(block_dir, ignore_errors=True)  # its reservations were handed back
        raise
    if not reserved:
        os.rmdir(block_dir)
        return None
    return Block(block_dir, reserved)


def submit_pack(
    launchpad: Any,
    fworker: Any,
    qadapter: Any,
    launch_root: str,
    *,
    pack: int,
    parallel: int = 1,
    margin: float | None = None,
    say: Callable[[str], None] = print,
) -> PackJob | None:
    """Reserve up to ``pack`` Fireworks into a new ``block_*`` directory of ``launch_root`` and
    submit one job that runs them (``parallel`` at a time); None when nothing is READY.

    Raises :class:`SubmissionError` when the queue script cannot be written or submitted,
    after handing every reservation back.
    """
    check_rocket_launch(qadapter)
    block = reserve_block(launchpad, fworker, launch_root, pack)
    if block is None:
        for line in refused_for_the_store(launchpad, fworker):
            say(line)
        return None
    block_dir = block.block_dir
    n = len(block.reserved)
    manifests: list[BlockManifest] = []

    def write_block_manifest(qa: Any) -> None:
        manifest = block.manifest(
            walltime_seconds=walltime_seconds(qa.get("walltime")), parallel=parallel, margin=margin
        )
        write_manifest(block_dir, manifest)
        manifests.append(manifest)
        if manifest.walltime_seconds is not None and manifest.margin_seconds >= manifest.walltime_seconds:
            say(
                f"fwspool qlaunch: warning: the margin ({manifest.margin_seconds:g} s) is not shorter than "
                f"the walltime ({manifest.walltime_seconds:g} s): the job will start none of its "
                "Fireworks (give a smaller --margin)"
            )

    try:
        job, submitted = submit_job(
            qadapter,
            block_dir,
            job_name=job_name([fw.name for fw, _l, _d in block.reserved]),
            settings=block.queueadapter,
            rocket_launch_suffix=f" --block {block_dir}",
            prepare=write_block_manifest,
            what=f"its {n} reservations were handed back",
        )
        for launch_id in block.launch_ids:
            launchpad.set_reservation_id(launch_id, job)
    except BaseException as exc:
        problems = hand_back(launchpad, block.launch_ids)
        if problems:
            say(f"fwspool qlaunch: could not hand back: {'; '.join(problems)}")
        if isinstance(exc, FwspoolError) or not isinstance(exc, Exception):
            raise
        raise SubmissionError(
            f"submitting {block_dir} failed ({type(exc).__name__}: {exc}); its "
            f"{len(block.reserved)} reservations were handed back"
        ) from exc
    manifest = manifests[-1]
    say(
        f"fwspool qlaunch: batch job {job}: {counted(n, 'Firework')} "
        f"({', '.join(str(bl.fw_id) for bl in manifest.launches)}) in {block_dir}"
    )
    return PackJob(job, block_dir, list(manifest.launches), submitted)


def submit_job(
    qadapter: Any,
    directory: str,
    *,
    job_name: str,
    settings: dict[str, Any],
    rocket_launch_suffix: str,
    prepare: Callable[[Any], None] = lambda _qa: None,
    what: str = "nothing was reserved for it",
) -> tuple[str, dict[str, Any]]:
    """Write the queue script of one job into ``directory`` and submit it, through the user's own
    queue adapter (its template, ``get_script_str``, ``submit_to_queue``) changed by ``settings``
    (a Firework's ``_queueadapter``) and with ``rocket_launch_suffix`` appended to its
    ``rocket_launch`` line; ``prepare(qa)`` runs on the changed adapter before the script is
    written. The adapter is put back afterwards. Returns the job id and the settings submitted.

    Raises :class:`SubmissionError` (saying ``what`` became of the reservations) when the queue
    refuses the script.
    """
    from fireworks.fw_config import QUEUE_JOBNAME_MAXLEN, SUBMIT_SCRIPT_NAME

    # The job's settings on the adapter itself, put back afterwards (qlaunch deserialises a
    # copy; fwspool deserialises nothing it did not have to: tests/test_security.py).
    qa = qadapter
    before = dict(qa)
    try:
        qa.update(job_name=job_name[0:QUEUE_JOBNAME_MAXLEN])
        if settings:
            qa.update(settings)
        qa["rocket_launch"] += rocket_launch_suffix
        prepare(qa)
        script = os.path.join(directory, SUBMIT_SCRIPT_NAME)
        with open(script, "w", encoding="utf-8") as f:
            f.write(qa.get_script_str(directory))
        cwd = os.getcwd()
        os.chdir(directory)
        try:
            job = qa.submit_to_queue(SUBMIT_SCRIPT_NAME)
        finally:
            os.chdir(cwd)
        if not job:
            raise SubmissionError(
                f"the queue script {script} could not be submitted (check the queue adapter and the "
                f"queue); {what}"
            )
        return str(job), dict(qa)
    finally:
        qa.clear()
        qa.update(before)


def job_name(fw_names: list[str]) -> str:
    """The batch job's name: its Firework's, as ``qlaunch`` names a job; for more than one, how
    many and the first one's (``fws3_relax_1``), which no Firework name looks like (``relax_1+2``
    became ``relax_12``). It starts with a letter: Grid Engine and PBS refuse a job name that
    starts with a digit."""
    from fireworks.utilities.fw_utilities import get_slug

    first = get_slug(fw_names[0])
    return first if len(fw_names) == 1 else f"fws{len(fw_names)}_{first}"


def estimate_of(spec: dict[str, Any]) -> float | None:
    value = spec.get(ESTIMATE_KEY)
    return float(value) if isinstance(value, int | float) and value >= 0 else None


def jobs_in_queue(qadapter: Any) -> int:
    """The user's jobs in the queue, as FireWorks' own ``qlaunch -m`` counts them."""
    from fireworks.queue.queue_launcher import _get_number_of_jobs_in_queue
    from fireworks.utilities.fw_utilities import get_fw_logger

    return int(
        _get_number_of_jobs_in_queue(qadapter, 1, get_fw_logger("fwspool.qlaunch", stream_level="CRITICAL"))
    )


def work_to_come(launchpad: Any, fworker: Any) -> str:
    """Why Fireworks of this FWorker may still become READY, for a rapidfire's wait line; ""
    when none can. FireWorks' ``future_run_exists`` first; then a completion a push is writing
    (:func:`fwspool.launchpad.undo.completion_in_flight`): between the completed Firework and the
    Fireworks its FWAction adds becoming READY (a jobflow replace, an addition, a detour),
    FireWorks' own answer is no, and a rapidfire trusting it stopped with them never submitted."""
    from fwspool.launchpad.undo import completion_in_flight

    if launchpad.future_run_exists(fworker):
        return "Fireworks WAITING on RESERVED or RUNNING ones may become READY"
    if completion_in_flight(launchpad, dict(fworker.query)):
        return (
            "a push is writing a completion whose new Fireworks become READY after it "
            "(or one that died halfway waits for its journal's next push)"
        )
    return ""


def rapidfire(
    launchpad: Any,
    fworker: Any,
    qadapter: Any,
    launch_root: str,
    *,
    pack: int,
    parallel: int = 1,
    margin: float | None = None,
    nlaunches: int = 0,
    maxjobs_queue: int = 0,
    sleep_seconds: float | None = None,
    timeout: float | None = None,
    say: Callable[[str], None] = print,
    submitted: list[PackJob] | None = None,
) -> list[PackJob]:
    """Submit packed jobs while Fireworks are READY, as FireWorks' ``qlaunch rapidfire`` submits
    single ones: ``nlaunches`` jobs at most (0: until nothing is READY or WAITING; -1: forever),
    never more than ``maxjobs_queue`` of the user's jobs in the queue (0: no limit), sleeping
    ``sleep_seconds`` between rounds, and no round started after ``timeout`` seconds (None or 0:
    none). Before each sleep, one line says what it waits for and when it looks again, as
    FireWorks' ``sleeping for 60 secs``; a sleep never goes past the timeout. ``submitted``, when
    given, is the list the jobs go in (what was submitted, should the caller be interrupted)."""
    from fireworks.fw_config import QUEUE_UPDATE_INTERVAL, RAPIDFIRE_SLEEP_SECS

    sleep_seconds = RAPIDFIRE_SLEEP_SECS if sleep_seconds is None else sleep_seconds
    started = time.monotonic()
    jobs: list[PackJob] = [] if submitted is None else submitted

    def left() -> float | None:
        return None if not timeout else timeout - (time.monotonic() - started)

    def timed_out() -> bool:
        remaining = left()
        return remaining is not None and remaining <= 0

    while True:
        waiting = "nothing READY for this FWorker"
        while launchpad.run_exists(fworker) and not timed_out():
            if maxjobs_queue and jobs_in_queue(qadapter) >= maxjobs_queue:
                waiting = f"{counted(maxjobs_queue, 'job')} in the queue already (--maxjobs_queue)"
                break
            job = submit_pack(
                launchpad,
                fworker,
                qadapter,
                launch_root,
                pack=pack,
                parallel=parallel,
                margin=margin,
                say=say,
            )
            if job is None:
                break
            jobs.append(job)
            if nlaunches > 0 and len(jobs) >= nlaunches:
                return jobs
            time.sleep(QUEUE_UPDATE_INTERVAL)  # FireWorks' wait for the queue to show the job
        if timed_out():
            say(f"fwspool qlaunch: --timeout {timeout:g} s reached")
            return jobs
        coming = work_to_come(launchpad, fworker) if nlaunches == 0 else ""
        if nlaunches == 0 and not coming:
            return jobs
        remaining = left()
        pause = sleep_seconds if remaining is None else max(0.0, min(sleep_seconds, remaining))
        if nlaunches == 0:
            goal = f"; {coming}"
        elif nlaunches > 0:
            goal = f"; {len(jobs)} of {counted(nlaunches, 'job')} submitted (--nlaunches)"
        else:
            goal = " (--nlaunches infinite)"
        until = "" if remaining is None else f", until --timeout ({remaining:.0f} s left)"
        say(f"fwspool qlaunch: {waiting}{goal}; looking again in {pause:.0f} s{until}")
        time.sleep(pause)
