"""The command line: parse flags, call the library, map the outcome to an exit code.

Nothing else lives here: every decision is made by the modules it calls.
"""

from __future__ import annotations

import json
import math
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click

from agent import __version__, console, errors
from agent.excerpt import printable
from agent.outcome import EXIT_CODE_MEANINGS, ExitCode, exit_code_for_error

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _fail(exc: BaseException) -> None:
    """One clear line on stderr, the documented exit code, no traceback."""
    code = exit_code_for_error(exc)
    click.echo(console.clean(f"imageprep: error: {printable(str(exc))}"), err=True)
    sys.exit(int(code))


def _echo(render: Callable[[], str]) -> None:
    """Print what a read-only command renders, or fail with its one-line error."""
    try:
        text = render()
    except errors.ImagePrepError as exc:
        _fail(exc)
        return
    click.echo(console.clean(text))


def _resolve_log_format(value: str | None) -> str:
    # Human text by default, terminal or not: a CI build log is read by people too.
    # Pipelines that want JSON lines ask for them (and read result.json anyway).
    return value or "text"


def _configure_console_logging(log_format: str) -> None:
    from agent.logging import configure_run_logging

    configure_run_logging(log_format, run_log=None)


def _interrupt_on_sigterm() -> None:
    """CI runners stop jobs with SIGTERM: treat it like Ctrl-C so the report is written."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _vars(kw: dict[str, Any]) -> Any:
    """--var-file(s), then --var on top (the command line wins); typed later by the profile."""
    from agent.varfile import merge_vars

    return merge_vars(kw["var_files"], kw["var_items"])


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    # FloatRange lets "nan" through (every comparison with NaN is false).
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds", ctx, param)
    return value


def _split_names(values: Iterable[str]) -> frozenset[str]:
    return frozenset(n.strip() for v in values for n in v.split(",") if n.strip())


# -- shared options ------------------------------------------------------------------------


def format_option(func: F) -> F:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="text for people, json for programs.",
    )(func)


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def catalog_options(func: F) -> F:
    func = click.option(
        "--profiles-dir",
        "profiles_dirs",
        multiple=True,
        type=click.Path(path_type=Path, file_okay=False),
        help="Extra directory of distro profiles; a file with a built-in's id overrides it.",
    )(func)
    func = click.option(
        "--playbooks-dir",
        "playbooks_dirs",
        multiple=True,
        type=click.Path(path_type=Path, file_okay=False),
        help="Extra directory of playbooks; a file with a built-in's name overrides it.",
    )(func)
    return func


def connection_options(func: F) -> F:
    options = [
        click.option(
            "--target",
            "target_url",
            metavar="URL",
            help="ssh://USER@HOST[:PORT] or winrm+https://USER@HOST[:PORT] (winrm:// is HTTP).",
        ),
        click.option(
            "--identity",
            type=click.Path(path_type=Path, dir_okay=False),
            help="SSH private key file.",
        ),
        click.option(
            "--identity-passphrase-env",
            metavar="VAR",
            help="Passphrase of --identity from this environment variable.",
        ),
        click.option(
            "--identity-passphrase-file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Passphrase of --identity from this file.",
        ),
        click.option(
            "--password-env", metavar="VAR", help="Login password from this environment variable."
        ),
        click.option(
            "--password-file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Login password from this file.",
        ),
        click.option(
            "--sudo-password-env",
            metavar="VAR",
            help="sudo password from this environment variable.",
        ),
        click.option(
            "--sudo-password-file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="sudo password from this file.",
        ),
        click.option(
            "--known-hosts",
            type=click.Path(path_type=Path, dir_okay=False),
            help="known_hosts file to verify the host key against [~/.ssh/known_hosts].",
        ),
        click.option(
            "--host-key-policy",
            type=click.Choice(["strict", "accept-new"]),
            default="strict",
            show_default=True,
            help="strict: the key must be known. accept-new: record an unknown key. "
            "A changed key is always refused.",
        ),
        click.option(
            "--jump",
            "jumps",
            multiple=True,
            metavar="USER@HOST[:PORT]",
            help="Reach an ssh:// target through this SSH jump host (ProxyJump; repeat for a "
            "chain, first hop first). Its host key is verified like the target's.",
        ),
        click.option(
            "--ssh-config",
            type=click.Path(path_type=Path, dir_okay=False, exists=True),
            metavar="FILE",
            help="Take HostName, User, Port, IdentityFile and ProxyJump for the target from "
            "this OpenSSH client config (never read unless given; the command line wins).",
        ),
        click.option(
            "--connect-timeout",
            type=click.FloatRange(min=1, max=3600),
            callback=_finite,
            default=15,
            show_default=True,
            metavar="SECONDS",
            help="How long to wait for the target to accept the connection and answer "
            "(SSH banner and login; WinRM TCP connect).",
        ),
        *_WINRM_OPTIONS,
    ]
    for option in reversed(options):
        func = option(func)
    return func


_WINRM_OPTIONS = [
    click.option(
        "--winrm-transport",
        type=click.Choice(["ntlm", "basic", "kerberos", "credssp", "certificate"]),
        default=None,
        help="WinRM authentication [ntlm]; the password comes from --password-env/-file.",
    ),
    click.option(
        "--ca-cert",
        type=click.Path(path_type=Path, dir_okay=False),
        help="CA (or self-signed listener) certificate the WinRM HTTPS listener must chain to.",
    ),
    click.option(
        "--insecure-skip-verify",
        is_flag=True,
        help="Do not verify the WinRM HTTPS certificate (anyone on the path can impersonate "
        "the VM and read the password).",
    ),
    click.option(
        "--allow-unencrypted",
        is_flag=True,
        help="Allow winrm:// with basic authentication: password and commands in clear text.",
    ),
    click.option(
        "--client-cert",
        type=click.Path(path_type=Path, dir_okay=False),
        metavar="FILE",
        help="PEM client certificate for --winrm-transport certificate (winrm+https://).",
    ),
    click.option(
        "--client-key",
        type=click.Path(path_type=Path, dir_okay=False),
        metavar="FILE",
        help="PEM private key of --client-cert (unencrypted).",
    ),
]


def plan_options(func: F) -> F:
    options = [
        click.option(
            "--profile",
            default="auto",
            show_default=True,
            metavar="ID|auto",
            help="Distro profile; auto picks it from the target's /etc/os-release.",
        ),
        click.option(
            "--var",
            "var_items",
            multiple=True,
            metavar="KEY=VALUE",
            help="Set a profile var (repeatable), typed by its default: true/false, an "
            "integer, a list (comma- or space-separated) or a string. Wins over --var-file.",
        ),
        click.option(
            "--var-file",
            "var_files",
            multiple=True,
            type=click.Path(path_type=Path, dir_okay=False),
            metavar="FILE",
            help="Profile vars from a YAML mapping (repeatable; a later file wins), typed "
            "like --var; errors name FILE:LINE.",
        ),
        click.option("--only", multiple=True, metavar="STEP[,STEP]", help="Run only these steps."),
        click.option("--skip", multiple=True, metavar="STEP[,STEP]", help="Skip these steps."),
        click.option(
            "--tags", multiple=True, metavar="TAG[,TAG]", help="Run only steps with these tags."
        ),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            default=None,
            help="text (the default, on a terminal and in CI logs alike) or json lines.",
        ),
        click.option(
            "-v",
            "--verbose",
            is_flag=True,
            help="Also print each step's output as it arrives (text format).",
        ),
        click.option(
            "-q",
            "--quiet",
            is_flag=True,
            help="Print only the summary (and errors), no step lines.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return catalog_options(func)


def boot_test_run_options(func: F) -> F:
    options = [
        click.option(
            "--boot-test",
            "boot_test",
            is_flag=True,
            help="After a successful generalize, boot the disk once as a new machine "
            "(see `imageprep boot-test`); needs --boot-test-disk.",
        ),
        click.option(
            "--boot-test-disk",
            type=click.Path(path_type=Path, dir_okay=False),
            metavar="PATH",
            help="The VM's disk image (raw or qcow2) as this machine sees it once the VM is off.",
        ),
        click.option(
            "--boot-test-timeout",
            type=click.FloatRange(min=1),
            default=600,
            show_default=True,
            metavar="SECONDS",
            help="How long the boot test waits for the disk to come up.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def fleet_options(func: F) -> F:
    options = [
        click.option(
            "--inventory",
            type=click.Path(path_type=Path, dir_okay=False),
            metavar="FILE",
            help="Ansible inventory (INI or YAML): run on its hosts instead of one --target; "
            "each gets its own run folder under --run-dir (README, Fleets).",
        ),
        click.option(
            "--limit",
            metavar="PATTERN",
            help="Only the inventory's hosts or groups matching PATTERN (Ansible's syntax: "
            "a,b  group:!host  &group  web*).",
        ),
        click.option(
            "--forks",
            type=click.IntRange(min=1, max=256),
            default=5,
            show_default=True,
            metavar="N",
            help="With --inventory: how many hosts run at once.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _ssh_options(kw: dict[str, Any]) -> Any:
    from agent.executors.ssh import SshOptions
    from agent.executors.ssh.options import JumpHost
    from agent.secrets import secret_from_env, secret_from_file

    def secret(env: str | None, file: Path | None, what: str) -> Any:
        if env and file:
            raise errors.UsageError(f"{what}: give --{what}-env or --{what}-file, not both")
        if env:
            return secret_from_env(env, what=f"--{what}-env")
        if file:
            return secret_from_file(file, what=f"--{what}-file")
        return None

    options: dict[str, Any] = {
        "identity": kw["identity"],
        "identity_passphrase": secret(
            kw["identity_passphrase_env"], kw["identity_passphrase_file"], "identity-passphrase"
        ),
        "connect_timeout": kw["connect_timeout"],
        "password": secret(kw["password_env"], kw["password_file"], "password"),
        "sudo_password": secret(kw["sudo_password_env"], kw["sudo_password_file"], "sudo-password"),
        "host_key_policy": kw["host_key_policy"],
        "jumps": tuple(JumpHost.parse(jump) for jump in kw["jumps"]),
    }
    if kw["known_hosts"] is not None:
        options["known_hosts"] = kw["known_hosts"]
    if options["identity"] is not None and not options["identity"].is_file():
        raise errors.UsageError(f"--identity {options['identity']}: no such file")
    if options["identity_passphrase"] is not None and options["identity"] is None:
        raise errors.UsageError("--identity-passphrase-env/-file goes with --identity")
    if options["identity"] is not None:
        from agent.executors.ssh.executor import load_identity

        # A locked or broken key is a usage error before anything starts, not a failed run.
        load_identity(options["identity"], options["identity_passphrase"])
    return SshOptions(**options)


def _winrm_options(kw: dict[str, Any], target: Any, password: Any) -> Any:
    """WinRmOptions for a winrm:// target; None for other targets (which refuse its flags)."""
    if not target.is_windows:
        return None
    return _winrm_options_given(kw, password)


