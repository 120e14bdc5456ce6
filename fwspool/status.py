"""``fwspool status``: what the journal holds, what each launch came to, and whether the database
answers now.

:func:`collect` makes the report as plain data (the ``--json`` output), :func:`render` the
text for a terminal: the summary first, then the launches that need attention (or every launch,
or those the filters pick), readable in 80 columns. Per launch: the Firework's id and name and its
state on the LaunchPad as the last push left it, the state its pending events imply when that
differs, what the launch came to (:mod:`fwspool.outcomes`) and why, its batch job and directory,
its last event and pending events, and for a failed one why its job died in the batch system's
words (:func:`why_died`). :func:`check_database` asks the database within a second.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from fwspool.config import redact
from fwspool.errors import FwspoolError
from fwspool.events import age, as_utc, iso, utcnow
from fwspool.journal import LAST_PUSH_KEY, Journal
from fwspool.journal.views import BLOCK_COUNTS
from fwspool.outcomes import (
    FAILURES,
    FORGOTTEN,
    RELEASED,
    RUNNING,
    SUPERSEDED,
    WAITING,
    Implied,
    implied,
)
from fwspool.plural import counted
from fwspool.runs import PendingEvent
from fwspool.scheduler import NO_RECORD, NOT_ASKED, TAIL_BYTES, no_record

#: The most ``fwspool status`` waits for the database.
CHECK_SECONDS = 1.0
#: A failure stays among the launches that need attention this long after it ended.
RECENT_FAILURE = dt.timedelta(days=1)
#: A running launch silent this long needs attention (FireWorks' ``RUN_EXPIRATION_SECS``: after
#: as long, ``lpad detect_lostruns`` counts a run lost).
SILENT_RUN = dt.timedelta(hours=4)
#: Events ingested this long before the last push and still pending were left by it.
LEFT_BY_PUSH = dt.timedelta(seconds=60)
#: At most this many launches that need attention in the table (all with --all or a filter).
ATTENTION_SHOWN = 50
#: The table's width: an 80-column terminal.
WIDTH = 80


def _wrap(text: str, indent: str = "") -> list[str]:
    """``text`` in lines of at most :data:`WIDTH`, the later ones indented two more; a path or
    any long word is never cut (not at its hyphens either), so that it can be copied whole."""
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_long_words=False,
        break_on_hyphens=False,
    )


@dataclass(frozen=True)
class Filters:
    """Which launches to list: those matching every filter given (``--all``: every launch)."""

    #: Firework states (as pushed, or as pending events imply) or outcomes, any case.
    states: tuple[str, ...] = ()
    fw_ids: tuple[int, ...] = ()
    #: Only launches with events waiting to be pushed.
    pending: bool = False
    #: Only launches with an event (or, with none, first seen) at or after this time.
    since: dt.datetime | None = None
    every: bool = False

    def given(self) -> bool:
        return bool(self.states or self.fw_ids or self.pending or self.since is not None)

    def match(self, launch: dict[str, Any]) -> bool:
        if self.fw_ids and launch["fw_id"] not in self.fw_ids:
            return False
        if self.pending and not (launch["pending"] and not launch["forgotten"]):
            return False
        if self.since is not None and as_utc(launch["last_event_at"] or launch["first_seen_at"]) < self.since:
            return False
        if self.states:
            words = {str(launch[k]).lower() for k in ("state", "pending_state", "outcome") if launch[k]}
            return any(s.lower() in words for s in self.states)
        return True


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """``--since``: a duration back from now (``30m``, ``6h``, ``2d``, ``1w``) or an ISO time
    (UTC unless it says otherwise). Raises ValueError."""
    m = _DURATION.match(text)
    if m:
        return now - dt.timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    try:
        return as_utc(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (30m, 6h, 2d, 1w) nor an ISO time") from None


def check_database(open_uplink: Callable[[], Any], budget: float = CHECK_SECONDS) -> dict[str, Any]:
    """Whether the database answers and is a LaunchPad, asked for at most ``budget`` seconds.

    ``open_uplink`` makes the uplink (reading the settings, no network); its own timeouts should be
    shorter than ``budget``. Whatever the database does, the answer comes after ``budget`` seconds
    at most.
    """
    try:
        uplink = open_uplink()
    except FwspoolError as exc:
        return {"where": None, "reachable": False, "error": redact(exc.message), "seconds": None}
    started = time.monotonic()
    answer: dict[str, Any] = {}

    def ask() -> None:
        try:
            uplink.check()
            answer["error"] = None
        except FwspoolError as exc:
            answer["error"] = redact(exc.message)
        except Exception as exc:  # noqa: BLE001 - status reports the database, it does not die of it
            answer["error"] = redact(f"{type(exc).__name__}: {exc}".splitlines()[0])

    probe = threading.Thread(target=ask, name="fwspool-status-check", daemon=True)
    probe.start()
    probe.join(max(0.0, budget - (time.monotonic() - started)))
    seconds = round(time.monotonic() - started, 3)
    where = uplink.where()
    try:
        uplink.close()
    except Exception:  # noqa: BLE001, S110 - closing a client that never connected
        pass
    if "error" not in answer:
        error = f"no answer within {budget:g} s (`fwspool push` waits --timeout)"
        return {"where": where, "reachable": False, "error": error, "seconds": seconds}
    return {
        "where": where,
        "reachable": answer["error"] is None,
        "error": answer["error"],
        "seconds": seconds,
    }


#: The journal's times are sortable UTC text (fwspool.events.iso), compared in SQL only to pick
#: launches, with this much to spare (a time written at another precision); which of them
#: match is decided on the parsed times. A margin of more than SILENT_RUN would pick every
#: running launch.
_MARGIN = dt.timedelta(minutes=1)


def collect(
    journal: Journal,
    database: dict[str, Any] | None,
    filters: Filters = Filters(),
    *,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The status report as plain data (the ``--json`` output); ``database`` is what
    :func:`check_database` found, None when not checked.

    Its ``launches``: those matching the filters when some are given, else every launch with
    ``filters.every`` (an iterator, made a few hundred at a time as it is read), else those that
    need attention. The counts come from SQL over the launches whose outcome the last push
    recorded and no event waits for (what they are is what the journal says); only the others,
    and those that may need attention or match the filters, are looked at one by one.
    """
    now = now or utcnow()
    submitted = _submitted(journal)
    last_push = journal.get_meta(LAST_PUSH_KEY)
    quarantined, quarantined_of = journal.quarantined_by_launch()
    look = journal.live_launch_ids() | set(quarantined_of)
    look |= journal.may_need_attention(
        iso(now - SILENT_RUN + _MARGIN), iso(now - RECENT_FAILURE - _MARGIN), sorted(FAILURES)
    )
    if filters.given():
        look |= journal.launches_maybe_matching(
            fw_ids=filters.fw_ids,
            states=filters.states,
            seen_since=iso(filters.since - _MARGIN) if filters.since is not None else None,
            pending=filters.pending,
        )
    rows = journal.status_rows(sorted(look))
    looked = _launches(journal, rows, quarantined_of, last_push, now)
    live = [(x, bool(r["newest"])) for x, r in zip(looked, rows, strict=True) if r["live"]]
    settled = journal.settled_counts(FORGOTTEN)
    totals = journal.event_totals()
    totals.update(_counts(live, settled, looked), quarantined=quarantined)
    by_state: Counter[str] = Counter()
    by_outcome: Counter[str] = Counter()
    # Launches this LaunchPad does not have (yet) are not its Fireworks; each Firework counts
    # once, by its latest launch (a rerun's or a new reservation's, not the one it moved past).
    for x, newest in live:
        if not x["elsewhere"]:
            by_outcome[x["outcome"]] += 1
            if newest:
                by_state[x["state"] or "not pushed"] += 1
    for g in settled:
        if not g["elsewhere"]:
            by_outcome[g["outcome"]] += g["n"]
            if g["newest"]:
                by_state[g["state"] or "not pushed"] += g["n"]
    if filters.given():
        listed: Any = _add_why(journal, [x for x in looked if filters.match(x)], filters)
    elif filters.every:
        listed = _every_launch(journal, quarantined_of, last_push, now, filters)
    else:
        listed = _add_why(journal, [x for x in looked if x["attention"]], filters)
    return {
        "journal": journal.path,
        "now": iso(now),
        "totals": totals,
        # The Fireworks as last seen: each by its latest launch the LaunchPad has not moved past.
        "by_state": dict(sorted(by_state.items())),
        "by_outcome": dict(sorted(by_outcome.items())),
        "oldest_pending": journal.oldest_pending(),
        "last_successful_push": last_push,
        "database": database,
        "filters": _filters_as_data(filters),
        "blocks": _packed_blocks(journal.blocks()),
        "submitted": submitted,
        "pools": _pools(submitted, now),
        "launches": listed,
    }


