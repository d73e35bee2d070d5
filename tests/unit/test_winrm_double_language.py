"""The Windows test double's PowerShell subset: PowerShell's semantics, and refusals.

The double must fail on what it does not model rather than pass by accident, and where it
evaluates a script it must do what PowerShell does (tests.winrm_server.pslang).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.executors.winrm import WinRmExecutor, WinRmOptions
from agent.secrets import Secret
from agent.targets import Target
from tests.winrm_server import WindowsMachine, WinRmTestServer, ntlm_user_file_line

USER = "Administrator"
PASSWORD = "Passw0rd!"  # noqa: S105  the test double's account


@pytest.fixture
def machine() -> WindowsMachine:
    return WindowsMachine(time_scale=0.01, sysprep_seconds=100.0)


@pytest.fixture
def winrm(
    machine: WindowsMachine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WinRmExecutor]:
    users = tmp_path / "ntlm-users"
    users.write_text(ntlm_user_file_line(USER, PASSWORD))
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    with WinRmTestServer(machine, username=USER, password=PASSWORD) as server:
        target = Target("winrm", USER, "127.0.0.1", server.port)
        with WinRmExecutor(target, WinRmOptions(password=Secret(PASSWORD, "test"))) as executor:
            yield executor


def _printed(winrm: WinRmExecutor, script: str) -> list[str]:
    """The lines ``script`` printed, after checking that it succeeded."""
    result = winrm.run(script)
    assert result.exit_code == 0, result.stderr
    return result.stdout.splitlines()


def test_unknown_command_inside_a_block_fails(winrm: WinRmExecutor) -> None:
    """A cmdlet the double does not model fails as not recognized, even inside an if."""
    result = winrm.run("if ($true) {\n  Get-Frobnicator -All\n}\nWrite-Output 'after'")
    assert result.exit_code == 1
    assert "'Get-Frobnicator' is not recognized" in result.stderr
    assert "after" not in result.stdout


def test_a_comment_inside_a_block_is_skipped_with_the_quotes_in_it(winrm: WinRmExecutor) -> None:
    """A # comment in a block runs to its line's end; an apostrophe in it opens no string."""
    script = (
        "if ($true) {\n  # Ansible's way\n  Write-Output 'in'\n}\n"
        "if ($true) {\n  Write-Output 'then' # a trailing comment, its own\n}\n"
        "Write-Output 'after'"
    )
    assert _printed(winrm, script) == ["in", "then", "after"]


def test_arrays_and_comparisons_behave_like_powershell(winrm: WinRmExecutor) -> None:
    """@() stays an array, += appends, -eq on an array filters, strings compare caselessly."""
    script = (
        "$a = @()\n$a += 'x'\n$a += 'Y'\n"
        "Write-Output ('' + $a.Count)\n"
        "Write-Output (@($a -eq 'y') -join ',')\n"
        "if ('false') { Write-Output 'a non-empty string is true' }\n"
        "Write-Output ('' + (1MB / 1KB))"
    )
    assert _printed(winrm, script) == ["2", "Y", "a non-empty string is true", "1024"]


def test_a_hashtables_keys_read_as_properties(winrm: WinRmExecutor) -> None:
    """@{...}.Key is the key's value, found caselessly; a missing key is $null."""
    script = (
        "foreach ($t in @(@{ Name = 'a'; Size = 1 }, @{ Name = 'b'; Size = 2 })) {\n"
        "  Write-Output ($t.name + $t.Size)\n"
        "}\n"
        "$h = @{ Name = 'c' }\n"
        "if ($null -eq $h.Missing) { Write-Output 'missing is null' }"
    )
    assert _printed(winrm, script) == ["a1", "b2", "missing is null"]


