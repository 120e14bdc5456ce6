"""The daemon loop (fwspool.daemon) without the CLI: what is retried, what is not, how it stops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fireworks import Firework, ScriptTask

from fwspool.daemon import Backoff, StopFlag, push_loop, sync_loop
from fwspool.errors import UplinkUnavailable
from fwspool.ingest import Ingester
from fwspool.journal import Journal
from fwspool.testing.commands import reserved_and_run
from fwspool.testing.faults import FlakyUplink
from fwspool.testing.launchpad import uplink_for
from fwspool.testing.waiting import wait_for


def one_finished_launch(launchpad: Any, tmp_path: Path) -> tuple[int, Path]:
    launchpad.add_wf(Firework(ScriptTask.from_str("echo hi"), name="one"))
    d = tmp_path / "launch"
    fw, _ = reserved_and_run(launchpad, str(d))
    return fw.fw_id, d


def test_an_unreachable_database_is_retried_with_backoff_until_stopped_and_raised_without_watch(
    launchpad: Any, mongo_uri: str, tmp_path: Path, journal_path: str
) -> None:
    fw_id, d = one_finished_launch(launchpad, tmp_path)
    said: list[str] = []
    warned: list[str] = []
    stop = StopFlag()

    def warn(line: str) -> None:
        warned.append(line)
        stop.event.set()  # stop during the first backoff wait

    def down() -> FlakyUplink:
        return FlakyUplink(uplink_for(mongo_uri, launchpad.db.name), fail_before_apply=0)

    with Journal.open(journal_path) as journal:
        Ingester(journal, roots=[str(d)]).run_pass()
        common: dict[str, Any] = {"interval": 0.1, "stop": stop, "say": said.append, "warn": warn}
        assert push_loop(journal, down, watch=True, **common) is None
        assert len(warned) == 1 and "retrying in" in warned[0] and not said
        stop.event.clear()
        with pytest.raises(UplinkUnavailable):
            push_loop(journal, down, watch=False, **common)
        assert launchpad.get_fw_by_id(fw_id).state == "RESERVED"  # nothing was applied
        summary = push_loop(journal, lambda: uplink_for(mongo_uri, launchpad.db.name), watch=False, **common)
        assert summary is not None and summary.applied >= 3 and said == [summary.line()]
    assert launchpad.get_fw_by_id(fw_id).state == "COMPLETED"


def test_sync_ingests_before_each_push_and_reads_what_the_registry_taught_it(
    launchpad: Any, mongo_uri: str, tmp_path: Path, journal_path: str
) -> None:
    fw_id, _ = one_finished_launch(launchpad, tmp_path)
    said: list[str] = []
    with Journal.open(journal_path) as journal:
        # No --root, no inbox: only the registry pull of the first push names the launch dir.
        sync_loop(
            journal,
            Ingester(journal),
            lambda: uplink_for(mongo_uri, launchpad.db.name),
            watch=False,
            interval=0.1,
            stop=StopFlag(),
            say=said.append,
            warn=said.append,
        )
    assert launchpad.get_fw_by_id(fw_id).state == "COMPLETED"
    # The first ingest found nothing: a one-shot says only the passes that changed something.
    assert [line.split(":")[0] for line in said] == ["push", "ingest", "push"]


def test_the_retry_line_says_how_long_the_try_took_and_the_next_try_starts_when_it_says(
    journal_path: str,
) -> None:
    """A database that refuses connections: each try takes the uplink's server-selection timeout,
    and the next one starts after the delay the line announced, not later."""
    import re
    import time

    from fwspool.devserver import free_port

    warned: list[tuple[float, str]] = []
    stop = StopFlag()

    def warn(line: str) -> None:
        warned.append((time.monotonic(), line))
        if len(warned) == 3:
            stop.set()

    nobody = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    with Journal.open(journal_path) as journal:
        push_loop(
            journal,
            lambda: uplink_for(nobody, "nowhere", timeout=0.5),
            watch=True,
            interval=0.1,
            stop=stop,
            say=lambda line: None,
            warn=warn,
        )
    numbers = [re.search(r"\(this try took ([\d.]+)s\); retrying in ([\d.]+)s$", line) for _, line in warned]
    assert all(numbers), warned
    took = [float(m.group(1)) for m in numbers if m]
    delay = [float(m.group(2)) for m in numbers if m]
    assert all(0.4 <= t <= 1.5 for t in took), took
    for i in (1, 2):
        # This line came the announced delay after the last one, plus this try's own length.
        gap = warned[i][0] - warned[i - 1][0]
        assert abs(gap - (delay[i - 1] + took[i])) < 0.25, (gap, delay, took)


def test_backoff_doubles_with_jitter_up_to_its_cap_and_resets() -> None:
    import random

    b = Backoff(base=1.0, cap=8.0, rng=random.Random(3))
    delays = [b.next_delay() for _ in range(6)]
    for delay, ceiling in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    b.reset()
    assert b.next_delay() <= 1.0


def test_a_status_request_is_answered_at_once_while_the_loop_waits_and_silence_gets_a_heartbeat(
    launchpad: Any, mongo_uri: str, tmp_path: Path, journal_path: str
) -> None:
    """SIGUSR1's request (StopFlag.ask) wakes a loop waiting out a long interval; the journal is
    read between passes only, never inside one."""
    import threading
    import time

    from fwspool.daemon import STATUS

    one_finished_launch(launchpad, tmp_path)
    said: list[str] = []
    stop = StopFlag()

    def ask_then_stop() -> None:
        wait_for(lambda: said, 60, "the first pass")
        stop.ask(STATUS)
        time.sleep(1.0)  # longer than the heartbeat below, shorter than two: one idle line
        stop.set()

    with Journal.open(journal_path) as journal:
        threading.Thread(target=ask_then_stop, daemon=True).start()
        started = time.monotonic()
        push_loop(
            journal,
            lambda: uplink_for(mongo_uri, launchpad.db.name),
            before_pass=lambda: Ingester(journal, roots=[str(tmp_path)]).run_pass(),
            watch=True,
            interval=60.0,
            heartbeat=0.6,
            stop=stop,
            say=said.append,
            warn=said.append,
        )
        assert time.monotonic() - started < 30  # not the 60 s interval
    assert said[0].startswith("push: 1 launch,")
    assert said[1].startswith("status (SIGUSR1): 1 launch (0 open, 1 final, 0 forgotten)")
    assert said[2].startswith("idle: nothing new for ") and len(said) == 3, said


def test_a_failed_prune_is_a_line_and_sync_goes_on_pushing(
    launchpad: Any, mongo_uri: str, tmp_path: Path, journal_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fwspool.errors import JournalError

    def no_room(*_args: Any, **_kwargs: Any) -> None:
        raise JournalError("journal x: cannot reclaim space: database or disk is full")

    fw_id, d = one_finished_launch(launchpad, tmp_path)
    said: list[str] = []
    warned: list[str] = []
    monkeypatch.setattr(Journal, "prune", no_room)
    with Journal.open(journal_path) as journal:
        common: dict[str, Any] = {
            "interval": 0.1,
            "stop": StopFlag(),
            "say": said.append,
            "warn": warned.append,
        }
        sync_loop(
            journal,
            Ingester(journal, roots=[str(d)]),
            lambda: uplink_for(mongo_uri, launchpad.db.name),
            watch=False,
            retain=30 * 86400.0,
            **common,
        )
    assert warned == [
        "prune failed, tried again in a day: journal x: cannot reclaim space: database or disk is full"
    ]
    assert launchpad.get_fw_by_id(fw_id).state == "COMPLETED"
