"""Capture: turn the generalized, powered-off VM into an image, and record it.

``--capture SPEC`` names the image to make, without contacting anything:

    gallery:/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/galleries/G/
            images/DEF/versions/1.2.3[?regions=westeurope:2,northeurope&replicas=1
            &storage=Standard_ZRS&exclude-from-latest=true&vm=VM_ID]
    image:/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/images/NAME[?vm=VM_ID]

The VM is the platform's (``--platform``); ``vm=`` only states which VM the spec is meant
for, and a spec meant for another VM is refused before anything changes. The platform
does the cloud's work (agent/platforms); this module parses, decides whether a capture
may run at all, and records it in result.json and the journal.

A capture runs only after a run that succeeded and whose verification ran and passed:
never after a failed, interrupted or unverified generalization.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qsl

from agent.errors import Disconnected, ImagePrepError, UsageError
from agent.outcome import ExitCode, exit_code_for_error
from agent.platforms import confirm_powered_off, default_platform_spec, platform_from_spec
from agent.provenance import (
    TAG_PLAYBOOK,
    TAG_PROFILE,
    TAG_RESULT_SHA256,
    TAG_RUN_ID,
    freeze_evidence,
)

if TYPE_CHECKING:
    from agent.engine import EngineResult
    from agent.plan import Plan
    from agent.platforms.base import CaptureRecord, Platform
    from agent.recorder import Recorder

_SEG = r"[^/?]+"
_GROUP = (
    rf"/subscriptions/(?P<sub>{_SEG})/resourceGroups/(?P<rg>{_SEG})/providers/Microsoft\.Compute"
)
_GALLERY = re.compile(
    rf"{_GROUP}/galleries/(?P<gallery>{_SEG})/images/(?P<definition>{_SEG})"
    rf"/versions/(?P<version>{_SEG})",
    re.IGNORECASE,
)
_IMAGE = re.compile(rf"{_GROUP}/images/(?P<image>{_SEG})", re.IGNORECASE)
# ARM: a gallery image version is Major.Minor.Patch, each a 32-bit integer.
_VERSION = re.compile(r"(\d{1,10})\.(\d{1,10})\.(\d{1,10})")
_STORAGE = ("Standard_LRS", "Standard_ZRS", "Premium_LRS", "PremiumV2_LRS")
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
_EXAMPLES = (
    "gallery:/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/galleries/G/"
    "images/DEF/versions/1.2.3 or image:/subscriptions/SUB/resourceGroups/RG/providers/"
    "Microsoft.Compute/images/NAME"
)


@dataclass(frozen=True)
class TargetRegion:
    name: str
    replicas: int | None = None  # None: the version's default replica count


@dataclass(frozen=True, kw_only=True)
class CaptureTarget:
    """The image a capture makes, parsed and checked without contacting anything."""

    spec: str
    kind: str  # "gallery" or "image"
    subscription: str
    resource_group: str
    gallery: str | None = None
    definition: str | None = None
    version: str | None = None
    image: str | None = None
    regions: tuple[TargetRegion, ...] = ()
    replicas: int | None = None
    storage_account_type: str | None = None
    exclude_from_latest: bool = False
    vm: str | None = None  # the VM the spec is meant for, if it says
    replace_version: bool = False

    @property
    def resource_id(self) -> str:
        group = (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            "/providers/Microsoft.Compute"
        )
        if self.kind == "gallery":
            return (
                f"{group}/galleries/{self.gallery}/images/{self.definition}/versions/{self.version}"
            )
        return f"{group}/images/{self.image}"


def parse_capture(spec: str, *, replace_version: bool = False) -> CaptureTarget:
    """``gallery:ID?…`` or ``image:ID?…`` -> a target, or UsageError naming what is wrong."""
    scheme, sep, rest = spec.strip().partition(":")
    path, _, query = rest.partition("?")
    if not sep or scheme not in ("gallery", "image"):
        raise UsageError(f"--capture {spec!r}: expected {_EXAMPLES}")
    pattern = _GALLERY if scheme == "gallery" else _IMAGE
    match = pattern.fullmatch(path.rstrip("/"))
    if match is None:
        raise UsageError(f"--capture {spec!r}: expected {_EXAMPLES}")
    fields: dict[str, Any] = {
        "spec": spec,
        "kind": scheme,
        "subscription": match["sub"],
        "resource_group": match["rg"],
        "replace_version": replace_version,
    }
    if scheme == "gallery":
        if not _VERSION.fullmatch(match["version"]) or any(
            int(part) >= 2**31 for part in match["version"].split(".")
        ):
            raise UsageError(
                f"--capture {spec!r}: version {match['version']!r} is not MAJOR.MINOR.PATCH "
                "(three integers, as Azure Compute Gallery requires)"
            )
        fields |= {
            "gallery": match["gallery"],
            "definition": match["definition"],
            "version": match["version"],
        }
    else:
        fields["image"] = match["image"]
    allowed = (
        ("vm",)
        if scheme == "image"
        else ("vm", "regions", "replicas", "storage", "exclude-from-latest")
    )
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key not in allowed:
            raise UsageError(
                f"--capture {scheme}: unknown option {key}={value!r} (known: {', '.join(allowed)})"
            )
        fields |= _option(spec, key, value)
    if replace_version and scheme != "gallery":
        raise UsageError("--replace-version goes with --capture gallery:…/versions/X.Y.Z")
    return CaptureTarget(**fields)


def _option(spec: str, key: str, value: str) -> dict[str, Any]:
    if key == "vm":
        return {"vm": value}
    if key == "replicas":
        return {"replicas": _count(spec, key, value)}
    if key == "storage":
        if value not in _STORAGE:
            raise UsageError(
                f"--capture {spec!r}: storage={value!r} is not one of {', '.join(_STORAGE)}"
            )
        return {"storage_account_type": value}
    if key == "exclude-from-latest":
        if value.lower() not in _TRUE | _FALSE:
            raise UsageError(
                f"--capture {spec!r}: exclude-from-latest={value!r} is not true or false"
            )
        return {"exclude_from_latest": value.lower() in _TRUE}
    regions = []
    for item in value.split(","):
        name, sep, count = item.strip().partition(":")
        if not re.fullmatch(r"[A-Za-z0-9]+", name):
            raise UsageError(
                f"--capture {spec!r}: regions={value!r}: expected REGION[:REPLICAS],… "
                "(e.g. westeurope:2,northeurope)"
            )
        regions.append(TargetRegion(name, _count(spec, f"regions {name}", count) if sep else None))
    return {"regions": tuple(regions)}


def _count(spec: str, key: str, value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 100:
        raise UsageError(f"--capture {spec!r}: {key}={value!r} is not a replica count (1-100)")
    return int(value)


def check_same_vm(target: CaptureTarget, platform: Platform) -> None:
    """A spec meant for another VM than the platform's is refused before anything changes."""
    if target.vm is not None and target.vm.rstrip("/").lower() != platform.vm_id.lower():
        raise UsageError(
            f"--capture {target.spec}: it is meant for VM {target.vm}, but the platform's VM "
            f"is {platform.vm_id}; nothing was changed"
        )


