#!/usr/bin/env python3
"""Benchmark of fwspool at site scale, through the CLI: a year of journal and many running jobs.

    python tools/bench_scale.py                  # quick: 1,000 launches x 100 events, 1,000 open
    python tools/bench_scale.py --big            # 10,000 x 1,000 events, 10,000 open launches
    python tools/bench_scale.py --json           # JSON on stdout (the table goes to stderr)
    python tools/bench_scale.py --recover-offline 200   # and FireWorks' lpad recover_offline beside
    PYTHONPATH=/path/to/other/fwspool python tools/bench_scale.py   # another version, same figures
    python tools/bench_scale.py --ingest-vs /path/to/other/fwspool  # both first ingests, in turn

It builds L finished launches of E events each (spool files in the real record format, as
``tools/bench_ingest.py`` writes them: started, pings with a checkpoint every tenth, completed,
exited) and O open launches (started, pings: jobs still running), all under one root on disk.
Then, each through ``python -m fwspool`` in a child process:

1. first ingest (``fwspool ingest --root``): events/s and the child's peak RSS;
2. the push's marks: every event of the finished launches applied, the open launches' events
   but their last ping, with the outcome a push records (set up through the journal's own
   ``pending_launches`` and ``mark_pushed``; their CPU per launch, reads and marks apart, is the
   journal's share of a push's client CPU, the LaunchPad's share is ``tools/bench_push.py``'s);
3. status: ``fwspool status --no-check`` (the default view), ``--json`` (every launch), and the
   daemon's one-line summary (``Journal.summary``), median of ``--repeat``, wall and CPU: first
   with every open launch silent for days and its last ping pending (the worst case: each needs
   attention and is decided by its events), then, after the idle passes, as a site sees them
   between two pushes (each pinged within the hour, 1% with an event not pushed yet);
4. idle passes of a long-running ingest (``fwspool ingest --watch``: one Ingester, its first
   pass done, nothing new, the launches the journal knows): wall time, and with
   ``strace -c -f -p`` (when strace is installed) on one pass alone the filesystem calls and the
   metadata calls (open, stat, directory reads...) per open launch;
5. with ``--recover-offline N``, FireWorks' own ``lpad recover_offline`` on N running launches
   reserved offline on a throwaway SecantusDB (their files as its rocket leaves them), an idle
   pass under ``strace -c``: filesystem and metadata calls per launch beside fwspool's (it takes
   about 0.3 s a launch on a loaded 2-core machine, the server's work mostly: a few hundred
   launches give the per-launch figure);
6. the journal's bytes per event, and where they go (SQLite's ``dbstat``: each table and index).

Exit status 1 when a correctness check fails (an event count); missed targets with ``--check``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_ingest import generate, remove_journal  # noqa: E402 - the same spool files as the ingest benchmark

TARGETS = {"status_s": 1.0, "idle_meta_per_launch": 1.2, "idle_s": 1.0, "ingest_events_per_s": 100_000}

#: System calls that ask the filesystem; those that touch metadata (a round trip to a parallel
#: filesystem's metadata server) are the second set.
FS_CALLS = {
    "openat", "open", "close", "read", "pread64", "lseek", "fstat", "newfstatat", "stat", "lstat",
    "statx", "getdents64", "access", "faccessat", "faccessat2", "readlink", "readlinkat",
}  # fmt: skip
META_CALLS = {"openat", "open", "newfstatat", "stat", "lstat", "statx", "getdents64", "access", "faccessat",
              "faccessat2", "readlink", "readlinkat"}  # fmt: skip


def log(msg: str) -> None:
    print(f"[scale] {msg}", file=sys.stderr, flush=True)


def fwspool(*args: str, env: dict[str, str], strace_to: str | None = None) -> tuple[float, int, str]:
    """Run ``fwspool ARGS``; (wall seconds, peak RSS in KiB, output)."""
    cmd = [sys.executable, "-m", "fwspool.cli", *args]
    if strace_to:
        cmd = ["strace", "-f", "-c", "-o", strace_to, *cmd]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate()
    wall = time.perf_counter() - started
    rss = _children_rss()  # the largest child so far: the first ingest is the first large one
    if proc.returncode != 0:
        raise RuntimeError(f"fwspool {' '.join(args)} exited {proc.returncode}: {out[-2000:]}")
    return wall, rss, out


def _children_rss() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def strace_counts(path: str) -> dict[str, int]:
    """``strace -c`` output: calls per system call."""
    counts: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
            if m:
                counts[m.group(2)] = int(m.group(1))
    return counts


def build(work: str, n_launches: int, n_events: int, n_open: int) -> str:
    root = os.path.join(work, "runs")
    t = time.perf_counter()
    size = generate(root, n_launches, n_events, first_id=1, terminal=True, seed=1)
    size += generate(os.path.join(root, "open"), n_open, 5, first_id=n_launches + 1, terminal=False, seed=2)
    log(f"generated {n_launches:,} x {n_events:,} events and {n_open:,} open launches, {size / 2**20:.0f} MiB "
        f"in {time.perf_counter() - t:.1f} s")  # fmt: skip
    return root


def mark_as_pushed(journal_path: str, n_launches: int) -> dict[str, Any]:
    """Every event of the finished launches applied, each open launch's but its last; the outcome
    a push records. Returns the journal-side CPU of it per launch: reading the pending events
    (``pending_launches``, their payloads decoded) and marking them (``mark_pushed``)."""
    from fwspool.journal import Journal

    read_cpu = mark_cpu = 0.0
    launches = 0
    with Journal.open(journal_path) as journal:
        after = None
        while True:
            t = time.process_time()
            batch = journal.pending_launches(after, 200)
            read_cpu += time.process_time() - t
            if not batch:
                break
            outcomes = []
            for launch in batch:
                events = launch.events if launch.launch_id <= n_launches else launch.events[:-1]
                outcomes += [(e.event_id, "applied", None) for e in events]
            t = time.process_time()
            journal.mark_pushed(outcomes)
            mark_cpu += time.process_time() - t
            launches += len(batch)
            after = batch[-1].launch_id
    db = sqlite3.connect(journal_path)
    with db:
        db.execute(
            "UPDATE launches SET pushed_state = 'COMPLETED', outcome = 'completed', pushed_state_at = first_seen_at, "
            "fw_name = 'bench' WHERE launch_id <= ?",
            (n_launches,),
        )
        db.execute(
            "UPDATE launches SET pushed_state = 'RUNNING', outcome = 'running', pushed_state_at = first_seen_at, "
            "fw_name = 'bench' WHERE launch_id > ?",
            (n_launches,),
        )
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('last_successful_push', strftime('%Y-%m-%dT%H:%M:%fZ')) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
    db.close()
    return {
        "launches": launches,
        "cpu_s": mark_cpu,
        "cpu_ms_per_launch": 1000 * mark_cpu / max(1, launches),
        "read_cpu_s": read_cpu,
        "read_cpu_ms_per_launch": 1000 * read_cpu / max(1, launches),
    }


def space(journal_path: str) -> dict[str, Any]:
    db = sqlite3.connect(journal_path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    events = db.execute("SELECT count(*) FROM events").fetchone()[0]
    size = os.path.getsize(journal_path)
    out: dict[str, Any] = {"events": events, "bytes": size, "bytes_per_event": size / max(1, events)}
    try:
        parts = db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
        out["by_object"] = {name: n / max(1, events) for name, n in parts}
        out["payload_bytes_per_event"] = db.execute("SELECT avg(length(payload)) FROM events").fetchone()[0]
    except sqlite3.OperationalError as exc:  # no dbstat in this SQLite
        out["by_object"] = {"(dbstat unavailable)": str(exc)}
    db.close()
    return out


_STATUS_CHILD = """
import statistics, sys, time
from fwspool.journal import Journal
from fwspool.status import Filters, collect, render, report_json
journal = Journal.open(sys.argv[1])
text, js = [], []
for _ in range(int(sys.argv[2])):
    t = time.process_time()
    render(collect(journal, None))
    text.append(time.process_time() - t)
    t = time.process_time()
    for _ in report_json(collect(journal, None, Filters(every=True))):
        pass
    js.append(time.process_time() - t)
