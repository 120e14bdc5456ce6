"""`fwspool status` on many launches: the report counted in SQL is the one made launch by launch,
the filters pick launches by index, and --all and --json stream every launch (#23)."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fwspool.events import iso, utcnow
from fwspool.journal import Journal
from fwspool.journal.summary import summarize
from fwspool.outcomes import FORGOTTEN
from fwspool.status import Filters, _add_why, _launches, collect, render, report_json

NOW = utcnow()
OUTCOMES = [None, "running", "completed", "fizzled", "killed", "exited", "lost", "released", "superseded"]
STATES = [None, "RUNNING", "COMPLETED", "FIZZLED", "RESERVED", "READY"]


def varied_journal(path: Path, n: int, settled: int = 0, seed: int = 23) -> Journal:
    """``n`` launches of every kind status tells apart, made in SQL: outcomes recorded or not,
    events pending or pushed, old and recent, forgotten, history, another LaunchPad's (held and
    not confirmed), quarantined, several launches of one Firework, no event at all; then
    ``settled`` launches completed long ago and pushed."""
    rng = random.Random(seed)
    journal = Journal.open(str(path))
    db = journal.db
    db.execute("BEGIN IMMEDIATE")
    for lid in range(1, n + 1):
        first_seen = iso(NOW - dt.timedelta(hours=rng.choice([1, 3, 30, 24 * 40])))
        held = rng.choice([None] * 8 + ["not on this LaunchPad yet"])
        db.execute(
            "INSERT INTO launches (launch_id, fw_id, launch_dir, learned_from, first_seen_at, forgotten_at, "
            "batch_job_id, fw_name, pushed_state, outcome, outcome_detail, pushed_state_at, confirmed_at, held, "
            "history_at) VALUES (?, ?, ?, 'spool', ?, ?, ?, 'fw', ?, ?, ?, ?, ?, ?, ?)",
            (
                lid,
                rng.choice([None, rng.randrange(1, n // 2 + 2) + 10**6]),
                f"/runs/launcher_{lid}",
                first_seen,
                rng.choice([None] * 12 + [first_seen]),
                rng.choice([None, f"job{lid}"]),
                rng.choice(STATES),
                rng.choice(OUTCOMES),
                rng.choice([None, "why"]),
                first_seen,
                rng.choice([None, first_seen, first_seen]),
                held,
                rng.choice([None] * 10 + [first_seen]),
            ),
        )
        db.execute(
            "INSERT INTO sources (source_id, path, kind, launch_id, first_seen_at, updated_at) "
            "VALUES (?, ?, 'spool', ?, ?, ?)",
            (lid, f"/runs/launcher_{lid}/fws.spool", lid, first_seen, first_seen),
        )
        if rng.random() < 0.03:
            db.execute(
                'INSERT INTO quarantine (source_id, path, "offset", length, reason, quarantined_at) '
                "VALUES (?, ?, 0, 10, 'torn', ?)",
                (lid, f"/runs/launcher_{lid}/fws.spool", first_seen),
            )
        events = rng.choice([0, 1, 3, 6])
        types = ["started"] + ["ping"] * 3 + [rng.choice(["completed", "exited", "lost", "ping"]), "exited"]
        end = NOW - dt.timedelta(minutes=rng.choice([1, 90, 60 * 6, 60 * 30, 60 * 24 * 9]))
        for seq in range(1, events + 1):
            kind = types[seq - 1]
            payload: dict[str, Any] = {"type": kind}
            if kind == "completed":
                payload["state"] = rng.choice(["COMPLETED", "FIZZLED"])
            if kind == "exited":
                payload["returncode"] = rng.choice([0, 1, -9])
            pushed = rng.random() < 0.7
            db.execute(
                "INSERT INTO events (event_id, writer_id, seq, launch_id, fw_id, type, occurred_at, payload, "
                "source_id, ingested_at, pushed_at, push_outcome) VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)",
                (
                    f"w{lid}-{seq}",
                    f"w{lid}",
                    seq,
                    lid,
                    kind,
                    iso(end - dt.timedelta(minutes=events - seq)),
                    json.dumps(payload),
                    lid,
                    iso(end),
                    iso(end) if pushed else None,
                    "applied" if pushed else None,
                ),
            )
    for lid in range(n + 1, n + settled + 1):  # finished long ago, all pushed: what a year leaves
        old = iso(NOW - dt.timedelta(days=rng.randrange(2, 300)))
        db.execute(
            "INSERT INTO launches (launch_id, fw_id, launch_dir, learned_from, first_seen_at, terminal_at, "
            "fw_name, pushed_state, outcome, pushed_state_at, confirmed_at) "
            "VALUES (?, ?, ?, 'spool', ?, ?, 'fw', 'COMPLETED', 'completed', ?, ?)",
            (lid, lid, f"/runs/launcher_{lid}", old, old, old, old),
        )
        db.execute(
            "INSERT INTO events (event_id, writer_id, seq, launch_id, type, occurred_at, payload, ingested_at, "
            "pushed_at, push_outcome) VALUES (?, ?, 1, ?, 'completed', ?, '{\"state\": \"COMPLETED\"}', ?, ?, 'applied')",
            (f"w{lid}-1", f"w{lid}", lid, old, old, old),
        )
    summarize(db)
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('last_successful_push', ?)",
        (iso(NOW - dt.timedelta(minutes=5)),),
    )
    db.execute("COMMIT")
    return journal


def one_by_one(journal: Journal) -> list[dict[str, Any]]:
    """Every launch of the report, each made from its own row: the reference."""
    quarantined_of = journal.quarantined_by_launch()[1]
    ids = [r["launch_id"] for r in journal.query("SELECT launch_id FROM launches")]
    rows = journal.status_rows(ids)
    launches = _launches(journal, rows, quarantined_of, journal.get_meta("last_successful_push"), NOW)
    _add_why(journal, launches, Filters(every=True))  # every failed launch listed says why
    for launch, row in zip(launches, rows, strict=True):
        launch["_newest"] = bool(row["newest"])
    return launches


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Journal:
    return varied_journal(tmp_path_factory.mktemp("status") / "journal.sqlite3", 600, settled=1800)


def test_the_counts_made_in_sql_are_those_made_launch_by_launch(journal: Journal) -> None:
    every = one_by_one(journal)
    report = collect(journal, None, now=NOW)
    current = [x for x in every if not x["elsewhere"]]
    assert report["by_outcome"] == dict(sorted(Counter(x["outcome"] for x in current).items()))
    newest = [x for x in current if x["_newest"]]
    assert report["by_state"] == dict(sorted(Counter(x["state"] or "not pushed" for x in newest).items()))
    t = report["totals"]
    assert t["launches"] == len(every) == 2400
    assert t["need_attention"] == sum(x["attention"] for x in every) > 0
    assert t["history_launches"] == sum(x["history"] for x in every) > 0
    assert t["elsewhere_launches"] == sum(x["elsewhere"] for x in every) > 0
    assert t["forgotten_launches"] == sum(x["forgotten"] for x in every) > 0
    assert t["pending_launches"] == sum(1 for x in every if x["pending"] and not x["forgotten"]) > 0
    assert {x["outcome"] for x in every} >= {"waiting", "running", "completed", FORGOTTEN, "superseded"}
    strip = [{k: v for k, v in x.items() if k != "_newest"} for x in every]
    assert report["launches"] == [x for x in strip if x["attention"]]
    streamed = collect(journal, None, Filters(every=True), now=NOW)
    assert list(streamed["launches"]) == strip


@pytest.mark.parametrize(
    "filters",
    [
        Filters(fw_ids=(10**6 + 3, 10**6 + 7, 700)),
        Filters(states=("completed",)),
        Filters(states=("RUNNING", "killed")),
        Filters(states=("waiting", "forgotten")),
        Filters(pending=True),
        Filters(since=NOW - dt.timedelta(hours=2)),
        Filters(states=("fizzled",), since=NOW - dt.timedelta(days=2)),
    ],
)
def test_each_filter_lists_what_the_launch_by_launch_report_matches(
    journal: Journal, filters: Filters
) -> None:
    every = [{k: v for k, v in x.items() if k != "_newest"} for x in one_by_one(journal)]
    expected = [x for x in every if filters.match(x)]
    assert expected, "a filter that matches nothing tests nothing"
    assert collect(journal, None, filters, now=NOW)["launches"] == expected


def _plan(journal: Journal, sql: str, params: list[Any]) -> list[str]:
    return [r[3] for r in journal.db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fw_ids": (3, 7)},
        {"states": ("COMPLETED", "killed")},
        {"states": ("forgotten",)},
        {"seen_since": "2026-01-01T00:00:00Z"},
        {"pending": True},
    ],
)
def test_each_filter_picks_its_launches_by_an_index(
    journal: Journal, kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """EXPLAIN QUERY PLAN of the query each filter runs: no full scan of launches, summaries or
    events (``SCAN x USING INDEX`` reads a whole index: not that either, but for the partial
    index of the launches with pending events, which holds those only)."""
    ran: list[tuple[str, list[Any]]] = []
    picked = journal.launch_ids

    def launch_ids(sql: str, params: Any = ()) -> set[int]:
        ran.append((sql, list(params)))
        return picked(sql, params)

    monkeypatch.setattr(journal, "launch_ids", launch_ids)
    journal.launches_maybe_matching(**kwargs)
    ((sql, params),) = ran
    plan = _plan(journal, sql, params)
    scans = [
        step
        for step in plan
        if step.startswith("SCAN")
        and any(t in step for t in ("launches", "launch_summary", "events"))
        and step
        not in (
            "SCAN launch_summary USING INDEX launch_summary_pending",
            "SCAN launches USING INDEX launches_forgotten",
        )
    ]
    assert not scans, plan
    assert any(
        "USING INDEX" in step or "USING COVERING INDEX" in step or "INTEGER PRIMARY KEY" in step
        for step in plan
    ), plan


def test_the_launches_to_look_at_are_picked_by_an_index(journal: Journal) -> None:
    from fwspool.journal import views

    for sql, params in (
        (views._LIVE_IDS, []),
        (views._MAY_NEED_ATTENTION.format(failures="?, ?"), ["a", "fizzled", "killed", "b"]),
    ):
        plan = _plan(journal, sql, params)
        scans = [s for s in plan if s.startswith("SCAN") and ("launch" in s or "events" in s)]
        assert scans in ([], ["SCAN launch_summary USING INDEX launch_summary_pending"]), plan


def test_only_a_pending_run_event_makes_status_read_a_pushed_launchs_run_events(tmp_path: Path) -> None:
    """10,000 running jobs whose hourly pings wait for a push: status used to read every one's
    run events to learn what the push had recorded already. A pending ``completed`` still
    decides; a pending ping leaves the launch as pushed; each launch's events are found by an
    index."""
    from fwspool.journal import views

    journal = varied_journal(tmp_path / "j.sqlite3", 0)
    db = journal.db
    started = iso(NOW - dt.timedelta(hours=2))
    for lid, pending in ((1, "ping"), (2, "completed"), (3, "ping")):
        db.execute(
            "INSERT INTO launches (launch_id, fw_id, launch_dir, learned_from, first_seen_at, fw_name, "
            "pushed_state, outcome, pushed_state_at, confirmed_at) "
            "VALUES (?, ?, ?, 'spool', ?, 'fw', 'RUNNING', 'running', ?, ?)",
            (lid, lid, f"/runs/launcher_{lid}", started, started, started),
        )
        for seq, kind, pushed in ((1, "started", started), (2, pending, None)):
            payload = {"type": kind, **({"state": "COMPLETED"} if kind == "completed" else {})}
            db.execute(
                "INSERT INTO events (event_id, writer_id, seq, launch_id, type, occurred_at, payload, "
                "ingested_at, pushed_at, push_outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (f"w{lid}-{seq}", f"w{lid}", seq, lid, kind, started, json.dumps(payload), started, pushed,
                 "applied" if pushed else None),
            )  # fmt: skip
    summarize(db, [1, 2, 3])
    asked: list[int] = []
    run_events = journal.run_events

    def spied(launch_ids: Any) -> Any:
        asked.extend(launch_ids)
        return run_events(launch_ids)

    journal.run_events = spied  # type: ignore[method-assign]
    report = {x["launch_id"]: x for x in collect(journal, None, Filters(every=True), now=NOW)["launches"]}
    assert (report[1]["outcome"], report[1]["pending_state"]) == ("running", None)
    assert (report[2]["outcome"], report[2]["pending_state"]) == ("completed", "COMPLETED")
    assert set(asked) == {2}  # (the counts and the listing each read it)
    plan = _plan(journal, views._PENDING_RUN_EVENTS.format(marks="?, ?"), [1, 3])
    assert len(plan) == 1 and plan[0].startswith("SEARCH events USING INDEX events_"), plan  # per launch


def test_the_summary_of_an_ingest_batch_reads_the_new_rows_only(journal: Journal) -> None:
    """Each ingest batch adds its new events to launch_summary (add_inserted): every query it
    runs on events reads the rowid range of the new rows, never a whole index or table (a scan
    of events_by_launch made a first ingest ten times slower at 5 million events)."""
    from fwspool.journal.summary import add_inserted, events_high_water

    db, ran = journal.db, []
    db.execute("BEGIN")
    try:
        after = events_high_water(db) - 50
        db.set_trace_callback(ran.append)
        add_inserted(db, after)
    finally:
        db.set_trace_callback(None)
        db.execute("ROLLBACK")
    reads = [sql for sql in ran if sql.lstrip().startswith("SELECT") and "FROM events" in sql]
    assert len(reads) == 4, ran
    for sql in reads:
        plan = _plan(journal, sql, [])
        assert not [s for s in plan if s.startswith("SCAN") and "events" in s], (sql, plan)
        assert any("INTEGER PRIMARY KEY (rowid>?)" in s for s in plan), (sql, plan)


def test_all_and_json_stream_every_launch(journal: Journal) -> None:
    """--all and --json never hold every launch: the peak of writing them all stays well under
    what the list of them takes."""
    tracemalloc.start()
    try:
        listed = list(collect(journal, None, Filters(every=True), now=NOW)["launches"])
        _, whole = tracemalloc.get_traced_memory()
        del listed
        for write in (
            lambda r: sum(len(p) for p in report_json(r)),
            lambda r: len(render(r, Filters(every=True))),
        ):
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            report = collect(journal, None, Filters(every=True), now=NOW)
            assert write(report) > 0
            _, peak = tracemalloc.get_traced_memory()
            assert peak - base < 0.5 * whole, (peak - base, whole)
    finally:
        tracemalloc.stop()


def test_the_json_is_the_report_as_json(journal: Journal) -> None:
    report = collect(journal, None, Filters(fw_ids=(3, 7)), now=NOW)
    text = "".join(report_json(report))
    assert text == json.dumps(report, indent=2, sort_keys=True) + "\n"
    empty = collect(journal, None, Filters(fw_ids=(10**9,)), now=NOW)
    assert "".join(report_json(empty)) == json.dumps(empty, indent=2, sort_keys=True) + "\n"
    out = io.StringIO()
    out.write("".join(report_json(collect(journal, None, Filters(every=True), now=NOW))))
    assert len(json.loads(out.getvalue())["launches"]) == 2400
