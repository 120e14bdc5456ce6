"""The formats written down in schema/ are the ones the code produces."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

import msgspec
import pytest

from fwspool import events
from fwspool.journal import SCHEMA_VERSION, Journal, schema_sql
from fwspool.spool import HEADER_LEN, MAGIC, SpoolWriter
from fwspool.testing import journal_file

SCHEMA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schema")
DATA = Path(__file__).resolve().parent / "data"


def read(name: str) -> str:
    with open(os.path.join(SCHEMA, name), encoding="utf-8") as f:
        return f.read()


def test_event_schema_file_is_generated_from_the_code():
    assert read("event.schema.json") == events.json_schema_text(), (
        "schema/event.schema.json is stale: python -m fwspool.events > schema/event.schema.json"
    )


def test_journal_sql_file_is_generated_from_the_code():
    assert read("journal.sql") == schema_sql(), (
        "schema/journal.sql is stale: python -c 'from fwspool.journal import schema_sql; "
        'print(schema_sql(), end="")\' > schema/journal.sql'
    )


def _shape(conn: sqlite3.Connection) -> dict[str, object]:
    shape: dict[str, object] = {}
    for name, kind in conn.execute("SELECT name, type FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"):
        if kind in ("table", "view"):
            shape[name] = (kind, [tuple(r) for r in conn.execute(f'PRAGMA table_info("{name}")')])
        else:
            shape[name] = (kind,)
    return shape


def test_journal_sql_builds_the_same_database_as_the_code(journal_path):
    Journal.open(journal_path).close()
    from_code = sqlite3.connect(journal_path)
    from_file = sqlite3.connect(":memory:")
    from_file.executescript(read("journal.sql"))
    assert _shape(from_file) == _shape(from_code)


def _ddl(path: Path) -> list[tuple[str, str, str]]:
    """Every object's DDL up to layout (ALTER TABLE ... RENAME quotes the new name)."""
    with sqlite3.connect(path) as c:
        rows = c.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ).fetchall()
    return sorted(
        (t, n, " ".join((sql or "").replace('"launches"', "launches").split())) for t, n, sql in rows
    )


def test_a_version_2_journal_is_upgraded_in_place_keeping_every_row(tmp_path):
    """Version 3 adds what the last push left to ``launches`` (tests/data/journal-v2.sql is the
    schema of version 2 as it was released); the upgrade from version 1 is in test_batch.py."""
    path = tmp_path / "v2.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript((DATA / "journal-v2.sql").read_text())
        db.execute(
            "INSERT INTO launches (launch_id, fw_id, launch_dir, learned_from, first_seen_at, batch_job_id, "
            "batch_system, terminal_at) VALUES (7, 3, '/runs/a', 'inbox', '2026-01-01T00:00:00Z', '812', 'slurm', 't')"
        )
        db.execute(
            "INSERT INTO sources (path, kind, launch_id, first_seen_at, updated_at) "
            "VALUES ('/runs/a/x.spool', 'spool', 7, 'now', 'now')"
        )
        db.execute(
            "INSERT INTO events (event_id, writer_id, seq, launch_id, fw_id, type, occurred_at, payload, "
            "source_id, ingested_at, pushed_at, push_outcome) "
            "VALUES ('w-0000000001', 'w', 1, 7, 3, 'started', 't', '{}', 1, 'now', 'then', 'applied')"
        )
        db.execute(
            "INSERT INTO forget_requests (kind, value, forget, requested_at) VALUES ('fw_id', 3, 1, 'x')"
        )
        db.execute("INSERT INTO meta (key, value) VALUES ('last_successful_push', 'then')")
        db.execute("PRAGMA user_version = 2")
    with Journal.open(str(path)) as journal:
        assert journal.query("PRAGMA user_version")[0]["user_version"] == SCHEMA_VERSION == 6
        assert journal.query(
            "SELECT launch_id, fw_id, launch_dir, learned_from, batch_job_id, batch_system, terminal_at, "
            "fw_name, pushed_state, outcome FROM launches"
        ) == [
            {
                "launch_id": 7,
                "fw_id": 3,
                "launch_dir": "/runs/a",
                "learned_from": "inbox",
                "batch_job_id": "812",
                "batch_system": "slurm",
                "terminal_at": "t",
                "fw_name": None,
                "pushed_state": None,
                "outcome": None,
            }
        ]
        assert journal.query("SELECT launch_id, pending, pushed, outcome FROM launch_status") == [
            {"launch_id": 7, "pending": 0, "pushed": 1, "outcome": None}
        ]
        assert journal.count_events() == 1 and journal.get_meta("last_successful_push") == "then"
        assert journal.query("PRAGMA foreign_key_check") == []
    Journal.open(str(path)).close()  # opened again: nothing to do
    fresh = tmp_path / "fresh.sqlite3"
    Journal.open(str(fresh)).close()
    assert _ddl(path) == _ddl(fresh)


