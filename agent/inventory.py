"""Ansible-format inventories (INI and YAML) -> the hosts of a fleet, with their vars.

Pure: reads one file, contacts nothing. The semantics are Ansible's, checked against
``ansible-inventory --list`` on a corpus of inventories (tests/unit/test_inventory.py):

* groups ``all`` and ``ungrouped`` always exist; a host in no other group is in
  ``ungrouped``;
* INI: ``[group]``, ``[group:vars]``, ``[group:children]``, host lines
  ``NAME[:PORT] key=value ...``; every value, in host lines and in ``:vars`` sections, is a
  Python literal if it parses as one (``5``, ``[1, 2]``, ``True``) and a string otherwise
  (``true``, ``yes``): Ansible's INI plugin does exactly this;
* YAML: ``GROUP: {hosts: {NAME: {vars} | null}, vars: {...}, children: {GROUP: ...}}``;
* host ranges ``web[01:10]``, ``db-[a:c]``, ``n[0:10:2]`` (leading zeros kept);
* a host's vars are its groups' vars from the shallowest group to the deepest (ties by
  ``ansible_group_priority``, then by name), then its own: Ansible's order.

What imageprep takes from a host's vars: ``ansible_host``, ``ansible_port``,
``ansible_user``, ``ansible_ssh_private_key_file``, ``ansible_connection`` (``ssh``,
``paramiko``, ``smart`` or ``winrm``), ``ansible_winrm_scheme``,
``ansible_winrm_transport``, and ``imageprep_profile``, ``imageprep_playbook``,
``imageprep_vars`` (a mapping). Secrets (``ansible_password`` and the like) are refused:
they come from environment variables or files, as on the command line.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import shlex
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from agent.errors import InventoryError, SchemaError

__all__ = [
    "Inventory",
    "InventoryHost",
    "load_inventory",
]

_SSH_CONNECTIONS = frozenset({"ssh", "paramiko", "smart"})
_CONNECTIONS = _SSH_CONNECTIONS | {"winrm"}
_WINRM_TRANSPORTS = frozenset({"ntlm", "basic", "kerberos", "credssp", "certificate"})
_IMAGEPREP_VARS = frozenset({"imageprep_profile", "imageprep_playbook", "imageprep_vars"})
# Ansible's own names for secrets (connection, become and WinRM plugins) ...
_SECRET_VARS = frozenset(
    {
        "ansible_password",
        "ansible_pass",
        "ansible_ssh_pass",
        "ansible_ssh_password",
        "ansible_become_pass",
        "ansible_become_password",
        "ansible_sudo_pass",
        "ansible_sudo_password",
        "ansible_su_pass",
        "ansible_ssh_private_key_passphrase",
        "ansible_winrm_password",
        "ansible_httpapi_pass",
        "ansible_paramiko_pass",
    }
)
# ... and anything else whose name says it is one.
_SECRET_NAME = re.compile(r"pass(word|wd|phrase)?$|secret|token|private_key$", re.IGNORECASE)
_RANGE = re.compile(r"\[([0-9a-zA-Z]+):([0-9a-zA-Z]+)(?::(\d+))?\]")
_SECTION = re.compile(r"^\[([^\]:\s]+)(?::(vars|children))?\]\s*$")


@dataclass(frozen=True)
class InventoryHost:
    """One host of the inventory with its merged vars and where it was first defined."""

    name: str
    vars: Mapping[str, Any]
    groups: tuple[str, ...]
    where: str

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host", self.name))

    @property
    def connection(self) -> str:
        return str(self.vars.get("ansible_connection", "ssh"))

    @property
    def target_url(self) -> str:
        """The ``ssh://`` or ``winrm[+https]://`` URL imageprep connects to (no secret)."""
        host = self.address
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        user = self.vars.get("ansible_user")
        login = f"{quote(str(user), safe='')}@" if user else ""
        if self.connection == "winrm":
            port = int(self.vars.get("ansible_port", 5986))
            scheme = str(self.vars.get("ansible_winrm_scheme", "http" if port == 5985 else "https"))
            prefix = "winrm+https" if scheme == "https" else "winrm"
            return f"{prefix}://{login}{host}:{port}"
        port = int(self.vars.get("ansible_port", 22))
        return f"ssh://{login}{host}:{port}"

    @property
    def identity(self) -> str | None:
        key = self.vars.get("ansible_ssh_private_key_file")
        return None if key is None else str(key)

    @property
    def winrm_transport(self) -> str | None:
        transport = self.vars.get("ansible_winrm_transport")
        if isinstance(transport, list):  # Ansible takes a list and tries them in order
            transport = transport[0] if transport else None
        return None if transport is None else str(transport)

    @property
    def profile(self) -> str | None:
        value = self.vars.get("imageprep_profile")
        return None if value is None else str(value)

    @property
    def playbook(self) -> str | None:
        value = self.vars.get("imageprep_playbook")
        return None if value is None else str(value)

    @property
    def profile_vars(self) -> Mapping[str, Any]:
        value = self.vars.get("imageprep_vars", {})
        return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class Inventory:
    """The hosts of one inventory file, in the order the file names them."""

    file: str
    hosts: tuple[InventoryHost, ...]
    groups: Mapping[str, tuple[str, ...]]

    def select(self, pattern: str | None) -> tuple[InventoryHost, ...]:
        """The hosts ``--limit PATTERN`` selects (Ansible's pattern syntax, a subset).

        ``a,b`` or ``a:b`` union; ``&g`` intersection; ``!g`` exclusion; each term a host
        or group name or a shell glob over them. Selecting nothing is an error.
        """
        if pattern is None or pattern.strip() in ("", "all", "*"):
            chosen = list(self.hosts)
        else:
            chosen = self._apply(pattern)
        if not chosen:
            raise InventoryError(f"{self.file}: --limit {pattern!r} selects no host")
        return tuple(chosen)

    def _apply(self, pattern: str) -> list[InventoryHost]:
        terms = [t.strip() for t in re.split(r"[,:]", pattern) if t.strip()]
        union: set[str] = set()
        for term in terms:
            if term[0] not in "!&":
                union |= self._matching(term)
        for term in terms:
            if term.startswith("&"):
                union &= self._matching(term[1:])
            elif term.startswith("!"):
                union -= self._matching(term[1:])
        return [host for host in self.hosts if host.name in union]

    def _matching(self, term: str) -> set[str]:
        names: set[str] = set()
        for group, members in self.groups.items():
            if fnmatch.fnmatchcase(group, term):
                names |= set(members)
        names |= {h.name for h in self.hosts if fnmatch.fnmatchcase(h.name, term)}
        return names


