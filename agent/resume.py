"""Continuing a run (``run --resume RUN_DIR``): from its journal to what the runner needs.

The journal (:mod:`agent.journal`) only appends and reads back; this module decides:
whether the run can be continued at all (:func:`check_resumable`), the plan rebuilt and
compared with the recorded one (:func:`rebuild_plan`), which steps are kept, run again or
settled by their ``resume_check`` (:func:`resume_state`), the backup or waiver the run
already has (:func:`resume_gate`), that the target is still the same machine
(:func:`identity_differences`), and what to say when it cannot be reached again
(:func:`cannot_reconnect`). The runner (:mod:`agent.runner`) holds the lock and runs the
session. Every refusal here comes before contact and leaves the run folder as it was.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import errors
from agent.backups.base import BackupContext, provider_from_spec
from agent.catalog import Catalog
from agent.engine import BackupGate, ResumeState
from agent.journal import (
    JOURNAL_FILE,
    JournalState,
    check_header,
    file_hashes,
    load_journal,
    plan_hash,
    read_header,
)
from agent.limits import MAX_JOURNAL_BYTES
from agent.outcome import ExitCode
from agent.plan import Plan, Selection, plan_for
from agent.report import RESULT_FILE, RunFolder, RunRecord
from agent.results import StepResult, StepStatus
from agent.safefiles import read_regular
from agent.targets import Target

# A destructive step that ended like this may or may not have done its work.
_UNKNOWN_OUTCOME = (StepStatus.TIMED_OUT, StepStatus.DISCONNECTED)


@dataclass(frozen=True)
class Resumption:
    """A run folder that can be continued: its journal, plan, engine state and backup."""

    state: JournalState
    plan: Plan
    resume: ResumeState
    gate: BackupGate

    @property
    def asked(self) -> Mapping[str, Any]:
        """The request the run was started with, as its journal recorded it."""
        asked: Mapping[str, Any] = self.state.header["request"]
        return asked


def recorded_target(run_dir: Path) -> str:
    """The target URL a run folder's journal names (``run --resume`` without --target)."""
    return str(read_header(run_dir)["target"])


def check_target(run_dir: Path, target: Target) -> str:
    """The run's id, once its journal says it ran against ``target``."""
    header = read_header(run_dir)
    if header.get("target") != target.display:
        raise errors.ResumeError(
            f"--resume {run_dir}: that run (run {header.get('run_id')}) is against "
            f"{header.get('target')}, not {target.display}"
        )
    return str(header["run_id"])


def prepare(run_dir: Path, target: Target) -> Resumption:
    """Everything the next session needs, or the refusal (call with the lock held)."""
    state = load_journal(run_dir)
    check_resumable(state)
    plan = rebuild_plan(run_dir, state)
    resume = resume_state(state, plan)
    gate = resume_gate(target, state, plan, RunFolder(run_dir))
    return Resumption(state=state, plan=plan, resume=resume, gate=gate)


def rebuild_plan(run_dir: Path, state: JournalState) -> Plan:
    """The run's plan, from today's catalog and the facts it was first built from."""
    header = state.header
    check_header(state.path, header)
    asked = header["request"]
    try:
        catalog = Catalog.load(
            profiles_dirs=tuple(Path(p) for p in asked["profiles_dirs"]),
            playbooks_dirs=tuple(Path(p) for p in asked["playbooks_dirs"]),
        )
        plan = plan_for(
            catalog,
            playbook_name=asked["playbook"],
            profile_id=header["profile"]["id"],
            facts=header["facts"],
            var_overrides=asked["vars"],
            selection=Selection(
                only=frozenset(asked["selection"]["only"]),
                skip=frozenset(asked["selection"]["skip"]),
                tags=frozenset(asked["selection"]["tags"]),
            ),
        )
    except errors.ValidationError as exc:
        raise errors.ResumeError(
            f"--resume {run_dir}: cannot rebuild the plan of run {state.run_id}: {exc}"
        ) from exc
    except (KeyError, TypeError) as exc:
        raise errors.JournalError(f"{state.path}:1: the run_started header lacks {exc}") from None
    if plan_hash(plan) != header["plan_hash"]:
        recorded = {**header["profile"]["files"], **header["playbook"]["files"]}
        changed = [
            path for path, digest in file_hashes(recorded).items() if digest != recorded[path]
        ]
        why = (
            f"changed since: {', '.join(changed)}"
            if changed
            else "imageprep, a profile it extends or one of their run_file scripts changed since"
        )
        raise errors.ResumeError(
            f"--resume {run_dir}: the plan rebuilt today differs from the one run "
            f"{state.run_id} was started with ({why}); a resumed run runs the same plan: "
            "put those files back as they were"
        )
    return plan


