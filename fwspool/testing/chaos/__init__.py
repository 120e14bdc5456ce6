"""Fault injection for fwspool: kill it, starve it, cut it off, corrupt its input — and prove that
no event is lost and none is applied twice.

    python tools/chaos.py --full              # every scenario at full trial counts (~1 hour)
    python tools/chaos.py --quick             # the short version the test suite runs
    python tools/chaos.py --scenario 2 --trials 30
    python tools/chaos.py --full --json       # JSON on stdout, the table on stderr

Everything is real: ``fwspool`` processes (``python -m fwspool.cli ...``) killed with SIGKILL, spool
files written by writer processes (``SpoolWriter``, one file per writer, killed mid-record too) and
by real ``fwspool rlaunch`` runs, a real SQLite journal, and real SecantusDB servers started here
(``fwspool.devserver.DevServer``; scenario 3 kills and restarts one of its own, scenario 10 injects
``failCommand`` faults into one of its own; scenario 13 runs two or three LaunchPads on one server,
each with its own journal, whose jobs all announce themselves in one inbox).

The workload: a LaunchPad with two-step workflows and workflows with two parallel roots, every
root reserved offline as ``qlaunch -r`` does; the compute side of each launch is simulated by
writer processes appending what ``fwspool rlaunch`` would (started, checkpoint, pings,
completed with an FWAction — sometimes with additions, detours, a non-idempotent ``mod_spec``,
defused children, FIZZLED —, exited, a walltime kill recorded by a second writer, notes), plus real
``fwspool rlaunch`` runs. Times and writer ids are deterministic, so the same workload always
writes the same bytes.

After every trial the invariants are checked:

(a) every event a writer appended (every valid record in the spool files, read with
    ``fwspool.spool.scan``) is in the journal exactly once, with the same content; nothing in the
    journal that no spool holds;
(b) every journal event is applied exactly once: the LaunchPad equals the one a clean, fault-free
    run of the same records produces (a clone of the same reserved LaunchPad, so the same ids) —
    Fireworks (state, spec, launches...), launches (state, the whole state history with its times,
    action, host...), workflows (nodes, links, fw_states, state...), offline_runs and the id
    counters, field by field; ignored are only the ``_id`` s, the launch directory (each run has
    its own), the ``updated_on`` that FireWorks sets to the time of the write and the LaunchPad's
    epoch (``fwspool.binding``: the first push of each run draws its own);
(c) nothing is left pending that should have been pushed, no workflow is left locked, and the
    quarantine holds exactly the bytes that are damaged (or records that are invalid).

Per scenario it prints trials, faults that landed, events written, lost, duplicated, mismatched
LaunchPad documents, merged (events of another LaunchPad's launch directory held or applied as
this one's), stalled (launches that did not reach the clean run's state) and other invariant
failures, and exits 1 on any of them.

The package, one module per concept: ``processes`` (the processes it starts), ``children`` (the
harness's own child processes: writers, a push that strikes at its N-th write, a push that records
its commands), ``tasks`` (the FireTasks of the real rlaunch runs), ``workload`` (the reserved
LaunchPad and what its compute nodes append), ``cluster`` (the server, templates, per-trial
instances, clean runs), ``snapshot`` (a LaunchPad as comparable data), ``invariants`` (the checks
above), ``proxy`` (a faulty network), ``trial`` (one trial's bookkeeping), ``scenarios`` (one
module per scenario, and the registry of their numbers), ``runner`` (the command line of
``tools/chaos.py``).
"""
