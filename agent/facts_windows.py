"""Facts: what a connected Windows target is, gathered in one PowerShell round trip.

ProductType, build, EditionID and InstallationType choose the profile (``match: {windows:
...}`` in agent.catalog), all read from the registry, which is the same in every language;
ImageState, SysprepStatus, elevation and domain membership are recorded in the report
and feed ``when:`` conditions. The preflight steps re-check what they depend on live:
facts are a snapshot taken before anything runs.

The product name, shown to humans only, comes from ``Win32_OperatingSystem.Caption``
(``Microsoft Windows Server 2022 Datacenter``) rather than the registry's ``ProductName``,
which Microsoft stopped updating on newer releases (Windows 11 still says "Windows 10"
there). The caption is localized ("Майкрософт Windows Server 2019 Standard" on a Russian
server), so nothing is ever decided on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.errors import ConnectError
from agent.executors.base import Executor
from agent.facts import parse_key_values, run_for_facts
from agent.targets import WINDOWS_ID

# KEY=VALUE lines: `'key=' + $null` prints "key=", so a missing value is an empty string.
_GATHER_SCRIPT = r"""
$cv = Get-ItemProperty -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion'
# WMI can fail where the registry answers; preflight re-checks what it needs, failing closed.
$os = Get-CimInstance -ClassName Win32_OperatingSystem -ErrorAction SilentlyContinue
$cs = Get-CimInstance -ClassName Win32_ComputerSystem -ErrorAction SilentlyContinue
$options = 'HKLM:\SYSTEM\CurrentControlSet\Control\ProductOptions'
$productType = (Get-ItemProperty -LiteralPath $options -ErrorAction SilentlyContinue).ProductType
$setup = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State'
$state = Get-ItemProperty -LiteralPath $setup -ErrorAction SilentlyContinue
$status = 'HKLM:\SYSTEM\Setup\Status\SysprepStatus'
$sysprep = Get-ItemProperty -LiteralPath $status -ErrorAction SilentlyContinue
$identity = [Security.Principal.WindowsIdentity]::GetCurrent()
$principal = New-Object Security.Principal.WindowsPrincipal($identity)
'caption=' + $os.Caption
'product_name=' + $cv.ProductName
'product_type=' + $productType
'edition_id=' + $cv.EditionID
'installation_type=' + $cv.InstallationType
'build=' + $cv.CurrentBuildNumber
'version=' + $os.Version
'ubr=' + $cv.UBR
'display_version=' + $cv.DisplayVersion
'arch=' + $env:PROCESSOR_ARCHITECTURE
'hostname=' + $env:COMPUTERNAME
'user=' + $identity.Name
'is_system=' + $identity.IsSystem
'is_admin=' + $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
'image_state=' + $state.ImageState
'generalization_state=' + $sysprep.GeneralizationState
'cleanup_state=' + $sysprep.CleanupState
'part_of_domain=' + $cs.PartOfDomain
'domain=' + $cs.Domain
"""


@dataclass(frozen=True)
class WindowsFacts:
    """The gathered facts; ``as_dict()`` is what expressions and templates see."""

    product_name: str
    product_type: str  # server | client | "" (unknown); from ProductOptions ProductType
    edition_id: str
    installation_type: str
    build: str
    version: str
    ubr: int | None
    display_version: str
    arch: str
    hostname: str
    user: str
    is_admin: bool
    is_system: bool
    image_state: str
    generalization_state: int | None
    cleanup_state: int | None
    part_of_domain: bool
    domain: str

    @property
    def os_release(self) -> dict[str, str]:
        """What agent.catalog matches on: ``ID=windows``, the product and the build."""
        return {
            "ID": WINDOWS_ID,
            "ID_LIKE": "",
            "VERSION_ID": self.version,
            "WINDOWS_PRODUCT": self.product_name,
            "WINDOWS_PRODUCT_TYPE": self.product_type,
            "WINDOWS_BUILD": self.build,
            "WINDOWS_EDITION_ID": self.edition_id,
            "WINDOWS_INSTALLATION_TYPE": self.installation_type,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            # The same "os" keys as on Linux, so reports and `plan` read both alike.
            "os": {
                "id": WINDOWS_ID,
                "id_like": [],
                "version_id": self.version,
                "version_codename": self.display_version,
                "pretty_name": self.product_name,
            },
            "hostname": self.hostname,
            "arch": self.arch,
            "user": self.user,
            "windows": {
                "product_name": self.product_name,
                "product_type": self.product_type,
                "edition_id": self.edition_id,
                "installation_type": self.installation_type,
                "build": self.build,
                "ubr": self.ubr,
                "display_version": self.display_version,
                "image_state": self.image_state,
                "generalization_state": self.generalization_state,
                "cleanup_state": self.cleanup_state,
                "is_admin": self.is_admin,
                "is_system": self.is_system,
                "part_of_domain": self.part_of_domain,
                "domain": self.domain,
            },
        }


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _product(values: dict[str, str]) -> str:
    caption = " ".join(values.get("caption", "").split())
    if caption.lower().startswith("microsoft "):
        caption = caption[len("microsoft ") :]
    return caption or values.get("product_name", "").strip()


# ProductOptions ProductType: LanmanNT is a domain controller, a server too.
_PRODUCT_TYPES = {"winnt": "client", "servernt": "server", "lanmannt": "server"}


def facts_from_values(values: dict[str, str]) -> WindowsFacts:
    """Build the facts from the gather script's KEY=VALUE output."""

    def flag(key: str) -> bool:
        return values.get(key, "").strip().lower() == "true"

    build = values.get("build", "").strip()
    return WindowsFacts(
        product_name=_product(values),
        product_type=_PRODUCT_TYPES.get(values.get("product_type", "").strip().casefold(), ""),
        edition_id=values.get("edition_id", ""),
        installation_type=values.get("installation_type", ""),
        build=build,
        version=values.get("version", "").strip() or (f"10.0.{build}" if build else ""),
        ubr=_int_or_none(values.get("ubr", "")),
        display_version=values.get("display_version", ""),
        arch=values.get("arch", ""),
        hostname=values.get("hostname", ""),
        user=values.get("user", ""),
        is_admin=flag("is_admin"),
        is_system=flag("is_system"),
        image_state=values.get("image_state", ""),
        generalization_state=_int_or_none(values.get("generalization_state", "")),
        cleanup_state=_int_or_none(values.get("cleanup_state", "")),
        part_of_domain=flag("part_of_domain"),
        domain=values.get("domain", ""),
    )


def gather_windows_facts(executor: Executor, *, timeout: float = 60) -> WindowsFacts:
    """Read the target's facts in one command; ConnectError if it does not look like Windows."""
    result = run_for_facts(executor, _GATHER_SCRIPT, timeout=timeout)
    values = parse_key_values(result.stdout)
    if not result.ok or not values.get("build", "").strip().isdigit():
        detail = (result.stderr.strip().splitlines() or ["no build number in the answer"])[-1]
        raise ConnectError(
            f"{executor.description}: could not read Windows facts (exit {result.exit_code}: "
            f"{detail}); is this a Windows host with PowerShell?"
        )
    return facts_from_values(values)


def describe(facts: WindowsFacts) -> str:
    """One line for humans: ``Windows Server 2022 Datacenter build 20348.2340 (AMD64)``."""
    build = f"{facts.build}.{facts.ubr}" if facts.ubr is not None else facts.build
    return f"{facts.product_name} build {build} ({facts.arch}, ImageState {facts.image_state})"
