"""What the login node learns beyond the spool files: the inbox, the batch system, the journal
upgrade that holds them. Against the real Slurm, the real server and real FireWorks."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fireworks import Firework, ScriptTask

from fwspool import inbox
from fwspool.errors import ConfigError, InputError
from fwspool.identity import dir_tag
from fwspool.ingest import Ingester
from fwspool.journal import SCHEMA_VERSION, Journal
from fwspool.push import Pusher
from fwspool.reserve import reserve_offline
from fwspool.scheduler import (
    SlurmScheduler,
    system_of_launch_dir,
    system_of_queue_adapter,
)
from fwspool.testing.commands import invoke, reserved_and_run, run_fwspool, unstamped
from fwspool.testing.devslurm import DevSlurm
from fwspool.testing.faults import FlakyScheduler
from fwspool.testing.launchpad import make_launchpad, uplink_for
from fwspool.testing.slurm_site import finished_job

DATA = Path(__file__).resolve().parent / "data"


def register(journal: Journal, launch_id: int, fw_id: int, launch_dir: str, job: str) -> None:
    """The launch as a registry pull leaves it: reserved, its batch job known, nothing ran."""
    journal.register_offline_runs(
        [{"launch_id": launch_id, "fw_id": fw_id, "launch_dir": launch_dir, "batch_job_id": job}]
    )


def test_one_query_per_pass_a_failed_query_decides_nothing_and_inference_is_idempotent(
    slurm_cluster: DevSlurm, tmp_path: Path, journal_path: str
) -> None:
    job = finished_job(slurm_cluster, tmp_path)
    scheduler = FlakyScheduler(SlurmScheduler(), fail_next=1)
    with Journal.open(journal_path) as journal:
        for lid in (1, 2, 3):
            d = tmp_path / f"l{lid}"
            d.mkdir()
            register(journal, lid, lid, str(d), job)
        ingester = Ingester(journal, schedulers={"slurm": scheduler}, default_scheduler="slurm", lost_after=0)
        failed = ingester.run_pass()
        assert scheduler.queries == 1
        assert any("nothing decided" in p for p in failed.problems)
        assert (
            journal.query("SELECT count(*) AS n FROM launches WHERE batch_gone_at IS NOT NULL")[0]["n"] == 0
        )
        ingester.run_pass()  # seen gone: since now
        assert scheduler.queries == 2
        assert journal.count_events("type = 'released'") == 0
        judged = ingester.run_pass()  # gone for lost_after (0 s): released, never started
        assert scheduler.queries == 3 and judged.released == 3
        assert journal.count_events("type = 'released'") == 3
        again = ingester.run_pass()  # decided: not asked again, nothing added
        assert again.released == 0 and journal.count_events("type = 'released'") == 3
        assert scheduler.queries == 3


def test_a_running_job_is_left_alone_and_a_lost_one_is_judged_once(
    slurm_cluster: DevSlurm, tmp_path: Path, journal_path: str
) -> None:
    script = tmp_path / "long.sh"
    script.write_text("#!/bin/bash\nsleep 600\n")
    alive = slurm_cluster.sbatch(str(script), cwd=str(tmp_path))
    slurm_cluster.wait_for_state(alive, {"RUNNING"}, 30)
    gone = finished_job(slurm_cluster, tmp_path)
    try:
        with Journal.open(journal_path) as journal:
            register(journal, 1, 1, str(tmp_path), alive)
            register(journal, 2, 2, str(tmp_path), gone)
            # Both started (a spool record says so): a vanished one is lost, not released.
            journal.record_scheduler_view(_started_view(journal, (1, 2)))
            ingester = Ingester(
                journal, schedulers={"slurm": SlurmScheduler()}, default_scheduler="slurm", lost_after=0
            )
            for _ in range(3):
                ingester.run_pass()
            lost = journal.query("SELECT launch_id, payload FROM events WHERE type = 'lost'")
            assert [r["launch_id"] for r in lost] == [2]
            payload = json.loads(lost[0]["payload"])
            assert payload["batch_job_id"] == gone
            # How it ended, from the batch system's own record (the job exited 0: it "completed").
            assert payload["batch_end"]["source"] == "scontrol show job"
            assert payload["batch_end"]["cause"] == "completed"
            assert (
                journal.query("SELECT batch_gone_at FROM launches WHERE launch_id = 1")[0]["batch_gone_at"]
                is None
            )
    finally:
        slurm_cluster.scancel(alive)


def _started_view(journal: Journal, launch_ids: tuple[int, ...], *then: dict[str, Any]) -> Any:
    """The launches' runs as their spool records would say: started, then ``then`` (events)."""
    from fwspool.journal.rows import SchedulerView

    view = SchedulerView()
    for lid in launch_ids:
        for seq, event in enumerate(({"type": "started", "started_on": "2026-01-01T00:00:00Z"}, *then), 1):
            view.inferred.append(
                (
                    f"w{lid}-{seq:010d}",
                    f"w{lid}",
                    seq,
                    lid,
                    lid,
                    event["type"],
                    f"2026-01-01T00:00:0{seq}.000000Z",
                    json.dumps(event),
                    None,
                )
            )
    return view


