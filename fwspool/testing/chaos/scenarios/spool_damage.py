"""Scenario 5: writers killed mid-record, and spool files corrupted.

(a) writers whose records reach the disk in pieces, killed at random (torn tails); (b) every
truncation offset of a real rlaunch spool file, then the whole file; (c) random corruption of real
spool files (bit flips, zeroed ranges, garbage, oversized headers, bytes that are not UTF-8); (d)
other bad input: a 17 MB record, an unknown launch, a directory whose name is not UTF-8, a copied
file and a clashing writer id. Only damaged bytes may be quarantined, nothing untouched lost.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Sequence

from fwspool.events import Completed, Exited, Started
from fwspool.spool import SPOOL_NAME_RE, SpoolWriter, frame, scan
from fwspool.testing.chaos.cluster import Cluster
from fwspool.testing.chaos.invariants import Check, inventory, journal_rows, raw_decoder
from fwspool.testing.chaos.trial import Scenario, ScenarioResult, expect_ok, final_ingest_and_check, trial
from fwspool.testing.chaos.workload import T0, Template, held_exits, read_spool_files, start_writers

NAME = "torn writers and corrupted spool files"
CORRUPTIONS = ("bitflip", "zeroed", "garbage", "oversized", "nonutf8_frame", "nonutf8_bytes")


def run(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(5, NAME)
    tpl = cluster.template(seed=55, n_chain=8, n_pair=4)
    torn_trials = max(1, trials // 6)
    parts = [
        torn_writers(cluster, res, tpl, rng, torn_trials),
        truncations(cluster, res, tpl, rng, full),
        corruptions(cluster, res, tpl, rng, max(len(CORRUPTIONS), trials - torn_trials)),
        bad_inputs(cluster, res, tpl),
    ]
    res.detail = "; ".join(parts)
    return res


def torn_writers(
    cluster: Cluster, res: ScenarioResult, tpl: Template, rng: random.Random, trials: int
) -> str:
    """(a) Writers killed mid-record: each record reaches the disk in pieces, kill -9 at random."""
    torn = 0
    for t in range(trials):
        inst = cluster.instance(tpl, f"s5-torn{t}", spool=False)
        with trial(cluster, res, inst) as c:
            writers = start_writers(
                tpl, inst.root, inst.logdir, procs=3, pace=(0.0, 0.004), seed=500 + t, tear=True
            )
            for w in writers:
                time.sleep(rng.uniform(0.02, 0.4))
                if w.kill():
                    res.faults += 1
            for w in writers:
                w.wait()
            inv = inventory(inst.launches_root)
            torn += len(inv.torn)
            final_ingest_and_check(cluster, inst, c)
            status = {
                r["path"]: r["status"] for r in journal_rows(inst.journal, "SELECT path, status FROM sources")
            }
            for path in inv.torn:
                if status.get(path) != "torn":
                    c.other += 1
                    c.note(f"torn tail of {path}: source status {status.get(path)}")
    return f"{trials} trials killing writers mid-record ({torn} torn tails)"


def truncations(cluster: Cluster, res: ScenarioResult, tpl: Template, rng: random.Random, full: bool) -> str:
    """(b) Every truncation offset of a real spool file (the real `fwspool rlaunch` of an FWAction
    with additions and detours), then the whole file."""
    real = [rel for rel in tpl.golden if rel.startswith("real-grow" + os.sep)]
    data = max((tpl.golden[r] for r in real), key=len)
    offsets = list(range(len(data) + 1))
    if not full:
        ends = [fr.offset + fr.length for fr in scan(data, at_eof=True).frames]
        offsets = sorted(
            {
                0,
                len(data),
                *ends,
                *(e - 1 for e in ends),
                *(e + 1 for e in ends if e < len(data)),
                *rng.sample(offsets, 40),
            }
        )
    sweep = truncation_sweep(data, offsets, cluster.root)
    res.check.add(sweep)
    res.trials += len(offsets)
    return f"{len(offsets)} truncation offsets of a {len(data)}-byte rlaunch spool file"


def corruptions(
    cluster: Cluster, res: ScenarioResult, tpl: Template, rng: random.Random, n_random: int
) -> str:
    """(c) Random corruption of real spool files."""
    held = 0
    for t in range(n_random):
        kind = CORRUPTIONS[t % len(CORRUPTIONS)]
        inst = cluster.instance(tpl, f"s5-{kind}{t}")
        with trial(cluster, res, inst) as c:
            files = read_spool_files(inst.launches_root)
            rel = rng.choice(sorted(files))
            path = os.path.join(inst.launches_root, rel)
            before = inventory(os.path.dirname(path))
            new, touched, at, inserted = _corrupt(rng, files[rel], kind)
            with open(path, "wb") as f:
                f.write(new)
            res.faults += 1
            # Independent of scan: every record whose bytes the corruption did not touch must
            # come through, wherever it now lies in the file.
            intact = set()
            for key, occs in before.occurrences.items():
                o = occs[0]
                if not any(a < o.offset + o.length and o.offset < a + n for a, n in touched):
                    intact.add(key)
            final_ingest_and_check(cluster, inst, c)
            held += len(held_exits(read_spool_files(inst.launches_root)))
            have = {
                (r["writer_id"], r["seq"])
                for r in journal_rows(inst.journal, "SELECT writer_id, seq FROM events")
            }
            missing = intact - have
            if missing:
                c.lost += len(missing)
                c.note(f"{kind} in {rel}: {len(missing)} untouched records lost")
    return (
        f"{n_random} random corruptions ({', '.join(CORRUPTIONS)}; {held} exits kept pending, their "
        "completion among the quarantined bytes)"
    )


def bad_inputs(cluster: Cluster, res: ScenarioResult, tpl: Template) -> str:
    """(d) The other bad inputs, one trial each."""
    inst = cluster.instance(tpl, "s5-special")
    with trial(cluster, res, inst) as c:
        lr = inst.launches_root
        running = next(li for li in tpl.launches if li.outcome in ("running", "walltime"))
        # A record larger than MongoDB's 16 MB document limit: an FWAction with 17 MB of data.
        from fireworks import FWAction

        from fwspool.rlaunch import jsonable

        big = jsonable(FWAction(stored_data={"blob": "x" * (17 * 1024 * 1024)}).to_dict())
        end = T0 + dt.timedelta(days=1)
        with SpoolWriter(
            os.path.join(inst.root, running.rel), running.launch_id, running.fw_id, clock=lambda: end
        ) as w:
            w.append(Completed(state="COMPLETED", action=big, completed_on=end))
            w.append(Exited(returncode=0))
        # An event for a launch the LaunchPad does not have.
        unknown = os.path.join(lr, "unknown-launch")
        os.makedirs(unknown)
        with SpoolWriter(unknown, 99999, 99999, clock=lambda: T0) as w:
            w.append(Started(started_on=T0, host="nowhere", ip="10.9.9.9"))
            w.append(Exited(returncode=0))
        # A directory whose name is not UTF-8, holding another unknown launch's spool file.
        odd = os.path.join(lr, os.fsdecode(b"bad-\xff\xfe-dir"))
        os.makedirs(odd)
        with SpoolWriter(odd, 99998, 99998, clock=lambda: T0) as w:
            w.append(Started(started_on=T0, host="nowhere", ip="10.9.9.8"))
        # Two writers claiming one writer id: an exact copy of a file (same records: duplicates)
        # and a file of other records under the same id (they must not silently vanish).
        files = read_spool_files(lr)
        victim = next(rel for rel in sorted(files) if "chain" in rel)
        other = next(rel for rel in sorted(files) if "pair" in rel)
        wid = SPOOL_NAME_RE.match(os.path.basename(victim)).group(1)  # type: ignore[union-attr]
        copy_dir = os.path.join(lr, "zz-copied-launch")
        os.makedirs(copy_dir)
        shutil.copy(os.path.join(lr, victim), copy_dir)
        clash_dir = os.path.join(lr, "zz-clashing-writer")
        os.makedirs(clash_dir)
        with open(os.path.join(clash_dir, os.path.basename(victim)), "wb") as f:
            for fr in scan(files[other], at_eof=True).frames:
                rec = json.loads(fr.payload)
                rec["writer"] = wid
                f.write(frame(json.dumps(rec, separators=(",", ":")).encode()))
        res.faults += 5
        p = inst.run(inst.ingest(), "ingest")
        expect_ok(p, c, "ingest of the bad inputs")
        if "not valid UTF-8" not in p.stderr:
            c.other += 1
            c.note(f"the non-UTF-8 directory was not reported: {p.stderr[-300:]}")
        p = inst.run(inst.push("--timeout", "20"), "push", timeout=300)
        expect_ok(p, c, "push of the bad inputs")
        if "launch 99999 is not on this LaunchPad" not in p.stderr:
            c.other += 1
            c.note(f"the unknown launch was not reported: {p.stderr[-300:]}")
        final_ingest_and_check(cluster, inst, c)
    return "a 17 MB record, an unknown launch, a non-UTF-8 directory, a copied file and a clashing writer id"


def truncation_sweep(data: bytes, offsets: Sequence[int], workdir: str) -> Check:
    """For each offset: ingest the file cut there (only whole records, no quarantine, the rest waits),
    then the whole file (every record exactly once). In-process: thousands of offsets."""
    from fwspool.ingest import Ingester
    from fwspool.journal import Journal

    c = Check()
    frames = scan(data, at_eof=True).frames
    name = None
    for fr in frames:
        rec = raw_decoder.decode(fr.payload)
        name = f"fwspool-{rec.writer}.spool"
        break
    assert name is not None and SPOOL_NAME_RE.match(name), "a real spool file is needed"
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else workdir
    tmp = tempfile.mkdtemp(prefix="fwspool-trunc-", dir=base)
    try:
        d = os.path.join(tmp, "launch")
        os.makedirs(d)
        path = os.path.join(d, name)
        for k in offsets:
            jpath = os.path.join(tmp, f"j{k}.sqlite3")
            with open(path, "wb") as f:
                f.write(data[:k])
            whole = {
                (raw_decoder.decode(fr.payload).writer, raw_decoder.decode(fr.payload).seq)
                for fr in frames
                if fr.offset + fr.length <= k
            }
            boundary = k == 0 or any(fr.offset + fr.length == k for fr in frames)
            with Journal.open(jpath) as journal:
                ing = Ingester(journal, roots=[tmp])
                s1 = ing.run_pass()
                got = {(r["writer_id"], r["seq"]) for r in journal.query("SELECT writer_id, seq FROM events")}
                q1 = journal.count_events()
                quarantined = journal.query("SELECT count(*) AS n FROM quarantine")[0]["n"]
                if got != whole or quarantined or (s1.torn_waiting == 0) != boundary:
                    c.other += 1
                    c.note(
                        f"cut at {k}: {len(got)}/{len(whole)} events, {quarantined} quarantined, torn={s1.torn_waiting}"
                    )
                with open(path, "wb") as f:
                    f.write(data)
                s2 = ing.run_pass()
                rows = journal.query("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events")[0]
                quarantined = journal.query("SELECT count(*) AS n FROM quarantine")[0]["n"]
                src = journal.query("SELECT committed_offset, status FROM sources")
                if (
                    rows["n"] != len(frames)
                    or rows["d"] != len(frames)
                    or quarantined
                    or s2.new_events != len(frames) - q1
                ):
                    c.lost += max(0, len(frames) - rows["d"])
                    c.duplicated += rows["n"] - rows["d"]
                    c.other += 1
                    c.note(
                        f"cut at {k} then whole: {rows['n']} rows ({rows['d']} distinct) of {len(frames)}, {quarantined} quarantined"
                    )
                if src != [{"committed_offset": len(data), "status": "active"}]:
                    c.other += 1
                    c.note(f"cut at {k} then whole: sources {src}")
            for suffix in ("", "-wal", "-shm", ".ingest.lock"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(jpath + suffix)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    c.events = len(frames)
    return c


def _corrupt(rng: random.Random, data: bytes, kind: str) -> tuple[bytes, list[tuple[int, int]], int, int]:
    """``data`` corrupted one way; returns (new bytes, touched ranges in the old file, the insertion
    point and the number of bytes inserted there)."""
    n = len(data)
    if kind == "bitflip":
        buf = bytearray(data)
        spots = [rng.randrange(n) for _ in range(rng.randint(1, 8))]
        for i in spots:
            buf[i] ^= 1 << rng.randrange(8)
        return bytes(buf), [(i, 1) for i in spots], n, 0
    if kind == "zeroed":
        off, length = rng.randrange(n), rng.randint(1, 300)
        length = min(length, n - off)
        return data[:off] + b"\0" * length + data[off + length :], [(off, length)], n, 0
    frames = scan(data, at_eof=True).frames
    at = rng.choice([0, *[fr.offset + fr.length for fr in frames]])
    if kind == "oversized":
        # A header claiming 17 MB (over MongoDB's 16 MB, within the spool's 64 MiB limit) and a
        # few bytes cut short by a newline: a torn record that later records prove dead.
        junk = b'FWS1 %08x %08x {"v": 1, "truncated"\n' % (17 * 1024 * 1024, 0x1234ABCD)
    elif kind == "nonutf8_frame":
        junk = frame(b'{"v":1,"writer":"\xff\xfe","seq":1}')
    elif kind == "nonutf8_bytes":
        junk = bytes(rng.randrange(128, 256) for _ in range(rng.randint(1, 200)))
    else:  # garbage: random bytes, newlines included
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 400)))
    return data[:at] + junk + data[at:], [], at, len(junk)


SCENARIO = Scenario(5, NAME, (2, 60), run)