def _add_why(journal: Journal, listed: list[dict[str, Any]], filters: Filters) -> list[dict[str, Any]]:
    """Why the jobs of the failed launches listed died, in the batch system's words (``why``):
    read per launch, and only for those that need attention (every failed one listed with
    ``--all`` or a filter), so the summary never reads the events."""
    failed = [
        x for x in listed if x["outcome"] in FAILURES and (x["attention"] or filters.given() or filters.every)
    ]
    if failed:
        ends = journal.batch_ends([x["launch_id"] for x in failed])
        for x in failed:
            if x["launch_id"] in ends:
                x["why"] = why_died(ends[x["launch_id"]]["batch_end"])
    return listed


def why_died(end: dict[str, Any] | None) -> dict[str, Any]:
    """A job's end as ``fwspool status`` gives it (:class:`fwspool.events.JobEnd`, recorded by
    ingest): the cause in fwspool's words, which record said so (``scontrol show job``,
    ``sacct``, ``qacct -j``, ``no record``, or ``not asked`` with ``query_error``: the batch
    system could not be asked), the batch system's own words, state, reason and exit code, and
    the job's output files with their last lines (at most ``TAIL_BYTES`` each)."""
    end = end or msgspec.to_builtins(no_record())
    return {
        "cause": end.get("cause"),
        "source": end.get("source"),
        "words": end.get("words"),
        "state": end.get("state"),
        "reason": end.get("reason"),
        "exit_code": end.get("exit_status"),
        "failed": end.get("failed"),
        "query_error": end.get("query_error"),
        **{k: end.get(k) for k in ("stdout", "stderr")},
        **{k: (end.get(k) or "")[-TAIL_BYTES:] or None for k in ("stdout_tail", "stderr_tail")},
    }


