"""The `imageprep` command (and `python -m agent`).

``--version`` is answered here, before click and the rest of the CLI are imported: a
pipeline that records the tool's version should not pay for the whole start-up.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from agent import __version__

        sys.stdout.write(f"imageprep, version {__version__}\n")
        return
    from agent.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
