"""The events a launch goes through, and the spool record that carries one.

These msgspec types are the single definition of the event format: the writer encodes them,
the ingester decodes them, and ``schema/event.schema.json`` is generated from them
(``python -m fwspool.events > schema/event.schema.json``; a test fails on drift).

Every record has an identity that makes ingestion exactly-once: ``writer`` is a random 128-bit
id drawn once per writer (per process and file), ``seq`` counts that writer's records from 1.
``(writer, seq)`` is unique across all launches and machines, so ingesting the same bytes again
never creates a second journal row.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import sys
from typing import Any, Literal

import msgspec

#: Version of the record envelope that writers write. Version 2 spells the floats JSON lacks
#: (NaN, ±Infinity) as MongoDB Extended JSON does (:func:`tag_nonfinite`); version 1 wrote
#: them as null. Readers quarantine versions they do not know.
RECORD_VERSION = 2
#: Versions readers accept.
READABLE_VERSIONS = frozenset({1, 2})

#: Extended JSON's spelling of the floats JSON cannot write (``{"$numberDouble": "NaN"}``).
_NONFINITE_KEY = "$numberDouble"
_NONFINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def tag_nonfinite(value: Any) -> Any:
    """``value`` with every NaN and ±Infinity float spelled ``{"$numberDouble": "NaN"}`` (and
    ``"Infinity"``, ``"-Infinity"``), as MongoDB Extended JSON spells them: JSON has no such
    numbers, and a JSON encoder writes null (or invalid JSON). BSON, and so the LaunchPad, keeps
    them: :func:`untag_nonfinite` gives them back before anything is written there."""
    if isinstance(value, float):
        if value != value:
            return {_NONFINITE_KEY: "NaN"}
        if value in (float("inf"), float("-inf")):
            return {_NONFINITE_KEY: "Infinity" if value > 0 else "-Infinity"}
        return value
    if isinstance(value, dict):
        return {k: tag_nonfinite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [tag_nonfinite(v) for v in value]
    return value


def untag_nonfinite(value: Any) -> Any:
    """The inverse of :func:`tag_nonfinite`: ``{"$numberDouble": "NaN"}`` becomes ``nan`` again."""
    if isinstance(value, dict):
        if (
            len(value) == 1
            and isinstance(value.get(_NONFINITE_KEY), str)
            and value[_NONFINITE_KEY] in _NONFINITE
        ):
            return _NONFINITE[value[_NONFINITE_KEY]]
        return {k: untag_nonfinite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [untag_nonfinite(v) for v in value]
    return value


#: FireWorks launch states that end a launch.
FINAL_STATES = ("COMPLETED", "FIZZLED")


class Started(msgspec.Struct, tag="started", tag_field="type", forbid_unknown_fields=False):
    """The Firework began running on a compute node (FireWorks' ``checkout_fw``)."""

    started_on: dt.datetime
    #: None when unknown (FireWorks' own offline files do not record them).
    host: str | None = None
    ip: str | None = None
    fworker: dict[str, Any] | None = None
    #: The batch job running the launch (``SLURM_JOB_ID``, ``PBS_JOBID``...), so the login node
    #: can ask the batch system whether it still runs (lost-run detection).
    batch_job_id: str | None = None
    #: ``slurm``, ``pbs``, ``lsf``, ``sge`` or ``cobalt``: which batch system ``batch_job_id`` is of.
    batch_system: str | None = None
    #: How many times the batch system restarted the job (``SLURM_RESTART_COUNT``): a requeued
    #: job runs the same launch again, in the same launch directory.
    restart_count: int | None = None
    #: The directory the run started in: a launch is its LaunchPad, its id and its directory
    #: (:mod:`fwspool.identity`), and a directory moved before ingest read it is recognised by this.
    launch_dir: str | None = None
    #: Whether this run is a restart of the job (Grid Engine's ``RESTARTED`` flag, which does not
    #: count: each run has a writer of its own, which tells one run from the next).
    restarted: bool | None = None


class Ping(msgspec.Struct, tag="ping", tag_field="type"):
    """The job is alive (FireWorks' ``ping_launch`` without a checkpoint)."""

    ping_time: dt.datetime


class Checkpoint(msgspec.Struct, tag="checkpoint", tag_field="type"):
    """FireWorks' per-task checkpoint, recorded before each task runs."""

    checkpoint: dict[str, Any]
    #: FireWorks pings with every checkpoint; None when the time is unknown (offline files).
    ping_time: dt.datetime | None = None


class LaunchDirChanged(msgspec.Struct, tag="launch_dir_changed", tag_field="type"):
    """The spec's ``_launch_dir`` moved the run (FireWorks' ``change_launch_dir``)."""

    launch_dir: str


class StoreWrite(msgspec.Struct, forbid_unknown_fields=False):
    """One ``update`` a jobflow job made on one store of its JobStore (``docs`` or an
    additional store's name), as its documents: inline, or in a side file of the launch
    directory named by its content's SHA-256 when larger than the inline limit
    (:data:`fwspool.jobstore.outputs.INLINE_LIMIT`)."""

    store: str
    key: list[str]
    #: The documents as MongoDB Extended JSON (relaxed), so that dates and binary data come back
    #: as the job made them; None when they are in ``side_file``.
    ejson: str | None = None
    #: ``fwspool-blob-<sha256>.ejson`` in the launch directory, and the hash and size it must have.
    side_file: str | None = None
    sha256: str | None = None
    size: int | None = None


class JobOutputs(msgspec.Struct, forbid_unknown_fields=False):
    """What a jobflow job wrote to its JobStore on the compute node, for the pusher to write to
    the real JobStore before it completes the launch (docs/jobflow.md)."""

    job_uuid: str
    job_index: int
    #: The JobStore the task names, serialized; None: the login node's ``jobflow.SETTINGS.JOB_STORE``.
    job_store: dict[str, Any] | None
    writes: list[StoreWrite]


class Completed(msgspec.Struct, tag="completed", tag_field="type"):
    """The launch reached a final state, COMPLETED or FIZZLED, with its FWAction.

    One type for both, as FireWorks' own ``complete_launch(launch_id, action, state)``.
    """

    state: Literal["COMPLETED", "FIZZLED"]
    action: dict[str, Any]
    completed_on: dt.datetime
    #: A jobflow job's JobStore writes, one entry per ``JobFiretask`` that wrote; None otherwise.
    #: Part of the completion, so they reach the login node exactly when it does.
    job_outputs: list[JobOutputs] | None = None


class Exited(msgspec.Struct, tag="exited", tag_field="type"):
    """The writer process is ending: its return code, or the signal that ends it."""

    returncode: int | None = None
    signal: int | None = None
    signal_name: str | None = None
    #: Why the launch could not even start (a bad ``FW.json``, an unimportable task, a
    #: ``--fw_id`` that is not the reserved Firework's): the one-line error ``fwspool rlaunch`` printed.
    error: str | None = None
    #: The writer id of the run this ends, when another writer records it (the signal handler
    #: writes a file of its own): pairs an exit with its run whatever the node's clock did.
    run: str | None = None
    #: What the signal means on the job's batch system, in words ("Grid Engine's soft walltime
    #: (s_rt) passed"): :data:`fwspool.rlaunch.SIGNAL_MEANINGS`.
    meaning: str | None = None


class JobEnd(msgspec.Struct, forbid_unknown_fields=False):
    """How the batch system says a job ended, from its own record of the job (Grid Engine's
    ``qacct -j``, Slurm's ``scontrol show job``)."""

    #: fwspool's word for it: ``walltime``, ``killed``, ``exited``, ``completed``,
    #: ``rescheduled``, ``limit``, ``failed to start``, ``node failure``, ``out of memory``,
    #: ``preempted``, ``cancelled``.
    cause: str
    #: The batch system's own words: ``failed 37 : qmaster enforced h_rt limit, exit_status 137``.
    words: str
    #: The command asked: ``qacct -j`` or ``scontrol show job``.
    source: str
    #: The job script's exit status (128 + N: killed by signal N).
    exit_status: int | None = None
    #: Grid Engine's ``failed`` code (0: the job ran and ended on its own).
    failed: int | None = None
    #: Slurm's ``JobState`` and ``Reason``.
    state: str | None = None
    reason: str | None = None
    #: The job's output files, as the record names them (Slurm's ``StdOut``/``StdErr``), and
    #: their last lines (:data:`fwspool.scheduler.TAIL_LINES`, at most :data:`fwspool.scheduler.TAIL_BYTES`):
    #: shown by ``lpad get_fws -d all``, so nobody has to log in and find them.
    stdout: str | None = None
    stdout_tail: str | None = None
    stderr: str | None = None
    stderr_tail: str | None = None
    #: Why the batch system could not be asked (``source`` ``not asked``, ``cause`` ``unknown``):
    #: nothing is known of the job's end, not even that the batch system has no record of it
    #: (that is ``source`` ``no record``). None: it was asked.
    query_error: str | None = None


class Lost(msgspec.Struct, tag="lost", tag_field="type"):
    """Inferred on the login node, never written by a job: the batch job of a started launch is
    no longer queued or running, and the launch recorded no end (SIGKILL, OOM killer, node
    failure). The pusher makes the Firework FIZZLED; a real end that arrives later still wins."""

    batch_job_id: str
    #: When the batch system was first seen not to have the job.
    gone_since: dt.datetime
    batch_system: str | None = None
    #: How the batch job ended, in the batch system's words (kept from when the job was first
    #: seen gone, if the batch system forgot it since); None when it has no record; ``query_error``
    #: set when it could not be asked. The job is gone all the same.
    batch_end: JobEnd | None = None
    #: The launch directory was gone when the run was judged lost: deleted, or moved where no
    #: ``--root`` looked. Nothing can be read of the run any more, so the launch ends here.
    launch_dir_gone: str | None = None


class Released(msgspec.Struct, tag="released", tag_field="type"):
    """The launch will never run in this reservation (its batch job was cancelled while
    pending, rejected, or died before ``fwspool rlaunch`` started): the pusher hands the
    reservation back (FireWorks' ``cancel_reservation``), so the Firework is READY again."""

    reason: str
    batch_job_id: str | None = None


class JobEnded(msgspec.Struct, tag="job_ended", tag_field="type"):
    """Inferred on the login node, never written by a job: the batch system's record of a job
    whose run recorded its own end (an ``exited`` by a signal: ``scancel``, walltime) and that is
    gone. It ends nothing (the ``exited`` did); the pusher adds ``batch_end`` to the FIZZLED
    launch's ``stored_data._fwspool_exit``, so the LaunchPad says why in the batch system's words."""

    batch_job_id: str
    batch_system: str | None = None
    #: What the batch system's record says; ``cause`` ``unknown`` when it has none
    #: (:func:`fwspool.scheduler.no_record`).
    batch_end: JobEnd | None = None


class Note(msgspec.Struct, tag="note", tag_field="type"):
    """Free-form information from a job script (``fwspool emit note``); never pushed."""

    data: Any = None


Event = (
    Started | Ping | Checkpoint | LaunchDirChanged | Completed | Exited | Lost | Released | JobEnded | Note
)

#: Event type names, in the order a normal launch produces them.
EVENT_TYPES: tuple[str, ...] = tuple(
    str(t.__struct_config__.tag)
    for t in (Started, Ping, Checkpoint, LaunchDirChanged, Completed, Exited, Lost, Released, JobEnded, Note)
)
EVENT_CLASSES: dict[str, type] = {
    str(t.__struct_config__.tag): t
    for t in (Started, Ping, Checkpoint, LaunchDirChanged, Completed, Exited, Lost, Released, JobEnded, Note)
}

#: Events that must reach the disk before the writer goes on (see schema/SPOOL.md).
DURABLE_TYPES = frozenset({"started", "completed", "exited", "launch_dir_changed", "released"})


class Record(msgspec.Struct, forbid_unknown_fields=False):
    """One spool record: who wrote it, for which launch, when, and the event."""

    v: int
    writer: str
    seq: int
    launch_id: int
    at: dt.datetime
    event: Event
    fw_id: int | None = None


class RawRecord(msgspec.Struct, forbid_unknown_fields=False):
    """The envelope of :class:`Record` with the event left as raw JSON bytes.

    The ingester decodes this, validates ``event`` against :data:`Event`, and stores the
    raw bytes as the journal payload without re-encoding them.
    """

    v: int
    writer: str
    seq: int
    launch_id: int
    at: dt.datetime
    event: msgspec.Raw
    fw_id: int | None = None


_UTC = dt.UTC
_encode_json = msgspec.json.Encoder().encode


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC (the only kind of time fwspool records)."""
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime | str) -> dt.datetime:
    """A timezone-aware UTC datetime from a datetime or an ISO-8601 string.

    FireWorks writes naive ISO strings in some places and ``+00:00`` in others; naive means UTC
    there, so it means UTC here.
    """
    if isinstance(value, str):
        return _parse_iso(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


@functools.lru_cache(maxsize=1024)
def _parse_iso(text: str) -> dt.datetime:
    # Cached: `fwspool status` reads each launch's times several times, and the last push's
    # for every launch (datetimes are immutable, so callers may share one).
    return as_utc(dt.datetime.fromisoformat(text))  # Python 3.11 reads the "Z" too


def iso(value: dt.datetime) -> str:
    """ISO-8601 UTC text as the journal stores it: sortable, ``Z``-suffixed, microseconds."""
    if value.tzinfo is _UTC and value.year >= 1000:
        # Fast path (ingest calls this once per event), the same text as the strftime below at
        # an eighth of its cost: msgspec writes a UTC datetime as RFC 3339 with "Z", and microseconds
        # as six digits when there are any. Years before 1000 take the slow path: strftime does
        # not pad %Y. So does anything else: a datetime subclass msgspec refuses (freezegun's),
        # or any other text (msgspec never writes one).
        try:
            text = _encode_json(value).decode()  # '"2026-11-24T21:41:18.950699Z"' with the quotes
        except TypeError:
            text = ""
        if len(text) == 29:
            return text[1:-1]
        if len(text) == 22:
            return text[1:-2] + ".000000Z"
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def age(iso_text: str | None, now: dt.datetime) -> str:
    """'3h12m' style age of an ISO time."""
    if not iso_text:
        return "-"
    secs = max(0, int((now - as_utc(iso_text)).total_seconds()))
    if secs < 120:
        return f"{secs}s"
    if secs < 7200:
        return f"{secs // 60}m"
    if secs < 172800:
        return f"{secs // 3600}h{(secs % 3600) // 60:02d}m"
    return f"{secs // 86400}d{(secs % 86400) // 3600:02d}h"


def event_id(writer: str, seq: int) -> str:
    """The journal primary key of an event: ``<writer>-<seq, 10 digits>``; sorts by sequence."""
    return f"{writer}-{seq:010d}"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of one spool record, generated from :class:`Record`."""
    schema = msgspec.json.schema(Record)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "fwspool spool record"
    schema["description"] = "The JSON payload of one framed spool record; see schema/SPOOL.md."
    return schema


def json_schema_text() -> str:
    """The checked-in text of ``schema/event.schema.json``."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(json_schema_text())
