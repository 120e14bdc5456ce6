"""The pilot pool: reserved launches on the shared filesystem that pilot jobs claim
(``schema/POOL.md``).

The login daemon (:mod:`fwspool.stock`) reserves Fireworks as ``qlaunch -r`` reserves them, each
into a launch directory under ``POOL/launches``, and *stocks* each with an entry file in
``POOL/ready``. A pilot job (:mod:`fwspool.pilot`) claims an entry in two steps:

1. it renames ``ready/<launch_id>.json`` to ``claimed/<launch_id>.json.<pilot>``, a name only
   this pilot uses. A rename is atomic: of two pilots, one gets the entry and the other
   ``ENOENT``. When NFS retries a rename whose first try succeeded, the retry fails with
   ``ENOENT`` too; the pilot then finds the entry under its own name, so the claim is not lost.
2. it creates the *claim record* ``fwspool-claim.json`` in the launch directory (exclusively):
   the record decides. A pilot whose record creation meets another pilot's record does not run
   the launch.

When the launch ends the pilot removes its ``claimed/`` entry; one left behind belongs to a pilot
that was killed: the daemon hands it back to ``ready/`` (setting the claim record aside) when the
launch never started, and removes it when it did (the batch system's check finds the run lost,
as for any job: :mod:`fwspool.ingest.scheduler_check`).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from fwspool.errors import InputError
from fwspool.failpoints import failpoint

__all__ = ["CLAIM_NAME", "ClaimRecord", "Pool", "PoolEntry", "pilot_name", "pool_report"]

#: The pool's subdirectories.
LAUNCHES, READY, CLAIMED, PILOTS = "launches", "ready", "claimed", "pilots"
#: The claim record's name in a launch directory.
CLAIM_NAME = "fwspool-claim.json"
#: The formats this code writes (``schema/POOL.md``).
POOL_VERSION = 1
_ENTRY_RE = re.compile(r"^(\d+)\.json$")
_CLAIMED_SEP = ".json."


class PoolEntry(msgspec.Struct, forbid_unknown_fields=False):
    """``ready/<launch_id>.json``: one reserved launch a pilot may take."""

    format: Literal["fwspool-pool-entry"]
    version: int
    launch_id: int
    fw_id: int
    #: Absolute.
    launch_dir: str
    stocked_on: dt.datetime
    #: The Firework's spec ``_fwspool_estimate`` (seconds), if it gives one.
    estimate_seconds: float | None = None


class ClaimRecord(msgspec.Struct, forbid_unknown_fields=False):
    """``fwspool-claim.json`` in a launch directory: which pilot runs the launch."""

    format: Literal["fwspool-claim"]
    version: int
    pilot: str
    claimed_on: dt.datetime
    batch_job_id: str | None = None
    host: str | None = None
    pid: int | None = None


def pilot_name(batch_job_id: str | None) -> str:
    """A name no other pilot has: ``<job>_<host>_<pid>_<random>`` (the job first, so that the
    daemon knows whose claim an entry is from its name alone)."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"
    job = re.sub(r"[^A-Za-z0-9.-]", "-", batch_job_id) if batch_job_id else "nojob"
    return f"{job}_{host}_{os.getpid()}_{secrets.token_hex(4)}"


def job_of_pilot(pilot: str) -> str | None:
    """The batch job id in a pilot's name (None: a pilot run outside a job)."""
    job = pilot.split("_", 1)[0]
    return None if job == "nojob" else job


