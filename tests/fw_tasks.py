"""FireTasks and helpers for the rlaunch tests.

Run in a subprocess (``rlaunch singleshot --offline`` or ``fwspool rlaunch``), so the tests put
``tests/`` on ``PYTHONPATH``; ``@explicit_serialize`` makes FireWorks load these tasks by their
``fw_tasks.<Name>`` path.
"""

from __future__ import annotations

from typing import Any

from fireworks import Firework, FWAction, ScriptTask
from fireworks.core.firework import FiretaskBase
from fireworks.utilities.fw_utilities import explicit_serialize


@explicit_serialize
class ActionTask(FiretaskBase):
    """Returns an FWAction that uses every dynamic feature: stored data from the spec, update_spec,
    mod_spec, additions and detours (each a new Firework), and optional exit/defuse flags."""

    optional_params = ["exit", "defuse_children", "defuse_workflow", "propagate", "dynamic"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        dynamic = self.get("dynamic", True)
        return FWAction(
            stored_data={
                "seen_a": fw_spec.get("a"),
                "seen_fw_env": fw_spec.get("_fw_env"),
                "nested": {"x": [1, 2]},
            },
            update_spec={"b": (fw_spec.get("a") or 0) + 1, "from_action": True},
            mod_spec=[{"_push": {"pushed": "one"}}, {"_inc": {"counter": 2}}],
            additions=[Firework(ScriptTask.from_str("echo added"), name="added")] if dynamic else [],
            detours=[Firework(ScriptTask.from_str("echo detour"), name="detour")] if dynamic else [],
            exit=self.get("exit", False),
            defuse_children=self.get("defuse_children", False),
            defuse_workflow=self.get("defuse_workflow", False),
            propagate=self.get("propagate", False),
        )


class DetailedError(RuntimeError):
    """An exception FireWorks can serialise: ``to_dict`` becomes ``_exception._details``."""

    def to_dict(self) -> dict[str, Any]:
        return {"reason": str(self), "code": 42}


def boom(message: str) -> None:
    raise DetailedError(message)


def plain_boom(message: str) -> None:
    raise ValueError(message)


def add(x: float, y: float) -> float:
    return x + y


@explicit_serialize
class NonFiniteTask(FiretaskBase):
    """Stores the floats JSON cannot write: NaN and ±Infinity, alone and nested."""

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        nan, inf = float("nan"), float("inf")
        return FWAction(
            stored_data={"nan": nan, "inf": inf, "ninf": -inf, "nested": [nan, {"x": -inf}], "fine": 1.5},
            update_spec={"threshold": inf},
        )


@explicit_serialize
class ResultTask(FiretaskBase):
    """Stores a large result (``size`` characters) or a deeply nested one (``depth`` lists)."""

    optional_params = ["size", "depth"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        data: dict[str, Any] = {}
        if self.get("size"):
            data["blob"] = "x" * int(self["size"])
        if self.get("depth"):
            deep: Any = 1
            for _ in range(int(self["depth"])):
                deep = [deep]
            data["deep"] = deep
        return FWAction(stored_data=data, update_spec={"upstream_done": True})
