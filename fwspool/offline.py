"""Facts from unmodified FireWorks offline jobs (``rlaunch singleshot --offline``).

FireWorks' offline rocket rewrites ``FW_offline.json`` (or ``FW_offline.json.gz``) and
``FW_ping.json`` in place. Each fact found there becomes an event with a *deterministic* id
derived from the launch id and the fact itself, so reading the same file again adds nothing and
a newer version of the file adds only the new facts. A file caught half-written does not parse:
that is "not yet", and the next pass reads it again.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import stat
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from fwspool.events import (
    RECORD_VERSION,
    Checkpoint,
    Completed,
    Event,
    Ping,
    Record,
    Started,
    as_utc,
    tag_nonfinite,
)
from fwspool.identity import normal_dir
from fwspool.trust import DEFAULT_MAX_DEPTH, SYMLINK_REASON, Refused, depth_problem

#: Checks an opened file (path, fd, fstat) and says why it must not be believed, or None.
FileCheck = Callable[[str, int, os.stat_result], "str | None"]

OFFLINE_NAMES = ("FW_offline.json", "FW_offline.json.gz")
PING_NAME = "FW_ping.json"
_NAMESPACE = uuid.UUID("6f0c2b1e-4a7d-4e55-9d0c-1f2a3b4c5d6e")

#: Deterministic sequence numbers. Pings use microseconds since the epoch of their ping time, so
#: every distinct ping is a distinct event; the others are fixed slots that order naturally.
SEQ_STARTED = 1
SEQ_CHECKPOINT_BASE = 2  # + the checkpoint's _task_n
SEQ_COMPLETED = 2**62


class _FwId(msgspec.Struct):
    fw_id: int | None = None


class _Offline(msgspec.Struct):
    launch_id: int
    started_on: str | None = None
    checkpoint: dict[str, Any] | None = None
    fwaction: dict[str, Any] | None = None
    state: str | None = None
    completed_on: str | None = None


class _PingFile(msgspec.Struct):
    ping_time: str


class NotYet(Exception):
    """A file is missing or half-written; read it again on the next pass."""


def offline_writer_id(launch_id: int, launch_dir: str | None = None) -> str:
    """The writer id of all facts derived from one launch's FireWorks offline files.

    Launch ids are per LaunchPad (:mod:`fwspool.identity`): two LaunchPads' launch 1 run in two
    directories, so the directory is part of the id. Without it (``launch_dir`` None) it is the
    id journals before schema 4 gave, kept for the files they already read, so that a newer
    version of such a file adds only what is new.
    """
    if launch_dir is None:
        return uuid.uuid5(_NAMESPACE, f"fireworks-offline/{launch_id}").hex
    return uuid.uuid5(_NAMESPACE, f"fireworks-offline/{launch_id}/{normal_dir(launch_dir)}").hex


def find_offline_file(launch_dir: str) -> str | None:
    """FireWorks reads through monty's ``zpath``: the plain file first, else the gzipped one."""
    for name in OFFLINE_NAMES:
        path = os.path.join(launch_dir, name)
        if os.path.lexists(path):
            return path
    return None


def _read(path: str, max_bytes: int, check: FileCheck | None = None) -> bytes:
    """The bytes of a FireWorks offline file, never more than ``max_bytes`` in memory.

    Raises :class:`Refused` for a file ``check`` refuses, a symbolic link, or one too large
    (its size is looked at before anything is read, and a gzip stream is inflated only up to
    the limit: a gzip bomb costs nothing).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused(SYMLINK_REASON) from None
        raise
    try:
        st = os.fstat(fd)
        reason = check(path, fd, st) if check is not None else None
        if reason is not None:
            raise Refused(reason)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path} is not a regular file")
        if st.st_size > max_bytes:
            raise Refused(f"larger than the limit of {max_bytes} bytes ({st.st_size} bytes)")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise Refused(f"larger than the limit of {max_bytes} bytes")
    if path.endswith(".gz"):
        data = _gunzip(path, data, max_bytes)
    return data


def _gunzip(path: str, data: bytes, max_bytes: int) -> bytes:
    """Inflate a (possibly multi-member) gzip stream, refusing more than ``max_bytes`` out."""
    out: list[bytes] = []
    size = 0
    while data:
        d = zlib.decompressobj(wbits=31)
        try:
            chunk = d.decompress(data, max_bytes + 1 - size)
        except zlib.error as exc:
            raise NotYet(f"{path}: incomplete gzip stream ({exc})") from exc
        size += len(chunk)
        out.append(chunk)
        if size > max_bytes or d.unconsumed_tail:
            raise Refused(f"decompresses to more than the limit of {max_bytes} bytes")
        if not d.eof:
            raise NotYet(f"{path}: incomplete gzip stream")
        data = d.unused_data.lstrip(b"\0")
    return b"".join(out)


@dataclass(slots=True)
class OfflineSnapshot:
    """What one read of a launch directory's FireWorks offline files says."""

    path: str
    launch_id: int
    content_hash: str
    records: list[Record] = field(default_factory=list)
    finished: bool = False
    #: Why ``FW_ping.json`` was not believed (its facts are left out), or None.
    refused_ping: str | None = None


