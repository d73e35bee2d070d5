"""`imageprep boot-test DISK`: boot a generalized disk once and prove it comes up as a new machine.

Steps, each recorded in the run folder's result.json (console.log and qemu.log beside it):

1. Read the disk from outside (qemu-img, debugfs; never mounted, never written): it must be
   generalized - machine-id empty, no SSH host keys, no cloud-init instance, the
   deprovisioned user gone. Otherwise: verdict "not generalized" (exit 3), no boot.
2. Boot it once under QEMU on a throwaway qcow2 overlay (the disk itself is only a backing
   file) with a fresh NoCloud seed: new instance id, host name, user and ed25519 key.
   A bare ext4 disk boots its own /boot kernel and initrd directly; a partitioned disk boots
   through its bootloader (BIOS firmware).
3. Wait for cloud-init to print the new host keys on the serial console, then log in as the
   new user over SSH, checking the host key strictly against those console keys.
4. Check one fact each: the new user logs in, machine-id present and new, host keys newly
   generated and the ones on the console, cloud-init ran as the new instance, the
   deprovisioned user absent.

A pass is recorded next to the disk in DISK.boot-test.json (sha256, size and mtime of the
disk file, size and mtime of its backing files); `imageprep vhd` reads it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from agent import __version__, errors
from agent.disks.ext4 import Ext4Reader, find_root_filesystem
from agent.disks.image import DiskInfo, disk_info, file_identity, make_overlay, to_raw
from agent.disks.qemu import Drive, QemuVm, VmConfig, choose_accel, free_port
from agent.disks.seed import Seed, make_seed
from agent.disks.tools import require, run_tool
from agent.outcome import ExitCode, exit_code_for_error
from agent.report import RunFolder, default_run_dir, new_run_id, utc_now

log = structlog.get_logger("agent.boottest")

RECORD_SUFFIX = ".boot-test.json"
CONSOLE_LOG = "console.log"
QEMU_LOG = "qemu.log"
KEYS_BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
KEYS_END = "-----END SSH HOST KEY KEYS-----"
DIRECT_KERNEL_APPEND = "root=/dev/vda rw console=ttyS0"
_KEY_RE = re.compile(r"\b((?:ssh|ecdsa|sk)-[A-Za-z0-9@.-]+)\s+([A-Za-z0-9+/]+={0,3})")
_MACHINE_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_POLL_SECONDS = 1.0
_COMMAND_TIMEOUT = 300.0


@dataclass(frozen=True)
class BootTestRequest:
    disk: Path
    run_dir: Path | None = None
    timeout: float = 600.0
    deprovisioned_user: str | None = None
    previous_machine_id: str | None = None
    previous_host_keys: tuple[str, ...] = ()
    accel: str = "auto"
    memory_mib: int = 1024
    wait_released: float = 120.0
    log_format: str = "json"
    record_pass: bool = True


@dataclass(frozen=True)
class BootTestOutcome:
    run_id: str
    exit_code: ExitCode
    message: str
    run_dir: Path
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | failed | skipped
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class _Launch:
    """A started VM and what its first boot showed."""

    vm: QemuVm
    keys: list[str]  # host keys printed on the console
    port: int  # forwarded to the guest's SSH
    started: float  # time.monotonic() at launch


class _Verdict(Exception):
    """Ends the boot test with one exit code and one line."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def pass_record_path(disk: Path) -> Path:
    """Where a pass of `disk` is recorded: DISK.boot-test.json beside it."""
    return disk.with_name(disk.name + RECORD_SUFFIX)


