"""structlog set-up: one pipeline for our events and for the transport libraries' logs.

Every event, ours or a stdlib record from paramiko, invoke/fabric, pywinrm, requests or
urllib3, goes through the same :class:`structlog.stdlib.ProcessorFormatter` chain::

    shared: context vars (run_id, target, phase, step), logger, level, ISO-8601 UTC time
    per handler: exception -> text/dicts (never locals) -> REDACTION -> renderer

Redaction sits after exception formatting (a traceback's message may carry a secret) and
before every renderer, so no handler ever sees a secret. Handlers:

* console (stderr): ``text`` (ConsoleRenderer, colours only on a TTY) or ``json`` (one
  object per line) at ``level``; third-party records only from WARNING up, and never
  a library's account of a failure (a record with a traceback, or anything paramiko
  says: its transport thread logs each line of a traceback as an ERROR record). Such a
  failure reaches the user once, translated, as our own one-line error.
* run log (``run_log``): JSON lines at DEBUG, everything, the full record of the run;
  paramiko only from INFO, because its DEBUG is packet-level noise, and invoke/fabric
  only from INFO, because theirs dumps configuration. Library failures are kept, at
  DEBUG (the translated error is what the run's log level reports).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Literal, cast

import structlog
from structlog.processors import ExceptionRenderer, JSONRenderer, TimeStamper
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

from agent.errors import RunDirError, UsageError
from agent.redaction import Redactor

ConsoleFormat = Literal["text", "json"]

# Level of each transport library's loggers when a run log is written (without one,
# WARNING: the console would drop anything lower anyway).
THIRD_PARTY_LEVELS: Mapping[str, int] = {
    "paramiko": logging.INFO,
    # invoke/fabric DEBUG dumps their whole merged configuration on every connect.
    "invoke": logging.INFO,
    "fabric": logging.INFO,
    "winrm": logging.DEBUG,
    "requests": logging.DEBUG,
    "requests_ntlm": logging.DEBUG,
    "spnego": logging.DEBUG,
    "urllib3": logging.DEBUG,
}

_REDACTOR = Redactor()
_installed: list[logging.Handler] = []


def _redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # A dict in, a dict out (Redactor.redact keeps mapping shape).
    return cast(EventDict, _REDACTOR.redact(event_dict))


_LEADING_KEYS = ("timestamp", "level", "logger", "event")


def _leading_keys_first(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # Readers of the run log scan time, level and event first; machines do not care.
    ordered = {k: event_dict.pop(k) for k in _LEADING_KEYS if k in event_dict}
    ordered.update(event_dict)
    return ordered


def _shared_processors() -> list[Processor]:
    """What both our events and foreign records get before reaching a handler."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        TimeStamper(fmt="iso", utc=True),
    ]


def _text_renderer(colors: bool) -> list[Processor]:
    return [
        structlog.processors.format_exc_info,  # plain traceback text, no locals
        _redact_event,
        structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        ),
    ]


def _json_renderer() -> list[Processor]:
    return [
        ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
        _redact_event,
        _leading_keys_first,
        JSONRenderer(),
    ]


def _formatter(renderer: list[Processor]) -> structlog.stdlib.ProcessorFormatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )


def _report_handler_error(record: logging.LogRecord) -> None:
    # logging.Handler.handleError would print the record's raw message (our unredacted
    # event dict) to stderr: say only that a record was lost and where it came from.
    exc = sys.exc_info()[1]
    sys.stderr.write(
        f"imageprep: a log record from {record.name} could not be written ({type(exc).__name__})\n"
    )


