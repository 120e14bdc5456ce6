"""Shared fixtures: one real MongoDB-wire server per session, one database per test.

Set ``FWSPOOL_TEST_MONGODB_URI`` to use an existing server instead of starting SecantusDB.
Tests that stop or kill a server get their own from ``mongo_server_factory``.
"""

from __future__ import annotations

import os
import re
import signal
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest

from fwspool.devserver import DevServer
from fwspool.testing import commands
from fwspool.testing.devslurm import DevSlurm
from fwspool.testing.docs import doc_line
from fwspool.testing.gridengine import DevGridEngine
from fwspool.testing.launchpad import make_launchpad, throwaway_launchpad
from fwspool.testing.slurm_site import Site

# The jobs the tests start import the tests' own FireTasks (fw_tasks, dyn_tasks) from here.
commands.TASK_MODULE_DIRS.append(os.path.dirname(os.path.abspath(__file__)))

#: Test files whose tests build network namespaces (fwspool.testing.topology). Under
#: pytest-xdist (``tools/run-tests``: ``--dist loadgroup``) one worker runs them all, one after
#: another, with chaos scenario 14 (tests/test_chaos.py): a topology's start sweeps what a killed
#: instance left behind, and one test kills an instance on purpose.
NETNS_FILES = {"test_topology.py", "test_cluster.py", "test_jobflow_cluster.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in NETNS_FILES:
            item.add_marker(pytest.mark.xdist_group("netns"))


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    uri = os.environ.get("FWSPOOL_TEST_MONGODB_URI")
    if uri:
        yield uri
        return
    server = DevServer(str(tmp_path_factory.mktemp("mongo") / "data")).start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def db_name(request: pytest.FixtureRequest) -> str:
    """A fresh database name for this test (MongoDB allows at most 63 characters)."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:40]
    return f"t_{base}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def mongo_client(mongo_uri: str) -> Iterator[pymongo.MongoClient[Any]]:
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000)
    yield client
    client.close()


@pytest.fixture
def launchpad(mongo_uri: str, db_name: str) -> Iterator[Any]:
    with throwaway_launchpad(mongo_uri, db_name) as lp:
        yield lp


@pytest.fixture
def mongo_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start servers of a test's own, to stop, kill -9 and restart; all stopped afterwards."""
    servers: list[DevServer] = []

    def factory(*extra_args: str, tls_ca_file: str | None = None) -> DevServer:
        server = DevServer(
            str(tmp_path_factory.mktemp("mongo-own") / "data"), extra_args=extra_args, tls_ca_file=tls_ca_file
        )
        servers.append(server.start())
        return server

    yield factory
    for server in servers:
        server.kill()


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist's workers start with SIGINT ignored, and the processes a test starts inherit
    # that: a `qlaunch rapidfire` started by a test then ignored Ctrl-C. A user's terminal gives
    # the default; so does every test here.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def default_signals(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts with no signal blocked and SIGINT's default handler, as a terminal gives
    a user's command (the processes a test starts inherit both). A test that leaves them changed
    is named in a warning, and they are set back."""
    yield
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    handler = signal.getsignal(signal.SIGINT)
    if blocked or handler is not signal.default_int_handler:
        warnings.warn(
            f"{request.node.nodeid} left signals blocked {sorted(blocked)}, SIGINT handler {handler!r}",
            stacklevel=1,
        )
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def private_inbox(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test's own inbox (fwspool.inbox): launch ids are per LaunchPad, so pointers left by
    one test's jobs must never be read by another test's ingest."""
    path = str(tmp_path / "inbox")
    monkeypatch.setenv("FWSPOOL_INBOX", path)
    return path


@pytest.fixture
def journal_path(tmp_path: Any) -> str:
    return str(tmp_path / "journal" / "journal.sqlite3")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevSlurm]:
    """One private Slurm cluster for the session; from its first use every subprocess sees SLURM_CONF."""
    cluster = DevSlurm(str(tmp_path_factory.mktemp("slurm"))).start()
    saved = {k: os.environ.get(k) for k in cluster.env}
    os.environ.update(cluster.env)
    try:
        yield cluster
    finally:
        cluster.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def gridengine_cell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevGridEngine]:
    """One private Grid Engine cell for the session (about 3 s to start); from its first use
    every subprocess sees its SGE_ROOT, SGE_CELL and ports."""
    cell = DevGridEngine(str(tmp_path_factory.mktemp("sge"))).start()
    saved = {k: os.environ.get(k) for k in cell.env}
    os.environ.update(cell.env)
    try:
        yield cell
    finally:
        cell.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def site(tmp_path: Any, mongo_uri: str, db_name: str, slurm_cluster: DevSlurm) -> Iterator[Site]:
    """A user's home on the private Slurm, with the quick start's ``rocket_launch`` line in its
    queue adapter; its daemon stopped and its jobs cancelled afterwards. (Grid Engine's tests
    have a ``site`` of their own.)"""
    s = Site(
        tmp_path, mongo_uri, db_name, slurm_cluster, doc_line("rocket_launch: $HOME/fw/.venv/bin/fwspool")
    )
    yield s
    s.stop_sync()
    slurm_cluster.run("scancel", "--user=root", check=False)


@pytest.fixture
def twins(mongo_uri: str, db_name: str) -> Iterator[tuple[Any, Any]]:
    """Two fresh LaunchPads for twin runs: FireWorks' own offline path on the first (the
    reference), fwspool on the second."""
    ref = make_launchpad(mongo_uri, db_name + "_r")
    fws = make_launchpad(mongo_uri, db_name + "_f")
    yield ref, fws
    for lp in (ref, fws):
        lp.connection.drop_database(lp.name)
        lp.connection.close()


@pytest.fixture
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A site on network namespaces (fwspool.testing.topology): database, login and two compute
    hosts, Slurm across them; torn down by pid and by its own namespaces."""
    from fwspool.testing.topology import Topology

    topo = Topology(str(tmp_path_factory.mktemp("net"))).start()
    try:
        yield topo
    finally:
        topo.stop()


@pytest.fixture
def on_login(topology: Any) -> Iterator[Any]:
    """The test runs on the topology's login host: its sockets, the processes it starts (qlaunch,
    sync, Slurm's commands) and pymongo's threads are there, as a user's would be."""
    with topology.entered("login"):
        yield topology