def fingerprint(key: str) -> str:
    """OpenSSH's SHA256 fingerprint of `type base64`."""
    blob = base64.b64decode(key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def console_host_keys(console: str) -> list[str]:
    """The host keys (`type base64`) in the last complete block cloud-init printed."""
    text = console.replace("\r", "")
    end = text.rfind(KEYS_END)
    if end < 0:
        return []
    begin = text.rfind(KEYS_BEGIN, 0, end)
    if begin < 0:
        return []
    keys = []
    for line in text[begin + len(KEYS_BEGIN) : end].splitlines():
        match = _KEY_RE.search(line)
        if match:
            keys.append(f"{match.group(1)} {match.group(2)}")
    return keys


def run_boot_test(request: BootTestRequest) -> BootTestOutcome:
    """Run the whole boot test; never raises for anything the tool knows about."""
    run_id = new_run_id()
    folder = RunFolder.create(request.run_dir or default_run_dir(run_id))
    data: dict[str, Any] = {
        "run_id": run_id,
        "command": "boot-test",
        "tool_version": __version__,
        "started_at": utc_now(),
        "finished_at": None,
        "status": "running",
        "disk": {"path": str(request.disk)},
        "before": None,
        "boot": None,
        "checks": [],
        "timings": {},
        "console_log": CONSOLE_LOG,
        "qemu_log": QEMU_LOG,
        "log_file": folder.log_path.name,
        "pass_record": None,
    }
    folder.write_result(data)
    _log_to_run_folder(request, folder)
    started = time.monotonic()
    try:
        code, message = _BootTest(request, folder, data).run()
    except _Verdict as verdict:
        code, message = verdict.code, str(verdict)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through the CLI's handler
        code, message = ExitCode.INTERRUPTED, "interrupted"
    except errors.ImagePrepError as exc:
        code, message = exit_code_for_error(exc), str(exc)
    data["timings"]["total_s"] = round(time.monotonic() - started, 2)
    data["finished_at"] = utc_now()
    data["status"] = (
        "passed"
        if code is ExitCode.OK
        else ("interrupted" if code is ExitCode.INTERRUPTED else "failed")
    )
    data["exit_code"] = int(code)
    data["exit_reason"] = code.name.lower()
    data["message"] = message
    folder.write_result(data)
    getattr(log, "info" if code is ExitCode.OK else "error")(
        "boot_test.end", status=data["status"], exit_code=int(code), message=message
    )
    return BootTestOutcome(run_id, code, message, folder.path, data)


def _log_to_run_folder(request: BootTestRequest, folder: RunFolder) -> None:
    from agent.logging import configure_run_logging

    configure_run_logging(request.log_format, folder.log_path)


class _BootTest:
    def __init__(self, request: BootTestRequest, folder: RunFolder, data: dict[str, Any]) -> None:
        self.request = request
        self.folder = folder
        self.data = data
        self.checks: list[Check] = []

    def save(self) -> None:
        self.data["checks"] = [c.to_dict() for c in self.checks]
        self.folder.write_result(self.data)

    def run(self) -> tuple[ExitCode, str]:
        disk = self.request.disk
        with tempfile.TemporaryDirectory(prefix="imageprep-boot-test-") as scratch:
            work = Path(scratch)
            info = disk_info(disk, wait_released=self.request.wait_released)
            self.data["disk"] = info.to_dict()
            log.info("boot_test.disk", **info.to_dict())
            fs = find_root_filesystem(to_raw(info, work / "disk.raw"))
            before = self._inspect(fs)
            self._require_generalized(before)
            qemu = require("qemu-system-x86_64", purpose="boot-test")["qemu-system-x86_64"]
            seed = make_seed(work)
            boot = self._boot_settings(fs, work, qemu)
            boot["seed"] = {
                "instance_id": seed.instance_id,
                "hostname": seed.hostname,
                "user": seed.user,
                "key_fingerprint": fingerprint(seed.public_key),
            }
            self.data["boot"] = boot
            self.save()
            with self._booted(info, seed, boot, work) as (vm, keys, executor):
                self._check(executor, seed, before, keys)
                vm.stop()
            failed = [c for c in self.checks if c.status == "failed"]
            if failed:
                return ExitCode.VERIFICATION_FAILED, (
                    f"{disk} booted but is not a new machine: "
                    + "; ".join(f"{c.name}: {c.detail}" for c in failed)
                )
            self._record_pass(info)
            return ExitCode.OK, (
                f"{disk} boots as a new machine: new machine-id, new host keys, cloud-init "
                f"instance {seed.instance_id}, {seed.user} logs in "
                f"({self.data['timings']['boot_to_ssh_s']}s to SSH, {boot['accel']})"
            )

    # -- 1. offline --------------------------------------------------------------------

    def _inspect(self, fs: Ext4Reader) -> dict[str, Any]:
        machine_id = fs.read_text("/etc/machine-id")
        ssh = fs.listdir("/etc/ssh") or []
        passwd = fs.read_text("/etc/passwd") or ""
        user = self.request.deprovisioned_user
        os_release = fs.read_text("/etc/os-release") or ""
        pretty = next(
            (
                line.split("=", 1)[1].strip('"')
                for line in os_release.splitlines()
                if line.startswith("PRETTY_NAME=")
            ),
            "unknown",
        )
        before = {
            "os": pretty,
            "root_filesystem": "whole disk" if fs.whole_disk else f"partition at {fs.offset}",
            "machine_id": None if machine_id is None else machine_id.strip(),
            "ssh_host_keys": sorted(e.name for e in ssh if e.name.startswith("ssh_host_")),
            "cloud_init_instance": fs.exists("/var/lib/cloud/instance"),
            "deprovisioned_user": user,
            "deprovisioned_user_present": bool(user)
            and any(line.split(":", 1)[0] == user for line in passwd.splitlines()),
        }
        self.data["before"] = before
        self.save()
        return before

    def _require_generalized(self, before: dict[str, Any]) -> None:
        problems = []
        if before["machine_id"] not in (None, "", "uninitialized"):
            problems.append(f"/etc/machine-id is set ({before['machine_id']})")
        if before["ssh_host_keys"]:
            problems.append(f"{len(before['ssh_host_keys'])} SSH host key files in /etc/ssh")
        if before["cloud_init_instance"]:
            problems.append("cloud-init instance state in /var/lib/cloud/instance")
        if before["deprovisioned_user_present"]:
            problems.append(f"user {before['deprovisioned_user']} still in /etc/passwd")
        if problems:
            raise _Verdict(
                ExitCode.PREFLIGHT_FAILED,
                f"{self.request.disk} is not generalized: {', '.join(problems)}; not booted",
            )

    # -- 2. boot -----------------------------------------------------------------------

    def _boot_settings(self, fs: Ext4Reader, work: Path, qemu: str) -> dict[str, Any]:
        boot: dict[str, Any] = {
            "accel": choose_accel(self.request.accel),
            "memory_mib": self.request.memory_mib,
            "qemu": run_tool([qemu, "--version"], timeout=30).stdout.splitlines()[0],
            "method": "firmware",
        }
        if fs.whole_disk:
            kernel, initrd = _kernel_pair(fs)
            fs.dump(f"/boot/{kernel}", work / "vmlinuz")
            fs.dump(f"/boot/{initrd}", work / "initrd.img")
            boot.update(
                method="direct kernel", kernel=kernel, initrd=initrd, append=DIRECT_KERNEL_APPEND
            )
        return boot

    @contextlib.contextmanager
    def _booted(
        self, info: DiskInfo, seed: Seed, boot: dict[str, Any], work: Path
    ) -> Iterator[tuple[QemuVm, list[str], Any]]:
        deadline = time.monotonic() + self.request.timeout
        launch = self._launch(info, seed, boot, work, deadline)
        try:
            executor = self._login(launch, seed, work, deadline)
            self.data["timings"]["boot_to_ssh_s"] = round(time.monotonic() - launch.started, 2)
            self.save()
            log.info("boot_test.ssh_ready", seconds=self.data["timings"]["boot_to_ssh_s"])
            try:
                yield launch.vm, launch.keys, executor
            finally:
                executor.close()
        finally:
            launch.vm.stop()

    def _launch(
        self, info: DiskInfo, seed: Seed, boot: dict[str, Any], work: Path, deadline: float
    ) -> _Launch:
        """Start the VM on a fresh overlay until it prints its host keys (KVM, else TCG)."""
        accel = boot["accel"]
        while True:
            overlay = work / "overlay.qcow2"
            overlay.unlink(missing_ok=True)
            make_overlay(info, overlay)
            port = free_port()
            vm = QemuVm(
                self._config(boot, accel, overlay, seed, work, port), self.folder.path / QEMU_LOG
            )
            launched = time.monotonic()
            vm.start()
            try:
                keys = self._wait_for_console_keys(vm, deadline, launched)
            except _Verdict:
                vm.stop()
                if (
                    accel == "kvm"
                    and self.request.accel == "auto"
                    and "KVM internal error" in vm.log_text()
                ):
                    # The probe boot: this /dev/kvm cannot run the guest; TCG can.
                    log.warning("boot_test.kvm_failed", fallback="tcg")
                    accel = boot["accel"] = "tcg"
                    continue
                raise
            return _Launch(vm, keys, port, launched)

    def _login(self, launch: _Launch, seed: Seed, work: Path, deadline: float) -> Any:
        """An SSH session as the seed's user, the host key checked against the console's."""
        from agent.executors.ssh import SshExecutor, SshOptions
        from agent.targets import Target

        known_hosts = work / "known_hosts"
        known_hosts.write_text("".join(f"[127.0.0.1]:{launch.port} {key}\n" for key in launch.keys))
        target = Target(scheme="ssh", user=seed.user, host="127.0.0.1", port=launch.port)
        options = SshOptions(
            identity=seed.private_key,
            known_hosts=known_hosts,
            host_key_policy="strict",
            use_agent=False,
            connect_timeout=10,
        )
        last_error = ""
        while True:
            executor = SshExecutor(target, options)
            try:
                executor.connect()
                return executor
            except errors.HostKeyError as exc:
                raise _Verdict(
                    ExitCode.VERIFICATION_FAILED,
                    f"the VM's SSH host key is not one it printed on its console: {exc}",
                ) from exc
            except errors.TransportError as exc:
                last_error = str(exc)
                executor.close()
            self._require_running(
                launch.vm,
                deadline,
                launch.started,
                f"SSH login as {seed.user} failed: {last_error}",
            )
            time.sleep(_POLL_SECONDS)

    def _config(
        self, boot: dict[str, Any], accel: str, overlay: Path, seed: Seed, work: Path, port: int
    ) -> VmConfig:
        direct = boot["method"] == "direct kernel"
        return VmConfig(
            qemu=require("qemu-system-x86_64", purpose="boot-test")["qemu-system-x86_64"],
            drives=[Drive(overlay, "qcow2"), Drive(seed.image, "raw", read_only=True)],
            console_log=self.folder.path / CONSOLE_LOG,
            accel=accel,
            kernel=work / "vmlinuz" if direct else None,
            initrd=work / "initrd.img" if direct else None,
            append=DIRECT_KERNEL_APPEND if direct else None,
            memory_mib=self.request.memory_mib,
            ssh_port=port,
        )

    def _wait_for_console_keys(self, vm: QemuVm, deadline: float, launched: float) -> list[str]:
        while True:
            keys = console_host_keys(vm.console_text())
            if keys:
                self.data["console_host_keys"] = [fingerprint(k) for k in keys]
                return keys
            self._require_running(
                vm, deadline, launched, "cloud-init printed no SSH host keys on the console"
            )
            time.sleep(_POLL_SECONDS)

    def _require_running(self, vm: QemuVm, deadline: float, launched: float, waiting: str) -> None:
        elapsed = time.monotonic() - launched
        last = _last_line(vm.console_tail(5)) or "(console empty)"
        if not vm.is_running():
            raise _Verdict(
                ExitCode.BOOT_FAILED,
                f"{self.request.disk} did not boot: QEMU exited "
                f"(code {vm.returncode}) after {elapsed:.0f}s; last console line: "
                f"{last!r}; see {self.folder.path / CONSOLE_LOG}",
            )
        if time.monotonic() > deadline:
            raise _Verdict(
                ExitCode.BOOT_FAILED,
                f"{self.request.disk} did not come up within "
                f"{self.request.timeout:.0f}s ({waiting}); last console line: "
                f"{last!r}; see {self.folder.path / CONSOLE_LOG}",
            )

    # -- 4. checks ---------------------------------------------------------------------

    def _check(self, executor: Any, seed: Seed, before: dict[str, Any], keys: list[str]) -> None:
        self.data["after"] = {}
        self._check_login(executor, seed)
        self._check_machine_id(executor, before)
        self._check_host_keys(executor, before, keys)
        self._check_cloud_init(executor, seed)
        self._check_user_gone(executor)

    def _remote(self, executor: Any, command: str) -> tuple[int | None, str]:
        result = executor.run(command, timeout=_COMMAND_TIMEOUT)
        return result.exit_code, (result.stdout + result.stderr).strip()

    def _add(self, name: str, ok: bool | None, detail: str) -> None:
        status = "skipped" if ok is None else ("ok" if ok else "failed")
        self.checks.append(Check(name, status, detail))
        log.info("boot_test.check", check=name, status=status, detail=detail)
        self.save()

    def _check_login(self, executor: Any, seed: Seed) -> None:
        _, whoami = self._remote(executor, "id -un")
        self._add(
            "new_user_logs_in",
            whoami == seed.user,
            f"logged in as {whoami!r} with the new key; host key checked against the console",
        )

    def _check_machine_id(self, executor: Any, before: dict[str, Any]) -> None:
        _, machine_id = self._remote(executor, "cat /etc/machine-id")
        self.data["after"]["machine_id"] = machine_id
        previous = self.request.previous_machine_id
        ok = bool(_MACHINE_ID_RE.match(machine_id)) and machine_id != previous
        self._add(
            "machine_id_new",
            ok,
            f"{machine_id!r} (on the disk before boot: {before['machine_id']!r}"
            + (f", recorded before generalization: {previous!r})" if previous else ")"),
        )

    def _check_host_keys(self, executor: Any, before: dict[str, Any], keys: list[str]) -> None:
        _, key_files = self._remote(executor, "cat /etc/ssh/ssh_host_*_key.pub")
        guest_keys = {" ".join(line.split()[:2]) for line in key_files.splitlines() if line.strip()}
        self.data["after"]["ssh_host_keys"] = sorted(fingerprint(k) for k in guest_keys)
        old = set(self.request.previous_host_keys)
        ok = (
            not before["ssh_host_keys"]
            and bool(keys)
            and set(keys) <= guest_keys
            and not (guest_keys & old)
        )
        self._add(
            "ssh_host_keys_new",
            ok,
            f"{len(guest_keys)} host keys generated at first boot (none on the disk before), "
            f"{len(keys)} printed on the console" + (", none of the previous ones" if old else ""),
        )

    def _check_cloud_init(self, executor: Any, seed: Seed) -> None:
        _, status = self._remote(executor, "cloud-init status --wait --long 2>&1 | head -n 20")
        _, instance = self._remote(executor, "cat /var/lib/cloud/data/instance-id")
        _, hostname = self._remote(executor, "hostname")
        done = "status: done" in status
        self.data["after"].update(
            instance_id=instance, hostname=hostname, cloud_init=_first(status, "status:")
        )
        self._add(
            "cloud_init_new_instance",
            done and instance == seed.instance_id,
            f"instance-id {instance!r} (seed: {seed.instance_id}), "
            f"{_first(status, 'status:')}, hostname {hostname!r}",
        )

    def _check_user_gone(self, executor: Any) -> None:
        user = self.request.deprovisioned_user
        if not user:
            self._add("deprovisioned_user_absent", None, "no --deprovisioned-user given")
            return
        code, _ = self._remote(executor, f"getent passwd {_quote(user)}")
        home_code, _ = self._remote(executor, f"test -e /home/{_quote(user)}")
        gone = code == 2 and home_code != 0
        self._add(
            "deprovisioned_user_absent",
            gone,
            f"{user}: " + ("no passwd entry, no home" if gone else "still present"),
        )

    # -- pass record -------------------------------------------------------------------

    def _record_pass(self, info: DiskInfo) -> None:
        if not self.request.record_pass:
            return
        record = {
            "passed_at": utc_now(),
            "tool_version": __version__,
            "run_dir": str(self.folder.path.resolve()),
            "disk": file_identity(info),
        }
        path = pass_record_path(info.path)
        try:
            path.write_text(json.dumps(record, indent=2) + "\n")
        except OSError as exc:
            log.warning("boot_test.pass_not_recorded", path=str(path), error=str(exc))
            return
        self.data["pass_record"] = str(path)
        self.save()


def _kernel_pair(fs: Ext4Reader) -> tuple[str, str]:
    names = {e.name for e in fs.listdir("/boot") or []}
    versions = sorted(
        (
            n.removeprefix("vmlinuz-")
            for n in names
            if n.startswith("vmlinuz-") and f"initrd.img-{n.removeprefix('vmlinuz-')}" in names
        ),
        key=_version_key,
    )
    if not versions:
        raise errors.DiskError(
            "the disk's root filesystem has no /boot/vmlinuz-* with a matching initrd.img-*; "
            "a whole-disk ext4 image is booted with its own kernel"
        )
    return f"vmlinuz-{versions[-1]}", f"initrd.img-{versions[-1]}"


def _version_key(version: str) -> list[tuple[int, str]]:
    return [
        (int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"[.+~-]", version)
    ]


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def _first(text: str, prefix: str) -> str:
    return next(
        (line.strip() for line in text.splitlines() if line.strip().startswith(prefix)),
        text.splitlines()[0] if text else "no output",
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][-160:] if lines else ""


def preflight_host(disk: Path) -> None:
    """Before `run --boot-test` changes anything: the disk exists and the host tools are here."""
    if not disk.is_file():
        raise errors.UsageError(f"--boot-test-disk {disk}: no such file")
    require(
        "qemu-system-x86_64", "qemu-img", "debugfs", "mkfs.vfat", "mcopy", purpose="--boot-test"
    )


def boot_test_after_run(outcome: Any, disk: Path, *, timeout: float, log_format: str) -> ExitCode:
    """`run --boot-test`: boot-test the generalized disk into RUN_DIR/boot-test.

    The user waagent deprovisioned comes from the run's facts (ovf-env.xml's UserName). The
    run's result.json gets a `boot_test` entry; the exit code is the boot test's.
    """
    facts = outcome.result.get("facts") or {}
    result = run_boot_test(
        BootTestRequest(
            disk=disk,
            run_dir=outcome.run_dir / "boot-test",
            timeout=timeout,
            deprovisioned_user=facts.get("ovf_user"),
            log_format=log_format,
        )
    )
    run_result = dict(outcome.result)
    run_result["boot_test"] = _summary(result)
    with contextlib.suppress(errors.ImagePrepError):
        RunFolder(outcome.run_dir).write_result(run_result)
    print_boot_test_summary(result, log_format)
    return result.exit_code


def _summary(outcome: BootTestOutcome) -> dict[str, Any]:
    return {
        "command": "boot-test",
        "run_id": outcome.run_id,
        "status": outcome.result.get("status"),
        "exit_code": int(outcome.exit_code),
        "message": outcome.message,
        "result": str(outcome.run_dir / "result.json"),
    }


def print_boot_test_summary(outcome: BootTestOutcome, log_format: str) -> None:
    """One JSON line (json), or a verdict line with the checks under it (text)."""
    from agent import console

    if log_format == "json":
        console.write(json.dumps(_summary(outcome), sort_keys=True) + "\n")
        return
    verdict = "passed" if outcome.exit_code is ExitCode.OK else "FAILED"
    lines = [
        f"imageprep boot-test {outcome.run_id} {verdict} (exit {int(outcome.exit_code)}): "
        f"{outcome.message}"
    ]
    for check in outcome.result.get("checks", []):
        lines.append(f"  {check['status']:<7} {check['name']}: {check['detail']}")
    lines.append(f"  report: {outcome.run_dir / 'result.json'}")
    console.write("\n".join(lines) + "\n")
