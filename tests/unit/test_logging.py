"""The logging pipeline: redacted everywhere, JSON run log, stdlib loggers routed through."""

from __future__ import annotations

import base64
import json
import logging
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from agent.logging import configure_logging, reset_logging
from agent.secrets import REGISTRY

SECRET = "Sup3r-S3cret!pw"  # noqa: S105 (the test secret)


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    REGISTRY.add(SECRET)
    yield
    reset_logging()
    structlog.contextvars.clear_contextvars()
    REGISTRY.clear()


@pytest.fixture
def run_log(tmp_path: Path) -> Path:
    return tmp_path / "run" / "run.log.jsonl"


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _log_the_secret_every_way() -> None:
    log = structlog.stdlib.get_logger("agent.test")
    log.info("raw", detail=f"password is {SECRET}")
    log.info("command", command=f"echo {shlex.quote(SECRET)} | sudo -S true")
    log.info("b64", blob=base64.b64encode(SECRET.encode()).decode())
    script = f"$ErrorActionPreference = 'Stop'; $pw = '{SECRET}'; Set-Thing -Password $pw"
    encoded = base64.b64encode(script.encode("utf-16-le")).decode()
    log.info("winrm", command=f"powershell -NoProfile -EncodedCommand {encoded}")
    log.info("nested", request={"hosts": [{"auth": {"user": "u", "pass": SECRET}}]})
    logging.getLogger("paramiko.transport").warning("auth failed for key %s", SECRET)
    logging.getLogger("paramiko.transport").info("auth with %s", SECRET)


