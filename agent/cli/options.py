"""The command line's options, in typed groups.

Each group is a frozen dataclass and one decorator. The decorator adds the group's options
to a command (listed under the group's section in --help) and hands the command one
instance of the dataclass, built from their values, as the argument named after the class
in snake case: ``@connection_options`` gives ``connection_args: ConnectionArgs``.

To add a group (for example ``--inventory``, ``--limit`` and ``--forks`` for run, check and
plan), in this module:

1. a frozen dataclass whose field names are the options' parameter names
   (``FleetArgs(inventory: Path | None, limit: str | None, forks: int)``);
2. ``fleet_options = option_group(FleetArgs, "Fleet", opt("--inventory", ...), ...)``
   (``option_group`` checks at import that the fields and the options match);
3. ``@fleet_options`` on each command, which then takes ``fleet_args: FleetArgs``.

"Fleet options:" then comes after the known sections in --help (help.SECTION_ORDER orders
them). An option two commands share is declared once, as an ``opt`` here. The groups
only `run` takes live in cli/run_options.py: each group is a class made at import, and
`plan` should not pay for them.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

from agent import errors
from agent.cli.help import SectionOption

if TYPE_CHECKING:
    from agent.executors.winrm.options import WinRmTransport
    from agent.plan import Selection
    from agent.varfile import VarOverrides

F = TypeVar("F", bound=Callable[..., Any])
Command = Callable[..., Any]


@dataclass(frozen=True)
class Opt:
    """One option's click declaration; made into a click option where it is used."""

    decls: tuple[str, ...]
    attrs: Mapping[str, Any]

    def name(self) -> str | None:
        """The parameter name click gives it (``--jump``, ``jumps`` -> ``jumps``)."""
        return click.Option(self.decls, **self.attrs).name

    def decorator(self, section: str) -> Callable[[F], F]:
        return click.option(*self.decls, cls=SectionOption, section=section, **self.attrs)


def opt(*decls: str, **attrs: Any) -> Opt:
    return Opt(decls, attrs)


def option_group(cls: type[Any], section: str, *specs: Opt) -> Callable[[Command], Command]:
    """A decorator: add ``specs`` in ``section`` and pass the command one ``cls`` of them."""
    names = [field.name for field in fields(cls)]
    declared = [spec.name() for spec in specs]
    if sorted(names) != sorted(n for n in declared if n):  # a typo here fails at import
        raise TypeError(f"{cls.__name__} fields {names} do not match its options {declared}")
    argument = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()

    def decorate(command: Command) -> Command:
        @functools.wraps(command)
        def build(**values: Any) -> Any:
            values[argument] = cls(**{name: values.pop(name) for name in names})
            return command(**values)

        for spec in reversed(specs):
            build = spec.decorator(section)(build)
        return build

    return decorate


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    # FloatRange lets "nan" through (every comparison with NaN is false).
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds", ctx, param)
    return value


def _split_names(values: Iterable[str]) -> frozenset[str]:
    return frozenset(n.strip() for v in values for n in v.split(",") if n.strip())


def file_type(**extra: Any) -> click.Path:
    """A click path type for an option naming a file (not a directory)."""
    return click.Path(path_type=Path, dir_okay=False, **extra)


# -- options more than one command (or group) takes, each declared once -------------------

PLAYBOOK = opt("--playbook", default="generalize", show_default=True, metavar="NAME")
RUN_DIR = opt(
    "--run-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Run folder [./imageprep-runs/<UTC time>-<run id>].",
)
REPLACE_VERSION = opt(
    "--replace-version", is_flag=True, help="Replace an existing gallery image version."
)
LOG_FORMAT = opt(
    "--log-format",
    type=click.Choice(["text", "json"]),
    # Human text by default, terminal or not: a CI build log is read by people too.
    # Pipelines that want JSON lines ask for them (and read result.json anyway).
    default="text",
    help="text (the default, on a terminal and in CI logs alike) or json lines.",
)
FORMAT = opt(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for programs.",
)
JUNIT = opt(
    "--junit",
    type=file_type(),
    metavar="FILE",
    help="Also write the steps as JUnit XML (one testcase per step) for the CI's test view.",
)

playbook_option = PLAYBOOK.decorator("Plan")
run_dir_option = RUN_DIR.decorator("Run")
replace_version_option = REPLACE_VERSION.decorator("Run")
log_format_option = LOG_FORMAT.decorator("Output")
format_option = FORMAT.decorator("Output")
junit_option = JUNIT.decorator("Output")


# -- connection: run, check, plan ----------------------------------------------------------


