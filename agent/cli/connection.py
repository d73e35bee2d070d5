"""From the connection options to what an executor needs: the target, its options, the
secrets read from where the flags point. Nothing here imports a transport library."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from agent import errors
from agent.cli.options import SSH_ONLY, WINRM_ONLY, ConnectionArgs, flag_of, given

if TYPE_CHECKING:
    from agent.executors.ssh import SshOptions
    from agent.executors.winrm import WinRmOptions
    from agent.secrets import Secret
    from agent.targets import Target


@dataclass(frozen=True)
class Connection:
    """The target and how to reach it, once --ssh-config had its say."""

    url: str  # as given, or as --ssh-config rewrote it
    target: Target
    ssh: SshOptions
    winrm: WinRmOptions | None  # for winrm:// and winrm+https:// targets only


def connect_to(args: ConnectionArgs, url: str) -> Connection:
    """The Connection to ``url``, or a UsageError naming the flag that is wrong."""
    from agent.targets import parse_target

    if args.ssh_config is not None and url.lower().startswith("ssh://"):
        from agent.sshconfig import apply_ssh_config

        choice = apply_ssh_config(args.ssh_config, url, identity=args.identity, jumps=args.jumps)
        args = replace(args, identity=choice.identity, jumps=choice.jumps)
        url, target = choice.target.display, choice.target
    else:
        target = parse_target(url)
    _check_transport_options(target)
    ssh = _ssh_options(args)
    return Connection(url, target, ssh, _winrm_options(args, target, ssh.password))


def fleet_connection(
    args: ConnectionArgs, transports: frozenset[str]
) -> tuple[SshOptions, WinRmOptions | None]:
    """The connection options every host of a fleet shares (each host adds its own vars).

    A transport's options are refused only when no selected host uses that transport.
    """
    for used, foreign, wanted in (
        ("ssh", SSH_ONLY, "ssh:// targets"),
        ("winrm", WINRM_ONLY, "winrm:// and winrm+https:// targets"),
    ):
        if used in transports:
            continue
        for name in foreign:
            if given(name):
                raise errors.UsageError(
                    f"{flag_of(name)} is for {wanted}, and no host --inventory selects uses {used}"
                )
    ssh = _ssh_options(args)
    winrm = _winrm_options_given(args, ssh.password) if "winrm" in transports else None
    return ssh, winrm


def _check_transport_options(target: Target) -> None:
    """Refuse an option the target's transport would ignore, naming it."""
    if target.is_windows:
        foreign, wanted = SSH_ONLY, "ssh:// targets"
    else:
        foreign, wanted = WINRM_ONLY, "winrm:// and winrm+https:// targets"
    for name in foreign:
        if given(name):
            raise errors.UsageError(f"{flag_of(name)} is for {wanted}, not {target.scheme}://")


def _secret(env: str | None, file: Path | None, what: str) -> Secret | None:
    from agent.secrets import secret_from_env, secret_from_file

    if env and file:
        raise errors.UsageError(f"{what}: give --{what}-env or --{what}-file, not both")
    if env:
        return secret_from_env(env, what=f"--{what}-env")
    if file:
        return secret_from_file(file, what=f"--{what}-file")
    return None


def _ssh_options(args: ConnectionArgs) -> SshOptions:
    from agent.executors.ssh import SshOptions
    from agent.executors.ssh.options import JumpHost

    passphrase = _secret(
        args.identity_passphrase_env, args.identity_passphrase_file, "identity-passphrase"
    )
    password = _secret(args.password_env, args.password_file, "password")
    sudo_password = _secret(args.sudo_password_env, args.sudo_password_file, "sudo-password")
    jumps = tuple(JumpHost.parse(jump) for jump in args.jumps)
    if args.identity is not None and not args.identity.is_file():
        raise errors.UsageError(f"--identity {args.identity}: no such file")
    if passphrase is not None and args.identity is None:
        raise errors.UsageError("--identity-passphrase-env/-file goes with --identity")
    if args.identity is not None:
        from agent.executors.ssh.executor import load_identity

        # A locked or broken key is a usage error before anything starts, not a failed run.
        load_identity(args.identity, passphrase)
    options = SshOptions(
        identity=args.identity,
        identity_passphrase=passphrase,
        connect_timeout=args.connect_timeout,
        password=password,
        sudo_password=sudo_password,
        host_key_policy=args.host_key_policy,
        jumps=jumps,
    )
    if args.known_hosts is None:  # SshOptions' own default: ~/.ssh/known_hosts
        return options
    return replace(options, known_hosts=args.known_hosts)


def _winrm_options(
    args: ConnectionArgs, target: Target, password: Secret | None
) -> WinRmOptions | None:
    """WinRmOptions for a winrm:// target; None for other targets (which refuse its flags)."""
    if not target.is_windows:
        return None
    return _winrm_options_given(args, password)


def _winrm_options_given(args: ConnectionArgs, password: Secret | None) -> WinRmOptions:
    from agent.executors.winrm import WinRmOptions

    return WinRmOptions(
        password=password,
        transport=args.winrm_transport,
        ca_cert=args.ca_cert,
        insecure_skip_verify=args.insecure_skip_verify,
        allow_unencrypted=args.allow_unencrypted,
        client_cert=args.client_cert,
        client_key=args.client_key,
        connect_timeout=args.connect_timeout,
    )