print(statistics.median(text), statistics.median(js))
"""


def status_in_process(journal_path: str, repeat: int, env: dict[str, str]) -> tuple[float, float]:
    """``fwspool status`` without the command's start-up, CPU seconds: (default view, --json)."""
    out = subprocess.run(
        [sys.executable, "-c", _STATUS_CHILD, journal_path, str(repeat)],
        env=env,
        capture_output=True,
        text=True,
    )
    text, js = out.stdout.split()
    return float(text), float(js)


def timed_runs(repeat: int, *args: str, env: dict[str, str]) -> tuple[float, float]:
    """Median wall and median CPU seconds (user + system) of ``fwspool ARGS``."""
    import resource

    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        walls.append(fwspool(*args, env=env)[0])
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return statistics.median(walls), statistics.median(cpus)


def open_launches_pinging(journal_path: str, n_launches: int, pending_share: float) -> int:
    """The open launches as a site sees them between two pushes: each pinged within the last
    hour (FireWorks pings hourly), and only ``pending_share`` of them with an event not pushed
    yet (those that pinged since the last push). Returns how many stay pending."""
    from fwspool.journal import Journal
    from fwspool.journal.summary import summarize

    with Journal.open(journal_path) as journal, journal.transaction() as db:
        db.execute(
            "UPDATE events SET occurred_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || (60 - seq) || ' minutes') "
            "WHERE launch_id > ?",
            (n_launches,),
        )
        ids = [
            r[0]
            for r in db.execute(
                "SELECT launch_id FROM launches WHERE launch_id > ? ORDER BY 1", (n_launches,)
            )
        ]
        keep = set(ids[:: max(1, round(1 / pending_share))]) if pending_share else set()
        pushed = [i for i in ids if i not in keep]
        db.execute(
            f"UPDATE events SET pushed_at = strftime('%Y-%m-%dT%H:%M:%fZ'), push_outcome = 'applied' "
            f"WHERE pushed_at IS NULL AND launch_id IN ({','.join(map(str, pushed)) or 'NULL'})"
        )
        summarize(db, ids)
    return len(keep)


