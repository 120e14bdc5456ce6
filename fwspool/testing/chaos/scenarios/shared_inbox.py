"""Scenario 13: several LaunchPads and journals share one inbox, with resets, kills and forgets.

Per trial two or three LaunchPads (databases of the harness's server), each with its own journal
and launch directories, all of whose jobs announce themselves in ONE inbox, as every LaunchPad of
a user does in the default ``~/.fwspool/inbox``: the same launch ids, in other directories. The
first and third LaunchPads run one workload (19 launches), the second a smaller one (11), so some
pointers name an id a LaunchPad has and some an id it never handed out. Each LaunchPad's jobs
have writer ids and times of their own (hours ago: within the retention horizon, so no journal
may remove another's pointer for being long over), and each job leaves its pointer before its
first record, as ``fwspool rlaunch`` does. Some launches of every workload never end (a job
killed mid-run): their pointers stay for good.

Campaign 1: every LaunchPad's jobs append their records while each journal's login side runs, in
turn a ``fwspool sync --watch`` daemon or one-shot ``ingest``, ``push`` and ``sync``, reading the
inbox and the LaunchPad's registry, and sometimes also ``--root`` over its own launch directories
or over every LaunchPad's (the parent directory a user may point it at). Faults, at random:

- SIGKILL of a daemon or one-shot at a random moment (then it is started again);
- a job killed mid-run: the process appending one LaunchPad's records is SIGKILLed, its open
  launches never end and their pointers stay;
- ``fwspool forget --launch-id`` of one launch, after a clean push of its journal;
- ``lpad reset`` of one LaunchPad after campaign 1 (FireWorks' own ``LaunchPad.reset``, then the
  same workflows reserved again into new directories: launch ids from 1 again). Its old journal's
  push must apply nothing and exit 78, saying that the LaunchPad was reset and to start a new
  journal; the old journal is then deleted, its pointers left in the inbox, and campaign 2 runs
  with a new journal while the other journals go on, among every pointer campaign 1 left.

Invariants, per LaunchPad and campaign (a reset one's first campaign is checked before its reset):

- its journal holds every event of its own launch directories exactly once, none set aside
  (lost, duplicated), and no event of another LaunchPad's directory is applied, or held under a
  launch id this LaunchPad has, instead of set aside as ``stray`` (merged);
- the LaunchPad equals a clean run of its own spool files (invariant b; a forgotten launch gets
  what was applied before the forget, and its offline run is deprecated), nothing of its own is
  left pending;
- every launch of it is held in its journal in its own directory, is not held by a problem, and
  its Firework reached the clean run's state (stalled);
- the inbox keeps no pointer of a launch that its own live journal has settled.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import signal
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fwspool.identity import same_dir
from fwspool.spool import frame, scan
from fwspool.testing.chaos.cluster import Cluster, Instance
from fwspool.testing.chaos.invariants import (
    Check,
    Inventory,
    check_db,
    inventory,
    journal_rows,
)
from fwspool.testing.chaos.processes import Proc, fwspool_cmd
from fwspool.testing.chaos.progress import log
from fwspool.testing.chaos.trial import (
    Scenario,
    ScenarioResult,
    expect_ok,
    no_traceback,
    one_line_error,
    paced,
)
from fwspool.testing.chaos.workload import (
    T0,
    LaunchInfo,
    Stream,
    StreamTransform,
    Template,
    launchpad,
    raw_decoder,
    read_spool_files,
    start_writers,
)
from fwspool.testing.launchpad import db_snapshot

NAME = "several LaunchPads on one inbox: resets, kills, forgets"

#: The event fields that hold a time the node recorded.
TIMES = ("started_on", "ping_time", "completed_on")
#: Seconds the jobs of one campaign take to append everything.
CAMPAIGN_SECONDS = 2.5
#: What a push may have done with an event that counts as applied to the LaunchPad.
APPLIED = ("applied", "superseded", "skipped")


def distinct(tag: str, shift: dt.timedelta, inbox: str) -> StreamTransform:
    """The jobs of one LaunchPad's campaign: writer ids of their own (real ones are random), every
    time moved by ``shift``, and the main writer of each launch leaving its pointer in ``inbox``."""

    def transform(li: LaunchInfo, s: Stream) -> Stream:
        ids = {
            x["writer"]: hashlib.sha256(f"{tag}/{x['writer']}".encode()).hexdigest()[:32] for x in li.streams
        }
        records = []
        for at, event_json, durable in s["records"]:
            event = json.loads(event_json)
            for k in TIMES:
                if event.get(k):
                    event[k] = (
                        dt.datetime.fromisoformat(event[k].replace("Z", "+00:00")) + shift
                    ).isoformat()
            if event.get("run") in ids:
                event["run"] = ids[event["run"]]
            records.append([(dt.datetime.fromisoformat(at) + shift).isoformat(), json.dumps(event), durable])
        out = dict(s, writer=ids[s["writer"]], records=records)
        if s["writer"] == li.streams[0]["writer"]:
            out["inbox"] = inbox
        return out

    return transform


@dataclass
class Pad:
    """One LaunchPad of a trial: its workload, its current campaign's instance (directories,
    database, journal), its login side and what was forgotten in its journal."""

    name: str
    index: int
    tpl: Template
    inst: Instance
    inbox: str
    campaign: int = 1
    proc: Proc | None = None
    #: Whether ``proc`` is the ``sync --watch`` daemon.
    daemon: bool = False
    #: The exit codes ``proc`` may end with.
    codes: tuple[int, ...] = (0,)
    writers: list[Proc] = field(default_factory=list)
    #: Forgotten launch id -> its own events applied before the forget, by (writer, seq).
    forgotten: dict[int, frozenset[tuple[str, int]]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name}{self.campaign}"

    def env(self, **extra: str) -> dict[str, str]:
        return self.inst.env(FWSPOOL_INBOX=self.inbox, **extra)

    def run(self, cmd: Sequence[str], what: str, **kw: Any) -> Proc:
        return self.inst.run(cmd, f"{self.label}-{what}", env=self.env(), **kw)

    def push_cmd(self) -> list[str]:
        return self.inst.push("--timeout", "20")

    def sync_cmd(self, *extra: str) -> list[str]:
        return fwspool_cmd("sync", "--uri", self.inst.uri, "--name", self.inst.db, "--timeout", "20", *extra)


class Trial:
    """One trial's LaunchPads, their login sides and the faults that landed."""

    def __init__(
        self, cluster: Cluster, t: int, rng: random.Random, tpls: list[Template], base: dt.timedelta
    ) -> None:
        self.cluster = cluster
        self.t = t
        self.rng = rng
        self.base = base
        self.c = Check()
        self.root = os.path.join(cluster.root, "trials", f"s13-t{t}-{rng.randrange(16**6):06x}")
        self.inbox = os.path.join(self.root, "inbox")
        os.makedirs(self.inbox, mode=0o700)
        n = 2 if t == 0 else 3 if t == 1 else rng.choice((2, 3))
        self.pads: list[Pad] = []
        for k in range(n):
            tpl = tpls[k % 2]
            inst = cluster.instance(tpl, f"s13-t{t}-{'abc'[k]}1", spool=False, parent=self.root)
            self.pads.append(Pad("ABC"[k], k, tpl, inst, self.inbox))
        #: Faults that landed, by kind.
        self.landed: dict[str, int] = {}
        self.steps: list[str] = []
        #: Stray events in the journals at the end, and pointers left in the inbox.
        self.strays = 0
        self.pointers_left = 0

    def landed_one(self, kind: str) -> None:
        self.landed[kind] = self.landed.get(kind, 0) + 1

    # -- the compute side ------------------------------------------------------------------

    def start_jobs(self, pad: Pad) -> None:
        shift = self.base + dt.timedelta(minutes=10 * pad.index + pad.campaign)
        tag = f"{pad.name}{pad.campaign}"
        pad.writers = start_writers(
            pad.tpl,
            pad.inst.root,
            pad.inst.logdir,
            procs=1,
            pace=paced(pad.tpl, 1, CAMPAIGN_SECONDS),
            seed=1300 + 10 * pad.index + pad.campaign,
            transform=distinct(tag, shift, self.inbox),
        )

    def jobs_running(self) -> bool:
        return any(w.popen.poll() is None for p in self.pads for w in p.writers)

    def kill_a_job(self, pad: Pad) -> None:
        """A node failure: the process appending this LaunchPad's records dies mid-run."""
        for w in pad.writers:
            if w.kill():
                self.landed_one("job killed mid-run")
                self.steps.append(f"{pad.label}'s jobs killed mid-run")

    def wait_jobs(self) -> None:
        for pad in self.pads:
            for w in pad.writers:
                code = w.wait(120)
                if code not in (0, -signal.SIGKILL):
                    self.c.other += 1
                    self.c.note(f"{w.name} of {pad.label} exited {code}: {w.stderr.strip()[-300:]}")
            pad.writers = []

    # -- the login side --------------------------------------------------------------------

    def roots(self, pad: Pad) -> list[str]:
        """What an ingest of ``pad`` walks besides the inbox and the registry."""
        choice = self.rng.random()
        if choice < 0.4:
            return []
        if choice < 0.7:
            return ["--root", pad.inst.launches_root]
        return ["--root", self.root]  # every LaunchPad's launch directories, every campaign's

    def login_step(self, pad: Pad) -> None:
        """The pad's login side: kill what runs (sometimes), else start something."""
        p = pad.proc
        if p is not None and p.popen.poll() is None:
            if self.rng.random() < 0.5:
                what = "daemon" if pad.daemon else p.name.split("-")[-1]
                if p.kill():
                    self.landed_one(f"SIGKILL {what}")
                no_traceback(p, self.c, f"{p.name} (killed)")
                pad.proc = None
            return
        self.finished(pad)
        r = self.rng.random()
        roots = self.roots(pad)
        if r < 0.4:
            pad.proc = pad.inst.start(
                pad.sync_cmd("--watch", "--interval", "0.5", *roots), f"{pad.label}-daemon", env=pad.env()
            )
            pad.daemon = True
            # Stopped by SIGTERM: 0, or -15 when it came before the handler was installed.
            pad.codes = (0, -signal.SIGTERM)
            return
        if r < 0.6:
            cmd, what = fwspool_cmd("ingest", *roots), "ingest"
        elif r < 0.8:
            cmd, what = pad.push_cmd(), "push"
        else:
            cmd, what = pad.sync_cmd(*roots), "sync"
        # A push makes no journal: before the first ingest it says so (66) and does nothing.
        pad.codes = (0, 66) if what == "push" and not os.path.exists(pad.inst.journal) else (0,)
        pad.proc = pad.inst.start(cmd, f"{pad.label}-{what}", env=pad.env())
        pad.daemon = False

    def finished(self, pad: Pad) -> None:
        """A login process that ended on its own: a one-shot must have exited 0."""
        p = pad.proc
        if p is None:
            return
        expect_ok(p, self.c, f"{p.name} ({'daemon' if pad.daemon else 'one-shot'})", pad.codes)
        pad.proc = None

    def stop_login(self, pad: Pad) -> None:
        """Stop the pad's login side cleanly: the daemon by SIGTERM, a one-shot to its end."""
        p = pad.proc
        if p is None:
            return
        if pad.daemon and p.popen.poll() is None:
            p.popen.send_signal(signal.SIGTERM)
        p.wait(240)
        self.finished(pad)

    def campaign(self, pads: list[Pad], *, forget: bool, kill_job: bool) -> None:
        """The jobs of ``pads`` run while every login side runs, is killed and started again."""
        for pad in pads:
            self.start_jobs(pad)
        kill_at = time.monotonic() + self.rng.uniform(0.5, CAMPAIGN_SECONDS) if kill_job else None
        victim = self.rng.choice(pads)
        forget_at = time.monotonic() + self.rng.uniform(0.5, CAMPAIGN_SECONDS + 2) if forget else None
        forgetter = self.rng.choice(self.pads)
        tail = None
        while True:
            now = time.monotonic()
            if kill_at is not None and now >= kill_at:
                self.kill_a_job(victim)
                kill_at = None
            if forget_at is not None and now >= forget_at:
                self.forget(forgetter)
                forget_at = None
            if not self.jobs_running() and tail is None:
                tail = now + self.rng.uniform(1.0, 3.0)  # the login sides go on a little
            if tail is not None and now >= tail and forget_at is None:
                break
            time.sleep(self.rng.uniform(0.3, 0.9))
            self.login_step(self.rng.choice(self.pads))
        self.wait_jobs()
        for pad in self.pads:
            self.stop_login(pad)

    # -- forget ----------------------------------------------------------------------------

    def forget(self, pad: Pad) -> None:
        """``fwspool forget --launch-id`` of one of the pad's launches, after a clean sync (so
        that its journal knows exactly what of the launch the LaunchPad has)."""
        self.stop_login(pad)
        expect_ok(pad.run(pad.sync_cmd(), "sync-before-forget"), self.c, f"{pad.label}: sync before a forget")
        never_ends = [li for li in pad.tpl.launches if li.outcome == "running"]
        li = self.rng.choice(never_ends if never_ends and self.rng.random() < 0.5 else pad.tpl.launches)
        p = pad.run(fwspool_cmd("forget", "--launch-id", str(li.launch_id)), "forget")
        if p.popen.returncode == 66:  # not known to the journal yet: nothing forgotten
            one_line_error(p, self.c, f"{pad.label}: forget of launch {li.launch_id} not known yet", 66)
            self.steps.append(f"{pad.label}: launch {li.launch_id} not known yet, not forgotten")
            return
        expect_ok(p, self.c, f"{pad.label}: forget of launch {li.launch_id}")
        own = pad.inst.launches_root + os.sep
        applied = journal_rows(
            pad.inst.journal,
            "SELECT e.writer_id, e.seq, s.path FROM events AS e LEFT JOIN sources AS s ON s.source_id = e.source_id "
            f"WHERE e.launch_id = ? AND e.push_outcome IN {APPLIED!r}",
            (li.launch_id,),
        )
        pad.forgotten[li.launch_id] = frozenset(
            (r["writer_id"], r["seq"]) for r in applied if (r["path"] or "").startswith(own)
        )
        self.landed_one("forget")
        self.steps.append(f"{pad.label}: launch {li.launch_id} ({li.outcome}) forgotten")

    # -- lpad reset ------------------------------------------------------------------------

    def reset(self, pad: Pad) -> None:
        """``lpad reset`` of the pad's LaunchPad, the same workflows reserved again into new
        directories; the old journal's push is refused, then the journal deleted."""
        old = pad.inst
        lp = launchpad(old.uri, old.db)
        try:
            lp.reset("", require_password=False, max_reset_wo_password=10**9)
            lp.db.fw_id_assigner.delete_many({})  # the clone brings the template's counters
        finally:
            lp.connection.close()
        new = self.cluster.instance(
            pad.tpl, f"s13-t{self.t}-{pad.name.lower()}2", spool=False, parent=self.root, db=old.db
        )
        self.landed_one("lpad reset")
        self.steps.append(f"{pad.name}: lpad reset")
        pad.campaign += 1
        pad.inst = new
        pad.forgotten = {}
        if self.rng.random() < 0.5:
            # The new journal binds first (draws the reset LaunchPad's new epoch).
            expect_ok(pad.run(pad.sync_cmd(), "sync-binds"), self.c, f"{pad.label}: first sync")
            self.steps.append(f"{pad.label} bound first")
        before = self.snapshot(new)
        p = old.run(
            old.push("--timeout", "20"),
            f"{pad.name}1-push-after-reset",
            env=old.env(FWSPOOL_INBOX=self.inbox),
        )
        one_line_error(p, self.c, f"{pad.name}: push of the old journal after lpad reset", 78)
        if "was reset (lpad reset)" not in p.stderr or "start a new journal" not in p.stderr:
            self.c.other += 1
            self.c.note(f"{pad.name}: the refusal after lpad reset says: {p.stderr.strip()[-400:]}")
        if self.snapshot(new) != before:
            self.c.mismatched += 1
            self.c.note(f"{pad.name}: the old journal's push after lpad reset changed the LaunchPad")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(old.journal + suffix):
                os.unlink(old.journal + suffix)
        self.landed_one("journal deleted")

    def snapshot(self, inst: Instance) -> dict[str, Any]:
        import pymongo

        client: Any = pymongo.MongoClient(inst.uri, serverSelectionTimeoutMS=20000)
        try:
            return db_snapshot(client[inst.db], inst.tpl.first_new_fw_id)
        finally:
            client.close()

    # -- catching up and checking ----------------------------------------------------------

    def catch_up(self, pad: Pad) -> None:
        """The login side's last word (the harness's own clean passes, in this process, as
        ``fwspool sync`` makes them): ingest and push until nothing changes, and one more ingest
        (it removes the pointers the last push settled)."""
        for _ in range(4):
            new = ingest_pass(pad)
            summary = push_pass(pad)
            if not new and not summary.changed():
                break
        ingest_pass(pad)

    def check(self, pad: Pad) -> None:
        c = Check()
        inst = pad.inst
        inv = inventory(inst.launches_root)
        lp_ids = {li.launch_id for li in pad.tpl.launches}
        c.add(check_own_journal(inst.journal, inv, inst.launches_root, pad.forgotten, lp_ids))
        want = reference(self.cluster, pad)
        c.add(check_db(inst, want))
        c.add(check_stalled(pad, want))
        c.add(check_pointers(pad))
        c.notes = [f"{pad.label}: {n}" for n in c.notes]
        self.c.add(c)