def load_inventory(path: Path) -> Inventory:
    """Parse an INI or YAML inventory; every error names ``file:line`` and the host or group."""
    display = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"{display}: cannot read the inventory: {exc}") from None
    builder = _Builder(display)
    try:
        if path.suffix in (".yml", ".yaml") or text.lstrip().startswith(("---", "all:")):
            _read_yaml(text, builder)
        else:
            _read_ini(text, builder)
        return builder.finish()
    except RecursionError:  # thousands of nested groups: hostile, or a generator gone wrong
        raise InventoryError(f"{display}: groups nest too deeply to be read") from None


@dataclass
class _Group:
    name: str
    where: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)


class _Builder:
    """Collects groups and hosts as a file defines them, then merges vars like Ansible."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.groups: dict[str, _Group] = {"all": _Group("all", f"{file}:1")}
        self.host_vars: dict[str, dict[str, Any]] = {}
        self.host_where: dict[str, str] = {}

    def group(self, name: str, line: int) -> _Group:
        if name not in self.groups:
            self.groups[name] = _Group(name, f"{self.file}:{line}")
        return self.groups[name]

    def add_host(self, group: str, name: str, values: Mapping[str, Any], line: int) -> None:
        where = f"{self.file}:{line}"
        if not name.strip():
            raise InventoryError(f"{where}: a host without a name or address")
        members = self.group(group, line).hosts
        if name in members:
            raise InventoryError(f"{where}: host {name!r} is listed twice in group {group!r}")
        members.append(name)
        self.host_where.setdefault(name, where)
        self.host_vars.setdefault(name, {}).update(values)

    def add_child(self, parent: str, child: str, line: int) -> None:
        self.group(child, line)
        path = self._path(child, parent)
        if path is not None:  # Ansible refuses such a loop when it adds the child, too
            loop = " -> ".join((parent, *path))
            raise InventoryError(f"{self.file}:{line}: group {parent!r} contains itself: {loop}")
        children = self.group(parent, line).children
        if child not in children:
            children.append(child)

    def _path(self, start: str, goal: str) -> tuple[str, ...] | None:
        """The chain of child groups from START down to GOAL, if there is one."""
        if start == goal:
            return (start,)
        for child in self.groups[start].children:
            rest = self._path(child, goal)
            if rest is not None:
                return (start, *rest)
        return None

    def finish(self) -> Inventory:
        all_group = self.groups["all"]
        for name in self.groups:
            if name != "all" and not self._parents(name):
                all_group.children.append(name)
        depth = self._depths()
        membership = self._membership()
        ungrouped = [h for h in self.host_where if membership[h] <= {"all", "ungrouped"}]
        self.groups.setdefault("ungrouped", _Group("ungrouped", f"{self.file}:1"))
        if "ungrouped" not in all_group.children:
            all_group.children.append("ungrouped")
        self.groups["ungrouped"].hosts = ungrouped
        membership = self._membership()
        hosts = tuple(self._host(name, membership[name], depth) for name in self.host_where)
        groups = {
            name: tuple(h for h in self.host_where if name in membership[h]) for name in self.groups
        }
        return Inventory(self.file, hosts, groups)

    def _parents(self, name: str) -> list[str]:
        return [g.name for g in self.groups.values() if name in g.children]

    def _depths(self) -> dict[str, int]:
        """Each group's depth below ``all`` (the longest path; add_child refused loops)."""
        depth: dict[str, int] = {}

        def visit(name: str, level: int) -> None:
            depth[name] = max(depth.get(name, 0), level)
            for child in self.groups[name].children:
                visit(child, level + 1)

        visit("all", 0)
        return depth

    def _membership(self) -> dict[str, set[str]]:
        """Every group each host is in, directly or through a child group."""
        member: dict[str, set[str]] = {h: {"all"} for h in self.host_where}

        def hosts_of(name: str, seen: frozenset[str]) -> Iterator[str]:
            group = self.groups[name]
            yield from group.hosts
            for child in group.children:
                if child not in seen:
                    yield from hosts_of(child, seen | {child})

        for name in self.groups:
            for host in hosts_of(name, frozenset({name})):
                member[host].add(name)
        return member

    def _host(self, name: str, groups: set[str], depth: dict[str, int]) -> InventoryHost:
        def order(group: str) -> tuple[int, int, str]:
            priority = self.groups[group].vars.get("ansible_group_priority", 1)
            return depth.get(group, 0), int(priority), group

        merged: dict[str, Any] = {}
        for group in sorted(groups, key=order):
            merged.update(self.groups[group].vars)
        merged.update(self.host_vars[name])
        merged.pop("ansible_group_priority", None)
        host = InventoryHost(name, merged, tuple(sorted(groups - {"all"})), self.host_where[name])
        _check_host(host)
        return host


