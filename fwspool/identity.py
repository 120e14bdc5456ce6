"""Which launch a file belongs to: a launch is its LaunchPad, its launch id and its directory.

Launch ids are unique only within one LaunchPad, and only until ``lpad reset`` starts them again
at 1. Two LaunchPads sharing an inbox (the default ``~/.fwspool/inbox`` is per user, not per
LaunchPad), a pointer left by a deleted journal, or a campaign before a reset all leave files
that carry a launch id this LaunchPad also uses. Nothing may key on the id alone:

- **A journal is bound to one LaunchPad** (:mod:`fwspool.binding`): its launch ids are that
  LaunchPad's.
- **Within a journal, a launch is its id and its directory.** A spool file, a FireWorks offline
  file or an inbox pointer is this launch's only when its directory *agrees* with the launch's
  (:func:`agrees`): the same directory, a directory the launch recorded moving to
  (``launch_dir_changed``), or a run that said it started there. A file whose writer id already
  has events of the launch is the same run's file, moved, and agrees too.
- **The LaunchPad decides.** Until a push has seen the LaunchPad's launch of an id, the journal
  holds what the first directory claimed (unconfirmed). The LaunchPad's ``launch_dir`` then
  confirms it, or moves the launch to the right directory and sets aside what came from the
  wrong one (:meth:`fwspool.journal.Outbox.settle_identities`).
- **What disagrees is set aside, never merged**: its events are kept, marked ``stray``, and never
  applied; a stray file is not read again; a stray pointer stays for the journal whose launch it
  is, until its directory is gone or its launch has been over for longer than the retention
  horizon (:mod:`fwspool.inbox`).

Everything here is pure: paths in, answers out.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass


def normal_dir(path: str) -> str:
    """A directory as the journal compares it: absolute, normalised, no trailing slash."""
    return os.path.normpath(os.path.abspath(path))


def same_dir(a: str | None, b: str | None) -> bool:
    """Whether two directory names name one directory: equal once normalised, else equal once
    links are resolved (a home reached through a symbolic link on one node and not the other).
    The resolving costs metadata calls, so it is only tried when the names differ."""
    if not a or not b:
        return False
    if normal_dir(a) == normal_dir(b):
        return True
    return os.path.realpath(a) == os.path.realpath(b)


def dir_tag(launch_dir: str) -> str:
    """16 hex digits naming a directory (part of an inbox pointer's name)."""
    return hashlib.sha256(normal_dir(launch_dir).encode("utf-8", "surrogateescape")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class LaunchHome:
    """Where the journal holds that a launch of its LaunchPad runs."""

    launch_id: int
    #: The directory (None: not known yet: anything may claim it).
    launch_dir: str | None
    #: Directories the launch recorded moving to (``launch_dir_changed`` events).
    moved_to: tuple[str, ...] = ()
    #: Whether the LaunchPad itself said so (a registry pull or a push); else the first file's claim.
    confirmed: bool = False

    def dirs(self) -> tuple[str, ...]:
        return ((self.launch_dir,) if self.launch_dir else ()) + self.moved_to


def agrees(
    home: LaunchHome, directory: str, *, claimed_dirs: Iterable[str] = (), same_run: bool = False
) -> bool:
    """Whether a file found in ``directory`` belongs to the launch at ``home``.

    ``claimed_dirs``: the directories the file itself says its run started in or moved to (its
    ``started`` and ``launch_dir_changed`` events), so that a directory moved before anything of
    it was ingested is still recognised. ``same_run``: the file's writer id already has events of
    this launch (the same run's file, seen again under another name).
    """
    if home.launch_dir is None or same_run:
        return True
    candidates = (directory, *claimed_dirs)
    return any(same_dir(mine, theirs) for mine in home.dirs() for theirs in candidates)