def status_times(journal: str, repeat: int, env: dict[str, str]) -> dict[str, float]:
    """The status figures of one journal: the daemon's summary line, the default view, --json."""
    r: dict[str, float] = {"summary_s": summary_seconds(journal, repeat, env)}
    r["default_s"], r["default_cpu_s"] = timed_runs(
        repeat, "status", "--journal", journal, "--no-check", env=env
    )
    r["json_s"], r["json_cpu_s"] = timed_runs(
        repeat, "status", "--journal", journal, "--no-check", "--json", env=env
    )
    r["default_in_process_cpu_s"], r["json_in_process_cpu_s"] = status_in_process(journal, repeat, env)
    return r


def summary_seconds(journal_path: str, repeat: int, env: dict[str, str]) -> float:
    code = (
        "import sys, time; from fwspool.journal import Journal\n"
        "j = Journal.open(sys.argv[1]); t = time.perf_counter(); j.summary(); print(time.perf_counter() - t)"
    )
    times = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", code, journal_path], env=env, capture_output=True, text=True
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


#: A daemon's steady state: one Ingester, its first pass (which lists every directory) done, then
#: passes with nothing new. The parent attaches strace to the second pass alone.
_IDLE_CHILD = """
import statistics, sys, time
from fwspool.ingest import Ingester
from fwspool.journal import Journal
journal = Journal.open(sys.argv[1])
ingester = Ingester(journal, inbox_dir=sys.argv[2])
ingester.run_pass()
print("ready", flush=True)
sys.stdin.readline()
ingester.run_pass()
print("traced", flush=True)
sys.stdin.readline()
times, cpu = [], []
for _ in range(int(sys.argv[3])):
    t, c = time.perf_counter(), time.process_time()
    ingester.run_pass()
    times.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
print(statistics.median(times), max(times), statistics.median(cpu), len(times), flush=True)
"""


