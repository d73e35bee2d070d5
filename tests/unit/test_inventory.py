"""Ansible-format inventories: parsed exactly as `ansible-inventory --list` reads them,
and bad ones refused with one line naming the file, the line and the host or group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.errors import InventoryError
from agent.inventory import Inventory, expand_host_pattern, load_inventory

CORPUS = Path(__file__).parent / "inventories"
GOOD = sorted((CORPUS / "good").iterdir())
ANSIBLE_INVENTORY = Path(sys.executable).with_name("ansible-inventory")


def _ansible_view(path: Path, home: Path) -> dict[str, Any]:
    """What ansible-core itself makes of the inventory (the test extra installs it)."""
    completed = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp")},
        check=True,
    )
    view: dict[str, Any] = json.loads(completed.stdout)
    return view


def _ansible_groups(view: dict[str, Any]) -> dict[str, set[str]]:
    """Every group each host is in, directly or through child groups, from Ansible's view."""
    member: dict[str, set[str]] = {host: set() for host in view["_meta"]["hostvars"]}

    def visit(group: str, into: tuple[str, ...]) -> None:
        body = view.get(group, {})
        for host in body.get("hosts", []):
            member[host].update((*into, group))
        for child in body.get("children", []):
            visit(child, (*into, group))

    visit("all", ())
    return {host: groups - {"all"} for host, groups in member.items()}


@pytest.mark.parametrize("path", GOOD, ids=[p.name for p in GOOD])
def test_host_vars_equal_ansibles(path: Path, tmp_path: Path) -> None:
    """Every host and its merged vars are what ansible-inventory --list prints."""
    ours = {host.name: dict(host.vars) for host in load_inventory(path).hosts}
    assert ours == _ansible_view(path, tmp_path)["_meta"]["hostvars"]


@pytest.mark.parametrize("path", GOOD, ids=[p.name for p in GOOD])
def test_group_membership_equals_ansibles(path: Path, tmp_path: Path) -> None:
    """Each host is in the groups Ansible puts it in, through child groups as well."""
    ours = {host.name: set(host.groups) for host in load_inventory(path).hosts}
    assert ours == _ansible_groups(_ansible_view(path, tmp_path))


