"""``fwspool prune``: drop what can no longer matter from the journal, and reclaim the space
(:meth:`fwspool.journal.Journal.prune`; the policy is :mod:`fwspool.journal.retention`'s)."""

from __future__ import annotations

import datetime as dt
import re

import click

from fwspool.cli.common import journal_locked, open_journal, reports_errors, say, start_log
from fwspool.cli.options import journal_option, lock_wait_option, log_option

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str, option: str) -> float:
    """'30d', '12h', '90m', '45s', '2w' or a number of days, in seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if m is None:
        raise click.BadParameter(
            f"{text!r} is not an age: a number with s, m, h, d or w (30d, 12h)", param_hint=option
        )
    return float(m.group(1)) * _UNITS[m.group(2) or "d"]


@click.command()
@journal_option
@click.option(
    "--older-than",
    default="30d",
    show_default=True,
    metavar="AGE",
    help="Drop the pings and checkpoints of launches over for longer than AGE (30d, 12h, 0 for "
    "every launch that is over), quarantined copies older than AGE, and jobflow outputs cached "
    "longer than AGE ago.",
)
@lock_wait_option("ingest or push")
@log_option
@reports_errors
def prune(journal_path: str | None, older_than: str, lock_wait: float, log_file: str | None) -> None:
    """Drop what can no longer matter from the journal, and give the space back.

    For launches that are over (final, every event pushed, not forgotten, no torn tail waiting):
    their pings and checkpoints. Quarantined bytes copied into the journal. jobflow outputs in
    the output cache written before AGE. Kept: every launch and its started, completed, exited,
    lost and released events, every file's offset.
    `fwspool sync` does the same once a day (--retain).
    """
    from fwspool.events import utcnow
    from fwspool.jobstore.cache import cache_dir, prune_cache

    seconds = parse_age(older_than, "--older-than")
    start_log(log_file)
    now = utcnow()
    with open_journal(journal_path) as journal, journal_locked(journal, "ingest", "push", wait=lock_wait):
        say(journal.prune(now - dt.timedelta(seconds=seconds), now=now).line())
        cache = prune_cache(cache_dir(), now.timestamp() - seconds)
        if cache.changed():
            say(cache.line())
