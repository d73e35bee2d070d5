"""powershell.exe on the Windows test double: a few statements, then :mod:`pslang`.

Part of the WinRM *test double for a Windows machine* (see ``tests/winrm_server``). This
is not a PowerShell implementation. A script (from ``-EncodedCommand``, ``-Command``,
trailing arguments, or stdin with ``-``) is split into statements at top-level ``;`` and
newlines. One path interprets them: :mod:`tests.winrm_server.pslang` (variables, control
flow, pipelines of the cmdlets in :mod:`tests.winrm_server.cmdlets`), after the few
statements of :data:`STATEMENTS` that it cannot express (preferences, ``trap``,
``throw``, ``exit``, ``Write-Host``, native programs, the executor's stdin bootstraps,
imported from ``agent.executors.winrm.scripts``). A statement neither understands fails
the way PowerShell fails on an unknown command: a CLIXML error record on stderr and exit
1, so a test never passes because the double silently skipped a line it did not
understand.

To model a new script, prefer a cmdlet in ``cmdlets`` or a construct in ``pslang``; keep
machine state in :mod:`tests.winrm_server.machine`.

Exit code, as ``powershell.exe -Command`` computes it: ``exit N`` wins; else 1 when the
last statement failed (``$?`` false), else 0.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.executors.winrm import scripts as executor_scripts
from agent.executors.winrm import vmlock as executor_vmlock
from tests.winrm_server import clixml, pslang
from tests.winrm_server import machine as m
from tests.winrm_server.shells import Process

# A PowerShell argument: a single-quoted string, a double-quoted string, or a bare word.
_STR = r"""(?:'(?:[^']|'')*'|"(?:[^"`]|`.)*"|[^\s'"|;()]+)"""


def arg(name: str) -> str:
    return f"(?P<{name}>{_STR})"


class PsExit(Exception):
    """``exit N`` or a terminating error: stop the script with this exit code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class PsTerminating(Exception):
    """A terminating error of ``command``: a cmdlet's thrown exception (statement-
    terminating: the script goes on with the next statement) or any error under
    ``-ErrorAction Stop`` / ``$ErrorActionPreference = 'Stop'`` (script-terminating).
    A ``trap`` block of the script catches both, as PowerShell's does."""

    def __init__(
        self, record: clixml.ErrorRecord, command: str, message: str, *, script: bool
    ) -> None:
        super().__init__(message)
        self.record = record
        self.command = command
        self.message = message
        self.script = script


class _LiveErrors(list[clixml.ErrorRecord]):
    """Error records, written to stderr as they happen: powershell.exe writes the
    ``#< CLIXML`` header once, then one ``<Objs>`` document per record, so plain stderr
    (``[Console]::Error``, native programs) lands between them."""

    def __init__(self, process: Process) -> None:
        super().__init__()
        self._process = process
        self.header_written = False

    def append(self, record: clixml.ErrorRecord) -> None:
        super().append(record)
        self.write(clixml.record_document(record))

    def write(self, document: str) -> None:
        if not self.header_written:
            self._process.write_text("stderr", clixml.HEADER)
            self.header_written = True
        self._process.write_text("stderr", document)


