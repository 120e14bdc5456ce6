"""`fwspool status` through the command line, against the real server (and the real Slurm for the
batch fields): outcomes told apart, the state as last pushed and as pending events imply, notes,
filters, the summary on an 80-column terminal, and a database check that never takes long."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fireworks import Firework, PyTask, ScriptTask

from fwspool.events import iso, utcnow
from fwspool.journal import Journal
from fwspool.journal.rows import EventRow, IngestBatch, LaunchRow
from fwspool.outcomes import PushedLaunch
from fwspool.reserve import reserve_offline
from fwspool.status import CHECK_SECONDS, check_database
from fwspool.testing.commands import fwspool_cmd, invoke, run_fwspool
from fwspool.testing.devslurm import DevSlurm
from fwspool.testing.docs import code_blocks, doc_section
from fwspool.testing.launchpad import make_launchpad
from fwspool.testing.slurm_site import finished_job, qadapter_file_text

DATA = Path(__file__).resolve().parent / "data"


def status_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    res = invoke("status", "--json", *args, env=env)
    assert res.exit_code == 0, res.output
    return dict(json.loads(res.output))


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The launches of a report by the name of their directory (each test names it as its Firework)."""
    return {Path(launch["launch_dir"]).name: launch for launch in report["launches"]}


def emit(launch_dir: Path, event_type: str, data: dict[str, Any] | None = None) -> None:
    args = ["emit", "--launch-dir", str(launch_dir), event_type]
    res = invoke(*args, *(["--data", json.dumps(data)] if data is not None else []))
    assert res.exit_code == 0, res.output


