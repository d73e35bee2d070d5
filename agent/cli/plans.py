"""`plan`: the steps and exact commands a run would execute, offline or from a target.

Its own module, apart from run and check (cli/runs.py): an offline `plan --profile ID`
then builds only its own options, not the 80 or so of run and check.
"""

from __future__ import annotations

import click

from agent import console, errors
from agent.cli import fleets
from agent.cli.app import command, configure_console_logging, fail
from agent.cli.options import (
    CatalogArgs,
    ConnectionArgs,
    FleetArgs,
    OutputArgs,
    PlanArgs,
    catalog_options,
    connection_options,
    fleet_options,
    format_option,
    output_options,
    plan_options,
    playbook_option,
)


@command()
@connection_options
@fleet_options
@playbook_option
@format_option
@catalog_options
@plan_options
@output_options
def plan(
    connection_args: ConnectionArgs,
    fleet_args: FleetArgs,
    playbook: str,
    output_format: str,
    catalog_args: CatalogArgs,
    plan_args: PlanArgs,
    output_args: OutputArgs,
) -> None:
    """Show the steps and exact commands a run would execute; changes nothing.

    With --target the facts are read from the target (read-only); without it, give
    --profile ID and conditions that need facts are shown as undecided.
    """
    from agent.planning import show_plan

    if fleet_args.inventory is not None:
        fleets.plan_fleet(
            playbook,
            output_format,
            connection_args,
            catalog_args,
            plan_args,
            output_args,
            fleet_args,
        )
    try:
        fleets.refuse_fleet_options()
        url = connection_args.target_url
        if url:  # without a target nothing logs: no structlog to set up
            configure_console_logging(output_args.log_format)
        connection = None
        if url:  # here: `plan --profile ID` reads no secret and builds no transport options
            from agent.cli.connection import connect_to

            connection = connect_to(connection_args, url)
        var_overrides = plan_args.var_overrides()
        text = show_plan(
            target_url=connection.url if connection else None,
            ssh_options=connection.ssh if connection else None,
            winrm_options=connection.winrm if connection else None,
            playbook=playbook,
            profile=plan_args.profile,
            profiles_dirs=catalog_args.profiles_dirs,
            playbooks_dirs=catalog_args.playbooks_dirs,
            var_overrides=var_overrides.values,
            var_origins=var_overrides.origins,
            selection=plan_args.selection(),
            as_json=output_format == "json",
        )
    except errors.ImagePrepError as exc:
        fail(exc)
    click.echo(console.clean(text))