def ingest_pass(pad: Pad) -> int:
    """One ingest pass in this process, as ``fwspool ingest`` (inbox, no --root) makes it."""
    from fwspool.ingest import Ingester
    from fwspool.journal import Journal

    with Journal.open(pad.inst.journal) as j:
        return Ingester(j, inbox_dir=pad.inbox).run_pass().new_events


def push_pass(pad: Pad) -> Any:
    from fwspool.testing.chaos.trial import push_here

    return push_here(pad.inst)


def reference(cluster: Cluster, pad: Pad) -> dict[str, Any]:
    """The clean run of the pad's own spool files; a forgotten launch gets only what was applied
    before the forget, and its offline run is deprecated."""
    files = read_spool_files(pad.inst.launches_root)
    if pad.forgotten:
        files = {rel: _without_unapplied(data, pad.forgotten) for rel, data in files.items()}
    want = cluster.reference(pad.tpl, files)
    if pad.forgotten:
        want = copy.deepcopy(want)
        for lid in pad.forgotten:
            if lid in want["offline_runs"]:
                want["offline_runs"][lid]["deprecated"] = True
    return want


def _without_unapplied(data: bytes, forgotten: dict[int, frozenset[tuple[str, int]]]) -> bytes:
    out = []
    for fr in scan(data, at_eof=True).frames:
        rec = raw_decoder.decode(fr.payload)
        if rec.launch_id in forgotten and (rec.writer, rec.seq) not in forgotten[rec.launch_id]:
            continue
        out.append(frame(fr.payload))
    return b"".join(out)


