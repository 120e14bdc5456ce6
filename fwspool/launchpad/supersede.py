"""When a launch's events no longer belong on the LaunchPad: the LaunchPad moved on.

Events are not applied when the LaunchPad moved on meanwhile (FireWorks issue #326): the
Firework was rerun (the launch is no longer one of its current launches; ``lpad defuse_fws`` and
``archive_wflows`` on a reserved Firework rerun it first), deleted or archived, or the offline run
was forgotten with ``lpad forget_offline``. Those events are *superseded*: marked so in the
journal, never applied.

PAUSED and DEFUSED are not among them: both are undone (``resume_fws``, ``reignite_wflows``), and
FireWorks' own offline path stores a completion that arrives meanwhile on its launch, while the
Firework's refresh leaves a held Firework as it is. fwspool does the same (:data:`HELD_FW_STATES`):
the launch takes its events, the Firework keeps its state, and FireWorks' resume or reignite
then refreshes it from that launch, exactly as after ``recover_offline``.
"""

from __future__ import annotations

from typing import Any

from fwspool.identity import same_dir
from fwspool.runs import LaunchEvents

__all__ = ["HELD_FW_STATES", "SUPERSEDING_FW_STATES", "same_launch", "superseded_reason"]

#: Firework states in which a launch's results no longer belong on the LaunchPad.
SUPERSEDING_FW_STATES = ("ARCHIVED",)
#: Firework states a user undoes: the launch takes its events, the Firework keeps its state.
HELD_FW_STATES = ("PAUSED", "DEFUSED")


def same_launch(launch: LaunchEvents, doc: dict[str, Any]) -> bool:
    """Whether the LaunchPad's launch of this id is the one the inbox announced (same directory)."""
    if not launch.announced_dirs or not doc.get("launch_dir"):
        return True
    return any(same_dir(d, doc["launch_dir"]) for d in launch.announced_dirs)


def superseded_reason(
    launch: dict[str, Any], fw: dict[str, Any] | None, offline_run: dict[str, Any] | None
) -> str | None:
    """Why a launch's events must not be applied any more, or None when they may be."""
    if fw is None:
        return f"Firework {launch.get('fw_id')} is no longer on the LaunchPad"
    if launch["launch_id"] not in (fw.get("launches") or []):
        return f"launch {launch['launch_id']} is no longer Firework {fw['fw_id']}'s current launch (rerun?)"
    if fw.get("state") in SUPERSEDING_FW_STATES:
        return f"Firework {fw['fw_id']} is {fw['state']} on the LaunchPad"
    if offline_run is not None and offline_run.get("deprecated"):
        return f"offline run of launch {launch['launch_id']} was forgotten on the LaunchPad (forget_offline)"
    return None
