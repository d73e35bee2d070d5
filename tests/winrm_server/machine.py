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

STATE_KEY = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State"
SYSPREP_STATUS_KEY = r"HKLM\SYSTEM\Setup\Status\SysprepStatus"
SETUP_KEY = r"HKLM\SYSTEM\Setup"
# The three keys Packer's windows-restart checks, plus Windows Update's (windows.md §2).
PENDING_REBOOT_KEYS = (
    r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending",
    r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootInProgress",
    r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\PackagesPending",
    r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired",
)
SYSPREP_DIR = r"C:\Windows\System32\Sysprep"
PANTHER_DIR = SYSPREP_DIR + r"\Panther"
SETUPACT_LOG = PANTHER_DIR + r"\setupact.log"
SETUPERR_LOG = PANTHER_DIR + r"\setuperr.log"
SUCCEEDED_TAG = SYSPREP_DIR + r"\Sysprep_succeeded.tag"

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
    time_scale: float = 1.0
    sysprep_seconds: float = 4.0  # virtual seconds the generalize pass takes
    registry: dict[str, dict[str, object]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    appx_installed: dict[str, set[str]] = field(default_factory=dict)  # user -> packages
    appx_provisioned: set[str] = field(default_factory=set)
    bitlocker_status: str = "FullyDecrypted"  # Get-BitLockerVolume VolumeStatus
    env: dict[str, str] = field(default_factory=dict)
    powered_on: bool = True
    sysprep_runs: list[SysprepRun] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)  # every PowerShell script run
    _key_names: dict[str, str] = field(default_factory=dict)
    _file_names: dict[str, str] = field(default_factory=dict)
    _off_listeners: list[Callable[[], None]] = field(default_factory=list)
    _power_lock: threading.Lock = field(default_factory=threading.Lock)
    _power_timer: threading.Timer | None = None

    def __post_init__(self) -> None:
        self.env = {
            "SystemRoot": r"C:\Windows",
            "windir": r"C:\Windows",
            "SystemDrive": "C:",
            "COMPUTERNAME": self.hostname,
            "TEMP": r"C:\Users\Administrator\AppData\Local\Temp",
            **self.env,
        }
        defaults: dict[str, dict[str, object]] = {
            STATE_KEY: {"ImageState": IMAGE_STATE_COMPLETE},
            SYSPREP_STATUS_KEY: {"GeneralizationState": 7, "CleanupState": 2},
            SETUP_KEY: {"SetupType": 0, "CmdLine": "", "SystemSetupInProgress": 0},
        }
        for key, values in defaults.items():
            for name, value in values.items():
                if self.get_value(key, name) is None:
                    self.set_value(key, name, value)
        for exe in EXECUTABLES:
            self.files.setdefault(file_key(exe), b"MZ")
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
        self.files[file_key(path)] = data

    def append_file(self, path: str, data: bytes) -> None:
        self.files[file_key(path)] = self.files.get(file_key(path), b"") + data

    def read_file(self, path: str) -> bytes | None:
        return self.files.get(file_key(path))

    def file_exists(self, path: str) -> bool:
        return file_key(path) in self.files

    def log_line(self, path: str, line: str) -> None:
        """Append one Panther-style log line (CRLF, as Windows writes them)."""
        self.append_file(path, f"2026-01-01 12:00:00, {line}\r\n".encode())

    # -- AppX ---------------------------------------------------------------------------

    def appx_not_provisioned(self) -> list[tuple[str, str]]:
        """(user, package) installed for a user but not provisioned for all users."""
        return sorted(
            (user, package)
            for user, packages in self.appx_installed.items()
            for package in packages
            if package not in self.appx_provisioned
        )

    # -- power --------------------------------------------------------------------------

    def on_power_off(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (once) when the machine powers off."""
        self._off_listeners.append(listener)

    def power_off(self) -> None:
        """The VM goes away now: every program dies, the WinRM listener stops answering."""
        with self._power_lock:
            if not self.powered_on:
                return
            self.powered_on = False
            listeners, self._off_listeners = self._off_listeners, []
        for listener in listeners:
            listener()

    def schedule_power_off(self, delay: float) -> None:
        """Power off after ``delay`` virtual seconds (``shutdown /s /t N``)."""
        timer = threading.Timer(max(delay * self.time_scale, 0.05), self.power_off)
        timer.daemon = True
        self._power_timer = timer
        timer.start()

    def cancel_scheduled_power_off(self) -> None:
        if self._power_timer is not None:
            self._power_timer.cancel()
            self._power_timer = None

    # -- Sysprep --------------------------------------------------------------------------

    def sysprep_blocker(self) -> str | None:
        """The first validation Sysprep's generalize pass fails on, as its log says it."""
        if self.pending_reboot():
            return (
                "Sysprep_Clean_Validate_Opk: There are one or more Windows updates that "
                "require a reboot. To run Sysprep, reboot the computer and restart the "
                "application."
            )
        if self.bitlocker_status != "FullyDecrypted":
            return (
                "BitLocker-Sysprep: BitLocker is on for the OS volume. Turn BitLocker off "
                "to run Sysprep. (0x80310039)"
            )
        offenders = self.appx_not_provisioned()
        if offenders:
            package = offenders[0][1]
            return (
                f"SYSPRP Package {package} was installed for a user, but not provisioned "
                "for all users. This package will not function properly in the sysprep image."
            )
        return None
