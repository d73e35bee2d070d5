"""Fleets (agent/fleet.py): requests per host, scheduling, Ctrl-C, fleet.json, exit order.

Hosts that cannot be reached (a closed port on 127.0.0.1) are real runs that fail with
exit 4; the runs against real targets are in tests/integration/test_fleet.py.
"""

from __future__ import annotations

import _thread
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import errors
from agent.executors.ssh import SshOptions
from agent.fleet import (
    FleetPlan,
    FleetSettings,
    HostJob,
    LabelledStream,
    Scheduler,
    folder_names,
    host_request,
    resume_fleet,
    run_fleet,
)
from agent.fleet_record import FLEET_FILE, FleetRecord, HostResult, load_fleet, render_table
from agent.interrupts import ThreadInterrupts
from agent.inventory import InventoryHost, load_inventory
from agent.logging import configure_fleet_logging, host_logging, reset_logging
from agent.outcome import FLEET_EXIT_ORDER, ExitCode, worst_exit_code
from agent.runner import RunRequest
from agent.targets import parse_target
from tests.unit.hostile_peers import closed_port


@pytest.fixture(autouse=True)
def _logging_reset() -> Iterator[None]:
    yield
    reset_logging()


def _inventory(tmp_path: Path, text: str, name: str = "hosts.ini") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _host(name: str = "web01", **values: object) -> InventoryHost:
    return InventoryHost(
        name=name, vars={"ansible_user": "u", **values}, groups=(), where="inv.ini:3"
    )


def _settings(**changes: object) -> FleetSettings:
    options = SshOptions(known_hosts=Path("/nonexistent/known_hosts"), connect_timeout=2)
    return FleetSettings(ssh_options=options, stream=io.StringIO(), **changes)  # type: ignore[arg-type]


# -- the exit order ---------------------------------------------------------------------------


def test_exit_order_names_every_exit_code_once() -> None:
    """FLEET_EXIT_ORDER ranks each exit code exactly once, OK last."""
    assert sorted(FLEET_EXIT_ORDER) == sorted(ExitCode)
    assert FLEET_EXIT_ORDER[-1] is ExitCode.OK


@pytest.mark.parametrize("index", range(len(FLEET_EXIT_ORDER) - 1))
def test_each_code_outranks_every_later_one(index: int) -> None:
    """A fleet with a code and any code after it in the order exits with the former."""
    code = FLEET_EXIT_ORDER[index]
    for later in FLEET_EXIT_ORDER[index + 1 :]:
        assert worst_exit_code([later, code, later]) is code


def test_interrupted_outranks_a_bug_and_a_damaged_vm() -> None:
    """130 > 1 > 6 > 5 > 4 > 2 > 0: the order the README documents."""
    codes = [ExitCode(c) for c in (0, 2, 4, 5, 6, 1, 130)]
    ranked = sorted(codes, key=FLEET_EXIT_ORDER.index)
    assert [int(c) for c in ranked] == [130, 1, 6, 5, 4, 2, 0]


