"""``fwspool emit``: one event from a shell job script (:func:`fwspool.emit.append_event`)."""

from __future__ import annotations

import click

from fwspool.cli.common import reports_errors
from fwspool.cli.options import fw_id_option, group_readable_option, launch_dir_option, launch_id_option
from fwspool.events import EVENT_CLASSES


@click.command()
@launch_dir_option("The launch directory (its FW_offline.json gives the launch id).")
@launch_id_option("Launch id, if there is no FW_offline.json.")
@fw_id_option("Firework id to record with the event [default: the fw_id in the launch dir's FW.json].")
@click.option(
    "--data", "data_json", default=None, metavar="JSON", help="The event's fields as a JSON object."
)
@group_readable_option
@click.argument("event_type", type=click.Choice(sorted(EVENT_CLASSES)))
@reports_errors
def emit(
    launch_dir: str,
    launch_id: int | None,
    fw_id: int | None,
    data_json: str | None,
    spool_mode: int,
    event_type: str,
) -> None:
    """Append one event to the spool from a shell job script.

    Times left out are now (UTC): `fwspool emit ping`; `fwspool emit completed --data
    '{"state": "COMPLETED", "action": {"stored_data": {"energy": -1.5}}}'`; `fwspool emit note
    --data '{"step": "relaxed"}'`.
    """
    from fwspool.emit import append_event

    record, path = append_event(
        launch_dir, event_type, data_json, launch_id=launch_id, fw_id=fw_id, spool_mode=spool_mode
    )
    click.echo(f"{event_type} event {record.writer}-{record.seq} written to {path}")
