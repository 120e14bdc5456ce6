#!/usr/bin/env python3
"""Benchmark of the spool → journal path: writer appends, a large ingest, memory, an idle pass.

    python tools/bench_ingest.py                      # defaults: 1,000 launches x 1,000 events
    python tools/bench_ingest.py --json               # JSON on stdout (the table goes to stderr)
    python tools/bench_ingest.py --launches 100 --idle-launches 1000 --repeat 1   # a quick look
    python tools/bench_ingest.py --profile 25         # plus a cProfile of one large ingest pass

What it measures (targets from the foundation issue in brackets):

1. Writer: ``SpoolWriter.append`` per second, without fsync (pings) and with fsync (durable).
2. Large ingest: spool files in the real record format (``encode_record`` of real ``Record``
   values, each file written at once), one per launch: 1 started, pings with a checkpoint every
   tenth event, 1 completed with a modest FWAction, 1 exited. Then
   ``Ingester(Journal.open(fresh), roots=[dir]).run_pass()``: events/s, median of ``--repeat``
   fresh journals [>= 100,000 events/s].
3. Memory: peak RSS growth (VmHWM) of one pass, and with ``--mem-modes rss,tracemalloc`` the
   tracemalloc peak too, each in a fresh child process, for two sizes [flat in the number of
   events].
4. Idle pass: ``--idle-launches`` launch dirs whose spool ends with a ping (still running),
   ingested once; then passes with nothing new, median of ``--repeat`` [<= 1 s over 10,000
   launches], checked to commit nothing (the ingester connection's ``total_changes``, another
   connection's ``PRAGMA data_version``, the WAL size, ``max(sources.updated_at)``).

Exit status 1 when a correctness check fails (wrong event count, an idle pass that wrote);
missed performance targets only exit non-zero with ``--check``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import io
import json
import os
import platform
import pstats
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from fwspool.events import Ping
from fwspool.ingest import Ingester
from fwspool.journal import Journal, filesystem_type
from fwspool.spool import SpoolWriter, spool_file_name
from fwspool.testing.synthetic import LaunchHistory, spool_bytes, task_checkpoint

TARGET_EVENTS_PER_S = 100_000
TARGET_IDLE_S = 1.0
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Generating spool files


def _writer_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _action(launch_id: int) -> dict[str, Any]:
    """A modest FWAction dict, as FireWorks' ``FWAction.to_dict()`` gives it."""
    return {
        "stored_data": {"energy": -1234.5678 + launch_id, "converged": True, "n_steps": 42},
        "exit": False,
        "update_spec": {"prev_dir": f"/scratch/launches/{launch_id}", "structure_hash": "ab12cd34"},
        "mod_spec": [{"_push": {"results": launch_id}}],
        "additions": [],
        "detours": [],
        "defuse_children": False,
        "defuse_workflow": False,
        "propagate": False,
    }


def launch_records(launch_id: int, writer: str, n_events: int, *, terminal: bool = True) -> bytes:
    """The bytes of one launch's spool file: ``n_events`` framed records.

    Terminal: started, pings/checkpoints, completed, exited. Not terminal: started, then pings
    and checkpoints ending with a ping (a job still running).
    """
    if terminal and n_events < 3:
        raise ValueError("a terminal launch needs at least 3 events")
    start = T0 + dt.timedelta(seconds=launch_id)
    history = LaunchHistory(
        launch_id, launch_id + 100_000, start, host=f"nid{launch_id % 4096:05d}", ip="10.128.0.17"
    )
    middle = n_events - 3 if terminal else n_events - 1
    task = 0
    for i in range(middle):
        at = start + dt.timedelta(seconds=60 * (i + 1))
        # The last event of a running launch is a ping; otherwise a checkpoint every tenth event.
        if i % 10 == 9 and not (not terminal and i == middle - 1):
            task += 1
            history.beats.append((at, task_checkpoint(task, {"step": task})))
        else:
            history.beats.append((at, None))
    if terminal:
        history.completed_on = start + dt.timedelta(seconds=60 * (middle + 1))
        history.action = _action(launch_id)
        history.exited_on = history.completed_on + dt.timedelta(seconds=1)
    return spool_bytes(history, writer)


def generate(root: str, n_launches: int, n_events: int, *, first_id: int, terminal: bool, seed: int) -> int:
    """Launch dirs ``root/bNNN/launch_NNNNNNN`` with one spool file each; returns the bytes written."""
    rng = random.Random(seed)
    total = 0
    for k in range(n_launches):
        launch_id = first_id + k
        d = os.path.join(root, f"b{k // 1000:03d}", f"launch_{launch_id:07d}")
        os.makedirs(d, exist_ok=True)
        writer = _writer_id(rng)
        data = launch_records(launch_id, writer, n_events, terminal=terminal)
        with open(os.path.join(d, spool_file_name(writer)), "wb") as f:
            f.write(data)
        total += len(data)
    return total


