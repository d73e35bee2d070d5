"""Backup providers against real local processes: archive via local bash, command via sh."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import time
from pathlib import Path

import pytest

from agent.backups import BackupContext, BackupRecord, provider_from_spec
from agent.backups import base as backups_base
from agent.backups.archive import ArchiveProvider, TarGzCheck
from agent.backups.command import CommandProvider, parse_reference
from agent.errors import BackupError, UsageError
from agent.executors.base import Executor
from agent.results import CommandResult
from agent.secrets import REGISTRY
from agent.targets import Target
from tests.local_executor import LocalShellExecutor

TARGET = Target(scheme="ssh", user="azureuser", host="vm.example", port=2222)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small file tree standing in for the target's files."""
    root = tmp_path / "target-files"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("golden-vm\n")
    (root / "home" / "azureuser").mkdir(parents=True)
    (root / "home" / "azureuser" / ".bash_history").write_text("sudo waagent -deprovision\n")
    (root / "etc" / "secret.conf").write_text("x")
    os.chmod(root / "etc" / "secret.conf", 0o640)
    return root


def _context(tmp_path: Path, *paths: Path | str) -> BackupContext:
    return BackupContext(
        run_id="r42", target=TARGET, paths=tuple(str(p) for p in paths), run_dir=tmp_path
    )


def _stub_tool(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return directory


REAL_TAR = shutil.which("tar") or "/usr/bin/tar"


# --- archive: --------------------------------------------------------------------------


def test_local_shell_executor_satisfies_the_protocol() -> None:
    """The test executor is a real implementation of the Executor protocol."""
    assert isinstance(LocalShellExecutor(), Executor)


def test_archive_streams_the_paths_with_hash_and_size(tmp_path: Path, tree: Path) -> None:
    """The archive holds the paths' files, and its recorded sha256 and size match the file."""
    provider = ArchiveProvider(tmp_path / "backups")
    record = provider.take(LocalShellExecutor(), _context(tmp_path, tree / "etc", tree / "home"))
    archive = Path(record.reference)
    assert archive.parent == tmp_path / "backups"
    assert re.fullmatch(r"\d{8}T\d{6}Z-r42-vm\.example\.tar\.gz", archive.name)
    assert record.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert record.size_bytes == archive.stat().st_size
    rel = str(tree).lstrip("/")
    with tarfile.open(archive) as tar:
        hostname = tar.extractfile(f"{rel}/etc/hostname")
        assert hostname is not None
        assert hostname.read() == b"golden-vm\n"
        assert f"{rel}/home/azureuser/.bash_history" in tar.getnames()
        assert tar.getmember(f"{rel}/etc/secret.conf").mode == 0o640


def test_archive_file_is_private_and_nothing_partial_remains(tmp_path: Path, tree: Path) -> None:
    """The archive is mode 0600 and no temporary file is left in DIR."""
    record = ArchiveProvider(tmp_path / "b").take(LocalShellExecutor(), _context(tmp_path, tree))
    assert stat.S_IMODE(Path(record.reference).stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "b").iterdir()] == [Path(record.reference).name]


def test_archive_runs_as_root_with_numeric_owners(tmp_path: Path, tree: Path) -> None:
    """tar runs through become=True, with --numeric-owner so no names are recorded."""
    calls: list[bool] = []

    class Recording(LocalShellExecutor):
        def run(self, command: str, **kw: object) -> CommandResult:
            calls.append(bool(kw.get("become")))
            return super().run(command, **kw)  # type: ignore[arg-type]

    record = ArchiveProvider(tmp_path / "b").take(Recording(), _context(tmp_path, tree))
    assert calls == [True]
    assert "--numeric-owner" in record.details["tar_options"]
    with tarfile.open(record.reference) as tar:
        assert all(m.uname == "" for m in tar.getmembers())