class _ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (CLI runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        _report_handler_error(record)


class _RunLogHandler(logging.FileHandler):
    def __init__(self, path: Path, *, mode: str, encoding: str) -> None:
        super().__init__(path, mode=mode, encoding=encoding)
        self._closed_for_good = False

    def close(self) -> None:
        self._closed_for_good = True
        super().close()

    def emit(self, record: logging.LogRecord) -> None:
        # A thread that outlived its run (an SDK's poller still logging) can reach this
        # handler after reset_logging closed it: Logger.callHandlers may have taken it
        # from the list just before the removal. FileHandler would then reopen the file,
        # and nothing would close it again. The run has ended; its log takes no more.
        if not self._closed_for_good:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        _report_handler_error(record)


#: Libraries whose warnings and errors are their view of a failure we translate.
_FAILURE_LOGGERS = ("paramiko",)


def _is_library_failure(record: logging.LogRecord) -> bool:
    # wrap_for_formatter marks our own records with `_logger`.
    if hasattr(record, "_logger") or record.levelno < logging.WARNING:
        return False
    return record.exc_info is not None or record.name.split(".")[0] in _FAILURE_LOGGERS


def _foreign_only_from_warning(record: logging.LogRecord) -> bool:
    if _is_library_failure(record):
        return False
    return hasattr(record, "_logger") or record.levelno >= logging.WARNING


def _library_failures_at_debug(record: logging.LogRecord) -> bool:
    if _is_library_failure(record):
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
    return True


def _parse_level(level: str) -> int:
    value = logging.getLevelNamesMapping().get(level.upper())
    if value is None:
        raise UsageError(f"unknown log level {level!r} (expected debug, info, warning, error)")
    return value


def _open_run_log(run_log: Path) -> logging.FileHandler:
    if run_log.exists() and not run_log.is_file():
        # A FIFO here (a forged run folder) would block the open until a reader comes.
        raise RunDirError(f"cannot write the run log {run_log}: not a regular file")
    try:
        run_log.parent.mkdir(parents=True, exist_ok=True)
        return _RunLogHandler(run_log, mode="a", encoding="utf-8")
    except OSError as exc:
        raise RunDirError(f"cannot write the run log {run_log}: {exc.strerror}") from exc


def configure_run_logging(console_format: str, run_log: Path | None) -> None:
    """The set-up every command uses (the CLI's, a run's, a boot test's), in one place.

    The console's level follows its format: text is read next to the progress lines, which
    already say what each step did, so it shows only what is worth interrupting a human
    for (warnings up); JSON consumers get every event from info up. Code that embeds the
    runner and keeps its own logging does not call this (``RunRequest.configure_logging``).
    """
    if console_format not in ("text", "json"):
        raise UsageError(f"unknown log format {console_format!r} (expected text or json)")
    configure_logging(
        console_format=cast(ConsoleFormat, console_format),
        run_log=run_log,
        level="warning" if console_format == "text" else "info",
    )


def configure_logging(
    *, console_format: ConsoleFormat, run_log: Path | None, level: str = "info"
) -> None:
    """Install the pipeline; calling it again replaces the previous set-up."""
    console_level = _parse_level(level)
    reset_logging()
    handlers: list[logging.Handler] = [_console_handler(console_format, console_level)]
    if run_log is not None:
        handlers.append(_run_log_handler(run_log))
    _install(handlers, console_level, file_logs=run_log is not None)


def _console_handler(console_format: ConsoleFormat, level: int) -> logging.Handler:
    console = _ConsoleHandler()
    console.setLevel(level)
    console.addFilter(_foreign_only_from_warning)
    if console_format == "json":
        console.setFormatter(_formatter([_add_host_label, *_json_renderer()]))
    else:
        console.setFormatter(_LabelledFormatter(_text_renderer(_stderr_is_tty())))
    return console


def _run_log_handler(run_log: Path) -> logging.Handler:
    file_handler = _open_run_log(run_log)
    file_handler.setLevel(logging.DEBUG)
    file_handler.addFilter(_library_failures_at_debug)
    file_handler.setFormatter(_formatter(_json_renderer()))
    return file_handler


def _install(handlers: list[logging.Handler], console_level: int, *, file_logs: bool) -> None:
    root = logging.getLogger()
    for handler in handlers:
        root.addHandler(handler)
        _installed.append(handler)
    root.setLevel(logging.DEBUG if file_logs else console_level)
    for name, file_level in THIRD_PARTY_LEVELS.items():
        logging.getLogger(name).setLevel(file_level if file_logs else logging.WARNING)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Caching would pin loggers created before a reconfiguration to the old set-up.
        cache_logger_on_first_use=False,
    )


