"""The commands around a generalized disk or VM: boot-test, vhd, upload, capture
(agent/boottest.py, agent/vhd.py, agent/upload.py, agent/capture.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from agent import console, errors
from agent.cli.app import command, fail, interrupt_on_sigterm
from agent.cli.options import log_format_option, opt, replace_version_option, run_dir_option
from agent.outcome import ExitCode


@command("boot-test")
@click.argument("disk", type=click.Path(path_type=Path, dir_okay=False))
@run_dir_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=600,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the disk to boot and let the new user in over SSH.",
)
@click.option(
    "--deprovisioned-user",
    metavar="NAME",
    help="The user generalization deleted; checked absent before and after boot.",
)
@click.option(
    "--previous-machine-id",
    metavar="ID",
    help="The machine-id before generalization; the new one must differ.",
)
@click.option(
    "--accel",
    type=click.Choice(["auto", "kvm", "tcg"]),
    default="auto",
    show_default=True,
    help="auto: KVM where the CPU shows vmx/svm and /dev/kvm opens (TCG if it fails), else TCG.",
)
@click.option(
    "--memory",
    "memory_mib",
    type=click.IntRange(min=256),
    default=1024,
    show_default=True,
    metavar="MIB",
)
@log_format_option
def boot_test(
    disk: Path,
    run_dir: Path | None,
    timeout: float,
    deprovisioned_user: str | None,
    previous_machine_id: str | None,
    accel: str,
    memory_mib: int,
    log_format: str,
) -> None:
    """Boot a generalized DISK (raw or qcow2) once and check it comes up as a new machine.

    DISK is only read: QEMU boots a throwaway overlay with a fresh NoCloud seed (new user,
    new key). A pass is recorded in DISK.boot-test.json for `imageprep vhd`.
    """
    from agent.boottest import BootTestRequest, print_boot_test_summary, run_boot_test

    interrupt_on_sigterm()
    try:
        outcome = run_boot_test(
            BootTestRequest(
                disk=disk,
                run_dir=run_dir,
                timeout=timeout,
                deprovisioned_user=deprovisioned_user,
                previous_machine_id=previous_machine_id,
                accel=accel,
                memory_mib=memory_mib,
                log_format=log_format,
            )
        )
    except errors.ImagePrepError as exc:  # e.g. --run-dir cannot be written: no report yet
        fail(exc)
    print_boot_test_summary(outcome, log_format)
    sys.exit(int(outcome.exit_code))


@command()
@click.argument("spec")
@opt(
    "--platform",
    "platform_spec",
    required=True,
    metavar="azure:VM_ID",
    help="The generalized, stopped VM to capture.",
).decorator("Run")
@replace_version_option
@run_dir_option
def capture(spec: str, platform_spec: str, replace_version: bool, run_dir: Path | None) -> None:
    """Capture a VM that is already generalized and stopped into SPEC (see README, Capture).

    SPEC: gallery:/subscriptions/…/galleries/G/images/DEF/versions/X.Y.Z[?regions=…] or
    image:/subscriptions/…/images/NAME. Deallocates the VM, marks it generalized, makes
    the image; the ids go to result.json and journal.jsonl in the report folder.
    """
    from agent.capture import capture_command

    interrupt_on_sigterm()
    try:
        outcome = capture_command(
            spec, platform_spec, replace_version=replace_version, run_dir=run_dir
        )
    except errors.ImagePrepError as exc:
        fail(exc)
    stream_err = outcome.exit_code is not ExitCode.OK
    click.echo(console.clean(outcome.message), err=stream_err)
    click.echo(f"report: {outcome.run_dir}", err=stream_err)
    sys.exit(int(outcome.exit_code))


@command()
@click.argument("vhd", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--to",
    "to",
    required=True,
    metavar="azure-disk:DISK_ID",
    help="The disk to create (or the one an earlier run of this command left, to resume).",
)
@click.option("--location", required=True, metavar="REGION", help="The disk's region.")
@click.option("--sku", default="Standard_LRS", show_default=True)
@click.option("--zone", default=None, metavar="1|2|3")
@click.option(
    "--os-type", type=click.Choice(["Linux", "Windows"]), default="Linux", show_default=True
)
@click.option(
    "--hyper-v-generation", type=click.Choice(["V1", "V2"]), default="V2", show_default=True
)
@click.option(
    "--architecture", type=click.Choice(["x64", "Arm64"]), default="x64", show_default=True
)
@click.option(
    "--security-type",
    type=click.Choice(["Standard", "TrustedLaunch"]),
    default="Standard",
    show_default=True,
)
@click.option("--force", is_flag=True, help="Upload without a passed boot-test record.")
@click.option(
    "--replace",
    is_flag=True,
    help="Delete an existing disk of that name first (never one attached to a VM), then "
    "upload afresh. Needed after a revoked partial upload, or for another VHD's disk.",
)
def upload(
    vhd: Path,
    to: str,
    location: str,
    sku: str,
    zone: str | None,
    os_type: str,
    hyper_v_generation: str,
    architecture: str,
    security_type: str,
    force: bool,
    replace: bool,
) -> None:
    """Upload VHD (fixed, whole MiB, from `imageprep vhd`) as a new Azure managed disk.

    Creates the disk for upload (tagged imageprep-upload=incomplete and the VHD's sha256),
    writes its non-zero 4 MiB ranges through a write SAS, revokes the access whatever
    happened, checks the disk and tags it complete. Running the same command again
    resumes: only ranges missing from VHD.upload.json are sent to a disk still in
    ActiveUpload; a disk tagged complete is left as it is (exit 0).
    """
    from agent.upload import NotUploadable, ProgressLine, parse_disk_target, upload_vhd

    interrupt_on_sigterm()
    progress = ProgressLine(lambda text: click.echo(text, err=True, nl=False))
    try:
        target = parse_disk_target(to, location=location, sku=sku, zone=zone)
        summary = upload_vhd(
            vhd,
            target,
            force=force,
            os_type=os_type,
            hyper_v_generation=hyper_v_generation,
            architecture=architecture,
            security_type=security_type,
            replace=replace,
            on_progress=progress if sys.stderr.isatty() else (lambda sent, total: None),
        )
    except KeyboardInterrupt:
        click.echo(
            f"imageprep: interrupted: write access was revoked; disk {to} is left "
            "partly written: `imageprep upload --replace` deletes it and uploads again",
            err=True,
        )
        sys.exit(int(ExitCode.INTERRUPTED))
    except NotUploadable as exc:
        click.echo(console.clean(f"imageprep: refused: {exc}"), err=True)
        sys.exit(int(ExitCode.PREFLIGHT_FAILED))
    except errors.ImagePrepError as exc:
        fail(exc)
    click.echo(console.clean(json.dumps(summary, sort_keys=True)))


@command()
@click.argument("disk", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="Convert even though DISK has not passed boot-test.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def vhd(disk: Path, out: Path, force: bool, overwrite: bool) -> None:
    """Convert DISK (raw or qcow2) into OUT, a fixed-size VHD for Azure (size: whole MiB).

    Refuses a DISK that has not passed `imageprep boot-test` unless --force.
    """
    from agent.vhd import NotBootTested, convert_to_vhd

    try:
        result = convert_to_vhd(disk, out, force=force, overwrite=overwrite)
    except NotBootTested as exc:
        click.echo(console.clean(f"imageprep: refused: {exc}"), err=True)
        sys.exit(int(ExitCode.PREFLIGHT_FAILED))
    except errors.ImagePrepError as exc:
        fail(exc)
    rounded = f", rounded up by {result.rounded_up_by} bytes" if result.rounded_up_by else ""
    click.echo(
        f"{result.path}: fixed VHD, {result.virtual_size // (1 << 20)} MiB{rounded}, "
        f"checked (boot-test {result.boot_test})"
    )
