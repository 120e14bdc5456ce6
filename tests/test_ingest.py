"""Ingest: spool files and FireWorks offline files into the journal, exactly once.

Through the Python API (Journal + Ingester), through the CLI in-process (click's CliRunner), and
as real subprocesses for signals: SIGTERM of `--watch`, and SIGKILL at random moments.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from fwspool import offline
from fwspool.errors import EX_TEMPFAIL, JournalBusy
from fwspool.events import (
    RECORD_VERSION,
    Checkpoint,
    Completed,
    Exited,
    Note,
    Ping,
    Record,
    Started,
)
from fwspool.ingest import Ingester, IngestSummary
from fwspool.journal import Journal
from fwspool.spool import HEADER_LEN, OsSourceFile, SpoolWriter, encode_record, scan, spool_file_name
from fwspool.testing.commands import fwspool_cmd, unstamped
from fwspool.testing.commands import invoke as cli
from fwspool.testing.faults import ShortReadSource
from fwspool.testing.journal_file import ingest, query
from fwspool.testing.waiting import wait_for

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
_record_decoder = msgspec.json.Decoder(Record)


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    """`fwspool ingest` installs SIGINT/SIGTERM handlers; CliRunner runs it in this process."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


# -- helpers -----------------------------------------------------------------------------------


def launch_dir(root: Path, launch_id: int, fw_id: int | None = None) -> Path:
    d = root / f"block_2024/launcher_{launch_id:05d}"
    d.mkdir(parents=True, exist_ok=True)
    if fw_id is not None:
        (d / "FW.json").write_text(json.dumps({"fw_id": fw_id, "name": f"fw{fw_id}", "spec": {"_tasks": []}}))
    return d


def run_launch(
    d: Path, launch_id: int, fw_id: int | None = None, pings: int = 3, exited: bool = True
) -> SpoolWriter:
    """Write the spool of a whole launch, as `fwspool rlaunch` would; returns the (closed) writer."""
    with SpoolWriter(str(d), launch_id, fw_id, clock=lambda: T0) as w:
        w.append(Started(started_on=T0, host="nid001", ip="10.0.0.1"))
        for i in range(pings):
            w.append(Ping(ping_time=T0 + dt.timedelta(seconds=i)))
        w.append(Checkpoint(checkpoint={"_task_n": 0}, ping_time=T0))
        w.append(Completed(state="COMPLETED", action={"stored_data": {"x": launch_id}}, completed_on=T0))
        if exited:
            w.append(Exited(returncode=0))
    return w


def framed(writer: str, seq: int, launch_id: int, event: Any, fw_id: int | None = None) -> bytes:
    return encode_record(
        Record(v=RECORD_VERSION, writer=writer, seq=seq, launch_id=launch_id, fw_id=fw_id, at=T0, event=event)
    )


def spooled_ids(root: Path) -> set[tuple[str, int]]:
    """(writer, seq) of every complete, valid record in the spool files under ``root``."""
    out = set()
    for path in root.rglob("fwspool-*.spool"):
        for fr in scan(path.read_bytes(), at_eof=True).frames:
            rec = _record_decoder.decode(fr.payload)
            out.add((rec.writer, rec.seq))
    return out


def journal_ids(journal_path: str) -> list[tuple[str, int]]:
    with Journal.open(journal_path) as j:
        return [(r["writer_id"], r["seq"]) for r in j.query("SELECT writer_id, seq FROM events")]


def assert_quarantine_is_file_bytes(journal_path: str) -> None:
    """Each quarantined range names the bytes it keeps: bytes == file[offset : offset + length]."""
    for r in query(journal_path, 'SELECT path, "offset", length, bytes FROM quarantine'):
        with open(r["path"], "rb") as f:
            f.seek(r["offset"])
            assert f.read(r["length"]) == r["bytes"], r


# -- exactly once ------------------------------------------------------------------------------


