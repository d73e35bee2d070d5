"""Benchmark: one `imageprep run` (generalize) against baselines in the same run.

    sudo .venv/bin/python -m bench.generalize [--repeat N] [--python /usr/bin/python3]

Each measurement uses a fresh disposable Debian target (tests/targets). The baselines run
the very same step commands (taken from `imageprep plan --format json` against the
target) without imageprep:

* one-script: one SSH connection, `sudo bash -s` with every step on stdin: the physical
  limit for this work (performance.md);
* ssh-per-step: a new SSH connection and a sudo per step, the way a naive tool (or
  Ansible without pipelining) pays for each step (up to waagent's deprovisioning, which
  deletes the login user; the rest share one connection);
* ansible-core (defaults, and with pipelining): one `shell` task with `become` per step,
  the same batching as ssh-per-step (once the login user is gone no new login or sudo
  works, so the rest is one task). ansible-core is pip-installed into a venv of its own
  beside this script on first use (bench/.venv-ansible), never into the project's.

    --quick   one run per way: what the test suite runs so that this script cannot rot
    --rtt-ms  reach every target through a loopback relay that delays each direction by
              half of this (bench/latency.py): a link like a CI runner's to a cloud VM,
              where each round trip a way makes costs this much (default 0: direct)
    --python  the Python that imageprep and ansible-core run on (default: this one). Both
              get a venv of their own under bench/, made on first use. The interpreter
              matters: this machine's pyenv CPython is built without PGO/LTO and with a
              shared libpython, and imports a run's code about 20 % slower than Debian's
              own python3 (a PGO/LTO build), which is what a user of Debian 12 runs.

Printed: wall time of the client, time until the target powered off, and imageprep's
own peak resident memory (the largest of its runs). imageprep runs as an installed copy
would: bytecode compiled once, catalog cached (installed_like_env). Numbers are this
machine's; compare the ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.latency import Endpoint, delayed
from tests.targets.commands import strict_ssh_argv
from tests.targets.nspawn import NspawnTarget
from tests.targets.rootfs import ImageSpec, TargetImage, ensure_image

BENCH = Path(__file__).resolve().parent
ANSIBLE_CORE = "ansible-core>=2.17"
POWER_OFF_TIMEOUT = 120.0
LAST_LOGIN_BEFORE = "deprovision/waagent-deprovision"
OURS_WAY = "imageprep run"
LIMIT_WAY = "baseline: one script, one connection"
PIPELINING_WAY = "baseline: ansible-core, pipelining"
# What `imageprep run` and `imageprep fleet` import beyond the offline commands.
RUN_MODULES = ("agent.cli.runs", "agent.runner", "agent.fleet", "agent.executors.ssh.executor")


@dataclass(frozen=True)
class Interpreter:
    """The Python that imageprep and ansible-core run on, each from a venv of its own."""

    python: Path  # of imageprep's venv
    ansible_venv: Path

    @property
    def imageprep(self) -> str:
        return str(self.python.with_name("imageprep"))

    def describe(self) -> str:
        version = subprocess.run(
            [str(self.python), "-c", "import sys; print(sys.version.split()[0], sys.base_prefix)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return f"Python {version[0]} from {version[1]}"


CURRENT = Interpreter(Path(sys.executable), BENCH / ".venv-ansible")
IMAGEPREP = CURRENT.imageprep


def interpreter(python: str | None) -> Interpreter:
    """The venvs for ``--python``: this one's, or new ones under bench/ made on first use."""
    if python is None:
        return CURRENT
    base = Path(python).resolve()
    key = f"{base.name}-{hashlib.sha256(str(base).encode()).hexdigest()[:8]}"
    venv = BENCH / f".venv-imageprep-{key}"
    if not (venv / "bin" / "imageprep").exists():
        _make_venv(base, venv, "-e", str(BENCH.parent))
    return Interpreter(venv / "bin" / "python", BENCH / f".venv-ansible-{key}")


def _make_venv(python: Path, venv: Path, *requirements: str) -> None:
    """A venv of ``python`` at ``venv`` with ``requirements`` pip-installed into it."""
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *requirements], check=True)