def test_outcomes_are_told_apart_with_the_state_as_pushed_and_as_pending_events_imply(
    launchpad: Any, tmp_path: Path, journal_path: str, mongo_uri: str
) -> None:
    names = ["ok", "bad", "killed", "failed-start", "rerun", "forgotten", "pending", "never"]
    tasks = {"ok": ScriptTask.from_str("echo ok"), "bad": PyTask(func="math.sqrt", args=[-1])}
    fw_ids, dirs = {}, {}
    for name in names:
        launchpad.add_wf(Firework(tasks.get(name, ScriptTask.from_str("true")), name=name))
    for fw in launchpad.fireworks.find({}, {"fw_id": 1, "name": 1}):
        fw_ids[fw["name"]] = fw["fw_id"]
        dirs[fw["name"]] = tmp_path / "runs" / fw["name"]
        reserve_offline(launchpad, str(dirs[fw["name"]]), fw_id=fw["fw_id"])
    for name in ("ok", "bad"):  # fwspool rlaunch runs them: COMPLETED, and FIZZLED by the task
        assert run_fwspool(str(dirs[name])).returncode == 0
    for name in ("killed", "rerun", "forgotten", "pending"):
        emit(dirs[name], "started")
    emit(dirs["killed"], "exited", {"signal": 15, "signal_name": "SIGTERM"})
    emit(dirs["failed-start"], "exited", {"returncode": 65, "error": "FW.json is not valid JSON"})
    launchpad.rerun_fw(fw_ids["rerun"])  # the LaunchPad moves on while the job runs
    env = {
        "FWSPOOL_JOURNAL": journal_path,
        "FWSPOOL_MONGODB_URI": mongo_uri,
        "FWSPOOL_MONGODB_NAME": launchpad.name,
    }
    assert invoke("ingest", "--root", str(tmp_path / "runs"), env=env).exit_code == 0
    assert invoke("forget", str(fw_ids["forgotten"]), env=env).exit_code == 0
    assert invoke("push", env=env).exit_code == 0
    emit(dirs["pending"], "completed", {"state": "COMPLETED", "action": {}})
    assert invoke("ingest", "--root", str(tmp_path / "runs"), env=env).exit_code == 0

    report = status_json(env, "--no-check")
    launches = by_name(report)
    assert sorted(launches) == sorted(names)  # --json lists every launch
    seen = {
        name: (x["fw_id"], x["state"], x["pending_state"], x["outcome"], x["attention"])
        for name, x in launches.items()
    }
    assert seen == {
        "ok": (fw_ids["ok"], "COMPLETED", None, "completed", False),
        "bad": (fw_ids["bad"], "FIZZLED", None, "fizzled", True),
        "killed": (fw_ids["killed"], "FIZZLED", None, "killed", True),
        "failed-start": (fw_ids["failed-start"], "FIZZLED", None, "exited", True),
        "rerun": (fw_ids["rerun"], "READY", None, "superseded", False),
        "forgotten": (fw_ids["forgotten"], None, None, "forgotten", False),
        "pending": (fw_ids["pending"], "RUNNING", "COMPLETED", "completed", False),
        "never": (fw_ids["never"], None, None, "waiting", False),
    }
    assert launches["bad"]["outcome_detail"] == "ValueError: math domain error"
    assert launches["killed"]["outcome_detail"] == "killed by SIGTERM"
    assert (
        launches["failed-start"]["outcome_detail"] == "exited with return code 65: FW.json is not valid JSON"
    )
    rerun = f"launch {launches['rerun']['launch_id']} is no longer Firework {fw_ids['rerun']}'s current launch (rerun?)"
    assert launches["rerun"]["outcome_detail"] == rerun and launches["rerun"]["note"] == rerun
    assert launches["pending"]["pending"] == 1 and launches["pending"]["note"].startswith(
        "COMPLETED once its 1 pending events are pushed"
    )
    assert launches["never"]["note"] == "nothing ran yet, and no batch job is known to ask about it"
    assert launches["forgotten"]["note"].startswith("by `fwspool forget` at ")
    assert launches["forgotten"]["note"].endswith("; its 1 unpushed events stay in the journal")
    assert 0 <= launches["killed"]["last_event_age_seconds"] < 600
    assert {x["launch_dir"] for x in launches.values()} == {str(d) for d in dirs.values()}
    assert report["by_state"] == {"COMPLETED": 1, "FIZZLED": 3, "READY": 1, "RUNNING": 1, "not pushed": 2}
    assert report["totals"]["need_attention"] == 3 and report["totals"]["pending_launches"] == 1
    assert report["oldest_pending"]["launch_id"] == launches["pending"]["launch_id"]

    # The table: the summary first, then only the launches that need attention, in 80 columns.
    res = invoke("status", "--no-check", env=env)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == f"journal {journal_path}"
    assert "database: not checked (--no-check)" in lines
    assert "3 launches need attention (--all lists all 8):" in lines
    table = lines[lines.index("3 launches need attention (--all lists all 8):") + 1 :]
    assert table[0].split() == ["launch", "fw", "name", "state", "outcome", "job", "last", "event", "age"]
    listed = [ln.split()[2] for ln in table[1:] if ln[:7].strip().isdigit()]
    assert listed == ["bad", "killed", "failed-start"]
    assert "        killed by SIGTERM" in table
    assert f"        {dirs['killed']}" in table  # where to look
    assert all(len(ln) <= 80 for ln in lines if str(tmp_path) not in ln), lines

    # Filters pick among every launch; --all lists them all.
    def names_of(*args: str) -> list[str]:
        return sorted(Path(x["launch_dir"]).name for x in status_json(env, "--no-check", *args)["launches"])

    assert names_of("--state", "killed") == ["killed"]
    assert names_of("--state", "FIZZLED") == ["bad", "failed-start", "killed"]
    assert names_of("--state", "completed", "--state", "superseded") == ["ok", "pending", "rerun"]
    assert names_of("--fw-id", str(fw_ids["ok"]), "--fw-id", str(fw_ids["never"])) == ["never", "ok"]
    assert names_of("--pending") == ["pending"]
    assert names_of("--since", "1h") == sorted(names)
    assert names_of("--since", iso(utcnow() + dt.timedelta(days=1))) == []
    res = invoke("status", "--no-check", "--state", "killed", env=env)
    assert "1 launch matches:" in res.output and " killed " in res.output and " ok " not in res.output
    res = invoke("status", "--no-check", "--all", env=env)
    assert "all 8 launches:" in res.output
    assert sum(1 for ln in res.output.splitlines() if ln[:7].strip().isdigit()) == 8
    res = invoke("status", "--since", "yesterday", env=env)
    assert res.exit_code == 2 and "neither a duration" in res.output

    # A push that ran after these events were ingested and left them pending (its time moved on
    # here): the launch needs attention; a forgotten launch's events are left on purpose.
    with Journal.open(journal_path) as journal:
        journal.set_meta("last_successful_push", iso(utcnow() + dt.timedelta(minutes=5)))
    launches = by_name(status_json(env, "--no-check"))
    assert launches["pending"]["attention"] and not launches["forgotten"]["attention"]
    assert "1 events not applied by the last push" in launches["pending"]["note"]


