"""Packed jobs on the real submission path: `fwspool qlaunch --pack`, the user's own queue adapter
(the README's `rocket_launch` line), a real Slurm, `fwspool sync --watch`; the LaunchPad checked
at the end as a user would check it."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

from fireworks import Firework, ScriptTask
from test_slurm_path import ROCKET_LAUNCH, fw_state, launchpad_of, site_with_own_server, sleeper

from fwspool.events import as_utc
from fwspool.journal import Journal
from fwspool.testing.devslurm import DevSlurm
from fwspool.testing.docs import code_blocks, doc_section
from fwspool.testing.launchpad import make_launchpad
from fwspool.testing.slurm_site import Site
from fwspool.testing.waiting import wait_for

#: The section the packing tests run word for word.
PACKING = "Packing many Fireworks into one job"


def readme_pack_line() -> str:
    """The ``fwspool qlaunch`` line of "Packing many Fireworks into one job" (docs/packing.md)."""
    [line] = [
        block.strip()
        for block in code_blocks(doc_section(PACKING), "sh")
        if block.startswith("fwspool qlaunch ")
    ]
    return line


def readme_pack_qadapter() -> str:
    """The packing section's queue adapter example, with the quick start's rocket_launch line."""
    [yaml] = code_blocks(doc_section(PACKING), "yaml")
    return yaml + ROCKET_LAUNCH + "\n"


def qlaunch(site: Site, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`fwspool qlaunch -r -l ... -q ... ARGS` in the site's runs directory, as the user runs it."""
    cmd = [
        str(site.fw / ".venv" / "bin" / "fwspool"),
        "qlaunch",
        "-r",
        "-l",
        str(site.launchpad_file),
        "-w",
        str(site.fw / "my_fworker.yaml"),
        "-q",
        str(site.qadapter),
        *args,
    ]
    res = subprocess.run(cmd, cwd=site.runs, env=site.env(), capture_output=True, text=True, timeout=180)
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def jobs_of(out: str) -> list[str]:
    return re.findall(r"batch job (\d+):", out)


def launch(lp: Any, fw_id: int) -> dict[str, Any]:
    fw = lp.fireworks.find_one({"fw_id": fw_id})
    return dict(lp.launches.find_one({"launch_id": fw["launches"][-1]}))


def add(lp: Any, *fws: Firework) -> list[int]:
    return [next(iter(lp.add_wf(fw).values())) for fw in fws]


def all_in(lp: Any, ids: list[int], state: str, timeout: float = 90) -> None:
    wait_for(lambda: all(fw_state(lp, i) == state for i in ids), timeout, f"Fireworks {ids} {state}")


