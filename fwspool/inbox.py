"""The inbox: how the login node learns of a launch while the database is down.

Ingest finds launch directories from the LaunchPad's registry of offline runs (pulled at each
push) and from ``--root`` walks. A job reserved just before an outage is in neither (the
registry was pulled before it existed, and walking a parallel filesystem tree of 100,000
directories costs minutes of metadata operations on every pass). So ``fwspool rlaunch`` drops a
*pointer* — a few bytes naming its launch directory — into an inbox directory on the shared
filesystem, and ingest lists the inbox: its cost grows with the launches still open, not with
the size of any tree.

The inbox is ``$FWSPOOL_INBOX``, by default ``~/.fwspool/inbox``: on HPC systems the home
directory is the filesystem that compute and login nodes share. It is shared by everything the
user runs: several LaunchPads, journals deleted long ago, campaigns before an ``lpad reset``. So
a pointer is named for its launch id *and* its directory (``launch-<launch id>-<dir tag>.json``,
:func:`fwspool.identity.dir_tag`): two launches never overwrite each other's. It is written under
a temporary name and renamed (atomic on one filesystem), so ingest never sees half of one; a
requeued job rewrites it with the same content. Ingest believes a pointer only as it believes a
spool file (:mod:`fwspool.trust`): yours, not world-writable, not a symbolic link.

A pointer is an announcement; the data is in the directory. Which journal may remove one:

- the journal whose launch it is (id and directory agree: :mod:`fwspool.identity`), once the
  launch is final or forgotten there;
- any journal, when the pointer's directory is gone, or when the launch's own files say it has
  been over (completed, exited, released) for longer than the retention horizon
  (:func:`over_since`): no journal can still need it.

Any other pointer stays, for the journal whose launch it is; the journal that is not its owner
sets it aside with one line, once. Pointers named ``launch-<launch id>.json`` (schema/SPOOL.md,
inbox version 1) are renamed to the new form by the first journal that reads them.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from fwspool.events import RawRecord
from fwspool.identity import dir_tag
from fwspool.spool import SPOOL_NAME_RE, scan
from fwspool.trust import SYMLINK_REASON

#: ``launch-<launch id>-<dir tag>.json``; version 1 inboxes named pointers ``launch-<launch id>.json``.
POINTER_RE = re.compile(r"^launch-(-?[0-9]{1,19})(?:-([0-9a-f]{16}))?\.json$")
#: A pointer is a few hundred bytes; anything much larger is not one.
MAX_POINTER = 64 * 1024
#: The pointer format this fwspool writes (schema/SPOOL.md, "The inbox").
POINTER_VERSION = 2
#: Events that end a launch's run, as any journal can read them in its spool files.
_ENDINGS = frozenset({"completed", "exited", "released"})
#: Spool files larger than this are not read to decide whether a stray pointer may go.
_MAX_SCAN = 64 * 1024 * 1024


class Pointer(msgspec.Struct, forbid_unknown_fields=False):
    """The content of one inbox file (``schema/SPOOL.md``, "The inbox")."""

    v: int
    launch_id: int
    launch_dir: str
    fw_id: int | None = None


@dataclass(frozen=True, slots=True)
class Listed:
    """One pointer file as its name shows it."""

    launch_id: int
    #: Its directory's tag; None for a version 1 name (``launch-<launch id>.json``).
    tag: str | None
    path: str


@dataclass(slots=True)
class InboxEntry:
    path: str
    #: The pointer, or None when it was not believed or could not be read (``problem`` says why).
    pointer: Pointer | None
    problem: str | None = None


#: The inbox when ``$FWSPOOL_INBOX`` names none (``~``: the home of whoever reads it).
DEFAULT_INBOX = "~/.fwspool/inbox"


def default_inbox() -> str:
    """``$FWSPOOL_INBOX``, else :data:`DEFAULT_INBOX`."""
    return os.environ.get("FWSPOOL_INBOX") or os.path.expanduser(DEFAULT_INBOX)


def pointer_path(inbox: str, launch_id: int, launch_dir: str) -> str:
    return os.path.join(inbox, f"launch-{launch_id}-{dir_tag(launch_dir)}.json")


def write_pointer(
    inbox: str, launch_id: int, fw_id: int | None, launch_dir: str, *, mode: int = 0o600
) -> str:
    """Announce a launch directory to the login node; returns the pointer's path.

    Raises OSError when the inbox cannot be written (the caller reports it and goes on: the
    registry and ``--root`` still find the launch once the database is back).
    """
    os.makedirs(inbox, mode=0o700, exist_ok=True)
    final = pointer_path(inbox, launch_id, launch_dir)
    data = msgspec.json.encode(
        Pointer(v=POINTER_VERSION, launch_id=launch_id, launch_dir=launch_dir, fw_id=fw_id)
    )
    tmp = os.path.join(inbox, f".{os.path.basename(final)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, final)
    return final


def list_inbox(inbox: str) -> list[Listed]:
    """The pointers in the inbox, by launch id and path; a missing inbox is empty."""
    try:
        names = os.listdir(inbox)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        m = POINTER_RE.match(name)
        if m:
            found.append(Listed(int(m.group(1)), m.group(2), os.path.join(inbox, name)))
    return sorted(found, key=lambda x: (x.launch_id, x.path))


def read_pointer(path: str, refusal: Callable[[str, int, os.stat_result], str | None]) -> InboxEntry:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return InboxEntry(path, None, None)  # removed meanwhile (another ingest)
    except OSError as exc:
        reason = SYMLINK_REASON if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
        return InboxEntry(path, None, f"inbox pointer {path} not read: {reason}")
    try:
        refused = refusal(path, fd, os.fstat(fd))
        if refused is not None:
            return InboxEntry(path, None, f"inbox pointer {path} refused: {refused}")
        data = os.read(fd, MAX_POINTER + 1)
    except OSError as exc:
        return InboxEntry(path, None, f"inbox pointer {path} not read: {exc.strerror or exc}")
    finally:
        os.close(fd)
    try:
        if len(data) > MAX_POINTER:
            raise ValueError("too large")
        pointer = msgspec.json.decode(data, type=Pointer)
        if not os.path.isabs(pointer.launch_dir):
            raise ValueError("launch_dir is not an absolute path")
    except (msgspec.DecodeError, ValueError) as exc:
        return InboxEntry(path, None, f"inbox pointer {path} is not readable: {exc}")
    return InboxEntry(path, pointer)


def remove_pointer(path: str) -> None:
    """Remove a pointer no journal needs any more (gone already is fine)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def rename_version_1(entry: InboxEntry, inbox: str, mode: int = 0o600) -> InboxEntry:
    """Give a version 1 pointer (``launch-<launch id>.json``) its version 2 name, keeping what it
    says: written anew under the new name first, then the old name removed, so that a journal
    killed in between leaves both, never neither. Two journals doing it at once write the same
    bytes."""
    p = entry.pointer
    assert p is not None
    new = write_pointer(inbox, p.launch_id, p.fw_id, p.launch_dir, mode=mode)
    remove_pointer(entry.path)
    return InboxEntry(new, p)