def _submitted(journal: Any) -> dict[str, Any] | None:
    """What ``sync --watch --submit`` submitted (:mod:`fwspool.submit`); None if it never did."""
    from fwspool.submit import read_submitted

    record = read_submitted(journal)
    return None if record is None else msgspec.to_builtins(record)


def _pools(submitted: dict[str, Any] | None, now: dt.datetime) -> list[dict[str, Any]]:
    """The pilot pools the daemon submitted pilots for (their jobs' ``directory``): stock,
    claims and running pilots (:func:`fwspool.pool.pool_report`)."""
    from fwspool.pool import pool_report

    roots = sorted({j["directory"] for j in (submitted or {}).get("recent", []) if j.get("kind") == "pilot"})
    return [pool_report(root, now) for root in roots]


def _counts(
    live: list[tuple[dict[str, Any], bool]], settled: list[dict[str, Any]], looked: list[dict[str, Any]]
) -> dict[str, int]:
    """The launch counts of the summary: the live launches one by one, the settled ones by group
    (none of them pending; those that need attention are among the ones looked at)."""
    launches = [x for x, _ in live]

    def both(key: str) -> int:
        return sum(1 for x in launches if x[key]) + sum(g["n"] for g in settled if g[key])

    return {
        "launches": len(launches) + sum(g["n"] for g in settled),
        "history_launches": both("history"),
        "elsewhere_launches": both("elsewhere"),
        "pending_launches": sum(1 for x in launches if x["pending"] and not x["forgotten"]),
        "forgotten_launches": both("forgotten"),
        "need_attention": sum(1 for x in looked if x["attention"]),
    }