def _winrm_options_given(kw: dict[str, Any], password: Any) -> Any:
    from agent.executors.winrm import WinRmOptions

    return WinRmOptions(
        password=password,
        transport=kw.get("winrm_transport") or "ntlm",
        ca_cert=kw.get("ca_cert"),
        insecure_skip_verify=bool(kw.get("insecure_skip_verify")),
        allow_unencrypted=bool(kw.get("allow_unencrypted")),
        client_cert=kw.get("client_cert"),
        client_key=kw.get("client_key"),
        connect_timeout=kw.get("connect_timeout") or 15,
    )


# Options that only one transport reads: given for the other, they would be silently
# ignored (a --known-hosts that verifies nothing), so they are refused.
_SSH_ONLY: tuple[tuple[str, str], ...] = (
    ("--identity", "identity"),
    ("--identity-passphrase-env", "identity_passphrase_env"),
    ("--identity-passphrase-file", "identity_passphrase_file"),
    ("--known-hosts", "known_hosts"),
    ("--host-key-policy", "host_key_policy"),
    ("--sudo-password-env", "sudo_password_env"),
    ("--sudo-password-file", "sudo_password_file"),
    ("--jump", "jumps"),
    ("--ssh-config", "ssh_config"),
)
_WINRM_ONLY: tuple[tuple[str, str], ...] = (
    ("--winrm-transport", "winrm_transport"),
    ("--ca-cert", "ca_cert"),
    ("--insecure-skip-verify", "insecure_skip_verify"),
    ("--allow-unencrypted", "allow_unencrypted"),
    ("--client-cert", "client_cert"),
    ("--client-key", "client_key"),
)