def test_archive_keeps_extended_attributes(tmp_path: Path, tree: Path) -> None:
    """A user xattr on a file is stored in the archive when the local tar supports it."""
    target_file = tree / "etc" / "hostname"
    try:
        os.setxattr(target_file, "user.imageprep", b"kept")
    except OSError:
        pytest.skip("this filesystem has no user xattrs")
    record = ArchiveProvider(tmp_path / "b").take(LocalShellExecutor(), _context(tmp_path, tree))
    assert "--xattrs" in record.details["tar_options"]
    with tarfile.open(record.reference) as tar:
        member = tar.getmember(str(target_file).lstrip("/"))
        assert member.pax_headers.get("SCHILY.xattr.user.imageprep") == "kept"


def test_archive_lists_missing_paths_without_failing(tmp_path: Path, tree: Path) -> None:
    """Paths absent on the target are listed in details; the others are archived."""
    missing = tree / "var" / "log" / "waagent.log"
    record = ArchiveProvider(tmp_path / "b").take(
        LocalShellExecutor(), _context(tmp_path, tree / "etc", missing)
    )
    assert record.details["missing_paths"] == str(missing)
    assert record.details["paths"] == str(tree / "etc")


def test_archive_fails_when_no_path_exists(tmp_path: Path) -> None:
    """An archive of nothing is refused: it could not restore anything."""
    provider = ArchiveProvider(tmp_path / "b")
    with pytest.raises(BackupError, match="none of the backup paths exist"):
        provider.take(LocalShellExecutor(), _context(tmp_path, tmp_path / "nope"))
    assert list((tmp_path / "b").iterdir()) == []


def test_tar_fatal_error_is_a_backup_error_with_stderr(tmp_path: Path, tree: Path) -> None:
    """tar exiting above 1 fails the backup, quotes tar's stderr and leaves no file."""
    bin_dir = _stub_tool(
        tmp_path / "bin",
        "tar",
        f'case "$1" in --help) exec {REAL_TAR} --help;; esac\n'
        'echo "tar: etc/shadow: Cannot open: Input/output error" >&2\nexit 2\n',
    )
    provider = ArchiveProvider(tmp_path / "b")
    with pytest.raises(BackupError, match=r"tar exited with 2: .*Input/output error"):
        provider.take(LocalShellExecutor(bin_dir), _context(tmp_path, tree))
    assert list((tmp_path / "b").iterdir()) == []


def test_tar_exit_1_is_recorded_as_a_warning(tmp_path: Path, tree: Path) -> None:
    """tar's "file changed as we read it" (exit 1) keeps the archive and notes the warning."""
    bin_dir = _stub_tool(
        tmp_path / "bin",
        "tar",
        f'case "$1" in --help) exec {REAL_TAR} --help;; esac\n'
        f'{REAL_TAR} "$@" || exit $?\n'
        'echo "tar: var/log/syslog: file changed as we read it" >&2\nexit 1\n',
    )
    record = ArchiveProvider(tmp_path / "b").take(
        LocalShellExecutor(bin_dir), _context(tmp_path, tree)
    )
    assert "file changed as we read it" in record.details["tar_warning"]
    assert Path(record.reference).is_file()


def test_archive_timeout_is_a_backup_error(tmp_path: Path, tree: Path) -> None:
    """A tar that runs past the provider's timeout fails the backup and leaves no file."""
    bin_dir = _stub_tool(
        tmp_path / "bin", "tar", f'case "$1" in --help) exec {REAL_TAR} --help;; esac\nsleep 30\n'
    )
    provider = ArchiveProvider(tmp_path / "b", timeout=0.5)
    with pytest.raises(BackupError, match="did not finish"):
        provider.take(LocalShellExecutor(bin_dir), _context(tmp_path, tree))
    assert list((tmp_path / "b").iterdir()) == []