BAD = {
    "secret-host.ini": (2, "web1", "ansible_password is a secret"),
    "secret-group.ini": (2, "web1", "ansible_become_pass is a secret"),
    "connection.yml": (3, "w1", "ansible_connection=telnet is not supported"),
    "loop.ini": (4, "'b'", "contains itself: b -> a -> b"),
    "duplicate.ini": (3, "web1", "listed twice in group 'web'"),
    "empty-address.ini": (2, "web1", "ansible_host is empty"),
    "port.ini": (2, "web1", "ansible_port=70000 is not a port"),
    "unknown-imageprep-var.ini": (2, "web1", "unknown var imageprep_profiel"),
    "empty-range.ini": (2, "web[3:1]", "is empty"),
    "transport.ini": (2, "web1", "ansible_winrm_transport=digest"),
    "unknown-key.yml": (1, "'all'", "unknown key 'childs'"),
    "header.ini": (1, "[web", "not a section header"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_inventory_is_one_line_naming_file_line_and_host(name: str) -> None:
    """A bad inventory is an InventoryError of one line: file:line, the host or group, why."""
    line, who, why = BAD[name]
    path = CORPUS / "bad" / name
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}:"), message
    assert who in message
    assert why in message


def test_bad_corpus_is_all_listed() -> None:
    """Every file in the bad corpus has its expected error above (none is silently unused)."""
    assert sorted(p.name for p in (CORPUS / "bad").iterdir()) == sorted(BAD)


def test_missing_file_is_an_inventory_error(tmp_path: Path) -> None:
    """An inventory that cannot be read is named, not a traceback."""
    with pytest.raises(InventoryError, match="cannot read the inventory"):
        load_inventory(tmp_path / "nope.ini")


def test_groups_nested_thousands_deep_are_refused(tmp_path: Path) -> None:
    """A chain of 5000 child groups is one error line, not a RecursionError."""
    chain = "".join(f"[g{i}:children]\ng{i + 1}\n" for i in range(5000))
    path = tmp_path / "deep.ini"
    path.write_text(chain + "[g5000]\nh1\n")
    with pytest.raises(InventoryError, match="nest too deeply"):
        load_inventory(path)


def _inventory(tmp_path: Path, text: str, name: str = "hosts.ini") -> Inventory:
    path = tmp_path / name
    path.write_text(text)
    return load_inventory(path)


def test_ssh_target_url_from_host_vars(tmp_path: Path) -> None:
    """ansible_host, ansible_port and ansible_user make the ssh:// target."""
    (host,) = _inventory(
        tmp_path, "vm ansible_host=10.1.2.3 ansible_port=2222 ansible_user=azureuser\n"
    ).hosts
    assert host.target_url == "ssh://azureuser@10.1.2.3:2222"


def test_winrm_defaults_to_https_on_5986(tmp_path: Path) -> None:
    """A winrm host without scheme or port is winrm+https on 5986, as in Ansible."""
    (host,) = _inventory(tmp_path, "win ansible_connection=winrm ansible_user=admin\n").hosts
    assert host.target_url == "winrm+https://admin@win:5986"


def test_winrm_port_5985_means_plain_http(tmp_path: Path) -> None:
    """Port 5985 without a scheme is plain HTTP (winrm://), Ansible's default rule."""
    (host,) = _inventory(tmp_path, "win ansible_connection=winrm ansible_port=5985\n").hosts
    assert host.target_url == "winrm://win:5985"


def test_winrm_scheme_overrides_the_port_rule(tmp_path: Path) -> None:
    """An explicit ansible_winrm_scheme=https on 5985 stays HTTPS."""
    (host,) = _inventory(
        tmp_path,
        "win ansible_connection=winrm ansible_port=5985 ansible_winrm_scheme=https\n",
    ).hosts
    assert host.target_url == "winrm+https://win:5985"


def test_first_winrm_transport_of_a_list_is_used(tmp_path: Path) -> None:
    """A list of transports (Ansible tries them in order) gives the first one."""
    (host,) = _inventory(
        tmp_path,
        "all:\n  hosts:\n    w:\n      ansible_connection: winrm\n"
        "      ansible_winrm_transport: [kerberos, ntlm]\n",
        "hosts.yml",
    ).hosts
    assert host.winrm_transport == "kerberos"


def test_ipv6_address_is_bracketed(tmp_path: Path) -> None:
    """An IPv6 ansible_host is bracketed in the URL."""
    (host,) = _inventory(tmp_path, "v6 ansible_host=fd00::5\n").hosts
    assert host.target_url == "ssh://[fd00::5]:22"


def test_imageprep_vars_set_profile_playbook_and_vars(tmp_path: Path) -> None:
    """imageprep_profile, imageprep_playbook and imageprep_vars reach the host."""
    (host,) = _inventory(
        tmp_path,
        "all:\n  hosts:\n    vm:\n      imageprep_profile: rhel-9\n"
        "      imageprep_playbook: check\n      imageprep_vars: {min_free_mib: 512}\n",
        "hosts.yml",
    ).hosts
    assert (host.profile, host.playbook, dict(host.profile_vars)) == (
        "rhel-9",
        "check",
        {"min_free_mib": 512},
    )


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("web", ["w1", "w2"]),
        ("web,db1", ["w1", "w2", "db1"]),
        ("web:!w2", ["w1"]),
        ("all:&eu", ["w2", "db1"]),
        ("w*", ["w1", "w2"]),
        (None, ["w1", "w2", "db1"]),
    ],
)
def test_limit_selects_like_ansible_patterns(
    tmp_path: Path, pattern: str | None, expected: list[str]
) -> None:
    """--limit takes unions, exclusions, intersections and globs over hosts and groups."""
    inventory = _inventory(tmp_path, "[web]\nw1\nw2\n[db]\ndb1\n[eu]\nw2\ndb1\n")
    assert [host.name for host in inventory.select(pattern)] == expected


def test_limit_that_selects_nothing_is_refused(tmp_path: Path) -> None:
    """A --limit that matches no host is an error, not an empty fleet."""
    inventory = _inventory(tmp_path, "[web]\nw1\n")
    with pytest.raises(InventoryError, match="selects no host"):
        inventory.select("db*")


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("web[01:03]", ["web01", "web02", "web03"]),
        ("n[8:10]", ["n8", "n9", "n10"]),
        ("x[a:c]y", ["xay", "xby", "xcy"]),
        ("r[0:4:2]", ["r0", "r2", "r4"]),
        ("a[1:2]b[1:2]", ["a1b1", "a1b2", "a2b1", "a2b2"]),
        ("plain", ["plain"]),
    ],
)
def test_host_ranges_expand_like_ansible(pattern: str, expected: list[str]) -> None:
    """Numeric ranges keep leading zeros; letters, strides and several ranges work."""
    assert expand_host_pattern(pattern) == expected