def _given(name: str) -> bool:
    """True when the user set the option (not its default), whatever the value."""
    source = click.get_current_context().get_parameter_source(name)
    return source in (
        click.core.ParameterSource.COMMANDLINE,
        click.core.ParameterSource.ENVIRONMENT,
    )


def _target_for(kw: dict[str, Any]) -> Any:
    """The --target URL as a Target, after --ssh-config (for ssh://) had its say."""
    from agent.targets import parse_target

    if kw.get("ssh_config") is None or not kw["target_url"].lower().startswith("ssh://"):
        return parse_target(kw["target_url"])
    from agent.sshconfig import apply_ssh_config

    choice = apply_ssh_config(
        kw["ssh_config"], kw["target_url"], identity=kw["identity"], jumps=tuple(kw["jumps"])
    )
    kw["identity"], kw["jumps"] = choice.identity, choice.jumps
    kw["target_url"] = choice.target.display
    return choice.target


def _check_transport_options(target: Any) -> None:
    """Refuse an option the target's transport would ignore, naming it."""
    if target.is_windows:
        foreign, wanted = _SSH_ONLY, "ssh:// targets"
    else:
        foreign, wanted = _WINRM_ONLY, "winrm:// and winrm+https:// targets"
    for flag, name in foreign:
        if _given(name):
            raise errors.UsageError(f"{flag} is for {wanted}, not {target.scheme}://")


def _selection(kw: dict[str, Any]) -> Any:
    from agent.plan import Selection

    only, skip = _split_names(kw["only"]), _split_names(kw["skip"])
    both = sorted(only & skip)
    if both:
        raise errors.UsageError(f"--only and --skip both name {', '.join(both)}")
    return Selection(only=only, skip=skip, tags=_split_names(kw["tags"]))


# -- help: options in sections, then examples and the exit codes --------------------------

_SECTIONS: dict[str, tuple[str, ...]] = {
    "Connection": (
        "target_url", "identity", "identity_passphrase_env", "identity_passphrase_file",
        "password_env", "password_file", "sudo_password_env", "sudo_password_file",
        "known_hosts", "host_key_policy", "jumps", "ssh_config", "connect_timeout",
        "winrm_transport", "ca_cert", "insecure_skip_verify", "allow_unencrypted",
        "client_cert", "client_key", "inventory", "limit",
    ),
    "Plan": (
        "playbook", "profile", "var_items", "var_files", "only", "skip", "tags",
        "profiles_dirs", "playbooks_dirs",
    ),
    "Run": (
        "backup", "no_backup", "reason", "run_dir", "resume", "boot_test", "boot_test_disk",
        "boot_test_timeout", "platform", "platform_spec", "capture", "replace_version", "forks",
    ),
    "Output": ("log_format", "verbose", "quiet", "junit", "output_format"),
}  # fmt: skip

