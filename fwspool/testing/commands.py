"""Running the commands under test: ``fwspool`` and FireWorks' ``rlaunch``/``lpad``/``qlaunch`` as
subprocesses with the environment of a job, ``fwspool`` in-process through click's CliRunner,
and a Firework reserved as ``qlaunch -r`` does and run by ``fwspool rlaunch``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Any

from fwspool.reserve import reserve_offline

__all__ = [
    "TASK_MODULE_DIRS",
    "fireworks_command",
    "fwspool_cmd",
    "invoke",
    "job_env",
    "reserved_and_run",
    "run_fireworks_offline",
    "run_fwspool",
    "run_job",
    "unstamped",
]

#: Directories the jobs started here import FireTask modules from, first on their PYTHONPATH. A
#: test suite whose workflows name FireTasks of its own adds its directory (tests/conftest.py).
TASK_MODULE_DIRS: list[str] = []


def job_env(**extra: str) -> dict[str, str]:
    """This process's environment with :data:`TASK_MODULE_DIRS` importable, then ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*TASK_MODULE_DIRS, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def fwspool_cmd(*args: str) -> list[str]:
    """The ``fwspool`` command of the running interpreter."""
    return [sys.executable, "-m", "fwspool.cli", *args]


def fireworks_command(name: str) -> str:
    """FireWorks' ``rlaunch``, ``lpad`` or ``qlaunch``: the one beside this interpreter, else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.path.exists(beside) else shutil.which(name) or name


def run_job(
    cmd: list[str], launch_dir: str, *, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``cmd`` in ``launch_dir`` with a job's environment (:func:`job_env` unless ``env``)."""
    return subprocess.run(
        cmd, cwd=launch_dir, env=env or job_env(), capture_output=True, text=True, timeout=timeout
    )


def run_fwspool(
    launch_dir: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``fwspool rlaunch ARGS`` in ``launch_dir``, as a job runs it."""
    return run_job(fwspool_cmd("rlaunch", *args), launch_dir, env=env, timeout=timeout)


def run_fireworks_offline(
    launch_dir: str, *, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """FireWorks' own ``rlaunch singleshot --offline`` in ``launch_dir``."""
    cmd = [fireworks_command("rlaunch"), "singleshot", "--offline"]
    return run_job(cmd, launch_dir, env=env, timeout=timeout)


def reserved_and_run(
    lp: Any,
    launch_dir: str,
    *rlaunch_args: str,
    fw_id: int | None = None,
    returncodes: tuple[int, ...] = (0,),
) -> tuple[Any, int]:
    """A Firework reserved into ``launch_dir`` as ``qlaunch -r`` does, then run there by
    ``fwspool rlaunch``, which must exit with one of ``returncodes``; (Firework, launch_id)."""
    fw, launch_id = reserve_offline(lp, launch_dir, fw_id=fw_id)
    res = run_fwspool(launch_dir, *rlaunch_args)
    assert res.returncode in returncodes, res.stderr[-2000:]
    return fw, launch_id


def invoke(*args: str, catch_exceptions: bool = False, **kwargs: Any) -> Any:
    """``fwspool ARGS`` in this process (click's CliRunner); exceptions propagate unless
    ``catch_exceptions``."""
    from click.testing import CliRunner

    from fwspool.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=catch_exceptions, **kwargs)


#: The UTC time that starts each line of a login-node command's log where it is not a terminal.
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", re.M)


def unstamped(text: str) -> str:
    """A login-node command's output without the times that start its lines (fwspool.log)."""
    return _STAMP.sub("", text)
