"""The commands that run a playbook against a target: run, check (plan: cli/plans.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from agent import console, errors
from agent.cli import fleets
from agent.cli.app import command, configure_console_logging, fail, interrupt_on_sigterm
from agent.cli.connection import connect_to
from agent.cli.options import (
    CatalogArgs,
    ConnectionArgs,
    FleetArgs,
    OutputArgs,
    PlanArgs,
    catalog_options,
    connection_options,
    flag_of,
    fleet_options,
    given,
    junit_option,
    output_options,
    plan_options,
    playbook_option,
    run_dir_option,
)
from agent.cli.run_options import BootTestArgs, RunArgs, boot_test_options, run_options
from agent.outcome import ExitCode
from agent.startup import imports_kept

if TYPE_CHECKING:
    from agent.runner import RunOutcome, RunRequest

# What runs after a successful run (--boot-test), given the outcome and the log format.
AfterRun = Callable[["RunOutcome", str], ExitCode]

# `run --resume` takes these from the run's journal: giving one is refused.
_FROM_THE_JOURNAL = (
    "playbook",
    "profile",
    "backup",
    "no_backup",
    "reason",
    "run_dir",
    "var_items",
    "var_files",
    "only",
    "skip",
    "tags",
    "profiles_dirs",
    "playbooks_dirs",
    "platform",
    "capture",
    "replace_version",
)


@dataclass(frozen=True)
class _Invocation:
    """One `run` or `check` as its options give it."""

    playbook: str
    connection: ConnectionArgs
    run: RunArgs
    catalog: CatalogArgs
    plan: PlanArgs
    output: OutputArgs
    junit: Path | None


@command()
@connection_options
@fleet_options
@playbook_option
@run_options
@boot_test_options
@catalog_options
@plan_options
@output_options
@junit_option
def run(
    connection_args: ConnectionArgs,
    fleet_args: FleetArgs,
    playbook: str,
    run_args: RunArgs,
    boot_test_args: BootTestArgs,
    catalog_args: CatalogArgs,
    plan_args: PlanArgs,
    output_args: OutputArgs,
    junit: Path | None,
) -> None:
    """Run a playbook (default: generalize) against a target, or resume one (--resume)."""
    try:
        after = _boot_test_after_run(boot_test_args)
    except errors.ImagePrepError as exc:
        fail(exc)
    invocation = _Invocation(
        playbook, connection_args, run_args, catalog_args, plan_args, output_args, junit
    )
    if fleets.is_fleet(fleet_args, run_args.resume):
        _run_fleet("run", invocation, fleet_args, "--boot-test" if after is not None else None)
    _run_playbook(invocation, after=after)


@command()
@connection_options
@fleet_options
@run_dir_option
@catalog_options
@plan_options
@output_options
@junit_option
def check(
    connection_args: ConnectionArgs,
    fleet_args: FleetArgs,
    run_dir: Path | None,
    catalog_args: CatalogArgs,
    plan_args: PlanArgs,
    output_args: OutputArgs,
    junit: Path | None,
) -> None:
    """Run only the preflight checks; changes nothing on the target."""
    run_args = RunArgs(run_dir=run_dir)  # no backup, no resume: nothing is changed
    invocation = _Invocation(
        "check", connection_args, run_args, catalog_args, plan_args, output_args, junit
    )
    if fleets.is_fleet(fleet_args, None):
        _run_fleet("check", invocation, fleet_args, None)
    _run_playbook(invocation)


def _run_playbook(invocation: _Invocation, *, after: AfterRun | None = None) -> NoReturn:
    """Check the options, run, print the summary (and JUnit), exit with the run's code."""
    # What the run needs is imported here, without collections (agent/startup.py): the
    # runner, then the target's transport, which checking an --identity key imports.
    with imports_kept():
        from agent.executors import import_transport
        from agent.progress import print_summary

    log_format = invocation.output.log_format
    try:
        configure_console_logging(log_format)
        fleets.refuse_fleet_options()
        with imports_kept():
            request = _run_request(invocation)
            import_transport(request.target.scheme)
        if after is not None and request.target.is_windows:
            # boot-test reads and boots Linux disks only (ext4 root, cloud-init's NoCloud
            # seed); refused before anything changes, not after a good Sysprep.
            raise errors.UsageError(
                f"target {request.target.display}: --boot-test boots Linux disks only"
            )
    except errors.ImagePrepError as exc:
        fail(exc)
    interrupt_on_sigterm()
    outcome = _execute(request, invocation.output)
    print_summary(outcome, log_format)
    if invocation.junit is not None:
        _write_junit(invocation.junit, outcome.result)
    code = outcome.exit_code
    if after is not None and code is ExitCode.OK:
        code = after(outcome, log_format)  # e.g. --boot-test
    sys.exit(int(code))


