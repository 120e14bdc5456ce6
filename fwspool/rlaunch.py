"""``fwspool rlaunch``: run a reserved Firework on a compute node, recording to the spool.

The directory was prepared on the login node by ``qlaunch -r`` (``FW.json`` and
``FW_offline.json`` with the launch id). FireWorks' own :class:`~fireworks.core.rocket.Rocket`
runs the Firework in its *online* code path, given :class:`SpoolLaunchPad` — a stand-in for the
LaunchPad that implements the few methods the Rocket calls by appending spool events. So tasks,
checkpoints, FWActions, ``_pass_job_info``, ``FWAction.json`` files and pings behave exactly as
in FireWorks, no database connection is ever opened, and FireWorks' offline branch (which
rewrites files in place, and crashes with current monty) is never used.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from fwspool.errors import DataError, InputError
from fwspool.events import (
    Checkpoint,
    Completed,
    Exited,
    LaunchDirChanged,
    Ping,
    Started,
    as_utc,
    utcnow,
)
from fwspool.spool import SpoolWriter


def jsonable(value: Any) -> Any:
    """FireWorks' own serialisation (``recursive_dict``): what it would store in MongoDB."""
    from fireworks.utilities.fw_serializers import recursive_dict

    return recursive_dict(value)


def read_launch_id(launch_dir: str) -> int:
    """The launch id that ``qlaunch -r`` wrote to ``FW_offline.json`` (or ``.json.gz``)."""
    from fwspool.offline import find_offline_file

    path = find_offline_file(launch_dir)
    if path is None:
        raise InputError(f"no FW_offline.json in {launch_dir}: was it prepared by `qlaunch -r`?")
    try:
        if path.endswith(".gz"):
            import gzip

            with gzip.open(path, "rt", encoding="utf-8") as f:
                data = json.load(f)
        else:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        return int(data["launch_id"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} has no readable launch_id: {exc}") from exc


class SpoolLaunchPad:
    """What :class:`~fireworks.core.rocket.Rocket` needs of a LaunchPad, recorded to a spool.

    ``checkout_fw`` hands back the reserved Firework from ``FW.json`` and records ``started``;
    ``ping_launch`` records pings and checkpoints; ``change_launch_dir`` and ``complete_launch``
    record their events. Nothing here reads or writes a database.
    """

    def __init__(self, writer: SpoolWriter, firework: Any, launch_id: int, *, host: str, ip: str) -> None:
        self.writer = writer
        self.firework = firework
        self.launch_id = launch_id
        self.host = host
        self.ip = ip
        self.logdir = None
        self.completed_state: str | None = None

    def get_logdir(self) -> None:
        return None

    def checkout_fw(self, fworker: Any, launch_dir: str, fw_id: int | None = None, host: Any = None,
                    ip: Any = None, state: str = "RUNNING") -> tuple[Any, int]:
        self.writer.append(
            Started(
                started_on=utcnow(),
                host=host or self.host,
                ip=ip or self.ip,
                fworker=jsonable(fworker.to_dict()) if fworker is not None else None,
            )
        )
        return self.firework, self.launch_id

    def change_launch_dir(self, launch_id: int, launch_dir: str) -> None:
        self.writer.append(LaunchDirChanged(launch_dir=os.path.abspath(launch_dir)))

    def ping_launch(self, launch_id: int, ptime: Any = None, checkpoint: dict[str, Any] | None = None) -> None:
        when = as_utc(ptime) if ptime is not None else utcnow()
        if checkpoint is not None:
            self.writer.append(Checkpoint(checkpoint=jsonable(checkpoint), ping_time=when))
        else:
            self.writer.append(Ping(ping_time=when))

    def complete_launch(self, launch_id: int, action: Any = None, state: str = "COMPLETED") -> dict[str, Any]:
        action_dict = jsonable(action.to_dict()) if action is not None else {}
        self.writer.append(Completed(state=state, action=action_dict, completed_on=utcnow()))  # type: ignore[arg-type]
        self.completed_state = state
        return {"launch_id": launch_id, "state": state}

    def restore_backup_data(self, launch_id: int, fw_id: int) -> None:
        # The Rocket restores the database copies it changed; this stand-in changed none.
        return None


def run(
    launch_dir: str,
    *,
    fworker_file: str | None = None,
    ping_seconds: float | None = None,
    spool_mode: int = 0o600,
    install_signal_handlers: bool = True,
) -> int:
    """Run the Firework reserved in ``launch_dir``; returns the process exit code (0 on success,
    1 when the Firework did not complete, as ``rlaunch``)."""
    from fireworks.core import rocket as fw_rocket
    from fireworks.core.firework import Firework
    from fireworks.core.fworker import FWorker
    from fireworks.utilities.fw_utilities import get_my_host, get_my_ip

    launch_dir = os.path.abspath(launch_dir)
    if not os.path.isdir(launch_dir):
        raise InputError(f"launch directory {launch_dir} does not exist")
    launch_id = read_launch_id(launch_dir)
    fw_path = os.path.join(launch_dir, "FW.json")
    try:
        firework = Firework.from_file(fw_path)
    except FileNotFoundError as exc:
        raise InputError(f"no FW.json in {launch_dir}: was it prepared by `qlaunch -r`?") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{fw_path} is not a readable Firework: {exc}") from exc
    try:
        fworker = FWorker.from_file(fworker_file) if fworker_file else FWorker()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read FWorker file {fworker_file}: {exc}") from exc
    if ping_seconds is not None:
        # The Rocket reads this module constant (FW_config.yaml's PING_TIME_SECS) at each wait.
        fw_rocket.PING_TIME_SECS = ping_seconds  # type: ignore[attr-defined]

    writer = SpoolWriter(launch_dir, launch_id, firework.fw_id, mode=spool_mode)
    restore = _install_exit_recorder(launch_dir, launch_id, firework.fw_id, spool_mode) if install_signal_handlers else None
    cwd = os.getcwd()
    try:
        os.chdir(launch_dir)
        lp = SpoolLaunchPad(writer, firework, launch_id, host=get_my_host(), ip=get_my_ip())
        ok = fw_rocket.Rocket(lp, fworker, firework.fw_id).run()  # type: ignore[arg-type]
        code = 0 if ok and lp.completed_state == "COMPLETED" else 1
        writer.append(Exited(returncode=code))
        return code
    except BaseException as exc:
        # A crash outside the tasks (the Rocket catches task errors itself) still ends the record.
        if not isinstance(exc, KeyboardInterrupt | SystemExit):
            writer.append(Exited(returncode=70))
        raise
    finally:
        os.chdir(cwd)
        writer.close()
        if restore is not None:
            restore()


def _install_exit_recorder(launch_dir: str, launch_id: int, fw_id: int | None, mode: int) -> Callable[[], None]:
    """On SIGTERM/SIGINT/SIGHUP (batch-system walltime), record ``exited`` with the signal, then die
    of that same signal.

    The record goes to a spool file of its own: the main writer may be in the middle of a
    record (or hold its lock) when the signal arrives, and one file has only one writer.
    """
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGXCPU)
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def handler(signum: int, frame: FrameType | None) -> None:
        try:
            with SpoolWriter(launch_dir, launch_id, fw_id, mode=mode) as w:
                w.append(Exited(signal=signum, signal_name=signal.Signals(signum).name))
        finally:
            signal.signal(signum, signal.SIG_DFL)
            sys.stderr.flush()
            os.kill(os.getpid(), signum)

    for sig in signals:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
