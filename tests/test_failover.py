"""What a replica set shows the driver during a failover, injected with `failCommand` on a real
server (SecantusDB with --enable-test-commands, as mongod): each is one line and exit 75, retried
by --watch, and loses nothing; and every write the pusher makes carries a write concern that a
failover cannot roll back."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pymongo
import pytest
from fireworks import Firework, ScriptTask, Workflow
from pymongo import monitoring

from fwspool.ingest import Ingester
from fwspool.journal import Journal
from fwspool.push import Pusher
from fwspool.testing.commands import fwspool_cmd, reserved_and_run
from fwspool.testing.launchpad import make_launchpad, snapshot, uplink_for

FAULTS = {
    "writeConcernError": (
        {"writeConcernError": {"code": 64, "errmsg": "waiting for replication timed out"}},
        "did not confirm a write",
    ),
    "stepdown": ({"errorCode": 10107}, "NotWritablePrimary"),
    "repl_state_change": ({"errorCode": 11602}, "InterruptedDueToReplStateChange"),
    "shutdown": ({"errorCode": 91}, "ShutdownInProgress"),
    "dropped_connection": ({"closeConnection": True}, "cannot reach MongoDB"),
}


def workflow() -> Workflow:
    a = Firework(ScriptTask.from_str("echo a"), name="a", fw_id=1)
    b = Firework(ScriptTask.from_str("echo b"), name="b", fw_id=2)
    return Workflow([a, b], {1: [2]})


def ran_offline(lp: Any, launch_dir: Path) -> None:
    lp.add_wf(workflow())
    reserved_and_run(lp, str(launch_dir))


def push_cli(journal: str, uri: str, db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        fwspool_cmd("push", "--journal", journal, "--uri", uri, "--name", db),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_failover_error_is_one_line_exit_75_and_the_next_push_loses_nothing(
    fault: str, mongo_server_factory: Any, mongo_uri: str, db_name: str, tmp_path: Path, journal_path: str
) -> None:
    server = mongo_server_factory("--enable-test-commands")
    lp = make_launchpad(server.uri, db_name)
    ran_offline(lp, tmp_path / "launch")
    with Journal.open(journal_path) as journal:
        Ingester(journal, roots=[str(tmp_path)]).run_pass()
    admin: Any = pymongo.MongoClient(server.uri).admin
    data, words = FAULTS[fault]
    admin.command(
        {
            "configureFailPoint": "failCommand",
            "mode": "alwaysOn",
            "data": {"failCommands": ["update"], **data},
        }
    )
    try:
        failed = push_cli(journal_path, server.uri, db_name)
    finally:
        admin.command({"configureFailPoint": "failCommand", "mode": "off"})
    assert failed.returncode == 75, failed.stderr
    assert failed.stderr.count("\n") == 1 and words in failed.stderr and "Traceback" not in failed.stderr
    ok = push_cli(journal_path, server.uri, db_name)
    assert ok.returncode == 0, ok.stderr
    # The same as a clean run of the same workflow.
    clean = make_launchpad(mongo_uri, db_name + "_c")
    try:
        ran_offline(clean, tmp_path / "clean")
        with Journal.open(str(tmp_path / "clean.sqlite3")) as journal:
            Ingester(journal, roots=[str(tmp_path / "clean")]).run_pass()
            uplink = uplink_for(mongo_uri, db_name + "_c")
            try:
                Pusher(journal, uplink).run_pass()
            finally:
                uplink.close()
        dirs = (str(tmp_path / "launch"), str(tmp_path / "clean"))
        assert snapshot(lp, dirs) == snapshot(clean, dirs)
        assert lp.get_fw_by_id(2).state == "READY"
    finally:
        clean.connection.drop_database(db_name + "_c")


class Writes(monitoring.CommandListener):
    def __init__(self) -> None:
        self.concerns: list[tuple[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("insert", "update", "delete", "findAndModify"):
            self.concerns.append((event.command_name, event.command.get("writeConcern")))

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


@pytest.mark.parametrize("uri_option", ["", "&w=1"])
def test_every_write_of_a_push_is_majority_and_journaled_unless_the_uri_says_otherwise(
    uri_option: str, launchpad: Any, mongo_uri: str, tmp_path: Path, journal_path: str
) -> None:
    ran_offline(launchpad, tmp_path / "launch")
    writes = Writes()
    with Journal.open(journal_path) as journal:
        Ingester(journal, roots=[str(tmp_path)]).run_pass()
        uplink = uplink_for(mongo_uri + uri_option, launchpad.db.name, event_listeners=[writes])
        try:
            Pusher(journal, uplink).run_pass()
        finally:
            uplink.close()
    assert launchpad.get_fw_by_id(2).state == "READY"
    assert writes.concerns, "the push wrote nothing?"
    for command, concern in writes.concerns:
        if uri_option:
            assert concern == {"w": 1}, (command, concern)
        else:
            assert concern is not None and concern["w"] == "majority" and concern["j"] is True, (
                command,
                concern,
            )
            assert concern["wtimeout"] >= 30_000