def _write_new(path: str, data: bytes, *, exclusive: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Claim:
    """An entry a pilot (or the daemon, handing it back) holds under ``claimed/``."""

    name: str
    holder: str
    entry: PoolEntry

    @property
    def path_in(self) -> str:
        """Its name under ``claimed/``: ``<launch_id>.json.<holder>``."""
        return claimed_name(self.name, self.holder)


def claimed_name(name: str, holder: str) -> str:
    """``ready/<launch_id>.json`` claimed by ``holder``: ``claimed/<launch_id>.json.<holder>``."""
    return f"{name.removesuffix('.json')}{_CLAIMED_SEP}{holder}"


class Pool:
    """A pool directory (see the module's description)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @classmethod
    def create(cls, root: str) -> Pool:
        pool = cls(root)
        for sub in (LAUNCHES, READY, CLAIMED, PILOTS):
            os.makedirs(pool.path(sub), exist_ok=True)
        return pool

    @classmethod
    def existing(cls, root: str) -> Pool:
        pool = cls(root)
        missing = [sub for sub in (READY, CLAIMED) if not os.path.isdir(pool.path(sub))]
        if missing:
            raise InputError(f"{pool.root} is not a pilot pool (no {', '.join(missing)} directory)")
        return pool

    # -- the daemon's side ----------------------------------------------------------------------

    def stock(self, launch_id: int, fw_id: int, launch_dir: str, estimate: float | None) -> PoolEntry:
        """Publish a reserved launch: its entry written under a temporary name, fsynced, renamed
        into ``ready/`` (a pilot never reads half of one)."""
        entry = PoolEntry(
            "fwspool-pool-entry",
            POOL_VERSION,
            launch_id,
            fw_id,
            os.path.abspath(launch_dir),
            dt.datetime.now(dt.UTC),
            estimate,
        )
        tmp = self.path(READY, f".{launch_id}.json.tmp-{os.getpid()}")
        _write_new(tmp, msgspec.json.encode(entry) + b"\n", exclusive=False)
        os.replace(tmp, self.path(READY, f"{launch_id}.json"))
        return entry

    def ready(self) -> list[tuple[str, PoolEntry]]:
        """The entries in ``ready/``, oldest launch first; unreadable ones skipped."""
        out = []
        for name in sorted(_names(self.path(READY)), key=_launch_number):
            if not _ENTRY_RE.match(name):
                continue
            entry = self._read(self.path(READY, name))
            if entry is not None:
                out.append((name, entry))
        return out

    def ready_stamp(self) -> int | None:
        """``ready/``'s modification time (ns), which a stock, a take or a give-back changes: a
        pilot lists the entries again only when it moved (or now and then: a coarse or cached
        directory time may hide a change). None when the directory cannot be read."""
        try:
            return os.stat(self.path(READY)).st_mtime_ns
        except OSError:
            return None

    def claims(self) -> list[Claim]:
        """The entries held under ``claimed/``."""
        out = []
        for name in _names(self.path(CLAIMED)):
            base, sep, holder = name.partition(_CLAIMED_SEP)
            if not sep or not holder:
                continue
            entry = self._read(self.path(CLAIMED, name))
            if entry is not None:
                out.append(Claim(f"{base}.json", holder, entry))
        return out

    def take(self, name: str, holder: str) -> Claim | None:
        """Step 1 of a claim: rename ``ready/name`` to ``claimed/name.holder``; None when another
        took it first. An ``ENOENT`` whose rename had in fact happened (NFS retried it) is ours."""
        src = self.path(READY, name)
        dst = self.path(CLAIMED, claimed_name(name, holder))
        try:
            os.rename(src, dst)
            failpoint("pool.take.after_rename")  # chaos: the rename NFS retried after it succeeded
        except FileNotFoundError:
            if not os.path.exists(dst):
                return None
        entry = self._read(dst)
        if entry is None:
            return None
        return Claim(name, holder, entry)

    def give_back(self, claim: Claim) -> None:
        """Put a claimed entry back in ``ready/``, its claim record (if any) set aside first, so
        that the next pilot's record is the only one."""
        record = os.path.join(claim.entry.launch_dir, CLAIM_NAME)
        try:
            os.rename(record, f"{record}.abandoned-{claim.holder}")
        except FileNotFoundError:
            pass
        os.rename(self.path(CLAIMED, claim.path_in), self.path(READY, claim.name))

    def drop(self, claim: Claim) -> None:
        """Remove a claimed entry: its launch ran (or was handed back to the LaunchPad)."""
        try:
            os.unlink(self.path(CLAIMED, claim.path_in))
        except FileNotFoundError:
            pass

    # -- the pilot's side -----------------------------------------------------------------------

    def claim(self, pilot: str, batch_job_id: str | None, fits: Callable[[PoolEntry], bool]) -> Claim | None:
        """Claim the oldest entry that ``fits`` (the pilot's time left): rename, then the claim
        record; None when nothing can be claimed now."""
        for name, entry in self.ready():
            if not fits(entry):
                continue
            claim = self.take(name, pilot)
            if claim is None:
                continue  # another pilot was first
            if self.confirm(claim, batch_job_id):
                return claim
        return None

    def confirm(self, claim: Claim, batch_job_id: str | None) -> bool:
        """Step 2: create the claim record; whether it is this pilot's (a retried create of our
        own record is ours too)."""
        path = os.path.join(claim.entry.launch_dir, CLAIM_NAME)
        record = ClaimRecord(
            "fwspool-claim",
            POOL_VERSION,
            claim.holder,
            dt.datetime.now(dt.UTC),
            batch_job_id,
            socket.gethostname(),
            os.getpid(),
        )
        try:
            _write_new(path, msgspec.json.encode(record) + b"\n", exclusive=True)
            return True
        except FileExistsError:
            return (read_claim_record(claim.entry.launch_dir) or record).pilot == claim.holder

    def _read(self, path: str) -> PoolEntry | None:
        try:
            with open(path, "rb") as f:
                return msgspec.json.decode(f.read(), type=PoolEntry)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return None


def pool_report(root: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """What ``fwspool status`` shows of a pool: its stock (how many entries, the oldest's age in
    seconds), its claims (launch, Firework, holder, the holder's batch job) and the pilots whose
    record is there (``schema/POOL.md``). A pool that is gone says so (``exists``: false)."""
    pool = Pool(root)
    now = now or dt.datetime.now(dt.UTC)
    if not os.path.isdir(pool.path(READY)):
        return {
            "root": pool.root,
            "exists": False,
            "ready": 0,
            "oldest_ready_s": None,
            "claims": [],
            "pilots": [],
        }
    ready = pool.ready()
    claims = sorted(pool.claims(), key=lambda c: c.entry.launch_id)
    pilots = []
    for name in sorted(_names(pool.path(PILOTS))):
        if name.endswith(".json"):
            try:
                with open(pool.path(PILOTS, name), "rb") as f:
                    pilots.append(msgspec.json.decode(f.read()))
            except (OSError, msgspec.DecodeError):
                continue
    return {
        "root": pool.root,
        "exists": True,
        "ready": len(ready),
        "oldest_ready_s": round(max((now - e.stocked_on).total_seconds() for _n, e in ready), 1)
        if ready
        else None,
        "claims": [
            {
                "launch_id": c.entry.launch_id,
                "fw_id": c.entry.fw_id,
                "holder": c.holder,
                "batch_job_id": None if c.holder.startswith("stocker-") else job_of_pilot(c.holder),
            }
            for c in claims
        ],
        "pilots": [
            {k: p.get(k) for k in ("pilot", "batch_job_id", "host", "pid", "started_on")}
            for p in pilots
            if isinstance(p, dict)
        ],
    }


def read_claim_record(launch_dir: str) -> ClaimRecord | None:
    try:
        with open(os.path.join(launch_dir, CLAIM_NAME), "rb") as f:
            return msgspec.json.decode(f.read(), type=ClaimRecord)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def _names(directory: str) -> list[str]:
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []


def _launch_number(name: str) -> int:
    m = _ENTRY_RE.match(name)
    return int(m.group(1)) if m else 0
