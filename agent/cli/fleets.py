"""`run|check|plan --inventory` and `run --resume FLEET_DIR`: many runs from one inventory.

The fleet itself (hosts, threads, fleet.json) is agent/fleet.py; this module turns the
options into its FleetPlan and FleetSettings and refuses what a fleet cannot take.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from agent import console, errors
from agent.cli.app import configure_console_logging, fail, interrupt_on_sigterm
from agent.cli.options import (
    CatalogArgs,
    ConnectionArgs,
    FleetArgs,
    OutputArgs,
    PlanArgs,
    flag_of,
    given,
)
from agent.startup import imports_kept

if TYPE_CHECKING:
    from agent.cli.run_options import RunArgs
    from agent.fleet import FleetPlan, FleetSettings
    from agent.inventory import InventoryHost

# Options about one VM: a fleet refuses them rather than apply them to every host.
_ONE_VM = ("ssh_config", "platform", "capture", "replace_version")


def is_fleet(fleet_args: FleetArgs, resume: Path | None) -> bool:
    """--inventory, or --resume of a folder that holds a fleet.json."""
    if fleet_args.inventory is not None:
        return True
    if resume is None:
        return False
    from agent.fleet_record import is_fleet_dir

    return is_fleet_dir(resume)


def refuse_fleet_options() -> None:
    """--limit and --forks without --inventory: say so rather than ignore them."""
    for name in ("limit", "forks"):
        if given(name):
            raise errors.UsageError(f"{flag_of(name)} goes with --inventory")


def run_fleet(
    command: str,
    playbook: str,
    connection_args: ConnectionArgs,
    run_args: RunArgs,
    catalog_args: CatalogArgs,
    plan_args: PlanArgs,
    output_args: OutputArgs,
    fleet_args: FleetArgs,
    *,
    one_vm_given: str | None = None,
) -> NoReturn:
    """run/check --inventory, or run --resume FLEET_DIR; exits with the worst host's code."""
    # What the fleet needs is imported without collections (agent/startup.py): the
    # runner here (each host's thread would import it), the hosts' transports below.
    with imports_kept():
        from agent import fleet
        from agent.executors import import_transport

        importlib.import_module("agent.runner")

    try:
        configure_console_logging(output_args.log_format)
        if one_vm_given is not None:
            raise errors.UsageError(f"{one_vm_given} is for one --target, not --inventory")
        if output_args.verbose and output_args.quiet:
            raise errors.UsageError("-v/--verbose and -q/--quiet contradict each other")
        if run_args.resume is not None:
            hosts = _resumed_hosts(run_args.resume)
        else:
            plan = fleet_plan(command, playbook, run_args, catalog_args, plan_args, fleet_args)
            hosts = fleet.select_hosts(plan)
        with imports_kept():
            settings = _settings(connection_args, output_args, fleet_args, hosts)
            for transport in fleet.transports_used(hosts):
                import_transport(transport)
    except errors.ImagePrepError as exc:
        fail(exc)
    interrupt_on_sigterm()
    try:
        if run_args.resume is not None:
            outcome = fleet.resume_fleet(run_args.resume, settings)
        else:
            outcome = fleet.run_fleet(plan, settings, run_args.run_dir)
    except errors.ImagePrepError as exc:  # refused before any host started
        fail(exc)
    fleet.print_fleet_summary(outcome, output_args.log_format)
    sys.exit(int(outcome.exit_code))


def plan_fleet(
    playbook: str,
    output_format: str,
    connection_args: ConnectionArgs,
    catalog_args: CatalogArgs,
    plan_args: PlanArgs,
    output_args: OutputArgs,
    fleet_args: FleetArgs,
) -> NoReturn:
    """plan --inventory: each selected host's plan, read from the host."""
    from agent.fleet import select_hosts
    from agent.fleet_plan import plan_fleet as plan_each
    from agent.fleet_plan import render

    as_json = output_format == "json"
    try:
        configure_console_logging(output_args.log_format)
        from agent.cli.run_options import RunArgs

        plan = fleet_plan("plan", playbook, RunArgs(), catalog_args, plan_args, fleet_args)
        settings = _settings(connection_args, output_args, fleet_args, select_hosts(plan))
        outcome = plan_each(plan, settings, as_json=as_json)
    except errors.ImagePrepError as exc:
        fail(exc)
    click.echo(console.clean(render(outcome, as_json=as_json)))
    sys.exit(int(outcome.exit_code))


def fleet_plan(
    command: str,
    playbook: str,
    run_args: RunArgs,
    catalog_args: CatalogArgs,
    plan_args: PlanArgs,
    fleet_args: FleetArgs,
) -> FleetPlan:
    """What every host runs. --playbook/--profile given win; else each host's imageprep_*."""
    from agent.fleet import FleetPlan

    assert fleet_args.inventory is not None
    var_overrides = plan_args.var_overrides()
    return FleetPlan(
        inventory=fleet_args.inventory,
        limit=fleet_args.limit,
        command=command,
        playbook=playbook if command == "check" or given("playbook") else None,
        profile=plan_args.profile if given("profile") else None,
        backup_spec=run_args.backup,
        no_backup_reason=_no_backup_reason(run_args),
        var_overrides=var_overrides.values,
        var_origins=var_overrides.origins,
        selection=plan_args.selection(),
        profiles_dirs=catalog_args.profiles_dirs,
        playbooks_dirs=catalog_args.playbooks_dirs,
    )


def _no_backup_reason(run_args: RunArgs) -> str | None:
    if run_args.reason and not run_args.no_backup:
        raise errors.UsageError("--reason goes with --no-backup")
    if run_args.no_backup and not run_args.reason:
        raise errors.UsageError("--no-backup needs --reason TEXT (it is recorded in the report)")
    return run_args.reason if run_args.no_backup else None


def _resumed_hosts(fleet_dir: Path) -> tuple[InventoryHost, ...]:
    """The hosts of the fleet in FLEET_DIR, from the inventory it recorded."""
    from agent.fleet import FleetPlan
    from agent.fleet_record import load_fleet
    from agent.inventory import load_inventory

    if given("inventory") or given("limit"):
        raise errors.UsageError(
            "--resume continues a fleet on the hosts it was started with: "
            "--inventory and --limit cannot be given with it"
        )
    recorded = load_fleet(fleet_dir)
    names = {host.name for host in recorded.hosts}
    inventory = FleetPlan.from_dict(recorded.request).inventory
    return tuple(h for h in load_inventory(inventory).hosts if h.name in names)


def _settings(
    connection_args: ConnectionArgs,
    output_args: OutputArgs,
    fleet_args: FleetArgs,
    hosts: tuple[InventoryHost, ...],
) -> FleetSettings:
    from agent.cli.connection import fleet_connection
    from agent.fleet import FleetSettings, transports_used

    if connection_args.target_url:
        raise errors.UsageError(
            "--inventory and --target exclude each other: the inventory names the hosts"
        )
    for name in _ONE_VM:
        if given(name):
            raise errors.UsageError(f"{flag_of(name)} is for one --target, not --inventory")
    ssh, winrm = fleet_connection(connection_args, transports_used(hosts))
    return FleetSettings(
        ssh_options=ssh,
        winrm_options=winrm,
        forks=fleet_args.forks,
        log_format=output_args.log_format,
        verbose=output_args.verbose,
        quiet=output_args.quiet,
    )