def test_a_job_that_died_before_its_first_event_and_a_lost_one_on_the_real_slurm(
    launchpad: Any, tmp_path: Path, journal_path: str, mongo_uri: str, slurm_cluster: DevSlurm
) -> None:
    """Both jobs are real Slurm jobs that ended: one never started its launch, the other
    started it and vanished without recording an end."""
    for name in ("never-started", "vanished", "forgotten-job"):
        launchpad.add_wf(Firework(ScriptTask.from_str("true"), name=name))
    jobs, dirs = {}, {}
    for fw in launchpad.fireworks.find({}, {"fw_id": 1, "name": 1}):
        d = tmp_path / "runs" / fw["name"]
        _, launch_id = reserve_offline(launchpad, str(d), fw_id=fw["fw_id"])
        jobs[fw["name"]], dirs[fw["name"]] = finished_job(slurm_cluster, d), d
        launchpad.set_reservation_id(launch_id, jobs[fw["name"]])  # as qlaunch -r does
    emit(dirs["vanished"], "started", {"batch_job_id": jobs["vanished"], "batch_system": "slurm"})
    # A job Slurm never had (or forgot: past MinJobAge, with no accounting): no record at all.
    emit(dirs["forgotten-job"], "started", {"batch_job_id": "99999", "batch_system": "slurm"})
    qadapter = tmp_path / "my_qadapter.yaml"
    qadapter.write_text(qadapter_file_text("rocket_launch: fwspool rlaunch singleshot --offline"))
    env = {
        "FWSPOOL_JOURNAL": journal_path,
        "FWSPOOL_MONGODB_URI": mongo_uri,
        "FWSPOOL_MONGODB_NAME": launchpad.name,
    }
    ingest = ("ingest", "-q", str(qadapter), "--lost-after", "0")

    def launches() -> dict[str, dict[str, Any]]:
        return by_name(status_json(env, "--no-check"))

    assert invoke(*ingest, env=env).exit_code == 0  # the journal knows nothing yet
    assert invoke("push", env=env).exit_code == 0  # the registry: the reservations and their jobs
    never = launches()["never-started"]
    assert (never["fw_name"], never["batch_job_id"], never["outcome"], never["attention"]) == (
        "never-started",
        jobs["never-started"],
        "waiting",
        False,
    ), never
    assert never["note"] == f"nothing ran yet: batch job {jobs['never-started']} has not started it"
    assert invoke(*ingest, env=env).exit_code == 0  # Slurm: both jobs are gone, since now
    now = launches()
    never = now["never-started"]
    assert never["outcome"] == "waiting" and never["attention"] and never["batch_gone_at"]
    assert never["note"].startswith(f"nothing ran: batch job {jobs['never-started']} is gone since ")
    vanished = now["vanished"]
    assert (vanished["state"], vanished["pending_state"], vanished["outcome"]) == (None, "RUNNING", "running")
    text = invoke("status", "--no-check", env=env).output
    assert "1 launch needs attention (--all lists all 3):" in text
    assert f"batch job {jobs['never-started']} is gone since" in text
    sync = ("sync", "-q", str(qadapter), "--lost-after", "0")
    assert invoke(*sync, env=env).exit_code == 0  # gone for --lost-after: lost, and released
    now = launches()
    lost = now["vanished"]
    assert (lost["state"], lost["outcome"], lost["batch_job_id"]) == ("FIZZLED", "lost", jobs["vanished"])
    assert lost["attention"] and lost["batch_system"] == "slurm"
    assert lost["outcome_detail"].startswith(f"vanished: batch job {jobs['vanished']} is no longer queued")
    # Why, in Slurm's words: its job script ended on its own, and `fwspool rlaunch` recorded nothing.
    why = lost["why"]
    assert (why["cause"], why["source"], why["state"], why["exit_code"]) == (
        "completed",
        "scontrol show job",
        "COMPLETED",
        0,
    ), why
    assert why["words"] == "JobState=COMPLETED Reason=None ExitCode=0:0"
    assert why["stdout"] == str(dirs["vanished"] / f"slurm-{jobs['vanished']}.out")
    nothing = now["forgotten-job"]
    assert nothing["outcome"] == "lost" and nothing["why"]["source"] == "no record", nothing
    text = invoke("status", "--no-check", env=env).output
    assert "why: completed, says scontrol show job; exit code 0" in text, text
    assert "why: the batch system no longer knows the job" in text, text
    never = now["never-started"]
    assert (never["state"], never["outcome"], never["attention"]) == ("READY", "released", False)
    assert never["note"] == f"batch job {jobs['never-started']} ended without starting the launch"
    assert launchpad.fireworks.find_one({"name": "never-started"})["state"] == "READY"


