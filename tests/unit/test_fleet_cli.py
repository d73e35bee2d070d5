"""`run|check|plan --inventory` on the command line: bad input, strict options, the summary.

The hosts are unreachable (closed ports on 127.0.0.1), so every run that starts ends with
exit 4: a run that starts proves the options were accepted. Real targets:
tests/integration/test_fleet.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.catalog import Catalog
from agent.cli import main
from agent.logging import reset_logging
from agent.outcome import ExitCode
from tests.unit.hostile_peers import closed_port


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.fixture(autouse=True)
def _logging_reset() -> Iterator[None]:
    yield
    reset_logging()


def _inventory(tmp_path: Path, *, winrm: bool = False) -> Path:
    lines = [f"[linux]\nl1 ansible_host=127.0.0.1 ansible_port={closed_port()} ansible_user=u\n"]
    if winrm:
        lines.append(
            "[windows]\nw1 ansible_host=127.0.0.1 ansible_connection=winrm "
            f"ansible_port={closed_port()} ansible_winrm_scheme=http ansible_user=Admin\n"
        )
    path = tmp_path / "hosts.ini"
    path.write_text("".join(lines))
    return path


def _error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("imageprep: error:")]
    assert len(lines) == 1, output
    return lines[0]


def test_inventory_and_target_exclude_each_other(cli: CliRunner, tmp_path: Path) -> None:
    """--inventory with --target: one line, exit 2."""
    args = ["check", "--inventory", str(_inventory(tmp_path)), "--target", "ssh://u@h"]
    result = cli.invoke(main, args)
    assert result.exit_code == ExitCode.USAGE
    assert "--inventory and --target exclude each other" in _error_line(result.output)


def test_limit_without_inventory_is_refused(cli: CliRunner) -> None:
    """--limit only means something with --inventory: exit 2."""
    result = cli.invoke(main, ["check", "--target", "ssh://u@127.0.0.1:1", "--limit", "web"])
    assert result.exit_code == ExitCode.USAGE
    assert "--limit goes with --inventory" in _error_line(result.output)


def test_limit_selecting_nothing_exits_2(cli: CliRunner, tmp_path: Path) -> None:
    """A --limit that selects no host: one line naming the inventory, exit 2."""
    inventory = _inventory(tmp_path)
    result = cli.invoke(main, ["check", "--inventory", str(inventory), "--limit", "db"])
    assert result.exit_code == ExitCode.USAGE
    assert f"{inventory}: --limit 'db' selects no host" in _error_line(result.output)


def test_bad_inventory_exits_2_with_file_and_line(cli: CliRunner, tmp_path: Path) -> None:
    """An inventory error is one line with file:line and the host, exit 2."""
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[web]\nw1 ansible_user=u ansible_connection=telnet\n")
    result = cli.invoke(main, ["check", "--inventory", str(inventory)])
    assert result.exit_code == ExitCode.USAGE
    assert f"{inventory}:2: host 'w1'" in _error_line(result.output)


def test_winrm_option_refused_when_no_host_uses_winrm(cli: CliRunner, tmp_path: Path) -> None:
    """--winrm-transport with only SSH hosts selected: exit 2 naming the option."""
    args = ["check", "--inventory", str(_inventory(tmp_path)), "--winrm-transport", "ntlm"]
    result = cli.invoke(main, args)
    assert result.exit_code == ExitCode.USAGE
    assert "--winrm-transport is for winrm://" in _error_line(result.output)


def test_ssh_option_refused_when_limit_leaves_only_winrm(cli: CliRunner, tmp_path: Path) -> None:
    """--known-hosts when --limit selects only WinRM hosts: exit 2 naming the option."""
    inventory = _inventory(tmp_path, winrm=True)
    args = ["check", "--inventory", str(inventory), "--limit", "windows"]
    result = cli.invoke(main, [*args, "--known-hosts", str(tmp_path / "kh")])
    assert result.exit_code == ExitCode.USAGE
    assert "--known-hosts is for ssh://" in _error_line(result.output)


def test_mixed_fleet_takes_both_transports_options(cli: CliRunner, tmp_path: Path) -> None:
    """A fleet with SSH and WinRM hosts accepts both kinds of options; each host then runs."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    args = [
        "check",
        "--inventory",
        str(_inventory(tmp_path, winrm=True)),
        "--known-hosts",
        str(known_hosts),
        "--winrm-transport",
        "ntlm",
        "--password-env",
        "FLEET_TEST_PW",
        "--run-dir",
        str(tmp_path / "fleet"),
        "--connect-timeout",
        "2",
    ]
    result = cli.invoke(main, args, env={"FLEET_TEST_PW": "not-a-real-password"})
    assert result.exit_code == ExitCode.CONNECTION_FAILED, result.output
    fleet = json.loads((tmp_path / "fleet" / "fleet.json").read_text())
    assert [(h["name"], h["exit_code"]) for h in fleet["hosts"]] == [("l1", 4), ("w1", 4)]


