"""The wheel as users get it: built, installed into a clean venv, run from there.

Slow-ish (a wheel build and a pip install from the package registry, about half a minute
with a warm pip cache), so one module-scoped install serves every test here.
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class InstalledWheel:
    """A wheel of this checkout and the clean virtual environment it is installed in."""

    wheel: Path
    bin_dir: Path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> InstalledWheel:
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work), str(REPO)],
        check=True,
        timeout=600,
    )
    (wheel,) = work.glob("*.whl")
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        timeout=600,
    )
    return InstalledWheel(wheel, bin_dir)


def test_wheel_is_named_imageprep_agent(installed: InstalledWheel) -> None:
    """The distribution is imageprep-agent, not PyPI's unrelated `imageprep`."""
    assert installed.wheel.name.startswith("imageprep_agent-")


def test_wheel_carries_builtin_yaml(installed: InstalledWheel) -> None:
    """Built-in profiles and playbooks ship inside the wheel as package data."""
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert "agent/_builtin/playbooks/generalize.yaml" in names
    assert "agent/_builtin/distro_profiles/debian.yaml" in names
    assert "agent/_builtin/distro_profiles/linux-base.d/azure-prepare/kernel-cmdline.sh" in names


def test_installed_version_matches_source(installed: InstalledWheel) -> None:
    """`imageprep --version` from the installed wheel prints the version of agent/__init__.py."""
    from agent import __version__

    result = subprocess.run(
        [str(installed.bin_dir / "imageprep"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=installed.bin_dir,
    )
    assert __version__ in result.stdout


def test_installed_wheel_plans_offline(installed: InstalledWheel) -> None:
    """An offline `plan --profile debian` works from the wheel, outside the checkout."""
    result = subprocess.run(
        [str(installed.bin_dir / "imageprep"), "plan", "--profile", "debian"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=installed.bin_dir,
    )
    assert result.returncode == 0, result.stderr
    assert "waagent" in result.stdout


def test_wheel_carries_py_typed(installed: InstalledWheel) -> None:
    """agent/py.typed ships, so type checkers read agent's annotations (PEP 561)."""
    assert "agent/py.typed" in zipfile.ZipFile(installed.wheel).namelist()


def _mypy_against_wheel(
    installed: InstalledWheel, program: Path
) -> subprocess.CompletedProcess[str]:
    """mypy --strict on ``program``, resolving ``agent`` from the wheel's venv only."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--python-executable",
            str(installed.bin_dir / "python"),
            str(program),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=program.parent,  # outside the checkout: no ./agent, no pyproject's config
        check=False,
    )


def test_embedding_example_type_checks_against_the_wheel(
    installed: InstalledWheel, tmp_path: Path
) -> None:
    """examples/embedding/embed.py passes mypy --strict with agent from the installed wheel."""
    program = tmp_path / "embed.py"
    program.write_text((REPO / "examples" / "embedding" / "embed.py").read_text())
    checked = _mypy_against_wheel(installed, program)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_misuse_of_the_api_is_a_type_error(installed: InstalledWheel, tmp_path: Path) -> None:
    """The API's types reach mypy from the wheel: a wrong argument and a wrong field fail."""
    program = tmp_path / "misuse.py"
    program.write_text(
        "from agent import api\nresult = api.run(42)\ntext: str = result.exit_code\n"
    )
    checked = _mypy_against_wheel(installed, program)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert 'Argument 1 to "run" has incompatible type "int"' in checked.stdout
    assert 'has type "ExitCode", variable has type "str"' in checked.stdout
