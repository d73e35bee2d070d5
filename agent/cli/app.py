"""The `imageprep` group and how every command leaves: one line on stderr, an exit code."""

from __future__ import annotations

import importlib
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

# Where each command lives ("module:attribute"). A command's module is imported when that
# command runs, or when `imageprep --help` lists them all: `plan` builds neither the
# options of `run` nor those of `upload`, `profiles list` not those of `plan` (the other
# commands' modules were about 5 % of its start-up; issue 13, P4). click's "lazy group".
COMMANDS: dict[str, str] = {
    "run": "agent.cli.runs:run",
    "check": "agent.cli.runs:check",
    "plan": "agent.cli.plans:plan",
    "validate": "agent.cli.catalog:validate",
    "profiles": "agent.cli.catalog:profiles",
    "playbooks": "agent.cli.catalog:playbooks",
    "schema": "agent.cli.catalog:schema",
    "boot-test": "agent.cli.images:boot_test",
    "capture": "agent.cli.images:capture",
    "upload": "agent.cli.images:upload",
    "vhd": "agent.cli.images:vhd",
}


def command(name: str | None = None) -> Callable[[Callable[..., Any]], SectionedCommand]:
    """A top-level command with sectioned --help (`main` finds it through COMMANDS)."""
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
    import signal  # here: building its enums costs an offline command about 1 ms

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


class _LazyCommands(SectionedGroup):
    """A group whose commands (:data:`COMMANDS`) are imported when first looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, _, attribute = COMMANDS[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in COMMANDS:
            # An unknown name: click's "Did you mean 'plan'?" looks among the loaded ones.
            for name in COMMANDS:
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)


class _OneLineErrors(_LazyCommands):
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

    Backup first, then preflight checks, cleanup, generalization (Linux: waagent
    deprovision; Windows: Sysprep), verification and power-off, as a YAML playbook and
    distro profile say.
    """