def test_readme_documents_the_same_order() -> None:
    """README's "Exit codes" states the fleet order exactly as FLEET_EXIT_ORDER has it."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = " > ".join(str(int(code)) for code in FLEET_EXIT_ORDER)
    assert f"**{documented}**" in readme


def test_no_host_means_ok() -> None:
    """An empty list of codes is OK (a fleet with nothing left to do)."""
    assert worst_exit_code([]) is ExitCode.OK


# -- from an inventory host to a run request ---------------------------------------------------


def test_command_line_playbook_wins_over_the_hosts() -> None:
    """--playbook given on the command line beats imageprep_playbook."""
    plan = FleetPlan(inventory=Path("inv.ini"), playbook="generalize")
    request = host_request(plan, _settings(), _host(imageprep_playbook="other"), "web01", Path("r"))
    assert request.playbook == "generalize"


def test_host_playbook_and_profile_apply_without_a_command_line_one() -> None:
    """imageprep_playbook and imageprep_profile choose when the command line does not."""
    host = _host(imageprep_playbook="azure-ready", imageprep_profile="debian")
    request = host_request(FleetPlan(inventory=Path("i")), _settings(), host, "web01", Path("r"))
    assert (request.playbook, request.profile) == ("azure-ready", "debian")


def test_check_never_takes_the_hosts_playbook() -> None:
    """`check --inventory` runs the check playbook whatever imageprep_playbook says."""
    plan = FleetPlan(inventory=Path("i"), command="check", backup_spec="archive:/b")
    request = host_request(
        plan, _settings(), _host(imageprep_playbook="generalize"), "w", Path("r")
    )
    assert (request.playbook, request.backup_spec) == ("check", None)


def test_command_line_vars_override_the_hosts_vars() -> None:
    """imageprep_vars are the base; --var on the command line wins key by key."""
    host = _host(imageprep_vars={"a": 1, "b": 2})
    plan = FleetPlan(inventory=Path("i"), var_overrides={"b": "3"}, var_origins={"b": "f:1"})
    request = host_request(plan, _settings(), host, "web01", Path("r"))
    assert dict(request.var_overrides) == {"a": 1, "b": "3"}
    assert request.var_origins["b"] == "f:1"
    assert request.var_origins["a"].startswith("inv.ini:3")


def test_archive_backup_gets_a_folder_per_host(tmp_path: Path) -> None:
    """archive:DIR becomes archive:DIR/<host folder>."""
    plan = FleetPlan(inventory=Path("i"), backup_spec=f"archive:{tmp_path}")
    request = host_request(plan, _settings(), _host(), "web01", Path("r"))
    assert request.backup_spec == f"archive:{tmp_path / 'web01'}"


def test_command_backup_is_the_same_for_every_host() -> None:
    """command:CMD is passed on as it is (the host is in IMAGEPREP_TARGET_HOST)."""
    plan = FleetPlan(inventory=Path("i"), backup_spec="command:snap $IMAGEPREP_TARGET_HOST")
    request = host_request(plan, _settings(), _host(), "web01", Path("r"))
    assert request.backup_spec == "command:snap $IMAGEPREP_TARGET_HOST"


def test_host_key_file_replaces_the_command_lines() -> None:
    """ansible_ssh_private_key_file is the host's --identity."""
    host = _host(ansible_ssh_private_key_file="/keys/web01")
    request = host_request(FleetPlan(inventory=Path("i")), _settings(), host, "web01", Path("r"))
    assert request.ssh_options.identity == Path("/keys/web01")


def test_each_host_keeps_logging_to_the_fleet() -> None:
    """A host's run never reconfigures logging: the fleet's routing stays in place."""
    request = host_request(FleetPlan(inventory=Path("i")), _settings(), _host(), "w", Path("r"))
    assert request.configure_logging is False


def test_winrm_host_gets_its_transport() -> None:
    """ansible_winrm_transport sets the host's WinRM transport; SSH hosts get none."""
    host = _host(ansible_connection="winrm", ansible_port=5986, ansible_winrm_transport="basic")
    request = host_request(FleetPlan(inventory=Path("i")), _settings(), host, "w", Path("r"))
    assert request.winrm_options is not None
    assert request.winrm_options.transport == "basic"


def test_folder_names_are_safe_and_unique() -> None:
    """Hosts get folder names without slashes, unique ignoring case, never the fleet's files."""
    hosts = [_host("a/b"), _host("a_b"), _host("A_B"), _host("fleet.json"), _host("..")]
    names = folder_names(hosts)
    assert list(names.values()) == ["a_b", "a_b-2", "A_B-3", "host-fleet.json", "host"]


# -- scheduling -------------------------------------------------------------------------------


def _job(name: str) -> HostJob:
    request = RunRequest(target=parse_target(f"ssh://u@{name}:22"))
    return HostJob(_host(name), request, Path("/nonexistent") / name)


def _done(job: HostJob, code: ExitCode = ExitCode.OK) -> HostResult:
    return HostResult(job.host.name, "a", "t", "succeeded", code)


def test_scheduler_runs_at_most_forks_at_once() -> None:
    """With --forks 3, never more than 3 jobs run at the same time, and all 8 run."""
    running, peak, lock = 0, 0, threading.Lock()

    def run(job: HostJob, interrupts: ThreadInterrupts) -> HostResult:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return _done(job)

    jobs = [_job(f"h{n}") for n in range(8)]
    results = Scheduler(jobs, forks=3, run=run, not_started=_done).run()
    assert peak == 3
    assert [r.name for r in results] == [f"h{n}" for n in range(8)]


def test_scheduler_keeps_going_after_a_failing_host() -> None:
    """A host that fails does not stop the hosts after it."""

    def run(job: HostJob, interrupts: ThreadInterrupts) -> HostResult:
        return _done(job, ExitCode.CONNECTION_FAILED if job.host.name == "h0" else ExitCode.OK)

    results = Scheduler(
        [_job(f"h{n}") for n in range(4)], forks=1, run=run, not_started=_done
    ).run()
    assert [r.exit_code for r in results] == [ExitCode.CONNECTION_FAILED] + [ExitCode.OK] * 3