def idle_passes(journal: str, inbox: str, n_open: int, repeat: int, env: dict[str, str]) -> dict[str, Any]:
    """Idle passes of a long-running ingest (``fwspool ingest --watch``): wall time (median and
    slowest of ``max(repeat, 10)`` passes: one in ten lists every directory) and, under strace,
    the filesystem calls of one pass between two full ones, per open launch."""
    passes = max(repeat, 10)
    child = [sys.executable, "-c", _IDLE_CHILD, journal, inbox, str(passes)]
    return traced_passes(child, n_open, env)


def _wait_for(stdout: Any, word: str) -> None:
    """Read a child's lines up to ``word`` (FireWorks prints a warning on stdout at import)."""
    for line in stdout:
        if line.strip() == word:
            return
    raise RuntimeError(f"the child ended before {word!r}")


def traced_passes(cmd: list[str], n_open: int, env: dict[str, str]) -> dict[str, Any]:
    """Run a child that makes a first pass, prints "ready", makes the pass the parent traces with
    ``strace -c`` (when installed), prints "traced", then times its own passes and prints them."""
    child = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    _wait_for(child.stdout, "ready")
    out: dict[str, Any] = {}
    tracer = None
    trace = os.path.join(tempfile.gettempdir(), f"fwspool-scale-{child.pid}.strace")
    if shutil.which("strace"):
        tracer = subprocess.Popen(
            ["strace", "-c", "-f", "-p", str(child.pid), "-o", trace], stderr=subprocess.DEVNULL
        )
        time.sleep(1.0)  # attached
    child.stdin.write("\n")
    child.stdin.flush()
    _wait_for(child.stdout, "traced")
    if tracer is not None:
        tracer.send_signal(2)  # SIGINT: detach and write the counts
        tracer.wait()
        calls = strace_counts(trace)
        os.unlink(trace)
        fs = sum(n for c, n in calls.items() if c in FS_CALLS)
        meta = sum(n for c, n in calls.items() if c in META_CALLS)
        out.update(
            fs_per_open_launch=fs / max(1, n_open),
            meta_per_open_launch=meta / max(1, n_open),
            calls={c: n for c, n in sorted(calls.items()) if c in FS_CALLS},
        )
    child.stdin.write("\n")
    child.stdin.flush()
    median, slowest, cpu, passes = child.stdout.readline().split()
    child.wait()
    out.update(seconds=float(median), slowest_s=float(slowest), cpu_s=float(cpu), passes=int(passes))
    return out


#: FireWorks' ``lpad recover_offline`` over running offline launches: its first pass applies what
#: their files say, the traced one finds nothing new (as the idle pass of fwspool above).
_RECOVER_CHILD = """
import statistics, sys, time, warnings
warnings.simplefilter("ignore")
from fwspool.testing.launchpad import make_launchpad, recover_offline
lp = make_launchpad(sys.argv[1], sys.argv[2], reset=False)
recover_offline(lp)
print("ready", flush=True)
sys.stdin.readline()
recover_offline(lp)
print("traced", flush=True)
sys.stdin.readline()
times, cpu = [], []
for _ in range(3):
    t, c = time.perf_counter(), time.process_time()
    recover_offline(lp)
    times.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
print(statistics.median(times), max(times), statistics.median(cpu), 3, flush=True)
"""


def recover_offline_idle(work: str, n: int, env: dict[str, str]) -> dict[str, Any]:
    """FireWorks' own ``lpad recover_offline`` on ``n`` running launches reserved offline (their
    ``FW_offline.json`` and ``FW_ping.json`` as its rocket leaves them, from ``tools/bench_push.py``)
    on a throwaway SecantusDB: an idle pass's filesystem and metadata calls per launch."""
    import datetime as dt
    import io
    from contextlib import redirect_stdout

    from bench_push import build_launchpad, plan_launches, write_fireworks_offline

    from fwspool.devserver import DevServer

    server = DevServer(os.path.join(work, "db"))
    server.start()
    try:
        with redirect_stdout(io.StringIO()):  # FireWorks' import warning
            reserved = build_launchpad(server.uri, "ref", n, 1, os.path.join(work, "ref"))
            base = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
            for plan, (_f, _l, d) in zip(plan_launches(reserved, 0.0, 3, base), reserved, strict=True):
                write_fireworks_offline(d, plan)
        return traced_passes([sys.executable, "-c", _RECOVER_CHILD, server.uri, "ref"], n, env)
    finally:
        server.stop()