# -- within a run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlatformStage:
    """What a run does on its platform after the playbook: confirm off, then capture."""

    platform: Platform
    spec: str
    capture: CaptureTarget | None = None


def prepare_stage(
    platform_spec: str | None,
    capture_spec: str | None,
    *,
    backup_spec: str | None,
    replace_version: bool = False,
) -> PlatformStage | None:
    """Parse --platform (or the one --backup implies) and --capture; contacts nothing."""
    spec = platform_spec or default_platform_spec(backup_spec)
    if replace_version and not capture_spec:
        raise UsageError("--replace-version goes with --capture")
    if spec is None:
        if capture_spec:
            raise UsageError(
                "--capture needs the VM's platform: --platform azure:VM_ID "
                "(or --backup azure-snapshot:VM_ID, which implies it)"
            )
        return None
    platform = platform_from_spec(spec)
    target = None
    if capture_spec:
        target = parse_capture(capture_spec, replace_version=replace_version)
        check_same_vm(target, platform)
    return PlatformStage(platform, spec, target)


def check_before_run(stage: PlatformStage, plan: Plan, run_id: str) -> None:
    """Before the VM changes: verification is planned, and the image target fits the VM."""
    if stage.capture is None:
        return
    if not any(s.phase == "verify" and s.will_run for s in plan.steps):
        raise UsageError(
            "--capture needs a verified generalization, but no verify step will run "
            "(deselected with --only/--skip/--tags?); nothing was changed"
        )
    stage.platform.check_capture(stage.capture, run_id=run_id)