def test_scheduler_survives_a_bug_in_one_host() -> None:
    """A host whose work raises ends with exit 1; the hosts after it still run."""

    def run(job: HostJob, interrupts: ThreadInterrupts) -> HostResult:
        if job.host.name == "h0":
            raise RuntimeError("boom")
        return _done(job)

    results = Scheduler(
        [_job(f"h{n}") for n in range(3)], forks=1, run=run, not_started=_done
    ).run()
    assert [r.exit_code for r in results] == [ExitCode.INTERNAL_ERROR, ExitCode.OK, ExitCode.OK]


def test_scheduler_refuses_zero_forks() -> None:
    """--forks 0 is a usage error."""
    with pytest.raises(errors.UsageError, match="--forks 0"):
        Scheduler([_job("h")], forks=0, run=lambda j, i: _done(j), not_started=_done)


def test_ctrl_c_interrupts_every_running_host_and_starts_no_other() -> None:
    """Ctrl-C raises KeyboardInterrupt in each running host; the others never start."""
    started = threading.Barrier(2)

    def run(job: HostJob, interrupts: ThreadInterrupts) -> HostResult:
        try:
            with interrupts.section():
                started.wait(timeout=5)
                while True:  # a step that waits on its target
                    time.sleep(0.01)
        except KeyboardInterrupt:
            return _done(job, ExitCode.INTERRUPTED)

    def not_started(job: HostJob) -> HostResult:
        return HostResult(job.host.name, "a", "t", "interrupted", ExitCode.INTERRUPTED, "never ran")

    threading.Timer(0.5, _thread.interrupt_main).start()
    jobs = [_job(f"h{n}") for n in range(5)]
    results = Scheduler(jobs, forks=2, run=run, not_started=not_started).run()
    assert [r.exit_code for r in results] == [ExitCode.INTERRUPTED] * 5
    assert [r.message for r in results].count("never ran") == 3


def test_ctrl_c_waits_for_every_host_to_write_its_report() -> None:
    """After Ctrl-C the fleet waits for each host's slow report, never ending under it."""
    started = threading.Barrier(3)

    def run(job: HostJob, interrupts: ThreadInterrupts) -> HostResult:
        try:
            with interrupts.section():
                started.wait(timeout=5)
                while True:
                    time.sleep(0.01)
        except KeyboardInterrupt:
            time.sleep(0.5)  # writing result.json and the journal
            return _done(job, ExitCode.INTERRUPTED)

    threading.Timer(0.3, _thread.interrupt_main).start()
    jobs = [_job(f"h{n}") for n in range(3)]
    results = Scheduler(jobs, forks=3, run=run, not_started=_done).run()
    assert [r.exit_code for r in results] == [ExitCode.INTERRUPTED] * 3


def test_interrupt_never_lands_after_the_section() -> None:
    """A thread that left its section is not interrupted, even when asked."""
    interrupts = ThreadInterrupts()
    left, asked, outcome = threading.Event(), threading.Event(), []

    def worker() -> None:
        with interrupts.section():
            pass
        left.set()
        asked.wait(5)
        try:
            for _ in range(100):
                time.sleep(0.001)
            outcome.append("finished")
        except KeyboardInterrupt:
            outcome.append("interrupted")

    thread = threading.Thread(target=worker)
    thread.start()
    left.wait(5)
    assert interrupts.interrupt_all() == 0
    asked.set()
    thread.join(5)
    assert outcome == ["finished"]


def test_no_section_starts_once_stopping() -> None:
    """After interrupt_all, entering a section raises KeyboardInterrupt at once."""
    interrupts = ThreadInterrupts()
    interrupts.interrupt_all()
    with pytest.raises(KeyboardInterrupt), interrupts.section():
        pass


# -- fleet.json and the table -----------------------------------------------------------------