def _run_fleet(
    kind: str, invocation: _Invocation, fleet_args: FleetArgs, boot_test: str | None
) -> NoReturn:
    """run/check --inventory, or run --resume FLEET_DIR (agent/cli/fleets.py)."""
    one_vm = boot_test or ("--junit" if invocation.junit is not None else None)
    if invocation.run.resume is not None:
        try:
            _check_resume_flags()
        except errors.ImagePrepError as exc:
            fail(exc)
    fleets.run_fleet(
        kind,
        invocation.playbook,
        invocation.connection,
        invocation.run,
        invocation.catalog,
        invocation.plan,
        invocation.output,
        fleet_args,
        one_vm_given=one_vm,
    )


def _run_request(invocation: _Invocation) -> RunRequest:
    """The runner's request, or a UsageError naming the option that is wrong."""
    from agent.runner import RunRequest

    run_args, plan_args, catalog_args = invocation.run, invocation.plan, invocation.catalog
    url = _target_url(invocation.connection, run_args.resume)
    no_backup_reason = _no_backup_reason(run_args)
    connection = connect_to(invocation.connection, url)
    var_overrides = plan_args.var_overrides()
    return RunRequest(
        target=connection.target,
        playbook=invocation.playbook,
        profile=plan_args.profile,
        ssh_options=connection.ssh,
        winrm_options=connection.winrm,
        backup_spec=run_args.backup,
        no_backup_reason=no_backup_reason,
        run_dir=run_args.run_dir,
        profiles_dirs=catalog_args.profiles_dirs,
        playbooks_dirs=catalog_args.playbooks_dirs,
        var_overrides=var_overrides.values,
        var_origins=var_overrides.origins,
        selection=plan_args.selection(),
        log_format=invocation.output.log_format,
        resume=run_args.resume,
        platform_spec=run_args.platform,
        capture_spec=run_args.capture,
        replace_version=run_args.replace_version,
    )


def _target_url(connection_args: ConnectionArgs, resume: Path | None) -> str:
    """--target, or for --resume without it the target the run's journal names."""
    url = connection_args.target_url
    if resume is not None:
        _check_resume_flags()
        if not url:
            from agent.resume import recorded_target

            url = recorded_target(resume)
    if not url:
        raise errors.UsageError("--target URL is required (e.g. ssh://azureuser@vm.example.com)")
    return url


def _check_resume_flags() -> None:
    """--resume continues the run as it was planned: its plan options come from its journal."""
    fixed = [flag_of(name) for name in _FROM_THE_JOURNAL if given(name)]
    if fixed:
        raise errors.UsageError(
            f"--resume continues a run with the options it was started with (its journal "
            f"has them); {fixed[0]} cannot be given with it"
        )


def _no_backup_reason(run_args: RunArgs) -> str | None:
    """The --reason of a --no-backup run; None when a backup is taken."""
    if run_args.reason and not run_args.no_backup:
        raise errors.UsageError("--reason goes with --no-backup")
    if run_args.no_backup and not run_args.reason:
        raise errors.UsageError("--no-backup needs --reason TEXT (it is recorded in the report)")
    return run_args.reason if run_args.no_backup else None


def _execute(request: RunRequest, output_args: OutputArgs) -> RunOutcome:
    """The run, its steps shown as they go (unless --quiet or JSON)."""
    from agent.progress import ConsoleProgress
    from agent.runner import execute

    if output_args.verbose and output_args.quiet:
        fail(errors.UsageError("-v/--verbose and -q/--quiet contradict each other"))
    progress = ConsoleProgress(
        enabled=output_args.log_format == "text" and not output_args.quiet,
        verbose=output_args.verbose,
    )
    try:
        return execute(request, progress)
    except errors.ImagePrepError as exc:  # refused before a run folder was written
        fail(exc)
    finally:
        progress.close()


def _write_junit(path: Path, result: Mapping[str, Any]) -> None:
    """The run's exit code stands even if its JUnit copy cannot be written: warn instead."""
    from agent.junit import write_junit

    try:
        write_junit(path, result)
    except OSError as exc:
        click.echo(
            console.clean(f"imageprep: warning: --junit {path}: not written: {exc.strerror}"),
            err=True,
        )


def _boot_test_after_run(args: BootTestArgs) -> AfterRun | None:
    """Validate run's --boot-test flags up front; return what runs after a successful run."""
    disk = args.boot_test_disk
    if disk is not None and not args.boot_test:
        raise errors.UsageError("--boot-test-disk goes with --boot-test")
    if not args.boot_test:
        return None
    if disk is None:
        raise errors.UsageError(
            "--boot-test needs --boot-test-disk PATH: the VM's disk image as this machine "
            "sees it (the backup providers do not hand out disks yet)"
        )
    from agent.boottest import boot_test_after_run, preflight_host

    preflight_host(disk)  # missing qemu or no such disk: say so before the VM is changed

    def after(outcome: RunOutcome, log_format: str) -> ExitCode:
        return boot_test_after_run(
            outcome, disk, timeout=args.boot_test_timeout, log_format=log_format
        )

    return after