def _check_host(host: InventoryHost) -> None:
    where = f"{host.where}: host {host.name!r}"
    for key in host.vars:
        if key in _SECRET_VARS or (
            key.startswith(("ansible_", "imageprep_")) and _SECRET_NAME.search(key)
        ):
            raise InventoryError(
                f"{where}: {key} is a secret and is refused in an inventory; give it with "
                "--password-env/--password-file (or the sudo/passphrase equivalents)"
            )
        if key.startswith("imageprep_") and key not in _IMAGEPREP_VARS:
            known = ", ".join(sorted(_IMAGEPREP_VARS))
            raise InventoryError(f"{where}: unknown var {key} (imageprep reads {known})")
    if host.connection not in _CONNECTIONS:
        raise InventoryError(
            f"{where}: ansible_connection={host.connection} is not supported "
            f"(expected one of {', '.join(sorted(_CONNECTIONS))})"
        )
    if not host.address.strip():
        raise InventoryError(f"{where}: ansible_host is empty")
    port = host.vars.get("ansible_port")
    if port is not None and not (str(port).isdigit() and 1 <= int(port) <= 65535):
        raise InventoryError(f"{where}: ansible_port={port} is not a port (1-65535)")
    scheme = host.vars.get("ansible_winrm_scheme")
    if scheme is not None and scheme not in ("http", "https"):
        raise InventoryError(f"{where}: ansible_winrm_scheme={scheme} (expected http or https)")
    transport = host.winrm_transport
    if transport is not None and transport not in _WINRM_TRANSPORTS:
        raise InventoryError(
            f"{where}: ansible_winrm_transport={transport} (expected one of "
            f"{', '.join(sorted(_WINRM_TRANSPORTS))})"
        )
    if not isinstance(host.vars.get("imageprep_vars", {}), Mapping):
        raise InventoryError(f"{where}: imageprep_vars must be a mapping of var names to values")