def finish_on_platform(
    stage: PlatformStage,
    result: EngineResult,
    recorder: Recorder,
    *,
    run_id: str,
    plan: Plan,
    offline: bool = False,
) -> EngineResult:
    """After a successful run: confirm the power-off, then capture; the new verdict.

    ``offline``: a resumed run whose steps had all finished; the engine saw no shutdown
    in this session, so the power-off is confirmed whenever the plan shuts the VM down.
    """
    if result.exit_code is not ExitCode.OK:
        return result  # never capture after a failed or unverified generalization
    data = recorder.data
    data["platform"] = {"spec": stage.spec, "vm_id": stage.platform.vm_id}
    try:
        shut_down = any(s.spec.expect_disconnect and s.will_run for s in plan.steps)
        if result.powered_off or (offline and shut_down):
            check = confirm_powered_off(stage.platform)
            data["power_state"] = check.state.words
            data["platform"]["power_check"] = check.to_dict()
            _journal(recorder, "power_state_confirmed", **check.to_dict())
            # Each platform step is a cloud operation of seconds or more: its record is
            # worth an fsync, unlike a step's progress.
            recorder.save(durable=True)
        if stage.capture is not None:
            if not _verified(result):
                raise UsageError("capture refused: the generalization was not verified")
            # The generalization's record, as it stands now, is what the image points at.
            recorder.save(durable=True)
            evidence_sha256 = freeze_evidence(recorder.folder.result_path)
            record = capture_and_record(
                stage.platform,
                stage.capture,
                recorder,
                run_id=run_id,
                tags={
                    TAG_RUN_ID: run_id,
                    TAG_PROFILE: plan.profile_id,
                    TAG_PLAYBOOK: plan.playbook_name,
                    TAG_RESULT_SHA256: evidence_sha256,
                },
            )
            message = f"{result.message}; captured {record.image_id}"
            return dataclasses.replace(result, message=message)
    except ImagePrepError as exc:
        _journal(recorder, "platform_failed", error=str(exc))
        return dataclasses.replace(result, exit_code=exit_code_for_error(exc), message=str(exc))
    return result


def _verified(result: EngineResult) -> bool:
    verify = [s for s in result.steps if s.phase == "verify"]
    return (
        bool(verify)
        and all(s.status.value in ("ok", "skipped") for s in verify)
        and any(s.status.value == "ok" for s in verify)
    )


def capture_and_record(
    platform: Platform,
    target: CaptureTarget,
    recorder: Recorder,
    *,
    run_id: str | None,
    tags: Mapping[str, str],
) -> CaptureRecord:
    """Capture, with each step journaled and result.json's ``capture`` kept current."""
    entry: dict[str, Any] = {"spec": target.spec, "image_id": target.resource_id, "steps": []}
    recorder.data["capture"] = entry
    _journal(recorder, "capture_started", spec=target.spec, image_id=target.resource_id)
    recorder.save(durable=True)

    def on_step(step: str, fields: Mapping[str, str]) -> None:
        entry["steps"].append({"step": step, **fields})
        _journal(recorder, "capture_step", step=step, **fields)
        recorder.save(durable=True)

    record = platform.capture(target, run_id=run_id, tags=tags, on_step=on_step)
    entry |= {k: v for k, v in record.to_dict().items() if k != "steps"}
    _journal(recorder, "capture_finished", **record.to_dict())
    recorder.save(durable=True)
    return record


