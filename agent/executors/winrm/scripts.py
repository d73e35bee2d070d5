"""The PowerShell command lines and helper scripts WinRmExecutor sends.

Every script runs as ``powershell -NoProfile -NonInteractive -EncodedCommand <base64 of
the UTF-16LE text>``, which survives any quoting and code page. WinRS runs a command
line under ``cmd.exe /c``, which refuses lines over 8191 characters; base64 of UTF-16
triples a script's size, so anything above roughly 2.6 KiB of script goes another way:
a small bootstrap (itself sent as ``-EncodedCommand``) reads the real payload from stdin
as base64, checks its SHA-256, then runs it (or writes it to a file, for ``put``). This is
Ansible's approach (``$input | Out-String`` in an ``-EncodedCommand`` wrapper), with the
digest added so that a truncated or corrupted upload never runs.

The Windows test double (``tests/winrm_server``) imports the bootstrap's statements from
here and interprets them one by one; it refuses a bootstrap of another shape.
"""

from __future__ import annotations

import base64
import hashlib

# Progress records would otherwise arrive on stderr as CLIXML (pywinrm #245).
PREAMBLE = "$ProgressPreference='SilentlyContinue'\n"
# cmd.exe's limit is 8191; leave room for the "cmd.exe /c " WinRS adds.
COMMAND_LINE_LIMIT = 8000
POWERSHELL = "powershell"
POWERSHELL_FLAGS = ("-NoProfile", "-NonInteractive", "-EncodedCommand")
# Exit code of the bootstrap when the payload's digest does not match.
DIGEST_MISMATCH_EXIT = 86
# Raw payload bytes per Send request: base64 twice (ours, then WinRS's) stays well under
# pywinrm's MaxEnvelopeSize of 153600 bytes.
STDIN_CHUNK = 48 * 1024


def encode(script: str) -> str:
    """The ``-EncodedCommand`` argument for ``script``."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def command_line_length(encoded: str) -> int:
    return len(" ".join((POWERSHELL, *POWERSHELL_FLAGS, encoded)))


def fits_command_line(script: str) -> bool:
    return command_line_length(encode(script)) <= COMMAND_LINE_LIMIT


def quote(text: str) -> str:
    """A PowerShell single-quoted literal (no expansion; ``'`` doubled)."""
    return "'" + text.replace("'", "''") + "'"


def _bootstrap(payload: bytes, action: str) -> str:
    digest = hashlib.sha256(payload).hexdigest().upper()
    return (
        PREAMBLE + "$imageprepPayload = [Convert]::FromBase64String((($input | Out-String) "
        "-replace '\\s', ''))\n"
        "$imageprepDigest = [BitConverter]::ToString([Security.Cryptography.SHA256]::"
        "Create().ComputeHash($imageprepPayload)) -replace '-', ''\n"
        f"if ($imageprepDigest -ne '{digest}') {{ [Console]::Error.WriteLine("
        f'"imageprep: the payload arrived with SHA-256 $imageprepDigest, expected {digest}"); '
        f"exit {DIGEST_MISMATCH_EXIT} }}\n"
        f"{action}\n"
    )


def run_from_stdin(script: str) -> tuple[str, bytes]:
    """(bootstrap, payload) that runs ``script`` after checking its digest."""
    payload = script.encode("utf-8")
    action = "& ([ScriptBlock]::Create([Text.Encoding]::UTF8.GetString($imageprepPayload)))"
    return _bootstrap(payload, action), payload


def write_from_stdin(remote: str, data: bytes) -> tuple[str, bytes]:
    """(bootstrap, payload) that writes ``data`` to ``remote`` after checking its digest."""
    return _bootstrap(data, f"[IO.File]::WriteAllBytes({quote(remote)}, $imageprepPayload)"), data


def stdin_chunks(payload: bytes) -> list[bytes]:
    """The payload as base64 lines, one Send request each."""
    encoded = base64.b64encode(payload)
    step = STDIN_CHUNK
    return [encoded[i : i + step] + b"\r\n" for i in range(0, len(encoded), step)] or [b""]


def read_file(remote: str) -> str:
    """Prints the file as one base64 line, then its SHA-256 (upper-case hex)."""
    return (
        f"[Convert]::ToBase64String([IO.File]::ReadAllBytes({quote(remote)}))\n"
        f"(Get-FileHash -LiteralPath {quote(remote)} -Algorithm SHA256).Hash\n"
    )
