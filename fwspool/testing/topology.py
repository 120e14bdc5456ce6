"""A small HPC site on one machine, built from Linux network namespaces (issue 19).

::

              switch namespace ``sw`` (two bridges, no address, forwards nothing)
     segment A (services): brA                    segment B (compute): brB
        |               |                          |             |            |
     db eth0        login eth0 -------------- login eth1      cn1 eth0     cn2 eth0
     A.2            A.3        (ip_forward=0)  B.3            B.11         B.12
     SecantusDB     slurmctld                                 slurmd -N cn1 slurmd -N cn2

The compute hosts have no route to segment A, and the login host would not forward for them
anyway (``net.ipv4.ip_forward=0``): "the compute node needs no database" is then a fact the
tests run on, not a claim. Slurm runs across the hosts (:class:`NetnsSlurm`, the private cluster
of :mod:`fwspool.testing.devslurm` with its daemons placed in the namespaces by ``nsenter --net``: ``ip
netns exec`` remounts /sys, and slurmd then dies with "Unable to initialize cgroup plugin"). One
``munged`` in the root namespace serves every host through its socket path. The filesystem is
shared, as an HPC site's home directory is.

Safety, enforced here:

- Before anything is created, the root namespace gets an ``unreachable`` route for each of the
  two subnets, checked with ``ip route get``; without them :meth:`Topology.start` refuses
  (:class:`GuardRouteMissing`). A client that forgot to enter a namespace would otherwise send
  its packets out of the machine through the default route.
- Every client runs inside a namespace: :meth:`Topology.run`, :meth:`Topology.popen`, or a
  thread moved into one by :meth:`Topology.entered` (a pytest test moves itself to the login
  host, as the user who runs ``qlaunch`` there).
- Names and subnets are this instance's own: namespaces ``fwt<hex>-<host>``, subnets claimed with
  a lock file in :data:`LOCK_DIR` and checked against the root namespace's routes, so two test
  sessions cannot collide. :meth:`Topology.stop` ends processes by pid and by the namespaces it
  created, never by a process name.

There is no ``netem`` in the kernel these tests run on: a link is cut with ``ip link set ...
down`` (:meth:`Topology.cut`) or by a silent ``nft`` drop (:meth:`Topology.drop`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from typing import Any

from fwspool.devserver import DevServer
from fwspool.testing.devslurm import DevSlurm

__all__ = ["COMPUTE", "HOSTS", "LOCK_DIR", "GuardRouteMissing", "NetnsSlurm", "Topology", "available"]

#: The hosts, in the order they are made; ``sw`` is the switch.
HOSTS = ("sw", "db", "login", "cn1", "cn2")
COMPUTE = ("cn1", "cn2")
#: Where instances claim their subnets (one lock file per subnet pair, holding the owner's pid).
LOCK_DIR = "/run/fwspool-topology"
#: The subnets are 10.<SECOND>.<2k>.0/24 (services) and 10.<SECOND>.<2k+1>.0/24 (compute).
SECOND_OCTET = 213
_CLONE_NEWNET = 0x40000000
#: Each host's address, as the last octet on its segment (login has one on each).
_LAST_OCTET = {"db": 2, "login": 3, "cn1": 11, "cn2": 12}
#: host, interface in the host, switch port, segment: every cable of the site.
CABLES = (
    ("db", "eth0", "db0", "A"),
    ("login", "eth0", "login0", "A"),
    ("login", "eth1", "login1", "B"),
    ("cn1", "eth0", "cn1", "B"),
    ("cn2", "eth0", "cn2", "B"),
)


#: Each host: no IPv4 forwarding (the login host must not route compute traffic), no IPv6.
_NO_FORWARDING = (
    "echo 0 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"
    " && echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"
)


class GuardRouteMissing(RuntimeError):
    """The root namespace would route a test subnet out of the machine: refuse to start."""


def available() -> str | None:
    """None when this machine can build the topology, else what is missing (one line)."""
    if os.geteuid() != 0:
        return "the network topology needs root (network namespaces, slurmd)"
    for tool in ("ip", "nsenter", "unshare", "nft"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            return f"{tool} is not installed (apt-get install iproute2 util-linux nftables)"
    if not os.path.exists("/proc/sys/net/ipv6"):
        return "this kernel has no IPv6 settings to turn off (/proc/sys/net/ipv6)"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class NetnsSlurm(DevSlurm):
    """:class:`~fwspool.testing.devslurm.DevSlurm` across the topology's hosts: slurmctld on the login
    host (SlurmctldHost ``login``), ``slurmd -N cnX`` on each compute host, each under its own
    hostname (``unshare --uts``), munged in the root namespace; client commands run on the login
    host. The timeouts are short so that a node failure is seen in seconds: a silent node is
    DOWN after ``SlurmdTimeout`` (10 s) and its jobs are requeued or end NODE_FAIL; finished jobs
    stay in ``scontrol show job`` for ``MinJobAge`` (600 s)."""

    cluster_name = "fwspool-net"

    def __init__(self, topology: Topology, base_dir: str, *, cpus: int = 2) -> None:
        super().__init__(base_dir, cpus=cpus)
        self.topology = topology
        self.node_name = "login"  # where slurmctld runs: its host name must be SlurmctldHost's
        self.nodes = COMPUTE

    def _conf_settings(self) -> dict[str, object]:
        settings = super()._conf_settings()
        t = self.topology
        settings.update(
            {
                "SlurmctldHost": f"login({t.address('login', 'B')})",
                # Both slurmd use the same port, each in its own namespace; files need %n.
                "SlurmdSpoolDir": self._path("spool", "%n"),
                "SlurmdPidFile": self._path("slurmd-%n.pid"),
                "SlurmdLogFile": self._path("log", "slurmd-%n.log"),
                "SlurmdTimeout": 10,
                "SlurmctldTimeout": 10,
                "MessageTimeout": 5,
                "TCPTimeout": 2,
                "MinJobAge": 600,
                "SchedulerParameters": "bf_interval=2,sched_interval=2",
            }
        )
        return settings

    def _conf_nodes(self) -> str:
        t = self.topology
        nodes = "".join(
            f"NodeName={n} NodeAddr={t.address(n, 'B')} CPUs={self.cpus} RealMemory=500 State=UNKNOWN\n"
            for n in self.nodes
        )
        return nodes + (
            f"PartitionName={self.partition} Nodes={','.join(self.nodes)} Default=YES MaxTime=INFINITE State=UP\n"
        )

    def _start_nodes(self, deadline: float) -> None:
        for node in self.nodes:
            os.makedirs(self._path("spool", node), mode=0o700, exist_ok=True)
            self._spawn("slurmd", ["-D", "-c", "-f", self.conf_path, "-N", node], key=f"slurmd-{node}")
        self._wait(deadline, self._nodes_idle, f"nodes {', '.join(self.nodes)} idle")

    def start_node(self, node: str) -> None:
        """Start a node's slurmd again (after :meth:`Topology.crash`); it returns to service
        when it registers (``ReturnToService=2``)."""
        self._spawn("slurmd", ["-D", "-f", self.conf_path, "-N", node], key=f"slurmd-{node}")

    def _nodes_idle(self) -> bool:
        res = self.run("sinfo", "-h", "-N", "-t", "idle", "-o", "%N", check=False)
        return set(res.stdout.split()) >= set(self.nodes)

    def node_state(self, node: str) -> str:
        """``idle``, ``allocated``, ``down*``... as sinfo says it."""
        return self.run("sinfo", "-h", "-N", "-n", node, "-o", "%t").stdout.strip()

    def job_record(self, job_id: str) -> dict[str, str]:
        """``scontrol show job``'s fields of one job (JobState, Reason, ExitCode, NodeList...)."""
        out = self.run("scontrol", "show", "job", "-o", job_id, check=False).stdout
        return dict(f.split("=", 1) for f in out.split() if "=" in f)

    def daemon_prefix(self, key: str) -> list[str]:
        host = {"slurmctld": "login"}.get(key, key.removeprefix("slurmd-"))
        if host not in HOSTS:
            return []  # munged: the root namespace, reached by its socket path
        return [
            *self.topology.prefix(host),
            "unshare",
            "--uts",
            "sh",
            "-c",
            f'hostname {host} && exec "$@"',
            "sh",
        ]

    def client_prefix(self) -> list[str]:
        return self.topology.prefix("login")


