"""An application embedding the runner keeps its own logging when it asks to."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from agent.logging import THIRD_PARTY_LEVELS, reset_logging
from agent.outcome import ExitCode
from agent.report import LOG_FILE
from agent.runner import RunRequest, execute
from agent.targets import parse_target

# Nothing listens here and nothing is contacted: the run ends before it connects.
TARGET = parse_target("ssh://azureuser@127.0.0.1:9")


class _Collect(logging.Handler):
    """The host application's own handler."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _snapshot() -> dict[str, Any]:
    root = logging.getLogger()
    return {
        "root_handlers": list(root.handlers),
        "root_level": root.level,
        "library_levels": {name: logging.getLogger(name).level for name in THIRD_PARTY_LEVELS},
        "structlog": structlog.get_config(),
    }


@pytest.fixture
def host_logging() -> Iterator[_Collect]:
    """A program's own set-up: a root handler at INFO, structlog routed to stdlib."""
    reset_logging()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_structlog = structlog.get_config()
    handler = _Collect()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    try:
        yield handler
    finally:
        reset_logging()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_structlog)


def _run(run_dir: Path, *, configure_logging: bool) -> ExitCode:
    # The generalize playbook needs a backup: refused (exit 2) inside the session, after
    # the run folder, the report and the logging set-up, before any connection.
    request = RunRequest(target=TARGET, run_dir=run_dir, configure_logging=configure_logging)
    outcome = execute(request)
    assert json.loads((run_dir / "result.json").read_text())["status"] == "failed"
    return outcome.exit_code


def test_a_run_told_not_to_leaves_the_callers_logging_as_it_was(
    host_logging: _Collect, tmp_path: Path
) -> None:
    """configure_logging=False: handlers, levels and structlog's config are untouched."""
    before = _snapshot()
    assert _run(tmp_path / "run", configure_logging=False) is ExitCode.USAGE
    assert _snapshot() == before
    events = [json.loads(record.getMessage())["event"] for record in host_logging.records]
    assert "run.end" in events
    assert not (tmp_path / "run" / LOG_FILE).exists()


def test_a_run_by_default_installs_its_own_logging(host_logging: _Collect, tmp_path: Path) -> None:
    """The default (the CLI's case) sets up the pipeline and writes the run log."""
    before = _snapshot()
    assert _run(tmp_path / "run", configure_logging=True) is ExitCode.USAGE
    assert _snapshot() != before
    assert (tmp_path / "run" / LOG_FILE).read_text().count('"run.end"') == 1
