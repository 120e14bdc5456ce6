"""fwspool push: exactly once, downtime, superseded events, forget, walltime, CLI errors."""

from __future__ import annotations

import datetime as dt
import gc
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner
from dyn_tasks import GrowTask
from fireworks import Firework, ScriptTask, Workflow

from fwspool.cli import main
from fwspool.errors import EX_CONFIG, EX_TEMPFAIL, UplinkUnavailable
from fwspool.events import Checkpoint, Completed, Exited, JobEnd, JobEnded, Ping, Started, iso, utcnow
from fwspool.ingest import Ingester
from fwspool.ingest.scheduler_check import inferred_event
from fwspool.journal import Journal
from fwspool.journal.rows import ScheduledLaunch, SchedulerView
from fwspool.push import Pusher
from fwspool.reserve import reserve_offline
from fwspool.spool import SpoolWriter
from fwspool.testing.commands import (
    fwspool_cmd,
    invoke,
    job_env,
    reserved_and_run,
    run_fireworks_offline,
    run_fwspool,
    unstamped,
)
from fwspool.testing.db_commands import CommandCounter
from fwspool.testing.faults import FlakyUplink
from fwspool.testing.journal_file import ingest_and_push, query
from fwspool.testing.launchpad import (
    make_launchpad,
    recover_offline,
    snapshot,
    throwaway_launchpad,
    uplink_for,
)
from fwspool.testing.waiting import wait_for


def grow_wf() -> Workflow:
    a = Firework([GrowTask(label="g")], name="step1")
    b = Firework(ScriptTask.from_str("echo two"), name="step2", parents=[a])
    return Workflow([a, b], name="grow")


def prepared(lp: Any, tmp_path: Any, wf: Workflow | None = None, run: bool = True, *extra: str) -> str:
    """A workflow on ``lp`` whose first step was reserved offline and run by fwspool rlaunch."""
    lp.add_wf(wf or grow_wf())
    d = str(tmp_path / "launch")
    if run:
        reserved_and_run(lp, d, *extra, returncodes=(0, 1))
    else:
        reserve_offline(lp, d)
    return d


def prepared_twice(clean: Any, other: Any, tmp_path: Any, mongo_uri: str) -> tuple[str, str]:
    """:func:`prepared` on two LaunchPads, the clean run pushed at once; (clean dir, other dir)."""
    dc = prepared(clean, tmp_path / "c")
    dk = prepared(other, tmp_path / "k")
    ingest_and_push(str(tmp_path / "c.sqlite3"), mongo_uri, clean.name, roots=(dc,))
    return dc, dk


def test_push_twice_changes_nothing_and_an_idle_pass_writes_nothing(
    launchpad, tmp_path, journal_path, mongo_uri
):
    d = prepared(launchpad, tmp_path)
    first = ingest_and_push(journal_path, mongo_uri, launchpad.name, roots=(d,))
    assert first.applied > 0
    after_first = snapshot(launchpad)
    counter = CommandCounter(attribute=False)
    with Journal.open(journal_path) as journal:
        assert Ingester(journal).run_pass().new_events == 0
        with counter.counting():
            uplink = uplink_for(mongo_uri, launchpad.name, event_listeners=[counter])
            second = Pusher(journal, uplink).run_pass()
            uplink.close()
        assert journal.count_events("pushed_at IS NULL") == 0
    assert (second.applied, second.superseded) == (0, 0)
    assert snapshot(launchpad) == after_first
    assert counter.writes() == 0, counter.commands


def test_acknowledgement_lost_then_push_again_equals_clean_run(mongo_uri, db_name, tmp_path, journal_path):
    with (
        throwaway_launchpad(mongo_uri, db_name + "_c") as clean,
        throwaway_launchpad(mongo_uri, db_name + "_k") as flaky,
    ):
        dc, dk = prepared_twice(clean, flaky, tmp_path, mongo_uri)
        with Journal.open(journal_path) as journal:
            Ingester(journal, roots=(dk,)).run_pass()
            # The database applies the batch, the acknowledgement is lost: nothing marked.
            uplink = FlakyUplink(uplink_for(mongo_uri, flaky.name), fail_after_apply=0)
            with pytest.raises(UplinkUnavailable, match="events pending"):
                Pusher(journal, uplink).run_pass()
            assert journal.count_events("pushed_at IS NULL") == journal.count_events()
            Pusher(journal, uplink_for(mongo_uri, flaky.name)).run_pass()
            assert journal.count_events("pushed_at IS NULL") == 0
        assert snapshot(flaky, (dk,)) == snapshot(clean, (dc,))
        assert flaky.fireworks.count_documents({}) == 4  # two + one addition + one detour, not more


