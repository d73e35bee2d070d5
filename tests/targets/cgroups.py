"""A private cgroup for each systemd-nspawn, made before it starts.

With `--keep-unit` (no systemd on the host to ask for a scope) nspawn puts the guest in
`payload/` and itself in `supervisor/` below the cgroup it was started in. Two nspawns started
from the same cgroup therefore share `payload/`, and each guest's systemd creates and removes
the other's unit cgroups: once several targets boot at the same time, random units fail with
`status=219/CGROUP ... No such file or directory` and the system ends `degraded`
(systemd-remount-fs, systemd-sysusers, dev-hugepages.mount, cloud-final seen here). A fresh
child cgroup per container, in every hierarchy nspawn uses, keeps them apart.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path

_REMOVE_ATTEMPTS = 20


@dataclass(frozen=True)
class PrivateCgroup:
    """One new cgroup directory per hierarchy (the v1 name=systemd one, and cgroup2)."""

    directories: tuple[Path, ...]

    @classmethod
    def create(cls, name: str) -> PrivateCgroup:
        """Make `<our cgroup>/<name>.<random>` in each hierarchy nspawn uses."""
        unique = f"{name}.{secrets.token_hex(4)}"
        directories = []
        for mount_point, own_path in _hierarchies():
            directory = mount_point / own_path.lstrip("/") / unique
            directory.mkdir()
            directories.append(directory)
        return cls(tuple(directories))

    @property
    def procs_files(self) -> list[Path]:
        """Where to write a PID to move that process into this cgroup."""
        return [directory / "cgroup.procs" for directory in self.directories]

    def remove(self) -> None:
        """rmdir the cgroups (children first) once their processes have exited."""
        for directory in self.directories:
            for attempt in range(_REMOVE_ATTEMPTS):
                try:
                    _remove_cgroup_tree(directory)
                    break
                except OSError:
                    # The kernel frees a cgroup shortly after its last process is reaped.
                    if attempt == _REMOVE_ATTEMPTS - 1:
                        raise
                    time.sleep(0.1)


def _remove_cgroup_tree(directory: Path) -> None:
    if not directory.exists():
        return
    # A cgroup's files vanish with it; only its child directories must go first.
    for child in directory.iterdir():
        if child.is_dir():
            _remove_cgroup_tree(child)
    directory.rmdir()


def _hierarchies() -> list[tuple[Path, str]]:
    """(mount point, this process's path in it) for cgroup2 and the v1 name=systemd tree."""
    own = _own_cgroup_paths()
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        fstype, super_options = fields[separator + 1], fields[separator + 3].split(",")
        if fstype == "cgroup2" and "" in own:
            found.append((Path(fields[4]), own[""]))
        elif fstype == "cgroup" and "name=systemd" in super_options and "name=systemd" in own:
            found.append((Path(fields[4]), own["name=systemd"]))
    return found


def _own_cgroup_paths() -> dict[str, str]:
    # /proc/self/cgroup lines are "id:controllers:path"; cgroup2's controllers field is empty.
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        paths[controllers] = path
    return paths