def test_a_run_killed_by_a_signal_gets_its_jobs_record_once_and_a_failed_query_decides_nothing(
    slurm_cluster: DevSlurm, tmp_path: Path, journal_path: str
) -> None:
    """The run recorded SIGTERM (scancel, walltime); once its job is gone, Slurm's record of the
    job is asked once and kept as a ``job_ended`` event. A query that fails (no scontrol) decides
    nothing: the launch stays open and is asked again."""
    jobs = {lid: finished_job(slurm_cluster, tmp_path) for lid in (1, 2)}
    sigterm = {"type": "exited", "signal": 15, "signal_name": "SIGTERM"}

    def ended() -> dict[int, dict[str, Any]]:
        rows = journal.query("SELECT launch_id, payload FROM events WHERE type = 'job_ended'")
        return {r["launch_id"]: json.loads(r["payload"])["batch_end"] for r in rows}

    def open_launches() -> list[int]:
        return [
            r["launch_id"] for r in journal.query("SELECT launch_id FROM launches WHERE terminal_at IS NULL")
        ]

    with Journal.open(journal_path) as journal:
        register(journal, 1, 1, str(tmp_path), jobs[1])
        journal.record_scheduler_view(_started_view(journal, (1,), sigterm))

        def ingester(scheduler: Any, lost_after: float = 0) -> Ingester:
            return Ingester(
                journal, schedulers={"slurm": scheduler}, default_scheduler="slurm", lost_after=lost_after
            )

        broken = ingester(SlurmScheduler(scontrol=str(tmp_path / "no-scontrol")))
        broken.run_pass()  # gone, since now
        failed = broken.run_pass()
        assert any(f"cannot ask slurm how job {jobs[1]} ended" in p for p in failed.problems), failed.problems
        assert ended() == {} and open_launches() == [1]
        # Launch 2's job is asked as soon as it is seen gone, long before --lost-after: the record
        # is freshest then (Slurm forgets a job MinJobAge after its end).
        register(journal, 2, 2, str(tmp_path), jobs[2])
        journal.record_scheduler_view(_started_view(journal, (2,), sigterm))
        ingester(SlurmScheduler(), lost_after=3600).run_pass()
        assert list(ended()) == [2] and open_launches() == [1, 2]
        scheduler = FlakyScheduler(SlurmScheduler())
        asking = ingester(scheduler)
        asking.run_pass()  # both judged: launch 1 asked now, launch 2 keeps its first answer
        assert sorted(ended()) == [1, 2] and open_launches() == []
        for end in ended().values():
            assert (end["cause"], end["source"], end["state"]) == (
                "completed",
                "scontrol show job",
                "COMPLETED",
            )
        asked = scheduler.queries
        asking.run_pass()
        asking.run_pass()  # over: never asked again, nothing added
        assert scheduler.queries == asked and journal.count_events("type = 'job_ended'") == 2