@dataclass(frozen=True)
class ConnectionArgs:
    """Where the target is and how to log in: names of secrets, never the secrets."""

    target_url: str | None
    identity: Path | None
    identity_passphrase_env: str | None
    identity_passphrase_file: Path | None
    password_env: str | None
    password_file: Path | None
    sudo_password_env: str | None
    sudo_password_file: Path | None
    known_hosts: Path | None
    host_key_policy: Literal["strict", "accept-new"]
    jumps: tuple[str, ...]
    ssh_config: Path | None
    connect_timeout: float
    winrm_transport: WinRmTransport
    ca_cert: Path | None
    insecure_skip_verify: bool
    allow_unencrypted: bool
    client_cert: Path | None
    client_key: Path | None


# Options that only one transport reads: given for the other, they would be silently
# ignored (a --known-hosts that verifies nothing), so they are refused (connection.py).
SSH_ONLY: tuple[str, ...] = (
    "identity",
    "identity_passphrase_env",
    "identity_passphrase_file",
    "known_hosts",
    "host_key_policy",
    "sudo_password_env",
    "sudo_password_file",
    "jumps",
    "ssh_config",
)
WINRM_ONLY: tuple[str, ...] = (
    "winrm_transport",
    "ca_cert",
    "insecure_skip_verify",
    "allow_unencrypted",
    "client_cert",
    "client_key",
)

connection_options = option_group(
    ConnectionArgs,
    "Connection",
    opt(
        "--target",
        "target_url",
        metavar="URL",
        help="ssh://USER@HOST[:PORT] or winrm+https://USER@HOST[:PORT] (winrm:// is HTTP).",
    ),
    opt("--identity", type=file_type(), help="SSH private key file."),
    opt(
        "--identity-passphrase-env",
        metavar="VAR",
        help="Passphrase of --identity from this environment variable.",
    ),
    opt(
        "--identity-passphrase-file",
        type=file_type(),
        help="Passphrase of --identity from this file.",
    ),
    opt("--password-env", metavar="VAR", help="Login password from this environment variable."),
    opt("--password-file", type=file_type(), help="Login password from this file."),
    opt("--sudo-password-env", metavar="VAR", help="sudo password from this environment variable."),
    opt("--sudo-password-file", type=file_type(), help="sudo password from this file."),
    opt(
        "--known-hosts",
        type=file_type(),
        help="known_hosts file to verify the host key against [~/.ssh/known_hosts].",
    ),
    opt(
        "--host-key-policy",
        type=click.Choice(["strict", "accept-new"]),
        default="strict",
        show_default=True,
        help="strict: the key must be known. accept-new: record an unknown key. "
        "A changed key is always refused.",
    ),
    opt(
        "--jump",
        "jumps",
        multiple=True,
        metavar="USER@HOST[:PORT]",
        help="Reach an ssh:// target through this SSH jump host (ProxyJump; repeat for a "
        "chain, first hop first). Its host key is verified like the target's.",
    ),
    opt(
        "--ssh-config",
        type=file_type(exists=True),
        metavar="FILE",
        help="Take HostName, User, Port, IdentityFile and ProxyJump for the target from "
        "this OpenSSH client config (never read unless given; the command line wins).",
    ),
    opt(
        "--connect-timeout",
        type=click.FloatRange(min=1, max=3600),
        callback=_finite,
        default=15,
        show_default=True,
        metavar="SECONDS",
        help="How long to wait for the target to accept the connection and answer "
        "(SSH banner and login; WinRM TCP connect).",
    ),
    opt(
        "--winrm-transport",
        type=click.Choice(["ntlm", "basic", "kerberos", "credssp", "certificate"]),
        default="ntlm",  # shown in the help text: whether it was given is what counts
        help="WinRM authentication [ntlm]; the password comes from --password-env/-file.",
    ),
    opt(
        "--ca-cert",
        type=file_type(),
        help="CA (or self-signed listener) certificate the WinRM HTTPS listener must chain to.",
    ),
    opt(
        "--insecure-skip-verify",
        is_flag=True,
        help="Do not verify the WinRM HTTPS certificate (anyone on the path can impersonate "
        "the VM and read the password).",
    ),
    opt(
        "--allow-unencrypted",
        is_flag=True,
        help="Allow winrm:// with basic authentication: password and commands in clear text.",
    ),
    opt(
        "--client-cert",
        type=file_type(),
        metavar="FILE",
        help="PEM client certificate for --winrm-transport certificate (winrm+https://).",
    ),
    opt(
        "--client-key",
        type=file_type(),
        metavar="FILE",
        help="PEM private key of --client-cert (unencrypted).",
    ),
)


# -- the catalog: every command that reads profiles or playbooks ---------------------------


@dataclass(frozen=True)
class CatalogArgs:
    """Directories of profiles and playbooks on top of the built-in ones."""

    playbooks_dirs: tuple[Path, ...]
    profiles_dirs: tuple[Path, ...]


