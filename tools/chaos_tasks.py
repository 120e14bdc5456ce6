"""FireTasks for the real `fwspool rlaunch` runs of ``tools/chaos.py``.

The harness puts ``tools/`` on ``PYTHONPATH`` of every process it starts (rlaunch on the "compute
node", ingest and push on the "login node"), so FireWorks finds these tasks by their
``chaos_tasks.<Name>`` path, as a site's own task modules are found.
"""

from __future__ import annotations

from typing import Any

from fireworks import Firework, FWAction, ScriptTask
from fireworks.core.firework import FiretaskBase
from fireworks.utilities.fw_utilities import explicit_serialize


@explicit_serialize
class ChaosGrowTask(FiretaskBase):
    """An FWAction with every dynamic feature: stored data, update_spec, a non-idempotent mod_spec
    (``_push``: applied twice, it shows), an addition and a detour."""

    optional_params = ["label"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        label = self.get("label", "grow")
        return FWAction(
            stored_data={"label": label, "seed": fw_spec.get("seed")},
            update_spec={"grown_by": label},
            mod_spec=[{"_push": {"history": label}}, {"_inc": {"counter": 1}}],
            additions=[Firework(ScriptTask.from_str("echo added"), name=f"{label}-addition")],
            detours=[Firework(ScriptTask.from_str("echo detour"), name=f"{label}-detour")],
        )