def check_own_journal(
    journal: str,
    inv: Inventory,
    own_root: str,
    forgotten: dict[int, frozenset[tuple[str, int]]],
    lp_ids: set[int],
) -> Check:
    """Every event of the LaunchPad's own directories once and not set aside; none of another's
    applied, or held under one of this LaunchPad's launch ids."""
    c = Check(events=inv.events)
    own = own_root + os.sep
    rows = journal_rows(
        journal,
        "SELECT e.writer_id, e.seq, e.launch_id, e.occurred_at, e.payload, e.source_offset, e.pushed_at, "
        "e.push_outcome, s.path FROM events AS e LEFT JOIN sources AS s ON s.source_id = e.source_id",
    )
    keys = [(r["writer_id"], r["seq"]) for r in rows]
    if len(keys) != len(set(keys)):
        c.duplicated += len(keys) - len(set(keys))
        c.note(f"journal: {len(keys)} events, {len(set(keys))} distinct")
    mine = {}
    for r in rows:
        path = r["path"] or ""
        if path.startswith(own):
            mine[(r["writer_id"], r["seq"])] = r
        elif r["push_outcome"] in APPLIED:
            c.merged += 1
            c.note(f"event {r['writer_id']}-{r['seq']} of {path} applied as launch {r['launch_id']}'s")
        elif r["pushed_at"] is None and r["launch_id"] in lp_ids:
            c.merged += 1
            c.note(f"event {r['writer_id']}-{r['seq']} of {path} pending under launch {r['launch_id']}")
    for key, occs in inv.occurrences.items():
        row = mine.get(key)
        lid = occs[0].launch_id
        if row is None:
            if lid not in forgotten:
                c.lost += 1
                c.note(f"lost: {key[0]}-{key[1]} ({occs[0].path}@{occs[0].offset})")
            continue
        if row["push_outcome"] == "stray":
            c.lost += 1
            c.note(f"own event {key[0]}-{key[1]} of {occs[0].path} set aside: {row.get('push_detail')}")
        if not any(
            (o.payload, o.launch_id, o.occurred_at) == (row["payload"], row["launch_id"], row["occurred_at"])
            for o in occs
        ):
            c.extra += 1
            c.note(f"journal holds {key[0]}-{key[1]} with content no spool file has")
    for key, row in mine.items():
        if key not in inv.occurrences and row["source_offset"] is not None:
            c.extra += 1
            c.note(f"journal holds {key[0]}-{key[1]} that no spool file holds")
    return c


