"""Exit codes: one per outcome, decided here and nowhere else (documented in README)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from agent import errors


class ExitCode(IntEnum):
    OK = 0
    INTERNAL_ERROR = 1  # a bug: please report it with the run folder
    USAGE = 2  # bad command line, invalid YAML, unknown profile/playbook; nothing contacted
    PREFLIGHT_FAILED = 3  # a preflight check failed; nothing on the VM was changed
    CONNECTION_FAILED = 4  # unreachable, login refused, host key unknown/changed, sudo refused
    FAILED_BEFORE_POINT_OF_NO_RETURN = 5  # a step failed; the VM is still usable
    FAILED_AFTER_POINT_OF_NO_RETURN = 6  # generalization began; restore from the backup
    VERIFICATION_FAILED = 7  # generalized, but a verification check failed
    BACKUP_FAILED = 8  # the backup could not be taken; nothing on the VM was changed
    BOOT_FAILED = 9  # boot-test: the disk did not come up (SSH) within the time-out
    HOST_TOOL_MISSING = 10  # a host tool (qemu, qemu-img, debugfs, ...) is not installed
    TARGET_BUSY = 11  # another run holds this target (controller or VM lock); nothing changed
    PLATFORM_FAILED = 12  # the platform (Azure, libvirt) failed: power state or capture
    INTERRUPTED = 130  # Ctrl-C / SIGTERM; see result.json for where it stopped


# What each code means for the VM, as --help prints it (the README has the same table).
EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success (generalized, verified, powered off; or check/plan passed)",
    ExitCode.INTERNAL_ERROR: "a bug: please report it with the run folder",
    ExitCode.USAGE: "bad flags, invalid YAML, unknown profile/playbook: nothing changed",
    ExitCode.PREFLIGHT_FAILED: "a preflight check failed: the VM is unchanged",
    ExitCode.CONNECTION_FAILED: "unreachable, login refused, host key unknown or changed",
    ExitCode.FAILED_BEFORE_POINT_OF_NO_RETURN: "a step failed: the VM is still usable",
    ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN: "failed past the point of no return: restore "
    "from the backup",
    ExitCode.VERIFICATION_FAILED: "generalized but not proven; left running for inspection",
    ExitCode.BACKUP_FAILED: "the backup could not be taken: the VM is unchanged",
    ExitCode.BOOT_FAILED: "boot-test: the disk did not come up in time",
    ExitCode.HOST_TOOL_MISSING: "a host tool (qemu, qemu-img, debugfs, ...) is missing",
    ExitCode.TARGET_BUSY: "another run holds this target's lock",
    ExitCode.PLATFORM_FAILED: "the platform (Azure, libvirt) failed or refused: power state "
    "or capture",
    ExitCode.INTERRUPTED: "Ctrl-C or SIGTERM: result.json says where it stopped",
}


# A fleet's exit code is its worst host's, worst first (README, "Exit codes"). First what
# left the fleet's end unknown: an interruption (hosts stopped half-way) and a bug. Then
# VMs that were changed and are not finished, most damaged first: restore from the backup
# (6), generalized but not proven (7), generalized but the platform did not stop or
# capture it (12), a disk that did not boot (9). Then a VM still usable after a failed
# step (5). Last the VMs nothing changed, operational failures before configuration ones:
# no backup (8), unreachable (4), busy (11), unfit (3), a controller tool missing (10),
# bad input (2). 0 only when every host is 0.
FLEET_EXIT_ORDER: tuple[ExitCode, ...] = (
    ExitCode.INTERRUPTED,
    ExitCode.INTERNAL_ERROR,
    ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN,
    ExitCode.VERIFICATION_FAILED,
    ExitCode.PLATFORM_FAILED,
    ExitCode.BOOT_FAILED,
    ExitCode.FAILED_BEFORE_POINT_OF_NO_RETURN,
    ExitCode.BACKUP_FAILED,
    ExitCode.CONNECTION_FAILED,
    ExitCode.TARGET_BUSY,
    ExitCode.PREFLIGHT_FAILED,
    ExitCode.HOST_TOOL_MISSING,
    ExitCode.USAGE,
    ExitCode.OK,
)


def worst_exit_code(codes: Iterable[ExitCode]) -> ExitCode:
    """The fleet's exit code: the first of ``codes`` in :data:`FLEET_EXIT_ORDER` (OK if none)."""
    present = set(codes)
    return next((code for code in FLEET_EXIT_ORDER if code in present), ExitCode.OK)


def exit_code_for_error(exc: BaseException) -> ExitCode:
    """The exit code for an error that ended a command before or outside the engine."""
    if isinstance(exc, errors.HostToolMissing):
        return ExitCode.HOST_TOOL_MISSING
    if isinstance(exc, errors.TargetBusy):
        return ExitCode.TARGET_BUSY
    if isinstance(exc, errors.PlatformError):
        return ExitCode.PLATFORM_FAILED
    if isinstance(exc, errors.ResumeUnsafe | errors.PoweredOnAgain):
        return ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN
    if isinstance(
        exc, errors.UsageError | errors.ValidationError | errors.RunDirError | errors.DiskError
    ):
        return ExitCode.USAGE
    if isinstance(exc, errors.TransportError | errors.CommandTimeout):
        # A step's time-out is the engine's to judge; one outside a step (reading the
        # facts) means the target stopped answering, which is a connection failure.
        return ExitCode.CONNECTION_FAILED
    if isinstance(exc, errors.BackupError):
        return ExitCode.BACKUP_FAILED
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return ExitCode.INTERNAL_ERROR
