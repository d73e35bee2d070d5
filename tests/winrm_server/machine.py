"""The state of the Windows machine the test double pretends to be.

Part of the WinRM *test double for a Windows machine* (see ``tests/winrm_server``): a
small Python object holding what imageprep reads and changes on a Windows VM (registry
values, files, AppX packages, BitLocker, pending reboot, power), and what Sysprep does to
it. Tests arrange a scenario by changing this object before or during a run, and assert
on it afterwards, as the Linux tests inspect a target's disk.

Paths and registry keys are case-insensitive, as on Windows. Time is virtual: every
sleep of a program on this machine and every WinRM OperationTimeout are multiplied by
``time_scale``, so that a test can replay a 30-second exchange in well under a second.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

STATE_KEY = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State"
SYSPREP_STATUS_KEY = r"HKLM\SYSTEM\Setup\Status\SysprepStatus"
SETUP_KEY = r"HKLM\SYSTEM\Setup"
CURRENT_VERSION_KEY = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion"
CDROM_SERVICE_KEY = r"HKLM\SYSTEM\CurrentControlSet\Services\cdrom"
PRODUCT_OPTIONS_KEY = r"HKLM\SYSTEM\CurrentControlSet\Control\ProductOptions"
SESSION_MANAGER_KEY = r"HKLM\SYSTEM\CurrentControlSet\Control\Session Manager"
ACTIVE_COMPUTER_NAME_KEY = r"HKLM\SYSTEM\CurrentControlSet\Control\ComputerName\ActiveComputerName"
COMPUTER_NAME_KEY = r"HKLM\SYSTEM\CurrentControlSet\Control\ComputerName\ComputerName"
SOFTWARE_PROTECTION_KEY = (
    r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\SoftwareProtectionPlatform"
)
UPDATES_KEY = r"HKLM\SOFTWARE\Microsoft\Updates"
NETLOGON_JOIN_DOMAIN_KEY = r"HKLM\SYSTEM\CurrentControlSet\Services\Netlogon\JoinDomain"
NETLOGON_AVOID_SPN_KEY = r"HKLM\SYSTEM\CurrentControlSet\Services\Netlogon\AvoidSpnSet"
# The three keys Packer's windows-restart checks, plus Windows Update's (windows.md §2).
PENDING_REBOOT_KEYS = (
    r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending",
    r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootInProgress",
    r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\PackagesPending",
    r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired",
)
# BitLocker's WMI provider, and its ConversionStatus codes in order (0 FullyDecrypted ...
# 5 DecryptionPaused; GetConversionStatus on learn.microsoft.com), which are also the
# VolumeStatus names Get-BitLockerVolume shows.
VOLUME_ENCRYPTION_NAMESPACE = r"root\cimv2\Security\MicrosoftVolumeEncryption"
CONVERSION_STATUSES = (
    "FullyDecrypted",
    "FullyEncrypted",
    "EncryptionInProgress",
    "DecryptionInProgress",
    "EncryptionPaused",
    "DecryptionPaused",
)
SYSPREP_DIR = r"C:\Windows\System32\Sysprep"
PANTHER_DIR = SYSPREP_DIR + r"\Panther"
SETUPACT_LOG = PANTHER_DIR + r"\setupact.log"
SETUPERR_LOG = PANTHER_DIR + r"\setuperr.log"
SUCCEEDED_TAG = SYSPREP_DIR + r"\Sysprep_succeeded.tag"
SYSPREP_UNATTEND = SYSPREP_DIR + r"\unattend.xml"
SETUP_PANTHER_DIR = r"C:\Windows\Panther"
PANTHER_UNATTEND = SETUP_PANTHER_DIR + r"\unattend.xml"
SETUP_COMPLETE = r"C:\Windows\Setup\Scripts\SetupComplete.cmd"

# What each supported Windows Server release reports (Win32_OperatingSystem and the
# CurrentVersion key), for ``WindowsMachine(release=...)``.
RELEASES: dict[str, dict[str, object]] = {
    "2016": {
        "caption": "Microsoft Windows Server 2016 Datacenter",
        "build": 14393,
        "ubr": 7428,
        "display_version": "",
    },
    "2019": {
        "caption": "Microsoft Windows Server 2019 Datacenter",
        "build": 17763,
        "ubr": 6893,
        "display_version": "",
    },
    "2022": {
        "caption": "Microsoft Windows Server 2022 Datacenter",
        "build": 20348,
        "ubr": 3091,
        "display_version": "21H2",
    },
    "2025": {
        "caption": "Microsoft Windows Server 2025 Datacenter",
        "build": 26100,
        "ubr": 2894,
        "display_version": "24H2",
    },
}


def appx_identity(full_name: str) -> tuple[str, str]:
    """(Name, Version) of a package full name ``Name_Version_Arch_ResourceId_PublisherId``."""
    parts = full_name.split("_")
    return parts[0], parts[1] if len(parts) > 1 else ""


IMAGE_STATE_COMPLETE = "IMAGE_STATE_COMPLETE"
IMAGE_STATE_UNDEPLOYABLE = "IMAGE_STATE_UNDEPLOYABLE"
IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE = "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE"
IMAGE_STATE_GENERALIZE_RESEAL_TO_AUDIT = "IMAGE_STATE_GENERALIZE_RESEAL_TO_AUDIT"

EXECUTABLES = (
    r"C:\Windows\System32\cmd.exe",
    r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
    r"C:\Windows\System32\shutdown.exe",
    SYSPREP_DIR + r"\sysprep.exe",
)

_HIVES = {
    "HKEY_LOCAL_MACHINE": "HKLM",
    "HKLM:": "HKLM",
    "HKEY_CURRENT_USER": "HKCU",
    "HKCU:": "HKCU",
}


def registry_key(path: str) -> str:
    """Canonical, case-folded form of ``HKLM:\\X``, ``HKEY_LOCAL_MACHINE\\X``, ``Registry::...``."""
    path = path.strip().strip("'\"")
    if path.lower().startswith("registry::"):
        path = path[len("registry::") :]
    head, _, rest = path.partition("\\")
    hive = _HIVES.get(head.upper(), head.upper())
    return "\\".join([hive, *[p for p in rest.split("\\") if p]]).casefold()


def file_key(path: str) -> str:
    """Canonical, case-folded form of a Windows file path."""
    return path.strip().strip("'\"").replace("/", "\\").rstrip("\\").casefold()


class SharingViolation(Exception):
    """CreateFile's ERROR_SHARING_VIOLATION: an open handle's share mode refuses this open."""


@dataclass(eq=False)
class FileHandle:
    """An open file (CreateFile): its owner (a process), access and share mode.

    ``access`` and ``share`` hold "read", "write", "delete"; a delete-on-close handle
    has delete access (FILE_FLAG_DELETE_ON_CLOSE needs it), so later opens must share
    delete, as on Windows.
    """

    key: str
    owner: object
    access: frozenset[str]
    share: frozenset[str]
    delete_on_close: bool = False


class PoweredOff(Exception):
    """Raised inside programs and requests once the machine has powered off."""


@dataclass
class SysprepRun:
    """One sysprep.exe invocation as the machine saw it."""

    switches: tuple[str, ...]
    outcome: str = "running"  # running | succeeded | failed | killed | stuck
    reason: str = ""


@dataclass
class WindowsMachine:
    """A Windows Server VM as far as imageprep can observe it over WinRM."""

    hostname: str = "WIN-IMAGEPREP"
    release: str = "2022"  # a key of RELEASES
    # Win32_OperatingSystem.Caption when not the release's English one: it is localized
    # (a Russian server says "Майкрософт Windows Server 2019 Standard").
    caption: str = ""
    account: str = "Administrator"  # the WinRM user's account
    account_is_admin: bool = True  # its remote token is elevated
    account_is_system: bool = False
    part_of_domain: bool = False
    domain: str = "WORKGROUP"
    # Azure guest agent services (name -> Get-Service Status); {} = not on Azure.
    services: dict[str, str] = field(
        default_factory=lambda: {"RdAgent": "Running", "WindowsAzureGuestAgent": "Running"}
    )
    # Get-WindowsFeature names of the installed roles and features.
    installed_features: list[str] = field(
        default_factory=lambda: [
            "FileAndStorage-Services",
            "Storage-Services",
            "NET-Framework-45-Core",
            "PowerShellRoot",
            "PowerShell",
        ]
    )
    # The BitLocker feature: its WMI provider (Win32_EncryptableVolume) is there with it.
    bitlocker_installed: bool = True
    # Its PowerShell module (Get-BitLockerVolume) comes with the management tools
    # (RSAT-Feature-Tools-BitLocker): `Install-WindowsFeature BitLocker` without
    # -IncludeManagementTools leaves it out while volumes can still be encrypted.
    bitlocker_cmdlets: bool = True
    free_bytes: int = 40 * 1024**3  # free space on C:
    rearm_count: int = 1001  # SoftwareLicensingService.RemainingWindowsReArmCount
    configmgr_reboot_pending: bool | None = None  # None: no ConfigMgr client installed
    extra_processes: list[str] = field(default_factory=list)  # e.g. a stale "sysprep"
    # Cmdlets that fail here (lower-case name -> (message, exception)): with an exception
    # type, the cmdlet throws (statement-terminating, like Get-AppxPackage's
    # TypeInitializationException in non-console hosts on build 26100); without, it
    # writes a non-terminating error. Either way the script goes on unless Stop.
    failing_cmdlets: dict[str, tuple[str, str]] = field(default_factory=dict)
    children: list[Any] = field(default_factory=list)  # started by Start-Process
    # Error lines a successful Sysprep writes anyway (issue 11; field reports from Packer
    # and Azure users): harmless, so a verifier that fails on any "Error" is wrong.
    harmless_setuperr: tuple[str, ...] = (
        "Error                 BCD: BiUpdateEfiEntry failed c000000d",
        "Error      [0x0f0082] SYSPRP SPPNP: Failed to set a device property; status 0x57",
        "Error      SYSPRP SPPNP: Failed to uninstall device ROOT\\BASICDISPLAY\\0000; "
        "error 0xE0000231",
    )
    # WSMan:\localhost\Shell, as Server 2012 and later ship it; IdleTimeout in ms.
    winrm_shell_config: dict[str, int] = field(
        default_factory=lambda: {
            "MaxMemoryPerShellMB": 2147483647,
            "MaxProcessesPerShell": 2147483647,
            "IdleTimeout": 7200000,
        }
    )
    powershell_memory_mb: int = 90  # what one powershell.exe of a step uses
    time_scale: float = 1.0
    sysprep_seconds: float = 4.0  # virtual seconds the generalize pass takes
    registry: dict[str, dict[str, object]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    # Open handles per file key (open_file); a process's are closed when it ends.
    handles: dict[str, list[FileHandle]] = field(default_factory=dict)
    appx_installed: dict[str, set[str]] = field(default_factory=dict)  # user -> packages
    appx_provisioned: set[str] = field(default_factory=set)
    bitlocker_status: str = "FullyDecrypted"  # Get-BitLockerVolume VolumeStatus
    env: dict[str, str] = field(default_factory=dict)
    powered_on: bool = True
    # Some machines (a hypervisor's "restart on shutdown" policy, a stuck ACPI setting)
    # boot again instead of staying off: the listener comes back after reboot_seconds
    # (virtual), and the first boot after generalize runs specialize.
    reboots_on_power_off: bool = False
    reboot_seconds: float = 30.0
    boots: int = 0  # boots after the first
    sysprep_runs: list[SysprepRun] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)  # every PowerShell script run
    _key_names: dict[str, str] = field(default_factory=dict)
    _file_names: dict[str, str] = field(default_factory=dict)
    _off_listeners: list[Callable[[], None]] = field(default_factory=list)
    _boot_listeners: list[Callable[[], None]] = field(default_factory=list)
    _power_lock: threading.Lock = field(default_factory=threading.Lock)
    _handles_lock: threading.Lock = field(default_factory=threading.Lock)
    _power_timer: threading.Timer | None = None

    def __post_init__(self) -> None:
        self.env = {
            "SystemRoot": r"C:\Windows",
            "windir": r"C:\Windows",
            "SystemDrive": "C:",
            "ProgramFiles": r"C:\Program Files",
            "ProgramData": r"C:\ProgramData",
            "COMPUTERNAME": self.hostname,
            "TEMP": r"C:\Users\Administrator\AppData\Local\Temp",
            **self.env,
        }
        release = RELEASES[self.release]
        self.env.setdefault("PROCESSOR_ARCHITECTURE", "AMD64")
        defaults: dict[str, dict[str, object]] = {
            STATE_KEY: {"ImageState": IMAGE_STATE_COMPLETE},
            SYSPREP_STATUS_KEY: {"GeneralizationState": 7, "CleanupState": 2},
            SETUP_KEY: {"SetupType": 0, "CmdLine": "", "SystemSetupInProgress": 0},
            CURRENT_VERSION_KEY: {
                # Microsoft stopped updating ProductName on newer builds; Caption is right.
                "ProductName": str(release["caption"]).removeprefix("Microsoft "),
                "EditionID": "ServerDatacenter",
                "InstallationType": "Server",
                "CurrentBuildNumber": str(release["build"]),
                "UBR": release["ubr"],
                **(
                    {"DisplayVersion": release["display_version"]}
                    if release["display_version"]
                    else {}
                ),
            },
            PRODUCT_OPTIONS_KEY: {"ProductType": "ServerNT"},
            CDROM_SERVICE_KEY: {"Start": 1},
            SESSION_MANAGER_KEY: {"BootExecute": "autocheck autochk *"},
            ACTIVE_COMPUTER_NAME_KEY: {"ComputerName": self.hostname},
            COMPUTER_NAME_KEY: {"ComputerName": self.hostname},
        }
        for key, values in defaults.items():
            for name, value in values.items():
                if self.get_value(key, name) is None:
                    self.set_value(key, name, value)
        for exe in EXECUTABLES:
            self.files.setdefault(file_key(exe), b"MZ")
        # Windows Setup's logs of the installation (what Azure has deleted before Sysprep).
        self.files.setdefault(file_key(SETUP_PANTHER_DIR + r"\setupact.log"), b"setup log\r\n")
        self.files.setdefault(
            file_key(SETUP_PANTHER_DIR + r"\UnattendGC\setupact.log"), b"oobe log\r\n"
        )
        self.files.setdefault(file_key(SETUPACT_LOG), b"")
        self.files.setdefault(file_key(SETUPERR_LOG), b"")

    # -- registry -----------------------------------------------------------------------

    def set_value(self, key: str, name: str, value: object) -> None:
        canonical = registry_key(key)
        self._key_names.setdefault(canonical, key)
        values = self.registry.setdefault(canonical, {})
        for existing in list(values):
            if existing.casefold() == name.casefold():
                del values[existing]
        values[name] = value

    def get_value(self, key: str, name: str) -> object | None:
        values = self.registry.get(registry_key(key), {})
        return next((v for n, v in values.items() if n.casefold() == name.casefold()), None)

    def create_key(self, key: str) -> None:
        self.registry.setdefault(registry_key(key), {})

    def delete_key(self, key: str) -> None:
        self.registry.pop(registry_key(key), None)

    def key_exists(self, key: str) -> bool:
        canonical = registry_key(key)
        return any(k == canonical or k.startswith(canonical + "\\") for k in self.registry)

    @property
    def image_state(self) -> str:
        return str(self.get_value(STATE_KEY, "ImageState"))

    @image_state.setter
    def image_state(self, value: str) -> None:
        self.set_value(STATE_KEY, "ImageState", value)

    def pending_reboot(self) -> bool:
        return any(self.key_exists(k) for k in PENDING_REBOOT_KEYS)

    # -- files --------------------------------------------------------------------------

    def write_file(self, path: str, data: bytes) -> None:
        self._file_names.setdefault(file_key(path), path.strip().strip("'\""))
        self.files[file_key(path)] = data

    def open_file(
        self,
        owner: object,
        path: str,
        *,
        create: bool,
        access: frozenset[str],
        share: frozenset[str],
        delete_on_close: bool = False,
    ) -> FileHandle:
        """CreateFile: SharingViolation unless every open handle and this one share.

        An open succeeds when its access is within each open handle's share mode and
        each open handle's access is within its share mode (CreateFileW, dwShareMode).
        FileNotFoundError for a missing file without ``create`` (FileMode.Open).
        """
        key = file_key(path)
        wanted = access | {"delete"} if delete_on_close else access
        with self._handles_lock:
            for other in self.handles.get(key, []):
                if not wanted <= other.share or not other.access <= share:
                    raise SharingViolation(path)
            if key not in self.files:
                if not create:
                    raise FileNotFoundError(path)
                self.write_file(path, b"")
            handle = FileHandle(key, owner, frozenset(wanted), share, delete_on_close)
            self.handles.setdefault(key, []).append(handle)
        return handle

    def close_handles(self, owner: object | None = None) -> None:
        """Close ``owner``'s handles (every handle when None): the process ended.

        A file opened with delete-on-close is deleted once its last handle is closed.
        """
        with self._handles_lock:
            for key, open_handles in list(self.handles.items()):
                kept = [h for h in open_handles if owner is not None and h.owner is not owner]
                closing = [h for h in open_handles if h not in kept]
                if kept:
                    self.handles[key] = kept
                else:
                    del self.handles[key]
                if not kept and any(h.delete_on_close for h in closing):
                    self.files.pop(key, None)

    def append_file(self, path: str, data: bytes) -> None:
        self.files[file_key(path)] = self.files.get(file_key(path), b"") + data

    def read_file(self, path: str) -> bytes | None:
        return self.files.get(file_key(path))

    def file_exists(self, path: str) -> bool:
        return file_key(path) in self.files

    def path_exists(self, path: str) -> bool:
        """A file, or a folder holding one (folders exist through their files here)."""
        key = file_key(path)
        return key in self.files or any(k.startswith(key + "\\") for k in self.files)

    def files_below(self, path: str) -> list[tuple[str, int]]:
        """(full path as first written, size) of every file below a folder."""
        key = file_key(path)
        return sorted(
            (self._file_names.get(name, name), len(data))
            for name, data in self.files.items()
            if name.startswith(key + "\\")
        )

    def remove_tree(self, path: str, *, keep_root: bool = False) -> list[str]:
        """Delete a file, or a folder and everything below it (or only below, keep_root).

        A file open in a handle that does not share delete stays, as on Windows ("being
        used by another process"); the paths that stayed are returned.
        """
        key = file_key(path)
        in_use = []
        for name in list(self.files):
            if (name == key and not keep_root) or name.startswith(key + "\\"):
                if any("delete" not in h.share for h in self.handles.get(name, [])):
                    in_use.append(self._file_names.get(name, name))
                    continue
                del self.files[name]
        return in_use

    def log_line(self, path: str, line: str) -> None:
        """Append one Panther-style log line (CRLF, as Windows writes them)."""
        self.append_file(path, f"2026-01-01 12:00:00, {line}\r\n".encode())

    # -- AppX ---------------------------------------------------------------------------

    def appx_not_provisioned(self) -> list[tuple[str, str]]:
        """(user, package) installed for a user but not provisioned for all users.

        Compared by name and version, as Sysprep does: a user's Store update of a
        provisioned app (a newer version) fails validation too (MS KB 2769827).
        """
        provisioned = {appx_identity(p) for p in self.appx_provisioned}
        return sorted(
            (user, package)
            for user, packages in self.appx_installed.items()
            for package in packages
            if appx_identity(package) not in provisioned
        )

    def appx_all_packages(self) -> list[str]:
        installed = {p for packages in self.appx_installed.values() for p in packages}
        return sorted(installed | self.appx_provisioned)

    def sid_of(self, user: str) -> str:
        rid = 500 if user.casefold() == "administrator" else 1000 + sum(map(ord, user)) % 1000
        return f"S-1-5-21-3623811015-3361044348-30300820-{rid}"

    # -- identity, WMI, processes -------------------------------------------------------

    @property
    def account_name(self) -> str:
        if self.account_is_system:
            return "NT AUTHORITY\\SYSTEM"
        prefix = self.domain.split(".")[0].upper() if self.part_of_domain else self.hostname
        return f"{prefix}\\{self.account}"

    def cim_instances(self, namespace: str, class_name: str) -> list[dict[str, object]] | None:
        """CIM instances of a class; None when the namespace does not exist."""
        namespace = namespace.casefold().replace("/", "\\")
        if namespace == r"root\cimv2\security":
            # WMI lists a namespace's children as instances of __NAMESPACE.
            children = ["MicrosoftTpm"] + ["MicrosoftVolumeEncryption"] * self.bitlocker_installed
            if class_name.casefold() != "__namespace":
                return []
            return [{"Name": name} for name in children]
        if namespace == VOLUME_ENCRYPTION_NAMESPACE.casefold() and self.bitlocker_installed:
            volume = {
                "DeviceID": "\\\\?\\Volume{5e1f3a2c-0000-0000-0000-100000000000}\\",
                "DriveLetter": "C:",
                "ProtectionStatus": int(self.bitlocker_protected()),  # 0 off, 1 on
            }
            return [volume] if class_name.casefold() == "win32_encryptablevolume" else []
        if namespace != r"root\cimv2":
            return None
        release = RELEASES[self.release]
        classes: dict[str, list[dict[str, object]]] = {
            "win32_operatingsystem": [
                {
                    "Caption": self.caption or release["caption"],
                    "BuildNumber": str(release["build"]),
                    "Version": f"10.0.{release['build']}",
                    "OSArchitecture": "64-bit",
                }
            ],
            "win32_computersystem": [
                {
                    "Name": self.hostname,
                    "PartOfDomain": self.part_of_domain,
                    "Domain": self.domain,
                }
            ],
            "win32_logicaldisk": [
                {
                    "DeviceID": "C:",
                    "FreeSpace": self.free_bytes,
                    "Size": 127 * 1024**3,
                }
            ],
            "softwarelicensingservice": [{"RemainingWindowsReArmCount": self.rearm_count}],
        }
        return classes.get(class_name.casefold(), [])

    def cim_method(self, namespace: str, class_name: str, method: str) -> dict[str, object] | None:
        """The CIM methods imageprep calls: ConfigMgr's DetermineIfRebootPending (when a
        client is installed) and Win32_EncryptableVolume's GetConversionStatus."""
        namespace = namespace.casefold().replace("/", "\\")
        volume = (namespace, class_name.casefold(), method.casefold()) == (
            VOLUME_ENCRYPTION_NAMESPACE.casefold(),
            "win32_encryptablevolume",
            "getconversionstatus",
        )
        if volume and self.bitlocker_installed:
            # learn.microsoft.com/windows/win32/secprov/getconversionstatus-win32-encryptablevolume
            return {
                "ConversionStatus": CONVERSION_STATUSES.index(self.bitlocker_status),
                "EncryptionPercentage": 100 * self.bitlocker_encrypted(),
                "EncryptionFlags": 0,
                "WipingStatus": 0,
                "WipingPercentage": 0,
                "ReturnValue": 0,
            }
        is_ccm = namespace == r"root\ccm\clientsdk"
        if not is_ccm or self.configmgr_reboot_pending is None:
            return None
        if class_name.casefold() != "ccm_clientutilities" or method != "DetermineIfRebootPending":
            return None
        pending = self.configmgr_reboot_pending
        return {"RebootPending": pending, "IsHardRebootPending": False, "ReturnValue": 0}

    def next_pid(self) -> int:
        return 4000 + 4 * (len(self.children) + 1)

    def process_table(self) -> list[dict[str, object]]:
        """Running processes by name (the ones imageprep asks about)."""
        table: list[dict[str, object]] = [
            {"Name": name, "Id": 3000 + 4 * i} for i, name in enumerate(self.extra_processes)
        ]
        table += [
            {"Name": child.name, "Id": child.pid}
            for child in self.children
            if not child.done.is_set()
        ]
        return table

    # -- power --------------------------------------------------------------------------

    def on_power_off(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (once) when the machine powers off."""
        self._off_listeners.append(listener)

    def on_boot(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` when the machine boots again (a reboot)."""
        self._boot_listeners.append(listener)

    def power_off(self, *, restart: bool = False) -> None:
        """The VM goes away now: every program dies, the WinRM listener stops answering.

        It boots again later if ``restart`` (``shutdown /r``) or ``reboots_on_power_off``.
        """
        with self._power_lock:
            if not self.powered_on:
                return
            self.powered_on = False
            listeners, self._off_listeners = self._off_listeners, []
        # A shutdown ends every process, and the system closes the files they held open.
        self.close_handles()
        for listener in listeners:
            listener()
        if restart or self.reboots_on_power_off:
            timer = threading.Timer(self.reboot_seconds * self.time_scale, self._boot)
            timer.daemon = True
            timer.start()

    def _boot(self) -> None:
        """Back on: a generalized image runs its specialize pass; the listener answers."""
        with self._power_lock:
            self.powered_on = True
            self.boots += 1
            listeners, self._boot_listeners = self._boot_listeners, []
        if self.image_state == IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE:
            self.image_state = "IMAGE_STATE_SPECIALIZE_RESEAL_TO_OOBE"
            self.run_setup_complete()
        for listener in listeners:
            listener()

    def run_setup_complete(self) -> None:
        """What Setup does with SetupComplete.cmd before the first logon: its ``del``
        lines delete files (%WINDIR% expanded); other lines are not modelled."""
        script = self.read_file(SETUP_COMPLETE)
        if script is None:
            return
        for line in script.decode("ascii", errors="replace").splitlines():
            words = line.split(None, 3)
            if words[:1] == ["del"]:
                target = line.rsplit('"', 2)[-2] if '"' in line else words[-1]
                self.remove_tree(target.replace("%WINDIR%", self.env["SystemRoot"]))

    def schedule_power_off(self, delay: float, *, restart: bool = False) -> None:
        """Power off (or restart) after ``delay`` virtual seconds (``shutdown /s|/r /t N``)."""
        timer = threading.Timer(
            max(delay * self.time_scale, 0.05), self._scheduled_shutdown, args=(restart,)
        )
        timer.daemon = True
        self._power_timer = timer
        timer.start()

    def shutdown_scheduled(self) -> bool:
        """A shutdown or restart is scheduled and has not begun (shutdown.exe: 1190)."""
        return self._power_timer is not None

    def cancel_scheduled_power_off(self) -> bool:
        """``shutdown /a``: True if a scheduled shutdown or restart was cancelled."""
        timer, self._power_timer = self._power_timer, None
        if timer is None:
            return False
        timer.cancel()
        return True

    def _scheduled_shutdown(self, restart: bool) -> None:
        self._power_timer = None
        self.power_off(restart=restart)

    # -- Sysprep --------------------------------------------------------------------------

    def bitlocker_encrypted(self) -> bool:
        """Encrypted at all, fully or in part: what Sysprep refuses."""
        return self.bitlocker_status != "FullyDecrypted"

    def bitlocker_protected(self) -> bool:
        """GetProtectionStatus: off while the volume is only partly encrypted (its doc)."""
        return self.bitlocker_status == "FullyEncrypted"

    def sysprep_blocker(self) -> str | None:
        """The first validation Sysprep's generalize pass fails on, as its log says it."""
        if self.pending_reboot():
            return (
                "Sysprep_Clean_Validate_Opk: There are one or more Windows updates that "
                "require a reboot. To run Sysprep, reboot the computer and restart the "
                "application."
            )
        if self.bitlocker_encrypted():
            return (
                "BitLocker-Sysprep: BitLocker is on for the OS volume. Turn BitLocker off "
                "to run Sysprep. (0x80310039)"
            )
        skip_rearm = self.get_value(SOFTWARE_PROTECTION_KEY, "SkipRearm")
        if self.rearm_count == 0 and skip_rearm != 1:
            return (
                "ActionPlatform::LaunchModule: Failure occurred while executing "
                "'SLReArmWindows' from C:\\Windows\\System32\\slc.dll; dwRet = 0xc004d307"
            )
        offenders = self.appx_not_provisioned()
        if offenders:
            package = offenders[0][1]
            return (
                f"Package {package} was installed for a user, but not provisioned "
                "for all users. This package will not function properly in the sysprep image."
            )
        return None
