"""The programs the Windows test double can run: cmd.exe, powershell.exe, sysprep.exe,
shutdown.exe. A WinRS command line is resolved to one of them here.

Part of the WinRM *test double for a Windows machine* (see ``tests/winrm_server``). The
programs are models, not emulators: ``cmd.exe`` knows ``echo``, ``set``, ``exit`` and
``&&``; PowerShell is in :mod:`tests.winrm_server.powershell`; anything else is "not
recognized", as Windows would say of a program that is not installed.

WinRS semantics kept: with ``WINRS_SKIP_CMD_SHELL=FALSE`` (pywinrm's default) the command
line runs under ``cmd.exe /c``, so it is limited to 8191 characters ("The command line is
too long.", exit 1); with ``TRUE`` the executable must be given by a full path that
exists, else the Command request itself fails (recorded in test_winrs_no_cmd_shell).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.winrm_server import machine as m
from tests.winrm_server.shells import Process, Program, Terminated
from tests.winrm_server.soap import Fault

CMD_LINE_LIMIT = 8191
NOT_RECOGNIZED_EXIT = 9009  # %ERRORLEVEL% after cmd.exe fails to find a program

NativeProgram = Callable[[Process, list[str]], int]


def resolve(
    machine: m.WindowsMachine, command: str, arguments: list[str], *, skip_cmd_shell: bool
) -> Program:
    """The program a WinRS Command request starts; raises the fault Windows would."""
    line = " ".join([command, *arguments])
    if not skip_cmd_shell:
        return lambda process: run_cmd_line(process, line)
    if not machine.file_exists(command):
        raise Fault.file_not_found()
    program = native_program(command)
    if program is None:
        raise Fault.file_not_found()
    args = [a for arg in arguments for a in split_arguments(arg)]
    return lambda process: program(process, args)


def split_arguments(text: str) -> list[str]:
    """Windows argv splitting, the common cases: whitespace separates, quotes group."""
    args: list[str] = []
    current = ""
    quoted = False
    pending = False
    for char in text:
        if char == '"':
            quoted = not quoted
            pending = True
        elif char.isspace() and not quoted:
            if pending:
                args.append(current)
            current, pending = "", False
        else:
            current += char
            pending = True
    if pending:
        args.append(current)
    return args


def native_program(name: str) -> NativeProgram | None:
    base = re.split(r"[\\/]", name.strip().strip('"'))[-1].casefold()
    base = base.removesuffix(".exe")
    # Imported here: powershell needs this module's dispatch for `& sysprep.exe` et al.
    from tests.winrm_server.powershell import run_powershell

    table: dict[str, NativeProgram] = {
        "cmd": run_cmd,
        "powershell": run_powershell,
        "sysprep": run_sysprep,
        "shutdown": run_shutdown,
    }
    return table.get(base)


# -- cmd.exe ------------------------------------------------------------------------------


def run_cmd(process: Process, args: list[str]) -> int:
    if args and args[0].casefold() in ("/c", "/k"):
        return run_cmd_line(process, " ".join(args[1:]))
    process.write_text("stderr", "cmd.exe: only /c is modelled by this test double\r\n")
    return 1


def run_cmd_line(process: Process, line: str) -> int:
    """``cmd.exe /c LINE``: commands joined by ``&&``, each a builtin or a program."""
    if len(line) > CMD_LINE_LIMIT:
        process.write_text("stderr", "The command line is too long.\r\n")
        return 1
    code = 0
    for part in line.split("&&"):
        code = _run_cmd_part(process, part)
        if code != 0:
            break
    return code


_REDIRECT = re.compile(r"\s?([12]?)>&([12])")


def _run_cmd_part(process: Process, part: str) -> int:
    stream = "stdout"
    redirect = _REDIRECT.search(part)
    if redirect is not None:
        stream = "stderr" if redirect.group(2) == "2" else "stdout"
        part = part[: redirect.start()] + part[redirect.end() :]
    text = part.lstrip()
    word, _, rest = text.partition(" ")
    builtin = word.casefold()
    if builtin == "echo":
        process.write_text(stream, rest + "\r\n")
        return 0
    if builtin == "set" and not rest.strip():
        listing = "".join(f"{k}={v}\r\n" for k, v in sorted(process.env.items()))
        process.write_text(stream, listing)
        return 0
    if builtin.removesuffix(".exe") == "cmd" and rest[:2].casefold() in ("/c", "/k"):
        return run_cmd_line(process, rest[3:])  # raw: cmd keeps echo's trailing spaces
    if builtin == "exit":
        number = rest.replace("/b", "").replace("/B", "").strip()
        return int(number) if number.lstrip("-").isdigit() else 0
    program = native_program(word) if not _is_missing_path(process, word) else None
    if program is None:
        process.write_text(
            "stderr",
            f"'{word}' is not recognized as an internal or external command,\r\n"
            "operable program or batch file.\r\n",
        )
        return NOT_RECOGNIZED_EXIT
    return program(process, split_arguments(rest))


def _is_missing_path(process: Process, word: str) -> bool:
    return ("\\" in word or "/" in word) and not process.machine.file_exists(word.strip('"'))


# -- sysprep.exe --------------------------------------------------------------------------

_SYSPREP_SWITCHES = re.compile(
    r"/(generalize|oobe|audit|quiet|quit|shutdown|reboot|mode:vm|unattend:.+)", re.IGNORECASE
)


def run_sysprep(process: Process, args: list[str]) -> int:
    """Sysprep's generalize pass, as the machine's state shows it (windows.md §1.4, §2).

    The exit code is 0 whether or not generalization succeeded: practitioners report
    that it alone is unreliable (windows.md §1.1), so the double forces callers to verify
    ImageState, the tag file and the Panther logs instead.
    """
    machine = process.machine
    switches = tuple(a.casefold() for a in args)
    run = m.SysprepRun(switches)
    machine.sysprep_runs.append(run)
    log = machine.log_line
    log(m.SETUPACT_LOG, "Info                  SYSPRP ====== Beginning of a new sysprep run ======")
    bad = [a for a in args if not _SYSPREP_SWITCHES.fullmatch(a)]
    if bad:
        run.outcome, run.reason = "failed", f"unknown switch {bad[0]}"
        log(m.SETUPERR_LOG, f"Error                 SYSPRP Invalid command line switch {bad[0]}")
        return 0
    if machine.image_state.startswith("IMAGE_STATE_SPECIALIZE_RESEAL"):
        # The VM never finished its own first boot: Sysprep changes nothing (Packer loops).
        run.outcome, run.reason = "stuck", machine.image_state
        return 0
    try:
        if "/generalize" in switches:
            _generalize(process, run, to_audit="/audit" in switches)
    except Terminated:
        # Killed with its shell (job object): the image is left half generalized.
        run.outcome, run.reason = "killed", "the WinRS shell or command was terminated"
        raise
    if run.outcome == "running":
        run.outcome = "succeeded"
    if run.outcome == "succeeded" and ("/shutdown" in switches or "/reboot" in switches):
        machine.schedule_power_off(1.0)
    return 0


def _generalize(process: Process, run: m.SysprepRun, *, to_audit: bool) -> None:
    machine = process.machine
    machine.image_state = m.IMAGE_STATE_UNDEPLOYABLE
    machine.log_line(m.SETUPACT_LOG, "Info SYSPRP Sysprep_Generalize: starting validation")
    process.sleep(machine.sysprep_seconds / 2)
    blocker = machine.sysprep_blocker()
    if blocker is not None:
        run.outcome, run.reason = "failed", blocker
        for log in (m.SETUPACT_LOG, m.SETUPERR_LOG):
            machine.log_line(log, f"Error                 SYSPRP {blocker}")
        machine.log_line(
            m.SETUPERR_LOG,
            "Error      [0x0f0082] SYSPRP ActionPlatform::LaunchModule: Failure occurred "
            "while executing 'SysprepGeneralizeValidate'",
        )
        return
    process.sleep(machine.sysprep_seconds / 2)
    for line in machine.harmless_setuperr:
        machine.log_line(m.SETUPERR_LOG, line)
    machine.set_value(m.SYSPREP_STATUS_KEY, "GeneralizationState", 7)
    machine.set_value(m.SYSPREP_STATUS_KEY, "CleanupState", 2)
    machine.set_value(m.SETUP_KEY, "SetupType", 2)
    machine.set_value(m.SETUP_KEY, "CmdLine", r"oobe\windeploy.exe")
    machine.image_state = (
        m.IMAGE_STATE_GENERALIZE_RESEAL_TO_AUDIT
        if to_audit
        else m.IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE
    )
    machine.write_file(m.SUCCEEDED_TAG, b"")
    answer = next((a.split(":", 1)[1] for a in run.switches if a.startswith("/unattend:")), None)
    if answer is not None and machine.read_file(answer) is not None:
        # Sysprep caches the answer file where Setup reads it at the next boot.
        machine.write_file(m.PANTHER_UNATTEND, machine.read_file(answer) or b"")
    machine.log_line(m.SETUPACT_LOG, "Info SYSPRP Sysprep_Generalize: completed successfully")


# -- shutdown.exe -------------------------------------------------------------------------


def run_shutdown(process: Process, args: list[str]) -> int:
    """``shutdown /s|/r [/t N] [/f]`` schedules the power-off or restart; ``/a`` aborts it.

    As shutdown.exe: a second /s or /r while one is scheduled fails with 1190, and /a with
    nothing scheduled with 1116, each with the system message and its code on stderr.
    """
    flags = [a.casefold() for a in args]
    machine = process.machine
    if "/a" in flags:
        if machine.cancel_scheduled_power_off():
            return 0
        process.write_text(
            "stderr",
            "Unable to abort the system shutdown because no shutdown was in progress.(1116)\r\n",
        )
        return 1116
    if "/s" not in flags and "/r" not in flags and "/p" not in flags:
        process.write_text("stderr", "shutdown: this test double models /s, /r, /p and /a\r\n")
        return 1
    if machine.shutdown_scheduled():
        process.write_text("stderr", "A system shutdown has already been scheduled.(1190)\r\n")
        return 1190
    delay = 30.0  # Windows' default for /s and /r
    if "/p" in flags:
        delay = 0.0
    if "/t" in flags and flags.index("/t") + 1 < len(flags):
        delay = float(flags[flags.index("/t") + 1])
    machine.schedule_power_off(delay, restart="/r" in flags)
    return 0