def read_fw_id(launch_dir: str, max_bytes: int, check: FileCheck | None = None) -> int | None:
    """The fw_id in ``FW.json`` (written at reservation), or None if it cannot be read or is not
    to be believed (``check``)."""
    try:
        raw = _read(os.path.join(launch_dir, "FW.json"), max_bytes, check)
        if depth_problem(raw):
            return None
        return msgspec.json.decode(raw, type=_FwId).fw_id
    except (OSError, ValueError, NotYet, Refused, msgspec.DecodeError, RecursionError):
        return None


def _decode_offline(raw: bytes) -> _Offline:
    """``FW_offline.json`` as FireWorks wrote it: Python's ``json``, which writes NaN and
    ±Infinity in stored data as the bare words ``NaN``/``Infinity`` that strict JSON lacks."""
    try:
        return msgspec.json.decode(raw, type=_Offline)
    except msgspec.DecodeError as strict:
        try:
            loose = json.loads(raw)
        except ValueError:
            raise strict from None  # not complete JSON (yet)
    return msgspec.json.decode(msgspec.json.encode(tag_nonfinite(loose)), type=_Offline)


def snapshot(
    offline_path: str,
    max_bytes: int,
    now: dt.datetime,
    check: FileCheck | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    *,
    legacy_writer: bool = False,
) -> OfflineSnapshot:
    """Read ``FW_offline.json[.gz]`` and ``FW_ping.json`` beside it, and derive their events
    (their writer: :func:`offline_writer_id` of the launch and its directory; ``legacy_writer``:
    of the launch alone, for a file a journal older than schema 4 read).

    Raises :class:`NotYet` for a half-written or vanished file, :class:`ValueError` for one that
    can never be read (not JSON of the expected shape even when complete), :class:`Refused` for
    one not to be believed (``check``, a symbolic link) or over the limits (size, JSON depth).
    A refused ``FW_ping.json`` is left out, and named in :attr:`OfflineSnapshot.refused_ping`.
    """
    launch_dir = os.path.dirname(offline_path)
    try:
        raw = _read(offline_path, max_bytes, check)
    except FileNotFoundError as exc:
        raise NotYet(f"{offline_path} vanished") from exc
    problem = depth_problem(raw, max_depth)
    if problem is not None:
        raise Refused(problem)
    try:
        data = _decode_offline(raw)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{offline_path}: {exc}") from exc
    except msgspec.DecodeError as exc:
        # FireWorks truncates and rewrites this file in place: a parse error is a read mid-write.
        raise NotYet(f"{offline_path}: not complete JSON yet ({exc})") from exc
    ping_raw = b""
    ping: _PingFile | None = None
    ping_path = os.path.join(launch_dir, PING_NAME)
    refused_ping: str | None = None
    try:
        ping_raw = _read(ping_path, max_bytes, check)
        refused_ping = depth_problem(ping_raw, max_depth)
        if refused_ping is not None:
            raise Refused(refused_ping)
        ping = msgspec.json.decode(ping_raw, type=_PingFile)
    except FileNotFoundError:
        pass
    except Refused as exc:
        refused_ping = str(exc)
        ping = None
        ping_raw = b""
    except msgspec.DecodeError:
        ping = None  # half-written ping: the next pass sees the complete one
        ping_raw = b""
    digest = hashlib.sha256(raw + b"\0" + ping_raw).hexdigest()
    snap = OfflineSnapshot(offline_path, data.launch_id, digest, refused_ping=refused_ping)
    writer = offline_writer_id(data.launch_id, None if legacy_writer else launch_dir)

    def add(seq: int, at: dt.datetime, event: Event) -> None:
        snap.records.append(
            Record(v=RECORD_VERSION, writer=writer, seq=seq, launch_id=data.launch_id, at=at, event=event)
        )

    completed_on = as_utc(data.completed_on) if data.completed_on else None
    if data.started_on:
        started_on = as_utc(data.started_on)
        add(SEQ_STARTED, started_on, Started(started_on=started_on))
    if data.checkpoint is not None and data.started_on:
        task_n = int(data.checkpoint.get("_task_n", 0))
        # The file does not say when the checkpoint was taken; it was before completion.
        at = completed_on - dt.timedelta(microseconds=1) if completed_on else now
        add(SEQ_CHECKPOINT_BASE + task_n, at, Checkpoint(checkpoint=data.checkpoint))
    if ping is not None and data.started_on:
        ping_time = as_utc(ping.ping_time)
        micros = int(ping_time.timestamp() * 1_000_000)
        add(micros, ping_time, Ping(ping_time=ping_time))
    if data.fwaction is not None and data.state in ("COMPLETED", "FIZZLED") and completed_on:
        add(
            SEQ_COMPLETED,
            completed_on,
            Completed(state=data.state, action=data.fwaction, completed_on=completed_on),  # type: ignore[arg-type]
        )
        snap.finished = True
    return snap
