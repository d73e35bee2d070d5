"""The pipeline recipes in examples/: valid YAML, and every imageprep line they run parses.

A recipe that passes an option imageprep does not have would fail in the user's pipeline,
not here; so each `imageprep ...` command is handed to the real click parser.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from agent.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GITHUB_WORKFLOW = EXAMPLES / "github-actions" / "prepare-golden-image.yml"
AZURE_PIPELINE = EXAMPLES / "azure-devops" / "azure-pipelines.yml"
WINDOWS_PIPELINE = EXAMPLES / "azure-devops" / "windows-pipeline.yml"
PACKER_SCRIPT = EXAMPLES / "packer" / "imageprep-prepare.sh"

# Pipeline expressions (`${{ inputs.x }}`, `$(macro)`) become plain words before parsing.
_EXPRESSION = re.compile(r"\$\{\{[^}]*\}\}|\$\([A-Za-z_.]+\)")


def _load(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _imageprep_commands(scripts: list[str]) -> list[list[str]]:
    """Each `imageprep SUBCOMMAND ...` in these scripts, split like a shell would."""
    commands = []
    for script in scripts:
        text = _EXPRESSION.sub("EXPR", script.replace("\\\n", " "))
        words = shlex.split(text, comments=True)
        for index, word in enumerate(words):
            if word in ("imageprep", '"$IMAGEPREP"', "$IMAGEPREP"):
                commands.append(words[index + 1 :])
    return commands


def _parses(args: list[str]) -> None:
    """Hand ARGS to imageprep's own parser without running the command."""
    subcommand, *rest = args
    command = main.get_command(click.Context(main), subcommand)
    assert command is not None, f"imageprep has no command {subcommand!r}"
    command.make_context(subcommand, rest)


def _github_scripts() -> list[str]:
    steps = _load(GITHUB_WORKFLOW)["jobs"]["prepare"]["steps"]
    return [step["run"] for step in steps if "imageprep " in step.get("run", "")]


def _azure_cli_steps(pipeline: Path) -> list[dict[str, Any]]:
    steps = _load(pipeline)["stages"][0]["jobs"][0]["steps"]
    return [step for step in steps if "inlineScript" in step.get("inputs", {})]


def _azure_scripts(pipeline: Path = AZURE_PIPELINE) -> list[str]:
    return [step["inputs"]["inlineScript"] for step in _azure_cli_steps(pipeline)]


def test_github_workflow_runs_check_and_run() -> None:
    """The GitHub Actions recipe runs `imageprep check` and then `imageprep run`."""
    commands = _imageprep_commands(_github_scripts())
    assert [command[0] for command in commands] == ["check", "run"]


@pytest.mark.parametrize("index", [0, 1])
def test_github_workflow_commands_parse(index: int) -> None:
    """Each imageprep command line in the GitHub Actions recipe parses with imageprep's options."""
    _parses(_imageprep_commands(_github_scripts())[index])


def test_azure_pipeline_command_parses() -> None:
    """The Azure DevOps recipe's imageprep command line parses with imageprep's options."""
    (command,) = _imageprep_commands(_azure_scripts())
    assert command[0] == "run"
    _parses(command)


def test_windows_pipeline_command_parses() -> None:
    """The Windows recipe's imageprep command line parses with imageprep's options."""
    (command,) = _imageprep_commands(_azure_scripts(WINDOWS_PIPELINE))
    assert command[0] == "run"
    _parses(command)


def test_windows_pipeline_takes_its_password_from_a_mapped_secret() -> None:
    """The password reaches imageprep as an environment variable the task maps a secret to."""
    (step,) = _azure_cli_steps(WINDOWS_PIPELINE)
    (command,) = _imageprep_commands([step["inputs"]["inlineScript"]])
    variable = command[command.index("--password-env") + 1]
    assert step["env"][variable] == "$(winAdminPassword)"


def test_packer_script_command_parses() -> None:
    """The Packer recipe's shell-local script passes only options imageprep has."""
    (command,) = _imageprep_commands([PACKER_SCRIPT.read_text()])
    assert command[0] == "run"
    _parses(command)


def test_azure_pipeline_takes_a_snapshot_first() -> None:
    """The Azure DevOps recipe backs the VM up with an Azure snapshot."""
    (command,) = _imageprep_commands(_azure_scripts())
    backup = command[command.index("--backup") + 1]
    assert backup.startswith("azure-snapshot:")


def test_recipes_pass_no_secret_on_the_command_line() -> None:
    """No imageprep command line in the recipes expands a pipeline secret into argv."""
    for script in [*_github_scripts(), *_azure_scripts(), *_azure_scripts(WINDOWS_PIPELINE)]:
        assert "secrets." not in script
        assert "--password " not in script