# ---------------------------------------------------------------------------------------------
# Measurements


def bench_writer(base: str, n_plain: int, n_fsync: int) -> dict[str, Any]:
    """``SpoolWriter.append`` rates: pings without fsync, and the same with ``durable=True``."""
    d = tempfile.mkdtemp(prefix="writer-", dir=base)
    try:
        res: dict[str, Any] = {}
        for label, n, durable in (("no_fsync", n_plain, False), ("fsync", n_fsync, True)):
            with SpoolWriter(d, launch_id=1, fw_id=1) as w:
                ev = Ping(ping_time=T0)
                t = time.perf_counter()
                for _ in range(n):
                    w.append(ev, durable=durable)
                el = time.perf_counter() - t
            res[label] = {"records": n, "seconds": el, "appends_per_s": n / el if el else float("inf")}
        return res
    finally:
        shutil.rmtree(d, ignore_errors=True)


def remove_journal(path: str) -> None:
    """A journal and its WAL and shared-memory files, so that the next pass starts from nothing."""
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


def ingest_once(data_root: str, journal_path: str) -> tuple[float, float, Any]:
    remove_journal(journal_path)
    journal = Journal.open(journal_path)
    try:
        ingester = Ingester(journal, roots=[data_root])
        c = time.process_time()
        t = time.perf_counter()
        summary = ingester.run_pass()
        el = time.perf_counter() - t
        cpu = time.process_time() - c
    finally:
        journal.close()
    return el, cpu, summary