def test_unwritable_directory_fails_when_the_provider_is_made(tmp_path: Path) -> None:
    """archive:DIR that cannot be written is refused at parse time, before any connection."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(BackupError, match="not writable"):
        provider_from_spec(f"archive:{blocker}/backups")


def test_missing_directory_is_created(tmp_path: Path) -> None:
    """archive:DIR creates DIR (and parents) when it does not exist."""
    ArchiveProvider(tmp_path / "new" / "dir")
    assert (tmp_path / "new" / "dir").is_dir()


def test_archive_refuses_relative_paths(tmp_path: Path) -> None:
    """Backup paths are absolute on the target; a relative one is an error."""
    with pytest.raises(BackupError, match="absolute"):
        ArchiveProvider(tmp_path).take(LocalShellExecutor(), _context(tmp_path, "etc/hostname"))


def test_archive_refuses_windows_targets(tmp_path: Path) -> None:
    """The archive provider needs tar, so a WinRM target is refused."""
    context = BackupContext(
        run_id="r",
        target=Target("winrm+https", "admin", "win", 5986),
        paths=("C:/x",),
        run_dir=tmp_path,
    )
    with pytest.raises(BackupError, match="Windows"):
        ArchiveProvider(tmp_path).take(LocalShellExecutor(), context)


def test_restore_hint_names_the_archive_and_extracts_at_root(tmp_path: Path, tree: Path) -> None:
    """The restore hint is a runnable ssh + sudo tar command reading the archive."""
    record = ArchiveProvider(tmp_path / "b").take(LocalShellExecutor(), _context(tmp_path, tree))
    assert record.restore_hint.startswith("ssh -p 2222 azureuser@vm.example 'sudo tar -xzpf - ")
    assert f"-C /' < {record.reference}" in record.restore_hint


def test_stream_check_refuses_a_real_archive_cut_short(tmp_path: Path, tree: Path) -> None:
    """The last 10 bytes of an archive GNU tar wrote are missed (gzip's trailer)."""
    record = ArchiveProvider(tmp_path / "b").take(LocalShellExecutor(), _context(tmp_path, tree))
    check = TarGzCheck()
    check.feed(Path(record.reference).read_bytes()[:-10])
    with pytest.raises(ValueError, match="before its trailer"):
        check.finish()


def _targz(name: str = "etc/hostname", data: bytes = b"golden-vm\n") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_stream_check_counts_members_fed_in_small_pieces() -> None:
    """The check needs no particular cut of the stream into pieces."""
    data, check = _targz(), TarGzCheck()
    for i in range(0, len(data), 7):
        check.feed(data[i : i + 7])
    assert check.finish() == 1


def test_stream_check_inflates_a_dense_stream_piece_by_piece() -> None:
    """A few KiB that inflate to 8 MiB (zeros) are walked whole, in bounded pieces."""
    check = TarGzCheck()
    check.feed(_targz("var/zeros", bytes(8 << 20)))
    assert check.finish() == 1


def test_stream_check_reads_gzip_members_one_after_another() -> None:
    """Concatenated gzip members are one stream, as gzip.open reads them."""
    data = _targz()
    whole = gzip.decompress(data)
    check = TarGzCheck()
    check.feed(gzip.compress(whole[:700]) + gzip.compress(whole[700:]))
    assert check.finish() == 1


def test_stream_check_refuses_a_bad_gzip_crc() -> None:
    """A flipped byte in the trailer's CRC-32 is caught, as gzip.open would catch it."""
    data = bytearray(_targz())
    data[-6] ^= 0x01
    check = TarGzCheck()
    check.feed(bytes(data))
    with pytest.raises(ValueError, match="incorrect data check"):
        check.finish()


def test_stream_check_refuses_a_stream_cut_before_the_trailer() -> None:
    """A gzip stream that stops short is not a whole archive."""
    check = TarGzCheck()
    check.feed(_targz()[:-4])
    with pytest.raises(ValueError, match="before its trailer"):
        check.finish()


def test_stream_check_keeps_a_fault_instead_of_raising_while_fed() -> None:
    """Garbage mid-stream is reported at the end; feeding goes on so the sender is drained."""
    check = TarGzCheck()
    check.feed(_targz() + b"garbage after the member")
    check.feed(b"more bytes")
    with pytest.raises(ValueError, match="header check"):
        check.finish()


def test_archive_refuses_a_cut_stream_even_when_tar_exits_0(tmp_path: Path, tree: Path) -> None:
    """A tar.gz that ends early fails the backup and leaves no file, whatever tar's status."""
    bin_dir = _stub_tool(
        tmp_path / "bin",
        "tar",
        f'case "$1" in --help) exec {REAL_TAR} --help;; esac\n{REAL_TAR} "$@" | head -c 100\n',
    )
    provider = ArchiveProvider(tmp_path / "b")
    with pytest.raises(BackupError, match=r"not a valid tar\.gz"):
        provider.take(LocalShellExecutor(bin_dir), _context(tmp_path, tree))
    assert list((tmp_path / "b").iterdir()) == []


# --- command: --------------------------------------------------------------------------


def test_command_sees_target_variables(tmp_path: Path) -> None:
    """The command gets the run and target details (and no secrets) in IMAGEPREP_* vars."""
    provider = CommandProvider('env | grep ^IMAGEPREP_ | sort > "$IMAGEPREP_RUN_DIR/env"; echo s1')
    provider.take(LocalShellExecutor(), _context(tmp_path, "/etc"))
    env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines())
    assert env["IMAGEPREP_RUN_ID"] == "r42"
    assert env["IMAGEPREP_TARGET_URL"] == "ssh://azureuser@vm.example:2222"
    assert env["IMAGEPREP_TARGET_HOST"] == "vm.example"
    assert env["IMAGEPREP_TARGET_PORT"] == "2222"
    assert env["IMAGEPREP_TARGET_USER"] == "azureuser"
    assert env["IMAGEPREP_RUN_DIR"] == str(tmp_path)