@dataclass
class Session:
    """One powershell.exe process: its preferences, variables and error records."""

    process: Process
    progress_silenced: bool = False
    stop_on_error: bool = False
    failed: bool = False  # $? of the last statement was false
    last_exit_code: int = 0
    variables: dict[str, Any] = field(default_factory=dict)
    errors: list[clixml.ErrorRecord] = field(init=False)
    modules_loaded: bool = False
    trap: str | None = None  # the body of the script's `trap { ... }`
    # Open `$(...)`/`@(...)`/script-block captures: output goes to the innermost one.
    captures: list[list[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.errors = _LiveErrors(self.process)

    @property
    def machine(self) -> m.WindowsMachine:
        return self.process.machine

    def out(self, text: str) -> None:
        """Pipeline output (Out-Default): one line, CRLF-terminated."""
        self.emit(text)

    def emit(self, value: Any) -> None:
        """A value on the pipeline: captured, or formatted to stdout like Out-Default."""
        if self.captures:
            self.captures[-1].append(value)
            return
        if value is None:
            return
        if not isinstance(value, str | int | float | bool):
            raise pslang.NotModelled(f"formatting a {type(value).__name__} for display")
        self.process.write_text("stdout", pslang.to_text(value) + "\r\n")

    def error(self, statement: str, message: str, category: str, fqid: str) -> None:
        """A non-terminating error (terminating if $ErrorActionPreference is Stop)."""
        record = clixml.ErrorRecord(statement, message, category, fqid)
        if self.stop_on_error:
            raise PsTerminating(record, "", message, script=True)
        self.errors.append(record)
        self.failed = True

    def load_module(self) -> None:
        # The first module cmdlet of a process writes the progress record PowerShell
        # is known for, unless $ProgressPreference is SilentlyContinue.
        self.modules_loaded = True

    def value(self, token: str) -> str:
        """The string a literal, ``$variable`` or bare word stands for ($env:X expanded)."""
        token = token.strip()
        if token.startswith("'") and token.endswith("'") and len(token) >= 2:
            return token[1:-1].replace("''", "'")
        if token.startswith('"') and token.endswith('"') and len(token) >= 2:
            return pslang.expand_string(self, token[1:-1])
        if re.fullmatch(r"\$\w+", token):
            return pslang.to_text(pslang.get_variable(self, token[1:]))
        return self._expand(token)

    def _expand(self, text: str) -> str:
        env = {k.casefold(): v for k, v in self.process.env.items()}
        return re.sub(
            r"\$(?:\{env:(\w+)\}|env:(\w+))",
            lambda v: env.get((v[1] or v[2]).casefold(), ""),
            text,
            flags=re.IGNORECASE,
        )


Handler = Callable[[re.Match[str], Session], None]
STATEMENTS: list[tuple[re.Pattern[str], Handler]] = []


def statement(pattern: str) -> Callable[[Handler], Handler]:
    """Register ``handler`` for statements matching ``pattern`` in full (case-insensitive)."""

    def register(handler: Handler) -> Handler:
        STATEMENTS.append((re.compile(pattern, re.IGNORECASE | re.DOTALL), handler))
        return handler

    return register


# -- powershell.exe -----------------------------------------------------------------------

_FLAGS_WITH_VALUE = ("-executionpolicy", "-ep", "-inputformat", "-outputformat", "-windowstyle")
_FLAGS = ("-noprofile", "-nop", "-noninteractive", "-noni", "-nologo", "-sta", "-mta")


def run_powershell(process: Process, args: list[str]) -> int:
    """``powershell.exe ARGS``: find the script, run it, write CLIXML stderr, exit."""
    script: str | None = None
    index = 0
    while index < len(args):
        word = args[index].casefold()
        if word in _FLAGS:
            index += 1
        elif word in _FLAGS_WITH_VALUE:
            index += 2
        elif word in ("-encodedcommand", "-enc", "-ec", "-e"):
            encoded = args[index + 1] if index + 1 < len(args) else ""
            script = base64.b64decode(encoded).decode("utf-16-le")
            break
        elif word in ("-command", "-c"):
            script = " ".join(args[index + 1 :])
            break
        else:
            script = " ".join(args[index:])
            break
    if script is None or script.strip() == "-":
        script = process.read_stdin().decode(process.encoding, errors="replace")
    process.machine.scripts.append(script)
    session = Session(process)
    try:
        run_script(session, script)
        code = 1 if session.failed else 0
    except PsExit as stop:
        code = stop.code
    if session.modules_loaded and not session.progress_silenced:
        assert isinstance(session.errors, _LiveErrors)
        session.errors.write(clixml.progress_document())
    return code


def run_script(session: Session, script: str) -> None:
    for text in split_statements(script):
        run_statement(session, text)


def run_statement(session: Session, text: str) -> None:
    """One statement; a terminating error goes to the script's trap, as in PowerShell."""
    try:
        _run_statement(session, text)
    except PsTerminating as error:
        session.failed = True
        if session.trap is None:
            session.errors.append(error.record)
            if error.script:
                raise PsExit(1) from None
            return  # statement-terminating: the script goes on
        trap, session.trap = session.trap, None  # an error inside the trap is not re-trapped
        saved = session.variables.get("_")
        session.variables["_"] = _error_object(error)
        try:
            pslang.run_block(session, trap)
        finally:
            session.variables["_"] = saved
            session.trap = trap
        session.errors.append(error.record)


def _error_object(error: PsTerminating) -> Any:
    """``$_`` in a trap: an ErrorRecord with the members scripts read."""
    from tests.winrm_server.cmdlets import PSObject

    command = PSObject("System.Management.Automation.CmdletInfo", {"Name": error.command})
    invocation = PSObject(
        "System.Management.Automation.InvocationInfo",
        {"MyCommand": command if error.command else None},
    )
    exception = PSObject("System.Exception", {"Message": error.message})
    return PSObject(
        "System.Management.Automation.ErrorRecord",
        {"Exception": exception, "InvocationInfo": invocation},
    )


def _run_statement(session: Session, text: str) -> None:
    session.process.check()
    for pattern, handler in STATEMENTS:
        match = pattern.fullmatch(text)
        if match is not None:
            session.failed = False
            handler(match, session)
            return
    session.failed = False
    try:
        pslang.execute(session, text)
    except pslang.NotModelled as exc:
        # What the double does not model fails as an unknown command does on Windows, so
        # a test never passes because a statement was silently skipped.
        name = exc.name if exc.name and " " not in exc.name else text.split()[0]
        session.errors.append(
            clixml.ErrorRecord(
                text,
                f"{name} : The term '{name}' is not recognized as the name of a cmdlet, "
                "function, script file, or operable program. Check the spelling of the "
                "name, or if a path was included, verify that the path is correct and "
                "try again.",
                f"ObjectNotFound: ({name}:String) [], CommandNotFoundException",
                "CommandNotFoundException",
            )
        )
        raise PsExit(1) from None


def split_statements(script: str) -> list[str]:
    """Top-level statements: split at ``;`` and newlines outside quotes and brackets.

    As in PowerShell, a line ending in ``,``, ``|`` or ``=`` continues on the next one.
    """
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    depth = 0
    chars = iter(script)
    for char in chars:
        if quote is not None:
            current.append(char)
            if char == "`" and quote == '"':
                current.append(next(chars, ""))
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char == "#" and (not current or current[-1] in " \t\r\n;{("):
            # A comment, at any depth, runs to the end of its line: a quote in it is text.
            for skipped in chars:
                if skipped == "\n":
                    break
            if depth == 0:
                statements.append("".join(current))
                current = []
            else:
                current.append("\n")
        elif char in "({[" or char in ")}]":
            depth += 1 if char in "({[" else -1
            current.append(char)
        elif char in "\r\n" and depth == 0 and "".join(current).rstrip().endswith((",", "|", "=")):
            current.append(char)
        elif char in ";\r\n" and depth == 0:
            statements.append("".join(current))
            current = []
        else:
            current.append(char)
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


# -- preferences, output, errors, flow ----------------------------------------------------


@statement(r"\$ProgressPreference\s*=\s*" + arg("value"))
def _progress_preference(match: re.Match[str], session: Session) -> None:
    session.progress_silenced = session.value(match["value"]).casefold() == "silentlycontinue"


@statement(r"trap\s*\{(?P<body>.*)\}")
def _trap(match: re.Match[str], session: Session) -> None:
    # PowerShell registers a scope's traps before running it; the scripts here set
    # theirs first, so registering it when reached is the same.
    session.trap = match["body"]


@statement(r"\$ErrorActionPreference\s*=\s*" + arg("value"))
def _error_action(match: re.Match[str], session: Session) -> None:
    session.stop_on_error = session.value(match["value"]).casefold() == "stop"


@statement(rf"Write-Host(?P<args>(?:\s+{_STR})+)")
def _write(match: re.Match[str], session: Session) -> None:
    values = [session.value(v) for v in re.findall(_STR, match["args"])]
    # The console host writes the text and the newline separately (recordings).
    session.process.write_text("stdout", " ".join(values))
    session.process.write_text("stdout", "\n")


@statement(r"\(pwd\)\.Path|\(Get-Location\)\.Path")
def _pwd(match: re.Match[str], session: Session) -> None:
    session.out(session.process.cwd)


@statement(r"Write-Error\s+(?:-Message\s+)?" + arg("value"))
def _write_error(match: re.Match[str], session: Session) -> None:
    message = session.value(match["value"])
    session.error(
        match[0],
        f"{match[0]} : {message}",
        "NotSpecified: (:) [Write-Error], WriteErrorException",
        "Microsoft.PowerShell.Commands.WriteErrorException",
    )


@statement(r"throw\s+" + arg("value"))
def _throw(match: re.Match[str], session: Session) -> None:
    message = session.value(match["value"])
    session.errors.append(
        clixml.ErrorRecord(
            match[0], message, f"OperationStopped: ({message}:String) [], RuntimeException", message
        )
    )
    raise PsExit(1)


@statement(r"exit(?:\s+(?P<code>-?\d+|\$LASTEXITCODE))?")
def _exit(match: re.Match[str], session: Session) -> None:
    code = match["code"]
    if code is None:
        raise PsExit(0)
    raise PsExit(session.last_exit_code if code.startswith("$") else int(code))


# -- registry -----------------------------------------------------------------------------

_PATH_PARAM = r"(?:-Path\s+|-LiteralPath\s+)?"


@statement(
    rf"\(Get-ItemProperty\s+{_PATH_PARAM}{arg('key')}\s+-Name\s+{arg('name')}\)\.(?P<prop>\w+)"
    rf"|Get-ItemPropertyValue\s+{_PATH_PARAM}{arg('key2')}\s+-Name\s+{arg('name2')}"
)
def _registry_read(match: re.Match[str], session: Session) -> None:
    key = session.value(match["key"] or match["key2"])
    name = session.value(match["name"] or match["name2"])
    value = session.machine.get_value(key, name)
    if value is None:
        session.error(
            match[0],
            f"Property {name} does not exist at path {key}.",
            f"InvalidArgument: ({name}:String) [Get-ItemProperty], PSArgumentException",
            "System.Management.Automation.PSArgumentException",
        )
        return
    session.out(str(value))


@statement(
    rf"Set-ItemProperty\s+{_PATH_PARAM}{arg('key')}\s+-Name\s+{arg('name')}\s+-Value\s+{arg('value')}"
)
def _registry_write(match: re.Match[str], session: Session) -> None:
    value: object = session.value(match["value"])
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    session.machine.set_value(session.value(match["key"]), session.value(match["name"]), value)


# -- files --------------------------------------------------------------------------------


def _missing_file(session: Session, statement_text: str, path: str) -> None:
    session.error(
        statement_text,
        f"Cannot find path '{path}' because it does not exist.",
        f"ObjectNotFound: ({path}:String) [], ItemNotFoundException",
        "PathNotFound",
    )


@statement(r"\[Convert\]::ToBase64String\(\[IO\.File\]::ReadAllBytes\(" + arg("path") + r"\)\)")
def _read_base64(match: re.Match[str], session: Session) -> None:
    path = session.value(match["path"])
    data = session.machine.read_file(path)
    if data is None:
        session.errors.append(
            clixml.ErrorRecord(
                match[0],
                f'Exception calling "ReadAllBytes" with "1" argument(s): "Could not find file '
                f"'{path}'.\"",
                "NotSpecified: (:) [], MethodInvocationException",
                "FileNotFoundException",
            )
        )
        raise PsExit(1)
    session.out(base64.b64encode(data).decode("ascii"))


@statement(rf"\(Get-FileHash\s+{_PATH_PARAM}{arg('path')}\s+-Algorithm\s+SHA256\)\.Hash")
def _file_hash(match: re.Match[str], session: Session) -> None:
    session.load_module()
    path = session.value(match["path"])
    data = session.machine.read_file(path)
    if data is None:
        _missing_file(session, match[0], path)
        return
    session.out(hashlib.sha256(data).hexdigest().upper())


# -- the stdin bootstraps of agent.executors.winrm.scripts --------------------------------
# The statements are taken from the executor, not copied. The double gives the four that
# use what pslang lacks ($input, SHA256, ScriptBlock, WriteAllBytes) what they do on
# Windows; the digest check between them (if, [Console]::Error, exit) is interpreted like
# any other statement.

_SAMPLE_PATH = "C:\\imageprep-double\\sample"


def _bootstrap_statements() -> tuple[list[str], list[str]]:
    run = split_statements(executor_scripts.run_from_stdin("")[0])
    write = split_statements(executor_scripts.write_from_stdin(_SAMPLE_PATH, b"")[0])
    # preamble, payload from stdin, digest, digest check, action: fail loudly on another shape
    if len(run) != 5 or run[:-1] != write[:-1]:
        raise RuntimeError("the executor's stdin bootstrap changed shape: update the double")
    return run, write


def _assigned(text: str) -> str:
    """The variable a ``$name = ...`` statement assigns."""
    return text.split("=", 1)[0].strip().removeprefix("$")


_RUN_BOOTSTRAP, _WRITE_BOOTSTRAP = _bootstrap_statements()
_PAYLOAD_VAR = _assigned(_RUN_BOOTSTRAP[1])
_DIGEST_VAR = _assigned(_RUN_BOOTSTRAP[2])


@statement(re.escape(_RUN_BOOTSTRAP[1]))
def _payload_from_stdin(match: re.Match[str], session: Session) -> None:
    text = session.process.read_stdin().decode("ascii", errors="replace")
    try:
        session.variables[_PAYLOAD_VAR] = base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error as exc:
        session.errors.append(
            clixml.ErrorRecord(
                match[0],
                'Exception calling "FromBase64String" with "1" argument(s): "The input is not '
                'a valid Base-64 string."',
                "NotSpecified: (:) [], MethodInvocationException",
                "FormatException",
            )
        )
        raise PsExit(1) from exc


@statement(re.escape(_RUN_BOOTSTRAP[2]))
def _payload_digest(match: re.Match[str], session: Session) -> None:
    session.variables[_DIGEST_VAR] = hashlib.sha256(_payload(session)).hexdigest().upper()


@statement(re.escape(_RUN_BOOTSTRAP[4]))
def _run_payload(match: re.Match[str], session: Session) -> None:
    script = _payload(session).decode("utf-8")
    session.machine.scripts.append(script)
    run_script(session, script)


@statement(
    re.escape(_WRITE_BOOTSTRAP[4]).replace(
        re.escape(executor_scripts.quote(_SAMPLE_PATH)), arg("path")
    )
)
def _write_payload(match: re.Match[str], session: Session) -> None:
    session.machine.write_file(session.value(match["path"]), _payload(session))


def _payload(session: Session) -> bytes:
    data = session.variables[_PAYLOAD_VAR]
    assert isinstance(data, bytes)
    return data


# -- the lock on the VM (agent/executors/winrm/vmlock.py) ---------------------------------
# The .NET statements of the lock shell's command, taken from the executor, not copied.
# They act on the machine's open-file table (WindowsMachine.open_file): the share-mode
# rules of CreateFile, handles closed when the process ends, delete-on-close.


@dataclass(eq=False)
class _FileStream:
    """A System.IO.FileStream: an open handle on the machine."""

    handle: m.FileHandle
    path: str


def _stream(session: Session, name: str) -> _FileStream | None:
    value = session.variables.get(name)
    return value if isinstance(value, _FileStream) else None


@statement(re.escape(executor_vmlock.OPEN))
def _lock_open(match: re.Match[str], session: Session) -> None:
    path = str(session.variables["path"])
    try:
        handle = session.machine.open_file(
            session.process,
            path,
            create=True,
            access=frozenset({"read", "write"}),
            share=frozenset({"read"}),
            delete_on_close=True,
        )
    except m.SharingViolation:
        session.variables["lock"] = None  # catch [System.IO.IOException]
        return
    session.variables["lock"] = _FileStream(handle, path)


@statement(re.escape(executor_vmlock.REFUSE))
def _lock_refuse(match: re.Match[str], session: Session) -> None:
    if _stream(session, "lock") is not None:
        return
    path = str(session.variables["path"])
    handle = session.machine.open_file(
        session.process,
        path,
        create=False,
        access=frozenset({"read"}),
        share=frozenset({"read", "write", "delete"}),
    )
    session.variables["held"] = _FileStream(handle, path)
    content = session.machine.read_file(path) or b""
    session.out("busy:" + content.decode("utf-8", errors="replace"))
    raise PsExit(executor_vmlock.BUSY_EXIT)


@statement(re.escape(executor_vmlock.READ_OLD))
def _lock_read_old(match: re.Match[str], session: Session) -> None:
    stream = _stream(session, "lock")
    assert stream is not None, "the lock script reads only a stream it opened"
    content = session.machine.read_file(stream.path) or b""
    session.variables["old"] = content.decode("utf-8", errors="replace")


@statement(r"&\s*\{\s*" + re.escape(executor_vmlock.WRITE_RECORD) + r"\s*\}")
def _lock_write_record(match: re.Match[str], session: Session) -> None:
    # SetLength(0) moves the position back to 0; Write puts the record's UTF-8 bytes there.
    stream = _stream(session, "lock")
    assert stream is not None, "the lock script writes only a stream it opened"
    session.machine.write_file(stream.path, str(session.variables["record"]).encode("utf-8"))


# -- Windows state: Sysprep, shutdown ------------------------------------------------------


@statement(r"&\s*" + arg("exe") + r"(?P<args>(?:\s+" + _STR + r")*)")
def _call_native(match: re.Match[str], session: Session) -> None:
    _native(match[0], session.value(match["exe"]), re.findall(_STR, match["args"]), session)


@statement(r"(?P<exe>(?:[\w:\\.$-]*\\)?(?:shutdown|sysprep)(?:\.exe)?)(?P<args>(?:\s+[^\s;]+)*)")
def _bare_native(match: re.Match[str], session: Session) -> None:
    _native(match[0], session.value(match["exe"]), match["args"].split(), session)


def _native(text: str, exe: str, raw_args: list[str], session: Session) -> None:
    from tests.winrm_server.programs import native_program

    program = native_program(exe)
    if program is None or ("\\" in exe and not session.machine.file_exists(exe)):
        session.errors.append(
            clixml.ErrorRecord(
                text,
                f"& : The term '{exe}' is not recognized as the name of a cmdlet, function, "
                "script file, or operable program.",
                f"ObjectNotFound: ({exe}:String) [], CommandNotFoundException",
                "CommandNotFoundException",
            )
        )
        raise PsExit(1)
    session.last_exit_code = program(session.process, [session.value(a) for a in raw_args])
    session.failed = session.last_exit_code != 0
