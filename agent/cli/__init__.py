"""The command line: parse flags, call the library, map the outcome to an exit code.

Nothing else lives here: every decision is made by the modules it calls. The only
package that imports click.

    app         the `imageprep` group, which imports a command's module when it runs;
                one error line and an exit code per failure
    help        --help in sections, with examples and the exit-code table
    options     the typed option groups (ConnectionArgs, PlanArgs, ...) and shared options
    connection  from the connection options to a target and its executor's options
    runs        run, check (run_options: the option groups only run takes)
    plans       plan
    catalog     validate, profiles, playbooks, schema (offline)
    images      boot-test, vhd, upload, capture
"""

from __future__ import annotations

from agent.cli.app import main

__all__ = ["main"]
