"""Journal events → LaunchPad documents, the way FireWorks itself would write them.

The pusher (:mod:`fwspool.push`) hands batches of launches' pending events to the uplink
(:mod:`fwspool.uplink`), which applies them here through FireWorks' own code. One module per
step of the decision, in the order :meth:`LaunchPadApplier.apply` takes them:

- :mod:`~fwspool.launchpad.supersede` — whether the LaunchPad moved on, so that a launch's events
  no longer belong there (a rerun, a deleted Firework, a forgotten offline run, ...);
- :mod:`~fwspool.launchpad.running` — the running phase (started, pings, checkpoints) in bulk, as
  ``checkout_fw`` / ``ping_launch`` write it;
- :mod:`~fwspool.launchpad.completion` — completions in bulk: FireWorks' ``Workflow.refresh`` run
  over prefetched documents, planned as a :class:`~fwspool.launchpad.writeset.WriteSet`, then
  written under :mod:`~fwspool.launchpad.locks` (the workflow lock as a context manager);
- :mod:`~fwspool.launchpad.one_by_one` — what bulk completion does not take, through FireWorks'
  ``complete_launch``;
- :mod:`~fwspool.launchpad.release` — a reservation handed back (``released``).

What they share (the result of applying a batch, each event's disposition, the replay verdict,
the lock token, a routed launch) is :mod:`~fwspool.launchpad.vocabulary`, a leaf they all import;
what a launch's events say is read once, by :func:`fwspool.runs.read_launch`, before routing.

Every FireWorks call that is not public API goes through
:mod:`~fwspool.launchpad.fireworks_internals`, so a FireWorks upgrade touches one file.

Every application is idempotent, which is what makes push exactly-once without transactions:
the journal marks an event pushed only after the database acknowledged it, and if a crash falls
between the two, applying the event again changes nothing (a final launch is not completed
twice; a Firework whose launch is final but whose workflow was not refreshed is refreshed, once,
by FireWorks' own refresh, which applies an FWAction only when the Firework's state changes).
A bulk completion killed halfway is finished from its write set, saved in the journal first.
"""

from fwspool.launchpad.apply import LaunchPadApplier
from fwspool.launchpad.locks import LOCK_FIELD
from fwspool.launchpad.vocabulary import ApplyResult, Disposition, LockToken, Verdict
from fwspool.launchpad.writeset import WriteSet

__all__ = ["LOCK_FIELD", "ApplyResult", "Disposition", "LaunchPadApplier", "LockToken", "Verdict", "WriteSet"]