@dataclass(frozen=True)
class Phase:
    """A stretch of an imageprep run, from its run log: what the closing notes break down."""

    name: str
    seconds: float


@dataclass(frozen=True)
class Sample:
    client_s: float
    until_off_s: float
    peak_rss_mib: float | None = None  # imageprep's own process (os.wait4), for P6
    phases: tuple[Phase, ...] = ()  # imageprep's runs only


# Each phase of a run ends at the first event of this name in run.log.jsonl after the
# previous phase ended; the last ends when the imageprep process does.
PHASE_ENDS = (
    ("start-up (Python, imports, run folder)", "run.start"),
    ("connect and authenticate", "ssh.connected"),
    ("root shell (sudo) and the VM's lock", "vm_lock.taken"),
    ("facts, plan and journal", "backup.start"),
    ("backup", "backup.end"),
    ("steps, up to the power-off", "step.await_disconnect"),
    ("power-off: until the connection drops", "ssh.closed"),
    ("report and exit", None),
)


def phases_of(run_log: Path, started: float, ended: float) -> tuple[Phase, ...]:
    """The run's PHASE_ENDS, from its log's timestamps and the process's start and end."""
    stamps: list[tuple[str, float]] = []
    for line in run_log.read_text().splitlines():
        event = json.loads(line)
        at = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
        stamps.append((event["event"], at))
    phases, since, index = [], started, 0
    for name, end_event in PHASE_ENDS:
        until = ended
        if end_event is not None:
            index, until = next(
                (i, at) for i, (event, at) in enumerate(stamps) if i >= index and event == end_event
            )
        phases.append(Phase(name, until - since))
        since = until
    return tuple(phases)


