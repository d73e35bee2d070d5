"""The contract of ``result.json``, as a pydantic model that `imageprep schema result` prints.

Pipelines read result.json; this is what they may rely on. The runner writes plain dicts
(cheap to rewrite after every step), and tests validate real result.json files against
this model, so the two cannot drift: a field the runner writes and this model does not
describe fails those tests. New fields may appear in later versions
(``additionalProperties`` stays open), so consumers should ignore what they do not know.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ResultDocument"]

StepStatusName = Literal[
    "ok", "skipped", "ignored", "failed", "timed_out", "disconnected", "not_run", "running",
    "unknown", "interrupted",
]  # fmt: skip


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class StepRecord(_Open):
    """One planned step's outcome (``steps[]``, ``verification[]``)."""

    phase: str
    name: str
    status: StepStatusName
    exit_code: int | None = None
    attempts: int | None = None
    duration: float | None = Field(default=None, description="seconds")
    message: str | None = None
    destructive: bool | None = None
    disconnected: bool | None = None
    stdout_tail: str | None = Field(default=None, description="last 8 KiB, redacted")
    stderr_tail: str | None = Field(default=None, description="last 8 KiB, redacted")


class BackupReference(_Open):
    """What the backup provider recorded; ``restore_hint`` is a command to paste."""

    provider: str
    reference: str
    created_at: str
    duration: float
    sha256: str | None = None
    size_bytes: int | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    restore_hint: str


class PlannedStepRecord(_Open):
    index: int
    phase: str
    name: str
    description: str
    command: str = Field(description="exact command; '(no_log: hidden)' for no_log steps")
    become: bool
    timeout: int
    destructive: bool
    when: str | None = None
    condition: bool | None = None
    skip_reason: str | None = None


class PlanRecord(_Open):
    profile: dict[str, Any]
    playbook: dict[str, Any]
    requires_backup: bool
    phases: list[str]
    vars: dict[str, Any]
    backup_paths: list[str]
    steps: list[PlannedStepRecord]


class Session(_Open):
    session: int
    started_at: str


class VmLockHolderRecord(_Open):
    controller: str = Field(description="host name of the controller that ran it")
    run_id: str
    pid: int
    started_at: str
    shell: str | None = Field(default=None, description="Windows: the WinRS shell holding it")


class VmLockRecord(_Open):
    """The lock on the VM itself (README "One run per VM")."""

    where: str = Field(description="the lock's file on the VM")
    holder: VmLockHolderRecord
    stale_holder: VmLockHolderRecord | None = Field(
        default=None, description="a record left by a run that ended without releasing it"
    )


class ResultDocument(_Open):
    """result.json: one run of imageprep against one target."""

    schema_version: int = Field(description="bumped when a field changes meaning or goes")
    run_id: str
    tool_version: str
    started_at: str = Field(description="UTC, ISO 8601")
    finished_at: str | None = None
    status: Literal["running", "succeeded", "failed", "interrupted"]
    exit_code: int | None = Field(default=None, description="the README's exit-code table")
    exit_reason: str | None = Field(default=None, description="the exit code's name")
    message: str | None = Field(default=None, description="one line, redacted")
    target: str = Field(description="URL without any secret")
    playbook: str
    playbook_file: str | None = Field(default=None, description="the YAML file that won")
    profile: str = Field(description="asked for ('auto') until the plan names the match")
    profile_file: str | None = Field(default=None, description="the YAML file that won")
    backup: BackupReference | None = None
    backup_waiver: str | None = Field(default=None, description="--no-backup --reason")
    point_of_no_return_reached: bool
    powered_off: bool
    failed_step: str | None = Field(default=None, description="phase/name")
    facts: dict[str, Any] | None = None
    plan: PlanRecord | None = None
    steps: list[StepRecord]
    verification: list[StepRecord] | None = None
    vm_lock: VmLockRecord | None = Field(
        default=None, description="absent until taken, and for transports without one"
    )
    log_file: str
    journal_file: str
    sessions: list[Session]
