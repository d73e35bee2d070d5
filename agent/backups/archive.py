"""``archive:DIR`` — stream the profile's backup paths from the target into a local tar.gz.

The archive is produced by ``tar`` on the target (as root) and streamed over the
executor straight into a temporary file in DIR. While the bytes arrive, their sha256 and
size are computed and the stream is proved whole (gzip intact to its trailer, every tar
header sound up to the end-of-archive block: tarwalk), so the check is done when the
last byte is. Only a file that was fsync'ed and read back with the same hash is renamed
to its final name, so a file named ``*.tar.gz`` in DIR is always a complete backup.
Archives are created mode 0600: they hold whatever the paths hold (/etc/shadow, keys).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shlex
import tempfile
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agent.atomicwrite import fsync_path
from agent.backups.base import BackupContext, BackupRecord
from agent.backups.tarwalk import TarStreamError, TarWalker
from agent.errors import BackupError, CommandTimeout
from agent.executors.base import Executor
from agent.results import CommandResult

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_MISSING = "imageprep-missing:"
_OPTIONS = "imageprep-tar-options:"
_NOTHING_EXISTS = 64  # our own exit code: tar itself only uses 0, 1 and 2
_INFLATED = 1 << 20  # the most TarGzCheck inflates at once

# POSIX sh on the target. Missing paths are reported, not fatal (a profile lists paths
# that exist on some distros only). tar runs from / on relative names so members carry
# no leading "/" and restore with `-C /`. ACLs, xattrs and SELinux labels are kept when
# this tar knows the options (GNU tar does, busybox does not). `set -f`: $opts is split
# on purpose and must not glob.
_SCRIPT = """\
set -f
opts=--numeric-owner
help=$(tar --help 2>&1)
for o in --acls --xattrs --selinux; do
  case $help in *"$o"*) opts="$opts $o";; esac