def test_command_stdout_is_the_reference(tmp_path: Path) -> None:
    """One line on stdout is the backup's reference, with a restore hint naming it."""
    record = CommandProvider("echo '  snap-0123  '").take(
        LocalShellExecutor(), _context(tmp_path, "/etc")
    )
    assert record.reference == "snap-0123"
    assert record.provider == "command"
    assert record.restore_hint == "restore with the tool that took snapshot snap-0123"


def test_command_long_output_uses_last_line_and_keeps_a_tail(tmp_path: Path) -> None:
    """With many lines the last non-empty one is the reference; stdout is kept, 4 KiB max."""
    command = "for i in $(seq 1 2000); do echo progress $i; done; echo snap-final; echo"
    record = CommandProvider(command).take(LocalShellExecutor(), _context(tmp_path, "/etc"))
    assert record.reference == "snap-final"
    assert record.details["stdout"].startswith("[")
    assert record.details["stdout"].endswith("progress 2000\nsnap-final")
    assert len(record.details["stdout"].encode()) < 4096 + 64


def test_command_json_output_uses_its_id() -> None:
    """A JSON object on stdout (az snapshot create's default) gives its id as reference."""
    stdout = json.dumps({"id": "/subscriptions/s/snapshots/snap1", "name": "snap1"}, indent=2)
    assert parse_reference(stdout)[0] == "/subscriptions/s/snapshots/snap1"


def test_command_nonzero_exit_is_a_backup_error(tmp_path: Path) -> None:
    """A failing command fails the backup, naming its exit code and stderr tail."""
    provider = CommandProvider("echo 'quota exceeded' >&2; exit 3")
    with pytest.raises(BackupError, match="exited with 3: quota exceeded"):
        provider.take(LocalShellExecutor(), _context(tmp_path, "/etc"))


def test_command_silent_success_is_a_backup_error(tmp_path: Path) -> None:
    """A command that prints no reference fails: nobody could find the snapshot."""
    with pytest.raises(BackupError, match="printed nothing"):
        CommandProvider("true").take(LocalShellExecutor(), _context(tmp_path, "/etc"))


