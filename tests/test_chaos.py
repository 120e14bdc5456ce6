"""The fault-injection suite (tools/chaos.py), short version: every scenario with real processes,
real kills and a real database. The regression test of each defect it found lives with what it
tests (tests/test_ingest.py, tests/test_push.py, tests/test_runs.py, tests/test_writeset.py).

`python tools/chaos.py --full` runs the same scenarios at full trial counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fwspool.testing.chaos.cluster import Cluster
from fwspool.testing.chaos.runner import run_scenario
from fwspool.testing.chaos.scenarios import SCENARIOS

# -- the scenarios -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The harness's own SecantusDB server and workloads, shared by the scenarios of this file."""
    c = Cluster(str(tmp_path_factory.mktemp("chaos")))
    c.shared_templates = True
    with c:
        yield c


#: Scenarios that find a defect still open: expected to fail until it is fixed (then they pass,
#: and strict xfail fails the test: remove the entry).
OPEN_DEFECTS: dict[int, str] = {}
#: Scenarios that find an open defect in some trials only, so that no run of them here could be
#: trusted either way: they run with `python tools/chaos.py --scenario N`, not in the suite, until
#: the defect is fixed (then remove the entry). An xfail that may pass would be a test that cannot fail.
NOT_IN_SUITE_YET: dict[int, str] = {}


#: Scenarios on network namespaces: run by the one pytest-xdist worker that runs every test that
#: builds them (tests/conftest.py, NETNS_FILES).
ON_NETNS = {14}


def _param(n: int) -> Any:
    if n in OPEN_DEFECTS:
        return pytest.param(n, marks=pytest.mark.xfail(reason=OPEN_DEFECTS[n], strict=True))
    if n in NOT_IN_SUITE_YET:
        reason = f"open defect, tools/chaos.py only: {NOT_IN_SUITE_YET[n]}"
        return pytest.param(n, marks=pytest.mark.skip(reason=reason))
    if n in ON_NETNS:
        return pytest.param(n, marks=pytest.mark.xdist_group("netns"))
    return n


@pytest.mark.parametrize("number", [_param(n) for n in sorted(SCENARIOS)])
def test_scenario(cluster: Cluster, number: int) -> None:
    res = run_scenario(cluster, number)
    c = res.check
    assert res.trials >= 1 and res.faults >= 1, res.row()
    # Every count of an invariant failure (lost, duplicated, mismatched, merged, stalled...) is 0.
    assert not c.failed, (res.row(), c.notes)
    assert c.events > 0 or number in (9,)
