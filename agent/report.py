"""The run folder: result.json (what happened) and run.log.jsonl (the full structured log).

result.json is rewritten atomically after every step, so a run that is killed, crashes or
loses its target still leaves an accurate account of how far it got.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent import __version__
from agent.atomicwrite import replace_text
from agent.errors import RunDirError
from agent.redaction import Redactor, WrittenOnceCache

RESULT_FILE = "result.json"
LOG_FILE = "run.log.jsonl"
SCHEMA_VERSION = 1

# One redactor for every write: it compiles its patterns once per set of known secrets,
# not once per rewrite of result.json.
_REDACTOR = Redactor()
# Sections of result.json assigned whole and never changed in place (Recorder.set_plan's
# plan, the runner's facts): their redacted copies are reused from one rewrite to the next.
_WRITTEN_ONCE = frozenset({"plan", "facts"})


@dataclass(frozen=True)
class RunRecord:
    """What result.json says when a session starts; :meth:`to_dict` is its one shape.

    A new run and a resumed one start from the same record: the resumed one knows its
    plan's files, backup and facts from the journal, a new one learns them as it goes
    (the runner and the recorder add them to the dict). ``agent/result_schema.py`` and
    tests/unit/test_json_contracts.py hold the keys to this shape.
    """

    run_id: str
    started_at: str | None
    target: str
    playbook: str
    profile: str
    journal_file: str
    sessions: tuple[Mapping[str, Any], ...]
    backup_waiver: str | None = None
    backup: Mapping[str, Any] | None = None
    point_of_no_return_reached: bool = False
    facts: Mapping[str, Any] | None = None
    # Known up front only when resuming: then they follow "profile", as before.
    plan_files: tuple[str, str] | None = None
    log_file: str = field(default=LOG_FILE)
    tool_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "tool_version": self.tool_version,
            "started_at": self.started_at,
            "finished_at": None,
            "status": "running",
            "target": self.target,
            "playbook": self.playbook,
            "profile": self.profile,
        }
        if self.plan_files is not None:
            data["profile_file"], data["playbook_file"] = self.plan_files
        data.update(
            {
                "backup": self.backup,
                "backup_waiver": self.backup_waiver,
                "point_of_no_return_reached": self.point_of_no_return_reached,
                "powered_off": False,
                "facts": self.facts,
                "plan": None,
                "steps": [],
                "log_file": self.log_file,
                "journal_file": self.journal_file,
                # The same dicts, not copies: the runner adds to the current session's as it goes.
                "sessions": list(self.sessions),
            }
        )
        return data


def new_run_id() -> str:
    return secrets.token_hex(4)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def default_run_dir(run_id: str, base: Path = Path("imageprep-runs")) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return base / f"{stamp}-{run_id}"


@dataclass(frozen=True)
class RunFolder:
    path: Path
    _written_once: WrittenOnceCache = field(
        default_factory=lambda: WrittenOnceCache(_REDACTOR), compare=False, repr=False
    )

    @classmethod
    def create(cls, path: Path) -> RunFolder:
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise RunDirError(f"run folder {path}: cannot write: {exc.strerror}") from exc
        return cls(path)

    @property
    def result_path(self) -> Path:
        return self.path / RESULT_FILE

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    def write_result(self, data: dict[str, Any], *, durable: bool = True) -> None:
        """Write result.json atomically, with every known secret redacted.

        ``durable``: fsync before the rename, so a power loss cannot leave an empty or
        older file. Progress rewrites skip it (the journal is what a resume trusts); the
        end of a run, an interruption and the point of no return do not. Progress
        rewrites are also written compact: only ``json.dumps`` without indent uses json's
        C encoder (``json.dump`` to a file never does), and the pretty-printed file takes
        five times as long to make (about 5 ms for a Debian generalize's); the durable
        ones, which people read, are indented.
        """
        # The top-level keys are result.json's own (result_schema), never data: only the
        # values are redacted.
        clean = {
            key: self._written_once.redact(key, value)
            if key in _WRITTEN_ONCE
            else _REDACTOR.redact_value_of(key, value)
            for key, value in {"schema_version": SCHEMA_VERSION, **data}.items()
        }
        text = json.dumps(clean, indent=2 if durable else None, default=str) + "\n"
        try:
            replace_text(self.result_path, text, durable=durable)
        except OSError as exc:
            raise RunDirError(f"run folder {self.path}: cannot write result.json: {exc}") from exc
