"""One journal, one LaunchPad: the binding a journal records on its first push.

A journal's launch ids are one LaunchPad's (:mod:`fwspool.identity`), and only until that
LaunchPad is reset: ``lpad reset`` starts launch ids at 1 again. So on its first push a journal
records which LaunchPad it pushes to: the host and database (as messages show them, no
password), the launchpad file it was given, and the LaunchPad's *epoch*, a random id fwspool
keeps in the LaunchPad's ``fw_id_assigner`` document. ``lpad reset`` replaces that document
(FireWorks' ``_restart_ids``: ``delete_many`` then an upsert of ``{"_id": -1, next_fw_id,
next_launch_id}``), so the epoch goes with it; the document's ``_id`` cannot serve, as it is -1
before and after every reset. FireWorks itself only ``$inc``s the counters there, which keeps
the field.

Every later push compares: another LaunchPad (another epoch, or another host or database with
no epoch of ours), or the same one reset (its epoch gone or new), applies nothing and stops
with one line (:class:`WrongLaunchPad`, exit 78) that says to start a new journal. Any number of
journals may push to one LaunchPad: the first to find no epoch draws it, with a conditional
update, and the others read it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from fwspool.errors import EX_CONFIG, FwspoolError

#: The journal's ``meta`` key that holds its binding (JSON).
META_KEY = "launchpad"
#: The field of the LaunchPad's ``fw_id_assigner`` document that holds its epoch.
EPOCH_FIELD = "fwspool_epoch"


class WrongLaunchPad(FwspoolError):
    """A push to a LaunchPad that is not the journal's own (another one, or its own reset)."""

    exit_code = EX_CONFIG


@dataclass(frozen=True, slots=True)
class LaunchPadIdentity:
    """A LaunchPad as a push sees it."""

    #: Host and database, credentials redacted (``LaunchPadConfig.where()``).
    where: str
    #: Its epoch (:data:`EPOCH_FIELD`); None when it has none yet.
    epoch: str | None


@dataclass(frozen=True, slots=True)
class Binding:
    """The LaunchPad a journal pushes to, recorded on its first push."""

    where: str
    epoch: str
    #: The launchpad file the binding push was given (absolute), else None (``--uri``).
    launchpad_file: str | None
    bound_at: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Binding:
        data = json.loads(text)
        return cls(data["where"], data["epoch"], data.get("launchpad_file"), data["bound_at"])


def launchpad_file_of(source: str) -> str | None:
    """The absolute path of a launchpad file, from where the settings came from (a path, or
    ``--uri``, or FireWorks' default)."""
    return os.path.abspath(source) if os.path.isfile(source) else None


def refusal(binding: Binding, seen: LaunchPadIdentity, journal_path: str) -> str | None:
    """Why a push of the journal at ``journal_path``, bound as ``binding``, must not go to the
    LaunchPad ``seen``; None when it is the journal's own."""
    if seen.epoch == binding.epoch:
        return None
    fix = (
        f"start a new journal for it (--journal NEW.sqlite3, or move {journal_path} aside); "
        "this one keeps its events"
    )
    if seen.where != binding.where:
        return (
            f"journal {journal_path} belongs to LaunchPad {binding.where}, not {seen.where}: "
            f"nothing was pushed; {fix}"
        )
    return (
        f"LaunchPad {seen.where} was reset (lpad reset) since journal {journal_path} last pushed to it "
        f"({binding.bound_at} on): its launch ids now name other launches, so nothing was pushed; {fix}"
    )
