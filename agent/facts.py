"""Facts: what a connected Linux target is, gathered once after connecting.

One unprivileged round trip reads os-release, kernel, architecture and which tools exist;
one privileged round trip reads what only root may (the user named in waagent's
ovf-env.xml). Facts choose the profile and feed ``when:`` conditions and templates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.background import Background
from agent.errors import CommandTimeout
from agent.executors.base import Executor
from agent.results import CommandResult

# Printed as KEY=VALUE lines (values shell-quoted) so the parser is trivial and robust
# to os-release files that use quotes or not.
_GATHER_SCRIPT = r"""
# bash (the login side runs /bin/bash -s); shell builtins wherever they do: every program
# started here is a fork and an exec on the target, in every run.
emit() { printf '%s=%s\n' "$1" "${2//$'\n'/ }"; }
if [ -r /etc/os-release ]; then rel=/etc/os-release; else rel=/usr/lib/os-release; fi
if [ -r "$rel" ]; then
  while IFS='=' read -r key value; do
    case "$key" in
      ID|ID_LIKE|VERSION_ID|VERSION_CODENAME|PRETTY_NAME|NAME)
        value=${value#\"}; value=${value%\"}; value=${value#\'}; value=${value%\'}
        emit "os_$key" "$value";;
    esac
  done < "$rel"
fi
# uname -r and hostname print the kernel's own fields, which /proc/sys/kernel shows.
read -r kernel </proc/sys/kernel/osrelease || kernel=$(uname -r)
emit kernel "$kernel"
emit arch "$(uname -m)"
read -r host </proc/sys/kernel/hostname || host=$(hostname 2>/dev/null || cat /etc/hostname)
emit hostname "$host"
emit user "$(id -un)"
emit uid "$EUID"
# waagent lives in /usr/sbin, which a login user's PATH often lacks (Debian's does): look
# where root would, or a target with waagent installed reads as one without.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
for tool in waagent cloud-init sudo systemctl; do
  if command -v "$tool" >/dev/null 2>&1; then emit "has_$tool" 1; else emit "has_$tool" 0; fi
done
if [ -d /run/systemd/system ]; then emit systemd_booted 1; else emit systemd_booted 0; fi
# Both tools are Python programs that take 0.15-0.3 s to start, more than everything else
# here. Their installed packages state the version in one file each, and that is what
# `--version` prints: cloud-init's cloudinit/version.py __VERSION__ (cloud-init's
# version_string()), WALinuxAgent's azurelinuxagent/common/version.py AGENT_VERSION (the
# "WALinuxAgent-X" of `waagent --version`). Read exactly one such file if there is exactly
# one; otherwise (none, or several Pythons) ask the tool itself, both at once.
version_from() {  # VARIABLE FILE...: $found = VARIABLE's value, if exactly one FILE exists
  local var=$1 file='' f line re
  found=
  shift
  for f in "$@"; do
    [ -r "$f" ] || continue
    [ -z "$file" ] || return 1
    file=$f
  done
  [ -n "$file" ] || return 1
  re="^$var *= *['\"]([0-9][0-9.]*)['\"]"
  while IFS= read -r line; do
    if [[ $line =~ $re ]]; then found=${BASH_REMATCH[1]}; return 0; fi
  done <"$file"
  return 1
}
ci_version='' wa_version='' asked=''
if command -v cloud-init >/dev/null 2>&1; then
  if version_from __VERSION__ /usr/lib/python3*/dist-packages/cloudinit/version.py \
      /usr/lib/python3*/site-packages/cloudinit/version.py; then
    ci_version=$found
  else
    asked=${asked:-$(mktemp -d)}
    cloud-init --version >"$asked/ci" 2>&1 &
  fi
fi
if command -v waagent >/dev/null 2>&1; then
  if version_from AGENT_VERSION \
      /usr/lib/python3*/dist-packages/azurelinuxagent/common/version.py \
      /usr/lib/python3*/site-packages/azurelinuxagent/common/version.py; then
    wa_version=$found
  else
    asked=${asked:-$(mktemp -d)}
    { waagent --version 2>&1 | head -n 1; } >"$asked/wa" &
  fi
fi
if [ -n "$asked" ]; then
  wait
  [ -s "$asked/ci" ] && ci_version=$(cat "$asked/ci")
  [ -s "$asked/wa" ] && wa_version=$(cat "$asked/wa")
  rm -rf "$asked"
fi
[ -n "$ci_version" ] && emit cloud_init_version "$ci_version"
[ -n "$wa_version" ] && emit waagent_version "$wa_version"
if [ -L /etc/resolv.conf ]; then emit resolv_conf_symlink 1; else emit resolv_conf_symlink 0; fi
"""

# ovf-env.xml lives in a root-only directory; its UserName is the user waagent deletes.
_OVF_USER_SCRIPT = r"""
f=/var/lib/waagent/ovf-env.xml
tag='\(ns[0-9]*:\)\{0,1\}UserName'
if [ -r "$f" ]; then
  sed -n "s|.*<$tag>\([^<]*\)</$tag>.*|\2|p" "$f" | head -n 1
fi
"""

_VERSION_RE = re.compile(r"(\d+(?:\.\d+)+)")


@dataclass(frozen=True)
class Facts:
    """The gathered facts; ``as_dict()`` is what expressions and templates see."""

    os_id: str
    os_id_like: tuple[str, ...]
    os_version_id: str
    os_version_codename: str
    os_pretty_name: str
    kernel: str
    arch: str
    hostname: str
    user: str
    is_root: bool
    tools: dict[str, bool] = field(default_factory=dict)
    cloud_init_version: str | None = None
    waagent_version: str | None = None
    ovf_user: str | None = None
    resolv_conf_symlink: bool = False

    @property
    def os_release(self) -> dict[str, str]:
        return {
            "ID": self.os_id,
            "ID_LIKE": " ".join(self.os_id_like),
            "VERSION_ID": self.os_version_id,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "os": {
                "id": self.os_id,
                "id_like": list(self.os_id_like),
                "version_id": self.os_version_id,
                "version_codename": self.os_version_codename,
                "pretty_name": self.os_pretty_name,
            },
            "kernel": self.kernel,
            "arch": self.arch,
            "hostname": self.hostname,
            "user": self.user,
            "is_root": self.is_root,
            "tools": dict(self.tools),
            "cloud_init_version": self.cloud_init_version,
            "waagent_version": self.waagent_version,
            "ovf_user": self.ovf_user,
            "resolv_conf_symlink": self.resolv_conf_symlink,
        }


def parse_key_values(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key:
            values[key.strip()] = value.strip()
    return values


def extract_version(text: str | None) -> str | None:
    """``/usr/bin/cloud-init 22.4.2`` -> ``22.4.2``; ``WALinuxAgent-2.9.0.4 running on ...``."""
    if not text:
        return None
    found = _VERSION_RE.search(text)
    return found.group(1) if found else None


def facts_from_values(values: dict[str, str], ovf_user: str | None) -> Facts:
    def flag(key: str) -> bool:
        return values.get(key) == "1"

    return Facts(
        os_id=values.get("os_ID", "").lower(),
        os_id_like=tuple(values.get("os_ID_LIKE", "").lower().split()),
        os_version_id=values.get("os_VERSION_ID", ""),
        os_version_codename=values.get("os_VERSION_CODENAME", ""),
        os_pretty_name=values.get("os_PRETTY_NAME", values.get("os_NAME", "")),
        kernel=values.get("kernel", ""),
        arch=values.get("arch", ""),
        hostname=values.get("hostname", ""),
        user=values.get("user", ""),
        is_root=values.get("uid") == "0",
        tools={
            "waagent": flag("has_waagent"),
            "cloud_init": flag("has_cloud-init"),
            "sudo": flag("has_sudo"),
            # systemctl alone is not enough: a chroot has it without systemd running.
            "systemd": flag("has_systemctl") and flag("systemd_booted"),
        },
        cloud_init_version=extract_version(values.get("cloud_init_version")),
        waagent_version=extract_version(values.get("waagent_version")),
        ovf_user=ovf_user or None,
        resolv_conf_symlink=flag("resolv_conf_symlink"),
    )


def run_for_facts(
    executor: Executor, script: str, *, timeout: float, become: bool = False
) -> CommandResult:
    """Run one facts command; its time-out becomes an error naming the host (exit 4)."""
    try:
        return executor.run(script, become=become, timeout=timeout)
    except CommandTimeout as exc:
        raise CommandTimeout(
            f"{executor.description}: reading the facts timed out after {timeout:g} s "
            f"(the target is not answering): {exc}",
            stdout=exc.stdout,
            stderr=exc.stderr,
        ) from None


def gather_facts(
    executor: Executor, *, timeout: float = 60, meanwhile: Callable[[], None] | None = None
) -> Facts:
    """Read the target's facts: one unprivileged and one privileged command.

    ``meanwhile`` runs while the unprivileged command is out, before the privileged one:
    a run takes the VM's lock there. Each needs an SSH session channel of its own, and
    sshd's set-up of one (PAM's session modules) is most of their time: about 50 ms on the
    Debian 12 test target, against about 10 ms for sudo itself, and two channels opened
    at once cost no more each than one alone. The command only reads, and if
    ``meanwhile`` fails its answer is dropped.
    """

    def read_general() -> CommandResult:
        return run_for_facts(executor, _GATHER_SCRIPT, timeout=timeout)

    general = read_general() if meanwhile is None else _beside(read_general, meanwhile)
    values = parse_key_values(general.stdout)
    ovf = run_for_facts(executor, _OVF_USER_SCRIPT, become=True, timeout=timeout)
    ovf_user = ovf.stdout.strip() if ovf.ok else ""
    return facts_from_values(values, ovf_user)


# How long a failed ``meanwhile`` waits for the facts command before it is given up (its
# thread ends when the connection closes).
_ABANDON_AFTER = 2.0


def _beside(read: Callable[[], CommandResult], meanwhile: Callable[[], None]) -> CommandResult:
    """``read()`` in a thread while ``meanwhile()`` runs here; read's result or its error."""
    general = Background(read, name="facts")
    try:
        meanwhile()
    except BaseException:
        general.abandon(_ABANDON_AFTER)
        raise
    return general.result()


def describe(facts: Facts) -> str:
    """One line for humans: ``debian 12 (x86_64, kernel 6.1.0-18-cloud-amd64)``."""
    return f"{facts.os_id} {facts.os_version_id} ({facts.arch}, kernel {facts.kernel})"
