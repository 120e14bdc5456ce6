"""FireWorks' own database documents of a Launch and a Firework, without the work they throw away.

``Launch.to_db_dict()`` serializes the whole Launch twice (``recursive_dict`` of ``to_dict()``,
whose result ``to_dict`` already serialized), and ``Firework.to_db_dict()`` serializes every
Launch of the Firework in full, to replace each by its id. A push writes a launch document per
launch and a Firework document per completion: these two functions give the same documents,
key for key and in the same order, at about half the cost. ``tests/test_fireworks_documents.py``
holds them to FireWorks' own methods (FireWorks is pinned to 2.1.x in pyproject.toml).
"""

from __future__ import annotations

from typing import Any

__all__ = ["firework_db_dict", "launch_db_dict"]


def launch_db_dict(launch: Any) -> dict[str, Any]:
    """``launch.to_db_dict()``: its ``to_dict()`` (already serialized: ``recursive_dict`` gives
    its own output back unchanged) and the times ``to_db_dict`` adds, serialized alone."""
    from fireworks.utilities.fw_serializers import recursive_dict

    m_d: dict[str, Any] = launch.to_dict()
    m_d["time_start"] = recursive_dict(launch.time_start)
    m_d["time_end"] = recursive_dict(launch.time_end)
    m_d["runtime_secs"] = recursive_dict(launch.runtime_secs)
    reserved = launch.reservedtime_secs
    if reserved:
        m_d["reservedtime_secs"] = recursive_dict(reserved)
    return m_d


class _LaunchId:
    """A Launch as ``recursive_dict`` serializes it inside ``Firework.to_dict()`` when only its
    id is kept: ``Firework.to_db_dict()`` replaces each launch of its ``to_dict()`` by the id."""

    __slots__ = ("launch_id",)

    def __init__(self, launch_id: Any) -> None:
        self.launch_id = launch_id

    def to_dict(self) -> Any:
        return self.launch_id


def firework_db_dict(firework: Any) -> dict[str, Any]:
    """``firework.to_db_dict()`` (a Firework or FireWorks' ``LazyFirework``), with its launches
    standing in as their ids while FireWorks' own ``to_db_dict`` runs, then put back."""
    fw = getattr(firework, "full_fw", firework)  # a LazyFirework loads its launches, as to_db_dict does
    launches, archived = fw.launches, fw.archived_launches
    fw.launches = [_LaunchId(launch.launch_id) for launch in launches]
    fw.archived_launches = [_LaunchId(launch.launch_id) for launch in archived]
    try:
        doc: dict[str, Any] = fw.to_db_dict()
    finally:
        fw.launches, fw.archived_launches = launches, archived
    return doc