done
echo "{options}$opts" >&2
set --
for p in {paths}; do
  if [ -e "$p" ] || [ -L "$p" ]; then
    rel=${{p#/}}
    set -- "$@" "${{rel:-.}}"
  else
    echo "{missing}$p" >&2
  fi
done
[ "$#" -gt 0 ] || exit {nothing}
exec tar -czf - $opts -C / -- "$@"
"""


def remote_command(paths: tuple[str, ...]) -> str:
    script = _SCRIPT.format(
        options=_OPTIONS,
        missing=_MISSING,
        nothing=_NOTHING_EXISTS,
        paths=" ".join(shlex.quote(p) for p in paths),
    )
    # Our own sh, whatever root's login shell is.
    return f"sh -c {shlex.quote(script)}"


class TarGzCheck:
    """Proves, as the bytes arrive, that they are a whole tar.gz.

    gzip: every member decompressed to its trailer, whose CRC-32 and length zlib checks
    (wbits=31); members may follow one another, as ``gzip.open`` reads them. tar: walked
    by tarwalk to its end-of-archive block. A fault is kept, not raised, so the stream is
    still drained (the remote tar is not cut off mid-write); :meth:`finish` reports it.
    """

    def __init__(self) -> None:
        self._gzip = zlib.decompressobj(wbits=31)
        self._tar = TarWalker()
        self._fault: str | None = None

    def feed(self, data: bytes | memoryview) -> None:
        if self._fault is not None:
            return
        try:
            while True:
                if self._gzip.eof and data:  # a member ended: what follows starts the next
                    self._gzip = zlib.decompressobj(wbits=31)
                # At most _INFLATED bytes per call: a small, highly compressed stream from
                # the target must not inflate into the controller's memory all at once.
                out = self._gzip.decompress(data, _INFLATED)
                self._tar.feed(out)
                data = self._gzip.unused_data if self._gzip.eof else self._gzip.unconsumed_tail
                if not data and len(out) < _INFLATED:
                    break
        except (zlib.error, TarStreamError) as exc:
            self._fault = str(exc)

    def finish(self) -> int:
        """The number of tar members; ValueError naming the fault if the stream is not whole."""
        if self._fault is None and not self._gzip.eof:
            self._fault = "the gzip stream ends before its trailer"
        if self._fault is None:
            try:
                return self._tar.finish()
            except TarStreamError as exc:
                self._fault = str(exc)
        raise ValueError(self._fault)


class _CheckingWriter(io.BufferedWriter):
    """The stdout sink: hashes, counts and checks every byte on its way to the file."""

    def __init__(self, raw: io.FileIO) -> None:
        super().__init__(raw, buffer_size=1 << 20)
        self.digest = hashlib.sha256()
        self.size = 0
        self.check = TarGzCheck()

    def write(self, buffer: ReadableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        self.digest.update(view)
        self.size += view.nbytes
        self.check.feed(view)
        return super().write(view)


@dataclass(frozen=True)
class _RemoteReport:
    """What the remote script told us on stderr, separated from tar's own messages."""

    missing: tuple[str, ...]
    tar_options: str
    stderr: str

    @classmethod
    def parse(cls, stderr: str) -> _RemoteReport:
        missing: list[str] = []
        options = ""
        rest: list[str] = []
        for line in stderr.splitlines():
            if line.startswith(_MISSING):
                missing.append(line[len(_MISSING) :])
            elif line.startswith(_OPTIONS):
                options = line[len(_OPTIONS) :].strip()
            else:
                rest.append(line)
        return cls(tuple(missing), options, "\n".join(rest))

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.stderr.splitlines()[-lines:]) or "(no error output)"


def ensure_writable_dir(directory: Path) -> None:
    """Create DIR if missing and prove a file can be written there, or raise BackupError."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise BackupError(
            f"archive: backup directory {directory} is not writable: {exc.strerror or exc}"
        ) from exc


def _safe_host(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", host)


def _members(path: Path, check: TarGzCheck) -> int:
    try:
        return check.finish()
    except ValueError as exc:
        raise BackupError(f"archive: {path} is not a valid tar.gz: {exc}") from exc


def _same_on_disk(path: Path, sha256: str, size: int) -> None:
    """The fsync'ed file holds exactly the bytes that were hashed as they arrived."""
    with path.open("rb") as handle:
        on_disk = hashlib.file_digest(handle, "sha256").hexdigest()
    if on_disk != sha256 or path.stat().st_size != size:
        raise BackupError(f"archive: {path} differs from the bytes received (disk or I/O error)")


def _restore_hint(context: BackupContext, archive: Path, tar_options: str) -> str:
    """The command that puts the archive back, every word shell-quoted.

    The user and host come from the target URL, where they may hold spaces, quotes or
    ``$(...)`` (URL-encoded): pasted, the hint must still be one ssh command and nothing
    else.
    """
    target = context.target
    options = tar_options.split() or ["--numeric-owner"]
    if "--xattrs" in options:
        # On extraction GNU tar restores only user.* xattrs unless told otherwise.
        options.append("--xattrs-include=*")
    sudo = [] if target.user == "root" else ["sudo"]
    remote = shlex.join([*sudo, "tar", "-xzpf", "-", *options, "-C", "/"])
    ssh = shlex.join(["ssh", "-p", str(target.port), f"{target.user}@{target.host}", remote])
    quoted = shlex.quote(str(archive))
    return (
        f"{ssh} < {quoted}"
        f"  # overwrites the archived paths in place; list them first: tar -tzvf {quoted}"
    )


class ArchiveProvider:
    scheme = "archive"

    def __init__(self, directory: Path, *, timeout: float | None = 3600.0) -> None:
        self.directory = directory.expanduser().absolute()
        self.timeout = timeout
        ensure_writable_dir(self.directory)  # before anything is contacted

    def describe(self) -> str:
        return f"archive: tar.gz of the backup paths into {self.directory}"

    def take(self, executor: Executor, context: BackupContext) -> BackupRecord:
        self._check_context(context)
        ensure_writable_dir(self.directory)  # it may have gone since the command line
        started = time.monotonic()
        now = datetime.now(UTC)
        name = f"{now:%Y%m%dT%H%M%SZ}-{context.run_id}-{_safe_host(context.target.host)}.tar.gz"
        final = self.directory / name
        fd, tmp_name = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".part")
        tmp = Path(tmp_name)
        sink = _CheckingWriter(io.FileIO(fd, "w"))
        try:
            result = self._stream(executor, context, sink)
            sink.flush()
            os.fsync(sink.fileno())
            sink.close()
            report = _RemoteReport.parse(result.stderr)
            details = self._check_exit(result, report, context)
            sha256 = sink.digest.hexdigest()
            members = _members(tmp, sink.check)
            _same_on_disk(tmp, sha256, sink.size)
            os.replace(tmp, final)
            fsync_path(self.directory)
        except BaseException:
            sink.close()
            tmp.unlink(missing_ok=True)
            raise
        details["members"] = str(members)
        return BackupRecord(
            provider=self.scheme,
            reference=str(final),
            created_at=now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            duration=time.monotonic() - started,
            sha256=sha256,
            size_bytes=sink.size,
            details=details,
            restore_hint=_restore_hint(context, final, report.tar_options),
        )

    def _check_context(self, context: BackupContext) -> None:
        if context.target.is_windows:
            raise BackupError(
                "archive: needs tar on the target; Windows targets need another provider"
            )
        if not context.paths:
            raise BackupError("archive: the profile lists no backup_paths; nothing to archive")
        relative = [p for p in context.paths if not p.startswith("/")]
        if relative:
            raise BackupError(f"archive: backup paths must be absolute: {', '.join(relative)}")

    def _stream(
        self, executor: Executor, context: BackupContext, sink: _CheckingWriter
    ) -> CommandResult:
        try:
            return executor.run(
                remote_command(context.paths), become=True, timeout=self.timeout, stdout_sink=sink
            )
        except CommandTimeout as exc:
            raise BackupError(f"archive: tar did not finish within {self.timeout} s") from exc

    def _check_exit(
        self, result: CommandResult, report: _RemoteReport, context: BackupContext
    ) -> dict[str, str]:
        if result.exit_code == _NOTHING_EXISTS:
            raise BackupError(
                f"archive: none of the backup paths exist on the target: {', '.join(context.paths)}"
            )
        if result.exit_code not in (0, 1):
            raise BackupError(f"archive: tar exited with {result.exit_code}: {report.tail()}")
        details = {
            "paths": ", ".join(p for p in context.paths if p not in report.missing),
            "tar_options": report.tar_options,
        }
        if report.missing:
            details["missing_paths"] = ", ".join(report.missing)
        if result.exit_code == 1:
            # GNU tar: "file changed as we read it". The archive is complete, but that
            # file may be inconsistent; say so in the report rather than fail the run.
            details["tar_warning"] = report.tail()
        return details


def from_arg(arg: str) -> ArchiveProvider:
    return ArchiveProvider(Path(arg))