_EXAMPLES: dict[str, tuple[str, ...]] = {
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


def _exit_code_rows() -> list[tuple[str, str]]:
    return [(str(int(code)), text) for code, text in EXIT_CODE_MEANINGS.items()]


class SectionedCommand(click.Command):
    """--help with the options grouped (connection, plan, run, output), then examples
    and the exit-code table, so a pipeline author needs nothing but --help."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            section = next(
                (title for title, names in _SECTIONS.items() if param.name in names), "Other"
            )
            rows.setdefault(section, []).append(record)
        for title in (*_SECTIONS, "Other"):
            if rows.get(title):
                with formatter.section(f"{title} options" if title != "Other" else "Options"):
                    formatter.write_dl(rows[title])

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        examples = _EXAMPLES.get(self.name or "")
        if examples:
            with formatter.section("Examples"):
                for line in examples:  # as written: rewrapping would break the commands
                    formatter.write(f"{'':>{formatter.current_indent}}{line}\n")
        if self.name in ("run", "check", "plan", "validate", "boot-test", "vhd"):
            with formatter.section("Exit codes"):
                formatter.write_dl(_exit_code_rows())


class SectionedGroup(click.Group):
    command_class = SectionedCommand


# -- commands ------------------------------------------------------------------------------


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


def _run_playbook(
    kw: dict[str, Any],
    playbook: str,
    *,
    allow_backup: bool,
    after: Callable[[Any, str], ExitCode] | None = None,
) -> None:
    from agent.progress import ConsoleProgress, print_summary
    from agent.runner import RunRequest, execute

    if kw.get("inventory") is not None or _is_fleet_dir(kw.get("resume")):
        _run_fleet(kw, playbook, allow_backup=allow_backup, after=after)
        return
    log_format = _resolve_log_format(kw["log_format"])
    try:
        _refuse_fleet_options(kw)
        _configure_console_logging(log_format)
        resume = kw.get("resume")
        if resume is not None:
            _check_resume_flags(kw)
            if not kw["target_url"]:
                from agent.resume import recorded_target

                kw["target_url"] = recorded_target(resume)
        if not kw["target_url"]:
            raise errors.UsageError(
                "--target URL is required (e.g. ssh://azureuser@vm.example.com)"
            )
        if allow_backup and kw.get("reason") and not kw.get("no_backup"):
            raise errors.UsageError("--reason goes with --no-backup")
        if allow_backup and kw.get("no_backup") and not kw.get("reason"):
            raise errors.UsageError(
                "--no-backup needs --reason TEXT (it is recorded in the report)"
            )
        target = _target_for(kw)
        _check_transport_options(target)
        ssh_options = _ssh_options(kw)
        var_overrides = _vars(kw)
        request = RunRequest(
            target=target,
            playbook=playbook,
            profile=kw["profile"],
            ssh_options=ssh_options,
            winrm_options=_winrm_options(kw, target, ssh_options.password),
            backup_spec=kw.get("backup") if allow_backup else None,
            no_backup_reason=kw.get("reason") if allow_backup and kw.get("no_backup") else None,
            run_dir=kw["run_dir"],
            profiles_dirs=tuple(kw["profiles_dirs"]),
            playbooks_dirs=tuple(kw["playbooks_dirs"]),
            var_overrides=var_overrides.values,
            var_origins=var_overrides.origins,
            selection=_selection(kw),
            log_format=log_format,
            resume=resume,
            platform_spec=kw.get("platform"),
            capture_spec=kw.get("capture"),
            replace_version=bool(kw.get("replace_version")),
        )
    except errors.ImagePrepError as exc:
        _fail(exc)
        return
    _interrupt_on_sigterm()
    if kw.get("verbose") and kw.get("quiet"):
        _fail(errors.UsageError("-v/--verbose and -q/--quiet contradict each other"))
    console = ConsoleProgress(
        enabled=log_format == "text" and not kw.get("quiet"), verbose=bool(kw.get("verbose"))
    )
    try:
        outcome = execute(request, console)
    except errors.ImagePrepError as exc:  # refused before a run folder was written
        _fail(exc)
        return
    finally:
        console.close()
    print_summary(outcome, log_format)
    if kw.get("junit") is not None:
        _write_junit(kw["junit"], outcome.result)
    code = outcome.exit_code
    if after is not None and code is ExitCode.OK:
        code = after(outcome, log_format)  # e.g. --boot-test
    sys.exit(int(code))


# -- fleets: --inventory (agent/fleet.py) ---------------------------------------------------


def _is_fleet_dir(path: Path | None) -> bool:
    from agent.fleet_record import is_fleet_dir

    return path is not None and is_fleet_dir(path)


def _refuse_fleet_options(kw: dict[str, Any]) -> None:
    for flag, name in (("--limit", "limit"), ("--forks", "forks")):
        if _given(name):
            raise errors.UsageError(f"{flag} goes with --inventory")


def _check_fleet_flags(kw: dict[str, Any], transports: frozenset[str]) -> None:
    """What a fleet cannot take, and a transport's options no selected host would read."""
    if kw.get("target_url"):
        raise errors.UsageError(
            "--inventory and --target exclude each other: the inventory names the hosts"
        )
    one_vm = (
        ("--ssh-config", "ssh_config"),
        ("--junit", "junit"),
        ("--platform", "platform"),
        ("--capture", "capture"),
        ("--replace-version", "replace_version"),
    )
    for flag, name in one_vm:
        if kw.get(name):
            raise errors.UsageError(f"{flag} is for one --target, not --inventory")
    for used, foreign, wanted in (
        ("ssh", _SSH_ONLY, "ssh:// targets"),
        ("winrm", _WINRM_ONLY, "winrm:// and winrm+https:// targets"),
    ):
        if used in transports:
            continue
        for flag, name in foreign:
            if _given(name):
                raise errors.UsageError(
                    f"{flag} is for {wanted}, and no host --inventory selects uses {used}"
                )


def _fleet_settings(kw: dict[str, Any], transports: frozenset[str], log_format: str) -> Any:
    from agent.fleet import FleetSettings

    ssh_options = _ssh_options(kw)
    winrm = _winrm_options_given(kw, ssh_options.password) if "winrm" in transports else None
    return FleetSettings(
        ssh_options=ssh_options,
        winrm_options=winrm,
        forks=kw["forks"],
        log_format=log_format,
        verbose=bool(kw.get("verbose")),
        quiet=bool(kw.get("quiet")),
    )


def _fleet_plan(kw: dict[str, Any], command: str, playbook: str | None, allow_backup: bool) -> Any:
    from agent.fleet import FleetPlan

    var_overrides = _vars(kw)
    return FleetPlan(
        inventory=kw["inventory"],
        limit=kw.get("limit"),
        command=command,
        # Given on the command line they win; else each host's imageprep_* vars decide.
        playbook=playbook if _given("playbook") or command == "check" else None,
        profile=kw["profile"] if _given("profile") else None,
        backup_spec=kw.get("backup") if allow_backup else None,
        no_backup_reason=kw.get("reason") if allow_backup and kw.get("no_backup") else None,
        var_overrides=var_overrides.values,
        var_origins=var_overrides.origins,
        selection=_selection(kw),
        profiles_dirs=tuple(kw["profiles_dirs"]),
        playbooks_dirs=tuple(kw["playbooks_dirs"]),
    )


def _run_fleet(
    kw: dict[str, Any],
    playbook: str,
    *,
    allow_backup: bool,
    after: Callable[[Any, str], ExitCode] | None,
) -> None:
    """run/check --inventory, and run --resume FLEET_DIR: many runs, one fleet folder."""
    from agent import fleet
    from agent.fleet_record import load_fleet
    from agent.inventory import load_inventory

    log_format = _resolve_log_format(kw["log_format"])
    try:
        _configure_console_logging(log_format)
        if kw.get("verbose") and kw.get("quiet"):
            raise errors.UsageError("-v/--verbose and -q/--quiet contradict each other")
        if after is not None:
            raise errors.UsageError("--boot-test is for one --target, not --inventory")
        resume = kw.get("resume")
        if resume is not None:
            if kw.get("inventory") is not None or _given("limit"):
                raise errors.UsageError(
                    "--resume continues a fleet (or a run) on the hosts it was started with: "
                    "--inventory and --limit cannot be given with it"
                )
            _check_resume_flags(kw)
            recorded = load_fleet(resume)
            names = {h.name for h in recorded.hosts}
            inventory = fleet.FleetPlan.from_dict(recorded.request).inventory
            hosts = tuple(h for h in load_inventory(inventory).hosts if h.name in names)
        else:
            if allow_backup and kw.get("reason") and not kw.get("no_backup"):
                raise errors.UsageError("--reason goes with --no-backup")
            if allow_backup and kw.get("no_backup") and not kw.get("reason"):
                raise errors.UsageError(
                    "--no-backup needs --reason TEXT (it is recorded in the report)"
                )
            plan = _fleet_plan(kw, "run" if allow_backup else "check", playbook, allow_backup)
            hosts = fleet.select_hosts(plan)
        transports = fleet.transports_used(hosts)
        _check_fleet_flags(kw, transports)
        settings = _fleet_settings(kw, transports, log_format)
        _interrupt_on_sigterm()
        if resume is not None:
            outcome = fleet.resume_fleet(resume, settings)
        else:
            outcome = fleet.run_fleet(plan, settings, kw.get("run_dir"))
    except errors.ImagePrepError as exc:
        _fail(exc)
        return
    fleet.print_fleet_summary(outcome, log_format)
    sys.exit(int(outcome.exit_code))


def _plan_fleet(kw: dict[str, Any]) -> None:
    """plan --inventory: every selected host's plan, read from the host."""
    from agent.fleet import select_hosts, transports_used
    from agent.fleet_plan import plan_fleet, render

    log_format = _resolve_log_format(kw["log_format"])
    as_json = kw["output_format"] == "json"
    try:
        _configure_console_logging(log_format)
        plan = _fleet_plan(kw, "plan", kw["playbook"], allow_backup=False)
        transports = transports_used(select_hosts(plan))
        _check_fleet_flags(kw, transports)
        settings = _fleet_settings(kw, transports, log_format)
        outcome = plan_fleet(plan, settings, as_json=as_json)
    except errors.ImagePrepError as exc:
        _fail(exc)
        return
    click.echo(console.clean(render(outcome, as_json=as_json)))
    sys.exit(int(outcome.exit_code))


def _write_junit(path: Path, result: Mapping[str, Any]) -> None:
    """The run's exit code stands even if its JUnit copy cannot be written: warn instead."""
    from agent.junit import write_junit

    try:
        write_junit(path, result)
    except OSError as exc:
        click.echo(
            console.clean(f"imageprep: warning: --junit {path}: not written: {exc.strerror}"),
            err=True,
        )


def _check_resume_flags(kw: dict[str, Any]) -> None:
    """--resume continues the run as it was planned: its plan options come from its journal."""
    given = [
        flag
        for flag, key, default in (
            ("--playbook", "playbook", "generalize"),
            ("--profile", "profile", "auto"),
            ("--backup", "backup", None),
            ("--no-backup", "no_backup", False),
            ("--reason", "reason", None),
            ("--run-dir", "run_dir", None),
            ("--var", "var_items", ()),
            ("--var-file", "var_files", ()),
            ("--only", "only", ()),
            ("--skip", "skip", ()),
            ("--tags", "tags", ()),
            ("--profiles-dir", "profiles_dirs", ()),
            ("--playbooks-dir", "playbooks_dirs", ()),
            ("--platform", "platform", None),
            ("--capture", "capture", None),
            ("--replace-version", "replace_version", False),
        )
        if kw.get(key, default) not in (default, None, (), False)
    ]
    if given:
        raise errors.UsageError(
            f"--resume continues a run with the options it was started with (its journal "
            f"has them); {given[0]} cannot be given with it"
        )


@main.command(context_settings=CONTEXT)
@connection_options
@fleet_options
@click.option("--playbook", default="generalize", show_default=True, metavar="NAME")
@click.option(
    "--backup",
    metavar="PROVIDER:ARG",
    help="Backup taken before anything changes: archive:DIR (tar.gz of the profile's backup "
    "paths, sha256 recorded), command:'CMD' (your snapshot CLI; its stdout is the reference), "
    "azure-snapshot:/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/"
    "virtualMachines/VM[?data-disks=true] (Azure snapshots of the VM's disks), "
    "libvirt:DOMAIN[?uri=URI&snapshot=NAME] (a libvirt snapshot).",
)
@click.option("--no-backup", is_flag=True, help="Run without a backup (needs --reason).")
@click.option("--reason", metavar="TEXT", help="Why there is no backup; recorded in the report.")
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Run folder [./imageprep-runs/<UTC time>-<run id>].",
)
@click.option(
    "--resume",
    type=click.Path(path_type=Path),
    metavar="RUN_DIR",
    help="Continue the run in RUN_DIR after an interruption or failure: same plan, same "
    "backup, from where it stopped (--target may be left out).",
)
@click.option(
    "--platform",
    metavar="SCHEME:ARG",
    help="Where the VM runs, asked for its power state after shutdown: azure:VM_ID or "
    "libvirt:DOMAIN[?uri=URI] [default: the VM --backup azure-snapshot:/libvirt: names].",
)
@click.option(
    "--capture",
    metavar="SPEC",
    help="After a verified generalization, make an image: gallery:…/versions/X.Y.Z or "
    "image:…/images/NAME (Azure; see README, Capture).",
)
@click.option("--replace-version", is_flag=True, help="Replace an existing gallery image version.")
@boot_test_run_options
@plan_options
@click.option(
    "--junit",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Also write the steps as JUnit XML (one testcase per step) for the CI's test view.",
)
def run(**kw: Any) -> None:
    """Run a playbook (default: generalize) against a target, or resume one (--resume)."""
    try:
        after = _boot_test_after_run(kw)
    except errors.ImagePrepError as exc:
        _fail(exc)
        return
    _run_playbook(kw, kw["playbook"], allow_backup=True, after=after)