catalog_options = option_group(
    CatalogArgs,
    "Plan",
    opt(
        "--playbooks-dir",
        "playbooks_dirs",
        multiple=True,
        type=click.Path(path_type=Path, file_okay=False),
        help="Extra directory of playbooks; a file with a built-in's name overrides it.",
    ),
    opt(
        "--profiles-dir",
        "profiles_dirs",
        multiple=True,
        type=click.Path(path_type=Path, file_okay=False),
        help="Extra directory of distro profiles; a file with a built-in's id overrides it.",
    ),
)


# -- plan: which profile, which vars, which steps (run, check, plan) -----------------------


@dataclass(frozen=True)
class PlanArgs:
    """The profile, its vars and the step selection."""

    profile: str
    var_items: tuple[str, ...]
    var_files: tuple[Path, ...]
    only: tuple[str, ...]
    skip: tuple[str, ...]
    tags: tuple[str, ...]

    def var_overrides(self) -> VarOverrides:
        """--var-file(s), then --var on top (the command line wins); typed later by the profile."""
        from agent.varfile import merge_vars

        return merge_vars(self.var_files, self.var_items)

    def selection(self) -> Selection:
        from agent.plan import Selection

        only, skip = _split_names(self.only), _split_names(self.skip)
        both = sorted(only & skip)
        if both:
            raise errors.UsageError(f"--only and --skip both name {', '.join(both)}")
        return Selection(only=only, skip=skip, tags=_split_names(self.tags))


plan_options = option_group(
    PlanArgs,
    "Plan",
    opt(
        "--profile",
        default="auto",
        show_default=True,
        metavar="ID|auto",
        help="Distro profile; auto picks it from the target's /etc/os-release (Windows: registry).",
    ),
    opt(
        "--var",
        "var_items",
        multiple=True,
        metavar="KEY=VALUE",
        help="Set a profile var (repeatable), typed by its default: true/false, an "
        "integer, a list (comma- or space-separated) or a string. Wins over --var-file.",
    ),
    opt(
        "--var-file",
        "var_files",
        multiple=True,
        type=file_type(),
        metavar="FILE",
        help="Profile vars from a YAML mapping (repeatable; a later file wins), typed "
        "like --var; errors name FILE:LINE.",
    ),
    opt("--only", multiple=True, metavar="STEP[,STEP]", help="Run only these steps."),
    opt("--skip", multiple=True, metavar="STEP[,STEP]", help="Skip these steps."),
    opt("--tags", multiple=True, metavar="TAG[,TAG]", help="Run only steps with these tags."),
)


# -- output: how a run reports on the console (run, check, plan) ---------------------------


@dataclass(frozen=True)
class OutputArgs:
    log_format: Literal["text", "json"]
    verbose: bool
    quiet: bool


output_options = option_group(
    OutputArgs,
    "Output",
    LOG_FORMAT,
    opt(
        "-v",
        "--verbose",
        is_flag=True,
        help="Also print each step's output as it arrives (text format).",
    ),
    opt("-q", "--quiet", is_flag=True, help="Print only the summary (and errors), no step lines."),
)


# -- fleet: many targets from one inventory (run, check, plan) -----------------------------


@dataclass(frozen=True)
class FleetArgs:
    """`--inventory`: the hosts of an Ansible inventory instead of one --target."""

    inventory: Path | None
    limit: str | None
    forks: int


fleet_options = option_group(
    FleetArgs,
    "Fleet",
    opt(
        "--inventory",
        type=file_type(),
        metavar="FILE",
        help="Ansible inventory (INI or YAML): run on its hosts instead of one --target; "
        "each gets its own run folder under --run-dir (README, Fleets).",
    ),
    opt(
        "--limit",
        metavar="PATTERN",
        help="Only the inventory's hosts or groups matching PATTERN (Ansible's syntax: "
        "a,b  group:!host  &group  web*).",
    ),
    opt(
        "--forks",
        type=click.IntRange(min=1, max=256),
        default=5,
        show_default=True,
        metavar="N",
        help="With --inventory: how many hosts run at once.",
    ),
)


def given(name: str) -> bool:
    """True when the user set the option (not its default), whatever the value."""
    source = click.get_current_context().get_parameter_source(name)
    return source in (
        click.core.ParameterSource.COMMANDLINE,
        click.core.ParameterSource.ENVIRONMENT,
    )


def flag_of(name: str) -> str:
    """The option's long flag in the current command (``jumps`` -> ``--jump``)."""
    ctx = click.get_current_context()
    (param,) = [p for p in ctx.command.params if p.name == name]
    return max(param.opts, key=len)
