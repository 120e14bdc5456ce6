"""The Uplink interface (fwspool.uplink), specified once and run against every implementation:
:class:`MongoUplink` on a real server, and :class:`FlakyUplink` wrapping it with no fault armed.
Then each fault FlakyUplink injects, on its own."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fireworks import Firework, ScriptTask, Workflow

from fwspool.devserver import free_port
from fwspool.errors import NotALaunchPad, UplinkUnavailable
from fwspool.ingest import Ingester
from fwspool.journal import Journal
from fwspool.push import Pusher
from fwspool.reserve import reserve_offline
from fwspool.testing.commands import reserved_and_run
from fwspool.testing.db_commands import CommandCounter
from fwspool.testing.faults import FlakyUplink
from fwspool.testing.launchpad import uplink_for
from fwspool.uplink import Uplink

#: Each implementation, made from what `fwspool push --uri URI --name NAME` would connect to.
IMPLEMENTATIONS: dict[str, Callable[..., Uplink]] = {
    "mongo": lambda uri, name, **kw: uplink_for(uri, name, **kw),
    "flaky_unarmed": lambda uri, name, **kw: FlakyUplink(uplink_for(uri, name, **kw)),
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def connect(request: pytest.FixtureRequest) -> Iterator[Callable[..., Uplink]]:
    opened: list[Uplink] = []

    def connect_(uri: str, name: str, **kw: Any) -> Uplink:
        opened.append(IMPLEMENTATIONS[request.param](uri, name, **kw))
        return opened[-1]

    yield connect_
    for uplink in opened:
        uplink.close()


def two_steps() -> Workflow:
    a = Firework(ScriptTask.from_str("echo a"), name="a", fw_id=1)
    b = Firework(ScriptTask.from_str("echo b"), name="b", fw_id=2)
    return Workflow([a, b], {1: [2]})


def finished_launch(lp: Any, tmp_path: Path, journal: Journal) -> str:
    """The first step of :func:`two_steps` reserved, run by fwspool rlaunch and ingested."""
    lp.add_wf(two_steps())
    d = str(tmp_path / "launch")
    reserved_and_run(lp, d)
    Ingester(journal, roots=[d]).run_pass()
    return d


@pytest.fixture
def finished(launchpad: Any, tmp_path: Path, journal_path: str) -> Iterator[Journal]:
    """A journal holding one finished launch of ``launchpad``, not pushed yet."""
    with Journal.open(journal_path) as journal:
        finished_launch(launchpad, tmp_path, journal)
        yield journal


@pytest.fixture
def flaky(mongo_uri: str, launchpad: Any) -> Iterator[Callable[..., FlakyUplink]]:
    """FlakyUplinks to ``launchpad`` with the faults given; closed afterwards."""
    made: list[FlakyUplink] = []

    def make(**faults: Any) -> FlakyUplink:
        made.append(FlakyUplink(uplink_for(mongo_uri, launchpad.name), **faults))
        return made[-1]

    yield make
    for uplink in made:
        uplink.close()


# -- the contract -------------------------------------------------------------------------------


def test_where_names_the_server(connect: Callable[..., Uplink], mongo_uri: str, launchpad: Any) -> None:
    uplink = connect(mongo_uri, launchpad.name)
    host = mongo_uri.split("://", 1)[1].split("/", 1)[0].split("@")[-1]
    assert host in uplink.where()


def test_check_accepts_a_launchpad_and_refuses_a_database_that_is_not_one(
    connect: Callable[..., Uplink], mongo_uri: str, launchpad: Any, db_name: str
) -> None:
    connect(mongo_uri, launchpad.name).check()
    with pytest.raises(NotALaunchPad, match="lpad reset"):
        connect(mongo_uri, db_name + "_none").check()


def test_check_of_an_unreachable_server_is_unavailable(connect: Callable[..., Uplink]) -> None:
    uri = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    with pytest.raises(UplinkUnavailable, match="cannot reach MongoDB"):
        connect(uri, "fireworks", timeout=0.5).check()


def test_a_push_through_it_applies_a_finished_launch_once(
    connect: Callable[..., Uplink], finished: Journal, mongo_uri: str, launchpad: Any
) -> None:
    uplink = connect(mongo_uri, launchpad.name)
    first = Pusher(finished, uplink).run_pass()
    assert first.applied >= 1 and finished.count_events("pushed_at IS NULL") == 0
    assert [launchpad.get_fw_by_id(i).state for i in (1, 2)] == ["COMPLETED", "READY"]
    before = launchpad.launches.find_one({"launch_id": 1})
    again = Pusher(finished, uplink).run_pass()
    assert again.applied == 0
    assert launchpad.launches.find_one({"launch_id": 1}) == before


def test_apply_of_nothing_writes_nothing(
    connect: Callable[..., Uplink], mongo_uri: str, launchpad: Any
) -> None:
    counter = CommandCounter(attribute=False)
    uplink = connect(mongo_uri, launchpad.name, event_listeners=[counter])
    before = list(launchpad.fireworks.find({}))
    with counter.counting():
        uplink.apply([], dt.datetime.now(dt.UTC))
    assert counter.writes() == 0, counter.commands
    assert list(launchpad.fireworks.find({})) == before


def test_the_registry_lists_open_offline_runs_and_forgets_deprecated_ones(
    connect: Callable[..., Uplink], mongo_uri: str, launchpad: Any, tmp_path: Path
) -> None:
    launchpad.add_wf(two_steps())
    d = str(tmp_path / "launch")
    fw, launch_id = reserve_offline(launchpad, d)
    uplink = connect(mongo_uri, launchpad.name)
    assert uplink.open_offline_runs() == [
        {"launch_id": launch_id, "fw_id": fw.fw_id, "launch_dir": d, "batch_job_id": None, "fw_name": fw.name}
    ]
    uplink.set_deprecated("fw_id", [fw.fw_id], True)
    assert uplink.open_offline_runs() == []
    assert launchpad.offline_runs.find_one({"launch_id": launch_id})["deprecated"] is True
    uplink.set_deprecated("launch_id", [launch_id], False)
    assert [r["launch_id"] for r in uplink.open_offline_runs()] == [launch_id]


def test_the_registry_names_the_batch_job_qlaunch_recorded(
    connect: Callable[..., Uplink], mongo_uri: str, launchpad: Any, tmp_path: Path
) -> None:
    launchpad.add_wf(two_steps())
    _, launch_id = reserve_offline(launchpad, str(tmp_path / "launch"))
    launchpad.set_reservation_id(launch_id, "4242")  # what qlaunch -r does after sbatch
    (run,) = connect(mongo_uri, launchpad.name).open_offline_runs()
    assert run["batch_job_id"] == "4242"


# -- FlakyUplink's faults -----------------------------------------------------------------------


def push_with_the_database_back(journal: Journal, uri: str, name: str) -> None:
    uplink = uplink_for(uri, name)
    try:
        Pusher(journal, uplink).run_pass()
    finally:
        uplink.close()


def test_fail_check_refuses_the_check_only(flaky: Callable[..., FlakyUplink]) -> None:
    uplink = flaky(fail_check=True)
    with pytest.raises(UplinkUnavailable, match="injected fault"):
        uplink.check()
    assert uplink.open_offline_runs() == []  # everything else still reaches the database


def test_fail_before_apply_counts_down_then_fails_without_writing(
    flaky: Callable[..., FlakyUplink], finished: Journal, mongo_uri: str, launchpad: Any
) -> None:
    uplink = flaky(fail_before_apply=1)
    uplink.apply([], dt.datetime.now(dt.UTC))  # the first apply goes through
    with pytest.raises(UplinkUnavailable, match="before apply"):
        Pusher(finished, uplink).run_pass()
    assert uplink.applied_batches == 1
    assert launchpad.get_fw_by_id(1).state == "RESERVED"  # the failed apply wrote nothing
    assert finished.count_events("pushed_at IS NOT NULL") == 0
    with pytest.raises(UplinkUnavailable, match="before apply"):
        uplink.apply([], dt.datetime.now(dt.UTC))  # once fired, it stays: the database is gone
    assert uplink.applied_batches == 1
    push_with_the_database_back(finished, mongo_uri, launchpad.name)
    assert launchpad.get_fw_by_id(1).state == "COMPLETED"


def test_fail_after_apply_writes_then_loses_the_acknowledgement(
    flaky: Callable[..., FlakyUplink], finished: Journal, mongo_uri: str, launchpad: Any
) -> None:
    uplink = flaky(fail_after_apply=0)
    with pytest.raises(UplinkUnavailable, match="events pending"):
        Pusher(finished, uplink).run_pass()
    assert uplink.applied_batches == 1
    assert launchpad.get_fw_by_id(1).state == "COMPLETED"  # written...
    assert finished.count_events("pushed_at IS NOT NULL") == 0  # ...but not acknowledged
    push_with_the_database_back(finished, mongo_uri, launchpad.name)
    assert finished.count_events("pushed_at IS NULL") == 0
    assert launchpad.fireworks.count_documents({}) == 2  # applied again, not twice
