"""FireTasks for dynamic-workflow tests, importable by rlaunch subprocesses (tests/ on PYTHONPATH)."""

from fireworks import Firework, FWAction, ScriptTask
from fireworks.core.firework import FiretaskBase
from fireworks.utilities.fw_utilities import explicit_serialize


@explicit_serialize
class GrowTask(FiretaskBase):
    """Returns an FWAction that adds a child, inserts a detour, and updates/mods the spec."""

    optional_params = ["label"]

    def run_task(self, fw_spec):
        label = self.get("label", "grow")
        return FWAction(
            stored_data={"label": label, "seen": fw_spec.get("seed", 0)},
            update_spec={"grown_by": label},
            mod_spec=[{"_push": {"history": label}}],
            additions=[Firework(ScriptTask.from_str("echo added"), name=f"{label}-addition")],
            detours=[Firework(ScriptTask.from_str("echo detour"), name=f"{label}-detour")],
        )


@explicit_serialize
class FailTask(FiretaskBase):
    def run_task(self, fw_spec):
        raise RuntimeError("this task fails on purpose")