def test_the_database_check_takes_a_second_at_most_and_can_be_skipped(
    mongo_server_factory: Any, tmp_path: Path, journal_path: str
) -> None:
    server = mongo_server_factory()
    make_launchpad(server.uri, "fireworks").connection.close()
    env = {"FWSPOOL_JOURNAL": journal_path, "FWSPOOL_MONGODB_URI": server.uri}
    Journal.open(journal_path).close()
    res = invoke("status", env=env)
    assert res.exit_code == 0 and "database: answers at mongodb://127.0.0.1" in res.output, res.output
    server.stop()
    for extra in ([], ["--timeout", "30"]):
        started = time.monotonic()
        res = invoke("status", *extra, env=env)
        took = time.monotonic() - started
        assert res.exit_code == 0 and "database: NOT reachable at mongodb://127.0.0.1" in res.output, (
            res.output
        )
        assert "Connection refused" in res.output.replace("\n  ", " ")
        assert took < CHECK_SECONDS + 1.0, took  # it took 6 s
    report = status_json(env)
    assert report["database"]["reachable"] is False and report["database"]["seconds"] <= CHECK_SECONDS + 0.2
    started = time.monotonic()
    res = invoke("status", "--no-check", env=env)
    assert "database: not checked (--no-check)" in res.output and time.monotonic() - started < 1.0