def check_stalled(pad: Pad, want: dict[str, Any]) -> Check:
    """Every launch of the pad held in its own directory, held by no problem, and its Firework in
    the clean run's state."""
    c = Check()
    inst = pad.inst
    rows = {
        r["launch_id"]: r
        for r in journal_rows(inst.journal, "SELECT launch_id, launch_dir, held, forgotten_at FROM launches")
    }
    lp = launchpad(inst.uri, inst.db)
    try:
        states = {d["fw_id"]: d["state"] for d in lp.fireworks.find({}, {"fw_id": 1, "state": 1})}
    finally:
        lp.connection.close()
    for li in pad.tpl.launches:
        problems = []
        row = rows.get(li.launch_id)
        home = os.path.join(inst.root, li.rel)
        if row is not None and not row["forgotten_at"]:
            if not same_dir(row["launch_dir"], home):
                problems.append(f"held in {row['launch_dir']}, not in {home}")
            if row["held"]:
                problems.append(f"held: {row['held']}")
        got, wanted = states.get(li.fw_id), want["fireworks"].get(li.fw_id, {}).get("state")
        if got != wanted:
            problems.append(f"Firework {li.fw_id} {got}, the clean run's {wanted}")
        if problems:
            c.stalled += 1
            c.note(f"launch {li.launch_id} ({li.outcome}): {'; '.join(problems)}")
    return c