def test_fleet_record_exit_code_is_the_worst_host(tmp_path: Path) -> None:
    """fleet.json's exit code is the worst host's, with each host's fields."""
    record = FleetRecord(tmp_path / FLEET_FILE, "f1", "run", {}, {})
    record.update(HostResult("a", "10.0.0.1:22", "ssh://u@10.0.0.1:22", "succeeded", ExitCode.OK))
    record.update(
        HostResult("b", "10.0.0.2:22", "ssh://u@10.0.0.2:22", "failed", ExitCode(5), "step x")
    )
    assert record.finish() is ExitCode.FAILED_BEFORE_POINT_OF_NO_RETURN
    data = json.loads((tmp_path / FLEET_FILE).read_text())
    assert (data["exit_code"], data["status"]) == (5, "failed")
    assert data["hosts"][1] | {"finished_at": None} == {
        "name": "b",
        "address": "10.0.0.2:22",
        "target": "ssh://u@10.0.0.2:22",
        "status": "failed",
        "exit_code": 5,
        "exit_reason": "failed_before_point_of_no_return",
        "message": "step x",
        "run_dir": None,
        "run_id": None,
        "started_at": None,
        "finished_at": None,
        "earlier_run_dirs": [],
    }


def test_a_host_that_never_ended_makes_the_fleet_interrupted(tmp_path: Path) -> None:
    """A host still pending when the fleet ends counts as interrupted (130)."""
    record = FleetRecord(tmp_path / FLEET_FILE, "f1", "run", {}, {})
    record.update(HostResult("a", "x", "t", "pending"))
    assert record.finish() is ExitCode.INTERRUPTED


def test_table_names_each_host_its_exit_code_and_where_to_look(tmp_path: Path) -> None:
    """The console table has one row per host: name, address, exit, status, folder/message."""
    hosts = [
        HostResult("a", "10.0.0.1:22", "t", "succeeded", ExitCode.OK, "ok", tmp_path / "a"),
        HostResult("bb", "10.0.0.2:22", "t", "failed", ExitCode(4), "refused", tmp_path / "bb"),
    ]
    lines = render_table(hosts, fleet_dir=tmp_path).splitlines()
    assert lines[0].split() == [
        "HOST",
        "ADDRESS",
        "EXIT",
        "STATUS",
        "RUN",
        "FOLDER",
        "/",
        "MESSAGE",
    ]
    assert lines[1].split() == ["a", "10.0.0.1:22", "0", "succeeded", "a"]
    assert lines[2].split() == ["bb", "10.0.0.2:22", "4", "failed", "bb", "refused"]


def test_labelled_stream_prefixes_every_line() -> None:
    """Console lines of a host start with [host], also when written in pieces."""
    out = io.StringIO()
    stream = LabelledStream("web01", out, threading.Lock())
    stream.write("one\ntw")
    stream.write("o\n")
    assert out.getvalue() == "[web01] one\n[web01] two\n"


# -- logging: each host's records in its own run log -----------------------------------------