def as_installed(env: dict[str, str], work: str) -> dict[str, str]:
    """The children's environment with Python's bytecode cached, as pip leaves an installed
    package: with ``PYTHONDONTWRITEBYTECODE`` set and a checkout without ``__pycache__``, every
    command compiled fwspool anew, about 0.15 s of each start-up that users do not pay. A
    warm-up ``fwspool --help`` fills the cache before anything is timed."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = os.path.join(work, "pycache")
    fwspool("--help", env=env)
    fwspool("status", "--help", env=env)
    return env


def first_ingest(journal: str, root: str, env: dict[str, str]) -> dict[str, Any]:
    """``fwspool ingest --root`` into a new journal: its rate, CPU and peak RSS."""
    import resource

    remove_journal(journal)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, rss, _ = fwspool("ingest", "--journal", journal, "--root", root, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    got = sqlite3.connect(journal).execute("SELECT count(*) FROM events").fetchone()[0]
    log(f"first ingest: {got:,} events in {wall:.1f} s ({got / wall:,.0f}/s), peak RSS {rss / 1024:.0f} MiB")
    return {
        "seconds": wall,
        "events_per_s": got / wall,
        "cpu_s": cpu_s,
        "events_per_cpu_s": got / cpu_s,
        "peak_rss_mib": rss / 1024,  # the largest child so far: the first ingests are the first large ones
        "events": got,
    }


def ingest_side_by_side(
    journal: str, root: str, env: dict[str, str], other: str, rounds: int
) -> dict[str, Any]:
    """The first ingest by this fwspool and by the one at ``other`` (a checkout, on PYTHONPATH),
    in turn, ``rounds`` times each: on a shared machine whose speed drifts, the ratio of two runs
    side by side says more than either rate. Medians, and the median of the pairwise ratios."""
    other_env = {**env, "PYTHONPATH": os.path.abspath(other)}
    fwspool("--help", env=other_env)  # its bytecode cached too
    other_journal = journal + ".other"
    pairs = []
    for k in range(rounds):
        log(f"side by side, round {k + 1} of {rounds}: this, then {other}")
        pairs.append((first_ingest(journal, root, env), first_ingest(other_journal, root, other_env)))
    remove_journal(other_journal)
    if any(a["events"] != b["events"] for a, b in pairs):
        raise RuntimeError(f"the two versions ingested different numbers of events: {pairs}")

    def median(side: int, key: str) -> float:
        return statistics.median(p[side][key] for p in pairs)

    this = dict(pairs[-1][0])  # the journal the rest of the benchmark reads
    this.update(seconds=median(0, "seconds"), cpu_s=median(0, "cpu_s"))
    this.update(
        events_per_s=this["events"] / this["seconds"], events_per_cpu_s=this["events"] / this["cpu_s"]
    )
    return {
        "other": other,
        "rounds": rounds,
        "events": pairs[0][0]["events"],
        "this": this,
        "this_events_per_s": this["events_per_s"],
        "other_events_per_s": pairs[0][1]["events"] / median(1, "seconds"),
        "this_cpu_s": median(0, "cpu_s"),
        "other_cpu_s": median(1, "cpu_s"),
        "wall_ratio": statistics.median(a["seconds"] / b["seconds"] for a, b in pairs),
        "cpu_ratio": statistics.median(a["cpu_s"] / b["cpu_s"] for a, b in pairs),
        "this_peak_rss_mib": max(a["peak_rss_mib"] for a, _ in pairs),
    }


def run(args: argparse.Namespace, work: str) -> dict[str, Any]:
    env = as_installed({**os.environ, "FWSPOOL_INBOX": os.path.join(work, "inbox")}, work)
    os.makedirs(env["FWSPOOL_INBOX"], exist_ok=True)
    root = build(work, args.launches, args.events, args.open)
    journal = os.path.join(work, "journal.sqlite3")
    expected = args.launches * args.events + args.open * 5
    r: dict[str, Any] = {"launches": args.launches, "events": args.events, "open": args.open}

    if args.ingest_vs:
        r["ingest_vs"] = ingest_side_by_side(journal, root, env, args.ingest_vs, args.rounds)
        got = r["ingest_vs"]["events"]
        r["ingest"] = r["ingest_vs"]["this"]
    else:
        r["ingest"] = first_ingest(journal, root, env)
        got = r["ingest"]["events"]
    r["ok"] = got == expected

    r["push_marks"] = mark_as_pushed(journal, args.launches)
    log(
        f"push reads: {r['push_marks']['read_cpu_ms_per_launch']:.2f} ms, marks: "
        f"{r['push_marks']['cpu_ms_per_launch']:.2f} ms CPU per launch"
    )

    # Every open launch with its last ping pending and silent for long (the spool files' clock
    # is 2025): the worst case, each needing attention and decided by its events.
    r["status"] = status_times(journal, args.repeat, env)
    r["status"]["startup_s"], r["status"]["startup_cpu_s"] = timed_runs(args.repeat, "--help", env=env)
    log(f"status, every open launch silent and pending: {r['status']}")

    r["idle"] = idle_passes(journal, env["FWSPOOL_INBOX"], args.open, args.repeat, env)
    log(f"idle pass: {r['idle']}")
    if args.recover_offline:
        r["recover_offline"] = recover_offline_idle(work, args.recover_offline, env)
        r["recover_offline_n"] = args.recover_offline
        log(f"lpad recover_offline, idle: {r['recover_offline']}")

    r["pending_open"] = open_launches_pinging(journal, args.launches, 0.01)
    r["status_pinging"] = status_times(journal, args.repeat, env)
    log(f"status, open launches pinging, {r['pending_open']} pending: {r['status_pinging']}")
    r["space"] = space(journal)
    return r


def table(r: dict[str, Any]) -> str:
    i, s, idle, sp = r["ingest"], r["status"], r["idle"], r["space"]
    rows = [
        f"fwspool at scale: {r['launches']:,} launches x {r['events']:,} events, {r['open']:,} open",
        f"  first ingest            {i['events_per_s']:>12,.0f} ev/s  ({i['events']:,} events, {i['seconds']:.1f} s, "
        f"peak RSS {i['peak_rss_mib']:.0f} MiB)",
        f"  first ingest, per CPU s {i['events_per_cpu_s']:>12,.0f} ev    ({i['cpu_s']:.1f} s of CPU: the machine's load aside)",
        *side_by_side_rows(r.get("ingest_vs")),
        f"  push reads (journal)    {r['push_marks']['read_cpu_ms_per_launch']:>12.2f} ms CPU per launch  "
        "(its pending events, decoded)",
        f"  push marks (journal)    {r['push_marks']['cpu_ms_per_launch']:>12.2f} ms CPU per launch  "
        "(marked pushed, with their summary)",
        f"  (any command's start-up {s['startup_s']:>12.3f} s  ({s['startup_cpu_s']:.3f} s CPU): Python and "
        "imports, `fwspool --help`)",
        *status_rows("every open launch silent for days, its last ping pending", s),
        *status_rows(
            f"open launches pinging, {r['pending_open']:,} with a pending event", r["status_pinging"]
        ),
        f"  idle pass               {idle['seconds']:>12.3f} s  (median of {idle['passes']}; slowest "
        f"{idle['slowest_s']:.3f} s; {idle['cpu_s']:.3f} s CPU)",
    ]
    if "meta_per_open_launch" in idle:
        rows.append(
            f"  idle pass, per open     {idle['fs_per_open_launch']:>12.2f} filesystem calls, "
            f"{idle['meta_per_open_launch']:.2f} metadata"
        )
        rows.append("    " + ", ".join(f"{c} {n}" for c, n in idle["calls"].items()))
    if "recover_offline" in r:
        ro = r["recover_offline"]
        rows.append(
            f"  lpad recover_offline    {ro['seconds']:>12.3f} s  idle pass over {r['recover_offline_n']:,} running "
            f"offline launches ({ro['cpu_s']:.3f} s CPU)"
        )
        if "meta_per_open_launch" in ro:
            rows.append(
                f"    per launch            {ro['fs_per_open_launch']:>12.2f} filesystem calls, "
                f"{ro['meta_per_open_launch']:.2f} metadata"
            )
            rows.append("    " + ", ".join(f"{c} {n}" for c, n in ro["calls"].items()))
    rows.append(
        f"  journal                 {sp['bytes_per_event']:>12.0f} bytes per event ({sp['bytes'] / 2**20:.0f} MiB)"
    )
    for name, per in list(sp.get("by_object", {}).items())[:8]:
        rows.append(f"    {name:<28} {per:>8.1f}" if isinstance(per, float) else f"    {name}: {per}")
    if "payload_bytes_per_event" in sp:
        rows.append(
            f"    (payload JSON text: {sp['payload_bytes_per_event']:.0f} bytes per event on average)"
        )
    return "\n".join(rows)


def side_by_side_rows(vs: dict[str, Any] | None) -> list[str]:
    if vs is None:
        return []
    return [
        f"  first ingest, side by side with {vs['other']} ({vs['rounds']} runs each, in turn; medians)",
        f"    this                  {vs['this_events_per_s']:>12,.0f} ev/s  ({vs['this_cpu_s']:.1f} s of CPU)",
        f"    the other             {vs['other_events_per_s']:>12,.0f} ev/s  ({vs['other_cpu_s']:.1f} s of CPU)",
        f"    this / the other      {vs['wall_ratio']:>12.3f} wall time, {vs['cpu_ratio']:.3f} CPU "
        "(median of the pairs' ratios; below 1: this is faster)",
    ]


def status_rows(title: str, s: dict[str, Any]) -> list[str]:
    return [
        f"  status: {title}",
        f"    summary line (daemon) {s['summary_s']:>12.3f} s",
        f"    default view          {s['default_s']:>12.3f} s  ({s['default_cpu_s']:.3f} s CPU; "
        f"{s['default_in_process_cpu_s']:.3f} s CPU past the start-up)",
        f"    --json (every launch) {s['json_s']:>12.3f} s  ({s['json_cpu_s']:.3f} s CPU; "
        f"{s['json_in_process_cpu_s']:.3f} s CPU past the start-up)",
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--launches", type=int, default=1000, help="finished launches (L)")
    ap.add_argument("--events", type=int, default=100, help="events per finished launch (E, >= 3)")
    ap.add_argument("--open", type=int, default=1000, help="open launches on disk (O)")
    ap.add_argument("--big", action="store_true", help="10,000 x 1,000 events and 10,000 open launches")
    ap.add_argument(
        "--recover-offline",
        type=int,
        default=0,
        metavar="N",
        help="also FireWorks' lpad recover_offline on N running offline launches (a SecantusDB server)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs per timing; the median is reported")
    ap.add_argument(
        "--ingest-vs",
        metavar="CHECKOUT",
        help="also the first ingest of another fwspool (a checkout's directory), in turn with this one",
    )
    ap.add_argument("--rounds", type=int, default=3, help="first ingests of each version with --ingest-vs")
    ap.add_argument("--dir", default=None, help="work directory (default: a new temp dir, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--json", action="store_true", help="JSON on stdout (the table goes to stderr)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)
    if args.big:
        args.launches, args.events, args.open = 10_000, 1_000, 10_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.dir or tempfile.mkdtemp(prefix="fwspool-scale-")
    os.makedirs(work, exist_ok=True)
    try:
        r = run(args, work)
    finally:
        if not (args.keep or args.dir):
            shutil.rmtree(work, ignore_errors=True)
    print(table(r), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(r, indent=2))
    missed = [
        r["status_pinging"]["default_s"] > TARGETS["status_s"],
        r["idle"].get("meta_per_open_launch", 0) > TARGETS["idle_meta_per_launch"],
        r["idle"]["seconds"] > TARGETS["idle_s"],
    ]
    if not r["ok"]:
        log("event count differs from what was generated")
        return 1
    return 1 if args.check and any(missed) else 0


if __name__ == "__main__":
    sys.exit(main())