def _launches(
    journal: Journal,
    rows: list[dict[str, Any]],
    quarantined_of: dict[int, int],
    last_push: str | None,
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """The report's launches of these ``launch_status`` rows, with the run events of those whose
    events decide what they came to."""
    # A recorded outcome changes only by a pending run event (pings and notes leave it as is).
    changing = journal.with_pending_run_events(
        [r["launch_id"] for r in rows if r["pending"] and not r["forgotten"] and r["outcome"] is not None]
    )
    deciding = [
        r["launch_id"]
        for r in rows
        if r["last_event"] is not None and (r["outcome"] is None or r["launch_id"] in changing)
    ]
    runs = journal.run_events(deciding)
    return [
        _launch(r, runs.get(r["launch_id"]), quarantined_of.get(r["launch_id"], 0), last_push, now)
        for r in rows
    ]


def _every_launch(
    journal: Journal,
    quarantined_of: dict[int, int],
    last_push: str | None,
    now: dt.datetime,
    filters: Filters,
) -> Iterator[dict[str, Any]]:
    """Every launch of the report, by launch id, made a few hundred at a time as it is read."""
    for rows in journal.every_status_row():
        yield from _add_why(journal, _launches(journal, rows, quarantined_of, last_push, now), filters)


def _packed_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The jobs of ``fwspool qlaunch`` (their block directory has its manifest, even with one
    Firework) and any other block of more than one launch, each with how many of its launches
    completed, fizzled, run, ended, were released or have not started. (FireWorks' own
    ``qlaunch rapidfire`` puts one launch per job in its block directories.)"""
    from fwspool.block import MANIFEST_NAME

    return [
        b for b in blocks if b["launches"] > 1 or os.path.exists(os.path.join(b["block_dir"], MANIFEST_NAME))
    ]


def _filters_as_data(filters: Filters) -> dict[str, Any]:
    return {
        "state": list(filters.states),
        "fw_id": list(filters.fw_ids),
        "pending": filters.pending,
        "since": iso(filters.since) if filters.since else None,
    }


def _launch(
    row: dict[str, Any],
    run_events: list[PendingEvent] | None,
    quarantined: int,
    last_push: str | None,
    now: dt.datetime,
) -> dict[str, Any]:
    """One launch of the report: the journal's row, what it came to, and whether (and why) it
    needs attention."""
    state, pending_state, outcome, detail = _came_to(row, implied(run_events) if run_events else None)
    launch = {
        "launch_id": row["launch_id"],
        "fw_id": row["fw_id"],
        "fw_name": row["fw_name"],
        "state": state,
        "state_pushed_at": row["pushed_state_at"],
        "pending_state": pending_state,
        "outcome": outcome,
        "outcome_detail": detail,
        "batch_job_id": row["batch_job_id"],
        "batch_system": row["batch_system"],
        "batch_gone_at": row["batch_gone_at"],
        # The batch system's record of the job's end (:func:`why_died`), for failed launches listed.
        "why": None,
        "launch_dir": row["launch_dir"],
        "learned_from": row["learned_from"],
        "first_seen_at": row["first_seen_at"],
        "last_event": row["last_event"],
        "last_event_at": row["last_event_at"],
        "last_event_age_seconds": (
            int((now - as_utc(row["last_event_at"])).total_seconds()) if row["last_event_at"] else None
        ),
        "pending": row["pending"],
        "oldest_pending_at": row["oldest_pending_at"],
        "pushed": row["pushed"],
        "superseded": row["superseded"],
        "forgotten": bool(row["forgotten"]),
        "quarantined": quarantined,
        "held": row["held"],
        "history": row["history_at"] is not None,
        "history_at": row["history_at"],
        "confirmed": row["confirmed_at"] is not None,
        # Announced (a pointer, a file) under an id this LaunchPad has not handed out yet: held,
        # and set aside once it does, unless it is this LaunchPad's (fwspool.identity).
        "elsewhere": bool(row["held"]) and row["confirmed_at"] is None,
    }
    attention, notes = _notes(launch, last_push, now)
    launch.update(attention=attention, note="; ".join(notes) or None)
    return launch


def _came_to(row: dict[str, Any], implies: Implied | None) -> tuple[str | None, str | None, str, str | None]:
    """(state as last pushed, state the pending events imply when it differs, outcome, why).

    What the last push recorded, unless events are pending (then what they imply, but a launch
    the LaunchPad moved past stays superseded) or no push recorded anything: then the events say
    it, pushed ones included (a journal pushed before it recorded states).
    """
    pending = row["pending"] if not row["forgotten"] else 0
    recorded = row["outcome"] is not None
    state, outcome, detail, pending_state = row["pushed_state"], row["outcome"], row["outcome_detail"], None
    if not recorded and row["superseded"] and not row["pushed"] and not pending:
        outcome = SUPERSEDED  # pushed before the journal recorded why
    elif implies is not None and outcome != SUPERSEDED and (pending or not recorded):
        outcome, detail = implies.outcome, implies.detail
        if not recorded and row["pushed"] and not pending:
            state = implies.state
        if pending and implies.state != state:
            pending_state = implies.state
    if row["forgotten"]:
        outcome, detail = FORGOTTEN, f"by `fwspool forget` at {row['forgotten_at']}"
    return state, pending_state, outcome or WAITING, detail


def _notes(launch: dict[str, Any], last_push: str | None, now: dt.datetime) -> tuple[bool, list[str]]:
    """Whether a launch needs attention, and what to say about it."""
    outcome, job = launch["outcome"], launch["batch_job_id"]
    if launch["forgotten"]:
        return False, [
            f"{launch['outcome_detail']}; its {launch['pending']} unpushed events stay in the journal"
        ]
    if launch["history"]:
        if outcome == SUPERSEDED and launch["outcome_detail"]:
            return False, [launch["outcome_detail"]]  # it says how the LaunchPad moved past it
        return False, [
            f"history: the LaunchPad moved past this launch (a rerun, or a later launch of Firework "
            f"{launch['fw_id']}; seen {age(launch['history_at'], now)} ago)"
        ]
    if launch["elsewhere"]:
        return False, [
            f"{launch['held']}; announced in {launch['launch_dir']}, probably another LaunchPad's launch "
            "(or one from before an lpad reset): set aside once this LaunchPad hands out its id to another launch"
        ]
    notes: list[str] = []
    attention = False
    if launch["held"] and launch["pending"]:
        attention = True
        notes.append(f"held: {launch['held']}")
    if launch["pending_state"]:
        notes.append(f"{launch['pending_state']} once its {launch['pending']} pending events are pushed")
    left = (
        launch["pending"]
        and last_push
        and as_utc(launch["oldest_pending_at"]) + LEFT_BY_PUSH < as_utc(last_push)
    )
    if left and not launch["held"]:
        attention = True
        notes.append(
            f"{launch['pending']} events not applied by the last push ({age(last_push, now)} ago; its output says "
            "why: not on this LaunchPad, a locked workflow, ...)"
        )
    if launch["quarantined"] and (left or outcome == RUNNING):
        attention = True
        notes.append(
            f"{launch['quarantined']} of its spool records are quarantined; its completion may be among them "
            "(see the quarantined view; `fwspool ingest --retry-quarantined` with a larger --max-record)"
        )
    if outcome == WAITING:
        if launch["batch_gone_at"]:
            attention = True
            notes.append(
                f"nothing ran: batch job {job} is gone since {age(launch['batch_gone_at'], now)} ago; the next "
                "ingest after --lost-after hands the reservation back"
            )
        elif job:
            notes.append(f"nothing ran yet: batch job {job} has not started it")
        else:
            notes.append("nothing ran yet, and no batch job is known to ask about it")
    elif (
        outcome in FAILURES
        and launch["last_event_at"]
        and now - as_utc(launch["last_event_at"]) < RECENT_FAILURE
    ):
        attention = True
        notes.append(launch["outcome_detail"] or outcome)
    elif outcome in FAILURES or outcome in (SUPERSEDED, RELEASED):
        notes.append(launch["outcome_detail"] or outcome)
    elif (
        outcome == RUNNING and launch["last_event_at"] and now - as_utc(launch["last_event_at"]) > SILENT_RUN
    ):
        attention = True
        notes.append(
            f"no event for {age(launch['last_event_at'], now)} (FireWorks counts a run lost after 4h): "
            f"is batch job {job or '?'} still running?"
        )
    return attention, notes


def report_json(report: dict[str, Any]) -> Iterator[str]:
    """The report as JSON text (indented, keys sorted: ``json.dumps(report, indent=2,
    sort_keys=True)`` and a newline), in pieces as its launches are made: with ``--all`` they
    come from an iterator and are never all in memory."""
    encoder = json.JSONEncoder(indent=2, sort_keys=True)
    head, tail = encoder.encode({**report, "launches": []}).split('\n  "launches": []', 1)
    yield head + '\n  "launches": ['
    any_launch = False
    for launch in report["launches"]:
        yield ("," if any_launch else "") + "\n    " + _launch_json(launch, encoder)
        any_launch = True
    yield ("\n  ]" if any_launch else "]") + tail + "\n"


#: A flat object at depth 2 of indent=2 JSON, one item a line, by the C encoder (the indenting
#: one is pure Python: five times the cost of making the launch, over a year's launches).
_FLAT_LAUNCH = json.JSONEncoder(sort_keys=True, separators=(",\n      ", ": "))


def _launch_json(launch: dict[str, Any], encoder: json.JSONEncoder) -> str:
    """One launch as ``encoder`` (indent=2) writes it inside the report's ``launches``."""
    if any(isinstance(v, (dict, list, tuple)) for v in launch.values()):
        return encoder.encode(launch).replace("\n", "\n    ")
    return "{\n      " + _FLAT_LAUNCH.encode(launch)[1:-1] + "\n    }"


# -- the text ------------------------------------------------------------------------------------

_ROW = "{:>7} {:>6} {:<16} {:<9} {:<10} {:<9} {:<10} {:>6}"


def render(report: dict[str, Any], filters: Filters = Filters()) -> str:
    """The report for an 80-column terminal: the summary, then the launches that need attention
    (every launch with ``--all``, those matching the filters when some are given)."""
    return "\n".join(render_lines(report, filters))


def render_lines(report: dict[str, Any], filters: Filters = Filters()) -> Iterator[str]:
    """:func:`render`, line by line as each is made (``--all`` over a year's launches)."""
    now = as_utc(report["now"])
    lines = _summary(report, now)
    shown = report["launches"]  # with --all, an iterator: listed as it is made
    everything = report["totals"]["launches"]
    if filters.given():
        title = f"{counted(len(shown), 'launch')} {'matches' if len(shown) == 1 else 'match'}"
    elif filters.every:
        title = f"all {counted(everything, 'launch')}"
    else:
        title = f"{counted(len(shown), 'launch')} {'needs' if len(shown) == 1 else 'need'} attention" + (
            f" (--all lists all {everything})" if len(shown) < everything else ""
        )
    lines += _block_lines(report["blocks"])
    if report.get("submitted"):
        from fwspool.submit import Submitted

        line = msgspec.convert(report["submitted"], Submitted).line()
        lines += ["", *_wrap(line)]
    for pool in report.get("pools") or []:
        lines += _wrap(_pool_line(pool))
    some = everything > 0 if filters.every and not filters.given() else bool(shown)
    lines += ["", title + (":" if some else ".")]
    hidden = 0
    if not (filters.given() or filters.every) and len(shown) > ATTENTION_SHOWN:
        hidden, shown = len(shown) - ATTENTION_SHOWN, shown[:ATTENTION_SHOWN]
    if some:
        lines.append(_ROW.format("launch", "fw", "name", "state", "outcome", "job", "last event", "age"))
    yield from lines
    for launch in shown:
        yield from _launch_lines(launch, now, with_dir=launch["attention"])
    if hidden:
        yield f"... and {hidden} more: --state, --fw-id, --since or --pending pick among them"


def _pool_line(pool: dict[str, Any]) -> str:
    """'pool /x: 3 in stock (oldest 12 s), 2 claimed (pilot jobs 17, 18), 1 pilot running (job 17)'."""
    if not pool["exists"]:
        return f"pool {pool['root']}: not there"
    text = f"pool {pool['root']}: {pool['ready']} in stock"
    if pool["oldest_ready_s"] is not None:
        text += f" (oldest {pool['oldest_ready_s']:.0f} s)"
    claims = pool["claims"]
    jobs = sorted({c["batch_job_id"] for c in claims if c["batch_job_id"]})
    back = sum(1 for c in claims if c["holder"].startswith("stocker-"))
    text += f", {len(claims)} claimed"
    if jobs:
        text += f" ({'pilot job' if len(jobs) == 1 else 'pilot jobs'} {', '.join(jobs)})"
    if back:
        text += f", {back} being handed back"
    pilots = pool["pilots"]
    ids = ", ".join(str(p["batch_job_id"] or p["pilot"]) for p in pilots)
    text += f", {counted(len(pilots), 'pilot')} running" + (f" (job {ids})" if pilots else "")
    return text


def _summary(report: dict[str, Any], now: dt.datetime) -> list[str]:
    t = report["totals"]
    by_state = ", ".join(f"{k} {v}" for k, v in report["by_state"].items())
    by_outcome = ", ".join(f"{k} {v}" for k, v in report["by_outcome"].items())
    oldest = report["oldest_pending"]
    lag = (
        f"oldest pending event: launch {oldest['launch_id']}'s {oldest['type']}, ingested "
        f"{age(oldest['ingested_at'], now)} ago"
        if oldest
        else "no event waits to be pushed"
    )
    last = report["last_successful_push"]
    parts = [
        f"launches: {t['launches']}" + (f"; as last pushed: {by_state}" if t["launches"] else ""),
        *([f"outcomes: {by_outcome}"] if t["launches"] else []),
        f"events: {t['events']}: {t['pending']} pending ({counted(t['pending_launches'], 'launch')}), {t['pushed']} pushed, "
        f"{t['superseded']} superseded, {t['skipped']} skipped",
        lag,
        f"last successful push: {last + ' (' + age(last, now) + ' ago)' if last else 'never'}",
        _database_line(report["database"]),
        f"quarantined: {counted(t['quarantined'], 'range')}; forgotten: {counted(t['forgotten_launches'], 'launch')}",
        *(
            [
                f"not on this LaunchPad (yet): {counted(t['elsewhere_launches'], 'launch')} announced under ids "
                "it has not handed out (another LaunchPad's, or from before an lpad reset; --all lists them)"
            ]
            if t["elsewhere_launches"]
            else []
        ),
    ]
    return [f"journal {report['journal']}"] + [ln for part in parts for ln in _wrap(part)]


def _block_lines(blocks: list[dict[str, Any]]) -> list[str]:
    """Packed jobs: one summary line, then one line per job that still has work running or not
    started (``--json`` has every one)."""
    if not blocks:
        return []
    busy = [b for b in blocks if b["running"] or b["not_started"]]
    lines = [
        "",
        f"packed jobs: {len(blocks)}, {len(busy)} with launches running or not started"
        + (":" if busy else ""),
    ]
    for b in busy[:ATTENTION_SHOWN]:
        counts = ", ".join(f"{b[key]} {key.replace('_', ' ')}" for key in BLOCK_COUNTS if b[key])
        lines.append(
            _cell(f"  job {b['batch_job_id'] or '?'} {os.path.basename(b['block_dir'])}: {counts}", WIDTH)
        )
    return lines


def _database_line(db: dict[str, Any] | None) -> str:
    if db is None:
        return "database: not checked (--no-check)"
    if db["reachable"]:
        return f"database: answers at {db['where']} ({db['seconds']:.2f} s)"
    where = f" at {db['where']}" if db["where"] else ""
    return f"database: NOT reachable{where}: {db['error']}"


def _launch_lines(launch: dict[str, Any], now: dt.datetime, *, with_dir: bool) -> list[str]:
    row = _ROW.format(
        launch["launch_id"],
        _cell(launch["fw_id"], 6),
        _cell(launch["fw_name"], 16),
        _cell(launch["state"], 9),
        _cell(launch["outcome"], 10),
        _cell(launch["batch_job_id"], 9),
        _cell(launch["last_event"], 10),
        age(launch["last_event_at"], now),
    )
    out = [row]
    indent = " " * 8
    # Below the row: its note, then why its job died.
    for text in (launch["note"], _why_text(launch["why"]) if launch["why"] else None):
        if text:
            out += _wrap(text, indent)
    if with_dir:
        out.append(indent + (launch["launch_dir"] or "(launch directory not known yet)"))
    return out


def _why_text(why: dict[str, Any]) -> str:
    """``why: walltime (TimeLimit), says scontrol show job; exit code 143``: the batch system's
    words and the output tails stay in ``--json``."""
    if why["source"] == "no record":
        return f"why: {NO_RECORD}"
    if why["source"] == NOT_ASKED:
        return f"why: not known, {why['words']}"
    reason = f" ({why['reason']})" if why["reason"] not in (None, "None") else ""
    code = f"; exit code {why['exit_code']}" if why["exit_code"] is not None else ""
    return f"why: {why['cause']}{reason}, says {why['source']}{code}"


def _cell(value: Any, width: int) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"
