"""The chaos harness's command line (``tools/chaos.py``): run scenarios, print the table, exit 1
on any invariant failure."""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence

import fwspool.testing.chaos
from fwspool.testing.chaos import children
from fwspool.testing.chaos.cluster import Cluster
from fwspool.testing.chaos.progress import log, set_verbose
from fwspool.testing.chaos.scenarios import REGISTRY, SCENARIOS, TRIALS
from fwspool.testing.chaos.trial import ScenarioResult


def run_scenario(
    cluster: Cluster, number: int, *, full: bool = False, trials: int | None = None, seed: int = 0
) -> ScenarioResult:
    rng = random.Random(f"{seed}/{number}")
    n = trials if trials is not None else TRIALS[number][1 if full else 0]
    t0 = time.monotonic()
    log(f"scenario {number}: {SCENARIOS[number]} ({n} trials)")
    try:
        res = REGISTRY[number].run(cluster, n, rng, full)
    except Exception as exc:  # the harness itself failed: a failed scenario, the others still run
        res = ScenarioResult(number, SCENARIOS[number])
        res.check.other += 1
        res.check.note(f"scenario {number} stopped: {type(exc).__name__}: {exc}")
        log(traceback.format_exc())
    res.seconds = time.monotonic() - t0
    log(f"scenario {number} done in {res.seconds:.0f}s: {res.row()}")
    return res


def table(results: Sequence[ScenarioResult]) -> str:
    head = (
        "#",
        "scenario",
        "trials",
        "faults",
        "events",
        "lost",
        "dup",
        "mismatched",
        "merged",
        "stalled",
        "other",
        "secs",
    )
    rows: list[tuple[str, ...]] = [head]
    for r in results:
        x = r.row()
        rows.append(
            (
                str(r.scenario),
                r.name,
                str(x["trials"]),
                str(x["faults"]),
                str(x["events"]),
                str(x["lost"]),
                str(x["duplicated"]),
                str(x["mismatched"]),
                str(x["merged"]),
                str(x["stalled"]),
                str(x["other"]),
                f"{x['seconds']:.0f}",
            )
        )
    tot = [sum(int(r[i]) for r in rows[1:]) for i in range(2, len(head))]
    rows.append(("", "total", *map(str, tot)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out = []
    for k, row in enumerate(rows):
        out.append("  ".join(c.ljust(widths[i]) if i == 1 else c.rjust(widths[i]) for i, c in enumerate(row)))
        if k == 0 or k == len(rows) - 2:
            out.append("  ".join("-" * w for w in widths))
    out.append("")
    for r in results:
        out.append(f"{r.scenario}. {r.detail}")
        for note in r.check.notes[:8]:
            out.append(f"   ! {note}")
    return "\n".join(out)


def parser() -> argparse.ArgumentParser:
    doc = fwspool.testing.chaos.__doc__ or ""
    ap = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="Full trial counts (the issue's: 200, 100, 50...).")
    mode.add_argument("--quick", action="store_true", help="The short version (the default).")
    ap.add_argument(
        "--scenario",
        type=int,
        action="append",
        choices=sorted(SCENARIOS),
        help="Run only this scenario (repeatable).",
    )
    ap.add_argument("--trials", type=int, help="Trials per scenario instead of the mode's counts.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--json", action="store_true", help="Results as JSON on stdout (the table goes to stderr)."
    )
    ap.add_argument("--keep", action="store_true", help="Keep the temporary directory and databases.")
    ap.add_argument("--workdir", help="Where to put the temporary directory.")
    ap.add_argument("-q", "--quiet", action="store_true", help="No progress lines.")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in children.CHILD_COMMANDS:
        return children.main(argv)
    args = parser().parse_args(argv)
    set_verbose(not args.quiet)
    numbers = args.scenario or sorted(SCENARIOS)
    results = []
    root = tempfile.mkdtemp(prefix="fwspool-chaos-", dir=args.workdir) if args.workdir else None
    with Cluster(root, keep=args.keep) as cluster:
        cluster.shared_templates = not args.full
        log(f"working in {cluster.root}, database {cluster.uri}")
        for n in numbers:
            results.append(run_scenario(cluster, n, full=args.full, trials=args.trials, seed=args.seed))
    if root is not None and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    text = table(results)
    if args.json:
        print(text, file=sys.stderr)
        print(json.dumps([r.row() for r in results], indent=2))
    else:
        print(text)
    bad = any(r.check.failed for r in results)
    return 1 if bad else 0
