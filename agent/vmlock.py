r"""The lock on the VM itself: one run at a time per machine, whichever controller runs it.

``agent.lock`` sees only runs on this controller. Two pipelines on two controllers must
not prepare one VM at once, so a run also holds a lock *on the VM*, taken by the
executor right after it connects (before the facts, the backup and any step) and held
for the life of the connection:

* Linux: the run's root shell (``executors/ssh/rootshell``) opens
  ``/run/imageprep-vm.lock`` on a descriptor of its own and takes an exclusive
  ``flock`` on it (util-linux flock(1), ``-n``). /run is a tmpfs, so the file never
  reaches the image and a reboot clears it; the kernel drops the lock when the shell
  ends, however it ends (the SSH connection dropping included). Commands the shell
  starts get that descriptor closed, so a daemon a step leaves behind cannot keep it.
* Windows: a process of the run's own holds ``%SystemRoot%\Temp\imageprep-vm.lock``
  open, unshared for writing, delete-on-close (``executors/winrm/vmlock``).
* The file holds a holder record (:class:`LockHolder`, one JSON line): controller host,
  run id, pid, start time. A clean end empties it.

What the executor finds when it takes the lock (:class:`VmLockTaken`):

* the lock is held: :class:`~agent.errors.TargetBusy` (exit 11) naming the holder's
  controller and run id. A held lock is never broken, however old it is;
* the lock is free and the record is empty: taken;
* the lock is free but a record of *another* run is there: that run's shell is gone
  without releasing it (its controller died or lost the connection). The lock is taken,
  and the earlier holder is reported (a warning, and ``vm_lock.stale_holder`` in
  result.json): what that run did to the VM is unknown;
* the record is this run's own (``--resume``, or a root shell reopened after a reboot or
  a broken shell): taken again, quietly. If this run's earlier session still holds it
  (its root shell ending the command it ran; on Windows, the lock shell an interrupted
  session left, as it terminates nothing), the lock is this run's: the SSH executor
  waits for the old shell, the WinRM one deletes the old lock shell named in the record.

Executors that cannot hold such a lock do not implement :class:`VmLockHolder`; the
runner then relies on the controller's lock only.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from agent.errors import TargetBusy
from agent.report import utc_now


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a VM's lock: what the refusal and the report name."""

    controller: str
    run_id: str
    pid: int
    started_at: str
    # Windows: the WinRS shell whose process holds the lock (a resume deletes its own).
    shell: str | None = None

    @classmethod
    def this_run(cls, run_id: str) -> LockHolder:
        return cls(socket.gethostname(), run_id, os.getpid(), utc_now())

    def to_line(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> LockHolder | None:
        """The record in ``text``; None when empty. Unreadable records are kept as text."""
        text = text.strip()
        if not text:
            return None
        try:
            data: Any = json.loads(text.splitlines()[0])
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return cls("?", f"(unreadable record {text[:60]!r})", 0, "?")
        return cls(
            controller=str(data.get("controller", "?")),
            run_id=str(data.get("run_id", "?")),
            pid=int(data["pid"]) if isinstance(data.get("pid"), int) else 0,
            started_at=str(data.get("started_at", "?")),
            shell=str(data["shell"]) if isinstance(data.get("shell"), str) else None,
        )

    def same_run(self, other: LockHolder) -> bool:
        return self.run_id == other.run_id

    def same_run_here(self, other: LockHolder) -> bool:
        """The same run on the same controller: an earlier session of this very run."""
        return self.same_run(other) and self.controller == other.controller

    def describe(self) -> str:
        return (
            f"run {self.run_id} on controller {self.controller} "
            f"(pid {self.pid}, since {self.started_at})"
        )


@dataclass(frozen=True)
class VmLockTaken:
    """The VM's lock, now held by this run; ``stale_holder``: a dead run's record found."""

    where: str
    holder: LockHolder
    stale_holder: LockHolder | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "holder": asdict(self.holder),
            "stale_holder": asdict(self.stale_holder) if self.stale_holder else None,
        }


@runtime_checkable
class VmLockHolder(Protocol):
    """An executor that can hold the VM's lock for as long as it is connected."""

    def hold_vm_lock(self, holder: LockHolder) -> VmLockTaken:
        """Take the lock (again after every reconnect); TargetBusy if another run holds it."""
        ...


def taken(where: str, holder: LockHolder, found: LockHolder | None) -> VmLockTaken:
    """The lock was free: judge the record that was in it."""
    stale = found if found is not None and not found.same_run(holder) else None
    return VmLockTaken(where=where, holder=holder, stale_holder=stale)


def busy(target: str, where: str, found: LockHolder | None) -> TargetBusy:
    who = found.describe() if found is not None else "another imageprep run (just starting)"
    return TargetBusy(
        f"target {target} is busy: {who} holds the lock on the VM ({where})", holder=found
    )
