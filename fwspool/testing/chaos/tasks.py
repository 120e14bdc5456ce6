"""FireTasks for the real `fwspool rlaunch` runs of the chaos harness.

They are part of the installed fwspool, so every process the harness starts (rlaunch on the
"compute node", ingest and push on the "login node") finds them by their
``fwspool.testing.chaos.tasks.<Name>`` path, as a site's own installed task modules are found.
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
