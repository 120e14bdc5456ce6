from fireworks import Firework, ScriptTask


def test_launchpad_fixture_talks_to_a_real_server(launchpad):
    launchpad.add_wf(Firework(ScriptTask.from_str("echo hi"), name="one"))
    assert launchpad.get_fw_ids() == [1]
    assert "fw_id_1" in launchpad.fireworks.index_information()
