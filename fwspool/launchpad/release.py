"""Handing back a reservation that will never run (a ``released`` event).

The batch job ended without starting the launch (cancelled, failed submission, or a packed job
that ran out of time before reaching it). FireWorks' own answer to a failed submission is
``cancel_reservation`` (the Firework READY again, for the next job) and ``forget_offline``.
"""

from __future__ import annotations

from typing import Any

from fwspool.launchpad.vocabulary import ApplyResult, Routed

__all__ = ["release"]


def release(lp: Any, routed: Routed, result: ApplyResult) -> None:
    """Hand the reservation back if the LaunchPad still has it RESERVED; superseded otherwise."""
    launch, doc = routed.launch, routed.doc
    lid = launch.launch_id
    if doc.get("state") != "RESERVED":
        reason = f"launch {lid} is {doc.get('state')} on the LaunchPad, not RESERVED: it is not released"
        result.superseded(launch, reason, deprecate=False)
        return
    lp.cancel_reservation(lid)
    lp.forget_offline(lid, launch_mode=True)
    result.handed_back(launch)
