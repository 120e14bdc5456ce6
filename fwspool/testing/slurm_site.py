"""A FireWorks user's site on the private Slurm cluster (fwspool.testing.devslurm): the launchpad,
FWorker and queue adapter files as the README sets them up, FireWorks' own ``qlaunch -r``, and
``fwspool sync --watch`` as the README runs it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from fwspool.testing.devslurm import DevSlurm

__all__ = [
    "Site",
    "finished_job",
    "launchpad_file_text",
    "qadapter_file_text",
    "qlaunch_command",
    "running_sync",
    "site_files",
    "sync_command",
]

BIN = Path(sys.executable).parent


def finished_job(slurm: DevSlurm, directory: Path) -> str:
    """The id of a real Slurm job that has already ended (a job the batch system no longer runs)."""
    script = directory / "quick.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    job = slurm.sbatch(str(script), cwd=str(directory))
    slurm.wait_for_state(job, {"COMPLETED"}, 30)
    return job


def launchpad_file_text(uri: str, db: str) -> str:
    """A ``my_launchpad.yaml`` for LaunchPad ``db`` at ``uri``."""
    return f"host: '{uri}'\nuri_mode: true\nname: {db}\nlogdir: null\nstrm_lvl: ERROR\n"


def qadapter_file_text(rocket_launch_line: str, pre_rocket: str | None = None) -> str:
    """A ``my_qadapter.yaml`` for Slurm (FireWorks' CommonAdapter) with this ``rocket_launch:`` line."""
    return (
        "_fw_name: CommonAdapter\n_fw_q_type: SLURM\n"
        f"{rocket_launch_line}\n"
        "nodes: 1\nntasks: 1\nwalltime: '00:10:00'\nqueue: debug\n"
        f"pre_rocket: {json.dumps(pre_rocket)}\npost_rocket: null\nlogdir: null\n"
    )


def qlaunch_command(
    launchpad_file: str | Path, fworker_file: str | Path, qadapter_file: str | Path, *args: str
) -> list[str]:
    """FireWorks' own ``qlaunch -r`` with these files, then ``args`` (``rapidfire``...)."""
    return [
        str(BIN / "qlaunch"),
        "-r",
        "-l",
        str(launchpad_file),
        "-w",
        str(fworker_file),
        "-q",
        str(qadapter_file),
        *args,
    ]


def sync_command(
    fwspool: str | Path, launchpad_file: str | Path, journal: str | Path, interval: str, *extra: str
) -> list[str]:
    """``fwspool sync --watch --interval S -l FILE`` as the README runs it, on ``journal``."""
    return [
        str(fwspool),
        "sync",
        "--watch",
        "--interval",
        interval,
        "-l",
        str(launchpad_file),
        "--journal",
        str(journal),
        *extra,
    ]


def site_files(
    work: str, uri: str, db: str, *, category: str = "", queue_update_interval: float
) -> dict[str, str]:
    """The user's files in ``work``, as the README sets them up for the venv running this:
    ``my_launchpad.yaml``, ``my_fworker.yaml`` (of ``category``), ``my_qadapter.yaml`` (its
    rocket_launch the README's fwspool rlaunch line) and ``FW_config.yaml``; their paths by name."""
    files = {name: os.path.join(work, f"my_{name}.yaml") for name in ("launchpad", "fworker", "qadapter")}
    files["fw_config"] = os.path.join(work, "FW_config.yaml")
    rocket_launch = f"rocket_launch: {BIN}/fwspool rlaunch -w {files['fworker']} singleshot --offline"
    texts = {
        "launchpad": launchpad_file_text(uri, db),
        "fworker": f"name: bench\ncategory: '{category}'\nquery: '{{}}'\n",
        "qadapter": qadapter_file_text(rocket_launch),
        "fw_config": f"QUEUE_UPDATE_INTERVAL: {queue_update_interval}\n",
    }
    for name, text in texts.items():
        with open(files[name], "w") as f:
            f.write(text)
    return files


@contextlib.contextmanager
def running_sync(
    work: str, launchpad_file: str, journal: str, env: dict[str, str], interval: float
) -> Iterator[None]:
    """``fwspool sync --watch`` as the README runs it, logging to ``work/sync.log``, for the
    ``with`` block; stopped as systemd stops it (SIGTERM)."""
    with open(os.path.join(work, "sync.log"), "ab") as sync_log:
        sync = subprocess.Popen(
            sync_command(BIN / "fwspool", launchpad_file, journal, str(interval)),
            cwd=work,
            env=env,
            stdout=sync_log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield
        finally:
            if sync.poll() is None:
                sync.send_signal(signal.SIGTERM)
                sync.wait(60)


class Cluster(Protocol):
    """What a site needs of its batch system (DevSlurm, DevGridEngine): its commands' environment."""

    def environ(self) -> dict[str, str]: ...


class Site:
    """A user's `$HOME/fw` on the login node, set up as the README says, against one LaunchPad.

    ``rocket_launch_line`` is the queue adapter's whole ``rocket_launch: ...`` line (the tests
    take it from the README, word for word).
    """

    def __init__(
        self,
        tmp_path: Path,
        uri: str,
        db: str,
        slurm: Cluster,
        rocket_launch_line: str,
        *,
        inbox: bool = False,
    ) -> None:
        self.slurm = slurm
        self.rocket_launch_line = rocket_launch_line
        self.home = tmp_path / "home"
        self.fw = self.home / "fw"
        (self.fw / ".venv" / "bin").mkdir(parents=True)
        # The venv the README's first command makes, here the one the tests run in.
        (self.fw / ".venv" / "bin" / "fwspool").symlink_to(BIN / "fwspool")
        self.launchpad_file = self.fw / "my_launchpad.yaml"
        self.launchpad_file.write_text(launchpad_file_text(uri, db))
        (self.fw / "my_fworker.yaml").write_text("name: cluster\ncategory: ''\nquery: '{}'\n")
        self.qadapter = self.write_qadapter()
        (self.fw / "FW_config.yaml").write_text("QUEUE_UPDATE_INTERVAL: 1\n")
        self.journal = self.home / "journal.sqlite3"
        self.runs = self.fw / "runs"
        self.runs.mkdir()
        self.daemon: subprocess.Popen[bytes] | None = None
        self.inbox = inbox

    def leave_other_launchpads_pointers(self, launch_ids: tuple[int, ...] = (1, 2, 3)) -> set[str]:
        """What the default inbox holds after earlier runs on this machine: pointers of another
        LaunchPad's launches with these ids, in its own directories (launch 1 still running, 2
        completed, 3 killed), as ``fwspool rlaunch`` leaves them. Returns their file names."""
        from fwspool import inbox
        from fwspool.events import Completed, Exited, Started, utcnow
        from fwspool.spool import SpoolWriter

        where = str(self.home / ".fwspool" / "inbox")
        names = set()
        for launch_id in launch_ids:
            d = self.home / "other-launchpad" / f"launcher_{launch_id}"
            d.mkdir(parents=True)
            with SpoolWriter(str(d), launch_id, launch_id) as w:
                w.append(Started(started_on=utcnow(), launch_dir=str(d)))
                if launch_id % 3 == 2:
                    w.append(Completed(state="COMPLETED", action={"stored_data": {}}, completed_on=utcnow()))
                    w.append(Exited(returncode=0))
            names.add(os.path.basename(inbox.write_pointer(where, launch_id, launch_id, str(d))))
        return names

    def write_qadapter(self, pre_rocket: str | None = None, name: str = "my_qadapter.yaml") -> Path:
        path = self.fw / name
        path.write_text(qadapter_file_text(self.rocket_launch_line, pre_rocket))
        return path

    def env(self, **extra: str) -> dict[str, str]:
        """What a login shell of this user has: no venv on PATH, the cluster's SLURM_CONF."""
        env = {
            k: v
            for k, v in self.slurm.environ().items()
            if k not in ("VIRTUAL_ENV", "XDG_STATE_HOME", "PYTHONPATH") and not k.startswith("PYTEST")
        }
        env.update(
            HOME=str(self.home),
            PATH="/usr/local/bin:/usr/bin:/bin",
            FW_CONFIG_FILE=str(self.fw / "FW_config.yaml"),
        )
        if not self.inbox:
            env.pop("FWSPOOL_INBOX", None)
        env.update(extra)
        return env

    def as_user(
        self,
        cmd: list[str],
        *,
        cwd: Path | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """A command as the user runs it on the login node: from ``~/fw`` (or ``cwd``), with the
        login shell's environment (:meth:`env`, plus ``env``)."""
        res = subprocess.run(
            cmd, cwd=cwd or self.fw, env=self.env(**(env or {})), capture_output=True, text=True, timeout=120
        )
        if check:
            assert res.returncode == 0, res.stdout + res.stderr
        return res

    def qlaunch(self, *args: str, cwd: Path | None = None, qadapter: Path | None = None, **env: str) -> str:
        """FireWorks' own qlaunch, as the user runs it; returns its output."""
        cmd = qlaunch_command(
            self.launchpad_file, self.fw / "my_fworker.yaml", qadapter or self.qadapter, *args
        )
        res = self.as_user(cmd, cwd=cwd or self.runs, env=env)
        return res.stdout + res.stderr

    def lpad(self, *args: str) -> str:
        """FireWorks' own ``lpad -l my_launchpad.yaml ARGS``, as the user runs it; returns its output."""
        return self.as_user([str(BIN / "lpad"), "-l", str(self.launchpad_file), *args]).stdout

    def fwspool(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.as_user([str(self.fw / ".venv" / "bin" / "fwspool"), *args], check=check)

    def start_sync(self, *extra: str, interval: str = "0.5", **env: str) -> None:
        """`fwspool sync --watch` as the README runs it (here with a short interval)."""
        self.start_daemon(
            sync_command(
                self.fw / ".venv" / "bin" / "fwspool",
                self.launchpad_file,
                self.journal,
                interval,
                "--lost-after",
                "3",
                *extra,
            ),
            env=env,
        )

    def start_daemon(
        self, command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        """The login daemon ``command`` (a systemd unit's ExecStart line...), logging to sync.log;
        :meth:`stop_sync` stops it."""
        log = open(self.home / "sync.log", "ab")  # noqa: SIM115 - the daemon's, for its lifetime
        self.daemon = subprocess.Popen(
            command, cwd=cwd or self.fw, env=self.env(**(env or {})), stdout=log, stderr=subprocess.STDOUT
        )

    def stop_sync(self) -> str:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            assert self.daemon.wait(60) == 0, self.log()
        self.daemon = None
        return self.log()

    def log(self) -> str:
        path = self.home / "sync.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def events(
        self, sql: str = "SELECT type, payload FROM events ORDER BY occurred_at"
    ) -> list[tuple[Any, ...]]:
        if not self.journal.exists():
            return []
        with sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True) as db:
            return db.execute(sql).fetchall()
