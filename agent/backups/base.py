"""What a backup is, what a provider must do, and how ``--backup SCHEME:ARG`` finds one.

The backup is always taken before anything on the VM changes; the engine refuses a
destructive step without a :class:`BackupRecord` (or an explicit, recorded waiver).

Providers live one per module and are imported only when their scheme is asked for, so
a provider with optional dependencies (a cloud SDK) costs nothing to users who do not
use it, and a new one plugs in by adding one :data:`PROVIDERS` entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from agent.errors import UsageError
from agent.executors.base import Executor
from agent.extras import import_for_scheme
from agent.targets import Target


def utc_timestamp() -> str:
    """ISO-8601 UTC with millisecond precision, the form the report uses."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class BackupRecord:
    """Proof that a backup exists: what took it, where it is, how to restore it."""

    provider: str
    reference: str  # snapshot id, archive path: what the user restores from
    created_at: str  # ISO-8601 UTC
    duration: float
    restore_hint: str
    sha256: str | None = None
    size_bytes: int | None = None
    # Read-only view of a private copy: a frozen record must not change under the report.
    details: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "reference": self.reference,
            "created_at": self.created_at,
            "duration": round(self.duration, 3),
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "details": dict(self.details),
            "restore_hint": self.restore_hint,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BackupRecord:
        """Read a record back from result.json or a journal (``--resume``)."""
        return cls(
            provider=str(data["provider"]),
            reference=str(data["reference"]),
            created_at=str(data["created_at"]),
            duration=float(data["duration"]),
            restore_hint=str(data["restore_hint"]),
            sha256=data.get("sha256"),
            size_bytes=data.get("size_bytes"),
            details={str(k): str(v) for k, v in (data.get("details") or {}).items()},
        )


@dataclass(frozen=True)
class BackupContext:
    """What a provider knows about the run it backs up."""

    run_id: str
    target: Target
    paths: tuple[str, ...]  # the profile's backup_paths (absolute, on the target)
    run_dir: Path


@runtime_checkable
class BackupProvider(Protocol):
    """Takes one backup of a target.

    Constructing a provider validates everything that can be checked locally (a
    directory is writable, a command is given), so a bad ``--backup`` fails before
    anything is contacted. ``take`` raises :class:`~agent.errors.BackupError` when no
    usable backup exists afterwards; transport errors pass through unchanged.
    """

    scheme: str

    def describe(self) -> str:
        """One line for the plan and logs, without secrets."""
        ...

    def take(self, executor: Executor, context: BackupContext) -> BackupRecord: ...


@dataclass(frozen=True)
class ProviderEntry:
    """Where a scheme's provider lives; ``extra`` names the pip extra it needs, if any."""

    module: str
    summary: str
    extra: str | None = None


# Each module exposes ``from_arg(arg: str) -> BackupProvider``.
PROVIDERS: dict[str, ProviderEntry] = {
    "archive": ProviderEntry(
        "agent.backups.archive", "stream the profile's backup paths into DIR/*.tar.gz"
    ),
    "command": ProviderEntry(
        "agent.backups.command", "run a local snapshot command; its stdout is the reference"
    ),
    "azure-snapshot": ProviderEntry(
        "agent.backups.azure_snapshot",
        "snapshot an Azure VM's disks: the VM's resource id [?data-disks=true&...]",
        extra="azure",
    ),
    "libvirt": ProviderEntry(
        "agent.backups.libvirt",
        "snapshot a libvirt domain: DOMAIN[?uri=qemu:///system&snapshot=NAME]",
        extra="libvirt",
    ),
}


def _known() -> str:
    return ", ".join(f"{scheme}:" for scheme in sorted(PROVIDERS))


def provider_from_spec(spec: str) -> BackupProvider:
    """``archive:DIR`` or ``command:CMD`` (or any registered scheme) -> a provider."""
    scheme, sep, arg = spec.partition(":")
    entry = PROVIDERS.get(scheme)
    if not sep or entry is None:
        raise UsageError(
            f"--backup {spec!r}: unknown backup provider {scheme!r} (known: {_known()})"
        )
    if not arg.strip():
        raise UsageError(f"--backup {spec!r}: nothing after '{scheme}:' ({entry.summary})")
    module = import_for_scheme("--backup", scheme, entry.module, entry.extra)
    provider: BackupProvider = module.from_arg(arg)
    return provider


#: How much of a failed tool's stderr is kept in the run folder.
STDERR_KEEP_LIMIT = 1 << 20


def stderr_summary(stderr: str, run_dir: Path, file_name: str) -> str:
    """One line for an error message; the whole (redacted) stderr goes to the run folder.

    An error message is one line whatever the tool printed: its last non-empty line, cut
    short, and where the rest is. ``stderr`` must already be redacted.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "(no error output)"
    last = lines[-1] if len(lines[-1]) <= 200 else lines[-1][:197] + "..."
    if len(lines) == 1:
        return last
    kept = stderr[-STDERR_KEEP_LIMIT:]
    try:
        (run_dir / file_name).write_text(kept, encoding="utf-8")
    except OSError:
        return f"{last} (and {len(lines) - 1} more line(s) of stderr, not saved)"
    return f"{last} (all {len(lines)} lines of stderr: {run_dir / file_name})"
