"""The inbox: how the login node learns of a launch while the database is down.

Ingest finds launch directories from the LaunchPad's registry of offline runs (pulled at each
push) and from ``--root`` walks. A job reserved just before an outage is in neither (the
registry was pulled before it existed, and walking a parallel filesystem tree of 100,000
directories costs minutes of metadata operations on every pass). So ``fwspool rlaunch`` drops a
*pointer* — a few bytes naming its launch directory — into an inbox directory on the shared
filesystem, and ingest lists the inbox: its cost grows with the launches still open, not with
the size of any tree.

The inbox is ``$FWSPOOL_INBOX``, by default ``~/.fwspool/inbox``: on HPC systems the home
directory is the filesystem that compute and login nodes share. A pointer is
``launch-<launch_id>.json``, written under a temporary name and renamed (atomic on one
filesystem), so ingest never sees half of one; a requeued job rewrites it with the same content.
Ingest believes a pointer only as it believes a spool file (:mod:`fwspool.trust`): yours, not
world-writable, not a symbolic link. It removes a pointer once its launch is final in the journal.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from fwspool.trust import SYMLINK_REASON

POINTER_RE = re.compile(r"^launch-(-?[0-9]{1,19})\.json$")
#: A pointer is a few hundred bytes; anything much larger is not one.
MAX_POINTER = 64 * 1024


class Pointer(msgspec.Struct, forbid_unknown_fields=False):
    """The content of one inbox file (``schema/SPOOL.md``, "The inbox")."""

    v: int
    launch_id: int
    launch_dir: str
    fw_id: int | None = None


@dataclass(slots=True)
class InboxEntry:
    path: str
    #: The pointer, or None when it was not believed or could not be read (``problem`` says why).
    pointer: Pointer | None
    problem: str | None = None


def default_inbox() -> str:
    """``$FWSPOOL_INBOX``, else ``~/.fwspool/inbox``."""
    return os.environ.get("FWSPOOL_INBOX") or os.path.join(os.path.expanduser("~"), ".fwspool", "inbox")


def pointer_path(inbox: str, launch_id: int) -> str:
    return os.path.join(inbox, f"launch-{launch_id}.json")


def write_pointer(
    inbox: str, launch_id: int, fw_id: int | None, launch_dir: str, *, mode: int = 0o600
) -> str:
    """Announce a launch directory to the login node; returns the pointer's path.

    Raises OSError when the inbox cannot be written (the caller reports it and goes on: the
    registry and ``--root`` still find the launch once the database is back).
    """
    os.makedirs(inbox, mode=0o700, exist_ok=True)
    final = pointer_path(inbox, launch_id)
    data = msgspec.json.encode(Pointer(v=1, launch_id=launch_id, launch_dir=launch_dir, fw_id=fw_id))
    tmp = os.path.join(inbox, f".launch-{launch_id}.json.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, final)
    return final


def list_inbox(inbox: str) -> list[tuple[int, str]]:
    """The pointers in the inbox as (launch id, path), by launch id; a missing inbox is empty."""
    try:
        names = os.listdir(inbox)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        m = POINTER_RE.match(name)
        if m:
            found.append((int(m.group(1)), os.path.join(inbox, name)))
    return sorted(found)


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
    """Forget a pointer whose launch is final in the journal (gone already is fine)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
