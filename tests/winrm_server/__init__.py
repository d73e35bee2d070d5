"""A WinRM test double for a Windows machine.

This package is a **test double for a Windows VM**, not a WinRM implementation for
users: no Windows is available where imageprep's tests run, so an unchanged pywinrm
client talks real WS-Management over real HTTP(S) on 127.0.0.1 to this server, which
answers the WinRS shell protocol the way the recorded Windows exchanges do
(``shared/reference/winrs-recordings``) and models the part of a Windows machine's state
imageprep reads and changes (see ``README.md`` beside this file).

    machine.py      the Windows state (registry, files, AppX, BitLocker, power, Sysprep)
    soap.py         envelopes and faults, in Windows' own layout
    service.py      WinRS: Create, Command, Receive, Send, Signal, Delete, Get
    shells.py       shells, commands, processes (buffers, stdin, kill, virtual time)
    programs.py     cmd.exe, sysprep.exe, shutdown.exe; command-line resolution
    powershell.py   powershell.exe: the table of recognised statements
    pslang.py       the PowerShell language subset for what the table lacks
    cmdlets.py      the commands, .NET members and objects pslang evaluates
    clixml.py       PowerShell's CLIXML stderr
    server.py       the HTTP(S) listener: Basic, NTLM (+ message encryption), client
                    certificates, 401, power-off
    certs.py        a throw-away CA, listener and client certificates
"""

from tests.winrm_server.certs import ClientCert, TlsFiles, make_client_cert, make_tls_files
from tests.winrm_server.machine import WindowsMachine
from tests.winrm_server.server import WinRmTestServer, ntlm_user_file_line

__all__ = [
    "ClientCert",
    "TlsFiles",
    "WinRmTestServer",
    "WindowsMachine",
    "make_client_cert",
    "make_tls_files",
    "ntlm_user_file_line",
]