# -- fleets: many runs in one process, one thread each ----------------------------------------
#
# The handlers are global but a fleet's runs are not: each record goes to the run log of
# the run that logged it, found through a context variable that the run's thread sets
# (a thread starts with an empty context, so nothing leaks from one host to another).
# Records no run claims (the fleet's own, and those of threads a library starts, such as
# paramiko's transport thread) go to the fleet's own log. On the console each line of a
# host says which host: a ``[NAME]`` prefix in text, a ``host`` key in JSON.

_RUN_LOG: ContextVar[logging.Handler | None] = ContextVar("imageprep_run_log", default=None)
_HOST_LABEL: ContextVar[str | None] = ContextVar("imageprep_host_label", default=None)


def _add_host_label(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    label = _HOST_LABEL.get()
    if label is not None:
        event_dict.setdefault("host", label)
    return event_dict


class _LabelledFormatter(structlog.stdlib.ProcessorFormatter):
    """Console text; in a fleet's host thread each line starts with ``[NAME]``."""

    def __init__(self, renderer: list[Processor]) -> None:
        super().__init__(
            foreign_pre_chain=_shared_processors(),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        label = _HOST_LABEL.get()
        if label is None:
            return text
        return "\n".join(f"[{label}] {line}" for line in text.splitlines())


class _RunLogRouter(logging.Handler):
    """Hands each record to the run log of the run that logged it, else to ``fallback``."""

    def __init__(self, fallback: logging.Handler | None) -> None:
        super().__init__(logging.DEBUG)
        self._fallback = fallback

    def handle(self, record: logging.LogRecord) -> bool:
        # No lock of its own: each run log has its own, and hosts must not queue on one.
        handler = _RUN_LOG.get() or self._fallback
        return bool(handler.handle(record)) if handler is not None else False

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() routes
        self.handle(record)

    def close(self) -> None:
        if self._fallback is not None:
            self._fallback.close()
        super().close()


def configure_fleet_logging(console_format: str, fleet_log: Path | None) -> None:
    """A fleet's set-up: one console for every host, each run's records to its own log.

    Runs in the fleet use :func:`host_logging` in their thread (and leave the global
    set-up alone: ``RunRequest.configure_logging=False``). ``fleet_log``, if given,
    receives the records no run claims.
    """
    if console_format not in ("text", "json"):
        raise UsageError(f"unknown log format {console_format!r} (expected text or json)")
    console_level = logging.WARNING if console_format == "text" else logging.INFO
    reset_logging()
    fallback = _run_log_handler(fleet_log) if fleet_log is not None else None
    handlers = [
        _console_handler(cast(ConsoleFormat, console_format), console_level),
        _RunLogRouter(fallback),
    ]
    _install(handlers, console_level, file_logs=True)


@contextlib.contextmanager
def host_logging(label: str, run_log: Path | None) -> Iterator[None]:
    """In this thread (context): console lines labelled ``label``, records to ``run_log``."""
    handler = _run_log_handler(run_log) if run_log is not None else None
    label_token = _HOST_LABEL.set(label)
    log_token = _RUN_LOG.set(handler)
    try:
        yield
    finally:
        _RUN_LOG.reset(log_token)
        _HOST_LABEL.reset(label_token)
        if handler is not None:
            handler.close()


def reset_logging() -> None:
    """Remove and close the handlers :func:`configure_logging` installed."""
    root = logging.getLogger()
    while _installed:
        handler = _installed.pop()
        root.removeHandler(handler)
        handler.close()


def _stderr_is_tty() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())
