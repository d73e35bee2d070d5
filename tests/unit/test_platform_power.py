"""--platform: the power state after shutdown, via real SDKs (fake ARM, libvirt test driver)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from agent.errors import PlatformError, PoweredOnAgain, UsageError
from agent.outcome import ExitCode, exit_code_for_error
from agent.platforms import confirm_powered_off, default_platform_spec, platform_from_spec
from agent.platforms.azure import AzurePlatform, parse_arg
from agent.platforms.libvirt import LibvirtPlatform
from agent.platforms.libvirt import parse_arg as parse_libvirt
from tests.arm_fake import FakeArm, FakeTokenCredential
from tests.arm_fake.server import Fault
from tests.winrm_server.certs import TlsFiles, make_tls_files

SUB = "00000000-0000-4000-8000-00000000abcd"
VM_ID = (
    f"/subscriptions/{SUB}/resourceGroups/golden-rg/providers/Microsoft.Compute/"
    "virtualMachines/golden-vm"
)
URI = "test:///default"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throw-away CA and a certificate for 127.0.0.1, made by the test."""
    return make_tls_files(tmp_path_factory.mktemp("arm-tls"))


@pytest.fixture
def arm(tls: TlsFiles) -> Iterator[FakeArm]:
    """The fake of ARM, serving one running VM."""
    fake = FakeArm(SUB)
    fake.add_vm("golden-rg", "golden-vm", data_disk_luns=())
    with fake.serving(tls):
        yield fake


def _azure(arm: FakeArm, tls: TlsFiles, options: str = "") -> AzurePlatform:
    return AzurePlatform(
        parse_arg(VM_ID + options),
        credential=FakeTokenCredential(),
        endpoint=arm.endpoint,
        connection_verify=str(tls.ca_cert),
        polling_interval=0.01,
    )


# --- Azure ---------------------------------------------------------------------------------


def test_stopped_is_confirmed_in_the_platform_words(arm: FakeArm, tls: TlsFiles) -> None:
    """Running twice, then stopped: confirmed off, with ARM's own PowerState/stopped."""
    arm.set_power(VM_ID, "PowerState/running", "PowerState/running", "PowerState/stopped")
    check = confirm_powered_off(_azure(arm, tls), sleep=lambda s: None)
    assert check.state.words == "PowerState/stopped"
    assert check.readings == ("PowerState/running", "PowerState/stopped")
    assert check.polls == 3
    assert len(arm.requests_to("GET", "/virtualMachines/golden-vm/instanceView$")) == 3


def test_deallocated_counts_as_off(arm: FakeArm, tls: TlsFiles) -> None:
    """PowerState/deallocated is off too."""
    arm.set_power(VM_ID, "PowerState/deallocated")
    assert confirm_powered_off(_azure(arm, tls)).state.words == "PowerState/deallocated"


def test_running_again_after_stopping_is_exit_6_naming_specialize(
    arm: FakeArm, tls: TlsFiles
) -> None:
    """stopping then running: the VM came back up; exit 6, restore from the backup."""
    arm.set_power(VM_ID, "PowerState/running", "PowerState/stopping", "PowerState/running")
    with pytest.raises(PoweredOnAgain) as caught:
        confirm_powered_off(_azure(arm, tls), sleep=lambda s: None)
    message = str(caught.value)
    assert "came back up" in message
    assert "specialize pass may have run" in message
    assert "restore it from the backup" in message
    assert exit_code_for_error(caught.value) is ExitCode.FAILED_AFTER_POINT_OF_NO_RETURN


def test_still_running_at_the_deadline_is_exit_6(arm: FakeArm, tls: TlsFiles) -> None:
    """A VM still running when power-off-timeout ends is exit 6 too, the timeout named."""
    with pytest.raises(PoweredOnAgain, match=r"still runs 0\.2 s after the shutdown"):
        confirm_powered_off(_azure(arm, tls, "?power-off-timeout=0.2"))


def test_stopping_at_the_deadline_is_a_platform_failure(arm: FakeArm, tls: TlsFiles) -> None:
    """Still stopping at the deadline: exit 12, naming the states seen."""
    arm.set_power(VM_ID, "PowerState/stopping")
    with pytest.raises(PlatformError, match=r"did not power off within 0\.2 s") as caught:
        confirm_powered_off(_azure(arm, tls, "?power-off-timeout=0.2"))
    assert "PowerState/stopping" in str(caught.value)
    assert exit_code_for_error(caught.value) is ExitCode.PLATFORM_FAILED


def test_throttling_with_retry_after_is_waited_out(arm: FakeArm, tls: TlsFiles) -> None:
    """A 429 with Retry-After is retried by the SDK, and the state still read."""
    arm.set_power(VM_ID, "PowerState/stopped")
    arm.faults.append(Fault("GET", "/instanceView$", 429, retry_after=1))
    assert confirm_powered_off(_azure(arm, tls)).state.off
    assert len(arm.requests_to("GET", "/instanceView$")) == 2


def test_a_server_error_once_is_retried(arm: FakeArm, tls: TlsFiles) -> None:
    """A 503 once is retried by the SDK's retry policy."""
    arm.set_power(VM_ID, "PowerState/stopped")
    arm.faults.append(Fault("GET", "/instanceView$", 503))
    assert confirm_powered_off(_azure(arm, tls)).state.off


