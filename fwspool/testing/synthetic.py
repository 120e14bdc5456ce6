"""Synthetic launches: what a compute node did for one launch, without running it, and the files
that history leaves, for the benchmarks and the chaos harness.

A :class:`LaunchHistory` is the one description: the start (host, ip, FWorker), the checkpoint
Rocket.run records before its first task, the heartbeats (a ping, or a checkpoint in its place),
and the ending (a completion and the exit), or none yet (a launch still running). Its renderings:

- :meth:`LaunchHistory.events`: ``(time, event)`` in the order ``fwspool rlaunch`` appends them;
- :func:`spool_bytes`: the framed records of one spool file, built in memory (fast: the ingest
  benchmarks write millions);
- :func:`write_spool`: the same through :class:`~fwspool.spool.SpoolWriter`, as ``fwspool
  rlaunch`` writes it;
- :func:`write_fireworks_offline`: what FireWorks' own offline rocket leaves for the same run
  (``FW_offline.json``, ``FW_ping.json``), for the twin comparisons against ``lpad recover_offline``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from fwspool.events import Checkpoint, Completed, Event, Exited, Ping, Record, Started
from fwspool.spool import SpoolWriter, encode_record

__all__ = [
    "INITIAL_CHECKPOINT",
    "LaunchHistory",
    "spool_bytes",
    "task_checkpoint",
    "write_fireworks_offline",
    "write_spool",
]

#: The checkpoint Rocket.run records before the first task (what ``update_checkpoint`` writes).
INITIAL_CHECKPOINT: dict[str, Any] = {
    "_task_n": 0,
    "_all_stored_data": {},
    "_all_update_spec": {},
    "_all_mod_spec": [],
}


def task_checkpoint(task: int, stored: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint Rocket.run records after task ``task``, with what the tasks stored so far."""
    return {"_task_n": task, "_all_stored_data": stored, "_all_update_spec": {}, "_all_mod_spec": []}


@dataclass(slots=True)
class LaunchHistory:
    """What happened on the compute node for one launch."""

    launch_id: int
    fw_id: int
    started_on: dt.datetime
    host: str | None = None
    ip: str | None = None
    fworker: dict[str, Any] | None = None
    #: When Rocket.run recorded :data:`INITIAL_CHECKPOINT`; None: not recorded.
    first_checkpoint: dt.datetime | None = None
    #: The heartbeats after it, in order: a ping at that time, or that checkpoint (pinging too).
    beats: list[tuple[dt.datetime, dict[str, Any] | None]] = field(default_factory=list)
    #: The completion (None: the launch is still running) and its exit, ``returncode`` 0.
    completed_on: dt.datetime | None = None
    state: Literal["COMPLETED", "FIZZLED"] = "COMPLETED"
    action: dict[str, Any] | None = None
    exited_on: dt.datetime | None = None

    @property
    def pings(self) -> list[dt.datetime]:
        """The times of the heartbeats."""
        return [at for at, _ in self.beats]

    def events(self) -> list[tuple[dt.datetime, Event]]:
        """``(time, event)``, as ``fwspool rlaunch`` appends them for this history."""
        out: list[tuple[dt.datetime, Event]] = [
            (
                self.started_on,
                Started(started_on=self.started_on, host=self.host, ip=self.ip, fworker=self.fworker),
            )
        ]
        if self.first_checkpoint is not None:
            out.append(
                (
                    self.first_checkpoint,
                    Checkpoint(checkpoint=INITIAL_CHECKPOINT, ping_time=self.first_checkpoint),
                )
            )
        for at, checkpoint in self.beats:
            out.append(
                (
                    at,
                    Ping(ping_time=at)
                    if checkpoint is None
                    else Checkpoint(checkpoint=checkpoint, ping_time=at),
                )
            )
        if self.completed_on is not None:
            completed = Completed(state=self.state, action=self.action or {}, completed_on=self.completed_on)
            out.append((self.completed_on, completed))
            out.append((self.exited_on or self.completed_on, Exited(returncode=0)))
        return out


def spool_bytes(history: LaunchHistory, writer: str) -> bytes:
    """The bytes of the spool file of ``writer`` holding ``history``: one framed record per event,
    numbered from 1, each stamped with its event's time and the Firework id."""
    return b"".join(
        encode_record(
            Record(
                v=1,
                writer=writer,
                seq=seq,
                launch_id=history.launch_id,
                at=at,
                event=event,
                fw_id=history.fw_id,
            )
        )
        for seq, (at, event) in enumerate(history.events(), start=1)
    )


def write_spool(launch_dir: str, history: LaunchHistory) -> None:
    """The spool file `fwspool rlaunch` leaves in ``launch_dir`` for ``history`` (SpoolWriter, a
    writer id of its own, each record stamped with its event's time). Nothing is fsynced: what
    a real job pays for durability is not what the benchmarks measure. Its ``started`` names
    the directory, as ``fwspool rlaunch``'s does (:mod:`fwspool.identity`)."""
    now = [history.started_on]
    with SpoolWriter(launch_dir, history.launch_id, history.fw_id, clock=lambda: now[0]) as w:
        for at, event in history.events():
            if isinstance(event, Started):
                event = msgspec.structs.replace(event, launch_dir=os.path.abspath(launch_dir))
            now[0] = at
            w.append(event, durable=False)


def _fw_iso(value: dt.datetime) -> str:
    """As rocket.py writes times: ``datetime.now(timezone.utc).isoformat()``."""
    return value.astimezone(dt.UTC).isoformat()


def write_fireworks_offline(launch_dir: str, history: LaunchHistory) -> None:
    """The files FireWorks' offline rocket leaves in ``launch_dir`` (rocket.py, launchpad=None)
    for ``history``: ``FW_offline.json`` (from the ``{"launch_id": N}`` that reserving wrote) and
    ``FW_ping.json`` with the last heartbeat."""
    path = os.path.join(launch_dir, "FW_offline.json")
    with open(path) as f:
        d = json.loads(f.read())
    if d.get("launch_id") != history.launch_id:
        raise RuntimeError(f"{path} holds launch {d.get('launch_id')}, expected {history.launch_id}")
    d["started_on"] = _fw_iso(history.started_on)
    d["checkpoint"] = INITIAL_CHECKPOINT
    if history.completed_on is not None:
        d["fwaction"] = history.action
        d["state"] = history.state
        d["completed_on"] = _fw_iso(history.completed_on)
    with open(path, "w") as f:
        f.write(json.dumps(d, ensure_ascii=False))
    if history.beats:
        with open(os.path.join(launch_dir, "FW_ping.json"), "w") as f:
            f.write(f'{{"ping_time": "{_fw_iso(history.pings[-1])}"}}')
