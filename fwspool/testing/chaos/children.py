"""The harness's own child processes, started as ``python -m fwspool.testing.chaos.children``:

- ``_writer PLAN.json``: writer processes appending a plan's records to spool files, as the
  compute side of each launch would (torn into pieces, for kills mid-record, with ``"tear"``;
  a stream with an ``"inbox"`` first leaves its launch's pointer there, as ``fwspool rlaunch`` does);
- ``_killer N WHEN TARGET ARGS...``: ``fwspool ARGS`` that kills itself (or the database) at its
  N-th database write command;
- ``_fake_fstype FSTYPE ARGS...``: ``fwspool ARGS`` as if every path were on a FSTYPE filesystem;
- ``_watched RECORD ARGS...``: ``fwspool ARGS``, every database command it sends (and how each
  ended) written to RECORD as JSON when it exits.

It imports only what these need: every writer process starts fast.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import signal
import sys
import time
import zlib
from collections.abc import Sequence
from typing import Any

import msgspec

from fwspool.events import Event
from fwspool.inbox import write_pointer
from fwspool.spool import OsSpoolFile, SpoolWriter
from fwspool.testing.chaos.workload import T0

WRITE_COMMANDS = frozenset({"insert", "update", "delete", "findAndModify"})
#: The first word of each child's command line (also accepted by ``tools/chaos.py``).
CHILD_COMMANDS = ("_writer", "_killer", "_fake_fstype", "_watched")


class TearingFile(OsSpoolFile):
    """A spool file whose records reach the disk in pieces, a few milliseconds apart: a writer
    killed now leaves a torn record, as a short write or a dying NFS client does."""

    def __init__(self, path: str, mode: int = 0o600) -> None:
        super().__init__(path, mode)
        self._rng = random.Random(zlib.crc32(path.encode()))

    def write(self, data: bytes) -> None:
        cuts = sorted(self._rng.sample(range(1, len(data)), min(3, len(data) - 1)))
        start_ = 0
        for cut in [*cuts, len(data)]:
            super().write(data[start_:cut])
            start_ = cut
            time.sleep(self._rng.uniform(0.0005, 0.004))


def writer_main(plan_path: str) -> int:
    """Append every stream of the plan, interleaved at random, one SpoolWriter per stream."""
    with open(plan_path) as f:
        plan = json.load(f)
    rng = random.Random(plan["seed"])
    lo, hi = plan.get("pace", (0.0, 0.0))
    streams = plan["streams"]
    writers: dict[int, SpoolWriter] = {}
    pos = dict.fromkeys(range(len(streams)), 0)
    ready = [i for i, s in enumerate(streams) if s.get("after") is None]
    now: list[dt.datetime] = [T0]
    opener = TearingFile if plan.get("tear") else OsSpoolFile
    decoder = msgspec.json.Decoder(Event)
    try:
        while True:
            candidates = [i for i in ready if pos[i] < len(streams[i]["records"])]
            if not candidates:
                break
            i = rng.choice(candidates)
            s = streams[i]
            if i not in writers:
                if s.get("inbox"):
                    # What `fwspool rlaunch` does before its first record: announce the launch.
                    write_pointer(s["inbox"], s["launch_id"], s.get("fw_id"), s["dir"])
                writers[i] = SpoolWriter(
                    s["dir"],
                    s["launch_id"],
                    s.get("fw_id"),
                    writer_id=s["writer"],
                    clock=lambda: now[0],
                    opener=opener,
                )
            at, event_json, durable = s["records"][pos[i]]
            now[0] = dt.datetime.fromisoformat(at)
            writers[i].append(decoder.decode(event_json), durable=durable)
            pos[i] += 1
            if pos[i] == len(s["records"]):
                writers.pop(i).close()
                ready.extend(j for j, t in enumerate(streams) if t.get("after") == i)
            if hi > 0:
                time.sleep(rng.uniform(lo, hi))
    finally:
        for w in writers.values():
            w.close()
    return 0


def killer_main(after_writes: int, when: str, target: str, args: list[str]) -> int:
    """Run `fwspool ARGS` in this process; strike at its ``after_writes``-th write command."""
    from pymongo import monitoring

    def strike() -> None:
        print("chaos: struck", file=sys.stderr, flush=True)
        if target == "self":
            os.kill(os.getpid(), signal.SIGKILL)
        how, _, pid = target.partition(":")
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL if how == "kill" else signal.SIGTERM)

    class Killer(monitoring.CommandListener):
        count = 0
        struck = False

        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if event.command_name in WRITE_COMMANDS:
                self.count += 1
                if when == "started" and self.count == after_writes and not self.struck:
                    self.struck = True
                    strike()

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            if (
                when == "succeeded"
                and event.command_name in WRITE_COMMANDS
                and self.count == after_writes
                and not self.struck
            ):
                self.struck = True
                strike()

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    killer = Killer()
    monitoring.register(killer)
    from fwspool.cli import main

    try:
        main(args=args, prog_name="fwspool")
    finally:
        if when == "count":
            print(f"chaos: write commands {killer.count}", file=sys.stderr, flush=True)
    return 0


def watched_main(record: str, args: list[str]) -> int:
    """Run `fwspool ARGS` in this process, recording every database command it sends.

    RECORD gets a JSON list, in the order the commands were sent, of ``[name, n, outcome]``: ``n``
    counts the commands of that name before it (what a ``failCommand`` ``skip`` counts), the
    outcome is "ok", "failed: <error>" or "writeConcernError: <error>" (acknowledged, but not
    with the write concern asked for).
    """
    from pymongo import monitoring

    sent: list[list[Any]] = []
    by_request: dict[tuple[int, Any], int] = {}
    counts: dict[str, int] = {}

    class Watcher(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            n = counts.get(event.command_name, 0)
            counts[event.command_name] = n + 1
            by_request[(event.request_id, event.connection_id)] = len(sent)
            sent.append([event.command_name, n, "sent"])

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            k = by_request.pop((event.request_id, event.connection_id), None)
            if k is not None:
                wce = event.reply.get("writeConcernError")
                sent[k][2] = f"writeConcernError: {wce}" if wce else "ok"

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            k = by_request.pop((event.request_id, event.connection_id), None)
            if k is not None:
                sent[k][2] = f"failed: {str(event.failure)[:200]}"

    monitoring.register(Watcher())
    from fwspool.cli import main

    try:
        main(args=args, prog_name="fwspool")
    finally:
        with open(record, "w") as f:
            json.dump(sent, f)
    return 0


def fake_fstype_main(fstype: str, args: list[str]) -> int:
    """Run `fwspool ARGS` as if every path were on a ``fstype`` filesystem (no NFS server here)."""
    import fwspool.journal.database

    fwspool.journal.database.filesystem_type = lambda path: fstype
    from fwspool.cli import main

    main(args=args, prog_name="fwspool")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_writer":
        return writer_main(argv[1])
    if argv and argv[0] == "_killer":
        return killer_main(int(argv[1]), argv[2], argv[3], argv[4:])
    if argv and argv[0] == "_fake_fstype":
        return fake_fstype_main(argv[1], argv[2:])
    if argv and argv[0] == "_watched":
        return watched_main(argv[1], argv[2:])
    print(f"chaos children: unknown child {argv[:1]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
