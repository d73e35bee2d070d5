"""The stand-ins refuse what their real tools refuse, and do what they model.

Each stand-in (tests/integration/standins/) accepts only the options its real tool
documents. Every case runs on one booted target (the stand-ins need root, their library
and their state directory where the distro matrix puts them), all in one SSH call.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.integration.distro_claims import STANDINS, debian_grub, install_standins
from tests.targets.nspawn import NspawnTarget
from tests.targets.rootfs import TargetImage

pytestmark = pytest.mark.integration

_TOOLS = tuple(
    p.name
    for p in sorted(STANDINS.iterdir())
    if p.is_file() and p.name not in ("README.md", "lib.sh", "record-exec")
)

# (tool and arguments, exit code, a piece of what it prints)
REFUSED = [
    ("SUSEConnect --frobnicate", 2, "flag provided but not defined: -frobnicate"),
    ("SUSEConnect --de-register extra", 1, "Unexpected argument 'extra'"),
    ("registercloudguest --cleanup", 2, "unrecognized arguments: --cleanup"),
    ("registercloudguest --clean --force-new", 1, "incompatible"),
    ("instance-flavor-check --verbose", 2, "takes no arguments"),
    ("subscription-manager unregister --force", 2, "unrecognized arguments: --force"),
    ("subscription-manager deregister", 1, "no such command: deregister"),
    ("grubby --update-kernel=ALL --frob", 1, "bad argument --frob: unknown option"),
    ("grub2-mkconfig --update", 1, "Unrecognized option `--update'"),
    ("grub-probe --frob /", 64, "unrecognized option '--frob'"),
    ("grub-probe --target=uuid /", 1, "unknown target `uuid'"),
    ("mkinitrd --regenerate-all", 1, "unknown option --regenerate-all"),
    ("selinuxenabled --verbose", 2, "takes no arguments"),
]
# Real options the stand-ins do not model: refused too, but saying so.
UNMODELLED = [
    "SUSEConnect --list-extensions",
    "registercloudguest --force-new",
    "grubby --set-default=/boot/vmlinuz-x",
    "grub2-mkconfig --version",
    "grub-probe -0 --target=fs /",
    "mkinitrd -A",
    "subscription-manager register",
]
# And what they model works.
WORKS = [
    ("SUSEConnect --status", 0, "[]"),
    ("SUSEConnect --cleanup", 0, "Cleaning up"),
    ("instance-flavor-check", 12, "BYOS"),
    ("registercloudguest --clean", 0, ""),
    ("grub2-mkconfig -o /tmp/grub.cfg", 0, "done"),
    ("grub-probe --target=device /", 0, "/dev/vda1"),
    ("selinuxenabled", 0, ""),
]

_SCRIPT = r"""
while IFS= read -r line; do
  out=$(eval "sudo $line" 2>&1) && rc=0 || rc=$?
  python3 -c 'import json, sys; print(json.dumps([sys.argv[1], int(sys.argv[2]), sys.argv[3]]))' \
    "$line" "$rc" "$out"
done
"""


@pytest.fixture(scope="module")
def results(target_image: TargetImage) -> dict[str, tuple[int, str]]:
    """Every case's exit code and output, from one target with every stand-in installed."""
    cases = [c for c, _, _ in REFUSED] + UNMODELLED + [c for c, _, _ in WORKS]
    install = install_standins(*_TOOLS)

    def prepare(root: Path) -> None:
        install(root)
        debian_grub(root)  # what grub2-mkconfig reads

    with NspawnTarget(target_image, prepare=prepare) as target:
        proc = subprocess.run(
            target.ssh_command("bash", "-c", shlex.quote(_SCRIPT)),
            input="".join(f"{c}\n" for c in cases),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("[")]
    return {case: (rc, out) for case, rc, out in rows}


@pytest.mark.parametrize(("case", "code", "says"), REFUSED, ids=[c for c, _, _ in REFUSED])
def test_unknown_option_refused(
    results: dict[str, tuple[int, str]], case: str, code: int, says: str
) -> None:
    """An option the real tool does not have is refused as the real tool refuses it."""
    rc, out = results[case]
    assert (rc, says in out) == (code, True), out


@pytest.mark.parametrize("case", UNMODELLED)
def test_real_but_unmodelled_option_refused(results: dict[str, tuple[int, str]], case: str) -> None:
    """A real option the stand-in does not model fails, saying so, instead of passing."""
    rc, out = results[case]
    assert rc == 1, out
    assert "not model" in out or "not modelled" in out, out


@pytest.mark.parametrize(("case", "code", "says"), WORKS, ids=[c for c, _, _ in WORKS])
def test_modelled_call_works(
    results: dict[str, tuple[int, str]], case: str, code: int, says: str
) -> None:
    """What a stand-in models succeeds (so the refusals above are not all it can do)."""
    rc, out = results[case]
    assert rc == code, out
    assert says in out, out


def test_every_standin_has_a_refusal_case() -> None:
    """No stand-in escapes the unknown-option check."""
    covered = {case.split()[0] for case, _, _ in REFUSED}
    assert covered == set(_TOOLS) - {"apt-get"}, sorted(set(_TOOLS) - covered)


def test_no_standin_for_a_tool_debian_ships() -> None:
    """rpm, dnf, zypper, dracut, lsinitrd and restorecon run for real (rpm_variant.py)."""
    assert not {"rpm", "dnf", "yum", "zypper", "dracut", "lsinitrd", "restorecon"} & set(_TOOLS)
    assert Path(STANDINS / "record-exec").is_file()
