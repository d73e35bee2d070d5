"""--help in sections: options grouped (connection, plan, run, output), then examples and
the exit-code table, so a pipeline author needs nothing but --help."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from agent.outcome import EXIT_CODE_MEANINGS, FLEET_EXIT_ORDER

# The sections in the order --help shows them. An option names its section (options.py);
# a section not listed here comes after these, options without one last, as "Options".
SECTION_ORDER: tuple[str, ...] = ("Connection", "Fleet", "Plan", "Run", "Output")

EXAMPLES: dict[str, tuple[str, ...]] = {
    "run": (
        "imageprep run --target ssh://azureuser@vm --identity ~/.ssh/id_ed25519 \\",
        "    --backup archive:./backups",
        "VM=/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/VM",
        "imageprep run --target ssh://azureuser@vm --jump ops@bastion \\",
        "    --backup azure-snapshot:$VM",
        "imageprep run --resume imageprep-runs/20260101T120000Z-1a2b3c4d",
        "imageprep run --inventory hosts.ini --limit web --forks 16 --identity key \\",
        "    --backup archive:./backups --run-dir fleet-1",
        "imageprep run --resume fleet-1",
    ),
    "check": (
        "imageprep check --target ssh://azureuser@vm --identity key --junit check.xml",
        "imageprep check --target winrm+https://Administrator@vm --password-env WINPW \\",
        "    --ca-cert listener.pem",
        "imageprep check --inventory hosts.yml --forks 8",
    ),
    "plan": (
        "imageprep plan --profile debian",
        "imageprep plan --target ssh://azureuser@vm --identity key --format json",
    ),
    "validate": ("imageprep validate", "imageprep validate my-profiles/*.yaml --format json"),
}

# The commands whose --help ends with the exit-code table.
_WITH_EXIT_CODES = ("run", "check", "plan", "validate", "boot-test", "vhd")
_WITH_FLEETS = ("run", "check", "plan")


class SectionOption(click.Option):
    """A click option that knows the --help section it is listed in."""

    def __init__(self, param_decls: Sequence[str], *, section: str, **attrs: Any) -> None:
        super().__init__(param_decls, **attrs)
        self.section = section


def _section_rank(title: str, seen: list[str]) -> tuple[int, int]:
    if title in SECTION_ORDER:
        return (0, SECTION_ORDER.index(title))
    return (1, seen.index(title))


class SectionedCommand(click.Command):
    """--help with the options grouped by section, then examples and the exit codes."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: dict[str, list[tuple[str, str]]] = {}
        other: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            section = getattr(param, "section", None)
            (other if section is None else rows.setdefault(section, [])).append(record)
        seen = list(rows)
        for title in sorted(rows, key=lambda t: _section_rank(t, seen)):
            with formatter.section(f"{title} options"):
                formatter.write_dl(rows[title])
        if other:
            with formatter.section("Options"):
                formatter.write_dl(other)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        examples = EXAMPLES.get(self.name or "")
        if examples:
            with formatter.section("Examples"):
                for line in examples:  # as written: rewrapping would break the commands
                    formatter.write(f"{'':>{formatter.current_indent}}{line}\n")
        if self.name in _WITH_EXIT_CODES:
            with formatter.section("Exit codes"):
                formatter.write_dl([(str(int(c)), text) for c, text in EXIT_CODE_MEANINGS.items()])
                if self.name in _WITH_FLEETS:
                    order = " > ".join(str(int(code)) for code in FLEET_EXIT_ORDER)
                    formatter.write_text(f"With --inventory: the worst host's code, {order}.")


class SectionedGroup(click.Group):
    command_class = SectionedCommand
