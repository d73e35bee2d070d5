"""The run folder: result.json (what happened) and run.log.jsonl (the full structured log).

result.json is rewritten atomically after every step, so a run that is killed, crashes or
loses its target still leaves an accurate account of how far it got.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.errors import RunDirError
from agent.redaction import Redactor

RESULT_FILE = "result.json"
LOG_FILE = "run.log.jsonl"
SCHEMA_VERSION = 1

# One redactor for every write: it compiles its patterns once per set of known secrets,
# not once per rewrite of result.json.
_REDACTOR = Redactor()


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

    def write_result(self, data: dict[str, Any]) -> None:
        """Write result.json atomically, with every known secret redacted."""
        clean = _REDACTOR.redact({"schema_version": SCHEMA_VERSION, **data})
        tmp = self.result_path.with_suffix(".json.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as handle:
                json.dump(clean, handle, indent=2, sort_keys=False, default=str)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(self.result_path)
        except OSError as exc:
            raise RunDirError(f"run folder {self.path}: cannot write result.json: {exc}") from exc
