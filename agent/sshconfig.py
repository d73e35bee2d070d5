"""``--ssh-config FILE``: take HostName, User, Port, IdentityFile and ProxyJump from an
OpenSSH client config, the way ``ssh HOST`` would, and nothing else.

Opt-in on purpose: imageprep never reads ~/.ssh/config by itself, so the same command
behaves the same on every machine. What the command line says wins over the file, as
with ``ssh`` (``ssh_config(5)``: command-line options take precedence): a user or port in
the target URL, ``--identity`` and ``--jump``. Only the first IdentityFile is used.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote, urlsplit

from agent.errors import UsageError
from agent.targets import Target, parse_target

__all__ = ["SshConfigChoice", "apply_ssh_config"]


@dataclass(frozen=True)
class SshConfigChoice:
    """Where to connect and how, after the config file had its say."""

    target: Target
    identity: Path | None
    jumps: tuple[str, ...]


def apply_ssh_config(
    path: Path, target_url: str, *, identity: Path | None, jumps: tuple[str, ...]
) -> SshConfigChoice:
    """The target and options once the ``Host`` blocks of PATH matching its host applied."""
    import paramiko  # only runs that connect over SSH get here

    try:
        config = paramiko.SSHConfig.from_path(str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--ssh-config {path}: cannot read: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - paramiko raises bare exceptions on bad syntax
        raise UsageError(f"--ssh-config {path}: {exc}") from None
    try:
        explicit = urlsplit(target_url)
        explicit_port = explicit.port
    except ValueError:
        return SshConfigChoice(parse_target(target_url), identity, jumps)  # names the fault
    found = config.lookup(explicit.hostname or "")
    if not explicit.username and "user" in found:
        # The URL wants a user; ssh would take it from the config's User.
        target_url = f"{explicit.scheme}://{quote(found['user'], safe='')}@{explicit.netloc}"
    target = parse_target(target_url)
    port = target.port
    if explicit_port is None and "port" in found:
        port = _port(found["port"], path)
    target = replace(target, host=found.get("hostname", target.host), port=port)
    if identity is None and found.get("identityfile"):
        identity = Path(found["identityfile"][0]).expanduser()
    proxy = found.get("proxyjump", "")
    if not jumps and proxy and proxy.lower() != "none":
        jumps = tuple(hop.strip() for hop in proxy.split(",") if hop.strip())
    return SshConfigChoice(target, identity, jumps)


def _port(value: str, path: Path) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise UsageError(f"--ssh-config {path}: Port {value!r} is not a port (1-65535)")
    return int(value)
