"""Reserving a Firework for an offline job, the way FireWorks' ``qlaunch -r`` does.

``qlaunch -r`` checks the Firework out as RESERVED into the launch directory and then calls
``setup_offline_job`` there, which writes ``FW.json`` and ``FW_offline.json`` and registers the
offline run. ``setup_offline_job`` writes into the *current* directory, so the call is made with
the working directory switched and restored. This is the one place fwspool does it: the demo,
the tests, the benchmarks and the chaos harness all reserve through here, so they reserve the
way the real submission path does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

__all__ = ["NothingToReserve", "prepare_offline", "reserve_offline"]


class NothingToReserve(RuntimeError):
    """The LaunchPad had no READY Firework matching the request."""


@contextlib.contextmanager
def _working_directory(path: str) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def reserve_offline(
    launchpad: Any, launch_dir: str, *, fw_id: int | None = None, fworker: Any = None
) -> tuple[Any, int]:
    """Reserve one Firework into ``launch_dir`` as ``qlaunch -r`` does; return (Firework, launch_id).

    ``fworker`` defaults to FireWorks' default ``FWorker()`` (any category, no query). Raises
    :class:`NothingToReserve` when nothing READY matches.
    """
    from fireworks import FWorker

    os.makedirs(launch_dir, exist_ok=True)
    fw, launch_id = launchpad.checkout_fw(
        fworker if fworker is not None else FWorker(), launch_dir, fw_id=fw_id, state="RESERVED"
    )
    if fw is None:
        wanted = f"Firework {fw_id}" if fw_id is not None else "a READY Firework"
        raise NothingToReserve(f"{wanted} could not be reserved")
    prepare_offline(launchpad, fw, int(launch_id), launch_dir)
    return fw, int(launch_id)


def prepare_offline(launchpad: Any, fw: Any, launch_id: int, launch_dir: str) -> None:
    """FireWorks' ``setup_offline_job`` in ``launch_dir``: ``FW.json``, ``FW_offline.json`` and
    the offline run registered, for a Firework reserved as ``launch_id``."""
    from fireworks.queue.queue_launcher import setup_offline_job

    with _working_directory(launch_dir):
        setup_offline_job(launchpad, fw, launch_id)
