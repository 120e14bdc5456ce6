"""A private single-host Grid Engine cell (Son of Grid Engine 8.1.9: sge_qmaster + sge_execd) for
the tests, as :mod:`fwspool.testing.devslurm` is for Slurm.

Everything lives in one directory of its own: ``SGE_ROOT`` (symlinks into Debian's install),
the cell ``tcell`` with classic spooling, the qmaster and execd spools, the jobs' tmpdir, pid
files; the daemons listen on free ports. Nothing of the system's Grid Engine is used or touched
(``/var/lib/gridengine``, the init scripts, ``/etc/hosts``): whatever runs against the cell needs
only :attr:`DevGridEngine.env`.

The cell is set up as FireWorks and fwspool need it:

- ``sge_request`` holds ``-cwd``: FireWorks' SGE template writes a relative ``-o FW_job.out`` and
  no ``-cwd``, so without it the job's output lands in the home directory.
- ``execd_params NOTIFY_KILL=TERM``: a ``qsub -notify`` job gets SIGTERM ``notify`` seconds
  (10 here) before the SIGKILL of ``qdel`` or ``h_rt``, as under Slurm (SIGUSR2 otherwise).
- A cell-local ``host_aliases``: the qmaster names a client by reverse-resolving its address
  (``localhost`` for 127.0.0.1 on most machines) and refuses one whose own name differs.
- Root may run jobs (``min_uid 0``), the shebang is honoured (``unix_behavior``), accounting
  is written at once (``qacct`` answers as soon as a job ends), the scheduler runs every second.
- A job's ``HOME`` is its submitter's (``SGE_O_HOME``, through the queue's ``starter_method``):
  each test's user has a home of its own, which the README's ``$HOME/fw`` lines mean in the job.

:meth:`DevGridEngine.stop` ends everything by pid: each job's process group and shepherd, then
both daemons. Never the packages' init scripts, which kill every ``sge_qmaster`` on the machine
by name.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fwspool.devserver import free_port
from fwspool.scheduler import parse_qacct

#: Debian's real binaries (``/usr/bin/q*`` are wrappers that honour SGE_ROOT/SGE_CELL too).
BIN = "/usr/lib/gridengine"
SHARE = "/usr/share/gridengine"
_ARCH = "lx-amd64"
_CELL = "tcell"
#: In the daemons' environment (and so their shepherds'): how stop() finds what is left of the cell.
_MARKER = "FWSPOOL_DEVGRIDENGINE"
#: Settings of a real Grid Engine job or site the caller may run in; never passed on to the cell.
_FOREIGN = (
    "SGE_",
    "JOB_ID",
    "JOB_NAME",
    "SGE_TASK_",
    "QUEUE",
    "PE_HOSTFILE",
    "NHOSTS",
    "NSLOTS",
    "RESTARTED",
)
#: Seconds between ``-notify``'s warning signal and the kill (the queue's ``notify``).
NOTIFY_SECONDS = 10


def available() -> bool:
    """Whether Debian's gridengine-master, gridengine-exec and gridengine-client are installed."""
    return all(
        os.access(os.path.join(BIN, name), os.X_OK)
        for name in ("sge_qmaster", "sge_execd", "qsub", "qstat", "qacct", "qconf", "qdel", "qmod")
    ) and os.path.exists(os.path.join(SHARE, "default-configuration"))


