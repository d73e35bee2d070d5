"""A program with its own logging that embeds agent.api (run by test_api_embedding.py).

It sets up what a real application would (root and named handlers, levels, a filter,
structlog with its own processors, bound context variables, warnings filters, signal
handlers), snapshots all of it, calls ``api.plan`` and ``api.run`` against the target
given on the command line, snapshots again and prints one JSON line: the differences
(none expected), what its own handler received, and the results.

    python embedding_app.py URL KEY KNOWN_HOSTS RUN_DIR BACKUP_DIR
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import warnings
from collections.abc import MutableMapping
from pathlib import Path
from types import FrameType
from typing import Any

import structlog


class Collect(logging.Handler):
    """The application's own handler: keeps every record's message."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class OnlyApp(logging.Filter):
    """A filter on the application's named logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return True


def on_signal(signum: int, frame: FrameType | None) -> None:
    """The application's own handler for SIGTERM and SIGHUP."""


def stamp(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A processor of the application's own: marks every event it renders."""
    event["app"] = "embedding-app"
    return event


def set_up() -> Collect:
    root = logging.getLogger()
    collect = Collect()
    collect.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root.addHandler(collect)
    root.setLevel(logging.INFO)
    app = logging.getLogger("app")
    app.setLevel(logging.DEBUG)
    app.addFilter(OnlyApp())
    app.propagate = True
    logging.getLogger("paramiko").setLevel(logging.ERROR)  # the app's own choice
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            stamp,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(request_id="req-42", target="the-app's-own")
    warnings.filterwarnings("error", category=DeprecationWarning, module="app")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    return collect


def _logger_state(logger: logging.Logger) -> dict[str, Any]:
    return {
        "level": logger.level,
        "handlers": [id(h) for h in logger.handlers],
        "handler_levels": [h.level for h in logger.handlers],
        "formatters": [id(h.formatter) for h in logger.handlers],
        "filters": [id(f) for f in logger.filters],
        "filter_types": [f"{type(f).__module__}.{type(f).__qualname__}" for f in logger.filters],
        "propagate": logger.propagate,
        "disabled": logger.disabled,
    }


def snapshot() -> dict[str, Any]:
    loggers = {
        name: _logger_state(logger)
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    return {
        "root": _logger_state(logging.getLogger()),
        "loggers": loggers,
        "disable": logging.root.manager.disable,
        "logger_class": id(logging.getLoggerClass()),
        "record_factory": id(logging.getLogRecordFactory()),
        "structlog": {k: repr(v) for k, v in structlog.get_config().items()},
        "contextvars": structlog.contextvars.get_contextvars(),
        "warnings": [repr(f) for f in warnings.filters],
        "signals": {
            s.name: repr(signal.getsignal(s))
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        },
        "excepthook": repr(sys.excepthook),
        "threading_excepthook": repr(threading.excepthook),
    }


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What changed; loggers that appeared must be untouched (NOTSET, no handlers)."""
    found = []
    for key in before:
        if key == "loggers":
            continue
        if before[key] != after[key]:
            found.append(f"{key}: {before[key]!r} -> {after[key]!r}")
    pristine = _logger_state(logging.Logger("pristine"))
    for name, state in after["loggers"].items():
        expected = before["loggers"].get(name, pristine)
        if name not in before["loggers"] and name.startswith("paramiko."):
            # paramiko.util.get_logger adds paramiko's own PFilter to each logger it makes,
            # in every program that uses paramiko: not something imageprep set up.
            kept = [
                (ident, kind)
                for ident, kind in zip(state["filters"], state["filter_types"], strict=True)
                if kind != "paramiko.util.PFilter"
            ]
            state = {
                **state,
                "filters": [ident for ident, _ in kept],
                "filter_types": [kind for _, kind in kept],
            }
        if state != expected:
            found.append(f"logger {name}: {expected!r} -> {state!r}")
    return found


def main() -> None:
    url, key, known_hosts, run_dir, backups = sys.argv[1:6]
    collect = set_up()
    before = snapshot()

    from agent import api
    from agent.executors.ssh import SshOptions

    ssh = SshOptions(identity=Path(key), known_hosts=Path(known_hosts))
    planned = api.plan(url, ssh=ssh)
    result = api.run(url, ssh=ssh, backup=f"archive:{backups}", run_dir=Path(run_dir))
    after = snapshot()
    print(
        json.dumps(
            {
                "differences": differences(before, after),
                "messages": collect.messages,
                "plan_profile": planned.profile,
                "plan_steps": [s.key for s in planned.steps],
                "run_id": result.run_id,
                "exit_code": int(result.exit_code),
                "status": result.status,
                "run_dir": str(result.run_dir),
                "steps": [[s.key, s.status] for s in result.steps],
                "document_run_id": result.document.run_id,
            }
        )
    )


if __name__ == "__main__":
    main()