def _journal(recorder: Recorder, event: str, **fields: Any) -> None:
    if recorder.journal is not None:
        recorder.journal.append(event, **fields)


# -- `imageprep capture SPEC --platform …`: a VM generalized earlier ----------------------------


@dataclass(frozen=True)
class CaptureOutcome:
    run_id: str
    exit_code: ExitCode
    message: str
    run_dir: Path
    result: Mapping[str, Any]


def capture_command(
    spec: str, platform_spec: str, *, replace_version: bool, run_dir: Path | None
) -> CaptureOutcome:
    """Capture a VM generalized and shut down earlier; its own report folder and journal.

    Bad input raises (UsageError) before the folder is made; everything after is recorded.
    """
    from agent.engine import RunObserver
    from agent.journal import JOURNAL_FILE, Journal
    from agent.recorder import ProgressSink, Recorder
    from agent.report import RunFolder, default_run_dir, new_run_id, utc_now

    platform = platform_from_spec(platform_spec)
    target = parse_capture(spec, replace_version=replace_version)
    check_same_vm(target, platform)
    run_id = new_run_id()
    folder = RunFolder.create(run_dir or default_run_dir(run_id))
    data: dict[str, Any] = {
        "run_id": run_id,
        "command": "capture",
        "started_at": utc_now(),
        "finished_at": None,
        "status": "running",
        "platform": {"spec": platform_spec, "vm_id": platform.vm_id},
        "capture": None,
        "journal_file": JOURNAL_FILE,
    }
    console: RunObserver = ProgressSink()
    recorder = Recorder(folder, data, console)
    recorder.journal = Journal.create(folder.path)
    code, message = ExitCode.OK, ""
    try:
        recorder.journal.append(
            "capture_requested", spec=spec, platform=platform_spec, replace_version=replace_version
        )
        platform.check_capture(target, run_id=None)
        record = capture_and_record(
            platform, target, recorder, run_id=run_id, tags={TAG_RUN_ID: run_id}
        )
        message = f"captured {record.image_id} from {platform.vm_id}"
    except KeyboardInterrupt:
        code, message = ExitCode.INTERRUPTED, "capture interrupted; see result.json"
    except ImagePrepError as exc:
        code, message = exit_code_for_error(exc), str(exc)
    finally:
        data |= {
            "finished_at": utc_now(),
            "status": "succeeded" if code is ExitCode.OK else "failed",
            "exit_code": int(code),
            "exit_reason": code.name.lower(),
            "message": message,
        }
        with contextlib.suppress(ImagePrepError):
            recorder.journal.append(
                "capture_command_finished", exit_code=int(code), message=message
            )
        recorder.journal.close()
        recorder.save(durable=True)
    return CaptureOutcome(run_id, code, message, folder.path, data)


# -- resuming a run whose steps all finished -----------------------------------------------------


def nothing_left(plan: Plan, completed: Mapping[str, object]) -> bool:
    """Every step that will run finished in an earlier session: only the platform is left."""
    return all(s.key in completed for s in plan.steps if s.will_run)


class PoweredOffTarget:
    """The target of a resumed run whose every step finished: it is off; nothing runs on it.

    A resume that only has the platform's part left (confirm, capture) must not connect:
    the VM was shut down, and a generalized VM must not be started to be looked at.
    """

    @property
    def description(self) -> str:
        return "powered off (every step finished in an earlier session)"

    def _refuse(self) -> NoReturn:
        raise Disconnected("the target is powered off: every step finished in an earlier session")

    def run(self, command: str, **kwargs: Any) -> Any:
        self._refuse()

    def put(self, local: Path, remote: str, *, mode: int = 0o600) -> None:
        self._refuse()

    def get(self, remote: str, local: Path) -> None:
        self._refuse()

    def is_connected(self) -> bool:
        return False

    def wait_disconnected(self, timeout: float) -> bool:
        return True

    def close(self) -> None:
        return None

    def __enter__(self) -> PoweredOffTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