def test_fleet_prints_a_table_and_exits_with_the_worst_code(cli: CliRunner, tmp_path: Path) -> None:
    """The summary names each host with its exit code and the fleet.json path."""
    args = ["check", "--inventory", str(_inventory(tmp_path)), "--run-dir", str(tmp_path / "f")]
    result = cli.invoke(main, [*args, "--connect-timeout", "2"])
    assert result.exit_code == ExitCode.CONNECTION_FAILED
    row = next(line.split() for line in result.output.splitlines() if line.startswith("l1 "))
    assert (row[0], row[1].split(":")[0], row[2], row[3]) == ("l1", "127.0.0.1", "4", "failed")
    assert f"report:  {tmp_path / 'f' / 'fleet.json'}" in result.output


def test_junit_is_for_one_target(cli: CliRunner, tmp_path: Path) -> None:
    """--junit with --inventory is refused (exit 2): it describes one run."""
    args = ["check", "--inventory", str(_inventory(tmp_path)), "--junit", str(tmp_path / "j")]
    result = cli.invoke(main, args)
    assert result.exit_code == ExitCode.USAGE
    assert "--junit is for one --target" in _error_line(result.output)


def test_plan_inventory_shows_each_host_and_the_worst_code(cli: CliRunner, tmp_path: Path) -> None:
    """plan --inventory: a section per host (here its one-line error) and the worst exit code."""
    inventory = _inventory(tmp_path, winrm=False)
    inventory.write_text(inventory.read_text() + inventory.read_text().replace("l1", "l2", 1))
    args = ["plan", "--inventory", str(inventory), "--connect-timeout", "2", "--forks", "2"]
    result = cli.invoke(main, args)
    assert result.exit_code == ExitCode.CONNECTION_FAILED, result.output
    headers = [line for line in result.output.splitlines() if line.startswith("== ")]
    assert [h.split()[1] for h in headers] == ["l1", "l2"]
    assert "2 host(s): 2 failed; exit 4" in result.output


def test_plan_inventory_json_is_one_object_by_host(cli: CliRunner, tmp_path: Path) -> None:
    """plan --inventory --format json: {"exit_code", "hosts": {name: {target, exit_code, ...}}}."""
    args = ["plan", "--inventory", str(_inventory(tmp_path)), "--format", "json"]
    result = cli.invoke(main, [*args, "--connect-timeout", "2"])
    data = json.loads(result.stdout)
    assert data["exit_code"] == 4
    assert data["hosts"]["l1"]["exit_code"] == 4
    assert "connection refused" in data["hosts"]["l1"]["error"]


def test_plan_inventory_loads_the_catalog_once(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """plan --inventory loads and validates the profiles once for every host, as run does."""
    loads: list[object] = []
    real_load = Catalog.load.__func__  # type: ignore[attr-defined]

    def counting_load(cls: type[Catalog], /, *args: object, **kwargs: object) -> Catalog:
        loads.append(cls)
        return real_load(cls, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(Catalog, "load", classmethod(counting_load))
    inventory = _inventory(tmp_path)
    inventory.write_text(inventory.read_text() + inventory.read_text().replace("l1", "l2", 1))
    args = ["plan", "--inventory", str(inventory), "--connect-timeout", "2", "--forks", "2"]
    result = cli.invoke(main, args)
    assert result.exit_code == ExitCode.CONNECTION_FAILED, result.output
    assert len(loads) == 1