def test_ingest_twice_adds_nothing_and_writes_nothing(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "spool"
    writers = [run_launch(launch_dir(root, lid, fw_id=100 + lid), lid, 100 + lid) for lid in (1, 2, 3)]
    written = spooled_ids(root)
    assert len(written) == 3 * 7

    s1 = ingest(journal_path, root)
    assert (s1.files, s1.new_events, s1.duplicates, s1.quarantined, s1.torn_waiting) == (3, 21, 0, 0, 0)
    assert s1.problems == []
    assert set(journal_ids(journal_path)) == written
    launches = query(journal_path, "SELECT * FROM launches ORDER BY launch_id")
    assert [(r["launch_id"], r["fw_id"], r["learned_from"]) for r in launches] == [
        (1, 101, "spool"),
        (2, 102, "spool"),
        (3, 103, "spool"),
    ]
    assert all(r["terminal_at"] for r in launches)
    assert launches[0]["launch_dir"] == os.path.dirname(writers[0].path)
    # Payloads are the event's JSON, usable with json_extract; times are ISO-8601 UTC text.
    rows = query(
        journal_path,
        "SELECT type, occurred_at, json_extract(payload, '$.state') AS state, source_offset FROM events "
        "WHERE launch_id = 2 ORDER BY seq",
    )
    assert [r["type"] for r in rows] == [
        "started",
        "ping",
        "ping",
        "ping",
        "checkpoint",
        "completed",
        "exited",
    ]
    assert rows[5]["state"] == "COMPLETED" and rows[0]["occurred_at"] == "2024-05-01T12:00:00.000000Z"
    assert rows[0]["source_offset"] == 0 and rows[1]["source_offset"] > 0

    before = query(journal_path, "SELECT * FROM sources ORDER BY path")
    events_before = query(journal_path, "SELECT * FROM events ORDER BY event_id")
    s2 = ingest(journal_path, root)
    assert (s2.new_events, s2.duplicates, s2.quarantined) == (0, 0, 0)
    assert query(journal_path, "SELECT * FROM sources ORDER BY path") == before
    assert query(journal_path, "SELECT * FROM events ORDER BY event_id") == events_before
    spool_rows = [r for r in before if r["kind"] == "spool"]
    assert all(r["committed_offset"] == os.path.getsize(r["path"]) for r in spool_rows)


def test_same_events_in_another_copy_are_counted_as_duplicates(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "spool"
    run_launch(launch_dir(root, 1), 1)
    assert ingest(journal_path, root).new_events == 7
    # Someone copied the launch dir (rsync to a new place): same events, other files.
    copy = tmp_path / "copy"
    (copy / "l1").mkdir(parents=True)
    for f in launch_dir(root, 1).iterdir():
        (copy / "l1" / f.name).write_bytes(f.read_bytes())
    s = ingest(journal_path, copy)
    assert (s.new_events, s.duplicates) == (0, 7)
    rows = query(journal_path, "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events")
    assert rows == [{"n": 7, "d": 7}]


def test_cli_ingest_twice(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "spool"
    for lid in (1, 2):
        run_launch(launch_dir(root, lid), lid)
    r1 = cli("ingest", "--journal", journal_path, "--root", str(root))
    assert r1.exit_code == 0, r1.output
    assert unstamped(r1.stdout).strip() == (
        "ingest: 2 files, 14 new events, 0 duplicates skipped, 0 quarantined, 0 torn tails waiting"
    )
    updated = query(journal_path, "SELECT path, updated_at, committed_offset FROM sources ORDER BY path")
    r2 = cli("ingest", "--journal", journal_path, "--root", str(root))
    assert r2.exit_code == 0, r2.output
    assert " 0 new events, 0 duplicates skipped" in r2.stdout
    assert (
        query(journal_path, "SELECT path, updated_at, committed_offset FROM sources ORDER BY path") == updated
    )
    assert query(journal_path, "SELECT count(*) AS n FROM events") == [{"n": 14}]


def test_cli_uses_fwspool_journal_env(
    tmp_path: Path, journal_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "spool"
    run_launch(launch_dir(root, 1), 1)
    monkeypatch.setenv("FWSPOOL_JOURNAL", journal_path)
    r = cli("ingest", "--root", str(root))
    assert r.exit_code == 0 and "7 new events" in r.stdout
    assert len(journal_ids(journal_path)) == 7


# -- torn tails and damage ---------------------------------------------------------------------


def test_torn_tail_then_completed_is_ingested_once(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "spool"
    d = launch_dir(root, 9)
    writer = "ab" * 16
    path = d / spool_file_name(writer)
    recs = [framed(writer, i, 9, Ping(ping_time=T0)) for i in (1, 2, 3)]
    path.write_bytes(recs[0] + recs[1] + recs[2][:30])

    s1 = ingest(journal_path, root)
    assert (s1.new_events, s1.quarantined, s1.torn_waiting) == (2, 0, 1)
    (src,) = query(journal_path, "SELECT status, committed_offset FROM sources")
    assert src == {"status": "torn", "committed_offset": len(recs[0]) + len(recs[1])}
    # Still torn: nothing new, nothing written, no damage.
    s2 = ingest(journal_path)
    assert (s2.new_events, s2.quarantined, s2.torn_waiting) == (0, 0, 1)

    with open(path, "ab") as f:
        f.write(recs[2][30:])
    s3 = ingest(journal_path)  # the launch dir is known: no --root needed
    assert (s3.new_events, s3.duplicates, s3.quarantined, s3.torn_waiting) == (1, 0, 0, 0)
    assert sorted(journal_ids(journal_path)) == [(writer, 1), (writer, 2), (writer, 3)]
    (src,) = query(journal_path, "SELECT status, committed_offset FROM sources")
    assert src == {"status": "active", "committed_offset": sum(map(len, recs))}
    assert query(journal_path, "SELECT count(*) AS n FROM quarantine") == [{"n": 0}]


def test_nul_hole_at_the_tail_waits_for_its_bytes(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "spool"
    d = launch_dir(root, 9)
    writer = "cd" * 16
    path = d / spool_file_name(writer)
    a, b = framed(writer, 1, 9, Ping(ping_time=T0)), framed(writer, 2, 9, Note(data="x" * 40))
    # The file was extended, the start of record b not filled in yet (NFS writes out of order).
    path.write_bytes(a + b"\0" * 30 + b[30:])
    s1 = ingest(journal_path, root)
    assert (s1.new_events, s1.quarantined, s1.torn_waiting) == (1, 0, 1)
    with open(path, "r+b") as f:
        f.seek(len(a))
        f.write(b[:30])
    s2 = ingest(journal_path)
    assert (s2.new_events, s2.quarantined, s2.torn_waiting) == (1, 0, 0)


def test_corruption_in_the_middle_is_quarantined_and_later_records_ingested(
    tmp_path: Path, journal_path: str
) -> None:
    root = tmp_path / "spool"
    d = launch_dir(root, 4)
    writer = "ef" * 16
    path = d / spool_file_name(writer)
    recs = [framed(writer, i, 4, Note(data={"i": i})) for i in range(1, 7)]
    bad = bytearray(recs[2])
    bad[HEADER_LEN + 4] ^= 0x20  # one flipped bit in the payload of seq 3
    garbage = b"\x00\xffgarbage\nFWS1 zz"
    blob = recs[0] + recs[1] + bytes(bad) + recs[3] + garbage + recs[4] + recs[5]
    path.write_bytes(blob)

    s = ingest(journal_path, root)
    assert (s.new_events, s.quarantined, s.torn_waiting) == (5, 2, 0)
    assert sorted(seq for _, seq in journal_ids(journal_path)) == [1, 2, 4, 5, 6]
    q = query(
        journal_path,
        'SELECT path, "offset", length, reason, bytes, source_id FROM quarantine ORDER BY "offset"',
    )
    off_bad = len(recs[0]) + len(recs[1])
    off_garbage = off_bad + len(bad) + len(recs[3])
    assert [(r["offset"], r["length"]) for r in q] == [(off_bad, len(bad)), (off_garbage, len(garbage))]
    assert q[0]["bytes"] == bytes(bad) and q[1]["bytes"] == garbage
    assert q[0]["reason"] == "checksum mismatch" and q[1]["reason"] == "bad magic"
    assert all(r["path"] == str(path) and r["source_id"] is not None for r in q)
    assert_quarantine_is_file_bytes(journal_path)
    view = query(journal_path, "SELECT path, reason, preview FROM quarantined")
    assert len(view) == 2
    (src,) = query(journal_path, "SELECT status, committed_offset FROM sources")
    assert src == {"status": "active", "committed_offset": len(blob)}
    # Again: nothing new, nothing quarantined twice.
    s2 = ingest(journal_path, root)
    assert (s2.new_events, s2.quarantined) == (0, 0)
    assert query(journal_path, "SELECT count(*) AS n FROM quarantine") == [{"n": 2}]


def test_valid_frames_with_invalid_records_are_quarantined(tmp_path: Path, journal_path: str) -> None:
    from fwspool.spool import frame

    root = tmp_path / "spool"
    d = launch_dir(root, 4)
    writer = "12" * 16
    good = framed(writer, 1, 4, Note(data=1))
    foreign = framed("34" * 16, 2, 4, Note(data=2))  # another writer's record in this file
    not_json = frame(b"this is not json")
    unknown_type = frame(
        json.dumps(
            {
                "v": 1,
                "writer": writer,
                "seq": 3,
                "launch_id": 4,
                "at": T0.isoformat(),
                "event": {"type": "bogus"},
            }
        ).encode()
    )
    future = frame(
        json.dumps(
            {
                "v": 99,
                "writer": writer,
                "seq": 4,
                "launch_id": 4,
                "at": T0.isoformat(),
                "event": {"type": "note"},
            }
        ).encode()
    )
    last = framed(writer, 5, 4, Note(data=5))
    (d / spool_file_name(writer)).write_bytes(good + foreign + not_json + unknown_type + future + last)
    s = ingest(journal_path, root)
    assert (s.new_events, s.quarantined) == (2, 4)
    q = query(journal_path, 'SELECT "offset", length, reason, bytes FROM quarantine ORDER BY "offset"')
    reasons = [r["reason"] for r in q]
    assert all(r.startswith("invalid record") for r in reasons)
    assert "writer" in reasons[0] and "version 99" in reasons[3]
    assert_quarantine_is_file_bytes(journal_path)
    assert [r["bytes"] for r in q] == [foreign, not_json, unknown_type, future]


def test_numbers_sqlite_cannot_hold_are_quarantined_not_a_failed_pass(
    tmp_path: Path, journal_path: str
) -> None:
    """A record whose seq, launch_id or fw_id does not fit SQLite's 64-bit integers decodes fine;
    it must go to quarantine, not fail the commit of every batch it is in, pass after pass."""
    root = tmp_path / "spool"
    d = launch_dir(root, 6)
    writer = "56" * 16
    too_big = [
        framed(writer, 2**63, 6, Note(data=1)),
        framed(writer, 2, 2**63, Note(data=2)),
        framed(writer, 3, 6, Note(data=3), fw_id=-(2**64)),
    ]
    good = [framed(writer, 1, 6, Note(data=0)), framed(writer, 4, 6, Note(data=4), fw_id=2**63 - 1)]
    seq_zero = framed(writer, 0, 6, Note(data=5))
    (d / spool_file_name(writer)).write_bytes(good[0] + b"".join(too_big) + good[1] + seq_zero)
    s = ingest(journal_path, root)
    assert (s.new_events, s.quarantined, s.problems) == (2, 4, [])
    q = query(journal_path, 'SELECT reason, bytes FROM quarantine ORDER BY "offset"')
    assert [r["bytes"] for r in q] == [*too_big, seq_zero]
    assert all("64-bit" in r["reason"] for r in q[:3])
    assert q[3]["reason"] == "invalid record: sequence number 0 < 1"
    assert_quarantine_is_file_bytes(journal_path)
    assert sorted(seq for _, seq in journal_ids(journal_path)) == [1, 4]


# -- files replaced or truncated ---------------------------------------------------------------


def test_file_replaced_between_passes_is_reported_and_not_misread(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "spool"
    d = launch_dir(root, 5)
    writer = "56" * 16
    path = d / spool_file_name(writer)
    old = [framed(writer, i, 5, Note(data={"old": i})) for i in (1, 2, 3)]
    path.write_bytes(b"".join(old))
    assert ingest(journal_path, root).new_events == 3

    # A new file under the same name (new inode), with other content, longer than the old one:
    # read on from the old offset it would give damage in the middle of a record.
    new = [framed(writer, i, 5, Note(data={"new": i, "pad": "p" * 37})) for i in (1, 2, 3, 4, 5)]
    tmp = d / "replacement"
    tmp.write_bytes(b"".join(new))
    os.rename(tmp, path)
    s = ingest(journal_path)
    assert any("replaced" in p and str(path) in p for p in s.problems), s.problems
    # Read from the start: seq 1-3 are event ids the journal holds with other content: not
    # duplicates to drop, but records to quarantine (and name); 4 and 5 are new.
    assert any("3 records of " + str(path) in p for p in s.problems), s.problems
    assert (s.new_events, s.duplicates, s.quarantined) == (2, 0, 3)
    assert query(journal_path, "SELECT count(*) AS n FROM quarantine") == [{"n": 3}]
    assert_quarantine_is_file_bytes(journal_path)
    (src,) = query(journal_path, "SELECT status, committed_offset, ino FROM sources")
    assert src["status"] == "replaced" and src["committed_offset"] == path.stat().st_size
    assert src["ino"] == path.stat().st_ino
    # Reported once; the next pass is quiet.
    s2 = ingest(journal_path)
    assert s2.problems == [] and s2.new_events == 0
    assert query(journal_path, "SELECT status FROM sources") == [{"status": "active"}]


def test_file_replaced_by_another_writers_file(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "spool"
    d = launch_dir(root, 5)
    writer, other = "56" * 16, "78" * 16
    path = d / spool_file_name(writer)
    path.write_bytes(framed(writer, 1, 5, Note(data=1)) + framed(writer, 2, 5, Note(data=2)))
    assert ingest(journal_path, root).new_events == 2
    tmp = d / "x"
    tmp.write_bytes(b"".join(framed(other, i, 5, Note(data=i)) for i in (1, 2, 3)))
    os.rename(tmp, path)
    s = ingest(journal_path)
    assert any("replaced" in p for p in s.problems)
    # Not misread as this writer's events: they are kept aside, with the reason.
    assert s.new_events == 0 and s.quarantined == 3
    assert {r["writer_id"] for r in query(journal_path, "SELECT writer_id FROM events")} == {writer}


def test_file_truncated_between_passes_is_reported_and_not_misread(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "spool"
    d = launch_dir(root, 6)
    writer = "9a" * 16
    path = d / spool_file_name(writer)
    recs = [framed(writer, i, 6, Note(data=i)) for i in range(1, 5)]
    path.write_bytes(b"".join(recs))
    assert ingest(journal_path, root).new_events == 4
    keep = len(recs[0]) + 10
    os.truncate(path, keep)
    s = ingest(journal_path)
    assert any("truncated" in p and str(path) in p for p in s.problems), s.problems
    assert (s.new_events, s.quarantined) == (0, 0)
    (src,) = query(journal_path, "SELECT status, committed_offset FROM sources")
    assert src == {"status": "truncated", "committed_offset": len(recs[0])}
    # The writer goes on (O_APPEND): its next record after the torn bytes is read, the torn
    # bytes are quarantined, and nothing is read twice.
    with open(path, "ab") as f:
        f.write(framed(writer, 5, 6, Note(data=5)))
    s2 = ingest(journal_path)
    assert s2.problems == [] and (s2.new_events, s2.quarantined) == (1, 1)
    assert sorted(seq for _, seq in journal_ids(journal_path)) == [1, 2, 3, 4, 5]


def test_file_replaced_during_a_pass(tmp_path: Path, journal_path: str) -> None:
    """The reader keeps the file it opened; the next pass sees the new one and says so."""
    root = tmp_path / "spool"
    d = launch_dir(root, 7)
    writer = "bc" * 16
    path = d / spool_file_name(writer)
    path.write_bytes(b"".join(framed(writer, i, 7, Note(data=i)) for i in (1, 2)))

    def swapping_opener(p: str) -> OsSourceFile:
        src = OsSourceFile(p)
        tmp = d / "swap"
        tmp.write_bytes(b"".join(framed(writer, i, 7, Note(data=-i)) for i in (1, 2, 3)))
        os.rename(tmp, p)
        return src

    s1 = ingest(journal_path, root, opener=swapping_opener)
    assert (s1.new_events, s1.quarantined, s1.problems) == (2, 0, [])
    s2 = ingest(journal_path)
    assert any("replaced" in p for p in s2.problems)
    # Seq 1 and 2 again, with other content: quarantined, not dropped as duplicates.
    assert (s2.new_events, s2.duplicates, s2.quarantined) == (1, 0, 2)


def test_file_truncated_during_a_pass(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "spool"
    d = launch_dir(root, 8)
    writer = "de" * 16
    path = d / spool_file_name(writer)
    recs = [framed(writer, i, 8, Note(data="n" * 100)) for i in range(1, 6)]
    path.write_bytes(b"".join(recs))
    cut = len(recs[0]) + len(recs[1]) + 50

    class TruncatingSource(OsSourceFile):
        def pread(self, size: int, offset: int) -> bytes:
            if offset > 0:
                os.truncate(self.path, cut)
            return super().pread(size, offset)

    s = ingest(journal_path, root, opener=TruncatingSource)
    assert s.quarantined == 0 and s.problems == []
    ids = sorted(seq for _, seq in journal_ids(journal_path))
    assert ids == [1, 2] or ids == [1, 2, 3, 4, 5]
    (src,) = query(journal_path, "SELECT committed_offset FROM sources")
    assert src["committed_offset"] in (len(recs[0]) + len(recs[1]), sum(map(len, recs)))


# -- batches and the committer thread ----------------------------------------------------------


class RecordingCommits:
    """Wraps ``journal.commit_ingest``: records each batch's event seqs by path and the thread that
    committed it, checks that commits never overlap, and fails the ``fail_at``-th call."""

    def __init__(self, journal: Journal, fail_at: int | None = None, delay: float = 0.0) -> None:
        self.inner = journal.commit_ingest
        self.fail_at = fail_at
        self.delay = delay
        self.calls: list[tuple[str, dict[str, list[int]]]] = []
        self.intervals: list[float] = []
        self.active = 0
        journal.commit_ingest = self  # type: ignore[method-assign]

    def __call__(self, batch: Any) -> Any:
        from fwspool.errors import JournalError

        self.active += 1
        try:
            assert self.active == 1, "two commits at once"
            seqs = {path: [row[2] for row in rows] for path, rows in batch.events.items()}
            self.calls.append((threading.current_thread().name, seqs))
            self.intervals.append(sys.getswitchinterval())
            time.sleep(self.delay)  # a slow disk: the next batch is read meanwhile
            if len(self.calls) == self.fail_at:
                raise JournalError("journal: database or disk is full")
            return self.inner(batch)
        finally:
            self.active -= 1


def many_launches(root: Path, n: int = 12, pings: int = 20) -> int:
    for lid in range(1, n + 1):
        run_launch(launch_dir(root, lid), lid, pings=pings)
    return n * (pings + 4)


def test_batches_commit_in_order_on_the_committer_thread(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "spool"
    total = many_launches(root)
    interval = sys.getswitchinterval()
    with Journal.open(journal_path) as j:
        commits = RecordingCommits(j, delay=0.02)
        s = Ingester(j, roots=[str(root)], batch_size=50).run_pass()
    assert (s.new_events, s.duplicates, s.quarantined, s.problems) == (total, 0, 0, [])
    assert len(commits.calls) >= 4
    # All but the last batch were committed by the committer thread while the next was read.
    assert all(name.startswith("fwspool-commit") for name, _ in commits.calls[:-1])
    assert commits.calls[-1][0] == threading.current_thread().name
    # The GIL switch interval is short only while the committer thread exists.
    assert max(commits.intervals) <= min(interval, 0.001)
    assert sys.getswitchinterval() == interval
    # In order: each file's events arrive in increasing seq, batch after batch.
    last: dict[str, int] = {}
    for _, seqs in commits.calls:
        for path, batch_seqs in seqs.items():
            assert batch_seqs == sorted(batch_seqs) and batch_seqs[0] > last.get(path, 0)
            last[path] = batch_seqs[-1]
    assert len(journal_ids(journal_path)) == total == len(spooled_ids(root))


def test_a_failed_commit_is_raised_and_no_later_batch_commits(tmp_path: Path, journal_path: str) -> None:
    """Batch 3 fails while batch 4 is being read: the pass raises the error, batch 4 is never
    committed (its offsets may lie past batch 3's events), and the next pass ingests the rest
    exactly once."""
    from fwspool.errors import JournalError

    root = tmp_path / "spool"
    total = many_launches(root)
    with Journal.open(journal_path) as j:
        commits = RecordingCommits(j, fail_at=3, delay=0.02)
        with pytest.raises(JournalError, match="disk is full"):
            Ingester(j, roots=[str(root)], batch_size=50).run_pass()
    assert len(commits.calls) == 3
    committed = sum(len(v) for _, seqs in commits.calls[:2] for v in seqs.values())
    assert len(journal_ids(journal_path)) == committed
    # Every committed offset covers exactly the events in the journal, nothing more.
    for src in query(journal_path, "SELECT source_id, committed_offset FROM sources"):
        (row,) = query(
            journal_path,
            "SELECT count(*) AS n, max(source_offset) AS last FROM events WHERE source_id = ?",
            (src["source_id"],),
        )
        assert row["last"] is None or row["last"] < src["committed_offset"]
    s = ingest(journal_path, root)
    assert (s.new_events, s.duplicates, s.problems) == (total - committed, 0, [])
    assert sorted(journal_ids(journal_path)) == sorted(spooled_ids(root))


def test_should_stop_ends_the_pass_between_batches(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "spool"
    total = many_launches(root)
    with Journal.open(journal_path) as j:
        s1 = Ingester(j, roots=[str(root)], batch_size=50).run_pass(should_stop=lambda: True)
    # Stopped after the first batch, which is committed and counted; the rest waits.
    assert 50 <= s1.new_events < total
    assert len(journal_ids(journal_path)) == s1.new_events
    s2 = ingest(journal_path, root)
    assert (s2.new_events, s2.duplicates) == (total - s1.new_events, 0)
    assert sorted(journal_ids(journal_path)) == sorted(spooled_ids(root))


# -- robustness of reading ---------------------------------------------------------------------


def test_short_reads_give_the_same_journal(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    for lid in range(1, 4):
        run_launch(launch_dir(root, lid), lid, pings=20, exited=lid != 2)
    d = launch_dir(root, 2)
    extra = d / spool_file_name("f0" * 16)
    extra.write_bytes(
        framed("f0" * 16, 1, 2, Note(data=1)) + b"garbage\n" + framed("f0" * 16, 2, 2, Note(data=2))
    )
    results = {}
    for name, opener in (("plain", OsSourceFile), ("short", ShortReadSource)):
        jp = str(tmp_path / name / "j.sqlite3")
        s1 = ingest(jp, root, opener=opener)
        with open(extra, "ab") as f:
            f.write(framed("f0" * 16, 3, 2, Note(data=3)))
        s2 = ingest(jp, root, opener=opener)
        extra.write_bytes(extra.read_bytes()[: -len(framed("f0" * 16, 3, 2, Note(data=3)))])  # undo
        results[name] = (
            (s1.new_events, s1.quarantined, s1.problems, s2.new_events, s2.quarantined, s2.problems),
            query(jp, "SELECT event_id, payload, source_offset FROM events ORDER BY event_id"),
            query(jp, 'SELECT "offset", length, reason, bytes FROM quarantine'),
            query(jp, "SELECT path, committed_offset, fingerprint, status FROM sources ORDER BY path"),
        )
    assert results["short"] == results["plain"]
    assert results["plain"][0] == (3 * 24 - 1 + 2, 1, [], 1, 0, [])


def test_an_unreadable_file_does_not_stop_the_others(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "spool"
    bad_writer = run_launch(launch_dir(root, 1), 1, exited=False)
    run_launch(launch_dir(root, 2), 2)

    class FailingSource(OsSourceFile):
        fail_at = 0

        def pread(self, size: int, offset: int) -> bytes:
            # The fingerprint read works; reading the records fails (EIO, or ESTALE on NFS).
            if self.path == bad_writer.path and size > 64 and offset >= self.fail_at:
                raise OSError(5, "Input/output error")
            return super().pread(size, offset)

    s = ingest(journal_path, root, opener=FailingSource)
    assert s.new_events == 7
    assert any("cannot read" in p and bad_writer.path in p for p in s.problems)
    rows = query(journal_path, "SELECT path, status, committed_offset FROM sources ORDER BY path")
    assert {r["path"]: (r["status"], r["committed_offset"]) for r in rows}[bad_writer.path] == (
        "unreadable",
        0,
    )
    s2 = ingest(journal_path, root)
    assert s2.new_events == 6 and s2.problems == []
    assert len(journal_ids(journal_path)) == 13
    assert query(journal_path, "SELECT DISTINCT status FROM sources") == [{"status": "active"}]

    # An error after some records were read: those are kept with their offset, nothing is lost.
    with open(bad_writer.path, "ab") as f:
        f.write(framed(bad_writer.writer_id, 8, 1, Note(data=8)))
    FailingSource.fail_at = os.path.getsize(bad_writer.path)  # the read that would find EOF
    s3 = ingest(journal_path, root, opener=FailingSource)
    assert s3.new_events == 1 and any("cannot read" in p for p in s3.problems)
    (row,) = query(
        journal_path, "SELECT status, committed_offset FROM sources WHERE path = ?", (bad_writer.path,)
    )
    assert row == {"status": "unreadable", "committed_offset": os.path.getsize(bad_writer.path)}
    s4 = ingest(journal_path, root)
    assert (s4.new_events, s4.problems) == (0, [])


def test_a_fifo_under_a_spool_name_does_not_hang_ingest(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "spool"
    d = launch_dir(root, 1)
    run_launch(d, 1)
    os.mkfifo(d / spool_file_name("0f" * 16))
    out: list[IngestSummary] = []
    t = threading.Thread(target=lambda: out.append(ingest(journal_path, root)), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "ingest blocked opening a FIFO"
    (s,) = out
    assert s.new_events == 7 and any("not a regular file" in p for p in s.problems)


# -- FireWorks offline files -------------------------------------------------------------------

ISO = "2024-05-01T12:00:00.123456+00:00"


def offline_stages(launch_id: int, state: str = "COMPLETED") -> list[dict[str, Any]]:
    """FW_offline.json as FireWorks' offline rocket leaves it after each of its writes."""
    checkpoint = {"_task_n": 1, "_all_stored_data": {"a": 1}, "_all_update_spec": {}, "_all_mod_spec": []}
    stored = (
        {"x": 1}
        if state == "COMPLETED"
        else {
            "_message": "runtime error during task",
            "_task": {"_fw_name": "ScriptTask"},
            "_exception": {"_stacktrace": "Traceback ...", "_details": None},
        }
    )
    action = {
        "stored_data": stored,
        "exit": state != "COMPLETED",
        "update_spec": {},
        "mod_spec": [],
        "additions": [],
        "detours": [],
        "append_wfs": [],
        "defuse_children": False,
        "defuse_workflow": False,
        "propagate": False,
    }
    s1 = {"launch_id": launch_id}
    s2 = dict(s1, started_on=ISO)
    s3 = dict(s2, checkpoint=dict(checkpoint, _task_n=0))
    s4 = dict(s2, checkpoint=checkpoint)
    s5 = dict(s4, fwaction=action, state=state, completed_on="2024-05-01T13:00:00.5+00:00")
    return [s1, s2, s3, s4, s5]


def write_offline(d: Path, data: dict[str, Any] | bytes, gz: bool = False) -> None:
    raw = data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()
    if gz:
        (d / "FW_offline.json.gz").write_bytes(gzip.compress(raw))
    else:
        (d / "FW_offline.json").write_bytes(raw)


def events_of(journal_path: str, launch_id: int) -> list[dict[str, Any]]:
    return query(
        journal_path,
        "SELECT event_id, type, fw_id, occurred_at, payload FROM events WHERE launch_id = ? ORDER BY seq",
        (launch_id,),
    )


@pytest.mark.parametrize("gz", [False, True], ids=["json", "gz"])
def test_offline_job_each_stage_adds_only_its_new_facts(tmp_path: Path, journal_path: str, gz: bool) -> None:
    root = tmp_path / "launches"
    d = launch_dir(root, 31, fw_id=77)
    stages = offline_stages(31)
    write_offline(d, stages[0], gz)
    s = ingest(journal_path, root)
    assert (s.new_events, s.problems, s.torn_waiting) == (0, [], 0)
    (launch,) = query(journal_path, "SELECT * FROM launches")
    assert (launch["launch_id"], launch["fw_id"], launch["learned_from"], launch["terminal_at"]) == (
        31,
        77,
        "fw_offline",
        None,
    )
    assert launch["launch_dir"] == str(d)

    expected_new = [("started", 1), ("checkpoint", 1), ("checkpoint", 1), ("completed", 1)]
    for stage, (etype, n) in zip(stages[1:], expected_new, strict=True):
        # A reader may catch FireWorks between truncating the file and writing it: not yet.
        raw = json.dumps(stage).encode()
        if gz:
            (d / "FW_offline.json.gz").write_bytes(gzip.compress(raw)[:25])
        else:
            write_offline(d, raw[: len(raw) // 2])
        half = ingest(journal_path)  # no --root: the launch dir is known now
        assert (half.new_events, half.problems, half.torn_waiting) == (0, [], 1)
        write_offline(d, b"", gz)  # truncated, nothing written yet
        empty = ingest(journal_path)
        assert (empty.new_events, empty.problems, empty.torn_waiting) == (0, [], 1)

        write_offline(d, stage, gz)
        s = ingest(journal_path)
        assert (s.new_events, s.problems, s.quarantined) == (n, [], 0), etype
        assert events_of(journal_path, 31)[-1]["type"] == etype
        again = ingest(journal_path, root)
        assert (again.new_events, again.duplicates) == (0, 0)

    evs = events_of(journal_path, 31)
    assert [e["type"] for e in evs] == ["started", "checkpoint", "checkpoint", "completed"]
    # Every fact carries the fw_id from FW.json, not only the first one ingested.
    assert {e["fw_id"] for e in evs} == {77}
    started, _, cp1, completed = (json.loads(e["payload"]) for e in evs)
    assert started["started_on"] == "2024-05-01T12:00:00.123456Z"
    assert evs[0]["occurred_at"] == "2024-05-01T12:00:00.123456Z"
    assert cp1["checkpoint"]["_task_n"] == 1
    assert completed["state"] == "COMPLETED" and completed["action"] == stages[-1]["fwaction"]
    assert evs[-1]["occurred_at"] == "2024-05-01T13:00:00.500000Z"
    assert query(journal_path, "SELECT terminal_at IS NOT NULL AS t FROM launches") == [{"t": 1}]
    # The event ids are deterministic: another journal reading the final file agrees.
    other = str(tmp_path / "other" / "j.sqlite3")
    ingest(other, root)
    assert [e["event_id"] for e in events_of(other, 31)] == [evs[i]["event_id"] for i in (0, 2, 3)]


def test_offline_ping_file(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "launches"
    d = launch_dir(root, 32, fw_id=78)
    write_offline(d, offline_stages(32)[1])
    (d / "FW_ping.json").write_text('{"ping_time": "2024-05-01T12:30:00.000001+00:00"}')
    s = ingest(journal_path, root)
    assert s.new_events == 2
    before = query(journal_path, "SELECT * FROM sources")
    again = ingest(journal_path)
    assert (again.new_events, again.duplicates) == (0, 0)
    assert query(journal_path, "SELECT * FROM sources") == before  # same bytes: nothing written
    # The ping thread rewrites it in place: a torn ping is not an error, and is read later.
    (d / "FW_ping.json").write_text('{"ping_time": "2024-05-01T13:')
    torn = ingest(journal_path)
    assert (torn.new_events, torn.problems) == (0, [])
    (d / "FW_ping.json").write_text('{"ping_time": "2024-05-01T13:30:00+00:00"}')
    s2 = ingest(journal_path)
    assert (s2.new_events, s2.problems) == (1, [])
    pings = [e for e in events_of(journal_path, 32) if e["type"] == "ping"]
    assert [json.loads(e["payload"])["ping_time"] for e in pings] == [
        "2024-05-01T12:30:00.000001Z",
        "2024-05-01T13:30:00Z",
    ]
    assert [e["occurred_at"] for e in pings] == ["2024-05-01T12:30:00.000001Z", "2024-05-01T13:30:00.000000Z"]
    assert {e["fw_id"] for e in events_of(journal_path, 32)} == {78}


def test_offline_fizzled_job(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "launches"
    d = launch_dir(root, 33, fw_id=79)
    write_offline(d, offline_stages(33, state="FIZZLED")[-1])
    s = ingest(journal_path, root)
    assert (s.new_events, s.problems) == (3, [])
    completed = json.loads(events_of(journal_path, 33)[-1]["payload"])
    assert completed["state"] == "FIZZLED"
    assert completed["action"]["stored_data"]["_message"] == "runtime error during task"
    assert set(completed["action"]["stored_data"]["_exception"]) == {"_stacktrace", "_details"}


def test_offline_file_that_can_never_be_read_is_reported(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "launches"
    d = launch_dir(root, 34)
    write_offline(d, {"launch_id": "not a number"})
    s = ingest(journal_path, root)
    assert s.new_events == 0 and any("unreadable FireWorks offline file" in p for p in s.problems)
    assert query(journal_path, "SELECT status FROM sources") == [{"status": "unreadable"}]


def test_offline_job_that_also_uses_fwspool_emit(tmp_path: Path, journal_path: str) -> None:
    """An unmodified `rlaunch --offline` job whose script calls `fwspool emit note`: both are read."""
    root = tmp_path / "launches"
    d = launch_dir(root, 35, fw_id=80)
    stages = offline_stages(35)
    write_offline(d, stages[1])
    r = cli("emit", "--launch-dir", str(d), "note", "--data", '{"step": "relaxed"}')
    assert r.exit_code == 0, r.output
    s = ingest(journal_path, root)
    assert (s.new_events, s.problems) == (2, [])
    write_offline(d, stages[-1])
    s2 = ingest(journal_path)
    assert s2.new_events == 2  # checkpoint, completed
    assert sorted(e["type"] for e in events_of(journal_path, 35)) == [
        "checkpoint",
        "completed",
        "note",
        "started",
    ]
    assert {e["fw_id"] for e in events_of(journal_path, 35)} == {80}


def test_fw_offline_json_of_a_fwspool_rlaunch_job_is_not_read_again(
    tmp_path: Path, journal_path: str
) -> None:
    """`fwspool rlaunch` leaves FW_offline.json as `qlaunch -r` wrote it: an idle pass skips it."""
    root = tmp_path / "launches"
    d = launch_dir(root, 37, fw_id=81)
    write_offline(d, {"launch_id": 37})
    run_launch(d, 37, 81, exited=False)
    s = ingest(journal_path, root)
    assert (s.files, s.new_events, s.problems) == (2, 6, [])
    for roots in ((), (root,)):
        idle = ingest(journal_path, *roots)
        assert (idle.files, idle.new_events, idle.problems) == (1, 0, [])


def test_offline_facts_do_not_depend_on_the_ingest_clock(tmp_path: Path) -> None:
    root = tmp_path / "launches"
    d = launch_dir(root, 36)
    write_offline(d, offline_stages(36)[-1])
    ids = []
    for i, clock in enumerate((lambda: T0, lambda: T0 + dt.timedelta(days=3))):
        jp = str(tmp_path / f"j{i}" / "j.sqlite3")
        ingest(jp, root, clock=clock)
        ids.append([(e["event_id"], e["payload"]) for e in events_of(jp, 36)])
    assert ids[0] == ids[1]


# -- finished launches -------------------------------------------------------------------------


def test_exited_launches_are_no_longer_scanned_but_new_writer_files_are_found_by_root(
    tmp_path: Path, journal_path: str
) -> None:
    root = tmp_path / "spool"
    d1, d2 = launch_dir(root, 1), launch_dir(root, 2)
    w1 = run_launch(d1, 1)
    run_launch(d2, 2, exited=False)
    assert ingest(journal_path, root).new_events == 7 + 6
    with Journal.open(journal_path) as j:
        dirs, _known = j.scan_targets()
    assert dirs == [(2, str(d2))]

    # Growth after `exited` in a finished launch's file is not looked at any more...
    with open(w1.path, "ab") as f:
        f.write(framed(w1.writer_id, 99, 1, Note(data="late")))
    # ...but a later writer in the same dir is noticed by a --root scan (only).
    r = cli("emit", "--launch-dir", str(d1), "--launch-id", "1", "note", "--data", '{"after": "exit"}')
    assert r.exit_code == 0, r.output
    assert ingest(journal_path).new_events == 0
    s = ingest(journal_path, root)
    assert s.new_events == 1
    notes = query(
        journal_path, "SELECT json_extract(payload, '$.data.after') AS a FROM events WHERE type = 'note'"
    )
    assert notes == [{"a": "exit"}]


def test_a_torn_file_of_a_finished_launch_is_still_completed(tmp_path: Path, journal_path: str) -> None:
    """`fwspool rlaunch` records a signal's `exited` in a file of its own; the runner's file may
    still be torn at that moment (its last bytes not on the server yet)."""
    root = tmp_path / "spool"
    d = launch_dir(root, 3)
    main_w, exit_w = "a1" * 16, "b2" * 16
    recs = [framed(main_w, i, 3, Ping(ping_time=T0)) for i in (1, 2, 3)]
    (d / spool_file_name(main_w)).write_bytes(recs[0] + recs[1] + recs[2][:20])
    (d / spool_file_name(exit_w)).write_bytes(framed(exit_w, 1, 3, Exited(signal=15, signal_name="SIGTERM")))
    s = ingest(journal_path, root)
    assert (s.new_events, s.torn_waiting) == (3, 1)
    assert query(journal_path, "SELECT terminal_at IS NOT NULL AS t FROM launches") == [{"t": 1}]
    with open(d / spool_file_name(main_w), "ab") as f:
        f.write(recs[2][20:])
    s2 = ingest(journal_path)  # no --root, the launch is finished: the torn file is still watched
    assert (s2.new_events, s2.torn_waiting) == (1, 0)
    assert ingest(journal_path).files == 0  # and then it is settled


# -- two ingesters -----------------------------------------------------------------------------


def test_second_ingester_exits_with_tempfail_when_the_lock_is_held(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "spool"
    run_launch(launch_dir(root, 1), 1)
    with Journal.open(journal_path) as j, j.lock("ingest"):
        r = cli("ingest", "--journal", journal_path, "--root", str(root))
        assert r.exit_code == EX_TEMPFAIL == 75
        assert unstamped(r.stderr).startswith(
            f"fwspool: another fwspool ingest (pid {os.getpid()}) is using journal"
        )
        assert "Traceback" not in r.output
        with pytest.raises(JournalBusy), Journal.open(journal_path) as j2, j2.lock("ingest"):
            pass
        # A real second process says the same.
        p = subprocess.run(
            [sys.executable, "-m", "fwspool.cli", "ingest", "--journal", journal_path, "--root", str(root)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 75 and "another fwspool ingest" in p.stderr, p.stderr
        assert query(journal_path, "SELECT count(*) AS n FROM events") == [{"n": 0}]
    r = cli("ingest", "--journal", journal_path, "--root", str(root))
    assert r.exit_code == 0 and "7 new events" in r.stdout


def test_lock_wait_waits_for_the_other_ingester(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "spool"
    run_launch(launch_dir(root, 1), 1)
    j = Journal.open(journal_path)
    held = j.lock("ingest")
    held.__enter__()
    before_release: list[int] = []

    def release() -> None:
        before_release.append(query(journal_path, "SELECT count(*) AS n FROM events")[0]["n"])
        held.__exit__(None, None, None)

    threading.Timer(0.5, release).start()
    started = time.monotonic()
    try:
        r = cli("ingest", "--journal", journal_path, "--root", str(root), "--lock-wait", "10")
    finally:
        j.close()
    waited = time.monotonic() - started
    assert r.exit_code == 0 and "7 new events" in r.stdout
    # It waited for the lock: nothing ingested while it was held, done only after its release.
    assert before_release == [0] and waited >= 0.5, (before_release, waited)


# -- signals -----------------------------------------------------------------------------------


def count_events(journal_path: str) -> int:
    if not os.path.exists(journal_path):
        return 0
    try:
        return query(journal_path, "SELECT count(*) AS n FROM events")[0]["n"]
    except Exception:
        return 0


def test_watch_stops_cleanly_on_sigterm(tmp_path: Path, journal_path: str) -> None:
    root = tmp_path / "spool"
    run_launch(launch_dir(root, 1), 1)
    proc = subprocess.Popen(
        fwspool_cmd("ingest", "--journal", journal_path, "--root", str(root), "--watch", "--interval", "0.2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: count_events(journal_path) == 7)
        # It keeps watching: a new launch appears in the journal without a restart.
        run_launch(launch_dir(root, 2), 2)
        wait_for(lambda: count_events(journal_path) == 14)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert unstamped(out).strip().splitlines()[-1].startswith("ingest: ")
    assert " 14 new events, 0 duplicates skipped, 0 quarantined, 0 torn tails waiting" in out
    assert "Traceback" not in err


def test_kill_9_at_any_moment_leaves_each_event_exactly_once(tmp_path: Path, journal_path: str) -> None:
    rng = random.Random(20240501)
    root = tmp_path / "spool"
    launches = 250
    writers: list[SpoolWriter] = []
    for lid in range(1, launches + 1):
        w = SpoolWriter(str(launch_dir(root, lid)), lid, 1000 + lid)
        w.append(Started(started_on=T0, host="n", ip="1.2.3.4"), durable=False)
        writers.append(w)

    def grow(n: int) -> None:
        for _ in range(n):
            rng.choice(writers).append(Ping(ping_time=T0 + dt.timedelta(seconds=rng.random())), durable=False)

    # Enough events per pass that ingest (well over 100,000 events/s) is still running, past its
    # start-up, when most kills land.
    grow(100_000)
    killed = 0
    try:
        for trial in range(15):
            proc = subprocess.Popen(
                fwspool_cmd("ingest", "--journal", journal_path, "--root", str(root)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            # Within a typical pass: a slower or faster machine must not make the kills miss it.
            time.sleep(rng.uniform(0.15, 0.9) if trial else 0.6)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
            _, err = proc.communicate(timeout=60)
            assert b"Traceback" not in err, err.decode()
            # The compute nodes go on meanwhile: new events, and some new writers.
            grow(rng.randint(10_000, 40_000))
            if trial % 4 == 1:
                w = SpoolWriter(writers[trial].path.rsplit("/", 1)[0], writers[trial].launch_id)
                w.append(Note(data=trial), durable=False)
                writers.append(w)
    finally:
        for w in writers:
            w.close()
    assert killed >= 8, f"the kills should mostly land while ingest runs ({killed} of 15)"
    final = subprocess.run(
        fwspool_cmd("ingest", "--journal", journal_path, "--root", str(root)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert final.returncode == 0, final.stderr

    written = spooled_ids(root)
    rows = query(journal_path, "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events")[0]
    in_journal = journal_ids(journal_path)
    assert rows["n"] == rows["d"] == len(written)
    assert set(in_journal) == written
    assert query(journal_path, "SELECT count(*) AS n FROM quarantine") == [{"n": 0}]
    assert query(journal_path, "PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    for src in query(journal_path, "SELECT path, committed_offset, status FROM sources"):
        assert (src["committed_offset"], src["status"]) == (os.path.getsize(src["path"]), "active")


# -- fwspool emit --------------------------------------------------------------------------------


def read_records(d: Path) -> list[Record]:
    out = []
    for path in sorted(d.glob("fwspool-*.spool")):
        out += [_record_decoder.decode(f.payload) for f in scan(path.read_bytes(), at_eof=True).frames]
    return out


def test_emit_takes_fw_id_from_fw_json(tmp_path: Path) -> None:
    d = launch_dir(tmp_path, 41, fw_id=123)
    write_offline(d, {"launch_id": 41})
    r = cli("emit", "--launch-dir", str(d), "note", "--data", '{"k": 1}')
    assert r.exit_code == 0, r.output
    (rec,) = read_records(d)
    assert (rec.launch_id, rec.fw_id, rec.event) == (41, 123, Note(data={"k": 1}))
    # --fw-id wins over FW.json.
    for f in d.glob("fwspool-*.spool"):
        f.unlink()
    r = cli("emit", "--launch-dir", str(d), "--fw-id", "5", "ping")
    assert r.exit_code == 0, r.output
    (rec,) = read_records(d)
    assert rec.fw_id == 5 and isinstance(rec.event, Ping)


def test_emit_without_fw_json_has_no_fw_id(tmp_path: Path) -> None:
    d = launch_dir(tmp_path, 42)
    r = cli("emit", "--launch-dir", str(d), "--launch-id", "42", "note")
    assert r.exit_code == 0, r.output
    (rec,) = read_records(d)
    assert (rec.launch_id, rec.fw_id) == (42, None)
    # A FW.json that cannot be read is no reason to lose the event either.
    (d / "FW.json").write_text('{"fw_id": ')
    r = cli("emit", "--launch-dir", str(d), "--launch-id", "42", "note")
    assert r.exit_code == 0, r.output
    assert sorted(r.fw_id is None for r in read_records(d)) == [True, True]


def test_offline_writer_ids_are_valid_spool_writer_ids() -> None:
    wid = offline.offline_writer_id(12)
    assert len(wid) == 32 and wid == wid.lower() and wid == offline.offline_writer_id(12)
    assert wid != offline.offline_writer_id(13)


def test_an_idle_pass_opens_no_unchanged_file_and_finds_a_second_run_within_ten_passes(
    journal_path, tmp_path
):
    """Between the passes that list every directory (the first, then every 10th), a known spool
    file whose (dev, ino) and size are as its row left it is not opened; one that grew, or was
    replaced by another file of the same size, is read; a second run's file in a launch
    directory the journal already reads is found by the next full pass; final launches cost
    nothing."""
    from fwspool.ingest.ingester import FULL_PASS_EVERY

    root = tmp_path / "runs"
    opened: list[str] = []

    def counting(path: str) -> OsSourceFile:
        opened.append(os.path.basename(os.path.dirname(path)))
        return OsSourceFile(path)

    done = launch_dir(root, 1)
    run_launch(done, 1)  # final
    running = launch_dir(root, 2)
    with SpoolWriter(str(running), 2, None, clock=lambda: T0) as w:
        w.append(Started(started_on=T0, host="nid001", ip="10.0.0.1"))
    with Journal.open(journal_path) as journal:
        ingester = Ingester(journal, roots=[], opener=counting, inbox_dir=None)
        # The journal learns the launches from a first pass over the root.
        Ingester(journal, roots=[str(root)]).run_pass()
        ingester.run_pass()  # a full pass: lists and opens the running launch's file
        opened.clear()
        for _ in range(3):
            assert ingester.run_pass().new_events == 0
        assert opened == []  # unchanged: one lstat each, never opened; the final launch not at all
        with SpoolWriter(str(running), 2, None, clock=lambda: T0) as w2:  # a requeued run's file
            w2.append(Started(started_on=T0, host="nid002", ip="10.0.0.2"))
        first = os.path.join(running, spool_file_name(w.writer_id))
        with open(first, "ab") as f:  # the first run grew too
            f.write(framed(w.writer_id, 2, 2, Ping(ping_time=T0)))
        assert ingester.run_pass().new_events == 1  # the grown file, not yet the new one
        new = 0
        for _ in range(FULL_PASS_EVERY):
            new += ingester.run_pass().new_events
        assert new == 1  # the second run's file, by the next full pass
        # Replaced (renamed over) by another file of the same size: (dev, ino) differ, so it is
        # read again. (One that reused the inode is looked into by the next full pass.)
        Path(first + ".new").write_bytes(Path(first).read_bytes())
        os.replace(first + ".new", first)
        opened.clear()
        ingester.run_pass()
        assert opened == [running.name]
        assert query(journal_path, "SELECT count(*) AS n FROM events WHERE launch_id = 2")[0]["n"] == 3


# -- regressions the fault-injection suite found (tools/chaos.py) ----------------------------


def test_a_directory_whose_name_is_not_utf8_is_named_and_the_rest_ingested(tmp_path: Path) -> None:
    """It used to fail the whole pass (UnicodeEncodeError storing the path), every pass: nothing
    at all was ingested any more."""
    root = tmp_path / "spool"
    good = root / "good"
    good.mkdir(parents=True)
    bad = os.fsdecode(os.path.join(os.fsencode(root), b"bad-\xff-dir"))
    os.mkdir(bad)
    for d, lid in ((str(good), 1), (bad, 2)):
        with SpoolWriter(d, lid, lid, clock=lambda: T0) as w:
            w.append(Started(started_on=T0, host="h", ip="1.2.3.4"))
            w.append(Exited(returncode=0))
    with Journal.open(str(tmp_path / "j.sqlite3")) as journal:
        for _ in range(2):
            s = Ingester(journal, roots=[str(root)]).run_pass()
            assert [p for p in s.problems if "not valid UTF-8" in p and "bad-\\xff-dir" in p], s.problems
        assert journal.query("SELECT DISTINCT launch_id FROM events") == [{"launch_id": 1}]


def test_records_of_a_second_file_claiming_a_writer_id_are_quarantined_not_dropped(tmp_path: Path) -> None:
    """They used to be counted as duplicates and silently dropped (same event ids)."""
    root = tmp_path / "spool"
    wid = "ab" * 16
    files = []
    for name, lid in (("a", 1), ("b", 2)):
        d = root / name
        d.mkdir(parents=True)
        with SpoolWriter(str(d), lid, lid, writer_id=wid, clock=lambda: T0) as w:
            w.append(Started(started_on=T0, host=name, ip="1.2.3.4"))
            w.append(Exited(returncode=lid))
        files.append(w.path)
    copy = root / "c-copy"
    copy.mkdir()
    (copy / os.path.basename(files[0])).write_bytes(Path(files[0]).read_bytes())  # an exact copy
    with Journal.open(str(tmp_path / "j.sqlite3")) as journal:
        s = Ingester(journal, roots=[str(root)]).run_pass()
        assert (s.new_events, s.duplicates, s.quarantined) == (2, 2, 2)
        assert [p for p in s.problems if "2 records of " + files[1] in p and files[0] in p], s.problems
        q = journal.query('SELECT path, "offset", length, reason, bytes FROM quarantine ORDER BY "offset"')
        data = Path(files[1]).read_bytes()
        assert [(r["path"], r["bytes"]) for r in q] == [
            (files[1], data[r["offset"] : r["offset"] + r["length"]]) for r in q
        ]
        assert all("two writers claim writer id " + wid in r["reason"] for r in q)
        # Read again: nothing new, nothing quarantined twice.
        s = Ingester(journal, roots=[str(root)]).run_pass()
        assert (s.new_events, s.quarantined) == (0, 0)


def test_the_summary_of_a_first_ingest_is_the_events_own(tmp_path: Path, journal_path: str) -> None:
    """A batch whose every row is new adds them to launch_summary from the rows in hand (no read
    back); one with a record read twice reads its new rows back. Both leave the summary as the
    events say, launches split across batches included."""
    from fwspool.journal.summary import differences

    root = tmp_path / "spool"
    for launch_id in range(1, 6):
        run_launch(launch_dir(root, launch_id, fw_id=launch_id), launch_id, fw_id=launch_id, pings=4)
    ran: list[str] = []
    with Journal.open(journal_path) as journal:
        journal.db.set_trace_callback(ran.append)
        s = Ingester(journal, roots=[str(root)], batch_size=4).run_pass()
        journal.db.set_trace_callback(None)
        assert (s.new_events, s.duplicates) == (5 * 8, 0)
        assert not [sql for sql in ran if "NOT INDEXED" in sql]  # nothing read back
        assert differences(journal.db) == []
    writer = "66" * 16
    twice = [framed(writer, 1, 6, Started(started_on=T0, host="h", ip="1.2.3.4"), fw_id=6)]
    twice += [framed(writer, 2, 6, Ping(ping_time=T0), fw_id=6)] * 2
    (launch_dir(root, 6) / spool_file_name(writer)).write_bytes(b"".join(twice))
    with Journal.open(journal_path) as journal:
        journal.db.set_trace_callback(ran.append)
        s = Ingester(journal, roots=[str(root)]).run_pass()
        journal.db.set_trace_callback(None)
        assert (s.new_events, s.duplicates) == (2, 1)
        assert [sql for sql in ran if "NOT INDEXED" in sql]  # the new rows read back
        assert differences(journal.db) == []