class DevGridEngine:
    """One qmaster, one execd, one queue ``all.q`` with ``slots`` slots on this host; all as root."""

    queue = "all.q"
    cell = _CELL

    def __init__(self, base_dir: str, *, slots: int = 4) -> None:
        self.base_dir = os.path.abspath(base_dir)
        self.slots = slots
        self.host = socket.gethostname()
        self.root = os.path.join(self.base_dir, "root")
        self.common = os.path.join(self.root, _CELL, "common")
        self.qmaster_spool = os.path.join(self.base_dir, "spool", "qmaster")
        self.execd_spool = os.path.join(self.base_dir, "spool", "execd")
        self.ports: tuple[int, int] | None = None

    # -- environment ---------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """What every process run against this cell needs (qsub, qstat, the jobs' own commands)."""
        if self.ports is None:
            raise RuntimeError("the Grid Engine cell has not been started")
        return {
            "SGE_ROOT": self.root,
            "SGE_CELL": _CELL,
            "SGE_ARCH": _ARCH,
            "SGE_QMASTER_PORT": str(self.ports[0]),
            "SGE_EXECD_PORT": str(self.ports[1]),
            "SGE_CLUSTER_NAME": "fwspool-test",
        }

    def environ(self) -> dict[str, str]:
        """os.environ with ``env``, less any Grid Engine settings of a real job or site."""
        own = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
        path = own.get("PATH", "/usr/bin:/bin")
        if BIN not in path.split(os.pathsep):
            path = f"{path}{os.pathsep}{BIN}"
        return {**own, **self.env, "PATH": path}

    def _path(self, *parts: str) -> str:
        return os.path.join(self.base_dir, *parts)

    # -- start ---------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> DevGridEngine:
        if self.running:
            return self
        if not available():
            raise RuntimeError(
                "Grid Engine is not installed: apt-get install gridengine-master gridengine-exec "
                "gridengine-client (tools/run-tests does it)"
            )
        if os.path.exists(self.common):
            raise RuntimeError(f"{self.base_dir} already holds a Grid Engine cell")
        self.ports = (free_port(), free_port())
        deadline = time.monotonic() + timeout
        try:
            self._write_root()
            self._init_spool()
            self._start_daemon("qmaster")
            self._wait(deadline, lambda: self.run("qconf", "-sh", check=False).returncode == 0, "qmaster")
            self._configure_hosts()
            self._start_daemon("execd")
            self._wait(deadline, self._execd_reports, "execd load report")
            self._add_queue()
            self._wait(deadline, self._queue_ready, f"queue {self.queue}")
        except BaseException:
            self.stop()
            raise
        return self

    def _write_root(self) -> None:
        """SGE_ROOT: symlinks into Debian's install, and the cell's common directory."""
        for d in (self.common, self.qmaster_spool, self.execd_spool, self._path("tmp"), self._path("log")):
            os.makedirs(d, exist_ok=True)
        os.symlink(os.path.join(SHARE, "util"), os.path.join(self.root, "util"))
        for d in ("bin", "lib", "utilbin"):
            os.makedirs(os.path.join(self.root, d))
            os.symlink(BIN, os.path.join(self.root, d, _ARCH))
        # Clients announce gethostname(); the qmaster names a peer by reverse-resolving its
        # address. First column: the name the cell uses; the rest: aliases for it.
        aliases = [self.host]
        try:
            resolved = socket.gethostbyaddr(socket.gethostbyname(self.host))[0]
        except OSError:
            resolved = self.host
        if resolved != self.host:
            aliases.append(resolved)
        self._write(os.path.join(self.common, "host_aliases"), " ".join(aliases) + "\n")
        self._write(os.path.join(self.common, "act_qmaster"), self.host + "\n")
        self._write(os.path.join(self.common, "cluster_name"), "fwspool-test\n")
        self._write(os.path.join(self.common, "sge_request"), "-cwd\n")
        self._write(
            os.path.join(self.common, "bootstrap"),
            "# Version: 8.1.9\n"
            "admin_user              none\n"
            "default_domain          none\n"
            "ignore_fqdn             true\n"
            "spooling_method         classic\n"
            "spooling_lib            libspoolc\n"
            f"spooling_params         {self.common};{self.qmaster_spool}\n"
            "binary_path             /usr/sbin\n"
            f"qmaster_spool_dir       {self.qmaster_spool}\n"
            "security_mode           none\n"
            "listener_threads        2\n"
            "worker_threads          2\n"
            "scheduler_threads       1\n"
            "jvm_threads             0\n",
        )

    def _init_spool(self) -> None:
        """Debian's ``init_cluster`` by hand: the classic spool and its defaults."""
        overrides = {
            "execd_spool_dir": self.execd_spool,
            "mailer": "/bin/true",
            "min_uid": "0",
            "min_gid": "0",
            "shell_start_mode": "unix_behavior",
            "load_report_time": "00:00:01",
            "max_unheard": "00:01:00",
            "execd_params": "NOTIFY_KILL=TERM",
            "reporting_params": "accounting=true reporting=false flush_time=00:00:01 "
            "accounting_flush_time=00:00:00 joblog=false sharelog=00:00:00",
        }
        conf = self._path("global.conf")
        self._write(conf, _override(os.path.join(SHARE, "default-configuration"), overrides))
        spooling = f"{self.common};{self.qmaster_spool}"
        resources = os.path.join(SHARE, "util", "resources")
        self._bin("spoolinit", "classic", "libspoolc", spooling, "init")
        self._bin("spooldefaults", "configuration", conf)
        self._bin("spooldefaults", "complexes", os.path.join(resources, "centry"))
        self._bin("spooldefaults", "usersets", os.path.join(resources, "usersets"))
        self._bin("spooldefaults", "pes", os.path.join(resources, "pe"))
        self._bin("spooldefaults", "managers", "root")
        self._bin("spooldefaults", "operators", "root")

    def _bin(self, name: str, *args: str) -> None:
        res = subprocess.run(
            [os.path.join(BIN, name), *args], env=self.environ(), capture_output=True, text=True, timeout=30
        )
        if res.returncode != 0:
            raise RuntimeError(f"{name} {' '.join(args)} failed: {res.stdout}{res.stderr}")

    def _start_daemon(self, which: str) -> None:
        """sge_qmaster / sge_execd daemonize themselves; their pid files say who they became."""
        env = {
            **self.environ(),
            _MARKER: self.base_dir,
            f"SGE_{which.upper()}_PIDFILE": self._path(f"{which}.pid"),
        }
        with open(self._path("log", f"{which}.out"), "ab") as out:
            subprocess.run(
                [os.path.join(BIN, f"sge_{which}")],
                env=env,
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=30,
            )

    def _configure_hosts(self) -> None:
        sched = self._path("sched.conf")
        self._write(
            sched,
            _override(
                os.path.join(SHARE, "util", "install_modules", "inst_schedd_normal.conf"),
                {
                    "schedule_interval": "0:0:1",
                    "flush_submit_sec": "1",
                    "flush_finish_sec": "1",
                    "schedd_job_info": "true",
                },
            ),
        )
        self.run("qconf", "-Msconf", sched)
        self.run("qconf", "-ah", self.host, check=False)  # the qmaster host usually is an admin host
        self.run("qconf", "-as", self.host)
        exechost = self._path("exechost.conf")
        self._write(
            exechost,
            f"hostname {self.host}\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\n"
            "xuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n",
        )
        self.run("qconf", "-Ae", exechost)

    def _add_queue(self) -> None:
        limits = "".join(
            f"{kind}_{res} INFINITY\n"
            for res in ("rt", "cpu", "fsize", "data", "stack", "core", "rss", "vmem")
            for kind in ("s", "h")
        )
        conf = self._path("allq.conf")
        self._write(
            conf,
            f"qname {self.queue}\nhostlist {self.host}\nseq_no 0\nload_thresholds NONE\n"
            "suspend_thresholds NONE\nnsuspend 1\nsuspend_interval 00:05:00\npriority 0\n"
            "min_cpu_interval 00:05:00\nprocessors UNDEFINED\nqtype BATCH INTERACTIVE\nckpt_list NONE\n"
            f"pe_list make smp mpi\nrerun FALSE\nslots {self.slots}\ntmpdir {self._path('tmp')}\n"
            "shell /bin/sh\nprolog NONE\nepilog NONE\nshell_start_mode unix_behavior\n"
            f"starter_method {self._starter()}\nsuspend_method NONE\nresume_method NONE\nterminate_method NONE\n"
            f"notify 00:00:{NOTIFY_SECONDS:02d}\nowner_list NONE\nuser_lists NONE\nxuser_lists NONE\n"
            "subordinate_list NONE\ncomplex_values NONE\nprojects NONE\nxprojects NONE\ncalendar NONE\n"
            f"initial_state default\n{limits}",
        )
        self.run("qconf", "-Aq", conf)

    def _starter(self) -> str:
        """The queue's ``starter_method``: the job runs with the submitter's ``HOME``.

        Grid Engine sets a job's ``HOME`` from the password file (``/root`` here), whatever the
        submitter's environment says; on a real site that is the user's home on the login node
        too. The tests' users each have a home of their own (a temporary directory), which the
        README's ``$HOME/fw/...`` lines must mean in the job as well: ``SGE_O_HOME`` is it."""
        path = self._path("starter.sh")
        self._write(path, '#!/bin/sh\n[ -n "$SGE_O_HOME" ] && HOME=$SGE_O_HOME && export HOME\nexec "$@"\n')
        os.chmod(path, 0o755)
        return path

    def _execd_reports(self) -> bool:
        out = self.run("qhost", "-h", self.host, check=False).stdout.splitlines()
        return any(len(f := line.split()) > 3 and f[0] == self.host and f[3] != "-" for line in out)

    def _queue_ready(self) -> bool:
        return f"{self.queue}@{self.host}" in self.run("qstat", "-f", "-q", self.queue, check=False).stdout

    def _wait(self, deadline: float, ready: Callable[[], bool], what: str) -> None:
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"Grid Engine dev cell: no {what} in time:\n{self.log_tails()}")

    def log_tails(self, chars: int = 1500) -> str:
        """The end of each daemon's messages file (early errors go to /tmp: qmaster_messages...)."""
        out = []
        for log in (
            os.path.join(self.qmaster_spool, "messages"),
            os.path.join(self._execd_host_spool(), "messages"),
        ):
            try:
                with open(log, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - chars))
                    out.append(f"--- {log}:\n{f.read().decode(errors='replace')}")
            except OSError:
                pass
        return "\n".join(out)

    @staticmethod
    def _write(path: str, text: str) -> None:
        with open(path, "w") as f:
            f.write(text)

    # -- using the cell ------------------------------------------------------------------------

    def run(
        self, *cmd: str, cwd: str | None = None, check: bool = True, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a Grid Engine client command (``qsub``, ``qstat``...) against this cell, in ``env``
        (default: this process's environment) with the cell's settings."""
        exe = os.path.join(BIN, cmd[0]) if os.sep not in cmd[0] else cmd[0]
        environ = self.environ() if env is None else {**env, **self.env}
        res = subprocess.run(
            [exe, *cmd[1:]], cwd=cwd, env=environ, capture_output=True, text=True, timeout=30
        )
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed (exit {res.returncode}): {res.stdout}{res.stderr}")
        return res

    def qsub(
        self, script_path: str, *args: str, cwd: str | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        """Submit a job script (from ``env``, which ``-V`` passes on to the job); returns the job id."""
        res = self.run("qsub", *args, script_path, cwd=cwd, env=env)
        match = re.search(r"Your job(?:-array)? (\d+)", res.stdout)
        if not match:
            raise RuntimeError(f"qsub said: {res.stdout}{res.stderr}")
        return match.group(1)

    def job_state(self, job_id: str) -> str | None:
        """The job's state letters in ``qstat`` (``qw``, ``r``, ``hqw``, ``Rr``, ``dr``...), or
        None once the qmaster no longer has it."""
        for line in self.run("qstat", "-u", "*", check=False).stdout.splitlines()[2:]:
            fields = line.split()
            if len(fields) > 4 and fields[0] == job_id:
                return fields[4]
        return None

    def wait_for_state(self, job_id: str, states: Iterable[str], timeout: float = 30.0) -> str:
        """Poll until the job's state is one of ``states`` (``"GONE"``: the qmaster forgot it)."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        state: str | None = None
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if (state or "GONE") in wanted:
                return state or "GONE"
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id} still {state} after {timeout}s, wanted {sorted(wanted)}")

    def qdel(self, job_id: str, *args: str) -> None:
        self.run("qdel", *args, job_id)

    def _execd_host_spool(self) -> str:
        """The execd's own spool directory, named as the cell names this host (the alias's first
        column, or what the address resolves to)."""
        try:
            names = sorted(os.listdir(self.execd_spool))
        except OSError:
            names = []
        return os.path.join(self.execd_spool, names[0] if names else self.host)

    def job_pid(self, job_id: str, task: str = "1") -> int | None:
        """The pid of a running job's script (the leader of the job's process group), as its
        shepherd recorded it; None when the job does not run here."""
        path = os.path.join(self._execd_host_spool(), "active_jobs", f"{job_id}.{task}", "job_pid")
        try:
            with open(path) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def accounting(self, job_id: str) -> list[dict[str, str]]:
        """``qacct -j``'s records of the job (one per run), each as field -> value."""
        res = self.run("qacct", "-j", job_id, check=False)
        return parse_qacct(res.stdout)

    def wait_for_accounting(self, job_id: str, timeout: float = 30.0) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.accounting(job_id)
            if records:
                return records
            time.sleep(0.2)
        raise TimeoutError(f"no accounting record of job {job_id} after {timeout}s")

    # -- stop ----------------------------------------------------------------------------------

    def _daemon_pid(self, which: str) -> int | None:
        try:
            with open(self._path(f"{which}.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return pid if _comm(pid) == f"sge_{which}" else None

    @property
    def running(self) -> bool:
        return any(self._daemon_pid(d) is not None for d in ("qmaster", "execd"))

    def stop(self, timeout: float = 10.0) -> None:
        """Kill the jobs (process groups, then shepherds), then both daemons, all by pid. Idempotent.

        SIGKILL at once: the cell is thrown away (classic spooling needs no clean shutdown)."""
        for _ in range(100):
            strays = self._job_processes()
            if not strays:
                break
            for pid in strays:
                for kill in (lambda p: os.killpg(p, signal.SIGKILL), lambda p: os.kill(p, signal.SIGKILL)):
                    try:
                        kill(pid)
                    except OSError:
                        pass
            time.sleep(0.05)
        pids = [p for p in (self._daemon_pid(d) for d in ("execd", "qmaster")) if p is not None]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_comm(p) is not None for p in pids):
            time.sleep(0.05)
        for which in ("execd", "qmaster"):
            try:
                os.unlink(self._path(f"{which}.pid"))
            except OSError:
                pass

    def _job_processes(self) -> list[int]:
        """The jobs' processes: each active job's ``job_pid`` (a process group leader), the
        shepherds (they carry the marker, inherited from execd), and every process in a session
        a shepherd started."""
        found: set[int] = set()
        active = os.path.join(self._execd_host_spool(), "active_jobs")
        try:
            jobs = os.listdir(active)
        except OSError:
            jobs = []
        for job in jobs:
            try:
                with open(os.path.join(active, job, "job_pid")) as f:
                    found.add(int(f.read().strip()))
            except (OSError, ValueError):
                pass
        marker = f"{_MARKER}={self.base_dir}".encode()
        procs = _processes()
        shepherds = {
            pid for pid, (ppid, sid, comm, env) in procs.items() if marker in env and comm == "sge_shepherd"
        }
        sessions = {sid for pid, (ppid, sid, comm, env) in procs.items() if ppid in shepherds}
        found |= shepherds
        found |= {pid for pid, (ppid, sid, comm, env) in procs.items() if sid in sessions}
        return sorted(p for p in found if p in procs)

    def __enter__(self) -> DevGridEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _override(template: str, values: dict[str, Any]) -> str:
    """A Grid Engine config file (``name value`` lines) with some values replaced."""
    lines = []
    with open(template) as f:
        for line in f:
            name = line.split(" ", 1)[0]
            lines.append(f"{name} {values[name]}\n" if name in values else line)
    return "".join(lines)


def _comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def _processes() -> dict[int, tuple[int, int, str, list[bytes]]]:
    """Every other live process: pid -> (parent, session, command name, environment)."""
    found: dict[int, tuple[int, int, str, list[bytes]]] = {}
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                head, _, rest = f.read().rpartition(b")")
            fields = rest.split()
            if fields[0] in (b"Z", b"X"):
                continue
            comm = head.split(b"(", 1)[1].decode(errors="replace")
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        found[int(name)] = (int(fields[1]), int(fields[3]), comm, env)
    return found
