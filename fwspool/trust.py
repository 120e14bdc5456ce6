"""What ingest believes: files of the right owner, reached without leaving their tree, and JSON of
bounded depth.

On a shared filesystem another user may be able to write into a launch directory. An event is
only as trustworthy as the file it comes from, so ingest accepts a spool file or a FireWorks
offline file only when it is a regular file owned by the user running fwspool (or, when one is
configured, by a trusted group), not writable by every user, and reached without a symbolic
link: never at its last component (``O_NOFOLLOW``), and, for a file found under a ``--root``,
its real path (the opened file's, from ``/proc/self/fd``) stays inside that root. What is refused
is quarantined with the reason, and its bytes are never read.

JSON depth: msgspec raises ``RecursionError`` (not a decode error) past about 1,000 levels, and
MongoDB refuses to store documents nested deeper than 180 levels (its ``maxBSONDepth``, 200, less
the 20 it keeps for itself), so a deeper record could never be pushed. The depth is counted on the
event (or the FireWorks offline file), whose completion nests exactly as deep as the launch
document FireWorks stores it in; the spool record around it does not count. :func:`too_deep` bounds it cheaply: a payload with no more opening brackets than the
limit cannot be too deep, and only the rare payload with many brackets is scanned (in C).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass, field

#: Deepest JSON nesting accepted in an event or a FireWorks offline file: what MongoDB stores.
DEFAULT_MAX_DEPTH = 180

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
#: Every bracket as a square one: the nesting depth of well-formed JSON does not change.
_SQUARE = bytes.maketrans(b"{}", b"[]")


def _deeper(brackets: bytes, limit: int) -> bool:
    """Whether a string of ``[`` and ``]`` nests deeper than ``limit``.

    Each round removes every innermost pair ("[]", adjacent) and nothing else, so the depth drops
    by exactly one: C-speed rounds, and a typical payload (many shallow values) is empty after a
    few. Unmatched brackets (a file caught half-written) never count as depth.
    """
    if b"[" * (limit + 1) in brackets:
        return True  # the usual shape of a deliberately deep text: found in one C call
    for _ in range(limit):
        reduced = brackets.replace(b"[]", b"")
        if len(reduced) == len(brackets):
            return False
        brackets = reduced
    return b"[]" in brackets


def too_deep(data: bytes, limit: int = DEFAULT_MAX_DEPTH) -> bool:
    """Whether the JSON text ``data`` nests arrays/objects deeper than ``limit``.

    Brackets inside strings do not count. Costs two ``bytes.count`` calls unless the text has
    more opening brackets than ``limit``; then a few C-speed passes over it.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    if b'"' in data:
        # Out with the strings: escaped backslashes, then escaped quotes, then every other run
        # between quotes (JSON has no backslash outside a string).
        data = b"".join(data.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')[::2])
    return _deeper(data.translate(_SQUARE, _NOT_BRACKETS), limit)


def depth_problem(data: bytes, limit: int = DEFAULT_MAX_DEPTH) -> str | None:
    """A one-line reason when ``data`` is nested too deep, else None."""
    if too_deep(data, limit):
        return f"JSON nested deeper than {limit} levels"
    return None


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return f"{grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}"


def group_id(name: str) -> int:
    """A group's id from its name or number; ValueError if there is no such group."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        pass
    if name.isdigit():
        return int(name)
    raise ValueError(f"no group named {name!r}")


class Refused(Exception):
    """A file ingest must not believe; the message says why."""


@dataclass
class TrustPolicy:
    """Whose files ingest believes, and under which trees their real paths must stay."""

    uid: int = field(default_factory=os.geteuid)
    #: A group whose members' files are believed too (``--trust-group``).
    gid: int | None = None
    #: ``--root`` trees (absolute); a file found under one must not resolve outside it.
    roots: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._real_roots = [(r.rstrip(os.sep) + os.sep, os.path.realpath(r)) for r in self.roots]

    def refusal(self, path: str, fd: int, st: os.stat_result) -> str | None:
        """Why the file opened as ``fd`` (``st`` its fstat) at ``path`` must not be believed, or None."""
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if st.st_uid != self.uid and (self.gid is None or st.st_gid != self.gid):
            trusted = _user(self.uid) + (f" nor group {_group(self.gid)}" if self.gid is not None else "")
            return f"owned by {_user(st.st_uid)}, group {_group(st.st_gid)}; trusted: {trusted}"
        if st.st_mode & stat.S_IWOTH:
            return f"writable by every user (mode {stat.S_IMODE(st.st_mode):04o})"
        for lexical, real in self._real_roots:
            if path.startswith(lexical):
                opened = _opened_path(fd) or os.path.realpath(path)
                if not (opened + os.sep).startswith(real.rstrip(os.sep) + os.sep):
                    return f"reached through a symbolic link leaving --root {lexical.rstrip(os.sep)} (it is {opened})"
                break
        return None


def _opened_path(fd: int) -> str | None:
    """The real path of an open file (Linux: ``/proc/self/fd``); None where unavailable."""
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return path if path.startswith(os.sep) else None


SYMLINK_REASON = "a symbolic link (fwspool never follows one to a spool or FireWorks offline file)"
