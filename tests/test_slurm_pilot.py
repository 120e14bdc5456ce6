"""Pilot jobs on the real Slurm: `fwspool sync --watch --submit --pilot POOL` stocks a pool and
submits pilots (`fwspool rlaunch --pilot POOL`, the README's rocket_launch line with --pilot
appended) that run launches from it; checked on the LaunchPad, in the journal and in the pool."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

from fireworks import Firework, ScriptTask, Workflow
from test_slurm_path import fw_state, launchpad_of, site_with_own_server, sleeper

from fwspool.pool import CLAIM_NAME, Pool
from fwspool.testing.devslurm import DevSlurm
from fwspool.testing.launchpad import make_launchpad
from fwspool.testing.slurm_site import Site
from fwspool.testing.waiting import wait_for


def start_daemon(site: Site, *extra: str) -> Path:
    """The one daemon with pilots on the site's pool; the pool's path."""
    pool = site.fw / "pool"
    site.start_sync(
        "--submit",
        "-q",
        str(site.qadapter),
        "-w",
        str(site.fw / "my_fworker.yaml"),
        "--pilot",
        str(pool),
        *extra,
    )
    return pool


def pilot_jobs(site: Site) -> list[str]:
    """The pilot jobs the daemon said it submitted, in order."""
    return [
        ln.split("pilot job ", 1)[1].split()[0] for ln in site.log().splitlines() if "pool: pilot job " in ln
    ]


def pilot_output(pool: Path) -> str:
    return "".join(
        p.read_text(errors="replace") for p in sorted((pool / "pilots").glob("pilot_*/fwspool_pilot-*"))
    )


def starts(site: Site) -> list[tuple[int, str]]:
    """(Firework, batch job) of every started event in the journal."""
    try:
        rows = site.events("SELECT fw_id, payload FROM events WHERE type = 'started'")
    except sqlite3.OperationalError:
        return []  # the journal is being made
    return [(fw_id, json.loads(p)["batch_job_id"]) for fw_id, p in rows]


def stocked(pool: Path) -> list[str]:
    """The names of the pool's published entries: not a ``.tmp`` one being written, which the
    daemon renames into place a moment later (taken by that name, it was gone: a flake)."""
    return [name for name, _entry in Pool(str(pool)).ready()] if (pool / "ready").is_dir() else []


def add(lp: Any, *fws: Firework) -> list[int]:
    return [next(iter(lp.add_wf(fw).values())) for fw in fws]


def test_a_chain_runs_in_one_pilot_that_ends_at_idle_exit(site: Site) -> None:
    lp = make_launchpad(*launchpad_of(site))
    steps = [
        Firework(ScriptTask.from_str(f"echo {i} > step.txt"), name=f"step{i}", fw_id=i) for i in (1, 2, 3, 4)
    ]
    lp.add_wf(Workflow(steps, {1: [2], 2: [3], 3: [4]}))
    pool = start_daemon(site, "--idle-exit", "8")
    wait_for(lambda: fw_state(lp, 4) == "COMPLETED", 120, "the chain's last step COMPLETED")
    [job] = pilot_jobs(site)
    assert sorted(starts(site)) == [(i, job) for i in (1, 2, 3, 4)]  # one pilot ran all, each once
    site.slurm.wait_for_state(job, {"COMPLETED", "GONE"}, 60)
    out = pilot_output(pool)
    assert "ends: nothing to take for" in out and "(--idle-exit 8)" in out, out
    assert "4 launches run" in out
    assert not os.listdir(pool / "ready") and not os.listdir(pool / "claimed")
    for i in (1, 2, 3, 4):
        launch_dir = lp.launches.find_one({"fw_id": i})["launch_dir"]
        claim = json.loads((Path(launch_dir) / CLAIM_NAME).read_text())
        assert claim["batch_job_id"] == job and claim["pilot"].startswith(f"{job}_")


def test_a_pilot_ends_at_its_deadline_and_leaves_what_does_not_fit(site: Site) -> None:
    """Walltime 1 min and --margin 45: the short Firework runs, the one estimated at 30 s never
    fits; the pilot ends by its deadline (not its 10-minute --idle-exit)."""
    lp = make_launchpad(*launchpad_of(site))
    site.qadapter.write_text(
        site.qadapter.read_text().replace("walltime: '00:10:00'", "walltime: '00:01:00'")
    )
    [short, long] = add(lp, sleeper("short", 1), sleeper("long", 1, _fwspool_estimate=30))
    pool = start_daemon(site, "--margin", "45", "--idle-exit", "600", "--pool-size", "2")
    wait_for(lambda: fw_state(lp, short) == "COMPLETED", 90, "the short Firework COMPLETED")
    job = pilot_jobs(site)[0]
    site.slurm.wait_for_state(job, {"COMPLETED", "GONE"}, 60)
    out = pilot_output(pool)
    assert "less than the margin (45 s) left before the job's deadline" in out, out
    assert fw_state(lp, long) == "RESERVED"  # still in stock, for a pilot it fits
    assert [name for name in os.listdir(pool / "ready")] == [
        f"{lp.launches.find_one({'fw_id': long})['launch_id']}.json"
    ]


def test_stock_nobody_takes_is_handed_back_after_pool_ttl(site: Site) -> None:
    lp = make_launchpad(*launchpad_of(site))
    [never] = add(lp, sleeper("too long for any pilot", 1, _fwspool_estimate=100000))
    start_daemon(site, "--pool-ttl", "6", "--idle-exit", "3")
    wait_for(lambda: fw_state(lp, never) == "RESERVED", 60, "the Firework stocked")
    wait_for(lambda: "not taken within 6s: handed back (READY)" in site.log(), 60, "the hand-back")
    wait_for(lambda: fw_state(lp, never) == "READY", 30, "the Firework READY again")
    fw = lp.fireworks.find_one({"fw_id": never})
    assert lp.offline_runs.find_one(
        {"launch_id": fw["launches"][0] if fw["launches"] else -1}
    ) is None or all(r["deprecated"] for r in lp.offline_runs.find({"fw_id": never}))
    time.sleep(3)  # rounds every 0.5 s: it would be back in stock by now
    assert fw_state(lp, never) == "READY"  # not stocked again within --pool-ttl


def test_four_pilots_racing_for_one_pool_run_each_launch_once(site: Site) -> None:
    """One pilot from the daemon and three from `fwspool qlaunch singleshot --pilot`, all held
    until the pool is stocked, then released at once."""
    lp = make_launchpad(*launchpad_of(site))
    ids = add(lp, *(sleeper(f"r{i}", 0.5) for i in range(12)))
    partition = site.slurm.partition
    site.slurm.run("scontrol", "update", f"PartitionName={partition}", "State=DOWN")
    try:
        pool = start_daemon(site, "--pool-size", "12", "--idle-exit", "4")
        wait_for(
            lambda: len(stocked(pool)) == 12 and pilot_jobs(site),
            60,
            "12 in stock, a pilot queued",
        )
        for _ in range(3):  # three more pilots of the same pool, by hand: four race
            site.fwspool(
                "qlaunch", "-r", "-l", str(site.launchpad_file), "-w", str(site.fw / "my_fworker.yaml"),
                "-q", str(site.qadapter), "singleshot", "--pilot", str(pool), "--idle-exit", "4",
            )  # fmt: skip
    finally:
        site.slurm.run("scontrol", "update", f"PartitionName={partition}", "State=UP")
    wait_for(lambda: all(fw_state(lp, i) == "COMPLETED" for i in ids), 120, "all COMPLETED")
    started = starts(site)
    assert sorted(fw for fw, _job in started) == sorted(ids), started  # none ran twice
    assert all(len(lp.fireworks.find_one({"fw_id": i})["launches"]) == 1 for i in ids)
    by_job = Counter(job for _fw, job in started)
    assert len(by_job) >= 2, by_job  # they did race
    # The daemon may add one of its own once stock has waited (STOCK_WAIT).
    assert len(list((pool / "pilots").glob("pilot_*/FW_submit.script"))) >= 4
    assert not os.listdir(pool / "claimed")


def test_a_pilot_scancelled_or_sigkilled_mid_launch(site: Site) -> None:
    """scancel: the running launch records the SIGTERM and FIZZLES, as a packed job's. SIGKILL:
    nothing recorded, the batch system's check finds it lost. A claim the killed pilot held
    without starting its launch goes back to the pool and another pilot runs it."""
    lp = make_launchpad(*launchpad_of(site))
    [cancelled, killed] = add(lp, sleeper("cancelled", 600), sleeper("killed", 600))
    pool = start_daemon(site, "--pool-size", "1", "--idle-exit", "30")
    wait_for(lambda: any(fw == cancelled for fw, _j in starts(site)), 90, "the first launch started")
    [first] = pilot_jobs(site)
    site.slurm.scancel(first)
    wait_for(lambda: fw_state(lp, cancelled) == "FIZZLED", 90, "the cancelled launch FIZZLED")
    stored = lp.launches.find_one({"fw_id": cancelled})["action"]["stored_data"]
    assert stored["_fwspool_exit"]["signal_name"] == "SIGTERM"
    wait_for(lambda: any(fw == killed for fw, _j in starts(site)), 90, "the second launch started")
    [record] = (pool / "pilots").glob("*.json")
    pilot = json.loads(record.read_text())
    # A third Firework, claimed by this pilot as if it had been killed between claim and start.
    [orphan] = add(lp, Firework(ScriptTask.from_str("echo orphan > out.txt"), name="orphan"))
    wait_for(lambda: stocked(pool), 60, "the orphan in stock")
    [name] = stocked(pool)
    taken = Pool(str(pool)).take(name, f"{pilot['batch_job_id']}_ghost_1_0000")
    assert taken is not None
    os.kill(pilot["pid"], signal.SIGKILL)
    wait_for(
        lambda: site.events(
            "SELECT 1 FROM events WHERE type = 'lost' AND fw_id = ?".replace("?", str(killed))
        ),
        120,
        "the killed launch lost",
    )
    wait_for(
        lambda: "which is gone before starting it: back in the pool" in site.log(),
        60,
        "the orphan given back",
    )
    try:
        wait_for(lambda: fw_state(lp, orphan) == "COMPLETED", 120, "the orphan COMPLETED by another pilot")
    except AssertionError as exc:
        # Seen once under a load of 8 and not reproduced: what the daemon did, for the next time.
        files = "\n".join(str(p.relative_to(pool)) for p in sorted(pool.rglob("*")))
        raise AssertionError(
            f"{exc}\n--- daemon log, last lines:\n{site.log()[-6000:]}\n--- pool:\n{files}"
        ) from None
    assert sorted(fw for fw, _j in starts(site)) == sorted([cancelled, killed, orphan])
    wait_for(lambda: not record.exists(), 30, "the killed pilot's record removed by the daemon")


def test_pilots_work_through_the_stock_while_the_database_is_down(
    tmp_path: Path, mongo_server_factory: Any, db_name: str, slurm_cluster: DevSlurm
) -> None:
    server, lp, s = site_with_own_server(tmp_path, mongo_server_factory, db_name, slurm_cluster)
    ids = add(lp, *(sleeper(f"s{i}", 1) for i in range(6)))
    partition = slurm_cluster.partition
    slurm_cluster.run("scontrol", "update", f"PartitionName={partition}", "State=DOWN")
    try:
        pool = start_daemon(s, "--pool-size", "6", "--idle-exit", "5")
        wait_for(lambda: len(stocked(pool)) == 6 and pilot_jobs(s), 60, "6 in stock, a pilot queued")
        server.stop()
        slurm_cluster.run("scontrol", "update", f"PartitionName={partition}", "State=UP")
        wait_for(
            lambda: len(s.events("SELECT 1 FROM events WHERE type = 'completed'")) == 6,
            90,
            "the six completions in the journal while the database is down",
        )
        assert "cannot reach MongoDB" in s.log()
        server.start()
        wait_for(lambda: all(fw_state(lp, i) == "COMPLETED" for i in ids), 90, "all COMPLETED")
    finally:
        slurm_cluster.run("scontrol", "update", f"PartitionName={partition}", "State=UP")
        s.stop_sync()
        slurm_cluster.run("scancel", "--user=root", check=False)
    assert len({job for _fw, job in starts(s)}) == 1
