"""The option groups only `run` takes: backup, resume, what comes after (--boot-test).

Apart from cli/options.py (see its docstring for how a group works) so that commands that
do not take them (plan, check, the offline ones) do not build them at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from agent.cli.options import REPLACE_VERSION, RUN_DIR, file_type, opt, option_group

# -- run: backup, run folder, resume, what comes after (run; check takes --run-dir) --------


@dataclass(frozen=True)
class RunArgs:
    """What `run` adds to a plan; `check` uses the defaults and its own --run-dir."""

    backup: str | None = None
    no_backup: bool = False
    reason: str | None = None
    run_dir: Path | None = None
    resume: Path | None = None
    platform: str | None = None
    capture: str | None = None
    replace_version: bool = False


run_options = option_group(
    RunArgs,
    "Run",
    opt(
        "--backup",
        metavar="PROVIDER:ARG",
        help="Backup taken before anything changes: archive:DIR (tar.gz of the profile's "
        "backup paths, sha256 recorded), command:'CMD' (your snapshot CLI; its stdout is the "
        "reference), azure-snapshot:/subscriptions/SUB/resourceGroups/RG/providers/"
        "Microsoft.Compute/virtualMachines/VM[?data-disks=true] (Azure snapshots of the VM's "
        "disks), libvirt:DOMAIN[?uri=URI&snapshot=NAME] (a libvirt snapshot).",
    ),
    opt("--no-backup", is_flag=True, help="Run without a backup (needs --reason)."),
    opt("--reason", metavar="TEXT", help="Why there is no backup; recorded in the report."),
    RUN_DIR,
    opt(
        "--resume",
        type=click.Path(path_type=Path),
        metavar="RUN_DIR",
        help="Continue the run in RUN_DIR after an interruption or failure: same plan, same "
        "backup, from where it stopped (--target may be left out).",
    ),
    opt(
        "--platform",
        metavar="SCHEME:ARG",
        help="Where the VM runs, asked for its power state after shutdown: azure:VM_ID or "
        "libvirt:DOMAIN[?uri=URI] [default: the VM --backup azure-snapshot:/libvirt: names].",
    ),
    opt(
        "--capture",
        metavar="SPEC",
        help="After a verified generalization, make an image: gallery:…/versions/X.Y.Z or "
        "image:…/images/NAME (Azure; see README, Capture).",
    ),
    REPLACE_VERSION,
)


@dataclass(frozen=True)
class BootTestArgs:
    """`run --boot-test`: boot the generalized disk once after a successful run."""

    boot_test: bool
    boot_test_disk: Path | None
    boot_test_timeout: float


boot_test_options = option_group(
    BootTestArgs,
    "Run",
    opt(
        "--boot-test",
        is_flag=True,
        help="After a successful generalize, boot the disk once as a new machine "
        "(see `imageprep boot-test`); needs --boot-test-disk.",
    ),
    opt(
        "--boot-test-disk",
        type=file_type(),
        metavar="PATH",
        help="The VM's disk image (raw or qcow2) as this machine sees it once the VM is off.",
    ),
    opt(
        "--boot-test-timeout",
        type=click.FloatRange(min=1),
        default=600,
        show_default=True,
        metavar="SECONDS",
        help="How long the boot test waits for the disk to come up.",
    ),
)
