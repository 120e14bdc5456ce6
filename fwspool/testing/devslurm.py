"""A private single-node Slurm cluster (slurmctld + slurmd + munged) for the tests, tools and demo.

Like :mod:`fwspool.devserver` it lives in a directory of its own: its munge key and socket, its
``slurm.conf`` on free loopback ports, its state, spool, pid and log files. It never touches the
system munge or Slurm (``/run/munge``, ``/etc/slurm``): everything run against it needs only
``env`` (``SLURM_CONF``; the munge socket is named in ``AuthInfo``). slurmctld starts clean
(``-c``), so one cluster after another sees no leftover jobs. ``stop()`` leaves nothing behind:
jobs' processes (slurmstepd and its tasks) are detached from slurmd, so they are found by a marker
in their environment and killed too.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable

from fwspool.devserver import free_port

_DAEMONS = ("munged", "slurmctld", "slurmd")
_MARKER = "FWSPOOL_DEVSLURM"
# Input variables of the client commands (sbatch reads SBATCH_*, SLURM_* inside a job, ...).
_FOREIGN = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_", "SCONTROL_")


def available() -> bool:
    """Whether the daemons and client commands are installed (Debian: slurm-wlm, munge)."""
    return all(_which(n) for n in (*_DAEMONS, "sbatch", "squeue", "scontrol", "scancel", "sinfo"))


def _which(name: str) -> str | None:
    # The daemons live in /usr/sbin, which a non-root PATH may lack.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


class DevSlurm:
    """One controller, one node (``CPUs=4``), one default partition ``debug``; all as root."""

    cluster_name = "fwspool-test"
    partition = "debug"

    def __init__(self, base_dir: str, *, cpus: int = 4) -> None:
        self.base_dir = os.path.abspath(base_dir)
        self.cpus = cpus
        self.node_name = socket.gethostname().split(".")[0]
        self.conf_path = os.path.join(self.base_dir, "slurm.conf")
        self.munge_dir = os.path.join(self.base_dir, "munge")
        self.munge_socket = os.path.join(self.munge_dir, "munge.socket.2")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def env(self) -> dict[str, str]:
        """What every process run against this cluster needs (sbatch, squeue, the jobs)."""
        return {"SLURM_CONF": self.conf_path}

    def environ(self) -> dict[str, str]:
        """os.environ with ``env``, less any Slurm settings of a real job the caller may run in."""
        own = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
        return {**own, **self.env}

    def _path(self, *parts: str) -> str:
        return os.path.join(self.base_dir, *parts)

    def start(self, timeout: float = 60.0) -> DevSlurm:
        if self.running:
            return self
        if not available():
            raise RuntimeError("Slurm and munge are not installed: apt-get install slurm-wlm munge")
        if len(self.munge_socket) > 100:  # sun_path holds 108 bytes; slurmd's sockets are longer
            raise RuntimeError(f"Slurm dev cluster: base directory path too long: {self.base_dir}")
        for sub in ("munge", "state", "spool", "log"):
            os.makedirs(self._path(sub), mode=0o700, exist_ok=True)
        # munged refuses a key or socket directory that others can write to; clients need x.
        os.chmod(self.base_dir, 0o755)
        os.chmod(self.munge_dir, 0o755)
        self._write_munge_key()
        self._write_conf()
        deadline = time.monotonic() + timeout
        try:
            m = os.path.join(self.munge_dir, "munged")
            self._spawn(
                "munged",
                ["-F", "--force", f"--socket={self.munge_socket}", f"--key-file={m}.key"]
                + [f"--pid-file={m}.pid", f"--log-file={m}.log", f"--seed-file={m}.seed"],
            )
            self._wait(deadline, lambda: os.path.exists(self.munge_socket), "munged socket")
            self._spawn("slurmctld", ["-D", "-c", "-i", "-f", self.conf_path])
            self._wait(deadline, self._controller_up, "slurmctld answering scontrol ping")
            self._start_nodes(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_nodes(self, deadline: float) -> None:
        """One slurmd per node, then wait until every node is idle (a subclass may have more)."""
        self._spawn("slurmd", ["-D", "-c", "-f", self.conf_path, "-N", self.node_name])
        self._wait(deadline, self._node_idle, f"node {self.node_name} idle")

    def _write_munge_key(self) -> None:
        key = os.path.join(self.munge_dir, "munged.key")
        if os.path.exists(key):
            return
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(1024))

    def _write_conf(self) -> None:
        settings = self._conf_settings()
        text = "".join(f"{k}={v}\n" for k, v in settings.items()) + self._conf_nodes()
        with open(self.conf_path, "w") as f:
            f.write(text)

    def _conf_settings(self) -> dict[str, object]:
        """``slurm.conf``'s settings, by name (a subclass changes some)."""
        p = self._path
        ctld_port, slurmd_port = free_port(), free_port()
        # cred_expire also delays a requeued job's restart (default 120 s, minimum 5).
        auth = f"socket={self.munge_socket},cred_expire=5"
        lines: dict[str, object] = {
            "ClusterName": self.cluster_name,
            "SlurmctldHost": f"{self.node_name}(127.0.0.1)",
            "SlurmctldPort": ctld_port,
            "SlurmdPort": slurmd_port,
            "SlurmUser": "root",
            "SlurmdUser": "root",
            # Both the RPC authentication and the job credentials go through our own munged.
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": auth,
            "StateSaveLocation": p("state"),
            "SlurmdSpoolDir": p("spool"),
            "SlurmctldPidFile": p("slurmctld.pid"),
            "SlurmdPidFile": p("slurmd.pid"),
            "SlurmctldLogFile": p("log", "slurmctld.log"),
            "SlurmdLogFile": p("log", "slurmd.log"),
            "SlurmctldDebug": "info",
            "SlurmdDebug": "info",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core",
            # The node may declare more CPUs than the machine has (CI runners have two).
            "SlurmdParameters": "config_overrides",
            "SchedulerType": "sched/backfill",
            # The main loop (default every 60 s) starts jobs whose begin time has passed.
            "SchedulerParameters": "bf_interval=1,sched_interval=1",
            "KillWait": 2,
            # Finished jobs stay visible to squeue/scontrol this long (seconds).
            "MinJobAge": 30,
            "JobRequeue": 1,
            "ReturnToService": 2,
            "MpiDefault": "none",
            "MailProg": "/bin/true",
            "AccountingStorageType": "accounting_storage/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "JobCompType": "jobcomp/none",
            "InactiveLimit": 0,
            "OverTimeLimit": 0,
            "SlurmdTimeout": 300,
            "MessageTimeout": 10,
        }
        return lines

    def _conf_nodes(self) -> str:
        """``slurm.conf``'s node and partition lines."""
        return (
            f"NodeName={self.node_name} NodeHostname={self.node_name} NodeAddr=127.0.0.1"
            f" CPUs={self.cpus} RealMemory=1000 State=UNKNOWN\n"
            f"PartitionName={self.partition} Nodes={self.node_name} Default=YES MaxTime=INFINITE State=UP\n"
        )

    def _spawn(self, name: str, args: list[str], *, key: str | None = None) -> None:
        """Start daemon ``name`` as ``procs[key or name]``, through :meth:`daemon_prefix`."""
        exe = _which(name)
        assert exe is not None
        key = key or name
        prefix = self.daemon_prefix(key)
        # The marker is inherited by slurmstepd (which slurmd detaches), so stop() can find it.
        env = {**self.environ(), _MARKER: self.base_dir}
        with open(self._path("log", f"{key}.out"), "ab") as out:
            self.procs[key] = subprocess.Popen(
                [*prefix, exe, *args], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def _wait(self, deadline: float, ready: Callable[[], bool], what: str) -> None:
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tails()}")
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"Slurm dev cluster: no {what} in time:\n{self.log_tails()}")

    def log_tails(self, chars: int = 1500) -> str:
        """The end of each daemon's output (with -D/-F it holds all of its log, early errors too)."""
        out = []
        for log in (f"log/{d}.out" for d in self.procs or _DAEMONS):
            try:
                with open(self._path(log), "rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - chars))
                    out.append(f"--- {log}:\n{f.read().decode(errors='replace')}")
            except OSError:
                pass
        return "\n".join(out)

    def run(self, *cmd: str, cwd: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command against this cluster."""
        return subprocess.run(
            [*self.client_prefix(), *cmd],
            cwd=cwd,
            env=self.environ(),
            capture_output=True,
            text=True,
            check=check,
            timeout=30,
        )

    def daemon_prefix(self, key: str) -> list[str]:
        """The command that execs daemon ``key`` where it runs (here: nothing; a subclass enters
        a network namespace this way, and the pid stays the daemon's)."""
        return []

    def client_prefix(self) -> list[str]:
        """The command that runs a client where the controller is reachable (here: nothing)."""
        return []

    def _controller_up(self) -> bool:
        return "UP" in self.run("scontrol", "ping", check=False).stdout

    def _node_idle(self) -> bool:
        res = self.run("sinfo", "-h", "-N", "-n", self.node_name, "-o", "%T", check=False)
        return res.stdout.strip() == "idle"

    def sbatch(self, script_path: str, *args: str, cwd: str | None = None) -> str:
        """Submit a batch script; returns the job id."""
        res = self.run("sbatch", *args, script_path, cwd=cwd)
        match = re.search(r"Submitted batch job (\d+)", res.stdout)
        if not match:
            raise RuntimeError(f"sbatch said: {res.stdout}{res.stderr}")
        return match.group(1)

    def job_state(self, job_id: str) -> str | None:
        """``RUNNING``, ``COMPLETED``, ``TIMEOUT``... or None once the controller forgot the job."""
        res = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        match = re.search(r"\bJobState=(\S+)", res.stdout)
        return match.group(1) if match else None

    def wait_for_state(self, job_id: str, states: Iterable[str], timeout: float = 30.0) -> str:
        """Poll until the job is in one of ``states`` (``"GONE"`` stands for unknown)."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        state: str | None = None
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if (state or "GONE") in wanted:
                return state or "GONE"
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} still {state} after {timeout}s, wanted {sorted(wanted)}")

    def scancel(self, job_id: str, *args: str) -> None:
        self.run("scancel", *args, job_id)

    def requeue(self, job_id: str) -> None:
        """``scontrol requeue``: the job ends (SIGTERM), goes back to PENDING and runs again.

        Slurm holds a requeued job back until its old credential has expired (``cred_expire``,
        5 s here, its minimum): forcing ``StartTime=now`` earlier gets the rerun killed as "Job credential
        revoked" and the job ends for good, so the tests wait as a real cluster would.
        """
        self.run("scontrol", "requeue", job_id)

    @property
    def running(self) -> bool:
        return any(p.poll() is None for p in self.procs.values())

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel the jobs, end the daemons, then kill whatever of the jobs is left. Idempotent."""
        ctld = self.procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None:
            # A clean end first: the jobs get SIGTERM (their traps run), then KillWait, SIGKILL.
            self.run("scancel", f"--user={pwd.getpwuid(os.getuid()).pw_name}", check=False)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.run("squeue", "-h", "-o", "%i", check=False).stdout:
                time.sleep(0.1)
        for name in reversed(list(self.procs)):  # nodes first, munged last
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._kill_strays()

    def _kill_strays(self) -> None:
        """SIGKILL what is left of the jobs: slurmstepd (our marker) and every process in its session.

        slurmstepd detaches itself from slurmd (its own session, reparented to init) and slurmd
        does not end the jobs when it stops, so the daemons' pids do not reach them.
        """
        marker = f"{_MARKER}={self.base_dir}".encode()
        job_conf = f"SLURM_CONF={self.conf_path}".encode()
        for _ in range(100):
            procs = live_processes()
            sessions = {sid for pid, (sid, env) in procs.items() if marker in env}
            strays = [
                pid
                for pid, (sid, env) in procs.items()
                if sid in sessions
                or marker in env
                or (job_conf in env and any(e.startswith(b"SLURM_JOB_ID=") for e in env))
            ]
            if not strays:
                return
            for pid in strays:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"Slurm dev cluster: processes survive SIGKILL: {strays}")

    def __enter__(self) -> DevSlurm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def live_processes() -> dict[int, tuple[int, list[bytes]]]:
    """Every other live process (not zombies, which a kill cannot end): pid -> (session, environ)."""
    found: dict[int, tuple[int, list[bytes]]] = {}
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                # pid (comm) state ppid pgrp session ...: comm may hold spaces, so split after it.
                fields = f.read().rsplit(b")", 1)[1].split()
            if fields[0] in (b"Z", b"X"):
                continue
            session = int(fields[3])
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        found[int(name)] = (session, env)
    return found
