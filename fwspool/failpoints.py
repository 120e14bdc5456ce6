"""Named fault-injection points for crash tests of real processes.

``FWSPOOL_FAILPOINTS="push.before_mark=kill"`` makes a running ``fwspool push`` SIGKILL itself
right after the database acknowledged a batch and before the journal marks it pushed: a real
kill -9 at the one moment that matters most. Actions: ``kill`` (SIGKILL), ``exit`` (os._exit(3)),
``pause`` (touch ``<name>.paused`` in ``FWSPOOL_FAILPOINT_DIR`` and sleep until killed),
``enoent`` (raise ``FileNotFoundError``: a file operation NFS retried after its first try had
succeeded). ``name=action@P`` strikes with probability P only (``pool.take.after_rename=enoent@0.5``):
a chaos run strikes some of many calls, and counts the strikes: each appends a line to
``<name>.struck`` in ``FWSPOOL_FAILPOINT_DIR`` when that is set. Unset, a failpoint costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import random
import signal
import time


def _parse(spec: str) -> dict[str, str]:
    points = {}
    for item in spec.split(","):
        name, _, action = item.strip().partition("=")
        if name:
            points[name] = action or "kill"
    return points


_POINTS = _parse(os.environ.get("FWSPOOL_FAILPOINTS", ""))


def failpoint(name: str) -> None:
    action = _POINTS.get(name)
    if action is None:
        return
    action, _, chance = action.partition("@")
    if chance and random.random() >= float(chance):
        return
    where = os.environ.get("FWSPOOL_FAILPOINT_DIR")
    if where and action != "pause":
        with open(os.path.join(where, f"{name}.struck"), "a") as f:
            f.write(f"{os.getpid()}\n")
    if action == "enoent":
        raise FileNotFoundError(2, f"failpoint {name}: No such file or directory")
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "exit":
        os._exit(3)
    elif action == "pause":
        marker = os.path.join(os.environ.get("FWSPOOL_FAILPOINT_DIR", "."), f"{name}.paused")
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        while True:
            time.sleep(3600)