def installed_like_env(work: Path, python: Interpreter = CURRENT) -> dict[str, str]:
    """The environment for imageprep as a user has it: bytecode compiled, catalog cached.

    This machine's environment sets PYTHONDONTWRITEBYTECODE and the package is installed
    editable, so every start would compile every module of agent/ (about 0.1-0.2 s, which
    an installed wheel never pays). Compile once into a prefix under ``work`` and keep the
    catalog cache there too; the user's own directories are not touched.
    """
    env = {
        **os.environ,
        "PYTHONPYCACHEPREFIX": str(work / "pycache"),
        "XDG_CACHE_HOME": str(work / "cache"),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("IMAGEPREP_NO_CACHE", None)
    package = BENCH.parent / "agent"
    compile_all = [str(python.python), "-m", "compileall", "-q", str(package)]
    subprocess.run(compile_all, env=env, check=True)
    # The libraries a run imports (paramiko, fabric, invoke, cryptography, ...) compile
    # into the same prefix on their first import: import them once here, not in the first
    # measured run.
    imports = [str(python.python), "-c", f"import {', '.join(RUN_MODULES)}"]
    subprocess.run(imports, env=env, check=True)
    subprocess.run(
        [python.imageprep, "plan", "--profile", "debian"], env=env, check=True, capture_output=True
    )  # fills the catalog cache
    return env


@dataclass(frozen=True)
class Route:
    """How a way reaches its target: directly, or through a relay that adds latency."""

    target: NspawnTarget
    host: str
    port: int
    known_hosts: Path

    def key_args(self) -> list[str]:
        return [
            "--target",
            f"ssh://{self.target.user}@{self.host}:{self.port}",
            "--identity",
            str(self.target.key_path),
            "--known-hosts",
            str(self.known_hosts),
        ]

    def ssh_command(self, *remote: str) -> list[str]:
        return strict_ssh_argv(
            key=self.target.key_path,
            port=self.port,
            known_hosts=self.known_hosts,
            login=f"{self.target.user}@{self.host}",
            remote=remote,
        )


@contextmanager
def route_to(target: NspawnTarget, rtt: float) -> Iterator[Route]:
    """The target itself, or with rtt > 0 a DelayProxy on loopback in front of it (whose
    address gets a known_hosts of its own: clients look keys up by [host]:port)."""
    with delayed(Endpoint(target.host, target.port), rtt) as end:
        known_hosts = target.known_hosts_path
        if end.host != target.host:
            known_hosts = known_hosts.with_name("known_hosts.delayed")
            keys = target.image.host_public_keys()
            known_hosts.write_text("".join(f"[{end.host}]:{end.port} {k}\n" for k in keys))
        yield Route(target, end.host, end.port, known_hosts)


def route_direct(target: NspawnTarget) -> Route:
    return Route(target, target.host, target.port, target.known_hosts_path)


@dataclass(frozen=True)
class PlannedCommand:
    key: str
    command: str


def _planned_commands(target: NspawnTarget) -> list[PlannedCommand]:
    """The commands a generalize run executes on this target, in order."""
    completed = subprocess.run(
        [
            IMAGEPREP,
            "plan",
            *route_direct(target).key_args(),
            "--format",
            "json",
            "--log-format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    plan = json.loads(completed.stdout)
    return [
        PlannedCommand(f"{s['phase']}/{s['name']}", s["command"])
        for s in plan["steps"]
        if s["skip_reason"] is None and s["condition"] is not False
    ]


def _as_one_script(commands: list[PlannedCommand]) -> bytes:
    # Out of the login user's home first, as imageprep's root shell does: waagent deletes
    # it, and every later bash would complain that its directory is gone.
    return (
        "cd /\n"
        + "".join(
            f"bash <<'IMAGEPREP_BENCH_{i}'\n{c.command}\nIMAGEPREP_BENCH_{i}\n"
            for i, c in enumerate(commands)
        )
    ).encode()


def _timed(target: NspawnTarget, client: Callable[[], None]) -> Sample:
    started = time.monotonic()
    client()
    client_done = time.monotonic()
    if not target.wait_stopped(POWER_OFF_TIMEOUT):
        raise RuntimeError(f"{target.name} did not power off")
    until_off = time.monotonic() - started
    # A way that failed half-way would look fast: each one must leave a generalized disk.
    if (
        target.guest_path("/etc/machine-id").read_text() != ""
        or target.guest_path(f"/home/{target.user}").exists()
    ):
        raise RuntimeError(f"{target.name} powered off but is not generalized")
    return Sample(client_done - started, until_off)


def run_imageprep(
    image: TargetImage,
    work: Path,
    env: dict[str, str],
    python: Interpreter = CURRENT,
    rtt: float = 0.0,
) -> Sample:
    with NspawnTarget(image) as target, route_to(target, rtt) as route:
        backups = work / "backups"
        run_dir = work / f"run-{time.monotonic_ns()}"
        peak: list[float] = []
        wall: list[float] = []

        def client() -> None:
            argv = [
                python.imageprep,
                "run",
                *route.key_args(),
                "--backup",
                f"archive:{backups}",
                "--run-dir",
                str(run_dir),
                "--log-format",
                "json",
            ]
            wall.append(time.time())
            process = subprocess.Popen(
                argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            assert process.stderr is not None
            stderr = process.stderr.read()
            # wait4: imageprep's own peak RSS, not the largest of every child so far.
            _, status, usage = os.wait4(process.pid, 0)
            wall.append(time.time())
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                raise RuntimeError(f"imageprep exited {process.returncode}: {stderr[-2000:]!r}")
            peak.append(usage.ru_maxrss / 1024)

        sample = _timed(target, client)
        phases = phases_of(run_dir / "run.log.jsonl", *wall)
        return Sample(sample.client_s, sample.until_off_s, peak[0], phases)


def run_one_script(image: TargetImage, rtt: float = 0.0) -> Sample:
    with NspawnTarget(image) as target, route_to(target, rtt) as route:
        script = _as_one_script(_planned_commands(target))

        def client() -> None:
            subprocess.run(
                route.ssh_command("sudo", "bash", "-s"),
                input=script,
                stdout=subprocess.DEVNULL,  # as imageprep's, which keeps it in its run folder
                check=False,
            )

        return _timed(target, client)


def run_ssh_per_step(image: TargetImage, rtt: float = 0.0) -> Sample:
    with NspawnTarget(image) as target, route_to(target, rtt) as route:
        commands = _planned_commands(target)
        # Once waagent ran the login user is gone (the "handshake failed" Packer users
        # meet) and then the host keys go too, so from that step on everything has to
        # share one connection.
        first = next(i for i, c in enumerate(commands) if c.key == LAST_LOGIN_BEFORE)
        batches = [_as_one_script([c]) for c in commands[:first]]
        batches.append(_as_one_script(commands[first:]))

        def client() -> None:
            for batch in batches:
                subprocess.run(
                    route.ssh_command("sudo", "bash", "-s"),
                    input=batch,
                    capture_output=True,
                    check=False,
                )

        return _timed(target, client)


def _ansible_playbook(python: Interpreter) -> Path:
    """ansible-playbook from its venv (bench/.venv-ansible*), installed there on first use."""
    venv = python.ansible_venv
    playbook = venv / "bin" / "ansible-playbook"
    if not playbook.exists():
        _make_venv(python.python, venv, ANSIBLE_CORE)
    return playbook


def _ansible_tasks(commands: list[PlannedCommand]) -> list[dict[str, object]]:
    first = next(i for i, c in enumerate(commands) if c.key == LAST_LOGIN_BEFORE)
    singles = [(c.key, _as_one_script([c]).decode()) for c in commands[:first]]
    rest = ("rest of the run, one task", _as_one_script(commands[first:]).decode())
    return [
        {
            "name": name,
            # Ansible renders task arguments as Jinja: `${#x}` in a script opens a comment.
            "ansible.builtin.shell": {
                "cmd": "{% raw %}" + script + "{% endraw %}",
                "executable": "/bin/bash",
            },
            "become": True,
            # Like the other baselines, a failing step does not stop the run.
            "ignore_errors": True,
        }
        for name, script in [*singles, rest]
    ]


def run_ansible(
    image: TargetImage,
    work: Path,
    *,
    pipelining: bool,
    python: Interpreter = CURRENT,
    rtt: float = 0.0,
) -> Sample:
    ansible_playbook = _ansible_playbook(python)
    with NspawnTarget(image) as target, route_to(target, rtt) as route:
        folder = Path(tempfile.mkdtemp(prefix="ansible-", dir=work))
        playbook = folder / "generalize.yml"
        playbook.write_text(
            json.dumps(
                [
                    {
                        "hosts": "target",
                        "gather_facts": False,
                        "tasks": _ansible_tasks(_planned_commands(target)),
                    }
                ]
            )
        )
        inventory = folder / "inventory.ini"
        inventory.write_text(
            f"target ansible_host={route.host} ansible_port={route.port}"
            f" ansible_user={target.user} ansible_ssh_private_key_file={target.key_path}\n"
        )
        env = {
            **os.environ,
            "ANSIBLE_PIPELINING": "true" if pipelining else "false",
            "ANSIBLE_HOST_KEY_CHECKING": "true",
            "ANSIBLE_SSH_ARGS": (
                "-F none -o ControlMaster=auto -o ControlPersist=60s"
                f" -o UserKnownHostsFile={route.known_hosts} -o StrictHostKeyChecking=yes"
            ),
            "ANSIBLE_CONTROL_PATH_DIR": str(folder / "cp"),
            "ANSIBLE_LOCAL_TEMP": str(folder / "tmp"),
            "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
            "ANSIBLE_NOCOLOR": "1",
        }

        def client() -> None:
            subprocess.run(
                [str(ansible_playbook), "-i", str(inventory), str(playbook)],
                capture_output=True,
                check=False,
                env=env,
            )

        return _timed(target, client)


def _median(samples: list[Sample]) -> Sample:
    peaks = [s.peak_rss_mib for s in samples if s.peak_rss_mib is not None]
    return Sample(
        statistics.median(s.client_s for s in samples),
        statistics.median(s.until_off_s for s in samples),
        max(peaks) if peaks else None,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per way (median is shown)")
    parser.add_argument("--quick", action="store_true", help="one run per way")
    parser.add_argument(
        "--python", help="the Python imageprep and ansible-core run on (default: this one)"
    )
    parser.add_argument(
        "--rtt-ms", type=float, default=0.0, help="round-trip time added to every link [0]"
    )
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    python = interpreter(args.python)
    rtt = args.rtt_ms / 1000
    print(f"imageprep and ansible-core run on {python.describe()}")
    if rtt:
        print(f"every way reaches its target over a link of {args.rtt_ms:g} ms round trip")
    image = ensure_image(ImageSpec())
    with tempfile.TemporaryDirectory(prefix="imageprep-bench-") as tmp:
        work = Path(tmp)
        env = installed_like_env(work, python)
        ways: dict[str, Callable[[], Sample]] = {
            OURS_WAY: lambda: run_imageprep(image, work, env, python, rtt),
            LIMIT_WAY: lambda: run_one_script(image, rtt),
            "baseline: ssh + sudo per step": lambda: run_ssh_per_step(image, rtt),
            "baseline: ansible-core, defaults": lambda: run_ansible(
                image, work, pipelining=False, python=python, rtt=rtt
            ),
            PIPELINING_WAY: lambda: run_ansible(
                image, work, pipelining=True, python=python, rtt=rtt
            ),
        }
        samples: dict[str, list[Sample]] = {name: [] for name in ways}
        for _ in range(repeat):  # alternate the ways, so drift of the host hits all alike
            for name, way in ways.items():
                samples[name].append(way())
        results = {name: _median(taken) for name, taken in samples.items()}
    limit = results[LIMIT_WAY]
    print(
        f"{'way (median of ' + str(repeat) + ')':<40} {'client':>8} {'x limit':>8}"
        f" {'powered off':>12} {'x limit':>8}"
    )
    for name, sample in results.items():
        print(
            f"{name:<40} {sample.client_s:7.2f}s {sample.client_s / limit.client_s:7.1f}x"
            f" {sample.until_off_s:11.2f}s {sample.until_off_s / limit.until_off_s:7.1f}x"
        )
    ours = results[OURS_WAY].until_off_s
    piped = results[PIPELINING_WAY].until_off_s
    print(
        f"P1 imageprep / one script until powered off: {ours / limit.until_off_s:.2f}x"
        " (goal <= 1.3x)"
    )
    print(
        f"P2 ansible with pipelining / imageprep until powered off: {piped / ours:.1f}x"
        " (goal >= 6x)"
    )
    # A busy host only ever adds time, so each way's fastest run is the closest to what it
    # costs itself (with one run per way, the same as above); the medians stay the measure
    # the goals are judged by.
    fastest = {name: min(s.until_off_s for s in taken) for name, taken in samples.items()}
    ours_best = fastest[OURS_WAY]
    print(
        f"fastest run of each way: P1 {ours_best / fastest[LIMIT_WAY]:.2f}x,"
        f" P2 {fastest[PIPELINING_WAY] / ours_best:.1f}x"
        f" (imageprep {ours_best:.2f}s, one script {fastest[LIMIT_WAY]:.2f}s)"
    )
    # The ways of a round run one after another, so each round's own ratio is the least
    # touched by the host's drift over minutes; their spread says how far to trust all this.
    p1 = _per_round(samples[OURS_WAY], samples[LIMIT_WAY])
    p2 = _per_round(samples[PIPELINING_WAY], samples[OURS_WAY])
    print(
        f"per round: P1 median {statistics.median(p1):.2f}x ({p1[0]:.2f} to {p1[-1]:.2f}),"
        f" P2 median {statistics.median(p2):.1f}x ({p2[0]:.1f} to {p2[-1]:.1f})"
    )
    peak = results[OURS_WAY].peak_rss_mib
    print(f"P6 imageprep's own peak RSS: {peak:.0f} MiB (goal <= 60)")
    _print_phases(samples[OURS_WAY])
    return 0


def _per_round(numerators: list[Sample], denominators: list[Sample]) -> list[float]:
    """Each round's ratio of the two ways' times until powered off, smallest first."""
    return sorted(
        n.until_off_s / d.until_off_s for n, d in zip(numerators, denominators, strict=True)
    )


def _print_phases(runs: list[Sample]) -> None:
    """Where the time of imageprep's median run (until powered off) went."""
    middle = sorted(runs, key=lambda s: s.until_off_s)[(len(runs) - 1) // 2]
    print(f"imageprep's median run ({middle.until_off_s:.2f}s until powered off), from its log:")
    for phase in middle.phases:
        print(f"  {phase.name:<40} {phase.seconds * 1000:6.0f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
