"""The pool's claims (fwspool/pool.py, schema/POOL.md) on a real filesystem, without a batch
system: processes racing for entries, a rename NFS retried after its first try succeeded, a
claim record created twice, a claim given back."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

from fwspool.pool import CLAIM_NAME, Claim, Pool, claimed_name, read_claim_record


def stocked(tmp_path: Path, n: int) -> Pool:
    pool = Pool.create(str(tmp_path / "pool"))
    for i in range(1, n + 1):
        d = tmp_path / "pool" / "launches" / f"launcher_{i}"
        d.mkdir()
        pool.stock(i, 100 + i, str(d), None)
    return pool


def claim_all(root: str, name: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    pool = Pool(root)
    mine = []
    while (claim := pool.claim(name, None, lambda _e: True)) is not None:
        mine.append(claim.entry.launch_id)
    out.put((name, mine))


def test_four_processes_racing_claim_each_entry_exactly_once(tmp_path: Path) -> None:
    pool = stocked(tmp_path, 200)
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    workers = [
        multiprocessing.Process(target=claim_all, args=(pool.root, f"nojob_host_{i}_0000", out))
        for i in range(4)
    ]
    for w in workers:
        w.start()
    results = dict(out.get(timeout=60) for _ in workers)
    for w in workers:
        w.join(30)
    claimed = [lid for ids in results.values() for lid in ids]
    assert sorted(claimed) == list(range(1, 201))  # none twice, none lost
    assert os.listdir(Path(pool.root) / "ready") == []
    for name, ids in results.items():
        for lid in ids:
            record = read_claim_record(str(Path(pool.root) / "launches" / f"launcher_{lid}"))
            assert record is not None and record.pilot == name


def test_a_rename_nfs_retried_after_it_succeeded_is_still_the_pilots_claim(tmp_path: Path) -> None:
    pool = stocked(tmp_path, 1)
    ready = Path(pool.root) / "ready" / "1.json"
    # The first try of the rename went through; the retry finds no source (ENOENT).
    os.rename(ready, Path(pool.root) / "claimed" / claimed_name("1.json", "7_n1_1_aaaa"))
    assert pool.take("1.json", "8_n2_2_bbbb") is None  # another pilot: gone
    claim = pool.take("1.json", "7_n1_1_aaaa")
    assert claim is not None and claim.entry.launch_id == 1
    # The claim record: created once; a retried create by the same pilot is still its own,
    # another pilot's create is refused.
    assert pool.confirm(claim, "7")
    assert pool.confirm(claim, "7")
    assert not pool.confirm(Claim("1.json", "8_n2_2_bbbb", claim.entry), "8")
    assert read_claim_record(claim.entry.launch_dir).pilot == "7_n1_1_aaaa"  # type: ignore[union-attr]


def test_a_claim_given_back_sets_its_record_aside_for_the_next_pilot(tmp_path: Path) -> None:
    pool = stocked(tmp_path, 1)
    first = pool.claim("7_n1_1_aaaa", "7", lambda _e: True)
    assert first is not None and [c.holder for c in pool.claims()] == ["7_n1_1_aaaa"]
    pool.give_back(first)
    launch_dir = Path(first.entry.launch_dir)
    assert (launch_dir / f"{CLAIM_NAME}.abandoned-7_n1_1_aaaa").exists()
    assert [name for name, _e in pool.ready()] == ["1.json"] and pool.claims() == []
    second = pool.claim("9_n3_3_cccc", "9", lambda _e: True)
    assert second is not None and read_claim_record(str(launch_dir)).pilot == "9_n3_3_cccc"  # type: ignore[union-attr]
    pool.drop(second)
    assert pool.claims() == [] and pool.ready() == []


def test_an_entry_that_does_not_fit_stays_for_another_pilot(tmp_path: Path) -> None:
    pool = stocked(tmp_path, 2)
    claim = pool.claim("7_n1_1_aaaa", "7", lambda e: e.launch_id == 2)
    assert claim is not None and claim.entry.launch_id == 2
    assert [name for name, _e in pool.ready()] == ["1.json"]


def test_bad_pilot_and_submit_options_are_one_line_errors(tmp_path: Path) -> None:
    import subprocess
    import sys

    fwspool = str(Path(sys.executable).parent / "fwspool")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([fwspool, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)

    journal = str(tmp_path / "j.sqlite3")
    cases = [
        (("rlaunch", "--pilot", str(tmp_path / "nowhere")), 66, "is not a pilot pool"),
        (("rlaunch", "--pilot", str(tmp_path), "--fw_id", "3"), 2, "--pilot excludes --fw_id"),
        (("rlaunch", "--idle-exit", "5"), 2, "apply to a pilot"),
        (
            ("sync", "--journal", journal, "--uri", "mongodb://127.0.0.1:1", "--pack", "3"),
            2,
            "--pack applies to --submit",
        ),
        (
            ("sync", "--journal", journal, "--uri", "mongodb://127.0.0.1:1", "--submit"),
            2,
            "needs the queue adapter",
        ),
    ]
    for args, code, words in cases:
        res = run(*args)
        assert res.returncode == code and words in res.stderr, (args, res.returncode, res.stderr)
        assert "Traceback" not in res.stderr


def test_a_hand_back_done_again_leaves_the_ready_firework_alone(tmp_path: Path, launchpad: Any) -> None:
    """A daemon killed between its hand-back of stale stock and the removal of its `stocker-`
    claim hands the launch back again when it restarts. FireWorks' own cancel_reservation of a
    launch it already cancelled (READY) finds no RESERVED one to replace and upserts a copy, which
    the launch_id index refuses (E11000 duplicate key): the hand-back failed at every round, the
    claim stayed and no stock was made again. hand_back cancels only a RESERVED launch."""
    from fireworks import Firework, FWorker, ScriptTask

    from fwspool.qlaunch import hand_back, reserve_one

    [fw_id] = launchpad.add_wf(Firework(ScriptTask.from_str("true"), name="stale")).values()
    got = reserve_one(launchpad, FWorker(), str(tmp_path))
    assert got is not None
    _fw, launch_id, _launch_dir = got
    assert hand_back(launchpad, [launch_id]) == []
    assert hand_back(launchpad, [launch_id]) == []  # the restarted daemon's second try
    assert launchpad.launches.count_documents({"launch_id": launch_id}) == 1
    doc = launchpad.fireworks.find_one({"fw_id": fw_id})
    assert doc["state"] == "READY" and doc["launches"] == []
    assert all(r["deprecated"] for r in launchpad.offline_runs.find({"launch_id": launch_id}))
    # The Firework is reserved again as usual, with a new launch.
    again = reserve_one(launchpad, FWorker(), str(tmp_path))
    assert again is not None and again[1] != launch_id
    assert launchpad.fireworks.find_one({"fw_id": fw_id})["state"] == "RESERVED"


def test_a_hand_back_killed_half_way_is_finished_when_done_again(tmp_path: Path, launchpad: Any) -> None:
    """FireWorks' cancel_reservation writes the launch READY, then reruns its Firework (under
    the workflow's lock). A daemon killed in between (chaos scenario 15: killed while that rerun
    waited on a lock a dead process held) left the Firework RESERVED on a READY launch for good:
    the next daemon's hand-back, done again, found no RESERVED launch and did nothing more."""
    from fireworks import Firework, FWorker, ScriptTask

    from fwspool.qlaunch import hand_back, reserve_one

    [fw_id] = launchpad.add_wf(Firework(ScriptTask.from_str("true"), name="half")).values()
    got = reserve_one(launchpad, FWorker(), str(tmp_path))
    assert got is not None
    launch_id = got[1]
    # cancel_reservation's first write alone, as the killed daemon left it.
    launch = launchpad.get_launch_by_id(launch_id)
    launch.state = "READY"
    launchpad.launches.find_one_and_replace({"launch_id": launch_id}, launch.to_db_dict())
    assert launchpad.fireworks.find_one({"fw_id": fw_id})["state"] == "RESERVED"
    assert hand_back(launchpad, [launch_id]) == []
    doc = launchpad.fireworks.find_one({"fw_id": fw_id})
    assert doc["state"] == "READY" and doc["launches"] == []
    assert launchpad.launches.count_documents({"launch_id": launch_id}) == 1
    again = reserve_one(launchpad, FWorker(), str(tmp_path))
    assert again is not None and again[0].fw_id == fw_id


