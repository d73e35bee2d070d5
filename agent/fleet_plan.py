"""``plan --inventory``: each selected host's plan, read from the host, ``forks`` at once.

Read-only like ``plan --target``: no run folder, no lock, no fleet.json. Each host's
plan (or its one-line error) is printed under the host's name, in inventory order,
then the table; the exit code is the worst host's (``FLEET_EXIT_ORDER``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from agent import console, errors
from agent.catalog import Catalog
from agent.fleet import (
    FleetPlan,
    FleetSettings,
    host_request,
    host_target,
    load_catalog,
    select_hosts,
)
from agent.fleet_record import HostResult, render_table, tally
from agent.interrupts import ThreadInterrupts, run_threads
from agent.inventory import InventoryHost
from agent.logging import configure_fleet_logging, host_logging
from agent.outcome import ExitCode, exit_code_for_error, worst_exit_code


@dataclass(frozen=True)
class HostPlan:
    host: InventoryHost
    target: str
    exit_code: ExitCode
    text: str  # the plan (text or JSON), or the error


@dataclass(frozen=True)
class FleetPlanOutcome:
    hosts: tuple[HostPlan, ...]

    @property
    def exit_code(self) -> ExitCode:
        return worst_exit_code(h.exit_code for h in self.hosts)


def plan_fleet(plan: FleetPlan, settings: FleetSettings, *, as_json: bool) -> FleetPlanOutcome:
    """Build every selected host's plan; KeyboardInterrupt stops them all and propagates."""
    hosts = select_hosts(plan)
    for host in hosts:
        host_target(host)  # a bad address is refused before any host is contacted
    if settings.configure_logging:
        configure_fleet_logging(settings.log_format, None)
    catalog = load_catalog(plan)  # once for every host, as a fleet run does
    results: dict[str, HostPlan] = {}
    pending = list(hosts)
    lock = threading.Lock()
    interrupts = ThreadInterrupts()

    def work() -> None:
        while not interrupts.stopping:
            with lock:
                if not pending:
                    return
                host = pending.pop(0)
            result = _plan_host(plan, settings, host, interrupts, catalog, as_json=as_json)
            with lock:
                results[host.name] = result

    if run_threads(
        work,
        min(settings.forks, len(hosts)),
        on_interrupt=interrupts.interrupt_all,
        name="imageprep-plan",
    ):
        raise KeyboardInterrupt
    return FleetPlanOutcome(tuple(results[h.name] for h in hosts))


def _plan_host(
    plan: FleetPlan,
    settings: FleetSettings,
    host: InventoryHost,
    interrupts: ThreadInterrupts,
    catalog: Catalog,
    *,
    as_json: bool,
) -> HostPlan:
    from agent.planning import show_plan

    request = host_request(plan, settings, host, host.name, None)  # a plan has no folder
    target = request.target.display
    try:
        with host_logging(host.name, None), interrupts.section():
            text = show_plan(
                target_url=target,
                ssh_options=request.ssh_options,
                winrm_options=request.winrm_options,
                playbook=request.playbook,
                profile=request.profile,
                profiles_dirs=request.profiles_dirs,
                playbooks_dirs=request.playbooks_dirs,
                var_overrides=request.var_overrides,
                var_origins=request.var_origins,
                selection=request.selection,
                as_json=as_json,
                catalog=catalog,
            )
    except KeyboardInterrupt:
        return HostPlan(host, target, ExitCode.INTERRUPTED, "interrupted")
    except errors.ImagePrepError as exc:
        return HostPlan(host, target, exit_code_for_error(exc), str(exc))
    return HostPlan(host, target, ExitCode.OK, text)


def render(outcome: FleetPlanOutcome, *, as_json: bool) -> str:
    """Every host's plan under its name, then the table; or one JSON object by host."""
    if as_json:
        data: dict[str, Any] = {}
        for h in outcome.hosts:
            entry: dict[str, Any] = {"target": h.target, "exit_code": int(h.exit_code)}
            if h.exit_code is ExitCode.OK:
                entry["plan"] = json.loads(h.text)
            else:
                entry["error"] = h.text
            data[h.host.name] = entry
        return json.dumps({"exit_code": int(outcome.exit_code), "hosts": data}, indent=2)
    parts = []
    for h in outcome.hosts:
        body = h.text if h.exit_code is ExitCode.OK else f"imageprep: error: {h.text}"
        parts.append(f"== {h.host.name} ({h.target}) ==\n{body.rstrip()}\n")
    rows = [
        HostResult(
            name=h.host.name,
            address=h.host.address,
            target=h.target,
            status="planned" if h.exit_code is ExitCode.OK else "failed",
            exit_code=h.exit_code,
            message="" if h.exit_code is ExitCode.OK else h.text,
        )
        for h in outcome.hosts
    ]
    table = render_table(rows, fleet_dir=None)
    verdict = f"{len(rows)} host(s): {tally(rows)}; exit {int(outcome.exit_code)}"
    return console.clean("\n".join(parts) + "\n" + table + verdict + "\n")
