"""The OOBE administrator password for the built-in answer file, kept off every record.

The windows-server profile can write an answer file that takes a generalized VM through
OOBE without anyone at the console (``--var oobe_answer_file=true``). It sets no
password unless ``--var oobe_admin_password_env=NAME`` names an environment variable on
the controller. That value is read here, registered for redaction (logs, result.json,
console) and handed to the run's WinRM shell as the environment variable
:data:`SHELL_VARIABLE`, inside the encrypted Create request: never on a command line,
never in the plan, the journal or a step's text. The step that writes the answer file
reads it from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TypeVar

from agent.secrets import Secret, secret_from_env

PASSWORD_VAR = "oobe_admin_password_env"  # noqa: S105  the var's name, not a password
SHELL_VARIABLE = "IMAGEPREP_OOBE_ADMIN_PASSWORD"

_Options = TypeVar("_Options")


def with_oobe_password(options: _Options, var_overrides: Mapping[str, str]) -> _Options:
    """``options`` (WinRmOptions or None) with the password in the shell environment."""
    name = var_overrides.get(PASSWORD_VAR, "").strip()
    if not name or options is None:
        return options
    secret: Secret = secret_from_env(name, what=f"--var {PASSWORD_VAR}={name}")
    environment = dict(getattr(options, "shell_environment", {}))
    environment[SHELL_VARIABLE] = secret
    return replace(options, shell_environment=environment)  # type: ignore[type-var]