def test_command_timeout_stops_it(tmp_path: Path) -> None:
    """A command past its timeout is stopped, with its children, and fails the backup."""
    provider = CommandProvider("sleep 30 & sleep 30; echo late", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(BackupError, match=r"did not finish within 0\.5 s"):
        provider.take(LocalShellExecutor(), _context(tmp_path, "/etc"))
    assert time.monotonic() - started < 10


def test_command_output_is_redacted(tmp_path: Path) -> None:
    """Secrets the run knows are removed from the stored output and reference."""
    REGISTRY.add("cmd-s3cret-value")
    try:
        record = CommandProvider(
            "echo token: cmd-s3cret-value; echo warn cmd-s3cret-value >&2; echo snap-9"
        ).take(LocalShellExecutor(), _context(tmp_path, "/etc"))
    finally:
        REGISTRY.clear()
    assert "cmd-s3cret-value" not in json.dumps(record.to_dict())
    assert record.details["stdout"] == "token: ***\nsnap-9"


# --- registry and record ---------------------------------------------------------------


def test_spec_selects_the_provider(tmp_path: Path) -> None:
    """archive:DIR and command:CMD give their providers; CMD keeps its own colons."""
    archive = provider_from_spec(f"archive:{tmp_path}")
    command = provider_from_spec("command:az snapshot create --name a:b")
    assert isinstance(archive, ArchiveProvider)
    assert archive.directory == tmp_path
    assert isinstance(command, CommandProvider)
    assert command.command == "az snapshot create --name a:b"


@pytest.mark.parametrize("spec", ["s3:bucket", "archive", "/srv/backups"])
def test_unknown_scheme_lists_the_known_ones(spec: str) -> None:
    """An unknown or missing scheme is a usage error naming the schemes that exist."""
    with pytest.raises(UsageError, match="known: archive:, azure-snapshot:, command:, libvirt:"):
        provider_from_spec(spec)


@pytest.mark.parametrize("spec", ["archive:", "command:  "])
def test_empty_argument_is_a_usage_error(spec: str) -> None:
    """A scheme without its argument is a usage error."""
    with pytest.raises(UsageError, match="nothing after"):
        provider_from_spec(spec)


def test_provider_with_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider whose optional dependencies are absent says which extra to install."""
    entry = backups_base.ProviderEntry("agent.backups._absent_for_test", "test", extra="azure")
    monkeypatch.setitem(backups_base.PROVIDERS, "azure-snapshot", entry)
    with pytest.raises(UsageError, match=r"imageprep-agent\[azure\]"):
        provider_from_spec("azure-snapshot:rg/vm")


def test_record_is_json_ready_and_round_trips() -> None:
    """to_dict is JSON-serializable and from_dict restores an equal record."""
    record = BackupRecord(
        provider="archive",
        reference="/b/x.tar.gz",
        created_at="2025-01-01T00:00:00.000Z",
        duration=1.5,
        restore_hint="h",
        sha256="ab",
        size_bytes=3,
        details={"members": "2"},
    )
    data = json.loads(json.dumps(record.to_dict()))
    assert BackupRecord.from_dict(data) == record


def test_record_details_cannot_change() -> None:
    """A recorded backup's details are read-only, even through the dict passed in."""
    details = {"a": "1"}
    record = BackupRecord(
        provider="p",
        reference="r",
        created_at="t",
        duration=0.0,
        restore_hint="h",
        details=details,
    )
    details["a"] = "2"
    assert record.details["a"] == "1"
    with pytest.raises(TypeError):
        record.details["a"] = "3"  # type: ignore[index]


def test_command_failure_is_one_line_and_keeps_all_stderr(tmp_path: Path) -> None:
    """Three lines of stderr: a one-line error (the last line), the whole text in the run folder."""
    script = "echo one >&2; echo two >&2; echo 'three: quota exceeded' >&2; exit 3"
    provider = CommandProvider(script)
    context = _context(tmp_path, "/etc")
    with pytest.raises(BackupError) as info:
        provider.take(LocalShellExecutor(), context)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("backup command exited with 3: three: quota exceeded (all 3 lines")
    saved = context.run_dir / "backup-command.stderr.txt"
    assert str(saved) in message
    assert saved.read_text().splitlines() == ["one", "two", "three: quota exceeded"]