def test_select_object_index_picks_in_pipeline_order(winrm: WinRmExecutor) -> None:
    """-Index: the items at those positions, each once, in pipeline order; beyond: none."""
    script = (
        "$names = 'a', 'b', 'c'\n"
        "Write-Output (@($names | Select-Object -Index 2, 0, 2) -join ',')\n"
        "if (-not ($names | Select-Object -Index 7)) { Write-Output 'none' }"
    )
    assert _printed(winrm, script) == ["a,c", "none"]


def test_a_cim_method_runs_on_the_instance_it_is_given(winrm: WinRmExecutor) -> None:
    """Invoke-CimMethod -InputObject takes namespace and class from the instance's type."""
    script = (
        "$v = Get-CimInstance -Namespace root/cimv2/Security/MicrosoftVolumeEncryption "
        "-ClassName Win32_EncryptableVolume -Filter \"DriveLetter='C:'\"\n"
        "$s = Invoke-CimMethod -InputObject $v -MethodName GetConversionStatus\n"
        "Write-Output ('' + $s.ConversionStatus + ' ' + $s.ReturnValue)"
    )
    result = winrm.run(script)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "0 0\n"


def test_a_cim_method_the_double_lacks_is_refused(winrm: WinRmExecutor) -> None:
    """A method of a modelled class that the double does not implement is not recognized."""
    volumes = (
        "Get-CimInstance -Namespace root/cimv2/Security/MicrosoftVolumeEncryption "
        "-ClassName Win32_EncryptableVolume | Invoke-CimMethod -MethodName "
    )
    modelled = winrm.run(
        volumes + "GetConversionStatus | Select-Object -ExpandProperty ReturnValue"
    )
    assert (modelled.exit_code, modelled.stdout) == (0, "0\n"), modelled.stderr
    refused = winrm.run(volumes + "Decrypt\nWrite-Output 'after'")
    assert refused.exit_code == 1
    assert "is not recognized" in refused.stderr
    assert "after" not in refused.stdout


def test_error_action_decides_whether_a_missing_key_is_reported(winrm: WinRmExecutor) -> None:
    """A missing registry key is an error record, silenced by -ErrorAction SilentlyContinue."""
    quiet = winrm.run(
        "$v = Get-ItemProperty -LiteralPath 'HKLM:\\SOFTWARE\\Nope' -ErrorAction SilentlyContinue\n"
        "Write-Output ('[' + $v + ']')"
    )
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "[]\n", "")
    loud = winrm.run(
        "$ErrorActionPreference = 'Stop'\n"
        "Get-ItemProperty -LiteralPath 'HKLM:\\SOFTWARE\\Nope'\n"
        "Write-Output 'not reached'"
    )
    assert loud.exit_code == 1
    assert "Cannot find path 'HKLM:\\SOFTWARE\\Nope'" in loud.stderr
    assert "not reached" not in loud.stdout


def test_start_process_runs_detached_until_its_command_ends(
    winrm: WinRmExecutor, machine: WindowsMachine
) -> None:
    """A Start-Process child lives in its command's job object: it dies with the command."""
    result = winrm.run(
        "$p = Start-Process -FilePath 'C:\\Windows\\System32\\Sysprep\\sysprep.exe' "
        "-ArgumentList '/generalize /oobe /quit' -PassThru\n"
        "Write-Output ('' + $p.HasExited + ' ' + @(Get-Process -Name sysprep).Count)"
    )
    assert result.stdout == "False 1\n"
    [run] = machine.sysprep_runs
    for _ in range(100):
        if run.outcome != "running":
            break
        time.sleep(0.01)
    assert run.outcome == "killed"


def test_a_missing_program_is_not_started(winrm: WinRmExecutor, machine: WindowsMachine) -> None:
    """Start-Process of a path that does not exist fails as on Windows."""
    result = winrm.run("Start-Process -FilePath 'C:\\nope\\sysprep.exe' -PassThru")
    assert result.exit_code == 1
    assert "cannot find the file specified" in result.stderr
    assert machine.sysprep_runs == []
