"""Embedding imageprep in a Python program: plan, then run, and read the typed result.

    python embed.py ssh://azureuser@10.0.0.5 ~/.ssh/builder /srv/backups/vm1

The program's own logging stays as it set it up; imageprep's events go through it.
The test suite type-checks this file with mypy --strict against the installed wheel.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from agent import api
from agent.errors import ImagePrepError
from agent.executors.ssh import SshOptions


def main(url: str, key: Path, backups: Path) -> int:
    logging.basicConfig(level=logging.INFO)  # the program's choice, not imageprep's
    ssh = SshOptions(identity=key)
    try:
        planned = api.plan(url, ssh=ssh)
        print(f"profile {planned.profile}: {len(planned.steps)} steps")
        for step in planned.steps:
            if step.will_run and step.spec.destructive:
                print(f"  destructive: {step.key}")
        result = api.run(url, ssh=ssh, backup=f"archive:{backups}")
    except ImagePrepError as exc:  # bad input, or the target is busy on this controller
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    failed = [step.key for step in result.steps if step.status == "failed"]
    print(f"run {result.run_id}: {result.status} ({result.exit_code.name}) in {result.run_dir}")
    if failed:
        print(f"failed steps: {', '.join(failed)}")
    if result.document.backup is not None:
        print(f"backup: {result.document.backup.reference}")
    if not result.ok and result.point_of_no_return_reached:
        print("restore the VM from the backup", file=sys.stderr)
    return int(result.exit_code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]).expanduser(), Path(sys.argv[3])))
