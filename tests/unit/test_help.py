"""--help is complete: options grouped, examples that parse, and the exit-code table."""

from __future__ import annotations

import shlex
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.cli.app import COMMANDS
from agent.cli.help import EXAMPLES
from agent.outcome import EXIT_CODE_MEANINGS, ExitCode


def _help(*command: str) -> str:
    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0
    return result.output


@pytest.mark.parametrize("command", ["run", "check", "plan", "validate"])
def test_help_ends_with_examples_and_exit_codes(command: str) -> None:
    """Each main command's help shows examples, then every exit code."""
    text = _help(command)
    assert text.index("Examples:") < text.index("Exit codes:")
    for code in ExitCode:
        assert f"  {int(code)} " in text.split("Exit codes:")[1]


def test_every_exit_code_has_a_meaning() -> None:
    """The help table covers every exit code there is."""
    assert set(EXIT_CODE_MEANINGS) == set(ExitCode)


@pytest.mark.parametrize(
    "section", ["Connection options:", "Plan options:", "Run options:", "Output options:"]
)
def test_run_help_groups_its_options(section: str) -> None:
    """run --help groups options by connection, plan, run and output."""
    assert section in _help("run")


@pytest.mark.parametrize("provider", ["archive:", "command:", "azure-snapshot:", "libvirt:"])
def test_backup_help_names_every_provider(provider: str) -> None:
    """--backup's help names all four backup providers."""
    assert provider in " ".join(_help("run").split())


@pytest.mark.parametrize(
    ("command", "example"),
    [(c, e) for c, lines in EXAMPLES.items() for e in "\n".join(lines).split("imageprep ")[1:]],
)
def test_examples_parse(command: str, example: str) -> None:
    """Every example in --help parses with imageprep's own options."""
    words = shlex.split(example.replace("\\\n", " ").split("\nVM=")[0])
    subcommand, *rest = words
    found = main.get_command(click.Context(main), subcommand)
    assert found is not None
    found.make_context(subcommand, rest)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_lazily_loaded_command_is_found_under_its_name(name: str) -> None:
    """Every entry of the lazy command table loads a command of that very name."""
    found = main.get_command(click.Context(main), name)
    assert found is not None
    assert found.name == name


def test_a_mistyped_command_is_still_suggested() -> None:
    """`imageprep pln` suggests plan although no command module was loaded yet."""
    # A fresh process: in this one, other tests have loaded the commands already.
    result = subprocess.run(
        [sys.executable, "-m", "agent", "pln"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "Did you mean 'plan'?" in result.stderr
