"""The lock on a Windows VM (agent/vmlock.py): a file held open, unshared, by a process.

A WinRS command is a process that ends with the command, and a named mutex dies with the
process that owns it, so the lock is held by a process that lives as long as the run: a
PowerShell command started in a WinRS shell of its own (the *lock shell*), which opens
``%SystemRoot%\\Temp\\imageprep-vm.lock`` and then sleeps until the executor deletes that
shell. What makes it a lock, from Microsoft's documentation:

* CreateFile's share mode: a file opened for read and write sharing only read makes
  every later open asking for write access fail with ERROR_SHARING_VIOLATION, "until
  the first handle is closed" (learn.microsoft.com/windows/win32/api/fileapi/
  nf-fileapi-createfilew, dwShareMode; .NET: System.IO.FileShare). An open for read that
  shares read, write and delete still succeeds: that is how a refused run reads the
  holder's record.
* "If a file is open when an application terminates, the system closes it
  automatically" (learn.microsoft.com/windows/win32/fileio/closing-and-deleting-files),
  and deleting a WinRS shell terminates its processes: the lock goes with the shell.
* FILE_FLAG_DELETE_ON_CLOSE (.NET FileOptions.DeleteOnClose): "the file is to be deleted
  immediately after all of its handles are closed". The file exists only while held, so
  it never reaches the captured image (Sysprep's shutdown ends every process first).
  Only a machine that lost power keeps it: then the next run finds a record nobody
  holds, a stale holder, as on Linux.

The script prints one line, ``held:RECORD`` (the record that was in the file, usually
empty) and then ``alive`` every 30 s; or ``busy:RECORD`` (the holder's) and exits 75.

Nothing else talks to the lock shell, and WinRM deletes a shell that sees no request for
its IdleTimeout (learn.microsoft.com/windows/win32/winrm/
installation-and-configuration-for-windows-remote-management, "IdleTimeout"): the
executor sends a Receive on it at most every ``WinRmOptions.lock_keepalive`` seconds,
before a command; the heartbeat lines make that Receive return at once.
"""

from __future__ import annotations

from agent.executors.winrm.scripts import quote

LOCK_FILE = r"%SystemRoot%\Temp\imageprep-vm.lock"
BUSY_EXIT = 75
HEARTBEAT_SECONDS = 30

# Each statement on its own line: the test double models the .NET ones by their text.
OPEN = (
    "try { $lock = [System.IO.FileStream]::new($path, 'OpenOrCreate', 'ReadWrite', 'Read', "
    "4096, 'DeleteOnClose') } catch [System.IO.IOException] { $lock = $null }"
)
REFUSE = (
    "if ($lock -eq $null) { $held = [System.IO.FileStream]::new($path, 'Open', 'Read', "
    "'ReadWrite, Delete'); Write-Output ('busy:' + [System.IO.StreamReader]::new($held)"
    f".ReadToEnd()); exit {BUSY_EXIT} }}"
)
READ_OLD = "$old = [System.IO.StreamReader]::new($lock).ReadToEnd()"
WRITE_RECORD = (
    "$lock.SetLength(0); $bytes = [System.Text.Encoding]::UTF8.GetBytes($record); "
    "$lock.Write($bytes, 0, $bytes.Length); $lock.Flush()"
)


def holder_script(record: str) -> str:
    """The lock shell's command: take the lock for ``record`` and hold it until killed."""
    return "\n".join(
        (
            "$path = $env:SystemRoot + '\\Temp\\imageprep-vm.lock'",
            f"$record = {quote(record)}",
            "$lock = $null",
            OPEN,
            REFUSE,
            READ_OLD,
            f"& {{ {WRITE_RECORD} }}",
            "Write-Output ('held:' + $old)",
            # Held until the executor deletes the lock shell, or WinRM does (IdleTimeout).
            # A line now and then: the executor's keep-alive Receive then returns at once.
            f"while ($true) {{ Start-Sleep -Seconds {HEARTBEAT_SECONDS}; Write-Output 'alive' }}",
        )
    )
