"""The `imageprep` group and how every command leaves: one line on stderr, an exit code."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

import click

from agent import __version__, console, errors
from agent.cli.help import SectionedCommand, SectionedGroup
from agent.excerpt import printable
from agent.outcome import ExitCode, exit_code_for_error

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def command(name: str | None = None) -> Callable[[Callable[..., Any]], SectionedCommand]:
    """A top-level command with sectioned --help (added to `main` in cli/__init__.py)."""
    return click.command(name, cls=SectionedCommand, context_settings=CONTEXT)


def fail(exc: BaseException) -> NoReturn:
    """One clear line on stderr, the documented exit code, no traceback."""
    code = exit_code_for_error(exc)
    click.echo(console.clean(f"imageprep: error: {printable(str(exc))}"), err=True)
    sys.exit(int(code))


def echo(render: Callable[[], str]) -> None:
    """Print what a read-only command renders, or fail with its one-line error."""
    try:
        text = render()
    except errors.ImagePrepError as exc:
        fail(exc)
    click.echo(console.clean(text))


def configure_console_logging(log_format: str) -> None:
    from agent.logging import configure_run_logging

    configure_run_logging(log_format, run_log=None)


def interrupt_on_sigterm() -> None:
    """CI runners stop jobs with SIGTERM: treat it like Ctrl-C so the report is written."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


class _OneLineErrors(SectionedGroup):
    """click's own usage errors as one line on stderr (exit 2), like every other error.

    click prints "Usage: ...", "Try ... for help." and a blank line before the error;
    a pipeline's log then shows three lines of noise for one wrong flag.
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `imageprep`: the help
                click.echo(exc.format_message(), err=True)
                sys.exit(exc.exit_code)
            message = printable(" ".join(exc.format_message().split()))
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            click.echo(f"imageprep: error: {message}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("imageprep: aborted", err=True)
            sys.exit(int(ExitCode.INTERRUPTED))
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=_OneLineErrors, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="imageprep")
def main() -> None:
    """Prepare a running VM to be captured as a reusable image.

    Backup first, then preflight checks, cleanup, generalization (waagent deprovision),
    verification and power-off, as a YAML playbook and distro profile say.
    """