def test_a_lost_launch_keeps_the_record_asked_when_its_job_was_first_seen_gone(
    slurm_cluster: DevSlurm, tmp_path: Path, journal_path: str
) -> None:
    """A started launch's job is asked how it ended as soon as it is seen gone, once per job and
    pass (three launches of one packed job: one query), and the record is kept (``job_ended``):
    the ``lost`` verdict at ``--lost-after`` carries it when the batch system cannot say any more.
    Without a kept record, a failed query says so (``not asked``), unlike "no record"."""
    job = finished_job(slurm_cluster, tmp_path)

    def payloads(kind: str) -> dict[int, dict[str, Any]]:
        rows = journal.query("SELECT launch_id, payload FROM events WHERE type = ?", (kind,))
        return {r["launch_id"]: json.loads(r["payload"]) for r in rows}

    with Journal.open(journal_path) as journal:
        for lid in (1, 2, 3):
            register(journal, lid, lid, str(tmp_path), job)
        journal.record_scheduler_view(_started_view(journal, (1, 2, 3)))

        def ingester(scheduler: Any, lost_after: float) -> Ingester:
            return Ingester(
                journal, schedulers={"slurm": scheduler}, default_scheduler="slurm", lost_after=lost_after
            )

        counting = FlakyScheduler(SlurmScheduler())
        ingester(counting, 3600).run_pass()
        assert counting.queries == 2  # one squeue for all, one scontrol for the packed job's three launches
        kept = payloads("job_ended")
        assert sorted(kept) == [1, 2, 3] and not payloads("lost")
        assert {(e["batch_end"]["source"], e["batch_end"]["cause"]) for e in kept.values()} == {
            ("scontrol show job", "completed")
        }
        # Launch 4's job is first seen gone while scontrol cannot be asked: nothing kept.
        register(journal, 4, 4, str(tmp_path), job)
        journal.record_scheduler_view(_started_view(journal, (4,)))
        broken = ingester(SlurmScheduler(scontrol=str(tmp_path / "no-scontrol")), 0)
        broken.run_pass()
        broken.run_pass()  # --lost-after passed for all: lost, and scontrol still cannot be asked
        lost = payloads("lost")
        assert sorted(lost) == [1, 2, 3, 4]
        for lid in (1, 2, 3):
            assert lost[lid]["batch_end"] == kept[lid]["batch_end"]  # the record kept
        end = lost[4]["batch_end"]
        assert (end["cause"], end["source"]) == ("unknown", "not asked")
        assert "no-scontrol" in end["query_error"]
        # fwspool status says which: the record kept, or that Slurm could not be asked.
        listed = json.loads(
            invoke("status", "--json", "--all", "--no-check", "--journal", journal_path).output
        )["launches"]
        why = {x["launch_id"]: x["why"] for x in listed}
        assert (why[1]["cause"], why[1]["source"]) == ("completed", "scontrol show job"), why
        assert why[4]["source"] == "not asked" and why[4]["query_error"] == end["query_error"], why
        text = invoke("status", "--all", "--no-check", "--journal", journal_path).output
        assert "why: not known, fwspool could not ask slurm how the job ended" in text, text