class Topology:
    """The site: :meth:`start`, use, :meth:`stop` (or ``with``). ``base_dir`` holds the Slurm
    cluster's and the database's files. ``guard=False`` leaves out the guard routes, and then
    :meth:`start` refuses to start (what the test of the guard checks)."""

    def __init__(self, base_dir: str, *, guard: bool = True, cpus: int = 2) -> None:
        self.base_dir = os.path.abspath(base_dir)
        self.guard = guard
        self.cpus = cpus
        self.token = f"{random.getrandbits(24):06x}"
        self.names = {h: f"fwt{self.token}-{h}" for h in HOSTS}
        self.subnets: dict[str, ipaddress.IPv4Network] = {}
        self._lock_path: str | None = None
        self._guarded: list[str] = []
        self._created: list[str] = []
        self._dropped: set[tuple[str, str]] = set()
        self.db: DevServer | None = None
        self.slurm: NetnsSlurm | None = None

    # -- addresses and commands ----------------------------------------------------------------

    def ns(self, host: str) -> str:
        return self.names[host]

    def address(self, host: str, segment: str = "A") -> str:
        """A host's address on segment ``A`` (services) or ``B`` (compute)."""
        seg = "B" if host in COMPUTE else segment
        return str(self.subnets[seg].network_address + _LAST_OCTET[host])

    @property
    def db_uri(self) -> str:
        assert self.db is not None
        return self.db.uri

    def prefix(self, host: str) -> list[str]:
        """The command that runs what follows on ``host`` (its network namespace only)."""
        return ["nsenter", f"--net=/run/netns/{self.ns(host)}"]

    def run(self, host: str, *cmd: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("timeout", 60)
        return subprocess.run([*self.prefix(host), *cmd], capture_output=True, text=True, check=check, **kw)

    def popen(self, host: str, cmd: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen([*self.prefix(host), *cmd], **kw)

    @contextlib.contextmanager
    def entered(self, host: str) -> Iterator[None]:
        """Move the calling thread into ``host``'s network namespace for the ``with`` block.

        Sockets it opens, processes it starts and threads it starts (pymongo's monitors) are on
        that host; the thread comes back to its own namespace at the end."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(f"/run/netns/{self.ns(host)}", os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)

    # -- start and stop ------------------------------------------------------------------------

    def start(self) -> Topology:
        missing = available()
        if missing:
            raise RuntimeError(missing)
        sweep_all()  # what instances killed before their stop() left behind
        self._claim_subnets()
        try:
            if self.guard:
                for net in self.subnets.values():
                    _ip("route", "replace", "unreachable", str(net))
                    self._guarded.append(str(net))
            self.check_guard()
            self._build_network()
            os.makedirs(self.base_dir, exist_ok=True)
            self.db = DevServer(
                os.path.join(self.base_dir, "db", "data"),
                host=self.address("db"),
                port=27017,
                prefix=tuple(self.prefix("db")),
            )
            os.makedirs(os.path.dirname(self.db.storage_path), exist_ok=True)
            with self.entered("login"):  # the readiness check is a client: on the login host
                self.db.start()
            self.slurm = NetnsSlurm(self, os.path.join(self.base_dir, "slurm"), cpus=self.cpus)
            self.slurm.start()
        except BaseException:
            self.stop()
            raise
        return self

    def check_guard(self) -> None:
        """Each subnet must be unreachable from the root namespace (``ip route get``)."""
        for net in self.subnets.values():
            probe = str(net.network_address + 2)
            res = _ip("route", "get", probe, check=False)
            if res.returncode == 0 or "No route to host" not in res.stderr:
                raise GuardRouteMissing(
                    f"refusing to start: the root namespace routes {probe} ({res.stdout.strip()}); "
                    f"add `ip route add unreachable {net}` first, so that no test packet can leave the machine"
                )

    def _claim_subnets(self) -> None:
        """Two /24s no route or address of the root namespace overlaps, held by a lock file."""
        os.makedirs(LOCK_DIR, exist_ok=True)
        taken = [
            ipaddress.ip_network(line.split()[0], strict=False)
            for line in _ip("-4", "route", "show").stdout.splitlines()
            if line.split() and line.split()[0] not in ("default", "unreachable")
        ] + [
            ipaddress.ip_interface(line.split()[3]).network
            for line in _ip("-o", "-4", "addr", "show").stdout.splitlines()
        ]
        for k in random.sample(range(64, 127), 63):
            a = ipaddress.IPv4Network(f"10.{SECOND_OCTET}.{2 * k}.0/24")
            b = ipaddress.IPv4Network(f"10.{SECOND_OCTET}.{2 * k + 1}.0/24")
            if any(n.overlaps(a) or n.overlaps(b) for n in taken):
                continue
            lock = os.path.join(LOCK_DIR, f"{a.network_address}.lock")
            if not self._take_lock(lock):
                continue
            self._lock_path = lock
            self.subnets = {"A": a, "B": b}
            return
        raise RuntimeError(f"no free subnet pair 10.{SECOND_OCTET}.x.0/24 (see {LOCK_DIR})")

    def _take_lock(self, path: str) -> bool:
        """The lock file holds the owner's pid and namespace token; a dead owner's is swept."""
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if _owner_alive(path):
                    return False  # another live instance holds it
                sweep(path)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {self.token} {self.base_dir}\n")
            return True
        return False

    def _build_network(self) -> None:
        existing = set(_ip("netns", "list").stdout.split())
        for host in HOSTS:
            name = self.ns(host)
            if name in existing:
                raise RuntimeError(f"network namespace {name} exists already")
            _ip("netns", "add", name)
            self._created.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
            # /proc/sys/net is the opener's namespace's: written from inside, it is this host's.
            self.run(host, "sh", "-c", _NO_FORWARDING)
        sw = self.ns("sw")
        for br in ("brA", "brB"):
            _ip("-n", sw, "link", "add", br, "type", "bridge")  # STP off: ports forward at once
            _ip("-n", sw, "link", "set", br, "up")
        for host, ifname, port, seg in CABLES:
            # Made inside the two namespaces: no interface ever appears in the root namespace.
            _ip(
                "link",
                "add",
                ifname,
                "netns",
                self.ns(host),
                "type",
                "veth",
                "peer",
                "name",
                port,
                "netns",
                sw,
            )
            _ip("-n", sw, "link", "set", port, "master", f"br{seg}", "up")
            _ip("-n", self.ns(host), "addr", "add", f"{self.address(host, seg)}/24", "dev", ifname)
            _ip("-n", self.ns(host), "link", "set", ifname, "up")

    def stop(self) -> None:
        """Everything this instance made goes: its daemons by pid, every process left in its
        namespaces, the namespaces, the guard routes, the subnet lock. Idempotent."""
        if self.slurm is not None:
            with contextlib.suppress(Exception):
                self.slurm.stop()
        if self.db is not None:
            self.db.kill()
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        for name in reversed(self._created):
            _ip("netns", "del", name, check=False)
        self._created.clear()
        for net in self._guarded:
            _ip("route", "del", "unreachable", net, check=False)
        self._guarded.clear()
        if self._lock_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._lock_path)
            self._lock_path = None

    def pids(self, hosts: Sequence[str] | None = None) -> list[int]:
        """The processes in these hosts' namespaces (all of this instance's by default)."""
        found: list[int] = []
        for host in hosts or HOSTS:
            if self.ns(host) not in self._created:
                continue
            out = _ip("netns", "pids", self.ns(host), check=False).stdout
            found += [int(p) for p in out.split() if int(p) != os.getpid()]
        return found

    def __enter__(self) -> Topology:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------------------

    def crash(self, node: str) -> list[int]:
        """A node dies: SIGKILL its slurmd and every process in its namespace (the job, its
        slurmstepd). Slurm notices after SlurmdTimeout. Returns the pids killed."""
        assert self.slurm is not None and node in COMPUTE
        proc = self.slurm.procs.pop(f"slurmd-{node}", None)
        killed: list[int] = []
        for _ in range(50):
            pids = self.pids([node])
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)
        if proc is not None:
            proc.wait(10)
        return sorted(set(killed))

    def cut(self, host: str, *, up: bool = False) -> None:
        """Pull (``up=False``) or plug back a host's cables at the switch: silent, like a cut cable."""
        for h, _ifname, port, _seg in CABLES:
            if h == host:
                _ip("-n", self.ns("sw"), "link", "set", port, "up" if up else "down")

    def drop(self, host: str, source: str, *, on: bool = True) -> None:
        """Make ``host`` silently drop every packet from ``source`` (an nft rule), or stop doing so."""
        table = f"fwspool_drop_{source.replace('.', '_')}"
        if on:
            rules = (
                f"table inet {table} {{\n  chain input {{\n    type filter hook input priority 0;\n"
                f"    ip saddr {source} drop\n  }}\n}}\n"
            )
            self.run(host, "nft", "-f", "-", input=rules)
            self._dropped.add((host, table))
        else:
            self.run(host, "nft", "delete", "table", "inet", table)
            self._dropped.discard((host, table))


def _owner_alive(lock: str) -> bool:
    try:
        with open(lock) as f:
            os.kill(int(f.read().split()[0]), 0)
        return True
    except (OSError, ValueError, IndexError):
        return False


def sweep(lock: str) -> None:
    """What an instance that died without :meth:`Topology.stop` (SIGKILL, a CI timeout) left:
    the processes in its namespaces (found by the token in its lock file), the namespaces, its
    guard routes, the lock. Only a lock whose owner is dead is swept."""
    if _owner_alive(lock):
        return
    try:
        with open(lock) as f:
            _pid, token, base_dir = f.read().split(maxsplit=2)
    except (OSError, ValueError):
        token = base_dir = ""
    if base_dir:
        _kill_munged(os.path.join(base_dir.strip(), "slurm", "munge"))
    if token:
        for host in HOSTS:
            name = f"fwt{token}-{host}"
            out = _ip("netns", "pids", name, check=False).stdout
            for pid in (int(p) for p in out.split()):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            _ip("netns", "del", name, check=False)
    a = ipaddress.IPv4Network(f"{os.path.basename(lock).removesuffix('.lock')}/24")
    for net in (a, ipaddress.IPv4Network((int(a.network_address) + 256, 24))):
        _ip("route", "del", "unreachable", str(net), check=False)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(lock)


def _kill_munged(munge_dir: str) -> None:
    """The munged of a dead instance (root namespace): by its pid file, if that pid is still a
    munged on this instance's socket."""
    try:
        with open(os.path.join(munge_dir, "munged.pid")) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (OSError, ValueError):
        return
    if b"munged" in cmdline and os.path.join(munge_dir, "munge.socket.2").encode() in cmdline:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def sweep_all() -> None:
    """:func:`sweep` every lock in :data:`LOCK_DIR` whose owner is dead (every start does this)."""
    if os.path.isdir(LOCK_DIR):
        for name in os.listdir(LOCK_DIR):
            if name.endswith(".lock"):
                sweep(os.path.join(LOCK_DIR, name))


def connect_error(host: str, port: int, timeout: float = 5.0) -> tuple[int | None, float]:
    """Try a TCP connection from the calling thread's namespace: (errno or None, seconds)."""
    import socket

    t0 = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None, time.monotonic() - t0
    except TimeoutError:
        return errno.ETIMEDOUT, time.monotonic() - t0
    except OSError as exc:
        return exc.errno, time.monotonic() - t0
