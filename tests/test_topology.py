"""The site on network namespaces (fwspool.testing.topology) is what the cluster tests claim it is.

A compute host has no route to the database, and even given one, the login host forwards
nothing; the login host reaches it; the root namespace refuses every test address (the guard
routes), and without them the topology refuses to start. Slurm runs a job on each compute
host, under that host's name and address.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pymongo
import pytest
from pymongo.errors import ServerSelectionTimeoutError

from fwspool.testing.topology import COMPUTE, HOSTS, LOCK_DIR, GuardRouteMissing, Topology, connect_error
from fwspool.testing.waiting import wait_for


def test_compute_hosts_cannot_reach_the_database_and_the_login_host_can(topology: Topology) -> None:
    db, port = topology.address("db"), 27017
    for node in COMPUTE:
        with topology.entered(node):
            err, took = connect_error(db, port)
        assert (err, took < 0.5) == (errno.ENETUNREACH, True), (node, err, took)
    with topology.entered("cn1"):
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            topology.db_uri, serverSelectionTimeoutMS=1000
        )
        with pytest.raises(ServerSelectionTimeoutError, match="Network is unreachable"):
            client.admin.command("ping")
        client.close()
    with topology.entered("login"):
        assert connect_error(db, port)[0] is None
        client = pymongo.MongoClient(topology.db_uri, serverSelectionTimeoutMS=3000)
        assert client.admin.command("ping")["ok"] == 1
        client.close()
    # A compute host given a route through the login host still gets nowhere: ip_forward=0.
    assert topology.run("login", "cat", "/proc/sys/net/ipv4/ip_forward").stdout == "0\n"
    topology.run(
        "cn1", "ip", "route", "add", str(topology.subnets["A"]), "via", topology.address("login", "B")
    )
    with topology.entered("cn1"):
        assert connect_error(db, port, timeout=1.0)[0] == errno.ETIMEDOUT
    # The root namespace: the guard route fails the slip at once, nothing leaves the machine.
    err, took = connect_error(db, port)
    assert err == errno.EHOSTUNREACH and took < 0.5


def test_the_topology_refuses_to_start_without_its_guard_routes(tmp_path: Path) -> None:
    topo = Topology(str(tmp_path), guard=False)
    with pytest.raises(GuardRouteMissing, match="refusing to start: the root namespace routes 10.213"):
        topo.start()
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(name in namespaces for name in topo.names.values())
    assert not [f for f in os.listdir(LOCK_DIR) if f.startswith(str(topo.subnets["A"].network_address))]


def test_slurm_runs_a_job_on_each_compute_host_under_its_name(topology: Topology, tmp_path: Path) -> None:
    slurm = topology.slurm
    assert slurm is not None
    script = tmp_path / "where.sh"
    script.write_text("#!/bin/bash\necho $(hostname) $(ip -4 -o addr show eth0 | awk '{print $4}')\n")
    for node in COMPUTE:
        job = slurm.sbatch(str(script), "-w", node, f"--output={tmp_path}/{node}.out", cwd=str(tmp_path))
        slurm.wait_for_state(job, {"COMPLETED"}, 30)
    for node in COMPUTE:
        out = tmp_path / f"{node}.out"
        wait_for(out.exists, 10, f"{node}'s output")
        assert out.read_text() == f"{node} {topology.address(node)}/24\n"


def test_what_a_killed_instance_left_behind_is_swept_by_the_next_start(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A test session killed with SIGKILL (a CI timeout) never runs stop(): its namespaces, the
    daemons in them, its munged, its guard routes and its lock stay. The next start sweeps them."""
    # Short directories, as the topology fixture's: munged's socket path must fit in sun_path
    # (a test's own tmp_path under pytest-xdist does not).
    dead, after = tmp_path_factory.mktemp("dead"), tmp_path_factory.mktemp("next")
    code = (
        "import sys, time\nfrom fwspool.testing.topology import Topology\n"
        "t = Topology(sys.argv[1]).start()\nprint(t.token, t.subnets['A'], flush=True)\ntime.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(dead)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    token, net = proc.stdout.readline().split()
    proc.kill()
    proc.wait()
    names = [f"fwt{token}-{host}" for host in HOSTS]

    def left() -> list[str]:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        return [n for n in names if n in listed]

    munged_pid = int((dead / "slurm" / "munge" / "munged.pid").read_text())
    assert left() == names and os.path.exists(f"/proc/{munged_pid}")
    with Topology(str(after)) as topo:
        assert left() == []
        if str(topo.subnets["A"]) != net:  # (1 in 63: the next instance took the same subnets)
            assert subprocess.run(["ip", "route", "show", net], capture_output=True, text=True).stdout == ""
            assert not os.path.exists(os.path.join(LOCK_DIR, net.split("/")[0] + ".lock"))
        wait_for(lambda: not os.path.exists(f"/proc/{munged_pid}") or _zombie(munged_pid), 5, "munged gone")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return True