def test_forbidden_names_the_refused_action(arm: FakeArm, tls: TlsFiles) -> None:
    """A 403 on the instance view names the action ARM refused."""
    arm.denied_actions.add("Microsoft.Compute/virtualMachines/read")
    with pytest.raises(PlatformError) as caught:
        _azure(arm, tls).power_state()
    assert "ARM refused action Microsoft.Compute/virtualMachines/read" in str(caught.value)
    assert "403 AuthorizationFailed" in str(caught.value)


def test_unknown_vm_is_a_platform_failure(arm: FakeArm, tls: TlsFiles) -> None:
    """A VM ARM does not know is exit 12 with ARM's code."""
    platform = AzurePlatform(
        parse_arg(VM_ID.replace("golden-vm", "other-vm")),
        credential=FakeTokenCredential(),
        endpoint=arm.endpoint,
        connection_verify=str(tls.ca_cert),
    )
    with pytest.raises(PlatformError, match="404 ResourceNotFound"):
        platform.power_state()


# --- libvirt -------------------------------------------------------------------------------


@pytest.fixture
def domain() -> Iterator[tuple[Any, str]]:
    """A running domain of its own on libvirt's in-process test driver."""
    conn = libvirt.open(URI)
    name = f"golden-{uuid.uuid4().hex[:8]}"
    dom = conn.createXML(
        f"<domain type='test'><name>{name}</name><memory>131072</memory>"
        "<os><type>hvm</type></os></domain>",
        0,
    )
    yield dom, name
    with contextlib.suppress(libvirt.libvirtError):
        dom.destroy()
    conn.close()


def test_libvirt_shut_off_is_confirmed(domain: tuple[Any, str]) -> None:
    """A destroyed (transient: gone, so defined) domain reads "shut off" in virsh's words."""
    dom, name = domain
    conn = dom.connect()
    conn.defineXML(dom.XMLDesc(0))  # persistent, so it stays listed once off
    dom.destroy()
    platform = platform_from_spec(f"libvirt:{name}?uri={URI}")
    check = confirm_powered_off(platform)
    assert check.state.words == "shut off"
    conn.lookupByName(name).undefine()


def test_libvirt_running_at_the_deadline_is_exit_6(domain: tuple[Any, str]) -> None:
    """A domain that keeps running past power-off-timeout is PoweredOnAgain."""
    _, name = domain
    platform = LibvirtPlatform(
        parse_libvirt(f"{name}?uri={URI}&power-off-timeout=0.1"), power_poll_interval=0.02
    )
    with pytest.raises(PoweredOnAgain, match=r"\(running; states seen: running\)"):
        confirm_powered_off(platform)


def test_libvirt_unknown_domain_is_a_platform_failure() -> None:
    """A domain libvirt does not have is exit 12, naming it."""
    platform = platform_from_spec(f"libvirt:no-such-domain?uri={URI}")
    with pytest.raises(PlatformError, match="no-such-domain"):
        platform.power_state()


# --- parsing, defaults ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backup", "platform"),
    [
        (f"azure-snapshot:{VM_ID}?data-disks=true", f"azure:{VM_ID}"),
        (f"libvirt:dom1?uri={URI}&snapshot=s1", "libvirt:dom1?uri=test%3A%2F%2F%2Fdefault"),
        ("libvirt:dom1", "libvirt:dom1"),
        ("archive:/tmp/x", None),
        (None, None),
    ],
)
def test_backup_that_names_the_vm_is_the_default_platform(
    backup: str | None, platform: str | None
) -> None:
    """--backup azure-snapshot:/libvirt: imply --platform for the same VM."""
    assert default_platform_spec(backup) == platform


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gcp:vm", "unknown platform 'gcp'"),
        ("azure:", "nothing after 'azure:'"),
        ("azure:/subscriptions/x/resourceGroups/r", "expected the VM's resource id"),
        (f"azure:{VM_ID}?power-off-timeout=-1", "not a number of seconds"),
        (f"azure:{VM_ID}?zone=1", "unknown option zone"),
        ("libvirt:dom?snapshot=x", "unknown or empty option snapshot"),
    ],
)
def test_bad_platform_is_a_usage_error(spec: str, message: str) -> None:
    """A wrong --platform fails before anything is contacted, saying what was expected."""
    with pytest.raises(UsageError, match=message):
        platform_from_spec(spec)


def test_no_sdk_is_imported_until_a_platform_is_used() -> None:
    """Loading the CLI, the runner and the capture flow imports neither azure nor libvirt."""
    code = (
        "import sys, agent.cli, agent.runner, agent.capture, agent.platforms; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'azure', 'libvirt'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_every_exit_code_is_in_the_readme_table() -> None:
    """Each ExitCode value has its row in README's exit code table (12 included)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = {line.split("|")[1].strip() for line in readme.splitlines() if line.startswith("| ")}
    assert {str(int(code)) for code in ExitCode} <= rows


def test_missing_azure_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without azure-mgmt-compute, --platform azure: says which pip extra to install."""
    monkeypatch.setitem(sys.modules, "azure.mgmt.compute", None)
    monkeypatch.delitem(sys.modules, "agent.platforms.azure")
    with pytest.raises(UsageError, match=r"pip install 'imageprep-agent\[azure\]'"):
        platform_from_spec(f"azure:{VM_ID}")
