"""Retention (fwspool.journal.retention) through the command line, against the real server: what
``fwspool prune`` drops and keeps, the space it gives back, why pruned events read again cannot
change the LaunchPad, quarantined copies, and ``sync``'s daily prune (``--retain``)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fireworks import Firework, FWAction, ScriptTask

from fwspool.events import Checkpoint, Completed, Exited, Ping, Started, utcnow
from fwspool.journal import Journal
from fwspool.reserve import reserve_offline
from fwspool.spool import SpoolWriter
from fwspool.testing.commands import invoke, unstamped
from fwspool.testing.journal_file import query


def spooled_launch(
    lp: Any, d: Path, *, pings: int, checkpoint_bytes: int = 100, end: bool = True
) -> tuple[int, int, str]:
    """A Firework reserved offline into ``d`` whose job appended ``pings`` pings (every tenth a
    checkpoint of ``checkpoint_bytes``) and, with ``end``, completed; (fw_id, launch_id, spool path)."""
    lp.add_wf(Firework(ScriptTask.from_str("echo hi"), name=d.name))
    d.mkdir(parents=True)
    fw, launch_id = reserve_offline(lp, str(d))
    t0 = utcnow() - dt.timedelta(hours=2)
    with SpoolWriter(str(d), launch_id, fw.fw_id) as w:
        w.append(Started(started_on=t0, host="nid001", ip="10.0.0.1"))
        for i in range(pings):
            when = t0 + dt.timedelta(seconds=i)
            if i % 10 == 9:
                w.append(
                    Checkpoint(checkpoint={"_task_n": 0, "state": "x" * checkpoint_bytes}, ping_time=when)
                )
            else:
                w.append(Ping(ping_time=when))
        if end:
            done = t0 + dt.timedelta(seconds=pings)
            action = FWAction(stored_data={"fw": d.name}).to_dict()
            w.append(Completed(state="COMPLETED", action=action, completed_on=done))
            w.append(Exited(returncode=0))
    return int(fw.fw_id), launch_id, w.path


def events_by_type(journal_path: str, launch_id: int) -> dict[str, int]:
    rows = query(
        journal_path, "SELECT type, count(*) AS n FROM events WHERE launch_id = ? GROUP BY type", (launch_id,)
    )
    return {r["type"]: r["n"] for r in rows}


def size_on_disk(journal_path: str) -> int:
    return sum(os.path.getsize(p) for p in (journal_path, journal_path + "-wal") if os.path.exists(p))


def launchpad_documents(lp: Any) -> dict[str, list[dict[str, Any]]]:
    """Every document fwspool may write, exactly as stored."""
    return {
        name: list(lp.db[name].find({}, sort=[("_id", 1)]))
        for name in ("launches", "fireworks", "workflows", "offline_runs")
    }


def cli(*args: str) -> Any:
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    return res


def journal_of_an_earlier_release(path: str) -> None:
    """A schema-3 journal as fwspool made it before new journals started with incremental vacuum
    (``auto_vacuum`` NONE): the first prune converts it."""
    from fwspool.journal.schema import SCHEMA_VERSION, schema_sql

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA journal_mode = WAL")
        con.executescript(schema_sql())
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        assert con.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    os.chmod(path, 0o600)


@pytest.mark.parametrize("made", ["new", "earlier"])
def test_prune_drops_the_pings_of_finished_pushed_launches_only_and_the_file_shrinks(
    launchpad: Any, mongo_uri: str, db_name: str, tmp_path: Path, journal_path: str, made: str
) -> None:
    if made == "earlier":
        journal_of_an_earlier_release(journal_path)
    runs = tmp_path / "runs"
    _, done, _ = spooled_launch(launchpad, runs / "done", pings=3000, checkpoint_bytes=2000)
    _, running, _ = spooled_launch(launchpad, runs / "running", pings=50, end=False)
    _, torn, torn_spool = spooled_launch(launchpad, runs / "torn", pings=50)
    with open(torn_spool, "ab") as f:  # a record's first bytes: its writer is still appending
        f.write(open(torn_spool, "rb").read(20))
    forgotten_fw, forgotten, _ = spooled_launch(launchpad, runs / "forgotten", pings=50)
    db = ("--journal", journal_path)
    sync = ("sync", *db, "--uri", mongo_uri, "--name", db_name, "--root", str(runs), "--retain", "0")
    assert "prune:" not in cli(*sync).output  # --retain 0: sync keeps everything
    cli("forget", *db, str(forgotten_fw))
    assert launchpad.get_fw_by_id(forgotten_fw).state == "COMPLETED"
    kept = {lid: events_by_type(journal_path, lid) for lid in (running, torn, forgotten)}
    offsets = query(journal_path, "SELECT path, committed_offset, status FROM sources ORDER BY path")
    assert query(journal_path, "SELECT count(*) AS n FROM events WHERE pushed_at IS NULL") == [{"n": 0}]

    # Nothing has been over for 30 days yet.
    res = cli("prune", *db)
    assert unstamped(res.output).startswith("prune: 0 pings and checkpoints of 0 finished launches dropped")
    assert events_by_type(journal_path, done)["ping"] == 2700

    before = size_on_disk(journal_path)
    res = cli("prune", *db, "--older-than", "0")
    assert unstamped(res.output).startswith(
        "prune: 3000 pings and checkpoints of 1 finished launches dropped"
    )
    # A new journal starts with incremental vacuum; one an earlier release made is converted once.
    assert ("(converted to incremental vacuum, once)" in res.output) == (made == "earlier")
    after = size_on_disk(journal_path)
    assert after < before / 4, (before, after)  # 3000 events, 600 kB of checkpoints: most of it
    # Kept for the record: the launch's start and end; every other launch whole; every offset.
    assert events_by_type(journal_path, done) == {"started": 1, "completed": 1, "exited": 1}
    assert {lid: events_by_type(journal_path, lid) for lid in (running, torn, forgotten)} == kept
    assert query(journal_path, "SELECT path, committed_offset, status FROM sources ORDER BY path") == offsets
    with sqlite3.connect(journal_path) as con:
        assert con.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL from now on

    again = cli("prune", *db, "--older-than", "0")
    assert unstamped(again.output).startswith("prune: 0 pings and checkpoints of 0 finished launches")
    assert "converted" not in again.output


def test_pruned_pings_read_again_come_back_as_no_ops_and_the_launchpad_does_not_change(
    launchpad: Any, mongo_uri: str, db_name: str, tmp_path: Path, journal_path: str
) -> None:
    """A pruned launch's file is not read again; a copy at a new path is read from 0, and the
    pings and checkpoints it brings back cannot touch a launch that is final on the LaunchPad."""
    runs = tmp_path / "runs"
    fw_id, launch_id, spool = spooled_launch(launchpad, runs / "done", pings=200)
    db = ("--journal", journal_path)
    sync = ("sync", *db, "--uri", mongo_uri, "--name", db_name, "--retain", "0")
    cli(*sync, "--root", str(runs))
    assert launchpad.get_fw_by_id(fw_id).state == "COMPLETED"
    assert "200 pings and checkpoints of 1" in cli("prune", *db, "--older-than", "0").output
    documents = launchpad_documents(launchpad)

    # The same file replaced under its name (a new inode): a final launch's files are not read.
    shutil.copy(spool, spool + ".new")
    os.replace(spool + ".new", spool)
    res = cli(*sync, "--root", str(runs))
    assert res.output == ""  # nothing new: the pass says nothing
    assert events_by_type(journal_path, launch_id) == {"started": 1, "completed": 1, "exited": 1}

    # A copy of the launch directory at another path is read from 0: the pruned events return.
    shutil.copytree(runs / "done", tmp_path / "copy" / "done")
    res = cli(*sync, "--root", str(tmp_path / "copy"))
    assert " 200 new events, " in res.output, res.output
    assert events_by_type(journal_path, launch_id) == {
        "started": 1,
        "ping": 180,
        "checkpoint": 20,
        "completed": 1,
        "exited": 1,
    }
    assert query(journal_path, "SELECT count(*) AS n FROM events WHERE pushed_at IS NULL") == [{"n": 0}]
    assert launchpad_documents(launchpad) == documents  # field by field, times included
    assert "200 pings and checkpoints of 1" in cli("prune", *db, "--older-than", "0").output


def test_prune_empties_old_quarantined_copies_and_keeps_their_rows(
    launchpad: Any, mongo_uri: str, db_name: str, tmp_path: Path, journal_path: str
) -> None:
    runs = tmp_path / "runs"
    _, _, spool = spooled_launch(launchpad, runs / "damaged", pings=5)
    data = open(spool, "rb").read()
    with open(spool, "wb") as f:  # damage in the middle of the file: quarantined, the rest read
        f.write(data[:200] + b"#" * 64 + data[200:])
    db = ("--journal", journal_path)
    cli("ingest", *db, "--root", str(runs))
    rows = query(journal_path, 'SELECT path, "offset", length, length(bytes) AS kept FROM quarantine')
    assert len(rows) == 1 and rows[0]["kept"] > 0

    assert " 0 quarantined copies (0 B) dropped" in cli("prune", *db).output  # younger than 30 days
    res = cli("prune", *db, "--older-than", "0")
    assert f" 1 quarantined copies ({rows[0]['kept']} B) dropped" in res.output
    assert query(journal_path, 'SELECT path, "offset", length, length(bytes) AS kept FROM quarantine') == [
        {**rows[0], "kept": 0}
    ]
    # The range is still known, and still read again from the spool file by --retry-quarantined.
    retried = cli("ingest", *db, "--retry-quarantined")
    assert f"still quarantined: {spool} at offset {rows[0]['offset']}" in retried.output


def test_sync_prunes_once_a_day_with_its_retain_horizon_and_prune_waits_for_the_daemon(
    launchpad: Any, mongo_uri: str, db_name: str, tmp_path: Path, journal_path: str
) -> None:
    runs = tmp_path / "runs"
    _, launch_id, _ = spooled_launch(launchpad, runs / "done", pings=100)
    db = ("--journal", journal_path)
    sync = ("sync", *db, "--uri", mongo_uri, "--name", db_name, "--root", str(runs))
    assert "prune:" not in cli(*sync).output  # nothing over for 30 days: a line only when it drops
    assert query(journal_path, "SELECT count(*) AS n FROM meta WHERE key = 'last_prune'") == [{"n": 1}]
    # The launch ended 31 days ago, and the last prune was a day ago.
    long_ago = (utcnow() - dt.timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    day_ago = (utcnow() - dt.timedelta(days=1, minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    with sqlite3.connect(journal_path) as con:
        con.execute("UPDATE launches SET terminal_at = ?", (long_ago,))
        con.execute("UPDATE meta SET value = ? WHERE key = 'last_prune'", (day_ago,))
    assert "prune:" not in cli(*sync, "--retain", "0").output  # 0: keep everything
    assert events_by_type(journal_path, launch_id)["ping"] == 90
    assert "prune:" not in cli(*sync, "--retain", "32d").output  # over for 31 days only
    assert events_by_type(journal_path, launch_id)["ping"] == 90
    assert "prune:" not in cli(*sync).output  # that was today's prune: the next is tomorrow
    assert events_by_type(journal_path, launch_id)["ping"] == 90
    with sqlite3.connect(journal_path) as con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'last_prune'", (day_ago,))
    res = cli(*sync)
    assert "prune: 100 pings and checkpoints of 1 finished launches dropped" in res.output
    assert "ping" not in events_by_type(journal_path, launch_id)

    # fwspool prune takes the journal as sync does: not while a daemon holds it, unless it waits.
    with Journal.open(journal_path) as journal, journal.lock("push"):
        busy = invoke("prune", *db)
    assert busy.exit_code == 75 and "another fwspool push" in busy.output, busy.output
    bad = invoke("prune", *db, "--older-than", "a while")
    assert bad.exit_code == 2 and "is not an age" in bad.output


def test_prune_and_the_daily_prune_drop_jobflow_outputs_cached_before_the_horizon(
    launchpad: Any, mongo_uri: str, db_name: str, tmp_path: Path, journal_path: str, monkeypatch: Any
) -> None:
    """The output cache's files older than AGE go, with their job's directory once empty; younger
    ones stay. (A child that needs a pruned output: tests/test_jobflow_push.py, missing inputs.)"""
    from fwspool.jobstore.cache import cached_outputs, put_outputs

    cache = tmp_path / "cache"
    monkeypatch.setenv("FWSPOOL_JOBFLOW_CACHE", str(cache))
    doc = [("docs", [{"uuid": "old-job", "index": 1, "output": 1}])]
    old, young = put_outputs(str(cache), "old-job", 1, doc), put_outputs(str(cache), "young-job", 1, doc)
    month_ago = (utcnow() - dt.timedelta(days=31)).timestamp()
    os.utime(old, (month_ago, month_ago))
    db = ("--journal", journal_path)
    spooled_launch(launchpad, tmp_path / "runs" / "done", pings=1)
    sync = ("sync", *db, "--uri", mongo_uri, "--name", db_name, "--root", str(tmp_path / "runs"))
    cli(*sync, "--retain", "0")
    res = cli("prune", *db)
    assert f"prune: 1 cached jobflow outputs (0.0 MiB) dropped, 1 jobs left with none, from {cache}" in (
        unstamped(res.output)
    )
    assert sorted(os.listdir(cache)) == ["young-job"] and cached_outputs(str(cache), "old-job") is None
    assert "cached jobflow outputs" not in cli("prune", *db).output  # a line only when it drops

    # sync's daily prune, with its --retain horizon.
    os.utime(young, (month_ago, month_ago))
    day_ago = (utcnow() - dt.timedelta(days=1, minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    with sqlite3.connect(journal_path) as con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'last_prune'", (day_ago,))
    assert "cached jobflow outputs" not in cli(*sync, "--retain", "32d").output  # younger than that
    assert os.path.exists(young)
    with sqlite3.connect(journal_path) as con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'last_prune'", (day_ago,))
    assert "prune: 1 cached jobflow outputs" in cli(*sync).output
    assert os.listdir(cache) == []