def check_pointers(pad: Pad) -> Check:
    """No pointer left in the inbox for a launch that the pad's own journal has settled (confirmed,
    and over or forgotten): pointers do not pile up."""
    from fwspool import inbox

    c = Check()
    rows = {
        r["launch_id"]: r
        for r in journal_rows(
            pad.inst.journal,
            "SELECT launch_id, launch_dir, confirmed_at, terminal_at, forgotten_at FROM launches",
        )
    }
    own = pad.inst.launches_root + os.sep
    for item in inbox.list_inbox(pad.inbox):
        entry = inbox.read_pointer(item.path, lambda *_: None)
        p = entry.pointer
        if p is None or not (p.launch_dir + os.sep).startswith(own):
            continue
        row = rows.get(p.launch_id)
        if (
            row is not None
            and same_dir(row["launch_dir"], p.launch_dir)
            and row["confirmed_at"]
            and (row["terminal_at"] or row["forgotten_at"])
        ):
            c.other += 1
            c.note(
                f"the pointer of launch {p.launch_id} in {p.launch_dir} stays, though its journal settled it"
            )
    return c


def one_trial(tr: Trial) -> None:
    rng = tr.rng
    reset = tr.t % 3 != 2
    forget_in = rng.choice((1, 2 if reset else 1, None))
    tr.campaign(tr.pads, forget=forget_in == 1, kill_job=rng.random() < 0.5)
    if reset:
        pad = rng.choice(tr.pads)
        tr.catch_up(pad)
        tr.check(pad)
        tr.reset(pad)
        tr.campaign([pad], forget=forget_in == 2, kill_job=rng.random() < 0.3)
    for pad in tr.pads:
        tr.catch_up(pad)
    for pad in tr.pads:
        tr.check(pad)
        tr.strays += journal_rows(
            pad.inst.journal, "SELECT count(*) AS n FROM events WHERE push_outcome = 'stray'"
        )[0]["n"]
    from fwspool import inbox

    tr.pointers_left = len(inbox.list_inbox(tr.inbox))


