"""The offline commands: validate, profiles, playbooks, schema. None connects anywhere."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from agent import console, errors
from agent.cli.app import CONTEXT, command, echo, fail
from agent.cli.help import SectionedGroup
from agent.cli.options import CatalogArgs, catalog_options, format_option
from agent.excerpt import printable
from agent.outcome import ExitCode


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)


@command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@catalog_options
@format_option
def validate(files: tuple[Path, ...], catalog_args: CatalogArgs, output_format: str) -> None:
    """Check the built-in and given YAML files without connecting (exit 2 on any error)."""
    from agent.planning import validate_all, validation_data

    try:
        result = validate_all(files, catalog_args.profiles_dirs, catalog_args.playbooks_dirs)
    except errors.ImagePrepError as exc:
        fail(exc)
    if output_format == "json":
        click.echo(console.clean(json.dumps(validation_data(result), indent=2)))
        sys.exit(int(ExitCode.USAGE if result.problems else ExitCode.OK))
    for problem in result.problems:
        click.echo(console.clean(printable(str(problem))), err=True)
    if result.problems:
        count = len(result.problems)
        click.echo(f"imageprep: {count} problem(s) in {result.checked} file(s)", err=True)
        sys.exit(int(ExitCode.USAGE))
    for warning in result.warnings:
        click.echo(console.clean(f"imageprep: warning: {warning}"), err=True)
    click.echo(f"{result.checked} file(s) valid")


@click.group(cls=SectionedGroup, context_settings=CONTEXT)
def profiles() -> None:
    """List and show distro profiles."""


@profiles.command("list")
@catalog_options
@format_option
def profiles_list(catalog_args: CatalogArgs, output_format: str) -> None:
    """One line per profile: id, what it matches, where it comes from."""
    from agent.planning import list_profiles, profiles_data

    dirs = (catalog_args.profiles_dirs, catalog_args.playbooks_dirs)
    if output_format == "json":
        echo(lambda: _json(profiles_data(*dirs)))
    else:
        echo(lambda: list_profiles(*dirs))


@profiles.command("show")
@click.argument("profile_id")
@catalog_options
@format_option
def profiles_show(profile_id: str, catalog_args: CatalogArgs, output_format: str) -> None:
    """Every step of a profile by phase, with which file won."""
    from agent.planning import profile_data, show_profile

    dirs = (catalog_args.profiles_dirs, catalog_args.playbooks_dirs)
    if output_format == "json":
        echo(lambda: _json(profile_data(profile_id, *dirs)))
    else:
        echo(lambda: show_profile(profile_id, *dirs))


@click.group(cls=SectionedGroup, context_settings=CONTEXT)
def playbooks() -> None:
    """List playbooks."""


@playbooks.command("list")
@catalog_options
@format_option
def playbooks_list(catalog_args: CatalogArgs, output_format: str) -> None:
    """One line per playbook: name, phases, whether it needs a backup."""
    from agent.planning import list_playbooks, playbooks_data

    dirs = (catalog_args.profiles_dirs, catalog_args.playbooks_dirs)
    if output_format == "json":
        echo(lambda: _json(playbooks_data(*dirs)))
    else:
        echo(lambda: list_playbooks(*dirs))


@command()
@click.argument("kind", type=click.Choice(["result", "profile", "playbook"]))
def schema(kind: str) -> None:
    """Print the JSON Schema of result.json, of a distro profile or of a playbook.

    \b
    Editors complete and check profiles with it (yaml-language-server):
      imageprep schema profile > imageprep-profile.schema.json
      # first line of a profile:
      # yaml-language-server: $schema=./imageprep-profile.schema.json
    """
    from agent.schemas import json_schema

    echo(lambda: _json(json_schema(kind)))
