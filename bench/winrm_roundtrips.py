"""Benchmark: WS-Management round trips per command, WinRmExecutor vs pywinrm's run_ps.

    .venv/bin/python -m bench.winrm_roundtrips

Both clients run the same commands, the windows-server steps of a generalize plan built
from facts read off the target (preflight, cleanup, Sysprep, verify; not the power-off),
against the Windows test double of ``tests/winrm_server`` over HTTPS with NTLM, each on
a fresh modelled machine. The double counts what arrives:

* imageprep: ``WinRmExecutor``, one shell for the run (Create once, Delete once), each
  step a Command, its Receives and a Signal;
* baseline: ``winrm.Session.run_ps``, which opens and deletes a shell per command (its
  code's own "TODO optimize perf"). Steps longer than cmd.exe's 8191-character command
  line fail there (imageprep sends those through stdin); they are counted as failed.

Printed: WS-Man requests (SOAP envelopes) and HTTP requests (including NTLM's 401
challenges) per command, by action, and the wall time of each way. The double runs in
virtual time (Sysprep's minutes take milliseconds), so the wall times are only for
comparing the two ways here, not a prediction for real Windows; the round-trip counts
do not depend on it except for the Receives of long commands. Last, the whole success
scenario runs once through the real CLI (`imageprep run` as a process) for its wall time.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import winrm

from agent.catalog import Catalog
from agent.executors.winrm import WinRmExecutor, WinRmOptions
from agent.executors.winrm import scripts as winrm_scripts
from agent.facts_windows import gather_windows_facts
from agent.plan import PlannedStep, Selection, plan_for
from agent.secrets import Secret
from agent.targets import Target
from tests.winrm_server import (
    TlsFiles,
    WindowsMachine,
    WinRmTestServer,
    make_tls_files,
    ntlm_user_file_line,
)

USER = "Administrator"
PASSWORD = "Bench-Passw0rd!"  # noqa: S105  the test double's account
TIME_SCALE = 0.01
PHASES = ("preflight", "cleanup", "deprovision", "verify")
# The double's listener stays silent after power-off: 1 s of watching proves as much
# here as the default 120 s does on a real VM, and keeps the wall time about the run.
VARS = {"sysprep_poll_seconds": "1", "power_off_watch_seconds": "1"}


@dataclass
class Way:
    """What the double saw while one client ran the commands."""

    name: str
    commands: int = 0
    failed: list[str] = field(default_factory=list)
    per_command: list[int] = field(default_factory=list)  # WS-Man requests per command
    # Each command's requests by action, with its step's key.
    per_step: list[tuple[str, Counter[str]]] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    http_requests: int = 0
    seconds: float = 0.0


@contextmanager
def _machine(tls: TlsFiles) -> Iterator[tuple[WinRmTestServer, Counter[str]]]:
    """A fresh double whose WS-Man requests are counted by action."""
    machine = WindowsMachine(time_scale=TIME_SCALE, sysprep_seconds=6.0)
    with WinRmTestServer(machine, username=USER, password=PASSWORD, tls=tls) as server:
        counts: Counter[str] = Counter()
        handle = server.service.handle

        def counting(request: Any, user: str, client_ip: str) -> bytes:
            counts[request.action.rsplit("/", 1)[-1]] += 1
            return handle(request, user, client_ip)

        server.service.handle = counting  # type: ignore[method-assign]
        yield server, counts


def _executor(server: WinRmTestServer, tls: TlsFiles) -> WinRmExecutor:
    target = Target("winrm+https", USER, "127.0.0.1", server.port)
    options = WinRmOptions(password=Secret(PASSWORD, "bench"), ca_cert=tls.ca_cert)
    return WinRmExecutor(target, options)


def planned_steps(tls: TlsFiles) -> list[PlannedStep]:
    """The steps a generalize run would execute on the double, minus the power-off."""
    with _machine(tls) as (server, _), _executor(server, tls) as executor:
        facts = gather_windows_facts(executor)
    plan = plan_for(
        Catalog.load(profiles_dirs=(), playbooks_dirs=()),
        playbook_name="generalize",
        profile_id="auto",
        facts=facts,
        var_overrides=VARS,
        selection=Selection(),
    )
    return [
        step
        for phase in PHASES
        for step in plan.steps_in(phase)
        if step.skip_reason is None and step.condition is not False
    ]


def _measure(
    name: str,
    tls: TlsFiles,
    steps: list[PlannedStep],
    open_client: Callable[[WinRmTestServer], Any],
    run_one: Callable[[Any, PlannedStep], bool],
    close_client: Callable[[Any], None],
) -> Way:
    way = Way(name)
    with _machine(tls) as (server, counts):
        started = time.monotonic()
        client = open_client(server)
        for step in steps:
            before = Counter(counts)
            if not run_one(client, step):
                way.failed.append(step.key)
            spent = Counter(counts)
            spent.subtract(before)
            way.per_command.append(spent.total())
            way.per_step.append((step.key, +spent))
        close_client(client)
        way.seconds = time.monotonic() - started
        way.commands = len(steps)
        way.actions = Counter(counts)
        way.http_requests = server.requests
    return way


def measure_imageprep(tls: TlsFiles, steps: list[PlannedStep]) -> Way:
    def open_client(server: WinRmTestServer) -> WinRmExecutor:
        executor = _executor(server, tls)
        executor.connect()
        return executor

    def run_one(executor: WinRmExecutor, step: PlannedStep) -> bool:
        return executor.run(step.command, timeout=step.spec.timeout).exit_code == 0

    return _measure(
        "imageprep WinRmExecutor", tls, steps, open_client, run_one, WinRmExecutor.close
    )


def measure_run_ps(tls: TlsFiles, steps: list[PlannedStep]) -> Way:
    def open_client(server: WinRmTestServer) -> winrm.Session:
        return winrm.Session(
            f"https://127.0.0.1:{server.port}/wsman",
            auth=(USER, PASSWORD),
            transport="ntlm",
            ca_trust_path=str(tls.ca_cert),
            server_cert_validation="validate",
        )

    def run_one(session: winrm.Session, step: PlannedStep) -> bool:
        # The same script imageprep sends (progress silenced), the way pywinrm sends it.
        response = session.run_ps(winrm_scripts.PREAMBLE + step.command)
        return response.status_code == 0

    def close_client(session: winrm.Session) -> None:
        session.protocol.transport.close_session()

    return _measure("baseline: Session.run_ps", tls, steps, open_client, run_one, close_client)


def measure_full_run(tls: TlsFiles, work: Path) -> tuple[int, float, Counter[str], int]:
    """The success scenario through the real CLI: exit code, wall s, WS-Man by action, HTTP."""
    with _machine(tls) as (server, counts):
        command = [
            str(Path(sys.executable).with_name("imageprep")),
            "run",
            "--target",
            f"winrm+https://{USER}@127.0.0.1:{server.port}",
            "--password-env",
            "WINPASS",
            "--ca-cert",
            str(tls.ca_cert),
            "--backup",
            "command:echo snap-0001",
            "--run-dir",
            str(work / "run"),
            "--log-format",
            "json",
            *(f"--var={key}={value}" for key, value in VARS.items()),
        ]
        started = time.monotonic()
        done = subprocess.run(
            command,
            env={**os.environ, "WINPASS": PASSWORD},
            capture_output=True,
            check=False,
        )
        return done.returncode, time.monotonic() - started, Counter(counts), server.requests


def _report(ways: list[Way]) -> None:
    actions = ["Create", "Command", "Send", "Receive", "Signal", "Delete"]
    print(
        f"{'way':<26} {'cmds':>4} {'WS-Man':>7} {'/cmd':>5} {'median':>6} {'HTTP':>5}"
        f" {'/cmd':>5} {'wall':>7}  " + " ".join(f"{a:>7}" for a in actions)
    )
    for way in ways:
        total = sum(way.actions.values())
        print(
            f"{way.name:<26} {way.commands:>4} {total:>7} {total / way.commands:5.2f}"
            f" {statistics.median(way.per_command):6.1f} {way.http_requests:>5}"
            f" {way.http_requests / way.commands:5.2f} {way.seconds:6.2f}s  "
            + " ".join(f"{way.actions.get(a, 0):>7}" for a in actions)
        )
    ours, baseline = ways
    ratio = sum(baseline.actions.values()) / sum(ours.actions.values())
    print(f"baseline / imageprep, WS-Man requests: {ratio:.2f}x")
    _report_per_step(ours)
    for way in ways:
        if way.failed:
            print(f"{way.name}: {len(way.failed)} command(s) failed: {', '.join(way.failed)}")
    print(
        "WS-Man totals include each way's connection (imageprep: 1 Create + 1 Delete for "
        "the run); HTTP includes NTLM challenges: run_ps closes its HTTP session with each "
        "shell, so NTLM authenticates again for every command. Virtual time: wall times "
        "compare the two ways on this double only."
    )


# What every command costs in a WinRS shell: start it, read its output, and the final
# Signal MS-WSMV requires "after all the stream data has been received" (3.1.4.14).
_FLOOR = Counter({"Command": 1, "Receive": 1, "Signal": 1})


def _report_per_step(way: Way) -> None:
    """Split the requests into the run's fixed part and each step's, and explain the rest."""
    per_run = way.actions.total() - sum(way.per_command)
    steps = len(way.per_command)
    at_floor = sum(1 for _, spent in way.per_step if spent == _FLOOR)
    print(
        f"{way.name}: {per_run} request(s) per run (the shell's Create and Delete), then "
        f"{sum(way.per_command) / steps:.2f} per step; {at_floor} of {steps} steps take "
        f"exactly 3 (Command, Receive, Signal: the floor, MS-WSMV 3.1.4.14 requires the Signal)"
    )
    for key, spent in way.per_step:
        extra = spent - _FLOOR
        if extra:
            why = ", ".join(f"+{n} {action}" for action, n in sorted(extra.items()))
            print(f"  {key}: {spent.total()} ({why})")
    print(
        "  +Send: a script too long for cmd.exe's command line goes through stdin; "
        "+Receive: a command still running after one OperationTimeout is polled again."
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="imageprep-winrm-bench-") as tmp:
        work = Path(tmp)
        users = work / "ntlm-users"
        users.write_text(ntlm_user_file_line(USER, PASSWORD))
        os.environ["NTLM_USER_FILE"] = str(users)
        tls = make_tls_files(work)
        steps = planned_steps(tls)
        _report([measure_imageprep(tls, steps), measure_run_ps(tls, steps)])
        code, seconds, wsman, http = measure_full_run(tls, work)
        print(
            f"success scenario, `imageprep run` as a process (backup, facts, {len(steps)} steps, "
            f"power-off): exit {code}, {seconds:.2f} s wall, {wsman.total()} WS-Man / {http} HTTP "
            f"requests ({', '.join(f'{n} {action}' for action, n in sorted(wsman.items()))}; "
            "facts, backup and power-off run commands too, and the VM lock has a shell of its own)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