@main.command(context_settings=CONTEXT)
@connection_options
@fleet_options
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Run folder [./imageprep-runs/<UTC time>-<run id>].",
)
@plan_options
@click.option(
    "--junit",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Also write the steps as JUnit XML (one testcase per step) for the CI's test view.",
)
def check(**kw: Any) -> None:
    """Run only the preflight checks; changes nothing on the target."""
    _run_playbook(kw, "check", allow_backup=False)


@main.command(context_settings=CONTEXT)
@connection_options
@fleet_options
@click.option("--playbook", default="generalize", show_default=True, metavar="NAME")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
)
@plan_options
def plan(**kw: Any) -> None:
    """Show the steps and exact commands a run would execute; changes nothing.

    With --target the facts are read from the target (read-only); without it, give
    --profile ID and conditions that need facts are shown as undecided.
    """
    from agent.planning import show_plan

    if kw.get("inventory") is not None:
        _plan_fleet(kw)
        return
    try:
        _configure_console_logging(_resolve_log_format(kw["log_format"]))
        _refuse_fleet_options(kw)
        ssh_options = winrm_options = None
        if kw["target_url"]:
            target = _target_for(kw)
            _check_transport_options(target)
            ssh_options = _ssh_options(kw)
            winrm_options = _winrm_options(kw, target, ssh_options.password)
        var_overrides = _vars(kw)
        text = show_plan(
            target_url=kw["target_url"],
            ssh_options=ssh_options,
            winrm_options=winrm_options,
            playbook=kw["playbook"],
            profile=kw["profile"],
            profiles_dirs=tuple(kw["profiles_dirs"]),
            playbooks_dirs=tuple(kw["playbooks_dirs"]),
            var_overrides=var_overrides.values,
            var_origins=var_overrides.origins,
            selection=_selection(kw),
            as_json=kw["output_format"] == "json",
        )
    except errors.ImagePrepError as exc:
        _fail(exc)
        return
    click.echo(console.clean(text))