def resume_gate(target: Target, state: JournalState, plan: Plan, folder: RunFolder) -> BackupGate:
    """The recorded backup (or waiver) when there is one; else the recorded --backup."""
    if state.backup is not None or state.waiver is not None:
        return BackupGate(provider=None, context=None, waiver_reason=state.waiver)
    asked = state.header["request"]
    spec, reason = asked.get("backup"), asked.get("no_backup_reason")
    if not spec:
        return BackupGate(provider=None, context=None, waiver_reason=reason)
    context = BackupContext(
        run_id=state.run_id, target=target, paths=plan.backup_paths, run_dir=folder.path
    )
    return BackupGate(provider=provider_from_spec(spec), context=context)


def resumed_record(
    folder: RunFolder, state: JournalState, plan: Plan, session: Mapping[str, Any]
) -> RunRecord:
    """result.json at the start of one more session: the earlier sessions, then this one."""
    header = state.header
    sessions: list[Any] = [{"session": 1, "started_at": header.get("at")}]
    with contextlib.suppress(OSError, ValueError, AttributeError, RecursionError):
        # Only a regular file of a sane size: a forged run folder may hold a FIFO here.
        raw = read_regular(folder.path / RESULT_FILE, MAX_JOURNAL_BYTES)
        earlier = json.loads(raw).get("sessions")
        if isinstance(earlier, list) and earlier:
            sessions = earlier
    return RunRecord(
        run_id=state.run_id,
        started_at=header.get("at"),
        target=state.target,
        playbook=plan.playbook_name,
        profile=plan.profile_id,
        plan_files=(plan.profile_file, plan.playbook_file),
        backup=state.backup.to_dict() if state.backup else None,
        backup_waiver=state.waiver or header["request"].get("no_backup_reason"),
        point_of_no_return_reached=state.point_of_no_return,
        facts=header["facts"],
        log_file=folder.log_path.name,
        journal_file=JOURNAL_FILE,
        sessions=(*sessions, session),
    )


def check_same_machine(target: Target, state: JournalState, fresh: Mapping[str, Any]) -> None:
    """Refuse to go on against a machine other than the one the run started on."""
    differences = identity_differences(state.header["facts"], fresh)
    if differences:
        raise errors.ResumeError(
            f"{target.display} is not the machine run {state.run_id} started on "
            f"({'; '.join(differences)}); nothing was changed on it"
        )