def test_the_batch_system_of_a_queue_adapter_and_of_a_launch_directory(tmp_path: Path) -> None:
    qa = tmp_path / "my_qadapter.yaml"
    qa.write_text("_fw_name: CommonAdapter\n_fw_q_type: SLURM\nrocket_launch: x\n")
    assert system_of_queue_adapter(str(qa)) == "slurm"
    qa.write_text("_fw_q_type: Nonesuch\n")
    with pytest.raises(ConfigError, match="_fw_q_type 'Nonesuch'"):
        system_of_queue_adapter(str(qa))
    qa.write_text("_fw_q_type: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        system_of_queue_adapter(str(qa))
    with pytest.raises(InputError):
        system_of_queue_adapter(str(tmp_path / "missing.yaml"))
    (tmp_path / "FW_submit.script").write_text("#!/bin/bash -l\n\n#PBS -l nodes=1\n")
    assert system_of_launch_dir(str(tmp_path)) == "pbs"
    assert system_of_launch_dir(str(tmp_path / "nowhere")) is None
    # A packed launch: the job script is in its block directory, beside the block manifest.
    (tmp_path / "fwspool-block.json").write_text("{}")
    (tmp_path / "launcher_1").mkdir()
    assert system_of_launch_dir(str(tmp_path / "launcher_1")) == "pbs"


def test_ingest_cli_rejects_a_bad_queue_adapter_in_one_line(tmp_path: Path, journal_path: str) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "fwspool.cli",
            "ingest",
            "--journal",
            journal_path,
            "-q",
            str(tmp_path / "nope.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 66 and res.stderr.count("\n") == 1, res.stderr
    assert unstamped(res.stderr).startswith("fwspool: queue adapter file") and "Traceback" not in res.stderr


def test_inbox_pointers_are_believed_like_spool_files_and_dropped_when_the_launch_is_over(
    launchpad: Any, mongo_uri: str, tmp_path: Path, journal_path: str, private_inbox: str
) -> None:
    launchpad.add_wf(Firework(ScriptTask.from_str("echo hi"), name="announced"))
    d = tmp_path / "launch"
    fw, launch_id = reserved_and_run(launchpad, str(d))
    pointer = inbox.pointer_path(private_inbox, launch_id, str(d))
    assert os.path.basename(pointer) == f"launch-{launch_id}-{dir_tag(str(d))}.json"
    assert json.loads(Path(pointer).read_text()) == {
        "v": 2,
        "launch_id": launch_id,
        "launch_dir": str(d),
        "fw_id": fw.fw_id,
    }
    # Not one of yours, a symbolic link, not a pointer: each refused, said once, the pass goes on.
    foreign = inbox.write_pointer(private_inbox, 90, None, str(tmp_path / "x"))
    os.chown(foreign, 65534, 65534)
    os.symlink(pointer, inbox.pointer_path(private_inbox, 91, str(tmp_path / "y")))
    Path(inbox.pointer_path(private_inbox, 92, str(tmp_path / "z"))).write_text("{not json")
    with Journal.open(journal_path) as journal:
        ingester = Ingester(journal, inbox_dir=private_inbox)
        first = ingester.run_pass()
        assert first.announced == 1 and first.new_events >= 3
        assert sum("inbox pointer" in p for p in first.problems) == 3, first.problems
        assert journal.query(
            "SELECT learned_from, launch_dir FROM launches WHERE launch_id = ?", (launch_id,)
        ) == [{"learned_from": "inbox", "launch_dir": str(d)}]
        second = ingester.run_pass()
        assert not any("inbox pointer" in p for p in second.problems)
        # Over, but only the LaunchPad can say it is this journal's launch: the pointer stays.
        assert os.path.exists(pointer)
        uplink = uplink_for(mongo_uri, launchpad.db.name)
        try:
            Pusher(journal, uplink).run_pass()
        finally:
            uplink.close()
        ingester.run_pass()
        assert not os.path.exists(pointer)  # confirmed, and over: its pointer goes
    assert launchpad.get_fw_by_id(fw.fw_id).state == "COMPLETED"


def test_a_version_1_journal_is_upgraded_keeping_every_row(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript((DATA / "journal-v1.sql").read_text())
    db.execute(
        "INSERT INTO launches (launch_id, fw_id, launch_dir, learned_from, first_seen_at) "
        "VALUES (7, 3, '/runs/a', 'registry', '2026-01-01T00:00:00.000000Z')"
    )
    db.execute(
        "INSERT INTO sources (path, kind, launch_id, first_seen_at, updated_at) "
        "VALUES ('/runs/a/x.spool', 'spool', 7, 'now', 'now')"
    )
    db.execute(
        "INSERT INTO events (event_id, writer_id, seq, launch_id, fw_id, type, occurred_at, payload, source_id, ingested_at) "
        "VALUES ('w-0000000001', 'w', 1, 7, 3, 'ping', 't', '{}', 1, 'now')"
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Journal.open(str(path)) as journal:
        assert journal.query("PRAGMA user_version")[0]["user_version"] == SCHEMA_VERSION == 6
        assert journal.query("SELECT launch_id, fw_id, launch_dir, batch_job_id FROM launches") == [
            {"launch_id": 7, "fw_id": 3, "launch_dir": "/runs/a", "batch_job_id": None}
        ]
        assert journal.query("SELECT launch_id, pending FROM launch_status") == [
            {"launch_id": 7, "pending": 1}
        ]
        assert journal.query("PRAGMA foreign_key_check") == []
        journal.register_offline_runs(
            [{"launch_id": 8, "fw_id": 4, "launch_dir": "/runs/b", "batch_job_id": "12"}]
        )
    # A new journal and an upgraded one are the same database.
    fresh = tmp_path / "new.sqlite3"
    Journal.open(str(fresh)).close()

    def shape(p: Path) -> list[Any]:
        with sqlite3.connect(p) as c:
            rows = c.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
            # The same DDL up to layout: the v1 file has no trailing blanks, and ALTER TABLE ...
            # RENAME quotes the new name.
            return sorted(
                (t, n, " ".join((sql or "").replace('"launches"', "launches").split())) for t, n, sql in rows
            )

    assert shape(path) == shape(fresh)


def test_a_launch_of_another_launchpad_announced_in_a_shared_inbox_is_never_applied(
    mongo_uri: str, db_name: str, tmp_path: Path, private_inbox: str
) -> None:
    """Launch ids are per LaunchPad: launch 1 of LaunchPad B, announced in the inbox journal A
    reads, must not complete launch 1 of LaunchPad A."""
    lp_a, lp_b = make_launchpad(mongo_uri, db_name + "a"), make_launchpad(mongo_uri, db_name + "b")
    try:
        for lp, name in ((lp_a, "a"), (lp_b, "b")):
            lp.add_wf(Firework(ScriptTask.from_str("echo hi"), name=name))
            reserve_offline(lp, str(tmp_path / name))
        assert run_fwspool(str(tmp_path / "b")).returncode == 0  # B's job, announced in the inbox
        with Journal.open(str(tmp_path / "a.sqlite3")) as journal:
            Ingester(journal, inbox_dir=private_inbox).run_pass()
            uplink = uplink_for(mongo_uri, db_name + "a")
            try:
                summary = Pusher(journal, uplink).run_pass()
            finally:
                uplink.close()
            # A's launch 1 runs in a/: what B's job wrote in b/ is set aside, said, kept, never applied.
            assert any("set aside" in p and str(tmp_path / "b") in p for p in summary.problems), (
                summary.problems
            )
            assert journal.count_events("push_outcome = 'stray'") >= 3  # kept, not lost
            assert journal.query("SELECT launch_dir, confirmed_at IS NOT NULL AS c FROM launches") == [
                {"launch_dir": str(tmp_path / "a"), "c": 1}
            ]
        assert lp_a.get_fw_by_id(1).state == "RESERVED"
        with Journal.open(str(tmp_path / "b.sqlite3")) as journal:
            Ingester(journal, inbox_dir=private_inbox).run_pass()
            uplink = uplink_for(mongo_uri, db_name + "b")
            try:
                Pusher(journal, uplink).run_pass()
            finally:
                uplink.close()
        assert lp_b.get_fw_by_id(1).state == "COMPLETED"
    finally:
        for lp in (lp_a, lp_b):
            lp.connection.drop_database(lp.db.name)
