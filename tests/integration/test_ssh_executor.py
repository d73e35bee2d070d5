"""SshExecutor against real targets (tests/integration/conftest.py): a real sshd, sudo
and bash in a disposable Debian guest; no mocks of paramiko.

``target.user`` logs in with a key and has NOPASSWD sudo; ``target.builder_user`` logs in
with a password and sudo asks for it.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import paramiko
import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.errors import (
    AuthenticationError,
    CommandTimeout,
    ConnectError,
    Disconnected,
    HostKeyError,
    PrivilegeError,
    TransferError,
)
from agent.executors.ssh import SshExecutor, SshOptions
from agent.executors.ssh.rootshell import RAW_SCRIPT_MAX
from agent.secrets import Secret
from agent.targets import parse_target
from tests.integration.conftest import TargetFactory
from tests.targets.nspawn import NspawnTarget
from tests.targets.rootfs import TargetImage

pytestmark = pytest.mark.integration

MIB = 1 << 20
Policy = Literal["strict", "accept-new"]


@pytest.fixture(scope="module")
def target(target_image: TargetImage) -> Iterator[NspawnTarget]:
    """One booted target for the tests that leave it as they found it (a boot costs seconds).

    The tests that change it, look at what /run holds or fail an SSH login (OpenSSH 9.8
    and newer penalise the client's address for that) start their own (target_factory).
    """
    with NspawnTarget(target_image) as shared:
        yield shared


# -- helpers ------------------------------------------------------------------------------


def key_executor(
    t: NspawnTarget, *, known_hosts: Path | None = None, host_key_policy: Policy = "strict"
) -> SshExecutor:
    return SshExecutor(
        parse_target(f"ssh://{t.user}@{t.host}:{t.port}"),
        SshOptions(
            identity=t.key_path,
            known_hosts=known_hosts or t.known_hosts_path,
            host_key_policy=host_key_policy,
            use_agent=False,
        ),
    )


def builder_executor(
    t: NspawnTarget, password: str | None = None, sudo: str | None = None
) -> SshExecutor:
    login = Secret(password or t.builder_password, source="env:TEST_PASSWORD")
    return SshExecutor(
        parse_target(f"ssh://{t.builder_user}@{t.host}:{t.port}"),
        SshOptions(
            password=login,
            sudo_password=Secret(sudo or t.builder_password, source="env:TEST_SUDO"),
            known_hosts=t.known_hosts_path,
            use_agent=False,
        ),
    )


def host_entry_name(t: NspawnTarget) -> str:
    return t.host if t.port == 22 else f"[{t.host}]:{t.port}"


def remote_processes(ex: SshExecutor, pattern: str) -> str:
    return ex.run(f"pgrep -a -f '{pattern}' || true", become=True).stdout


# -- connecting and authenticating --------------------------------------------------------


def test_key_auth_runs_command(target: NspawnTarget) -> None:
    """An identity file logs in and a command's stdout, stderr and exit code come back."""
    with key_executor(target) as ex:
        result = ex.run("id -un; echo oops >&2; exit 3")
    assert (target.user + "\n", "oops\n", 3) == (result.stdout, result.stderr, result.exit_code)


def test_password_auth_via_secret(target: NspawnTarget) -> None:
    """A password from a Secret logs in."""
    with builder_executor(target) as ex:
        assert target.builder_user + "\n" == ex.run("id -un").stdout


def test_wrong_password_is_authentication_error(target_factory: TargetFactory) -> None:
    """A wrong password raises AuthenticationError naming user@host and the methods tried."""
    target = target_factory()
    with pytest.raises(AuthenticationError) as caught:
        builder_executor(target, password="not-the-password").connect()  # noqa: S106
    message = str(caught.value)
    assert f"{target.builder_user}@{target.host}:{target.port}" in message
    assert "password (env:TEST_PASSWORD)" in message
    assert "not-the-password" not in message


def test_user_ssh_config_is_ignored(
    target: NspawnTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ~/.ssh/config that would redirect the connection has no effect."""
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(
        "Host *\n  HostName 192.0.2.1\n  Port 1\n  User nobody\n  ProxyCommand false\n"
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    with key_executor(target) as ex:
        assert ex.run("id -un").stdout == target.user + "\n"


def test_unreachable_port_is_connect_error(target: NspawnTarget) -> None:
    """Nothing listening on the port raises ConnectError."""
    options = SshOptions(use_agent=False, connect_timeout=5, known_hosts=target.known_hosts_path)
    executor = SshExecutor(parse_target(f"ssh://{target.user}@{target.host}:1"), options)
    with pytest.raises(ConnectError, match="refused"):
        executor.connect()


def test_connecting_does_not_load_the_idna_codec(target: NspawnTarget) -> None:
    """An ASCII host costs no encodings.idna import (about 3 ms of start-up; tcp.py)."""
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from agent.executors.ssh import SshExecutor, SshOptions\n"
        "from agent.targets import parse_target\n"
        f"url = 'ssh://{target.user}@{target.host}:{target.port}'\n"
        f"options = SshOptions(identity=Path({str(target.key_path)!r}), "
        f"known_hosts=Path({str(target.known_hosts_path)!r}), use_agent=False)\n"
        "with SshExecutor(parse_target(url), options) as ex:\n"
        "    assert ex.run('true').ok\n"
        "print('encodings.idna' in sys.modules)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    # structlog's default set-up prints the events on stdout first.
    assert completed.stdout.splitlines()[-1:] == ["False"], completed.stderr[-2000:]


@pytest.mark.parametrize("become", [False, True], ids=["login", "root"])
def test_exit_code_and_both_streams_come_back(target: NspawnTarget, become: bool) -> None:
    """A failing command's exit code, stdout and stderr (127 line included) come back."""
    with key_executor(target) as ex:
        result = ex.run("echo out; echo err >&2\nnosuchcmd\nexit 3", become=become)
    assert (result.exit_code, result.stdout) == (3, "out\n")
    assert result.stderr.startswith("err\n")
    assert result.stderr.endswith("line 2: nosuchcmd: command not found\n")


# -- host keys ----------------------------------------------------------------------------


def test_unknown_host_key_strict_is_host_key_error(
    target_factory: TargetFactory, tmp_path: Path
) -> None:
    """Under the strict policy a host missing from known_hosts is refused with its fingerprint."""
    target = target_factory()
    known = tmp_path / "known_hosts"
    with pytest.raises(HostKeyError, match=r"is not in .*known_hosts \(fingerprint SHA256:"):
        key_executor(target, known_hosts=known).connect()
    assert not known.exists()


def test_accept_new_records_key_then_strict_passes(target: NspawnTarget, tmp_path: Path) -> None:
    """accept-new writes the host key (0600, [host]:port) and a later strict connect passes."""
    known = tmp_path / "sub" / "known_hosts"
    with key_executor(target, known_hosts=known, host_key_policy="accept-new") as ex:
        ex.run("true")
    assert known.stat().st_mode & 0o777 == 0o600
    assert known.read_text().startswith(host_entry_name(target) + " ")
    with key_executor(target, known_hosts=known) as ex:
        assert ex.run("true").exit_code == 0


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_changed_host_key_is_refused(
    target_factory: TargetFactory, tmp_path: Path, policy: Policy
) -> None:
    """A host whose key differs from the known one is refused under both policies."""
    target = target_factory()
    impostor = paramiko.Ed25519Key.from_private_key(io.StringIO(_new_ed25519_private_key()))
    known = tmp_path / "known_hosts"
    known.write_text(f"{host_entry_name(target)} ssh-ed25519 {impostor.get_base64()}\n")
    before = known.read_text()
    with pytest.raises(HostKeyError) as caught:
        key_executor(target, known_hosts=known, host_key_policy=policy).connect()
    message = str(caught.value)
    assert "CHANGED" in message
    assert str(known) in message
    assert impostor.fingerprint in message
    assert message.count("SHA256:") == 2
    assert before == known.read_text()


def _new_ed25519_private_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()


def test_hashed_known_hosts_entries_are_read(target: NspawnTarget, tmp_path: Path) -> None:
    """known_hosts hashed by ssh-keygen -H still verifies the host."""
    known = tmp_path / "known_hosts"
    shutil.copy(target.known_hosts_path, known)
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    assert host_entry_name(target) not in known.read_text()
    with key_executor(target, known_hosts=known) as ex:
        assert ex.run("true").exit_code == 0


def test_host_known_only_by_rsa_key_is_verified_against_it(
    target: NspawnTarget, tmp_path: Path
) -> None:
    """With only the host's RSA key known, RSA is negotiated (not refused as changed)."""
    rsa_lines = [
        line for line in target.known_hosts_path.read_text().splitlines() if " ssh-rsa " in line
    ]
    if not rsa_lines:
        pytest.skip("the target's known_hosts lists no RSA key")
    known = tmp_path / "known_hosts"
    known.write_text("\n".join(rsa_lines) + "\n")
    with key_executor(target, known_hosts=known) as ex:
        assert ex.run("true").exit_code == 0


# -- output -------------------------------------------------------------------------------

_BOTH_STREAMS = (
    "( head -c {n} /dev/zero | tr '\\0' o ) & ( head -c {n} /dev/zero | tr '\\0' e >&2 ) & wait"
)


@pytest.mark.parametrize("become", [False, True], ids=["login", "root"])
def test_4mib_stdout_and_stderr_complete(target: NspawnTarget, become: bool) -> None:
    """4 MiB on stdout and 4 MiB on stderr at once do not stall and arrive complete."""
    with key_executor(target) as ex:
        result = ex.run(_BOTH_STREAMS.format(n=4 * MIB), become=become, timeout=60)
    assert (len(result.stdout), len(result.stderr)) == (4 * MIB, 4 * MIB)
    assert (result.stdout_bytes, result.stderr_bytes) == (4 * MIB, 4 * MIB)
    assert {"o"} == set(result.stdout)
    assert {"e"} == set(result.stderr)


@pytest.mark.parametrize("become", [False, True], ids=["login", "root"])
def test_stdout_sink_receives_exact_bytes(target: NspawnTarget, become: bool) -> None:
    """stdout_sink gets the command's binary stdout byte for byte."""
    script = (
        'f=$(mktemp); head -c 3000000 /dev/urandom >"$f"\n'
        'sha256sum <"$f" | cut -d\' \' -f1 >&2; cat "$f"; rm -f "$f"\n'
    )
    sink = io.BytesIO()
    with key_executor(target) as ex:
        result = ex.run(script, become=become, stdout_sink=sink)
    assert 3_000_000 == len(sink.getvalue()) == result.stdout_bytes
    assert result.stdout == ""
    assert result.stderr.strip() == hashlib.sha256(sink.getvalue()).hexdigest()


@pytest.mark.parametrize("become", [False, True], ids=["login", "root"])
def test_on_output_sees_both_streams(target: NspawnTarget, become: bool) -> None:
    """on_output receives decoded chunks of stdout and stderr as they arrive."""
    seen: dict[str, str] = {"stdout": "", "stderr": ""}

    def record(stream: str, text: str) -> None:
        seen[stream] += text

    with key_executor(target) as ex:
        ex.run("printf 'héllo\\n'; printf 'wörld' >&2", become=become, on_output=record)
    assert seen == {"stdout": "héllo\n", "stderr": "wörld"}


# A script with its own here-document, a line like the root shell's delimiters, non-ASCII
# text and no final newline; padded past RAW_SCRIPT_MAX it takes the file path instead.
_AWKWARD = "cat <<'EOF'\nIPH-x $HOME \\ é\nEOF\nprintf end"


@pytest.mark.parametrize("padding", [0, RAW_SCRIPT_MAX], ids=["raw", "file"])
def test_root_scripts_run_as_written_short_or_long(target: NspawnTarget, padding: int) -> None:
    """A root script's text reaches bash unchanged, whether sent raw or through a file."""
    with key_executor(target) as ex:
        result = ex.run("#" * padding + "\n" + _AWKWARD, become=True)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "IPH-x $HOME \\ é\nend", "")


def test_a_long_root_script_does_not_stay_on_the_target(target_factory: TargetFactory) -> None:
    """The file a long script was written to is emptied once it ran (it may hold secrets)."""
    target = target_factory()
    with key_executor(target) as ex:
        ex.run("#" * RAW_SCRIPT_MAX + "\n: secret-4711", become=True)
        left = ex.run("cat /run/imageprep-*/step", become=True)
    assert (left.exit_code, left.stdout) == (0, "")


@pytest.mark.parametrize("become", [False, True], ids=["login", "root"])
def test_script_cannot_read_itself_from_stdin(target: NspawnTarget, become: bool) -> None:
    """A command reading stdin gets EOF, not the rest of the script."""
    with key_executor(target) as ex:
        result = ex.run("cat\necho after", become=become)
    assert result.stdout == "after\n"


@pytest.mark.parametrize("become", [False, True], ids=["login", "root"])
def test_timeout_kills_the_remote_process(target: NspawnTarget, become: bool) -> None:
    """Past its timeout a command raises CommandTimeout with partial output and is gone."""
    marker = f"{secrets.randbelow(10_000) + 40_000}"
    started = time.monotonic()
    with key_executor(target) as ex:
        with pytest.raises(CommandTimeout) as caught:
            ex.run(f"echo partial; sleep {marker}", become=become, timeout=1)
        # Far below the sleep's own length, with room for a starved CI worker.
        assert time.monotonic() - started < 30
        assert caught.value.stdout == "partial\n"
        assert remote_processes(ex, f"^sleep {marker}$") == ""
        assert ex.run("id -u", become=True).stdout == "0\n"  # the root shell is still usable


@pytest.mark.parametrize(
    "script",
    ["sleep {marker} & sleep {marker}", "trap '' TERM; sleep {marker}"],
    ids=["background-child", "term-ignored"],
)
def test_a_timed_out_root_step_leaves_no_process(target: NspawnTarget, script: str) -> None:
    """The timer kills the step's whole group (children in the background too), as
    timeout(1) does; a step that ignores TERM gets KILL KILL_AFTER seconds later."""
    marker = f"{secrets.randbelow(10_000) + 50_000}"
    with key_executor(target) as ex:
        with pytest.raises(CommandTimeout):
            ex.run(script.format(marker=marker), become=True, timeout=1)
        assert remote_processes(ex, f"^sleep {marker}$") == ""


def test_after_a_kill_the_next_root_step_is_timed_by_the_same_shell(
    target: NspawnTarget,
) -> None:
    """The timer stays in step with the shell after a KILL: the next timeout is its too.

    Had the shell's timer lost count, the next step would run on until the client gave up
    (CLIENT_GRACE later), which marks the shell broken and opens a second one.
    """
    with structlog.testing.capture_logs() as logs, key_executor(target) as ex:
        with pytest.raises(CommandTimeout):
            ex.run("trap '' TERM; sleep 600", become=True, timeout=1)
        with pytest.raises(CommandTimeout):
            ex.run("sleep 600", become=True, timeout=1)
        assert ex.run("id -u", become=True).stdout == "0\n"
    assert sum(1 for e in logs if e["event"] == "ssh.root_shell_opened") == 1


def test_a_root_step_that_exits_zero_on_term_is_still_a_timeout(target: NspawnTarget) -> None:
    """The shell knows its timer fired: a step that ends 'well' when killed timed out."""
    with key_executor(target) as ex, pytest.raises(CommandTimeout):
        ex.run("trap 'exit 0' TERM; sleep 600 & wait", become=True, timeout=1)


def test_a_root_step_outliving_its_shell_is_still_killed_at_its_time(
    target_factory: TargetFactory,
) -> None:
    """The shell killed mid-step (its timer reads end of input): the step still dies."""
    target = target_factory()
    marker = f"{secrets.randbelow(10_000) + 70_000}"
    with key_executor(target) as ex:
        with pytest.raises(Disconnected):
            # Mid-step: the shell has handed the step to its timer (it does so just after
            # starting it; a shell killed in between would leave the step untimed).
            ex.run(
                f"exec >/dev/null 2>&1; sleep 0.5; kill -KILL $$; sleep {marker}",
                become=True,
                timeout=3,
            )
        deadline = time.monotonic() + 20
        while remote_processes(ex, f"^sleep {marker}$") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert remote_processes(ex, f"^sleep {marker}$") == ""


def test_each_root_step_gets_its_own_time(target: NspawnTarget) -> None:
    """A short timeout of an earlier step, ended in time, does not cut the next one short."""
    with key_executor(target) as ex:
        assert ex.run("true", become=True, timeout=0.5).exit_code == 0
        result = ex.run("sleep 1.5; echo whole", become=True, timeout=30)
    assert (result.exit_code, result.stdout) == (0, "whole\n")


def test_root_steps_are_subshells_of_one_shell(target: NspawnTarget) -> None:
    """Every root step is a process of its own whose $$ is the one root shell's."""
    with key_executor(target) as ex:
        first, second = (
            ex.run('echo "$$ $BASHPID"', become=True, timeout=30).stdout.split() for _ in range(2)
        )
    assert first[0] == second[0]
    assert len({first[0], first[1], second[1]}) == 3


def test_what_a_root_step_changes_ends_with_it(target: NspawnTarget) -> None:
    """A step's variables, options and directory do not reach the next step."""
    with key_executor(target) as ex:
        ex.run("cd /etc; set -u; leftover=1; exit 3", become=True, timeout=30)
        result = ex.run(
            'echo "$PWD ${leftover:-unset} $-"; echo "$undefined_is_fine"',
            become=True,
            timeout=30,
        )
    assert result.exit_code == 0
    pwd, leftover, flags = result.stdout.splitlines()[0].split()
    assert (pwd, leftover, "u" in flags, "m" in flags) == ("/", "unset", False, False)


# -- become -------------------------------------------------------------------------------


def test_become_with_nopasswd_sudo(target: NspawnTarget) -> None:
    """become=True runs as root through NOPASSWD sudo."""
    with key_executor(target) as ex:
        assert ex.run("id -u", become=True).stdout == "0\n"


def test_become_with_sudo_password_authenticates_once(target: NspawnTarget) -> None:
    """With a sudo password, several root commands share one root shell (one sudo check)."""
    with structlog.testing.capture_logs() as logs, builder_executor(target) as ex:
        results = [ex.run("id -u; echo $PPID", become=True) for _ in range(3)]
    assert {"0"} == {r.stdout.split()[0] for r in results}
    assert len({r.stdout.split()[1] for r in results}) == 1
    assert sum(1 for e in logs if e["event"] == "ssh.root_shell_opened") == 1


def test_wrong_sudo_password_is_privilege_error(target_factory: TargetFactory) -> None:
    """A wrong sudo password raises PrivilegeError quoting sudo, never the password."""
    target = target_factory()
    wrong = "wrong-" + secrets.token_hex(6)
    with builder_executor(target, sudo=wrong) as ex:
        with pytest.raises(PrivilegeError) as caught:
            ex.run("id -u", become=True)
        assert ex.run("true").exit_code == 0  # the login session is unaffected
    assert "Sorry, try again" in str(caught.value)
    assert wrong not in str(caught.value)


def test_become_survives_login_user_deletion(target_factory: TargetFactory) -> None:
    """Root commands keep working after the login user was deleted mid-run."""
    target = target_factory()
    with key_executor(target) as ex:
        ex.run("true", become=True)
        deleted = ex.run(f"userdel -f -r {target.user}", become=True)
        assert deleted.exit_code == 0, deleted.stderr
        gone = ex.run(f"getent passwd {target.user}", become=True)
        again = ex.run("id -u && pwd", become=True)
    assert gone.exit_code == 2
    assert (again.stdout, again.stderr) == ("0\n/\n", "")


def test_close_removes_the_root_shell_directory(target_factory: TargetFactory) -> None:
    """close() exits the root shell and removes its /run directory."""
    target = target_factory()
    with key_executor(target) as ex:
        # The shell's directory, by its nonce (a short script runs from /dev/fd, not it).
        run_dir = ex.run("ls -d /run/imageprep-*/", become=True).stdout.strip().rstrip("/")
    assert run_dir.startswith("/run/imageprep-")
    with key_executor(target) as ex:
        assert ex.run(f"test -e {run_dir}", become=True).exit_code == 1


# -- files --------------------------------------------------------------------------------


def test_put_and_get_round_trip(target: NspawnTarget, tmp_path: Path) -> None:
    """put creates the file with the given mode and get brings back the same bytes."""
    local = tmp_path / "data.bin"
    local.write_bytes(os.urandom(300_000))
    remote = f"/tmp/imageprep-test-{secrets.token_hex(4)}"
    with key_executor(target) as ex:
        ex.put(local, remote, mode=0o640)
        mode = ex.run(f"stat -c %a {remote}").stdout.strip()
        ex.get(remote, tmp_path / "back.bin")
        ex.run(f"rm -f {remote}")
    assert mode == "640"
    assert local.read_bytes() == (tmp_path / "back.bin").read_bytes()


def test_get_of_missing_file_is_transfer_error(target: NspawnTarget, tmp_path: Path) -> None:
    """A failed download raises TransferError and leaves no local file behind."""
    with key_executor(target) as ex, pytest.raises(TransferError, match="No such file"):
        ex.get("/nonexistent/file", tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


# -- disconnects --------------------------------------------------------------------------


def test_disconnected_when_target_powers_off(target_factory: TargetFactory) -> None:
    """A target powering off mid-command raises Disconnected; wait_disconnected confirms it."""
    target = target_factory()
    with key_executor(target) as ex:
        with pytest.raises(Disconnected, match="lost while running"):
            ex.run("systemctl poweroff; sleep 20", become=True, timeout=30)
        assert ex.wait_disconnected(10)
        assert not ex.is_connected()
    assert target.wait_stopped(30)