def cannot_reconnect(
    target: Target,
    state: JournalState,
    plan: Plan,
    resume: ResumeState,
    exc: errors.TransportError,
) -> tuple[ExitCode, str]:
    """Say honestly why a resume could not log in, and what the VM's state is."""
    done = state.last_finished() or "none"
    left = [s for s in plan.steps if s.will_run and s.key not in resume.completed]
    started = [s.key for s in left if s.key in state.steps and state.steps[s.key].started]
    if left and started and all(s.spec.expect_disconnect for s in left):
        return (
            ExitCode.CONNECTION_FAILED,
            f"cannot connect to resume: {exc}. Every step before {started[0]} had finished "
            f"and {started[0]} was started: the VM is most likely powered off already; "
            "confirm that it is stopped before capturing it",
        )
    if state.point_of_no_return:
        hint = state.backup.restore_hint if state.backup else "no backup was taken"
        return (
            ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN,
            f"cannot log in again to resume: {exc}. The run is past the point of no return "
            f"(last step finished: {done}): deprovisioning deletes the login user, so a "
            "resume can only log in as an account that survives it (and, for SSH, while "
            f"sshd still accepts connections). Restore the VM from the backup: {hint}",
        )
    keys = (
        "; cleanup deletes the SSH host keys, after which sshd before OpenSSH 9.8 refuses "
        "new connections until the next boot regenerates them"
        if isinstance(exc, errors.ConnectError) and not target.is_windows
        else ""
    )
    return (
        ExitCode.CONNECTION_FAILED,
        f"cannot connect to resume: {exc}. The run had not reached the point of no return "
        f"(last step finished: {done}): the VM is still usable{keys}",
    )


# -- identity -------------------------------------------------------------------------------


#: Facts that stay the same for the life of a VM; the rest (hostname, the ovf-env user,
#: resolv.conf, ImageState, the login user) are changed by the run itself.
IDENTITY_FACTS = (
    ("os", "id"),
    ("os", "version_id"),
    ("arch",),
    ("windows", "edition_id"),
    ("windows", "build"),
)


def identity_differences(recorded: Mapping[str, Any], fresh: Mapping[str, Any]) -> list[str]:
    """Where a re-gathered target differs from the recorded one, as ``key: old -> new``."""
    differences = []
    for path in IDENTITY_FACTS:
        old, new = _dig(recorded, path), _dig(fresh, path)
        if old is not None and old != new:
            differences.append(f"{'.'.join(path)}: {old} -> {new}")
    return differences


def _dig(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


# -- deciding how to resume ---------------------------------------------------------------


def check_resumable(state: JournalState) -> None:
    """Refuse a run that has nothing left to do."""
    finished = state.finished
    if finished is not None and finished.get("status") == "succeeded":
        raise errors.ResumeError(
            f"{state.path.parent}: run {state.run_id} already finished successfully at "
            f"{finished.get('at')}; there is nothing to resume"
        )


def resume_state(state: JournalState, plan: Plan) -> ResumeState:
    """How the engine continues this run, or ResumeUnsafe when it must not."""
    completed: dict[str, StepResult] = {}
    in_doubt: set[str] = set()
    backup_hint = _restore_hint(state)
    for step in plan.steps:
        history = state.steps.get(step.key)
        if history is None:
            continue
        result = history.result
        if result is not None and result.succeeded:
            completed[step.key] = result
            continue
        if not step.spec.destructive or history.started == 0:
            continue  # runs (again): idempotent, or never started (refused, not reached)
        if result is not None and result.status not in _UNKNOWN_OUTCOME:
            raise errors.ResumeUnsafe(
                f"destructive step {step.key} ran in session {history.session} and "
                f"{result.status.value} ({result.message}); it is never run twice: "
                f"restore the VM from the backup{backup_hint}"
            )
        if step.resume_check is None:
            raise errors.ResumeUnsafe(
                f"destructive step {step.key} started in session {history.session} and its "
                "outcome is unknown; it has no resume_check to find out on the target and is "
                f"never run blindly: restore the VM from the backup{backup_hint}"
            )
        in_doubt.add(step.key)
    return ResumeState(
        completed=completed,
        in_doubt=frozenset(in_doubt),
        backup=state.backup,
        waiver=state.waiver,
        point_of_no_return=state.point_of_no_return,
    )


def _restore_hint(state: JournalState) -> str:
    if state.backup is not None:
        return f" ({state.backup.restore_hint})"
    if state.waiver is not None:
        return f" (there is none: the run was started with --no-backup: {state.waiver})"
    return ""