def test_a_reservation_an_earlier_daemon_never_stocked_is_handed_back(tmp_path: Path, launchpad: Any) -> None:
    """A daemon killed between reserve_fw and the entry's rename into ready/ (chaos scenario 15
    found them left RESERVED for good): the next daemon's first round hands them back; a
    stocked launch, a claimed one and one whose claim record says a pilot ran it stay."""
    from fireworks import Firework, FWorker, ScriptTask

    from fwspool.qlaunch import reserve_one
    from fwspool.stock import Stocker

    for i in range(4):
        launchpad.add_wf(Firework(ScriptTask.from_str("true"), name=f"fw{i}"))
    pool = Pool.create(str(tmp_path / "pool"))
    got = [reserve_one(launchpad, FWorker(), pool.path("launches")) for _ in range(4)]
    assert all(g is not None for g in got)
    (_o, orphan, _d), (fw1, stocked_id, d1), (fw2, claimed_id, d2), (_r, ran, d3) = got  # type: ignore[misc]
    pool.stock(stocked_id, fw1.fw_id, d1, None)
    pool.stock(claimed_id, fw2.fw_id, d2, None)
    assert pool.take(f"{claimed_id}.json", "7_n1_1_aaaa") is not None
    Path(d3, CLAIM_NAME).write_text("{}")  # a pilot ran it, dropped its claim; not pushed yet
    said: list[str] = []
    Stocker(pool, 3, 60, 5, None).hand_back_orphans(launchpad, said.append)

    def state(launch_id: int) -> str:
        return str(launchpad.fireworks.find_one({"launches": launch_id}, {"state": 1})["state"])

    assert launchpad.fireworks.count_documents({"state": "READY"}) == 1
    assert launchpad.launches.find_one({"launch_id": orphan})["state"] == "READY"
    assert [state(i) for i in (stocked_id, claimed_id, ran)] == ["RESERVED"] * 3
    assert len(said) == 1 and "reserved but never stocked" in said[0], said