@pytest.mark.parametrize("console_format", ["text", "json"])
def test_secret_never_reaches_console_or_run_log(
    console_format: str, run_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A registered secret, logged raw, quoted, encoded, nested or via stdlib, is redacted."""
    configure_logging(console_format=console_format, run_log=run_log, level="debug")  # type: ignore[arg-type]
    _log_the_secret_every_way()
    console = capsys.readouterr().err
    file_text = run_log.read_text(encoding="utf-8")
    assert "***" in console
    assert "***" in file_text
    for text in (console, file_text):
        assert SECRET not in text
        assert base64.b64encode(SECRET.encode()).decode()[:12] not in text
    assert len(_records(run_log)) == 7


def test_secret_in_exception_message_is_redacted(
    run_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A traceback whose message carries the secret is redacted in both outputs."""
    configure_logging(console_format="text", run_log=run_log)
    try:
        raise RuntimeError(f"login failed with {SECRET}")
    except RuntimeError:
        structlog.stdlib.get_logger("agent.test").exception("step.crashed")
    console = capsys.readouterr().err
    assert "RuntimeError: login failed with ***" in console
    assert SECRET not in run_log.read_text(encoding="utf-8")


def test_tracebacks_carry_no_locals(run_log: Path) -> None:
    """Local variables of failing frames are never rendered into the run log."""
    configure_logging(console_format="json", run_log=run_log)

    def fails() -> None:
        unregistered_value = "local-value-not-registered"
        raise ValueError(len(unregistered_value))

    try:
        fails()
    except ValueError:
        structlog.stdlib.get_logger("agent.test").exception("boom")
    text = run_log.read_text(encoding="utf-8")
    assert "local-value-not-registered" not in text
    assert _records(run_log)[0]["exception"][0]["exc_type"] == "ValueError"


def test_run_log_has_json_lines_with_bound_context(run_log: Path) -> None:
    """Every run-log line is JSON and carries the bound run_id, target, phase and step."""
    configure_logging(console_format="text", run_log=run_log, level="warning")
    structlog.contextvars.bind_contextvars(run_id="r-123", target="ssh://azureuser@vm:22")
    with structlog.contextvars.bound_contextvars(phase="cleanup", step="apt_clean"):
        structlog.stdlib.get_logger("agent.engine").debug("step.output", line="ok")
    structlog.stdlib.get_logger("agent.engine").info("run.end")
    first, second = _records(run_log)
    assert first["run_id"] == "r-123"
    assert first["target"] == "ssh://azureuser@vm:22"
    assert (first["phase"], first["step"], first["level"]) == ("cleanup", "apt_clean", "debug")
    assert "phase" not in second
    assert first["timestamp"].endswith("Z")


def test_console_json_mode_emits_one_object_per_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In json mode each console line parses as a JSON object with event and level."""
    configure_logging(console_format="json", run_log=None)
    structlog.contextvars.bind_contextvars(run_id="r-9")
    structlog.stdlib.get_logger("agent.test").info("one", n=1)
    structlog.stdlib.get_logger("agent.test").warning("two")
    lines = capsys.readouterr().err.splitlines()
    parsed = [json.loads(line) for line in lines]
    assert [(p["event"], p["level"], p["run_id"]) for p in parsed] == [
        ("one", "info", "r-9"),
        ("two", "warning", "r-9"),
    ]


def test_console_level_does_not_limit_the_run_log(
    run_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The console honours its level while the run log keeps debug events."""
    configure_logging(console_format="json", run_log=run_log, level="warning")
    structlog.stdlib.get_logger("agent.test").debug("detail")
    assert capsys.readouterr().err == ""
    assert [r["event"] for r in _records(run_log)] == ["detail"]


def test_third_party_logs_are_warning_on_console_and_detailed_in_file(
    run_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Transport libraries reach the console from WARNING, the file from DEBUG (paramiko INFO)."""
    configure_logging(console_format="json", run_log=run_log, level="debug")
    logging.getLogger("urllib3.connectionpool").debug("GET /wsman")
    logging.getLogger("paramiko.transport").debug("packet noise")
    logging.getLogger("paramiko.transport").info("Connected (version 2.0)")
    logging.getLogger("winrm").warning("certificate not verified")
    console = [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()]
    assert console == ["certificate not verified"]
    assert [r["event"] for r in _records(run_log)] == [
        "GET /wsman",
        "Connected (version 2.0)",
        "certificate not verified",
    ]
    assert _records(run_log)[1]["logger"] == "paramiko.transport"


def test_configuring_twice_does_not_duplicate_output(
    run_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second configure_logging replaces the handlers instead of adding to them."""
    handlers_before = len(logging.getLogger().handlers)
    configure_logging(console_format="json", run_log=run_log)
    configure_logging(console_format="json", run_log=run_log)
    assert len(logging.getLogger().handlers) == handlers_before + 2
    structlog.stdlib.get_logger("agent.test").info("once")
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert len(_records(run_log)) == 1


def test_text_console_has_no_colours_off_a_tty(capsys: pytest.CaptureFixture[str]) -> None:
    """The text renderer writes no ANSI escapes when stderr is not a terminal."""
    configure_logging(console_format="text", run_log=None)
    structlog.stdlib.get_logger("agent.test").warning("plain")
    err = capsys.readouterr().err
    assert "plain" in err
    assert "\x1b[" not in err


def test_unknown_level_is_a_usage_error() -> None:
    """A misspelt level is refused with the accepted names."""
    from agent.errors import UsageError

    with pytest.raises(UsageError, match="debug, info"):
        configure_logging(console_format="text", run_log=None, level="verbose")


def test_library_tracebacks_stay_off_the_console(
    run_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """paramiko's ERROR lines (a traceback, line by line) reach only the run log, at debug."""
    configure_logging(console_format="text", run_log=run_log, level="warning")
    transport = logging.getLogger("paramiko.transport")
    transport.error("Exception (client): Error reading SSH protocol banner")
    transport.error("Traceback (most recent call last):")
    structlog.stdlib.get_logger("agent.test").error("run.end")
    console = capsys.readouterr().err
    assert "Traceback" not in console
    assert "protocol banner" not in console
    assert "run.end" in console
    records = [r for r in _records(run_log) if r["logger"] == "paramiko.transport"]
    assert [r["level"] for r in records] == ["debug", "debug"]
    assert records[1]["event"] == "Traceback (most recent call last):"


def test_a_record_reaching_a_closed_run_log_does_not_reopen_it(run_log: Path) -> None:
    """A straggler thread's record after the run's log was closed is dropped, file shut."""
    configure_logging(console_format="json", run_log=run_log)
    [handler] = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.FileHandler) and h.baseFilename == str(run_log)
    ]
    reset_logging()
    # As Logger.callHandlers does when it took the handler just before the removal.
    handler.handle(logging.LogRecord("azure.core", logging.INFO, __file__, 1, "late", None, None))
    assert handler.stream is None
    assert "late" not in run_log.read_text()
