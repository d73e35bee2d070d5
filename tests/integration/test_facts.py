"""Facts read from a real Debian target agree with what its tools say of themselves.

The versions of cloud-init and waagent are read from their installed version files (a
Python start-up each is the slowest part of gathering facts); they must be exactly what
`cloud-init --version` and `waagent --version` report, and asking the tools must still
work when those files are not where we look.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.executors.ssh import SshExecutor, SshOptions
from agent.facts import extract_version, gather_facts
from agent.targets import parse_target
from tests.integration.conftest import TargetFactory
from tests.targets.nspawn import NspawnTarget

pytestmark = pytest.mark.integration


def _executor(target: NspawnTarget) -> SshExecutor:
    return SshExecutor(
        parse_target(f"ssh://{target.user}@{target.host}:{target.port}"),
        SshOptions(identity=target.key_path, known_hosts=target.known_hosts_path, use_agent=False),
    )


def _tool_versions(executor: SshExecutor) -> tuple[str | None, str | None]:
    cloud_init = executor.run("cloud-init --version 2>&1", timeout=60).stdout
    waagent = executor.run("PATH=$PATH:/usr/sbin waagent --version 2>&1 | head -n 1", timeout=60)
    return extract_version(cloud_init), extract_version(waagent.stdout)


def test_versions_match_the_tools_own_answer(target: NspawnTarget) -> None:
    """cloud_init_version and waagent_version equal what the tools print for --version."""
    with _executor(target) as executor:
        facts = gather_facts(executor)
        assert (facts.cloud_init_version, facts.waagent_version) == _tool_versions(executor)
    assert facts.cloud_init_version is not None
    assert facts.waagent_version is not None


def _two_pythons(root: Path) -> None:
    """A second copy of both version files under another Python: which one runs is unknown."""
    source = root / "usr/lib/python3/dist-packages"
    other = root / "usr/lib/python3.99/site-packages"
    for name in ("cloudinit/version.py", "azurelinuxagent/common/version.py"):
        (other / name).parent.mkdir(parents=True, exist_ok=True)
        text = (source / name).read_text().replace("= '", "= '9").replace('= "', '= "9')
        (other / name).write_text(text)


def test_ambiguous_version_files_ask_the_tools(target_factory: TargetFactory) -> None:
    """With two copies of the version files, the facts ask the tools themselves."""
    target = target_factory(prepare=_two_pythons)
    with _executor(target) as executor:
        facts = gather_facts(executor)
        assert (facts.cloud_init_version, facts.waagent_version) == _tool_versions(executor)