def test_a_workflow_lock_left_by_a_dead_process_neither_blocks_the_daemon_nor_stalls_for_good(
    tmp_path: Path, launchpad: Any
) -> None:
    """A process killed inside FireWorks' WFLock (the daemon itself, in reserve_fw or
    cancel_reservation) leaves the workflow locked. Chaos scenario 15 found the next daemon's
    hand-back waiting 300 s in FireWorks' WFLock, round after round, deaf to SIGTERM. The daemon
    now leaves a locked workflow's Fireworks for a later round, and a lock held through
    WFLOCK_EXPIRATION_SECS is what FireWorks' config says: left and said once (the default), or
    broken (WFLOCK_EXPIRATION_KILL)."""
    import time

    from fireworks import Firework, FWorker, ScriptTask
    from fireworks.core.launchpad import WFLock

    from fwspool.launchpad.locks import LockWatch
    from fwspool.qlaunch import reserve_one
    from fwspool.stock import Stocker

    ids = [
        next(iter(launchpad.add_wf(Firework(ScriptTask.from_str("true"), name=f"fw{i}")).values()))
        for i in range(3)
    ]
    stale_locked, stale_free, ready_locked = ids
    pool = Pool.create(str(tmp_path / "pool"))
    for fw_id in (stale_locked, stale_free):
        got = reserve_one(launchpad, FWorker(query={"fw_id": fw_id}), pool.path("launches"))
        assert got is not None
        pool.stock(got[1], fw_id, got[2], None)
    for fw_id in (stale_locked, ready_locked):
        WFLock(launchpad, fw_id).__enter__()  # and the process dies: no __exit__
    now = [0.0]
    said: list[str] = []
    watch = LockWatch(said.append, clock=lambda: now[0], expire_secs=300, kill=False)
    stocker = Stocker(pool, 3, 0, 5, None)  # --pool-ttl 0: all stock is stale

    def state(fw_id: int) -> str:
        return str(launchpad.fireworks.find_one({"fw_id": fw_id}, {"state": 1})["state"])

    started = time.monotonic()
    locked = watch.look(launchpad)
    assert locked == {stale_locked, ready_locked}
    stocker.hand_back_stale(launchpad, said.append, locked)
    assert stocker.fill(launchpad, FWorker(), lambda: False, locked) == 1  # the one handed back
    assert time.monotonic() - started < 60  # FireWorks' WFLock would have waited 300 s
    assert [state(i) for i in ids] == ["RESERVED", "RESERVED", "READY"]
    assert [e.fw_id for _n, e in pool.ready()].count(stale_locked) == 1  # still in stock
    assert not [s for s in said if "lock" in s]

    now[0] = 301.0  # past FireWorks' expiry: said once, with the command that breaks it
    assert watch.look(launchpad) == locked and watch.look(launchpad) == locked
    told = [s for s in said if "FireWorks' lock" in s]
    assert len(told) == 2 and all("lpad admin unlock -i" in s for s in told), said

    breaking = LockWatch(said.append, clock=lambda: now[0], expire_secs=300, kill=True)
    assert breaking.look(launchpad) == locked  # first seen now
    now[0] = 700.0
    assert breaking.look(launchpad) == set()
    assert len([s for s in said if "broken, as WFLOCK_EXPIRATION_KILL says" in s]) == 2
    stocker.hand_back_stale(launchpad, said.append, set())
    assert state(stale_locked) == "READY"


