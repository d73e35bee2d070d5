"""A failing step that prints the sudo password: the console shows it in no encoding."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.cli_run import IMAGEPREP, write_probe
from tests.integration.conftest import TargetFactory
from tests.targets.rootfs import TargetImage

pytestmark = pytest.mark.integration

FAILED_BEFORE_POINT_OF_NO_RETURN = 5

# The step reads the password from a file the test put on the target and prints it raw,
# as JSON, and base64 of its UTF-8 and UTF-16LE bytes, on stdout and stderr, then fails.
LEAKY_STEP = """\
- name: leaky
  description: Fails, printing the password in four encodings
  timeout: 30
  run: |
    pw=$(cat /etc/probe-secret)
    printf '%s\\n' "$pw" "\\"$pw\\""
    printf '%s' "$pw" | base64 -w0; echo
    printf '%s' "$pw" | iconv -f utf-8 -t utf-16le | base64 -w0 >&2; echo >&2
    printf 'raw on stderr: %s\\n' "$pw" >&2
    exit 1
"""


def _forms(secret: str) -> set[str]:
    return {
        secret,
        json.dumps(secret)[1:-1],
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(secret.encode("utf-16-le")).decode(),
    }


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_failing_step_never_prints_the_sudo_password(
    target_factory: TargetFactory, target_image: TargetImage, tmp_path: Path, log_format: str
) -> None:
    """Progress lines, summary and log lines on the console hold no form of the password."""
    password = target_image.builder_password()

    def plant(root: Path) -> None:
        (root / "etc/probe-secret").write_text(password)

    target = target_factory(prepare=plant)
    selection = write_probe(tmp_path, LEAKY_STEP)
    run_dir = tmp_path / "run"
    completed = subprocess.run(
        [
            IMAGEPREP,
            "run",
            "--target",
            f"ssh://builder@{target.host}:{target.port}",
            "--known-hosts",
            str(target.known_hosts_path),
            "--password-env",
            "TEST_LOGIN_PASSWORD",
            "--sudo-password-env",
            "TEST_SUDO_PASSWORD",
            *selection,
            "--run-dir",
            str(run_dir),
            "--log-format",
            log_format,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TEST_LOGIN_PASSWORD": password, "TEST_SUDO_PASSWORD": password},
        check=False,
    )
    printed = completed.stdout + completed.stderr
    assert "work/leaky" in printed, printed[-2000:]
    assert [f for f in _forms(password) if f in printed] == []
    report = (run_dir / "result.json").read_text()
    assert "***" in report  # the output was there, and redacted in the report as well