def test_status_answers_while_another_process_holds_the_journals_write_lock(tmp_path: Path) -> None:
    """A daemon's long commit (a first ingest's batch, a prune) holds the write lock: status only
    reads, so it must not wait for it. Opening the journal used to rewrite its header (the
    auto_vacuum pragma), which waited out the 30 s busy timeout and failed, "database is locked"."""
    journal_path = str(tmp_path / "j.sqlite3")
    with Journal.open(journal_path) as journal:
        journal.commit_ingest(
            IngestBatch(
                launches=[LaunchRow(1, 1, "/r/1", "spool")],
                events={
                    "": [
                        EventRow(
                            "w1-0000000001",
                            "w1",
                            1,
                            1,
                            1,
                            "started",
                            iso(utcnow()),
                            '{"type":"started"}',
                            None,
                        )
                    ]
                },
            )
        )
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_WRITE_LOCK, journal_path], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        before = os.stat(journal_path)
        started = time.monotonic()
        res = subprocess.run(
            fwspool_cmd("status", "--no-check", "--journal", journal_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - started
        assert res.returncode == 0, res.stderr
        assert "launches: 1; as last pushed: not pushed 1" in res.stdout, res.stdout
        assert took < 10, f"status waited {took:.1f} s for the write lock"
        after = os.stat(journal_path)
        assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    finally:
        holder.kill()
        holder.wait()


_HOLD_THE_WRITE_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(120)
"""


def test_a_database_that_never_answers_is_given_up_after_the_budget() -> None:
    class Stalled:
        closed = False

        def where(self) -> str:
            return "mongodb://stalled"

        def check(self) -> None:
            time.sleep(5)

        def close(self) -> None:
            self.closed = True

    stalled = Stalled()
    started = time.monotonic()
    found = check_database(lambda: stalled, budget=0.3)
    assert time.monotonic() - started < 1.0 and stalled.closed
    assert found["reachable"] is False and found["error"].startswith("no answer within 0.3 s")


def test_thousands_of_launches_read_on_an_80_column_terminal(tmp_path: Path) -> None:
    """A year of launches: the summary and the few that need attention, not a screen per launch."""
    journal_path = str(tmp_path / "j.sqlite3")
    now = utcnow()
    n = 3000
    with Journal.open(journal_path) as journal:
        rows: list[EventRow] = []
        for lid in range(1, n + 1):
            at = iso(now - dt.timedelta(days=300) + dt.timedelta(minutes=lid))
            if lid > n - 80:
                at = iso(now - dt.timedelta(minutes=n + 1 - lid))  # the last 80: within the hour
            payloads = [("started", {"started_on": at}), ("exited", {"returncode": 0})]
            if lid % 40 == 0:
                payloads[1] = ("exited", {"signal": 15, "signal_name": "SIGTERM"})
            else:
                payloads.insert(1, ("completed", {"state": "COMPLETED", "action": {}, "completed_on": at}))
            for seq, (etype, payload) in enumerate(payloads, 1):
                text = json.dumps({"type": etype, **payload})
                rows.append(EventRow(f"w{lid}-{seq:010d}", f"w{lid}", seq, lid, lid, etype, at, text, None))
        journal.commit_ingest(
            IngestBatch(
                launches=[
                    LaunchRow(lid, lid, f"/r/{lid}", "spool", str(9000 + lid), "slurm")
                    for lid in range(1, n + 1)
                ],
                events={"": rows},
            )
        )
        pushed = [r for r in rows if r.launch_id <= n - 5]  # the last five wait for the next push
        killed = {r.launch_id for r in rows if '"SIGTERM"' in r.payload}
        journal.mark_pushed(
            [(r.event_id, "applied", None) for r in pushed],
            launches=[
                PushedLaunch(
                    lid,
                    lid,
                    f"relax-{lid}",
                    "FIZZLED" if lid in killed else "COMPLETED",
                    "killed" if lid in killed else "completed",
                    "killed by SIGTERM" if lid in killed else None,
                )
                for lid in range(1, n - 4)
            ],
        )
    started = time.monotonic()
    res = invoke("status", "--no-check", "--journal", journal_path)
    assert time.monotonic() - started < 10, "status is too slow for a year of launches"
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    # The journal's own path is never cut: the one line that may be longer (under pytest-xdist's
    # deeper temporary directories, it is).
    wide = [ln for ln in lines if len(ln) > 80 and ln != f"journal {journal_path}"]
    assert not wide, wide
    assert lines[1] == "launches: 3000; as last pushed: COMPLETED 2921, FIZZLED 74, not pushed 5"
    assert lines[2] == "outcomes: completed 2925, killed 75"
    # The killed launches of the last day need attention; those of months ago do not.
    recent_killed = [lid for lid in killed if lid > n - 80]
    assert f"{len(recent_killed)} launches need attention (--all lists all 3000):" in lines
    assert len(lines) < 40
    res = invoke("status", "--no-check", "--all", "--journal", journal_path)
    assert sum(1 for ln in res.output.splitlines() if ln[:7].strip().isdigit()) == n


def test_a_journal_pushed_before_states_were_recorded_shows_what_its_events_say(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript((DATA / "journal-v2.sql").read_text())
        db.execute(
            "INSERT INTO launches (launch_id, fw_id, launch_dir, learned_from, first_seen_at) "
            "VALUES (1, 5, '/r/1', 'spool', '2026-01-01T00:00:00Z'), (2, 6, '/r/2', 'spool', '2026-01-01T00:00:00Z')"
        )
        events = [
            ("a-1", 1, "started", {"started_on": "2026-01-01T00:00:00Z"}, "applied"),
            ("a-2", 1, "completed", {"state": "COMPLETED", "action": {}}, "applied"),
            ("b-1", 2, "started", {"started_on": "2026-01-01T00:00:00Z"}, "superseded"),
        ]
        for eid, lid, etype, payload, outcome in events:
            db.execute(
                "INSERT INTO events (event_id, writer_id, seq, launch_id, type, occurred_at, payload, ingested_at, "
                "pushed_at, push_outcome) VALUES (?, ?, 1, ?, ?, '2026-01-01T00:00:00Z', ?, 'x', 'y', ?)",
                (eid, eid[0], lid, etype, json.dumps({"type": etype, **payload}), outcome),
            )
        db.execute("PRAGMA user_version = 2")
    path.chmod(0o600)
    report = status_json({}, "--no-check", "--journal", str(path))
    seen = {x["launch_id"]: (x["state"], x["outcome"]) for x in report["launches"]}
    assert seen == {1: ("COMPLETED", "completed"), 2: (None, "superseded")}


@pytest.mark.parametrize("text", ["2d", "90m", "2026-01-02T03:04:05Z", "2026-01-02"])
def test_since_takes_a_duration_or_a_time(text: str) -> None:
    from fwspool.status import parse_since

    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    expected = {
        "2d": now - dt.timedelta(days=2),
        "90m": now - dt.timedelta(minutes=90),
        "2026-01-02T03:04:05Z": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "2026-01-02": dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
    }
    assert parse_since(text, now) == expected[text]


def documented_block(heading: str, language: str) -> list[str]:
    """The lines of the first ``language`` code block under ``heading`` in the documentation."""
    block = code_blocks(doc_section(heading), language)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_the_readme_status_lines_and_journal_queries_run_as_written(
    launchpad: Any, tmp_path: Path, journal_path: str, mongo_uri: str
) -> None:
    launchpad.add_wf(Firework(ScriptTask.from_str("echo hi"), name="readme"))
    d = tmp_path / "launch"
    reserve_offline(launchpad, str(d))
    assert run_fwspool(str(d)).returncode == 0
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        FWSPOOL_JOURNAL=journal_path,
        FWSPOOL_MONGODB_URI=mongo_uri,
        FWSPOOL_MONGODB_NAME=launchpad.name,
    )
    assert invoke("sync", "--root", str(d), env=env).exit_code == 0
    lines = documented_block("`fwspool status`", "sh")
    assert len(lines) == 5
    for line in lines:
        res = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and not res.stderr, (line, res.stdout, res.stderr)
        if "--json" in line:
            json.loads(res.stdout)
        else:
            assert res.stdout.startswith(f"journal {journal_path}\n"), res.stdout
    statements = [
        ln for ln in documented_block("The journal, with `sqlite3`", "sql") if not ln.startswith("--")
    ]
    with sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True) as db:
        for statement in statements:
            db.execute(statement).fetchall()
        outcome = db.execute(statements[2]).fetchall()
    assert outcome == [(1, 1, "readme", "COMPLETED", "completed", None)]


def test_status_shows_the_pools_stock_claims_and_pilots(tmp_path: Path) -> None:
    """The pools the daemon submitted pilots for: entries in stock (and the oldest's age), claims
    by pilot job or being handed back, pilots running; text and --json."""
    from fwspool.journal import Journal
    from fwspool.pool import Pool
    from fwspool.submit import SubmittedJob, note_job

    pool = Pool.create(str(tmp_path / "pool"))
    for i in (1, 2, 3, 4):
        d = tmp_path / "pool" / "launches" / f"launcher_{i}"
        d.mkdir()
        pool.stock(i, 100 + i, str(d), None)
    assert pool.take("2.json", "17_n1_1_aaaa") is not None
    assert pool.take("3.json", "stocker-login-9") is not None
    (tmp_path / "pool" / "pilots" / "17_n1_1_aaaa.json").write_text(
        json.dumps(
            {
                "pilot": "17_n1_1_aaaa",
                "batch_job_id": "17",
                "host": "n1",
                "pid": 1,
                "started_on": "2026-01-01T00:00:00Z",
            }
        )
    )
    journal = str(tmp_path / "journal.sqlite3")
    with Journal.open(journal) as j:
        note_job(j, SubmittedJob("17", "2026-01-01T00:00:00+00:00", "pilot", pool.root))
    env = {"FWSPOOL_JOURNAL": journal}
    [report] = status_json(env, "--no-check")["pools"]
    assert report["root"] == pool.root and report["exists"] and report["ready"] == 2
    assert report["oldest_ready_s"] is not None and report["oldest_ready_s"] >= 0
    assert [(c["launch_id"], c["fw_id"], c["batch_job_id"]) for c in report["claims"]] == [
        (2, 102, "17"),
        (3, 103, None),
    ]
    assert [p["batch_job_id"] for p in report["pilots"]] == ["17"]
    res = invoke("status", "--no-check", env=env)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert f"pool {pool.root}: 2 in stock (oldest " in text, res.output
    assert "2 claimed (pilot job 17), 1 being handed back, 1 pilot running (job 17)" in text, res.output