@main.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@catalog_options
@format_option
def validate(
    files: tuple[Path, ...],
    profiles_dirs: tuple[Path, ...],
    playbooks_dirs: tuple[Path, ...],
    output_format: str,
) -> None:
    """Check the built-in and given YAML files without connecting (exit 2 on any error)."""
    from agent.planning import validate_all, validation_data

    try:
        result = validate_all(files, profiles_dirs, playbooks_dirs)
    except errors.ImagePrepError as exc:
        _fail(exc)
        return
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


@main.group(cls=SectionedGroup, context_settings=CONTEXT)
def profiles() -> None:
    """List and show distro profiles."""


@profiles.command("list")
@catalog_options
@format_option
def profiles_list(
    profiles_dirs: tuple[Path, ...], playbooks_dirs: tuple[Path, ...], output_format: str
) -> None:
    """One line per profile: id, what it matches, where it comes from."""
    from agent.planning import list_profiles, profiles_data

    if output_format == "json":
        _echo(lambda: _json(profiles_data(profiles_dirs, playbooks_dirs)))
    else:
        _echo(lambda: list_profiles(profiles_dirs, playbooks_dirs))


@profiles.command("show")
@click.argument("profile_id")
@catalog_options
@format_option
def profiles_show(
    profile_id: str,
    profiles_dirs: tuple[Path, ...],
    playbooks_dirs: tuple[Path, ...],
    output_format: str,
) -> None:
    """Every step of a profile by phase, with which file won."""
    from agent.planning import profile_data, show_profile

    if output_format == "json":
        _echo(lambda: _json(profile_data(profile_id, profiles_dirs, playbooks_dirs)))
    else:
        _echo(lambda: show_profile(profile_id, profiles_dirs, playbooks_dirs))


