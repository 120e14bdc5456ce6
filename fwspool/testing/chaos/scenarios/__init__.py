"""The scenarios, one module each, and the registry of their numbers (``--scenario N``)."""

from __future__ import annotations

from fwspool.testing.chaos.scenarios import (
    bad_cli,
    clocks,
    cluster_faults,
    command_faults,
    concurrent_processes,
    database_outages,
    ingest_kills,
    jobflow_push,
    journal_disk,
    network_faults,
    packed_kills,
    pilot_kills,
    push_kills,
    shared_inbox,
    spool_damage,
    two_login_nodes,
)
from fwspool.testing.chaos.trial import Scenario

REGISTRY: dict[int, Scenario] = {
    s.number: s
    for s in (
        ingest_kills.SCENARIO,
        push_kills.SCENARIO,
        database_outages.SCENARIO,
        network_faults.SCENARIO,
        spool_damage.SCENARIO,
        concurrent_processes.SCENARIO,
        journal_disk.SCENARIO,
        clocks.SCENARIO,
        bad_cli.SCENARIO,
        command_faults.SCENARIO,
        two_login_nodes.SCENARIO,
        packed_kills.SCENARIO,
        shared_inbox.SCENARIO,
        cluster_faults.SCENARIO,
        pilot_kills.SCENARIO,
        jobflow_push.SCENARIO,
    )
}
#: Each scenario's name, by number.
SCENARIOS = {n: s.name for n, s in REGISTRY.items()}
#: Trial counts: (quick, full).
TRIALS = {n: s.trials for n, s in REGISTRY.items()}