def over_since(launch_dir: str, launch_id: int) -> dt.datetime | None:
    """When the launch's own spool files say its last run ended (completed, exited, or released
    by its packed job, with no run started after it); None while it may still run, or when they
    cannot tell. Raises FileNotFoundError when the directory is gone.

    What any journal can read, whichever LaunchPad the launch is of: it decides whether a
    pointer that is not this journal's may be removed (:mod:`fwspool.inbox`).
    """
    ended: dt.datetime | None = None
    started: dt.datetime | None = None
    for name in os.listdir(launch_dir):
        if not SPOOL_NAME_RE.match(name):
            continue
        try:
            with open(os.path.join(launch_dir, name), "rb") as f:
                data = f.read(_MAX_SCAN + 1)
        except OSError:
            return None  # unreadable: nothing can be said
        if len(data) > _MAX_SCAN:
            return None
        for _offset, _length, payload in scan(data, True).frames:
            try:
                rec = _raw.decode(payload)
                kind = _kind.decode(rec.event).type
            except msgspec.DecodeError:
                continue
            if rec.launch_id != launch_id:
                continue
            if kind == "started":
                started = max(started or rec.at, rec.at)
            elif kind in _ENDINGS:
                ended = max(ended or rec.at, rec.at)
    if ended is None or (started is not None and started > ended):
        return None
    return ended


class _Kind(msgspec.Struct, forbid_unknown_fields=False):
    type: str


_raw = msgspec.json.Decoder(RawRecord)
_kind = msgspec.json.Decoder(_Kind)