@main.group(cls=SectionedGroup, context_settings=CONTEXT)
def playbooks() -> None:
    """List playbooks."""


@playbooks.command("list")
@catalog_options
@format_option
def playbooks_list(
    profiles_dirs: tuple[Path, ...], playbooks_dirs: tuple[Path, ...], output_format: str
) -> None:
    """One line per playbook: name, phases, whether it needs a backup."""
    from agent.planning import list_playbooks, playbooks_data

    if output_format == "json":
        _echo(lambda: _json(playbooks_data(profiles_dirs, playbooks_dirs)))
    else:
        _echo(lambda: list_playbooks(profiles_dirs, playbooks_dirs))


@main.command(context_settings=CONTEXT)
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

    _echo(lambda: _json(json_schema(kind)))


# -- boot-test and vhd (agent/boottest.py, agent/vhd.py) ------------------------------------


def _boot_test_after_run(kw: dict[str, Any]) -> Callable[[Any, str], ExitCode] | None:
    """Validate run's --boot-test flags up front; return what runs after a successful run."""
    enabled, disk = kw.pop("boot_test"), kw.pop("boot_test_disk")
    timeout = kw.pop("boot_test_timeout")
    if disk is not None and not enabled:
        raise errors.UsageError("--boot-test-disk goes with --boot-test")
    if not enabled:
        return None
    if disk is None:
        raise errors.UsageError(
            "--boot-test needs --boot-test-disk PATH: the VM's disk image as this machine "
            "sees it (the backup providers do not hand out disks yet)"
        )
    from agent.boottest import boot_test_after_run, preflight_host

    preflight_host(disk)  # missing qemu or no such disk: say so before the VM is changed

    def after(outcome: Any, log_format: str) -> ExitCode:
        return boot_test_after_run(outcome, disk, timeout=timeout, log_format=log_format)

    return after


@main.command("boot-test", context_settings=CONTEXT)
@click.argument("disk", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Report folder [./imageprep-runs/<UTC time>-<run id>].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=600,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the disk to boot and let the new user in over SSH.",
)
@click.option(
    "--deprovisioned-user",
    metavar="NAME",
    help="The user generalization deleted; checked absent before and after boot.",
)
@click.option(
    "--previous-machine-id",
    metavar="ID",
    help="The machine-id before generalization; the new one must differ.",
)
@click.option(
    "--accel",
    type=click.Choice(["auto", "kvm", "tcg"]),
    default="auto",
    show_default=True,
    help="auto: KVM where the CPU shows vmx/svm and /dev/kvm opens (TCG if it fails), else TCG.",
)
@click.option(
    "--memory",
    "memory_mib",
    type=click.IntRange(min=256),
    default=1024,
    show_default=True,
    metavar="MIB",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="text (the default) or json lines.",
)
def boot_test(**kw: Any) -> None:
    """Boot a generalized DISK (raw or qcow2) once and check it comes up as a new machine.

    DISK is only read: QEMU boots a throwaway overlay with a fresh NoCloud seed (new user,
    new key). A pass is recorded in DISK.boot-test.json for `imageprep vhd`.
    """
    from agent.boottest import BootTestRequest, print_boot_test_summary, run_boot_test

    log_format = _resolve_log_format(kw["log_format"])
    _interrupt_on_sigterm()
    try:
        outcome = run_boot_test(
            BootTestRequest(
                disk=kw["disk"],
                run_dir=kw["run_dir"],
                timeout=kw["timeout"],
                deprovisioned_user=kw["deprovisioned_user"],
                previous_machine_id=kw["previous_machine_id"],
                accel=kw["accel"],
                memory_mib=kw["memory_mib"],
                log_format=log_format,
            )
        )
    except errors.ImagePrepError as exc:  # e.g. --run-dir cannot be written: no report yet
        _fail(exc)
        return
    print_boot_test_summary(outcome, log_format)
    sys.exit(int(outcome.exit_code))