def dispose(tr: Trial) -> None:
    import pymongo

    if tr.c.failed or tr.cluster.keep:
        log(f"kept {tr.root} (databases {', '.join(p.inst.db for p in tr.pads)})")
        return
    client: Any = pymongo.MongoClient(tr.cluster.uri, serverSelectionTimeoutMS=3000)
    try:
        for pad in tr.pads:
            client.drop_database(pad.inst.db)
    finally:
        client.close()
    shutil.rmtree(tr.root, ignore_errors=True)


def run(cluster: Cluster, trials: int, rng: random.Random, full: bool) -> ScenarioResult:
    res = ScenarioResult(13, NAME)
    tpls = [
        cluster.template(seed=22, n_chain=8, n_pair=4),
        cluster.template(seed=131, n_chain=4, n_pair=2, own=True, golden=False),
    ]
    # The jobs ran hours ago (the workloads' times are months old): within the retention
    # horizon, so a pointer's launch is not "long over" for a journal that is not its own.
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    base = now - dt.timedelta(hours=3) - T0
    landed: dict[str, int] = {}
    strays = pointers_left = lps = 0
    for t in range(trials):
        tr = Trial(cluster, t, rng, tpls, base)
        c = tr.c
        try:
            one_trial(tr)
        except Exception as exc:  # a harness-level failure is a failed trial
            c.other += 1
            where = traceback.extract_tb(exc.__traceback__)[-1]
            c.note(f"trial s13-t{t} failed: {type(exc).__name__}: {exc} (line {where.lineno})")
        story = f"trial {t}: {len(tr.pads)} LaunchPads; " + ", ".join(tr.steps)
        if c.failed:
            c.notes.insert(0, story)
            log(f"FAILED s13-t{t}: {c.notes[:6]}")
        else:
            log(story)
        for pad in tr.pads:
            tr.stop_login(pad)
        for kind, n in tr.landed.items():
            res.faults += n
            landed[kind] = landed.get(kind, 0) + n
        strays += tr.strays
        pointers_left += tr.pointers_left
        lps += len(tr.pads)
        res.trials += 1
        res.check.add(c)
        dispose(tr)
    res.detail = (
        f"{lps} LaunchPads on {trials} shared inboxes; faults landed: "
        + ", ".join(f"{k} {n}" for k, n in sorted(landed.items()))
        + f"; {strays} events of other LaunchPads' directories set aside, none applied; "
        f"{pointers_left} pointers left in the inboxes at the end (launches that never ended, deleted journals')"
    )
    return res


SCENARIO = Scenario(13, NAME, (1, 24), run)