def expand_host_pattern(pattern: str) -> list[str]:
    """``web[01:03]`` -> web01, web02, web03; several ranges multiply; none -> itself."""
    found = _RANGE.search(pattern)
    if found is None:
        return [pattern]
    start, end, step_text = found.groups()
    step = int(step_text) if step_text else 1
    head, tail = pattern[: found.start()], pattern[found.end() :]
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") and len(start) > 1 else 0
        items = [str(n).zfill(width) for n in range(int(start), int(end) + 1, step)]
    elif len(start) == 1 and len(end) == 1 and start.isalpha() and end.isalpha():
        items = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    else:
        raise ValueError(f"host range [{start}:{end}] mixes letters and digits")
    if not items:
        raise ValueError(f"host range [{start}:{end}] is empty")
    return [f"{head}{item}{rest}" for item in items for rest in expand_host_pattern(tail)]


def _literal(text: str) -> Any:
    """An INI value as Ansible's INI plugin reads it: a Python literal, else the string."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _read_ini(text: str, builder: _Builder) -> None:
    section, kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        where = f"{builder.file}:{number}"
        header = _SECTION.match(line)
        if header:
            section, kind = header.group(1), header.group(2) or "hosts"
            builder.group(section, number)
            continue
        if line.startswith("["):
            raise InventoryError(f"{where}: not a section header: {line[:80]}")
        if kind == "children":
            builder.add_child(section, line.split()[0], number)
        elif kind == "vars":
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise InventoryError(f"{where}: expected KEY=VALUE in [{section}:vars]")
            builder.group(section, number).vars[key.strip()] = _literal(value.strip())
        else:
            _ini_host_line(line, section, builder, number)


def _ini_host_line(line: str, group: str, builder: _Builder, number: int) -> None:
    where = f"{builder.file}:{number}"
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:
        raise InventoryError(f"{where}: {exc}") from None
    if not words:
        return
    name, *assignments = words
    if "=" in name:
        raise InventoryError(f"{where}: a host line must start with the host name, not {name!r}")
    values: dict[str, Any] = {}
    if name.count(":") == 1 and name.rsplit(":", 1)[1].isdigit():
        name, port = name.rsplit(":", 1)
        values["ansible_port"] = int(port)
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise InventoryError(f"{where}: host {name!r}: expected KEY=VALUE, got {assignment!r}")
        values[key] = _literal(value)
    for host in _expanded(name, where):
        builder.add_host(group, host, values, number)


def _expanded(name: str, where: str) -> list[str]:
    try:
        return expand_host_pattern(name)
    except ValueError as exc:
        raise InventoryError(f"{where}: host {name!r}: {exc}") from None


def _read_yaml(text: str, builder: _Builder) -> None:
    from agent.yamlload import parse_yaml

    try:
        doc = parse_yaml(text, builder.file)
    except SchemaError as exc:
        raise InventoryError(str(exc.problems[0])) from None
    if not isinstance(doc.data, dict):
        raise InventoryError(f"{builder.file}:1: an inventory is a mapping of group names")

    def line_of(loc: tuple[str | int, ...]) -> int:
        return doc.position(loc, key=True)[0] or 1

    def walk(name: str, body: Any, loc: tuple[str | int, ...], path: tuple[str, ...]) -> None:
        number = line_of(loc)
        where = f"{builder.file}:{number}"
        if name in path:  # only YAML aliases can nest a group inside itself
            loop = " -> ".join((*path[path.index(name) :], name))
            raise InventoryError(f"{where}: group {name!r} contains itself: {loop}")
        builder.group(name, number)
        if body is None:
            return
        if not isinstance(body, dict):
            raise InventoryError(f"{where}: group {name!r} must be a mapping")
        unknown = set(body) - {"hosts", "vars", "children"}
        if unknown:
            raise InventoryError(
                f"{where}: group {name!r}: unknown key {sorted(unknown)[0]!r} "
                "(expected hosts, vars, children)"
            )
        for host, values in _mapping(body.get("hosts"), where, "hosts"):
            host_line = line_of((*loc, "hosts", host))
            if values is not None and not isinstance(values, dict):
                raise InventoryError(
                    f"{builder.file}:{host_line}: host {host!r}: its vars must be a mapping"
                )
            for expanded in _expanded(str(host), f"{builder.file}:{host_line}"):
                builder.add_host(name, expanded, values or {}, host_line)
        builder.group(name, number).vars.update(dict(_mapping(body.get("vars"), where, "vars")))
        for child, child_body in _mapping(body.get("children"), where, "children"):
            builder.add_child(name, str(child), line_of((*loc, "children", child)))
            walk(str(child), child_body, (*loc, "children", child), (*path, name))

    for group, body in doc.data.items():
        walk(str(group), body, (group,), ())


def _mapping(value: Any, where: str, what: str) -> Iterable[tuple[Any, Any]]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise InventoryError(f"{where}: {what} must be a mapping")
    return value.items()
