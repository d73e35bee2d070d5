"""The typed option groups: one decorator adds the options and hands over one dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import click
import pytest
from click.testing import CliRunner

from agent.cli.help import SectionedCommand
from agent.cli.options import opt, option_group


@dataclass(frozen=True)
class ExampleArgs:
    limit: str | None
    forks: int


example_options = option_group(
    ExampleArgs,
    "Example",
    opt("--limit", metavar="PATTERN", help="Only these hosts."),
    opt("--forks", type=int, default=5, show_default=True, help="Hosts at a time."),
)


def _command(received: list[ExampleArgs]) -> click.Command:
    @click.command(cls=SectionedCommand)
    @example_options
    @click.option("--other")
    def command(example_args: ExampleArgs, other: str | None) -> None:
        received.append(example_args)

    return command


def test_a_group_hands_the_command_one_frozen_dataclass() -> None:
    """The command receives ExampleArgs built from the options' values, frozen."""
    received: list[ExampleArgs] = []
    result = CliRunner().invoke(_command(received), ["--limit", "web*", "--other", "x"])
    assert result.exit_code == 0, result.output
    assert received == [ExampleArgs(limit="web*", forks=5)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        received[0].forks = 1  # type: ignore[misc]


def test_a_group_lists_its_options_under_its_own_section() -> None:
    """--help shows "Example options:" before the plain "Options:" section."""
    text = CliRunner().invoke(_command([]), ["--help"]).output
    assert text.index("Example options:") < text.index("--limit") < text.index("Options:")
    assert text.index("Options:") < text.index("--other")


def test_fields_that_do_not_match_the_options_fail_at_import() -> None:
    """A dataclass field without its option (or the reverse) is a TypeError at once."""
    with pytest.raises(TypeError, match="ExampleArgs fields"):
        option_group(ExampleArgs, "Example", opt("--limit"), opt("--fork", type=int))