@main.command(context_settings=CONTEXT)
@click.argument("spec")
@click.option(
    "--platform",
    "platform_spec",
    required=True,
    metavar="azure:VM_ID",
    help="The generalized, stopped VM to capture.",
)
@click.option("--replace-version", is_flag=True, help="Replace an existing gallery image version.")
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Report folder [./imageprep-runs/<UTC time>-<run id>].",
)
def capture(spec: str, platform_spec: str, replace_version: bool, run_dir: Path | None) -> None:
    """Capture a VM that is already generalized and stopped into SPEC (see README, Capture).

    SPEC: gallery:/subscriptions/…/galleries/G/images/DEF/versions/X.Y.Z[?regions=…] or
    image:/subscriptions/…/images/NAME. Deallocates the VM, marks it generalized, makes
    the image; the ids go to result.json and journal.jsonl in the report folder.
    """
    from agent.capture import capture_command

    _interrupt_on_sigterm()
    try:
        outcome = capture_command(
            spec, platform_spec, replace_version=replace_version, run_dir=run_dir
        )
    except errors.ImagePrepError as exc:
        _fail(exc)
        return
    stream_err = outcome.exit_code is not ExitCode.OK
    click.echo(console.clean(outcome.message), err=stream_err)
    click.echo(f"report: {outcome.run_dir}", err=stream_err)
    sys.exit(int(outcome.exit_code))


@main.command(context_settings=CONTEXT)
@click.argument("vhd", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--to", "to", required=True, metavar="azure-disk:DISK_ID", help="The disk to create.")
@click.option("--location", required=True, metavar="REGION", help="The disk's region.")
@click.option("--sku", default="Standard_LRS", show_default=True)
@click.option("--zone", default=None, metavar="1|2|3")
@click.option(
    "--os-type", type=click.Choice(["Linux", "Windows"]), default="Linux", show_default=True
)
@click.option(
    "--hyper-v-generation", type=click.Choice(["V1", "V2"]), default="V2", show_default=True
)
@click.option(
    "--architecture", type=click.Choice(["x64", "Arm64"]), default="x64", show_default=True
)
@click.option(
    "--security-type",
    type=click.Choice(["Standard", "TrustedLaunch"]),
    default="Standard",
    show_default=True,
)
@click.option("--force", is_flag=True, help="Upload without a passed boot-test record.")
def upload(**kw: Any) -> None:
    """Upload VHD (fixed, whole MiB, from `imageprep vhd`) as a new Azure managed disk.

    Creates the disk for upload, writes its non-zero 4 MiB ranges through a write SAS,
    and revokes the access whatever happened.
    """
    from agent.upload import NotUploadable, ProgressLine, parse_disk_target, upload_vhd

    _interrupt_on_sigterm()
    progress = ProgressLine(lambda text: click.echo(text, err=True, nl=False))
    try:
        target = parse_disk_target(
            kw["to"], location=kw["location"], sku=kw["sku"], zone=kw["zone"]
        )
        summary = upload_vhd(
            kw["vhd"],
            target,
            force=kw["force"],
            os_type=kw["os_type"],
            hyper_v_generation=kw["hyper_v_generation"],
            architecture=kw["architecture"],
            security_type=kw["security_type"],
            on_progress=progress if sys.stderr.isatty() else (lambda sent, total: None),
        )
    except KeyboardInterrupt:
        click.echo(
            f"imageprep: interrupted: write access was revoked; disk {kw['to']} is left "
            "partly written: delete it and upload again",
            err=True,
        )
        sys.exit(int(ExitCode.INTERRUPTED))
    except NotUploadable as exc:
        click.echo(console.clean(f"imageprep: refused: {exc}"), err=True)
        sys.exit(int(ExitCode.PREFLIGHT_FAILED))
    except errors.ImagePrepError as exc:
        _fail(exc)
        return
    click.echo(console.clean(json.dumps(summary, sort_keys=True)))


@main.command(context_settings=CONTEXT)
@click.argument("disk", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--force", is_flag=True, help="Convert even though DISK has not passed boot-test.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def vhd(disk: Path, out: Path, force: bool, overwrite: bool) -> None:
    """Convert DISK (raw or qcow2) into OUT, a fixed-size VHD for Azure (size: whole MiB).

    Refuses a DISK that has not passed `imageprep boot-test` unless --force.
    """
    from agent.vhd import NotBootTested, convert_to_vhd

    try:
        result = convert_to_vhd(disk, out, force=force, overwrite=overwrite)
    except NotBootTested as exc:
        click.echo(console.clean(f"imageprep: refused: {exc}"), err=True)
        sys.exit(int(ExitCode.PREFLIGHT_FAILED))
    except errors.ImagePrepError as exc:
        _fail(exc)
        return
    rounded = f", rounded up by {result.rounded_up_by} bytes" if result.rounded_up_by else ""
    click.echo(
        f"{result.path}: fixed VHD, {result.virtual_size // (1 << 20)} MiB{rounded}, "
        f"checked (boot-test {result.boot_test})"
    )