def bench_ingest(data_root: str, work: str, expected: int, repeat: int) -> dict[str, Any]:
    times = []
    cpus = []
    problems: list[str] = []
    for r in range(repeat):
        jp = os.path.join(work, f"journal-large-{r}.sqlite3")
        el, cpu, summary = ingest_once(data_root, jp)
        cpus.append(cpu)
        size = os.path.getsize(jp) + (os.path.getsize(jp + "-wal") if os.path.exists(jp + "-wal") else 0)
        log(
            f"large ingest {r + 1}/{repeat}: {summary.new_events:,} events in {el:.2f} s "
            f"({summary.new_events / el:,.0f}/s; CPU {cpu:.2f} s), files {summary.files}, "
            f"journal {size / 2**20:.0f} MiB"
        )
        if summary.new_events != expected or summary.duplicates or summary.quarantined:
            problems.append(
                f"run {r}: new_events={summary.new_events} (expected {expected}), "
                f"duplicates={summary.duplicates}, quarantined={summary.quarantined}"
            )
        times.append(el)
        remove_journal(jp)
    med = statistics.median(times)
    return {
        "events": expected,
        "seconds": times,
        "median_seconds": med,
        "events_per_s": expected / med,
        "cpu_seconds": cpus,
        "events_per_cpu_s": expected / statistics.median(cpus),
        "problems": problems,
    }


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    """Reset VmHWM (the peak RSS) to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mem_child(data_root: str, journal_path: str, mode: str) -> dict[str, Any]:
    """Run in a fresh process: one ingest pass, reporting its memory growth.

    RSS: the peak RSS (VmHWM, reset just before the pass) minus the RSS before it. Not
    ``ru_maxrss``: Linux carries that across fork and exec, so a child would inherit the parent's.
    tracemalloc: the peak of Python allocations during the pass (SQLite's own cache not included).
    """
    import gc
    import tracemalloc

    journal = Journal.open(journal_path)
    ingester = Ingester(journal, roots=[data_root])
    gc.collect()
    reset = _reset_peak_rss()
    before = _proc_status_kib("VmRSS")
    if mode == "tracemalloc":
        tracemalloc.start()
    t = time.perf_counter()
    summary = ingester.run_pass()
    el = time.perf_counter() - t
    out: dict[str, Any] = {"events": summary.new_events, "seconds": el}
    if mode == "tracemalloc":
        out["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    else:
        peak = _proc_status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["rss_before_kib"] = before
        out["rss_peak_kib"] = peak
        out["peak_rss_growth_bytes"] = max(0, peak - before) * 1024
        out["peak_source"] = "VmHWM" if reset else "ru_maxrss"
    journal.close()
    return out


def bench_memory(data_root: str, work: str, mode: str) -> dict[str, Any]:
    jp = os.path.join(work, f"journal-mem-{mode}.sqlite3")
    remove_journal(jp)
    cmd = [sys.executable, os.path.abspath(__file__), "--_mem-child", data_root, jp, mode]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    remove_journal(jp)
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@dataclass
class IdleState:
    total_changes: int
    data_version: int
    wal_bytes: int
    db_bytes: int
    max_updated_at: str | None
    sources: int


def _idle_state(journal: Journal, watcher: sqlite3.Connection) -> IdleState:
    total = journal.db.total_changes
    dv = watcher.execute("PRAGMA data_version").fetchone()[0]
    mu, n = watcher.execute("SELECT max(updated_at), count(*) FROM sources").fetchone()
    wal = journal.path + "-wal"
    return IdleState(
        total_changes=total,
        data_version=dv,
        wal_bytes=os.path.getsize(wal) if os.path.exists(wal) else 0,
        db_bytes=os.path.getsize(journal.path),
        max_updated_at=mu,
        sources=n,
    )


def bench_idle(idle_root: str, work: str, n_launches: int, repeat: int) -> dict[str, Any]:
    jp = os.path.join(work, "journal-idle.sqlite3")
    journal = Journal.open(jp)
    try:
        t = time.perf_counter()
        first = Ingester(journal, roots=[idle_root]).run_pass()
        first_s = time.perf_counter() - t
        log(f"idle setup: first pass {first.new_events:,} events, {first.files:,} files, {first_s:.2f} s")
        watcher = sqlite3.connect(jp, isolation_level=None)
        res: dict[str, Any] = {"launches": n_launches, "first_pass_seconds": first_s, "problems": []}
        nlaunch = watcher.execute("SELECT count(*) FROM launches WHERE terminal_at IS NULL").fetchone()[0]
        if nlaunch != n_launches:
            res["problems"].append(f"{nlaunch} running launches in the journal, expected {n_launches}")
        # Known launches only (what `fwspool ingest` does without --root), and with the --root walk.
        for label, roots in (("known", []), ("with_root", [idle_root])):
            times = []
            files = 0
            ingester = Ingester(journal, roots=roots)
            for _ in range(repeat):
                before = _idle_state(journal, watcher)
                t = time.perf_counter()
                s = ingester.run_pass()
                times.append(time.perf_counter() - t)
                after = _idle_state(journal, watcher)
                files = s.files
                wrote = []
                if s.new_events or s.duplicates or s.quarantined:
                    wrote.append(f"summary new={s.new_events} dup={s.duplicates} q={s.quarantined}")
                if after.total_changes != before.total_changes:
                    wrote.append(f"total_changes +{after.total_changes - before.total_changes}")
                if after.data_version != before.data_version:
                    wrote.append("data_version changed (a commit)")
                if after.wal_bytes != before.wal_bytes or after.db_bytes != before.db_bytes:
                    wrote.append(
                        f"WAL {before.wal_bytes}->{after.wal_bytes}, db {before.db_bytes}->{after.db_bytes}"
                    )
                if after.max_updated_at != before.max_updated_at:
                    wrote.append("sources.updated_at changed")
                if wrote:
                    res["problems"].append(f"idle pass ({label}) wrote: " + "; ".join(wrote))
            res[label] = {"seconds": times, "median_seconds": statistics.median(times), "files": files}
            log(f"idle pass ({label}): {files:,} files, median {statistics.median(times):.3f} s")
        res["committed_nothing"] = not res["problems"]
        watcher.close()
        return res
    finally:
        journal.close()


def profile_ingest(data_root: str, work: str, top: int) -> str:
    jp = os.path.join(work, "journal-profile.sqlite3")
    journal = Journal.open(jp)
    ingester = Ingester(journal, roots=[data_root])
    prof = cProfile.Profile()
    prof.enable()
    ingester.run_pass()
    prof.disable()
    journal.close()
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf)
    st.sort_stats("cumulative").print_stats(top)
    st.sort_stats("tottime").print_stats(top)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Output


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def table(r: dict[str, Any]) -> str:
    lines = []
    env = r["env"]
    fs = env["fs"] or "?"
    lines.append(f"fwspool ingest benchmark — Python {env['python']}, {env['cpus']} CPUs, work dir on {fs}")
    for key, label in (("no_fsync", "no fsync   "), ("fsync", "fsync      ")):
        w = r["writer"][key]
        lines.append(f"  writer append, {label} {w['appends_per_s']:>12,.0f} /s   ({w['records']:,} records)")
    big = r["ingest"]
    ok = big["events_per_s"] >= TARGET_EVENTS_PER_S
    lines.append(
        f"  large ingest                {big['events_per_s']:>12,.0f} ev/s  "
        f"({big['events']:,} events, {r['params']['launches']:,} files, median {big['median_seconds']:.2f} s "
        f"of {len(big['seconds'])}; target >= {TARGET_EVENTS_PER_S:,}: {'OK' if ok else 'MISSED'})"
    )
    lines.append(
        f"    per CPU second            {big['events_per_cpu_s']:>12,.0f} ev/s  (process CPU time, median)"
    )
    for size, m in sorted(r["memory"].items(), key=lambda kv: int(kv[0])):
        parts = []
        if "rss" in m:
            parts.append(f"RSS growth {_fmt_bytes(m['rss']['peak_rss_growth_bytes'])}")
        if "tracemalloc" in m:
            parts.append(f"tracemalloc peak {_fmt_bytes(m['tracemalloc']['tracemalloc_peak_bytes'])}")
        lines.append(f"  memory, {int(size):>9,} events   " + ", ".join(parts))
    if r.get("memory_flat") is not None:
        lines.append(
            f"  memory flat in events       {'yes' if r['memory_flat'] else 'NO'} ({r['memory_rule']})"
        )
    idle = r["idle"]
    if idle:
        ok = idle["known"]["median_seconds"] <= TARGET_IDLE_S
        lines.append(
            f"  idle pass, known launches   {idle['known']['median_seconds']:>12.3f} s     "
            f"({idle['known']['files']:,} files; target <= {TARGET_IDLE_S} s: {'OK' if ok else 'MISSED'})"
        )
        lines.append(
            f"  idle pass, with --root walk {idle['with_root']['median_seconds']:>12.3f} s     "
            f"({idle['with_root']['files']:,} files)"
        )
        verdict = "yes" if idle["committed_nothing"] else "NO: " + "; ".join(idle["problems"])
        lines.append(f"  idle pass committed nothing {verdict}")
    for p in r["problems"]:
        lines.append(f"  PROBLEM: {p}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_mem-child"]:
        print(json.dumps(mem_child(argv[1], argv[2], argv[3])))
        return 0
    args = parse_args(argv)
    base = args.dir or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    work = tempfile.mkdtemp(prefix="fwspool-bench-", dir=base)
    result = new_result(args, work)
    try:
        run_benchmarks(args, work, result)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_report(result, args.json)
    return exit_status(result, args.check)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--launches", type=int, default=1000, help="launches in the large ingest")
    ap.add_argument("--events", type=int, default=1000, help="events per launch in the large ingest")
    ap.add_argument("--idle-launches", type=int, default=10000, help="running launches in the idle pass")
    ap.add_argument("--idle-events", type=int, default=5, help="events per running launch")
    ap.add_argument("--repeat", type=int, default=3, help="runs per timing; the median is reported")
    ap.add_argument(
        "--mem-sizes",
        default="100000,1000000",
        help="comma-separated event counts for the memory check (each a multiple of --events)",
    )
    ap.add_argument(
        "--mem-modes",
        default="rss",
        help="rss and/or tracemalloc, comma-separated (each in a fresh process; tracemalloc is ~7x slower)",
    )
    ap.add_argument("--writer-records", type=int, default=20000, help="appends without fsync")
    ap.add_argument("--writer-fsync-records", type=int, default=500, help="appends with fsync")
    ap.add_argument("--dir", default=None, help="work directory (default: a new temp dir, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument(
        "--profile", type=int, default=0, metavar="N", help="cProfile one large ingest; top N rows"
    )
    ap.add_argument("--json", action="store_true", help="JSON on stdout (the table goes to stderr)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a performance target is missed")
    return ap.parse_args(argv)


def new_result(args: argparse.Namespace, work: str) -> dict[str, Any]:
    """What is known before measuring: the parameters, the machine, the targets; no problem yet."""
    return {
        "params": {k: v for k, v in vars(args).items() if k not in ("json",)},
        "env": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "fs": filesystem_type(work),
            "work_dir": work,
        },
        "targets": {"events_per_s": TARGET_EVENTS_PER_S, "idle_pass_seconds": TARGET_IDLE_S},
        "problems": [],
    }


def run_benchmarks(args: argparse.Namespace, work: str, result: dict[str, Any]) -> None:
    """Each measurement in turn, into ``result``; what failed a correctness check goes to its
    ``problems``."""
    problems = result["problems"]
    log(f"work dir {work} ({result['env']['fs']})")
    result["writer"] = bench_writer(work, args.writer_records, args.writer_fsync_records)
    datasets = Datasets(work, args.events)
    result["ingest"] = bench_ingest(
        datasets.of(args.launches), work, args.launches * args.events, args.repeat
    )
    problems.extend(result["ingest"]["problems"])
    result["memory"] = bench_memory_sizes(args, datasets, work, problems)
    if len(result["memory"]) >= 2:
        result["memory_flat"], result["memory_rule"] = memory_flat(result["memory"])
    if args.idle_launches > 0:
        idle_root = generate_idle(work, args.idle_launches, args.idle_events)
        result["idle"] = bench_idle(idle_root, work, args.idle_launches, args.repeat)
        problems.extend(result["idle"]["problems"])
    else:
        result["idle"] = None
    if args.profile:
        log("profiling one large ingest pass (cProfile)")
        result["profile"] = profile_ingest(datasets.of(args.launches), work, args.profile)


class Datasets:
    """Spool trees of ``events``-event launches, generated once per number of launches: the large
    ingest, the memory sizes and the profile read the same tree when their sizes are equal."""

    def __init__(self, work: str, events: int) -> None:
        self.work = work
        self.events = events
        self.roots: dict[int, str] = {}

    def of(self, n_launches: int) -> str:
        if n_launches not in self.roots:
            d = os.path.join(self.work, f"data-{n_launches}x{self.events}")
            t = time.perf_counter()
            nbytes = generate(d, n_launches, self.events, first_id=1, terminal=True, seed=n_launches)
            log(
                f"generated {n_launches:,} x {self.events:,} events, {nbytes / 2**20:,.0f} MiB "
                f"in {time.perf_counter() - t:.1f} s"
            )
            self.roots[n_launches] = d
        return self.roots[n_launches]


def bench_memory_sizes(
    args: argparse.Namespace, datasets: Datasets, work: str, problems: list[str]
) -> dict[str, dict[str, Any]]:
    """:func:`bench_memory` for each ``--mem-sizes`` and ``--mem-modes``, keyed by event count."""
    memory: dict[str, dict[str, Any]] = {}
    modes = [m for m in args.mem_modes.split(",") if m]
    sizes = [int(s) for s in args.mem_sizes.split(",") if s] if modes else []
    for size in sizes:
        n_launches = max(1, size // args.events)
        events = n_launches * args.events
        entry: dict[str, Any] = {}
        for mode in modes:
            m = bench_memory(datasets.of(n_launches), work, mode)
            entry[mode] = m
            log(f"memory {events:,} events ({mode}): {m}")
            if m["events"] != events:
                problems.append(f"memory run {mode}: {m['events']} events, expected {events}")
        memory[str(events)] = entry
    return memory


def memory_flat(memory: dict[str, dict[str, Any]]) -> tuple[bool | None, str]:
    """Whether the peak at the largest size is at most 1.5 x the peak at the smallest + 16 MiB, in
    every mode measured at both (None: no mode was); and that rule, for the table."""
    keys = sorted(memory, key=int)
    lo, hi = memory[keys[0]], memory[keys[-1]]
    slack = 16 * 2**20
    verdicts = []
    for mode, field in (("rss", "peak_rss_growth_bytes"), ("tracemalloc", "tracemalloc_peak_bytes")):
        if mode in lo and mode in hi:
            verdicts.append(hi[mode][field] <= 1.5 * lo[mode][field] + slack)
    rule = f"peak at {int(keys[-1]):,} events <= 1.5 x peak at {int(keys[0]):,} + 16 MiB"
    return (all(verdicts) if verdicts else None), rule


def generate_idle(work: str, n_launches: int, n_events: int) -> str:
    """Launches still running (their spool ends with a ping), for the idle passes."""
    idle_root = os.path.join(work, "idle")
    t = time.perf_counter()
    generate(idle_root, n_launches, n_events, first_id=10_000_000, terminal=False, seed=7)
    log(f"generated {n_launches:,} running launches in {time.perf_counter() - t:.1f} s")
    return idle_root


def print_report(result: dict[str, Any], as_json: bool) -> None:
    """The table on stdout, or JSON on stdout and the table on stderr (for a human watching)."""
    text = table(result)
    if as_json:
        print(text, file=sys.stderr)
        print(json.dumps(result, indent=2, default=str))
    else:
        print(text)
        if result.get("profile"):
            print(result["profile"])


def exit_status(result: dict[str, Any], check: bool) -> int:
    """1 when a correctness check failed; with ``check``, also when a performance target was missed."""
    if result["problems"]:
        return 1
    if check:
        missed = result["ingest"]["events_per_s"] < TARGET_EVENTS_PER_S
        if result["idle"]:
            missed |= result["idle"]["known"]["median_seconds"] > TARGET_IDLE_S
        if result.get("memory_flat") is False:
            missed = True
        return 1 if missed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