def test_kill_9_between_database_write_and_journal_mark(mongo_uri, db_name, tmp_path, journal_path):
    with (
        throwaway_launchpad(mongo_uri, db_name + "_c") as clean,
        throwaway_launchpad(mongo_uri, db_name + "_k") as killed,
    ):
        dc, dk = prepared_twice(clean, killed, tmp_path, mongo_uri)
        env = job_env()
        env.update(
            FWSPOOL_JOURNAL=journal_path, FWSPOOL_MONGODB_URI=mongo_uri, FWSPOOL_MONGODB_NAME=killed.name
        )
        cli = fwspool_cmd()
        subprocess.run([*cli, "ingest", "--root", dk], env=env, check=True, capture_output=True)
        crash = subprocess.run(
            [*cli, "push"],
            env=dict(env, FWSPOOL_FAILPOINTS="push.before_mark=kill"),
            capture_output=True,
            text=True,
        )
        assert crash.returncode == -signal.SIGKILL, crash.stderr
        with Journal.open(journal_path) as journal:
            assert journal.count_events("pushed_at IS NOT NULL") == 0
        again = subprocess.run([*cli, "push"], env=env, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        with Journal.open(journal_path) as journal:
            assert journal.count_events("pushed_at IS NULL") == 0
        assert snapshot(killed, (dk,)) == snapshot(clean, (dc,))
        launch = killed.launches.find_one({"launch_id": 1})
        assert [h["state"] for h in launch["state_history"]] == ["RESERVED", "RUNNING", "COMPLETED"]


def test_database_down_during_push_then_back(mongo_server_factory, tmp_path, journal_path):
    server = mongo_server_factory()
    lp = make_launchpad(server.uri, "fireworks")
    d = prepared(lp, tmp_path)
    with Journal.open(journal_path) as journal:
        Ingester(journal, roots=(d,)).run_pass()
        pending = journal.count_events()
    server.stop()
    runner = CliRunner()
    env = {"FWSPOOL_JOURNAL": journal_path, "FWSPOOL_MONGODB_URI": server.uri}
    res = runner.invoke(main, ["push", "--timeout", "1"], env=env)
    assert res.exit_code == EX_TEMPFAIL
    line = unstamped(res.output).strip()
    assert line.startswith("fwspool: cannot reach MongoDB at mongodb://127.0.0.1:")
    assert f"{pending} events pending" in line and "Traceback" not in res.output
    with Journal.open(journal_path) as journal:
        assert journal.count_events("pushed_at IS NULL") == pending
    server.start()
    res = runner.invoke(main, ["push"], env=env)
    assert res.exit_code == 0, res.output
    from fireworks import LaunchPad

    lp = LaunchPad(host=server.uri, name="fireworks", uri_mode=True, strm_lvl="ERROR")
    states = {d["name"]: d["state"] for d in lp.fireworks.find({}, {"name": 1, "state": 1})}
    # The detour runs before step2; the addition is READY too.
    assert states == {"step1": "COMPLETED", "step2": "WAITING", "g-detour": "READY", "g-addition": "READY"}
    assert lp.fireworks.count_documents({}) == 4


def test_rerun_on_the_launchpad_is_not_clobbered(launchpad, tmp_path, journal_path, mongo_uri):
    d = prepared(launchpad, tmp_path)
    fw_id = launchpad.launches.find_one({"launch_id": 1})["fw_id"]
    launchpad.rerun_fw(fw_id)  # while the offline job was still "running" as far as the DB knows
    before = snapshot(launchpad)
    summary = ingest_and_push(journal_path, mongo_uri, launchpad.name, roots=(d,))
    assert summary.applied == 0 and summary.superseded > 0
    after = snapshot(launchpad)
    assert after["fireworks"] == before["fireworks"] and after["workflows"] == before["workflows"]
    assert launchpad.get_fw_by_id(fw_id).state == "READY"
    # A site still running recover_offline must not resurrect it either (FireWorks #326).
    assert launchpad.offline_runs.find_one({"launch_id": 1})["deprecated"] is True
    recover_offline(launchpad)
    assert launchpad.get_fw_by_id(fw_id).state == "READY"
    # The journal remembers what the push left, and why, for `fwspool status` and sqlite3 users.
    [row] = query(journal_path, "SELECT fw_name, pushed_state, outcome, outcome_detail FROM launch_status")
    assert row == {
        "fw_name": "step1",
        "pushed_state": "READY",
        "outcome": "superseded",
        "outcome_detail": f"launch 1 is no longer Firework {fw_id}'s current launch (rerun?)",
    }


def test_defused_firework_is_not_clobbered(launchpad, tmp_path, journal_path, mongo_uri):
    d = prepared(launchpad, tmp_path)
    fw_id = launchpad.launches.find_one({"launch_id": 1})["fw_id"]
    launchpad.defuse_fw(fw_id)
    summary = ingest_and_push(journal_path, mongo_uri, launchpad.name, roots=(d,))
    assert summary.applied == 0 and summary.superseded > 0
    assert launchpad.get_fw_by_id(fw_id).state == "DEFUSED"


def test_recover_offline_after_push_finds_nothing_to_do(launchpad, tmp_path, journal_path, mongo_uri):
    d = prepared(launchpad, tmp_path)
    ingest_and_push(journal_path, mongo_uri, launchpad.name, roots=(d,))
    before = snapshot(launchpad)
    assert launchpad.offline_runs.count_documents({"completed": False, "deprecated": False}) == 0
    recover_offline(launchpad)
    assert snapshot(launchpad) == before


def test_unmodified_offline_job_is_ingested_and_pushed_like_recover_offline(
    mongo_uri, db_name, tmp_path, journal_path
):
    with (
        throwaway_launchpad(mongo_uri, db_name + "_r") as ref,
        throwaway_launchpad(mongo_uri, db_name + "_f") as fws,
    ):
        for lp, sub in ((ref, "r"), (fws, "f")):
            lp.add_wf(grow_wf())
            d = str(tmp_path / sub)
            reserve_offline(lp, d)
            res = run_fireworks_offline(d)
            assert res.returncode == 0, res.stderr[-2000:]
        recover_offline(ref)
        # The registry pull teaches the journal where the launch is; then ingest reads FW_offline.json.
        summary = ingest_and_push(journal_path, mongo_uri, fws.name)
        assert summary.registered == 1
        ingest_and_push(journal_path, mongo_uri, fws.name)
        assert snapshot(fws, (str(tmp_path / "f"),)) == snapshot(ref, (str(tmp_path / "r"),))


def test_forget_while_the_database_is_down(mongo_server_factory, tmp_path, journal_path):
    server = mongo_server_factory()
    lp = make_launchpad(server.uri, "fireworks")
    d = prepared(lp, tmp_path)
    fw_id = lp.launches.find_one({"launch_id": 1})["fw_id"]
    env = {"FWSPOOL_JOURNAL": journal_path, "FWSPOOL_MONGODB_URI": server.uri}
    runner = CliRunner()
    assert runner.invoke(main, ["ingest", "--root", d], env=env).exit_code == 0
    server.stop()
    res = runner.invoke(main, ["forget", str(fw_id)], env=env)
    assert res.exit_code == 0 and "1 known launch forgotten" in res.output
    assert runner.invoke(main, ["push", "--timeout", "1"], env=env).exit_code == EX_TEMPFAIL
    server.start()
    res = runner.invoke(main, ["push"], env=env)
    assert res.exit_code == 0, res.output
    from fireworks import LaunchPad

    lp = LaunchPad(host=server.uri, name="fireworks", uri_mode=True, strm_lvl="ERROR")
    assert lp.offline_runs.find_one({"launch_id": 1})["deprecated"] is True
    assert lp.get_fw_by_id(fw_id).state == "RESERVED"  # nothing pushed
    with Journal.open(journal_path) as journal:
        assert journal.count_events("pushed_at IS NULL") > 0  # kept, visible
        rows = journal.query("SELECT forgotten FROM launch_status")
        assert rows == [{"forgotten": 1}]


def test_forgetting_what_the_journal_does_not_know_says_so(launchpad, tmp_path, journal_path, mongo_uri):
    d = prepared(launchpad, tmp_path)
    env = {
        "FWSPOOL_JOURNAL": journal_path,
        "FWSPOOL_MONGODB_URI": mongo_uri,
        "FWSPOOL_MONGODB_NAME": launchpad.name,
    }
    assert invoke("ingest", "--root", d, env=env).exit_code == 0
    # Nothing at all matches: one line, exit 66, nothing recorded for the push to "apply".
    res = invoke("forget", "999", "--launch-id", "998", env=env)
    assert res.exit_code == 66, res.output
    assert res.output == (
        "fwspool: the journal knows no launch of Firework 999, launch 998: nothing forgotten "
        "(a job the journal has not seen yet: `fwspool sync` first; or `lpad forget_offline`)\n"
    )
    res = invoke("push", env=env)
    assert res.exit_code == 0 and "0 forget requests applied" in res.output, res.output
    # Some match: a warning for the others, the known ones forgotten.
    fw_id = launchpad.launches.find_one({"launch_id": 1})["fw_id"]
    res = invoke("forget", str(fw_id), "999", env=env)
    assert res.exit_code == 0, res.output
    assert "fwspool: warning: the journal knows no launch of Firework 999: not forgotten" in res.output
    assert "1 known launch forgotten: Firework" in res.output
    res = invoke("push", env=env)
    assert res.exit_code == 0 and "1 forget request applied" in res.output, res.output
    assert launchpad.offline_runs.find_one({"launch_id": 1})["deprecated"] is True
    res = invoke("forget", "--undo", "--launch-id", "1", env=env)
    assert res.exit_code == 0 and "1 known launch resumed" in res.output, res.output
    assert invoke("forget", "--undo", "7", env=env).exit_code == 66


def sigterm_run(launchpad: Any, tmp_path: Path) -> str:
    """A Firework reserved offline whose `fwspool rlaunch` got SIGTERM mid-task; its directory."""
    wf = Workflow(
        [
            Firework(ScriptTask.from_str("sleep 60"), name="long"),
        ],
        name="walltime",
    )
    launchpad.add_wf(wf)
    d = str(tmp_path / "launch")
    reserve_offline(launchpad, d)
    proc = subprocess.Popen(
        fwspool_cmd("rlaunch"),
        cwd=d,
        env=job_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        spools = [n for n in os.listdir(d) if n.endswith(".spool")]
        if spools and b'"checkpoint"' in open(os.path.join(d, spools[0]), "rb").read():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM
    return d


def test_walltime_sigterm_fizzles_the_launch_at_once(launchpad, tmp_path, journal_path, mongo_uri):
    d = sigterm_run(launchpad, tmp_path)
    ingest_and_push(journal_path, mongo_uri, launchpad.name, roots=(d,))
    fw = launchpad.get_fw_by_id(1)
    assert fw.state == "FIZZLED"
    launch = launchpad.launches.find_one({"launch_id": 1})
    assert "killed by SIGTERM" in launch["action"]["stored_data"]["_message"]
    [row] = query(journal_path, "SELECT fw_name, pushed_state, outcome, outcome_detail FROM launch_status")
    assert row == {
        "fw_name": "long",
        "pushed_state": "FIZZLED",
        "outcome": "killed",
        "outcome_detail": "killed by SIGTERM",
    }
    assert launchpad.offline_runs.find_one({"launch_id": 1})["completed"] is True
    launchpad.rerun_fw(1)
    assert launchpad.get_fw_by_id(1).state == "READY"


def test_the_batch_systems_record_is_added_to_the_killed_launch_once(
    launchpad, tmp_path, journal_path, mongo_uri
):
    """The batch system's record of a job whose signal FIZZLED its launch (``job_ended``, which
    ingest infers once the job is gone) is added to the launch by a later push; a push that
    repeats it (killed before the journal was marked) writes nothing over it."""
    d = sigterm_run(launchpad, tmp_path)
    ingest_and_push(journal_path, mongo_uri, launchpad.name, roots=(d,))
    assert (
        "batch_end"
        not in launchpad.launches.find_one({"launch_id": 1})["action"]["stored_data"]["_fwspool_exit"]
    )
    end = JobEnd(
        cause="walltime", words="JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15", source="scontrol show job"
    )
    gone = ScheduledLaunch(1, 1, d, "4242", "slurm", iso(utcnow()), "exited", True)
    with Journal.open(journal_path) as journal:
        row = inferred_event(
            gone, JobEnded(batch_job_id="4242", batch_system="slurm", batch_end=end), utcnow()
        )
        assert journal.record_scheduler_view(SchedulerView(inferred=[row])) == 1
        assert journal.record_scheduler_view(SchedulerView(inferred=[row])) == 0  # concluded twice: one event
    env = job_env(
        FWSPOOL_JOURNAL=journal_path, FWSPOOL_MONGODB_URI=mongo_uri, FWSPOOL_MONGODB_NAME=launchpad.name
    )
    crash = subprocess.run(
        [*fwspool_cmd(), "push"],
        env=dict(env, FWSPOOL_FAILPOINTS="push.before_mark=kill"),
        capture_output=True,
    )
    assert crash.returncode == -signal.SIGKILL, crash.stderr
    stored = launchpad.launches.find_one({"launch_id": 1})["action"]["stored_data"]
    assert stored["_fwspool_exit"]["batch_end"] == msgspec.to_builtins(end)
    assert stored["_fwspool_exit"]["signal_name"] == "SIGTERM"  # amended, not replaced
    # Whoever edits it now, the push that repeats the dead one's work does not write it again.
    launchpad.launches.update_one(
        {"launch_id": 1}, {"$set": {"action.stored_data._fwspool_exit.batch_end.words": "edited"}}
    )
    again = subprocess.run([*fwspool_cmd(), "push"], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    doc = launchpad.launches.find_one({"launch_id": 1})
    assert doc["action"]["stored_data"]["_fwspool_exit"]["batch_end"]["words"] == "edited"
    assert doc["state"] == "FIZZLED" and launchpad.get_fw_by_id(1).state == "FIZZLED"
    assert query(journal_path, "SELECT push_outcome FROM events WHERE type = 'job_ended'") == [
        {"push_outcome": "applied"}
    ]


def test_bad_launchpad_file_is_one_line_exit_78(tmp_path, journal_path):
    Journal.open(journal_path).close()
    bad = tmp_path / "my_launchpad.yaml"
    bad.write_text("host: [unclosed\n")
    runner = CliRunner()
    res = runner.invoke(main, ["push", "-l", str(bad), "--journal", journal_path])
    assert res.exit_code == EX_CONFIG and res.output.count("\n") == 1, res.output
    res = runner.invoke(main, ["push", "-l", str(tmp_path / "missing.yaml"), "--journal", journal_path])
    assert res.exit_code == EX_CONFIG and "does not exist" in res.output


def test_not_a_launchpad(mongo_uri, db_name, journal_path):
    Journal.open(journal_path).close()
    res = invoke("push", "--uri", mongo_uri, "--name", db_name, "--journal", journal_path)
    assert res.exit_code == EX_CONFIG and "not a FireWorks LaunchPad" in res.output


def test_push_watch_resumes_by_itself_when_the_database_returns(mongo_server_factory, tmp_path, journal_path):
    server = mongo_server_factory()
    lp = make_launchpad(server.uri, "fireworks")
    d = prepared(lp, tmp_path)
    lp.connection.close()
    env = dict(job_env(), FWSPOOL_JOURNAL=journal_path, FWSPOOL_MONGODB_URI=server.uri)
    cli = fwspool_cmd()
    subprocess.run([*cli, "ingest", "--root", d], env=env, check=True, capture_output=True)
    server.stop()
    log = tmp_path / "push-watch.log"
    proc = subprocess.Popen(
        [*cli, "push", "--watch", "--interval", "0.2", "--timeout", "0.5"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        text=True,
    )
    try:
        # The outage seen and retried with backoff, however slowly the machine runs, before the
        # database returns (a fixed sleep once restarted it before the first attempt).
        wait_for(lambda: "retrying in" in log.read_text(), 60, "failed push attempt")
        server.start()
        deadline = time.time() + 60
        while time.time() < deadline:
            with Journal.open(journal_path) as journal:
                if journal.count_events("pushed_at IS NULL") == 0:
                    break
            time.sleep(0.3)
        else:
            pytest.fail("push --watch did not resume")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    err = log.read_text()
    assert proc.returncode == 0, err
    assert "cannot reach MongoDB" in err and "retrying in" in err
    assert "Traceback" not in err


@pytest.fixture
def auth_server(mongo_server_factory):
    server = mongo_server_factory()
    import pymongo

    client = pymongo.MongoClient(server.uri)
    client.admin.command("createUser", "alice", pwd="Sup3r-S3cret", roles=[{"role": "root", "db": "admin"}])
    client.close()
    server.stop()
    server.extra_args = ("--auth",)
    server.start()
    return server


def test_wrong_password_is_its_own_error_and_never_retried(auth_server, tmp_path, journal_path):
    good = (
        f"mongodb://alice:Sup3r-S3cret@127.0.0.1:{auth_server.port}/?directConnection=true&authSource=admin"
    )
    lp = make_launchpad(good, "fireworks")
    d = prepared(lp, tmp_path)
    lp.connection.close()
    bad = good.replace("Sup3r-S3cret", "Wr0ng-Pa55word")
    env = dict(job_env(), FWSPOOL_JOURNAL=journal_path)
    cli = fwspool_cmd()
    subprocess.run([*cli, "ingest", "--root", d], env=env, check=True, capture_output=True)
    for extra in ([], ["--watch"]):
        res = subprocess.run(
            [*cli, "push", "--uri", bad, *extra], env=env, capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 77, res.stderr
        assert unstamped(res.stderr).startswith("fwspool: MongoDB at mongodb://alice:***@127.0.0.1")
        assert "refused the credentials" in res.stderr and res.stderr.count("\n") == 1
        assert "Wr0ng-Pa55word" not in res.stdout + res.stderr
    res = subprocess.run([*cli, "push", "--uri", good], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "Sup3r-S3cret" not in res.stdout + res.stderr


def test_status_shows_launches_totals_and_the_database(launchpad, tmp_path, journal_path, mongo_uri):
    d = prepared(launchpad, tmp_path)
    runner = CliRunner()
    env = {
        "FWSPOOL_JOURNAL": journal_path,
        "FWSPOOL_MONGODB_URI": mongo_uri,
        "FWSPOOL_MONGODB_NAME": launchpad.name,
    }
    assert runner.invoke(main, ["ingest", "--root", d], env=env).exit_code == 0
    res = runner.invoke(main, ["status"], env=env)
    assert res.exit_code == 0, res.output
    import re

    assert "launches: 1; as last pushed: not pushed 1" in res.output, res.output
    total = re.search(r"events: (\d+): (\d+) pending \(1 launch\)", res.output)
    assert total and total.group(1) == total.group(2) and int(total.group(1)) >= 5, res.output
    assert "last successful push: never" in res.output
    assert "database: answers at mongodb://127.0.0.1" in res.output
    assert runner.invoke(main, ["push"], env=env).exit_code == 0
    res = runner.invoke(main, ["status", "--json"], env=env)
    import json

    report = json.loads(res.output)
    assert report["totals"]["pending"] == 0 and report["totals"]["pushed"] == int(total.group(1))
    assert report["launches"][0]["last_event"] == "exited"
    assert report["last_successful_push"] is not None
    res = runner.invoke(
        main, ["status", "--timeout", "0.5"], env=dict(env, FWSPOOL_MONGODB_URI="mongodb://127.0.0.1:1/")
    )
    assert res.exit_code == 0 and "database: NOT reachable" in res.output


@pytest.mark.parametrize("point", ["bulk.after_launches", "bulk.after_fireworks"])
def test_kill_9_in_the_middle_of_a_bulk_completion_is_redone(
    point, mongo_uri, db_name, tmp_path, journal_path
):
    """The bulk completion writes launches, then Fireworks, then workflows; a kill between them
    leaves a redo record in the journal that the next push finishes before anything else."""
    with (
        throwaway_launchpad(mongo_uri, db_name + "_c") as clean,
        throwaway_launchpad(mongo_uri, db_name + "_k") as killed,
    ):
        dirs = {}
        for lp, sub in ((clean, "c"), (killed, "k")):
            for _ in range(3):
                lp.add_wf(grow_wf())
            dirs[sub] = []
            for i in range(3):
                d = str(tmp_path / sub / f"l{i}")
                reserve_offline(lp, d)
                assert run_fwspool(d).returncode == 0
                dirs[sub].append(d)
        with Journal.open(str(tmp_path / "c.sqlite3")) as journal:
            Ingester(journal, roots=(str(tmp_path / "c"),)).run_pass()
            Pusher(journal, uplink_for(mongo_uri, clean.name)).run_pass()
        env = job_env()
        env.update(
            FWSPOOL_JOURNAL=journal_path, FWSPOOL_MONGODB_URI=mongo_uri, FWSPOOL_MONGODB_NAME=killed.name
        )
        cli = fwspool_cmd()
        subprocess.run(
            [*cli, "ingest", "--root", str(tmp_path / "k")], env=env, check=True, capture_output=True
        )
        crash = subprocess.run(
            [*cli, "push"], env=dict(env, FWSPOOL_FAILPOINTS=f"{point}=kill"), capture_output=True
        )
        assert crash.returncode == -signal.SIGKILL
        with Journal.open(journal_path) as journal:
            assert len(journal.pending_redo()) == 1
        assert killed.workflows.count_documents({"locked": True}) > 0  # the dead pass's locks
        again = subprocess.run([*cli, "push"], env=env, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        with Journal.open(journal_path) as journal:
            assert journal.pending_redo() == [] and journal.count_events("pushed_at IS NULL") == 0
        assert killed.workflows.count_documents({"locked": {"$exists": True}}) == 0
        assert snapshot(killed, tuple(dirs["k"])) == snapshot(clean, tuple(dirs["c"]))
        assert killed.fireworks.count_documents({}) == 3 * 4


# -- pending events: a writer's own order, not its clock's (found by tools/chaos.py) ------------


def test_pending_events_keep_each_writers_order_when_its_clock_steps_back(tmp_path: Path) -> None:
    T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)  # noqa: N806
    d = tmp_path / "launch"
    d.mkdir()
    now = [T0]
    with SpoolWriter(str(d), 7, 7, clock=lambda: now[0]) as w:
        w.append(Started(started_on=T0, host="h", ip="1.2.3.4"))
        now[0] = T0 - dt.timedelta(hours=2)  # NTP stepped the node's clock back
        w.append(Ping(ping_time=now[0]))
        w.append(Checkpoint(checkpoint={"_task_n": 0}, ping_time=now[0]))
        w.append(Completed(state="COMPLETED", action={}, completed_on=now[0]))
    now[0] = T0 + dt.timedelta(hours=1)
    with SpoolWriter(str(d), 7, 7, clock=lambda: now[0]) as w:  # another writer: `fwspool emit`
        w.append(Exited(returncode=0))
    with Journal.open(str(tmp_path / "j.sqlite3")) as journal:
        Ingester(journal, roots=[str(d)]).run_pass()
        [batch] = journal.pending_launches(None, 10)
    assert [e.type for e in batch.events] == ["started", "ping", "checkpoint", "completed", "exited"]


def test_a_push_keeps_what_existed_before_its_batches_out_of_full_collections(
    launchpad, tmp_path, journal_path, mongo_uri
):
    # A full collection visits every object of the process; a 500-launch batch sets one off, and
    # the imports alone cost it 46 ms on the test machine (#23): frozen while the batches run,
    # and given back to the collector when they end.
    d = prepared(launchpad, tmp_path)
    frozen_during: list[int] = []
    with Journal.open(journal_path) as journal:
        Ingester(journal, roots=[d]).run_pass()
        uplink = uplink_for(mongo_uri, launchpad.name)
        try:
            summary = Pusher(journal, uplink).run_pass(
                progress=lambda done, total: frozen_during.append(gc.get_freeze_count())
            )
        finally:
            uplink.close()
    assert summary.applied > 0
    assert frozen_during and min(frozen_during) > 10_000, frozen_during
    assert gc.get_freeze_count() == 0
