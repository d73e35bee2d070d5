"""The one error tree of imageprep.

Every failure the tool knows about is one of these; anything else is a bug and exits 1.
Transport libraries (paramiko, socket, pywinrm, requests) never leak past
``agent/executors``: their errors are translated there, at the boundary, into this tree.

::

    ImagePrepError
    ├── UsageError                  bad command line (exit 2)
    │   └── ResumeError             --resume RUN_DIR cannot be resumed as asked (exit 2)
    │       └── JournalError        journal.jsonl is unreadable; carries file:line
    ├── ValidationError             a YAML file, a plan or a value is wrong (exit 2)
    │   ├── SchemaError             one file failed the schema; carries file:line:col
    │   ├── CatalogError            unknown profile/playbook, no profile matches
    │   ├── InventoryError          an inventory is invalid or --limit selects nothing
    │   └── CaptureMismatch         the image target does not fit the VM, or exists already
    ├── TransportError              talking to the target failed (exit 4)
    │   ├── ConnectError            host unreachable, refused, DNS, SSH banner
    │   ├── AuthenticationError     login refused
    │   │   └── PrivilegeError      sudo refused or not possible
    │   ├── HostKeyError            unknown or changed host key
    │   ├── Disconnected            the connection went away mid-command
    │   └── TransferError           a file transfer failed
    ├── CommandTimeout              a command ran past its deadline (a step's: the step
    │                               fails; any other, e.g. reading facts: exit 4)
    ├── BackupError                 the backup could not be taken (VM untouched)
    ├── RunDirError                 the run folder cannot be written
    ├── DiskError                   a disk image cannot be read or converted (exit 2)
    │   └── ToolFailed              a host tool (qemu-img, debugfs, ...) failed on it
    ├── HostToolMissing             qemu, qemu-img, debugfs, ... not installed (exit 10)
    ├── TargetBusy                  another run holds the target's lock (exit 11)
    ├── PlatformError               the platform (Azure, libvirt) failed or refused (exit 12)
    ├── PoweredOnAgain              the platform says the VM runs after shutdown (exit 6)
    └── ResumeUnsafe                a destructive step's outcome is unknown (exit 6)

Ctrl-C and SIGTERM are not in this tree: both arrive as KeyboardInterrupt (the CLI's
SIGTERM handler raises it), and that one path ends a run with exit 130.

Exit codes are decided in one place (``agent.outcome``); errors only describe what broke.
"""

from __future__ import annotations

from dataclasses import dataclass


class ImagePrepError(Exception):
    """Root of every error imageprep raises on purpose."""


class UsageError(ImagePrepError):
    """The command line does not make sense."""


class ResumeError(UsageError):
    """``run --resume RUN_DIR``: the folder, its journal or the target do not fit.

    Raised before anything on the target is changed.
    """


class JournalError(ResumeError):
    """A journal line cannot be read; the message names ``file:line``."""


class ValidationError(ImagePrepError):
    """Input (YAML, variables, a plan) is invalid; nothing was contacted."""


@dataclass(frozen=True)
class SchemaProblem:
    """One schema violation, located in its file."""

    file: str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class SchemaError(ValidationError):
    """One or more schema violations in YAML files."""

    def __init__(self, problems: list[SchemaProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class CatalogError(ValidationError):
    """A profile or playbook is unknown, or no profile matches the target."""


class InventoryError(ValidationError):
    """An inventory file is invalid, or ``--limit`` selects no host; names file:line and host."""


class TransportError(ImagePrepError):
    """Talking to the target failed."""


class ConnectError(TransportError):
    """The target could not be reached."""


class AuthenticationError(TransportError):
    """The target refused our credentials."""


class PrivilegeError(AuthenticationError):
    """Becoming root (sudo) was refused or is impossible."""


class HostKeyError(TransportError):
    """The target's host key is unknown (strict policy) or changed (always refused)."""


class Disconnected(TransportError):
    """The connection dropped while a command was running or being started."""


class TransferError(TransportError):
    """A file transfer to or from the target failed."""


class CommandTimeout(ImagePrepError):
    """A command did not finish within its deadline; it was killed on the target."""

    def __init__(self, message: str, *, stdout: str = "", stderr: str = "") -> None:
        super().__init__(message)
        self.stdout = stdout
        self.stderr = stderr


class BackupError(ImagePrepError):
    """The backup could not be taken; nothing destructive has run."""


class RunDirError(ImagePrepError):
    """The run folder could not be created or written."""


class DiskError(ImagePrepError):
    """A disk image cannot be read, inspected or converted (boot-test, vhd)."""


class ToolFailed(DiskError):
    """A host tool exited non-zero on a disk image; the message ends with its last line."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


class HostToolMissing(ImagePrepError):
    """A host tool the command needs is not installed; the message names the package."""


class TargetBusy(ImagePrepError):
    """Another imageprep run holds the target: this controller's lock, or the VM's own.

    The message names the holder: its run id, pid and folder (this controller), or its
    controller host and run id (the lock on the VM, agent/vmlock.py; ``holder`` is then
    its record, an ``agent.vmlock.LockHolder``).
    """

    def __init__(self, message: str, holder: object = None) -> None:
        super().__init__(message)
        self.holder = holder


class CaptureMismatch(ValidationError):
    """The image target does not fit the VM (names the field), or it exists already.

    Raised before anything on the VM or in the cloud changes.
    """


class PlatformError(ImagePrepError):
    """The platform (ARM, libvirt) could not be asked, refused, or an operation failed.

    The message says what was being done and, for a 403, the action that was refused.
    """


class PoweredOnAgain(ImagePrepError):
    """After the shutdown the platform reports the VM running (again).

    A generalized VM that boots runs its specialize pass: it is no longer an image
    source. Restore it from the backup.
    """


class ResumeUnsafe(ImagePrepError):
    """Resuming would mean running a destructive step again, or blindly.

    A destructive step started in an earlier session and its outcome is unknown with no
    ``resume_check`` to settle it, or it ran and failed. The VM is past the point of no
    return: restore it from the backup.
    """