def test_the_readme_line_packs_rapidfire_jobs_with_the_readme_queue_adapter(site: Site) -> None:
    lp = make_launchpad(*launchpad_of(site))
    ids = add(lp, *(Firework(ScriptTask.from_str(f"echo {i} > out.txt"), name=f"fw{i}") for i in range(60)))
    site.qadapter.write_text(readme_pack_qadapter())
    site.start_sync()
    env = site.env(PATH=f"{site.fw / '.venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin")
    res = subprocess.run(
        ["bash", "-c", readme_pack_line()], cwd=site.fw, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = jobs_of(res.stdout + res.stderr)
    assert len(jobs) == 3, res.stdout + res.stderr
    all_in(lp, ids, "COMPLETED", 180)
    by_job: dict[str, list[int]] = {}
    for i in ids:
        by_job.setdefault(str(lp.get_reservation_id_from_fw_id(i)), []).append(i)
    assert sorted(len(v) for v in by_job.values()) == [10, 25, 25] and set(by_job) == set(jobs)
    dirs = [launch(lp, i)["launch_dir"] for i in ids]
    assert all(re.search(r"/block_[^/]+/launcher_[^/]+$", d) for d in dirs)
    assert len({os.path.dirname(d) for d in dirs}) == 3
    script = (Path(dirs[0]).parent / "FW_submit.script").read_text()
    assert "--ntasks=4" in script and "--block" in script


def test_a_sequential_pack_runs_in_order_and_a_fizzle_does_not_stop_it(site: Site) -> None:
    lp = make_launchpad(*launchpad_of(site))
    ids = add(lp, sleeper("a", 1), Firework(ScriptTask.from_str("exit 3"), name="bad"), sleeper("c", 1))
    site.start_sync()
    out = qlaunch(site, "--pack", "5", "singleshot").stdout
    [job] = jobs_of(out)
    wait_for(lambda: fw_state(lp, ids[2]) == "COMPLETED", 90, "the last Firework COMPLETED")
    assert [fw_state(lp, i) for i in ids] == ["COMPLETED", "FIZZLED", "COMPLETED"]
    launches = [launch(lp, i) for i in ids]
    assert all(la["state_history"][0].get("reservation_id") == job for la in launches)
    assert (
        launches[0]["time_end"] <= launches[1]["time_start"]
        and launches[1]["time_end"] <= launches[2]["time_start"]
    )
    started = [
        json.loads(p)
        for (p,) in site.events("SELECT payload FROM events WHERE type = 'started' ORDER BY fw_id")
    ]
    assert {s["batch_job_id"] for s in started} == {job}


def test_a_parallel_pack_runs_its_fireworks_at_once(site: Site) -> None:
    lp = make_launchpad(*launchpad_of(site))
    ids = add(lp, *(sleeper(f"p{i}", 4) for i in range(4)))
    site.start_sync()
    qlaunch(site, "--pack", "4", "--parallel", "4", "singleshot")
    all_in(lp, ids, "COMPLETED")
    launches = [launch(lp, i) for i in ids]
    assert max(la["time_start"] for la in launches) < min(la["time_end"] for la in launches)


def spool_started(lp: Any, fw_id: int) -> bool:
    d = Path(launch(lp, fw_id)["launch_dir"])
    return any('"type":"started"' in p.read_text(errors="replace") for p in d.glob("fwspool-*.spool"))


def test_scancel_mid_pack_fizzles_the_running_firework_and_the_next_qlaunch_takes_the_rest(
    site: Site,
) -> None:
    """As at walltime: Slurm sends SIGTERM (then SIGKILL after KillWait)."""
    lp = make_launchpad(*launchpad_of(site))
    ids = add(lp, sleeper("done", 0), sleeper("running", 600), sleeper("r1", 0), sleeper("r2", 0))
    site.start_sync()
    [job] = jobs_of(qlaunch(site, "--pack", "4", "singleshot").stdout)
    wait_for(lambda: spool_started(lp, ids[1]), 60, "the second Firework started")
    site.slurm.scancel(job)
    wait_for(lambda: fw_state(lp, ids[1]) == "FIZZLED", 60, "the running Firework FIZZLED")
    all_in(lp, ids[2:], "READY", 60)
    assert fw_state(lp, ids[0]) == "COMPLETED"
    assert launch(lp, ids[1])["action"]["stored_data"]["_fwspool_exit"]["signal_name"] == "SIGTERM"
    released = [json.loads(p) for (p,) in site.events("SELECT payload FROM events WHERE type = 'released'")]
    assert len(released) == 2 and all("SIGTERM" in r["reason"] and r["batch_job_id"] == job for r in released)
    wait_for(
        lambda: all(d["deprecated"] for d in lp.offline_runs.find({"fw_id": {"$in": ids[2:]}})),
        30,
        "the released offline runs forgotten",
    )
    with Journal.open(str(site.journal)) as journal:
        [shown] = [b for b in journal.blocks() if b["batch_job_id"] == job]
    assert (shown["launches"], shown["completed"], shown["ended"], shown["released"]) == (4, 1, 1, 2)
    # `fwspool status` shows the packed job: its counts in --json, and in the table.
    status = site.fwspool("status", "--json", "--no-check", "--journal", str(site.journal))
    assert [b for b in json.loads(status.stdout)["blocks"] if b["batch_job_id"] == job] == [shown]
    table = site.fwspool("status", "--no-check", "--journal", str(site.journal)).stdout
    assert "packed jobs: 1, 0 with launches running or not started" in table
    [job2] = jobs_of(qlaunch(site, "--pack", "4", "singleshot").stdout)
    all_in(lp, ids[2:], "COMPLETED")
    assert {str(lp.get_reservation_id_from_fw_id(i)) for i in ids[2:]} == {job2}
    assert fw_state(lp, ids[1]) == "FIZZLED"


def test_a_pack_whose_walltime_ends_mid_way(site: Site) -> None:
    """Slurm's own time limit (checked every 30 s: this test takes a minute or two)."""
    lp = make_launchpad(*launchpad_of(site))
    minute = {"walltime": "00:01:00"}
    ids = add(
        lp,
        sleeper("done", 1, _queueadapter=minute),
        sleeper("cut", 600, _queueadapter=minute),
        *(sleeper(f"rest{i}", 0, _queueadapter=minute) for i in range(2)),
    )
    site.start_sync()
    [job] = jobs_of(qlaunch(site, "--pack", "4", "--margin", "0", "singleshot").stdout)
    wait_for(lambda: fw_state(lp, ids[1]) == "FIZZLED", 180, "the Firework the walltime cut FIZZLED", every=1)
    assert site.slurm.job_state(job) in ("TIMEOUT", None)
    assert fw_state(lp, ids[0]) == "COMPLETED"
    assert launch(lp, ids[1])["action"]["stored_data"]["_fwspool_exit"]["signal_name"] == "SIGTERM"
    all_in(lp, ids[2:], "READY", 60)
    # (The default margin, 60 s, would release them again from a one-minute job: qlaunch warns.)
    qlaunch(site, "--pack", "4", "--margin", "0", "singleshot")
    all_in(lp, ids[2:], "COMPLETED")


def test_the_margin_keeps_fireworks_from_starting_near_the_walltime(site: Site) -> None:
    lp = make_launchpad(*launchpad_of(site))
    minute = {"walltime": "00:01:00"}
    ids = add(
        lp,
        # The first must start within 10 s of the job's start (a loaded machine is slow to
        # start a job's first launch); the others, 12 s later, have less than the margin left.
        sleeper("fits", 12, _queueadapter=minute),
        *(sleeper(f"late{i}", 0, _queueadapter=minute) for i in range(2)),
    )
    site.start_sync()
    qlaunch(site, "--pack", "3", "--margin", "50", "singleshot")
    wait_for(lambda: fw_state(lp, ids[0]) == "COMPLETED", 60, "the first Firework COMPLETED")
    all_in(lp, ids[1:], "READY", 60)
    reasons = [
        json.loads(p)["reason"] for (p,) in site.events("SELECT payload FROM events WHERE type = 'released'")
    ]
    assert len(reasons) == 2 and all("less than the margin (50 s)" in r for r in reasons), reasons


def test_a_pack_cancelled_while_pending_is_released_whole(site: Site) -> None:
    lp = make_launchpad(*launchpad_of(site))
    ids = add(lp, *(sleeper(f"s{i}", 0) for i in range(3)))
    site.start_sync()
    partition = site.slurm.partition
    site.slurm.run("scontrol", "update", f"PartitionName={partition}", "State=DOWN")
    try:
        [job] = jobs_of(qlaunch(site, "--pack", "3", "singleshot").stdout)
        assert site.slurm.job_state(job) == "PENDING"
        site.slurm.scancel(job)
    finally:
        site.slurm.run("scontrol", "update", f"PartitionName={partition}", "State=UP")
    all_in(lp, ids, "READY", 60)
    assert site.log().count("reservation is released") >= 3


def test_a_requeued_pack_resumes_without_rerunning_what_completed(site: Site) -> None:
    lp = make_launchpad(*launchpad_of(site))
    ids = add(lp, sleeper("first", 0), sleeper("interrupted", 8), sleeper("after", 0))
    site.start_sync()
    [job] = jobs_of(qlaunch(site, "--pack", "3", "singleshot").stdout)
    wait_for(lambda: spool_started(lp, ids[1]), 60, "the second Firework started")
    time.sleep(1)
    site.slurm.requeue(job)
    wait_for(
        lambda: fw_state(lp, ids[1]) == "COMPLETED", 120, "the interrupted Firework COMPLETED on the rerun"
    )
    all_in(lp, ids[2:], "READY", 60)  # released at the requeue's SIGTERM: handed back, not rerun
    starts = site.events(
        "SELECT fw_id, json_extract(payload, '$.restart_count') FROM events WHERE type = 'started'"
    )
    assert sorted(starts) == [(ids[0], 0), (ids[1], 0), (ids[1], 1)]  # the completed one ran once
    running = launch(lp, ids[1])["state_history"][1]
    assert running["interrupted_runs"][0]["exit"]["signal_name"] == "SIGTERM"


def test_rapidfire_keeps_to_maxjobs_queue(site: Site) -> None:
    lp = make_launchpad(*launchpad_of(site))
    ids = add(lp, *(sleeper(f"s{i}", 3) for i in range(4)))
    site.start_sync()
    res = qlaunch(site, "--pack", "2", "rapidfire", "-m", "1", "--nlaunches", "2", "--sleep", "1")
    first, second = jobs_of(res.stdout)
    assert "1 job in the queue already" in res.stdout
    all_in(lp, ids, "COMPLETED")
    in_first = [i for i in ids if str(lp.get_reservation_id_from_fw_id(i)) == first]
    in_second = [i for i in ids if str(lp.get_reservation_id_from_fw_id(i)) == second]
    assert len(in_first) == len(in_second) == 2
    # The second job was submitted only once the first had left the queue.
    submitted = os.stat(Path(launch(lp, in_second[0])["launch_dir"]).parent / "FW_submit.script").st_mtime
    assert submitted >= max(as_utc(launch(lp, i)["time_end"]) for i in in_first).timestamp() - 1


def test_fireworks_with_different_queueadapter_settings_go_in_separate_jobs(site: Site) -> None:
    lp = make_launchpad(*launchpad_of(site))
    short = {"walltime": "00:05:00"}
    ids = add(
        lp,
        sleeper("p1", 0),
        sleeper("s1", 0, _queueadapter=short),
        sleeper("p2", 0),
        sleeper("s2", 0, _queueadapter=short),
    )
    site.start_sync()
    jobs = jobs_of(qlaunch(site, "--pack", "10", "rapidfire", "--nlaunches", "2").stdout)
    assert len(jobs) == 2
    all_in(lp, ids, "COMPLETED")
    job_of = {i: str(lp.get_reservation_id_from_fw_id(i)) for i in ids}
    assert job_of[ids[0]] == job_of[ids[2]] != job_of[ids[1]] == job_of[ids[3]]
    scripts = {i: (Path(launch(lp, i)["launch_dir"]).parent / "FW_submit.script").read_text() for i in ids}
    assert "--time=00:05:00" in scripts[ids[1]] and "--time=00:10:00" in scripts[ids[0]]


def test_packs_run_and_are_recorded_while_the_database_is_down(
    tmp_path: Path, mongo_server_factory: Any, db_name: str, slurm_cluster: DevSlurm
) -> None:
    server, lp, s = site_with_own_server(tmp_path, mongo_server_factory, db_name, slurm_cluster)
    ids = add(lp, *(sleeper(f"s{i}", 1) for i in range(4)))
    try:
        s.start_sync()
        [job] = jobs_of(qlaunch(s, "--pack", "4", "--parallel", "2", "singleshot").stdout)
        server.stop()
        slurm_cluster.wait_for_state(job, {"COMPLETED", "GONE"}, 90)
        wait_for(
            lambda: len(s.events("SELECT 1 FROM events WHERE type = 'completed'")) == 4,
            60,
            "the four completions in the journal while the database is down",
        )
        # A push blocks up to its 5 s server-selection timeout: a database back before that
        # would let the push succeed with the outage unseen (as tests/test_cluster.py waits).
        wait_for(lambda: "cannot reach MongoDB" in s.log(), 30, "the pusher to see the outage")
        server.start()
        all_in(lp, ids, "COMPLETED")
    finally:
        s.stop_sync()
        slurm_cluster.run("scancel", "--user=root", check=False)


def test_shlex_of_the_readme_line_is_what_the_cli_takes() -> None:
    words = shlex.split(readme_pack_line())
    assert words[:2] == ["fwspool", "qlaunch"] and words.index("--pack") < words.index("rapidfire")


def test_spec_launch_dirs_and_the_config_dir_as_qlaunch_takes_them(site: Site, tmp_path: Path) -> None:
    """`-c DIR` finds my_launchpad.yaml, my_fworker.yaml and my_qadapter.yaml there, as FireWorks'
    qlaunch does; a spec's `_launch_dir` moves its launch, absolute as given, relative under the
    block directory (as FireWorks' rapidfire, which launches in its block directory)."""
    lp = make_launchpad(*launchpad_of(site))
    elsewhere = tmp_path / "elsewhere" / "fw_abs"
    ids = add(
        lp,
        Firework(ScriptTask.from_str("echo a > out.txt"), name="abs", spec={"_launch_dir": str(elsewhere)}),
        Firework(ScriptTask.from_str("echo r > out.txt"), name="rel", spec={"_launch_dir": "rel/fw"}),
        Firework(ScriptTask.from_str("echo p > out.txt"), name="plain"),
    )
    site.start_sync()
    fwspool = str(site.fw / ".venv" / "bin" / "fwspool")
    res = subprocess.run(
        [fwspool, "qlaunch", "-r", "-c", str(site.fw), "--pack", "3", "singleshot"],
        cwd=site.runs,
        env=site.env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    [job] = jobs_of(res.stdout + res.stderr)
    all_in(lp, ids, "COMPLETED")
    dirs = {lp.get_fw_by_id(i).name: launch(lp, i)["launch_dir"] for i in ids}
    block = os.path.dirname(dirs["plain"])
    assert re.search(r"/runs/block_[^/]+$", block), dirs
    assert dirs["abs"] == str(elsewhere)
    assert dirs["rel"] == os.path.join(block, "rel", "fw")
    for name, d in dirs.items():
        assert (Path(d) / "out.txt").read_text().strip() == name[0]
    assert {str(lp.get_reservation_id_from_fw_id(i)) for i in ids} == {job}


def test_rapidfire_stops_submitting_at_its_timeout(site: Site) -> None:
    """`rapidfire --nlaunches infinite` would go on for good; `--timeout` ends it, as qlaunch's."""
    lp = make_launchpad(*launchpad_of(site))
    [fw_id] = add(lp, sleeper("t", 1))
    site.start_sync()
    started = time.monotonic()
    res = qlaunch(
        site, "--pack", "2", "rapidfire", "--nlaunches", "infinite", "--sleep", "1", "--timeout", "4"
    )
    took = time.monotonic() - started
    assert 4 <= took < 60, took
    assert len(jobs_of(res.stdout + res.stderr)) == 1
    all_in(lp, [fw_id], "COMPLETED")