def test_each_thread_logs_to_its_own_run_log(tmp_path: Path) -> None:
    """Records of two host threads land in their own run logs; others in the fleet log."""
    import structlog

    configure_fleet_logging("json", tmp_path / "fleet.log.jsonl")
    log = structlog.get_logger("agent.test")

    def host(name: str) -> None:
        with host_logging(name, tmp_path / name / "run.log.jsonl"):
            for n in range(20):
                log.info("step", host_name=name, n=n)

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    threads = [threading.Thread(target=host, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    log.info("fleet.own")
    for thread in threads:
        thread.join()
    reset_logging()
    for name in ("a", "b"):
        records = [
            json.loads(line)
            for line in (tmp_path / name / "run.log.jsonl").read_text().splitlines()
        ]
        assert {r["host_name"] for r in records} == {name}
        assert len(records) == 20
    fleet = [
        json.loads(line)["event"]
        for line in (tmp_path / "fleet.log.jsonl").read_text().splitlines()
    ]
    assert fleet == ["fleet.own"]


def test_console_text_lines_carry_the_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In text format a host's console line starts with [host]."""
    import structlog

    configure_fleet_logging("text", None)
    with host_logging("web01", None):
        structlog.get_logger("agent.test").warning("careful")
    assert capsys.readouterr().err.startswith("[web01] ")


def test_console_json_lines_carry_the_host(capsys: pytest.CaptureFixture[str]) -> None:
    """In JSON format a host's console record has a "host" key; run logs do not get it."""
    import structlog

    configure_fleet_logging("json", None)
    with host_logging("web01", None):
        structlog.get_logger("agent.test").warning("careful")
    assert json.loads(capsys.readouterr().err)["host"] == "web01"


# -- whole fleets against hosts that cannot be reached -----------------------------------------


def _unreachable(tmp_path: Path, names: tuple[str, ...] = ("a", "b")) -> Path:
    # One port per host: two hosts on one host:port would share a lock (exit 11).
    lines = "".join(
        f"{n} ansible_host=127.0.0.1 ansible_port={closed_port()} ansible_user=u\n" for n in names
    )
    return _inventory(tmp_path, f"[web]\n{lines}")


def test_every_host_is_recorded_when_all_fail(tmp_path: Path) -> None:
    """Two unreachable hosts: both run, both exit 4 in result.json and fleet.json."""
    plan = FleetPlan(inventory=_unreachable(tmp_path), command="check")
    outcome = run_fleet(plan, _settings(forks=2), tmp_path / "fleet")
    assert outcome.exit_code is ExitCode.CONNECTION_FAILED
    assert [(h.name, h.exit_code) for h in outcome.hosts] == [("a", 4), ("b", 4)]
    for name in ("a", "b"):
        result = json.loads((tmp_path / "fleet" / name / "result.json").read_text())
        assert result["exit_code"] == 4
    assert json.loads((tmp_path / "fleet" / FLEET_FILE).read_text())["exit_code"] == 4


def test_limit_selecting_nothing_is_refused(tmp_path: Path) -> None:
    """--limit that matches no host is an InventoryError (exit 2) and writes nothing."""
    plan = FleetPlan(inventory=_unreachable(tmp_path), limit="db*", command="check")
    with pytest.raises(errors.InventoryError, match="selects no host"):
        run_fleet(plan, _settings(), tmp_path / "fleet")
    assert not (tmp_path / "fleet").exists()


def test_missing_key_file_is_refused_naming_the_inventory_line(tmp_path: Path) -> None:
    """A host's ansible_ssh_private_key_file that does not exist: file:line and host, exit 2."""
    inventory = _inventory(
        tmp_path, "[web:vars]\nansible_user=u\n[web]\nb ansible_ssh_private_key_file=/no/key\n"
    )
    with pytest.raises(errors.InventoryError, match=r"hosts.ini:4: host 'b': ansible_ssh_priv"):
        run_fleet(FleetPlan(inventory=inventory, command="check"), _settings(), tmp_path / "f")


def test_a_fleet_folder_is_never_reused(tmp_path: Path) -> None:
    """--run-dir holding a fleet.json is refused: it is continued with --resume."""
    plan = FleetPlan(inventory=_unreachable(tmp_path, ("a",)), command="check")
    run_fleet(plan, _settings(), tmp_path / "fleet")
    with pytest.raises(errors.RunDirError, match="--resume"):
        run_fleet(plan, _settings(), tmp_path / "fleet")


def test_resume_keeps_successes_and_restarts_a_host_without_a_journal(tmp_path: Path) -> None:
    """--resume FLEET_DIR: a succeeded host is kept; one that failed before its plan runs anew."""
    plan = FleetPlan(inventory=_unreachable(tmp_path), command="check")
    run_fleet(plan, _settings(), tmp_path / "fleet")
    data = json.loads((tmp_path / "fleet" / FLEET_FILE).read_text())
    data["hosts"][0] |= {"exit_code": 0, "status": "succeeded"}  # as if a had succeeded
    (tmp_path / "fleet" / FLEET_FILE).write_text(json.dumps(data))

    outcome = resume_fleet(tmp_path / "fleet", _settings())

    a, b = outcome.hosts
    assert (a.exit_code, a.run_dir) == (ExitCode.OK, tmp_path / "fleet" / "a")
    assert b.run_dir == tmp_path / "fleet" / "b.2"
    assert b.earlier_run_dirs == (tmp_path / "fleet" / "b",)
    assert json.loads((tmp_path / "fleet" / "b.2" / "result.json").read_text())["exit_code"] == 4
    assert len(load_fleet(tmp_path / "fleet").sessions) == 2


def test_host_without_a_login_user_is_refused(tmp_path: Path) -> None:
    """A host with no ansible_user: file:line and host named, exit 2, nothing started."""
    inventory = _inventory(tmp_path, "[web]\na ansible_host=127.0.0.1\n")
    with pytest.raises(errors.InventoryError, match=r"hosts.ini:2: host 'a': no ansible_user"):
        run_fleet(FleetPlan(inventory=inventory, command="check"), _settings(), tmp_path / "f")


def test_inventory_loads_as_the_fleet_reads_it(tmp_path: Path) -> None:
    """The selected hosts come from agent/inventory.py with --limit applied."""
    inventory = _inventory(tmp_path, "[web]\nw[1:3] ansible_host=127.0.0.1\n[db]\nd1\n")
    assert [h.name for h in load_inventory(inventory).select("web:!w2")] == ["w1", "w3"]