def test_a_reservation_killed_half_way_is_made_ready_again(tmp_path: Path, launchpad: Any) -> None:
    """FireWorks' reserve_fw marks the Firework RESERVED before it inserts the launch. A daemon
    killed in between left it RESERVED with no launch, for good (chaos scenario 15: "left
    RESERVED (launches []) with nothing in the pool and no pilot"): no hand-back finds it. Seen
    so for HALF_RESERVATION_AGE seconds, it is READY again; a whole reservation is left alone."""
    from fireworks import Firework, FWorker, ScriptTask

    from fwspool.qlaunch import HALF_RESERVATION_AGE, HalfReservations, reserve_one

    half, whole = (
        next(iter(launchpad.add_wf(Firework(ScriptTask.from_str("true"), name=n)).values()))
        for n in ("half", "whole")
    )
    assert reserve_one(launchpad, FWorker(query={"fw_id": whole}), str(tmp_path)) is not None
    # reserve_fw's first write, by a process then killed: what FireWorks' own checkout does first.
    assert launchpad._get_a_fw_to_run(FWorker(query={"fw_id": half}).query).fw_id == half
    assert launchpad.fireworks.find_one({"fw_id": half})["launches"] == []
    now = [0.0]
    said: list[str] = []
    mender = HalfReservations(said.append, clock=lambda: now[0])
    assert mender.mend(launchpad) == []
    now[0] = HALF_RESERVATION_AGE - 1
    assert mender.mend(launchpad, {half}) == []  # its workflow locked: FireWorks would wait
    now[0] = HALF_RESERVATION_AGE
    assert mender.mend(launchpad, {half}) == []
    assert mender.mend(launchpad) == [half]
    assert len(said) == 1 and "killed half-way" in said[0] and f"Firework {half}" in said[0]
    states = {d["fw_id"]: d["state"] for d in launchpad.fireworks.find({}, {"fw_id": 1, "state": 1})}
    assert states == {half: "READY", whole: "RESERVED"}
    assert launchpad.workflows.find_one({"nodes": half})["fw_states"][str(half)] == "READY"
    got = reserve_one(launchpad, FWorker(), str(tmp_path))  # reserved as any READY one
    assert got is not None and got[0].fw_id == half


def test_stocking_a_fan_out_refreshes_its_workflow_once_and_leaves_what_reserve_fw_leaves(
    tmp_path: Path, twins: Any
) -> None:
    """Six READY Fireworks of one workflow: stocked by the daemon (``Stocker.fill``), the
    LaunchPad ends as after FireWorks' ``reserve_fw`` six times (the reference), with one write
    of the workflow instead of six."""
    from fireworks import Firework, FWorker, ScriptTask, Workflow

    from fwspool.qlaunch import reserve_one
    from fwspool.stock import Stocker
    from fwspool.testing.launchpad import snapshot

    ref, fws = twins
    writes = {}
    for name, lp in (("ref", ref), ("fws", fws)):
        lp.add_wf(
            Workflow([Firework(ScriptTask.from_str("true"), name=f"fw{i}", fw_id=-1 - i) for i in range(6)])
        )
        writes[name] = []
        real = lp._update_wf
        lp._update_wf = lambda wf, ids, real=real, seen=writes[name]: (
            seen.append(sorted(ids)),
            real(wf, ids),
        )
    ref_pool, fws_pool = Pool.create(str(tmp_path / "ref")), Pool.create(str(tmp_path / "fws"))
    for _ in range(6):
        assert reserve_one(ref, FWorker(), ref_pool.path("launches")) is not None
    assert Stocker(fws_pool, 6, 60, 5, None).fill(fws, FWorker(), lambda: False) == 6
    assert len(fws_pool.ready()) == 6
    assert len(writes["ref"]) == 6 and len(writes["fws"]) == 1, writes
    dirs = (str(tmp_path / "ref" / "launches"), str(tmp_path / "fws" / "launches"))
    theirs, ours = snapshot(ref, dirs), snapshot(fws, dirs)
    assert [wf["fw_states"] for wf in ours["workflows"]] == [{str(i): "RESERVED" for i in range(1, 7)}]
    assert ours == theirs