def test_a_version_3_journal_is_upgraded_in_place_keeping_every_row_and_both_directories(tmp_path):
    """Version 4 knows a launch's identity (fwspool.identity): three columns of ``launches`` and
    one more value in three CHECKs, changed in place (tests/data/journal-v3.sql is version 3 as
    released). A journal that already merged two directories under one launch id keeps both
    sets of events: nothing ingested is dropped."""
    path = tmp_path / "v3.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript((DATA / "journal-v3.sql").read_text())
        db.execute(
            "INSERT INTO launches (launch_id, fw_id, launch_dir, learned_from, first_seen_at, outcome) "
            "VALUES (1, 1, '/lpA/l/1', 'inbox', '2026-01-01T00:00:00Z', 'running')"
        )
        for sid, where in ((1, "/lpA/l/1"), (2, "/lpB/launcher_x")):
            db.execute(
                "INSERT INTO sources (source_id, path, kind, launch_id, first_seen_at, updated_at) "
                f"VALUES ({sid}, '{where}/fwspool-{sid:032x}.spool', 'spool', 1, 'now', 'now')"
            )
            for seq in (1, 2):
                db.execute(
                    "INSERT INTO events (event_id, writer_id, seq, launch_id, fw_id, type, occurred_at, payload, "
                    "source_id, ingested_at) VALUES (?, ?, ?, 1, 1, 'ping', 't', '{}', ?, 'now')",
                    (f"{sid:032x}-{seq:010d}", f"{sid:032x}", seq, sid),
                )
        db.execute("PRAGMA user_version = 3")
    with Journal.open(str(path)) as journal:
        assert journal.query("PRAGMA user_version")[0]["user_version"] == SCHEMA_VERSION == 6
        assert journal.count_events("pushed_at IS NULL") == 4
        assert journal.query(
            "SELECT launch_id, confirmed_at, held, history_at, pending FROM launch_status"
        ) == [{"launch_id": 1, "confirmed_at": None, "held": None, "history_at": None, "pending": 4}]
        # The wider CHECKs take the new values, and still refuse others.
        journal.db.execute("UPDATE sources SET status = 'stray' WHERE source_id = 2")
        journal.db.execute("UPDATE events SET push_outcome = 'stray' WHERE source_id = 2")
        with pytest.raises(sqlite3.IntegrityError):
            journal.db.execute("UPDATE sources SET status = 'lost' WHERE source_id = 1")
        assert journal.query("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    fresh = tmp_path / "fresh.sqlite3"
    Journal.open(str(fresh)).close()
    assert _ddl(path) == _ddl(fresh)


def test_every_event_type_is_documented_in_spool_md():
    doc = read("SPOOL.md")
    for tag in events.EVENT_TYPES:
        assert f"| `{tag}` |" in doc, tag


def test_every_field_of_a_job_end_is_documented_in_docs_network_md():
    """docs/network.md's table of ``batch_end`` names every field of :class:`fwspool.events.JobEnd`."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "network.md").read_text()
    section = doc.split("## Why a job died", 1)[1]
    rows = set(re.findall(r"^\| `([a-z_]+)`(?:, `([a-z_]+)`)? \|", section, re.M))
    documented = {name for row in rows for name in row if name}
    assert documented == set(events.JobEnd.__struct_fields__)


def test_spool_md_header_layout_matches_the_code(tmp_path):
    doc = read("SPOOL.md")
    assert f"{MAGIC.decode().strip()} <length> <crc> <payload>" in doc
    assert HEADER_LEN == 23 and "cut -c24-" in doc
    with SpoolWriter(str(tmp_path), launch_id=3, fw_id=4) as w:
        w.append(events.Ping(ping_time=events.utcnow()))
    line = open(w.path, "rb").read()
    m = re.fullmatch(rb"FWS1 ([0-9a-f]{8}) ([0-9a-f]{8}) (.*)\n", line, re.S)
    assert m is not None
    payload = m.group(3)
    assert int(m.group(1), 16) == len(payload)
    record = msgspec.json.decode(payload, type=events.Record)
    assert record.seq == 1 and record.launch_id == 3 and record.fw_id == 4


def test_spool_records_validate_against_the_json_schema(tmp_path):
    """Each record's payload satisfies schema/event.schema.json (checked with a small validator
    for the parts the schema uses: required fields and event type tags)."""
    schema = json.loads(read("event.schema.json"))
    record_def = schema["$defs"]["Record"]
    tags = set()
    for ref in schema["$defs"]["Record"]["properties"]["event"]["anyOf"]:
        name = ref["$ref"].split("/")[-1]
        tags.add(schema["$defs"][name]["properties"]["type"]["enum"][0])
    assert tags == set(events.EVENT_TYPES)
    with SpoolWriter(str(tmp_path), launch_id=1) as w:
        w.append(events.Started(started_on=events.utcnow(), host="n1", ip="10.0.0.1"))
        w.append(events.Completed(state="FIZZLED", action={"stored_data": {}}, completed_on=events.utcnow()))
        w.append(events.Exited(signal=15, signal_name="SIGTERM"))
    for line in open(w.path, "rb"):
        payload = json.loads(line[HEADER_LEN:])
        assert set(record_def["required"]) <= set(payload)
        assert payload["event"]["type"] in tags


def _table_fields(doc: str, heading: str) -> set[str]:
    """The first column of the first table after ``heading``."""
    part = doc.split(heading, 1)[1]
    rows = []
    for line in part.split("\n| field |", 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1].strip().strip("`"))
    return set(rows)


def test_block_md_documents_the_manifest_fields_of_the_code():
    from fwspool.block import BlockLaunch, BlockManifest

    doc = read("BLOCK.md")
    assert _table_fields(doc, "## Fields") == set(BlockManifest.__struct_fields__)
    assert _table_fields(doc, "Each element of `launches`") == set(BlockLaunch.__struct_fields__)
    assert "`fwspool-block.json`" in doc and "version 1" in doc


def _summary_from_events(db: sqlite3.Connection) -> list[tuple[object, ...]]:
    """launch_summary as the events themselves give it (what the journal must keep); set-aside
    events (another LaunchPad's) are never a launch's last anything."""
    rows = db.execute(
        """SELECT launch_id, count(*), sum(pushed_at IS NULL), sum(push_outcome IS 'applied'),
                  sum(push_outcome IS 'superseded'), sum(push_outcome IS 'skipped'),
                  sum(push_outcome IS 'stray'), min(CASE WHEN pushed_at IS NULL THEN ingested_at END),
                  (SELECT type FROM events AS x WHERE x.launch_id = e.launch_id
                   AND push_outcome IS NOT 'stray' ORDER BY occurred_at DESC, event_id DESC LIMIT 1),
                  (SELECT max(occurred_at) FROM events AS x WHERE x.launch_id = e.launch_id
                   AND push_outcome IS NOT 'stray'),
                  (SELECT type FROM events AS x WHERE x.launch_id = e.launch_id AND push_outcome IS NOT 'stray'
                   AND type IN ('started', 'exited', 'completed', 'lost', 'released')
                   ORDER BY occurred_at DESC, event_id DESC LIMIT 1),
                  (SELECT json_extract(payload, '$.state') FROM events AS x WHERE x.launch_id = e.launch_id
                   AND push_outcome IS NOT 'stray' AND type = 'completed'
                   ORDER BY occurred_at DESC, event_id DESC LIMIT 1)
           FROM events AS e GROUP BY launch_id ORDER BY launch_id"""
    ).fetchall()
    return [tuple(r) for r in rows]


def _summary_kept(db: sqlite3.Connection) -> list[tuple[object, ...]]:
    rows = db.execute(
        """SELECT launch_id, events, pending, pushed, superseded, skipped, stray, oldest_pending_at,
                  last_event, last_event_at, last_run, completed_state
           FROM launch_summary WHERE events > 0 ORDER BY launch_id"""
    ).fetchall()
    return [tuple(r) for r in rows]


def _insert_events(db: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    db.executemany(
        "INSERT INTO events (event_id, writer_id, seq, launch_id, type, occurred_at, payload, ingested_at) "
        "VALUES (?, 'w', ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        rows,
    )


_SUMMED_COLUMNS = ("event_id", "seq", "launch_id", "type", "occurred_at", "payload", "ingested_at")


def test_launch_summary_is_kept_in_the_transactions_that_insert_mark_and_delete_events(journal_path):
    """What status reads instead of events (launch_summary) is the events' own summary after any
    mix of inserts (duplicates, clocks out of order, equal times; read back or summed from the
    rows in hand), push marks (an event marked
    twice), deletes (the last event included), and a transaction rolled back halfway (a kill)."""
    import random

    from fwspool.journal.summary import (
        add_inserted,
        add_rows,
        differences,
        events_high_water,
        mark_events,
        summarize,
    )

    rng = random.Random(23)
    Journal.open(journal_path).close()
    db = sqlite3.connect(journal_path, isolation_level=None)
    types = ["started", "ping", "checkpoint", "completed", "exited", "lost", "released", "ping"]
    seq = 0
    for round_ in range(30):
        rows = []
        for _ in range(rng.randint(1, 40)):
            seq += 1
            t = rng.choice(types)
            payload = (
                json.dumps({"state": rng.choice(["COMPLETED", "FIZZLED"])}) if t == "completed" else "{}"
            )
            rows.append(
                (
                    f"w-{seq:05d}",
                    seq,
                    rng.randint(1, 5),
                    t,
                    f"t{rng.randint(0, 9)}",
                    payload,
                    f"i{round_:02d}",
                )
            )
        db.execute("BEGIN IMMEDIATE")
        if round_ % 2:
            # Every row new (a first ingest's batch): summed from the rows in hand.
            before = db.total_changes
            _insert_events(db, rows)
            assert db.total_changes - before == len(rows)
            add_rows(db, _SUMMED_COLUMNS, rows)
        else:
            rows.append(rows[0])  # read twice: one row
            high_water = events_high_water(db)
            _insert_events(db, rows)
            add_inserted(db, high_water)
        ids = [r[0] for r in db.execute("SELECT event_id FROM events WHERE pushed_at IS NULL")]
        marks = [
            ("p", rng.choice(["applied", "superseded", "skipped", "stray"]), None, eid)
            for eid in rng.sample(ids, len(ids) // 3)
        ]
        mark_events(db, marks + marks[:2])
        if round_ % 4 == 3:
            gone = [
                r[0] for r in db.execute("SELECT DISTINCT launch_id FROM events ORDER BY random() LIMIT 2")
            ]
            db.execute(
                f"DELETE FROM events WHERE launch_id IN ({','.join(map(str, gone))}) AND type = 'ping'"
            )
            summarize(db, gone)
        if round_ % 5 == 4:
            db.execute("ROLLBACK")  # killed before the commit: events and summary both as before
        else:
            db.execute("COMMIT")
        assert _summary_kept(db) == _summary_from_events(db)
        assert differences(db) == []
    db.close()


def test_a_push_mark_takes_an_events_first_mark_and_counts_each_event_once(journal_path):
    """mark_events marks in a few statements, not one per event: an event named twice (with
    another outcome too) takes its first mark, an event marked before stays as it was, and the
    count and the summary say what really moved out of pending."""
    from fwspool.journal.summary import add_inserted, differences, events_high_water, mark_events

    Journal.open(journal_path).close()
    db = sqlite3.connect(journal_path, isolation_level=None)
    rows = [(f"w-{i:04d}", i, 1 + i % 3, "ping", f"t{i:04d}", "{}", "i") for i in range(1, 1201)]
    db.execute("BEGIN IMMEDIATE")
    high_water = events_high_water(db)
    _insert_events(db, rows)
    add_inserted(db, high_water)
    assert mark_events(db, [("p0", "skipped", None, "w-0001")]) == 1
    marks = [("p1", "applied", None, f"w-{i:04d}") for i in range(1, 1101)]  # over 500: chunks
    marks += [("p1", "superseded", "later", "w-0002"), ("p1", "applied", None, "w-0003")]
    marks.insert(0, ("p1", "superseded", "first", "w-0004"))
    assert mark_events(db, marks) == 1099
    db.execute("COMMIT")
    got = dict(
        db.execute("SELECT event_id, push_outcome || '@' || pushed_at FROM events WHERE event_id <= 'w-0004'")
    )
    assert got == {
        "w-0001": "skipped@p0",
        "w-0002": "applied@p1",
        "w-0003": "applied@p1",
        "w-0004": "superseded@p1",
    }
    assert db.execute(
        "SELECT sum(pending), sum(pushed), sum(superseded), sum(skipped) FROM launch_summary"
    ).fetchone() == (100, 1098, 1, 1)
    assert differences(db) == []
    db.close()


def test_a_version_4_journal_is_upgraded_in_place_with_its_launch_summary(tmp_path):
    """Version 5 adds launch_summary (what status reads instead of events) and its triggers,
    filled from the events already there (tests/data/journal-v4.sql is version 4 as on main)."""
    path = tmp_path / "v4.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript((DATA / "journal-v4.sql").read_text())
        db.execute(
            "INSERT INTO launches (launch_id, fw_id, launch_dir, learned_from, first_seen_at) "
            "VALUES (1, 1, '/l/1', 'spool', '2026-01-01T00:00:00Z'), (2, 2, '/l/2', 'spool', '2026-01-01T00:00:00Z')"
        )
        _insert_events(
            db,
            [
                ("w-1", 1, 1, "started", "t1", "{}", "i1"),
                ("w-2", 2, 1, "ping", "t2", "{}", "i1"),
                ("w-3", 3, 1, "completed", "t3", '{"state": "FIZZLED"}', "i2"),
                ("w-4", 4, 2, "started", "t1", "{}", "i3"),
            ],
        )
        db.execute(
            "UPDATE events SET pushed_at = 'p', push_outcome = 'applied' WHERE event_id IN ('w-1', 'w-2')"
        )
        db.execute("PRAGMA user_version = 4")
    with Journal.open(str(path)) as journal:
        assert journal.query("PRAGMA user_version")[0]["user_version"] == SCHEMA_VERSION == 6
        assert _summary_kept(journal.db) == _summary_from_events(journal.db)
        assert journal.query(
            "SELECT launch_id, last_event, pending, pushed, oldest_pending_at FROM launch_status"
        ) == [
            {"launch_id": 1, "last_event": "completed", "pending": 1, "pushed": 2, "oldest_pending_at": "i2"},
            {"launch_id": 2, "last_event": "started", "pending": 1, "pushed": 0, "oldest_pending_at": "i3"},
        ]
        journal.mark_pushed([("w-3", "applied", None)])
        assert _summary_kept(journal.db) == _summary_from_events(journal.db)
        assert journal.query("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    Journal.open(str(path)).close()  # opened again: nothing to do
    fresh = tmp_path / "fresh.sqlite3"
    Journal.open(str(fresh)).close()
    assert _ddl(path) == _ddl(fresh)


def test_pool_md_documents_the_pool_files_of_the_code():
    from fwspool import pool
    from fwspool.pilot import PilotRecord

    doc = read("POOL.md")
    assert _table_fields(doc, "## Pool entry") == set(pool.PoolEntry.__struct_fields__)
    assert _table_fields(doc, "## Claim record") == set(pool.ClaimRecord.__struct_fields__)
    assert _table_fields(doc, "## Pilot record") == set(PilotRecord.__struct_fields__)
    layout_part = doc.split("## Layout", 1)[1].split("\n## ", 1)[0]
    layout = [ln.split("|")[1].strip().strip("`") for ln in layout_part.splitlines() if ln.startswith("| `")]
    for sub in (pool.LAUNCHES, pool.READY, pool.CLAIMED, pool.PILOTS):
        assert any(path.startswith(f"{sub}/") for path in layout), sub
    assert f"`{pool.CLAIM_NAME}`" in doc and f"version {pool.POOL_VERSION}" in doc
    assert pool.claimed_name("12.json", "7_node1_99_abcd") == "12.json.7_node1_99_abcd"
    assert pool.job_of_pilot(pool.pilot_name("7")) == "7" and pool.job_of_pilot(pool.pilot_name(None)) is None


def test_a_version_5_journal_is_upgraded_in_place_with_the_indexes_status_picks_launches_by(tmp_path):
    """Version 6 adds indexes on launches and launch_summary only (tests/data/journal-v5.sql is
    version 5 as on main): every row stays, and the journal is the one a new journal is."""
    path = tmp_path / "v5.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript((DATA / "journal-v5.sql").read_text())
        db.execute(
            "INSERT INTO launches (launch_id, fw_id, launch_dir, learned_from, first_seen_at, outcome) "
            "VALUES (1, 1, '/l/1', 'spool', '2026-01-01T00:00:00Z', 'completed')"
        )
        _insert_events(db, [("w-1", 1, 1, "started", "t1", "{}", "i1")])
        db.execute(
            "INSERT INTO launch_summary (launch_id, events, pending, last_event, last_event_at) "
            "VALUES (1, 1, 1, 'started', 't1')"
        )
        db.execute("PRAGMA user_version = 5")
    with Journal.open(str(path)) as journal:
        assert journal.query("PRAGMA user_version")[0]["user_version"] == SCHEMA_VERSION == 6
        assert journal.query("SELECT launch_id, outcome FROM launches") == [
            {"launch_id": 1, "outcome": "completed"}
        ]
        assert journal.query("SELECT launch_id, pending FROM launch_summary") == [
            {"launch_id": 1, "pending": 1}
        ]
        assert journal.query("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    fresh = tmp_path / "fresh.sqlite3"
    Journal.open(str(fresh)).close()
    assert _ddl(path) == _ddl(fresh)
    names = {n for t, n, _ in _ddl(path) if t == "index"}
    assert {
        "launches_by_outcome",
        "launches_by_state",
        "launches_by_first_seen",
        "launch_summary_pending",
        "launch_summary_by_last_event",
        "launches_forgotten",
    } <= names


def test_a_new_journal_has_the_pragmas_of_the_schema_files_header_and_an_older_one_keeps_its_pages(
    tmp_path,
):
    """The header of schema/journal.sql is what a new journal is; a journal made with SQLite's
    4 KiB pages (every journal before 16 KiB pages) keeps them, since a WAL file cannot change
    its page size, and ingests and upgrades as before."""
    header = read("journal.sql").splitlines()[1]
    pragmas = dict(p.strip().split(" = ") for p in header.removeprefix("-- PRAGMA ").rstrip(".").split(";"))
    fresh = tmp_path / "fresh.sqlite3"
    Journal.open(str(fresh)).close()
    with sqlite3.connect(fresh) as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == int(pragmas["page_size"]) == 16384
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2 and pragmas["auto_vacuum"] == "INCREMENTAL"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == pragmas["journal_mode"].lower()
        assert db.execute("PRAGMA user_version").fetchone()[0] == int(pragmas["user_version"])
    old = tmp_path / "old.sqlite3"
    with sqlite3.connect(old) as db:
        db.execute("PRAGMA page_size = 4096")
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript((DATA / "journal-v5.sql").read_text())
        db.execute("PRAGMA user_version = 5")
    launch_dir = tmp_path / "root" / "launch_1"
    launch_dir.mkdir(parents=True)
    with SpoolWriter(str(launch_dir), launch_id=1, fw_id=1) as w:
        for _ in range(3):
            w.append(events.Ping(ping_time="2026-01-01T00:00:00Z"))
    for path in (old, fresh):
        assert journal_file.ingest(str(path), tmp_path / "root").new_events == 3
    with Journal.open(str(old)) as journal:
        assert journal.query("PRAGMA page_size")[0]["page_size"] == 4096
        assert journal.query("PRAGMA user_version")[0]["user_version"] == SCHEMA_VERSION
        assert journal.query("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    assert _ddl(old) == _ddl(fresh)
