"""Commands, .NET members and objects that :mod:`tests.winrm_server.pslang` evaluates.

Part of the WinRM *test double for a Windows machine* (see ``tests/winrm_server``). Each
command reads or changes :class:`~tests.winrm_server.machine.WindowsMachine` and answers
with objects shaped like the real cmdlet's (the properties imageprep reads, by their real
names), and fails like it: a missing registry key, process, service or file is a
non-terminating error record, silenced by ``-ErrorAction SilentlyContinue``, terminating
under ``-ErrorAction Stop`` or ``$ErrorActionPreference = 'Stop'``. A command, type or
method that is not here is "not recognized".
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tests.winrm_server import clixml
from tests.winrm_server import machine as m
from tests.winrm_server.pslang import NotModelled, ScriptBlock, iterate, to_text, truthy
from tests.winrm_server.shells import Process, Terminated

if TYPE_CHECKING:
    from tests.winrm_server.powershell import Session


class PSObject:
    """An object with properties (case-insensitive; a callable is read live) and methods."""

    def __init__(
        self,
        type_name: str,
        properties: dict[str, Any],
        methods: dict[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.type_name = type_name
        self._properties = {k.casefold(): (k, v) for k, v in properties.items()}
        self._methods = {k.casefold(): v for k, v in (methods or {}).items()}

    def get(self, name: str) -> Any:
        found = self._properties.get(name.casefold())
        if found is None:
            return None
        value = found[1]
        return value() if callable(value) else value

    def has(self, name: str) -> bool:
        return name.casefold() in self._properties

    def method(self, name: str) -> Callable[..., Any] | None:
        return self._methods.get(name.casefold())

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


# -- members --------------------------------------------------------------------------


def member_of(value: Any, name: str) -> Any:
    """``value.Name`` as PowerShell reads it (member enumeration on arrays)."""
    lowered = name.casefold()
    if lowered in ("count", "length") and not (isinstance(value, PSObject) and value.has(name)):
        if value is None:
            return 0
        if isinstance(value, list):
            return len(value)
        if isinstance(value, str) and lowered == "length":
            return len(value)
        return 1
    if isinstance(value, list):
        found = [member_of(item, name) for item in value]
        found = [f for f in found if f is not None]
        return found[0] if len(found) == 1 else found or None
    if isinstance(value, PSObject):
        return value.get(name)
    if isinstance(value, dict):  # a hashtable's keys read as properties, caselessly
        return next((v for k, v in value.items() if k.casefold() == lowered), None)
    return None


_STRING_METHODS: dict[str, Callable[..., Any]] = {
    "trim": lambda s, *chars: s.strip("".join(chars)) if chars else s.strip(),
    "trimend": lambda s, *chars: s.rstrip("".join(chars)) if chars else s.rstrip(),
    "trimstart": lambda s, *chars: s.lstrip("".join(chars)) if chars else s.lstrip(),
    "tolower": lambda s: s.lower(),
    "toupper": lambda s: s.upper(),
    "startswith": lambda s, p: s.startswith(p),
    "endswith": lambda s, p: s.endswith(p),
    "contains": lambda s, p: p in s,
    "replace": lambda s, a, b: s.replace(a, b),
    # String.Split(chars): splits at any of the characters given.
    "split": lambda s, *chars: (
        re.split("[" + re.escape("".join(chars)) + "]", s) if chars else s.split()
    ),
}


def call_method(session: Session, target: Any, name: str, args: list[Any]) -> Any:
    if isinstance(target, str) and name.casefold() in _STRING_METHODS:
        return _STRING_METHODS[name.casefold()](target, *[to_text(a) for a in args])
    if isinstance(target, PSObject):
        method = target.method(name)
        if method is not None:
            return method(*args)
    raise NotModelled(f"method {name}() of {type(target).__name__}")


def cast_to(type_name: str, value: Any) -> Any:
    kind = type_name.casefold().removeprefix("system.")
    if kind in ("int", "int32", "int64", "long"):
        number = value if isinstance(value, int | float) else float(to_text(value) or 0)
        return round(number)  # .NET rounds half to even, as Python does
    if kind == "double":
        return float(to_text(value) or 0)
    if kind == "string":
        return to_text(value)
    if kind == "bool":
        return truthy(value)
    raise NotModelled(f"[{type_name}]")


# -- static members ---------------------------------------------------------------------


def _console_writer(session: Session, stream: str) -> PSObject:
    def write(text: Any = "", newline: bool = False) -> None:
        session.process.write_text(stream, to_text(text) + ("\r\n" if newline else ""))

    return PSObject(
        "System.IO.TextWriter",
        {},
        {"WriteLine": lambda text="": write(text, True), "Write": lambda text: write(text)},
    )


def _identity(machine: m.WindowsMachine) -> PSObject:
    return PSObject(
        "System.Security.Principal.WindowsIdentity",
        {"Name": machine.account_name, "IsSystem": machine.account_is_system},
    )


def _stopwatch(machine: m.WindowsMachine) -> PSObject:
    started = time.monotonic()

    def seconds() -> float:  # virtual seconds, like every clock on the double
        return (time.monotonic() - started) / machine.time_scale

    elapsed = PSObject("System.TimeSpan", {"TotalSeconds": seconds})
    return PSObject("System.Diagnostics.Stopwatch", {"Elapsed": lambda: elapsed})


def static_member(session: Session, type_name: str, member: str, args: list[Any] | None) -> Any:
    kind = type_name.casefold().removeprefix("system.")
    name = member.casefold()
    machine = session.machine
    if kind == "console" and name in ("error", "out") and args is None:
        return _console_writer(session, "stderr" if name == "error" else "stdout")
    if kind == "security.principal.windowsidentity" and name == "getcurrent" and args == []:
        return _identity(machine)
    if kind == "security.principal.windowsbuiltinrole" and args is None:
        return member
    if kind == "diagnostics.stopwatch" and name == "startnew" and args == []:
        return _stopwatch(machine)
    if kind == "text.encoding" and name in ("unicode", "utf8", "ascii") and args is None:
        codec = {"unicode": "utf-16-le", "utf8": "utf-8", "ascii": "ascii"}[name]
        return PSObject(
            "System.Text.Encoding",
            {},
            {
                "GetBytes": lambda text: list(to_text(text).encode(codec)),
                "GetString": lambda data: bytes(data).decode(codec),
            },
        )
    if kind == "convert" and name == "tobase64string" and args is not None and len(args) == 1:
        import base64

        return base64.b64encode(bytes(args[0])).decode("ascii")
    if kind == "math" and args:
        number = float(to_text(args[0]))
        if name == "floor":
            return int(number // 1)
        if name == "round":
            return round(number, int(args[1]) if len(args) > 1 else 0)
    raise NotModelled(f"[{type_name}]::{member}")


# -- commands -----------------------------------------------------------------------------

_SWITCHES = frozenset(
    {"force", "recurse", "allusers", "online", "passthru", "wait", "raw", "nonewwindow", "file"}
)
_ERROR_ACTIONS = ("erroraction", "ea")
CIM_INSTANCE = "Microsoft.Management.Infrastructure.CimInstance"


@dataclass
class Call:
    """One command invocation: its evaluated arguments and how it reports errors."""

    session: Session
    name: str
    text: str
    named: dict[str, Any] = field(default_factory=dict)
    positional: list[Any] = field(default_factory=list)
    pipe_input: list[Any] | None = None

    @property
    def machine(self) -> m.WindowsMachine:
        return self.session.machine

    def arg(self, *names: str, position: int | None = None) -> Any:
        for name in names:
            if name in self.named:
                return self.named[name]
        if position is not None and position < len(self.positional):
            return self.positional[position]
        return None

    def switch(self, name: str) -> bool:
        return bool(self.named.get(name))

    def error(self, message: str, category: str, fqid: str) -> None:
        """A non-terminating error, as -ErrorAction / $ErrorActionPreference decide."""
        action = to_text(self.arg(*_ERROR_ACTIONS)).casefold()
        session = self.session
        session.failed = True
        if action in ("silentlycontinue", "ignore"):
            return
        record = clixml.ErrorRecord(self.text, f"{self.name} : {message}", category, fqid)
        if action == "stop" or (not action and session.stop_on_error):
            from tests.winrm_server.powershell import PsTerminating

            raise PsTerminating(record, self.name, message, script=True)
        session.errors.append(record)

    def throw(self, message: str, exception: str) -> None:
        """A statement-terminating error (the cmdlet threw): -ErrorAction cannot silence
        it; the script goes on with its next statement unless Stop or a trap says else."""
        from tests.winrm_server.powershell import PsTerminating

        record = clixml.ErrorRecord(
            self.text,
            f"{self.name} : {message}",
            f"NotSpecified: (:) [{self.name}], {exception}",
            f"System.{exception},{self.name}",
        )
        raise PsTerminating(record, self.name, message, script=self.session.stop_on_error)


Command = Callable[[Call], list[Any]]
COMMANDS: dict[str, Command] = {}


def command(*names: str) -> Callable[[Command], Command]:
    def register(handler: Command) -> Command:
        for name in names:
            COMMANDS[name.casefold()] = handler
        return handler

    return register


def invoke_command(
    session: Session,
    name: str,
    args: list[tuple[str | None, Callable[[Session], Any] | None]],
    pipe_input: list[Any] | None,
) -> list[Any]:
    handler = COMMANDS.get(name.casefold())
    if handler is None:
        raise NotModelled(name)
    call = Call(session, name, name, pipe_input=pipe_input)
    failure = session.machine.failing_cmdlets.get(name.casefold())
    index = 0
    while index < len(args):
        param, node = args[index]
        if param is None:
            assert node is not None
            call.positional.append(node(session))
        elif param.casefold() in _SWITCHES or index + 1 >= len(args) or args[index + 1][0]:
            call.named[param.casefold()] = True
        else:
            value_node = args[index + 1][1]
            assert value_node is not None
            call.named[param.casefold()] = value_node(session)
            index += 1
        index += 1
    if failure is not None:
        message, exception = failure
        if exception:
            call.throw(message, exception)
        call.error(message, f"NotSpecified: (:) [{name}], CimException", f"{name}Failed")
        return []
    return handler(call)


def _not_found(call: Call, path: str) -> None:
    call.error(
        f"Cannot find path '{path}' because it does not exist.",
        f"ObjectNotFound: ({path}:String) [{call.name}], ItemNotFoundException",
        f"PathNotFound,Microsoft.PowerShell.Commands.{call.name.replace('-', '')}Command",
    )


def _path(call: Call) -> str:
    return to_text(call.arg("literalpath", "path", position=0))


def _is_registry(path: str) -> bool:
    return re.match(r"(HK\w+:|HKEY_|Registry::)", path, re.IGNORECASE) is not None


@command("Get-ItemProperty")
def _get_item_property(call: Call) -> list[Any]:
    path = _path(call)
    if not _is_registry(path) or not call.machine.key_exists(path):
        _not_found(call, path)
        return []
    values = dict(call.machine.registry.get(m.registry_key(path), {}))
    name = call.arg("name", position=1)
    if name is not None:
        wanted = to_text(name)
        found = {k: v for k, v in values.items() if k.casefold() == wanted.casefold()}
        if not found:
            call.error(
                f"Property {wanted} does not exist at path {path}.",
                f"InvalidArgument: ({wanted}:String) [Get-ItemProperty], PSArgumentException",
                "System.Management.Automation.PSArgumentException",
            )
            return []
        values = found
    return [PSObject("System.Management.Automation.PSCustomObject", values)]


@command("Get-Item")
def _get_item(call: Call) -> list[Any]:
    """Only the WSMan: drive's shell settings (``WSMan:\\localhost\\Shell\\NAME``)."""
    path = _path(call)
    head, _, name = path.rstrip("\\").rpartition("\\")
    if head.casefold() != r"wsman:\localhost\shell":
        raise NotModelled(f"Get-Item {path}")
    config = {k.casefold(): (k, v) for k, v in call.machine.winrm_shell_config.items()}
    found = config.get(name.casefold())
    if found is None:
        _not_found(call, path)
        return []
    # The WSMan provider gives every value as a string.
    return [PSObject("WSManConfigLeafElement", {"Name": found[0], "Value": str(found[1])})]


@command("Get-ChildItem")
def _get_child_item(call: Call) -> list[Any]:
    """Files below a folder (``-Recurse -File`` only), as FileInfo objects."""
    if not (call.switch("recurse") and call.switch("file")):
        raise NotModelled("Get-ChildItem without -Recurse -File")
    path = _path(call)
    if not call.machine.path_exists(path):
        _not_found(call, path)
        return []
    return [
        PSObject(
            "System.IO.FileInfo",
            {"FullName": name, "Name": name.rsplit("\\", 1)[-1], "Length": size},
        )
        for name, size in call.machine.files_below(path)
    ]


@command("Test-Path")
def _test_path(call: Call) -> list[Any]:
    path = _path(call)
    if _is_registry(path):
        return [call.machine.key_exists(path)]
    return [call.machine.path_exists(path)]


@command("Join-Path")
def _join_path(call: Call) -> list[Any]:
    parent = to_text(call.arg("path", position=0)).rstrip("\\")
    child = to_text(call.arg("childpath", position=1)).lstrip("\\")
    return [f"{parent}\\{child}"]


@command("Get-Content")
def _get_content(call: Call) -> list[Any]:
    path = _path(call)
    data = call.machine.read_file(path)
    if data is None:
        _not_found(call, path)
        return []
    lines = data.decode("utf-8-sig", errors="replace").splitlines()
    tail = call.arg("tail")
    if tail is not None:
        count = int(to_text(tail))
        lines = lines[-count:] if count else []
    return list(lines)


@command("Remove-Item")
def _remove_item(call: Call) -> list[Any]:
    for path in iterate(call.arg("literalpath", "path", position=0)):
        text = to_text(path)
        wildcard = "literalpath" not in call.named and text.endswith("\\*")
        in_use: list[str] = []
        if wildcard:
            in_use = call.machine.remove_tree(text[:-2], keep_root=True)
        elif call.machine.file_exists(text):
            in_use = call.machine.remove_tree(text)
        elif call.machine.path_exists(text):
            if not call.switch("recurse"):
                raise NotModelled("Remove-Item of a folder without -Recurse (it prompts)")
            in_use = call.machine.remove_tree(text)
        else:
            _not_found(call, text)
        for busy in in_use:
            call.error(
                f"Cannot remove item {busy}: The process cannot access the file '{busy}' "
                "because it is being used by another process.",
                f"WriteError: ({busy}:FileInfo) [Remove-Item], IOException",
                "RemoveFileSystemItemIOError,Microsoft.PowerShell.Commands.RemoveItemCommand",
            )
    return []


@command("Set-Content")
def _set_content(call: Call) -> list[Any]:
    """Write text to a file (UTF8 with a BOM, ASCII, or Unicode, as -Encoding says)."""
    path = _path(call)
    encoding = to_text(call.arg("encoding") or "ascii").casefold()
    codecs = {"utf8": "utf-8-sig", "ascii": "ascii", "unicode": "utf-16"}
    if encoding not in codecs:
        raise NotModelled(f"Set-Content -Encoding {encoding}")
    value = call.arg("value", position=1)
    text = "\r\n".join(to_text(v) for v in iterate(value)) + "\r\n"
    call.machine.write_file(path, text.encode(codecs[encoding]))
    return []


@command("Move-Item")
def _move_item(call: Call) -> list[Any]:
    source = _path(call)
    data = call.machine.read_file(source)
    if data is None:
        _not_found(call, source)
        return []
    call.machine.write_file(to_text(call.arg("destination", position=1)), data)
    call.machine.remove_tree(source)
    return []


@command("Get-Date")
def _get_date(call: Call) -> list[Any]:
    pattern = to_text(call.arg("format"))
    if not pattern:
        raise NotModelled("Get-Date without -Format")
    for dotnet, python in (
        ("yyyy", "%Y"),
        ("MM", "%m"),
        ("dd", "%d"),
        ("HH", "%H"),
        ("mm", "%M"),
        ("ss", "%S"),
    ):
        pattern = pattern.replace(dotnet, python)
    return [datetime.now().strftime(pattern)]


@command("Start-Sleep")
def _start_sleep(call: Call) -> list[Any]:
    milliseconds = call.arg("milliseconds", "m")
    seconds = (
        float(to_text(milliseconds)) / 1000
        if milliseconds is not None
        else float(to_text(call.arg("seconds", "s", position=0)))
    )
    call.session.process.sleep(seconds)
    return []


@command("Write-Output", "echo")
def _write_output(call: Call) -> list[Any]:
    return [item for value in call.positional for item in iterate(value)]


@command("Out-Null")
def _out_null(call: Call) -> list[Any]:
    return []


@command("Where-Object")
def _where_object(call: Call) -> list[Any]:
    block = call.arg("filterscript", position=0)
    if not isinstance(block, ScriptBlock):
        raise NotModelled("Where-Object without a script block")
    return [item for item in call.pipe_input or [] if truthy(block.invoke(call.session, item))]


@command("ForEach-Object")
def _foreach_object(call: Call) -> list[Any]:
    block = call.arg("process", position=0)
    if not isinstance(block, ScriptBlock):
        raise NotModelled("ForEach-Object without a script block")
    return [out for item in call.pipe_input or [] for out in block.invoke(call.session, item)]


@command("Select-Object")
def _select_object(call: Call) -> list[Any]:
    items = list(call.pipe_input or [])
    prop = call.arg("expandproperty")
    if prop is not None:
        items = [v for item in items for v in iterate(member_of(item, to_text(prop)))]
    first = call.arg("first")
    if first is not None:
        items = items[: int(to_text(first))]
    index = call.arg("index")
    if index is not None:  # in pipeline order, each once; those out of range give nothing
        wanted = {int(to_text(i)) for i in iterate(index)}
        items = [item for i, item in enumerate(items) if i in wanted]
    return items


@command("New-Object")
def _new_object(call: Call) -> list[Any]:
    type_name = to_text(call.arg("typename", position=0)).casefold().removeprefix("system.")
    argument = call.arg("argumentlist", position=1)
    if type_name == "security.principal.windowsprincipal" and isinstance(argument, PSObject):
        machine = call.machine
        # Elevated only when the logon token is (remote UAC filters other local admins).
        in_role: Callable[[Any], bool] = lambda role: (  # noqa: E731
            to_text(role).casefold() == "administrator" and machine.account_is_admin
        )
        return [PSObject("System.Security.Principal.WindowsPrincipal", {}, {"IsInRole": in_role})]
    raise NotModelled(f"New-Object {type_name}")


@command("Get-Command")
def _get_command(call: Call) -> list[Any]:
    name = to_text(call.arg("name", position=0))
    available = name.casefold() in COMMANDS
    if name.casefold() == "get-bitlockervolume":
        available = call.machine.bitlocker_installed and call.machine.bitlocker_cmdlets
    if not available:
        call.error(
            f"The term '{name}' is not recognized as the name of a cmdlet, function, script "
            "file, or operable program.",
            f"ObjectNotFound: ({name}:String) [Get-Command], CommandNotFoundException",
            "CommandNotFoundException,Microsoft.PowerShell.Commands.GetCommandCommand",
        )
        return []
    return [PSObject("System.Management.Automation.CmdletInfo", {"Name": name})]


@command("Stop-Computer")
def _stop_computer(call: Call) -> list[Any]:
    call.machine.schedule_power_off(1.0)
    return []


# -- Windows state ------------------------------------------------------------------------


@command("Get-CimInstance")
def _get_cim_instance(call: Call) -> list[Any]:
    class_name = to_text(call.arg("classname", position=0))
    namespace = to_text(call.arg("namespace") or r"root\cimv2")
    instances = call.machine.cim_instances(namespace, class_name)
    if instances is None:
        call.error(
            "Invalid namespace ",
            f"MetadataError: ({namespace}:String) [Get-CimInstance], CimException",
            "HRESULT 0x8004100e,Microsoft.Management.Infrastructure.CimCmdlets."
            "GetCimInstanceCommand",
        )
        return []
    query = to_text(call.arg("filter"))
    if query:
        field_name, _, wanted = query.partition("=")
        instances = [
            i
            for i in instances
            if to_text(i.get(field_name.strip())).casefold() == wanted.strip(" '").casefold()
        ]
    # PowerShell's own type name for it, which says where the instance came from.
    path = namespace.replace("\\", "/") + "/" + class_name
    return [PSObject(f"{CIM_INSTANCE}#{path}", i) for i in instances]


@command("Invoke-CimMethod")
def _invoke_cim_method(call: Call) -> list[Any]:
    namespace = to_text(call.arg("namespace"))
    method = to_text(call.arg("methodname"))
    class_name = to_text(call.arg("classname"))
    instances = [*iterate(call.arg("inputobject")), *(call.pipe_input or [])]
    if instances:  # -InputObject $instance, or the instance piped in: its own class
        if len(instances) > 1 or not isinstance(instances[0], PSObject):
            raise NotModelled("Invoke-CimMethod on other than one CIM instance")
        type_name, _, path = instances[0].type_name.partition("#")
        if type_name != CIM_INSTANCE:
            raise NotModelled(f"Invoke-CimMethod -InputObject {type_name}")
        namespace, _, class_name = path.rpartition("/")
    in_cimv2 = namespace.casefold().replace("/", "\\") in ("", r"root\cimv2")
    if in_cimv2 and class_name.casefold() == "win32_process" and method.casefold() == "create":
        return [PSObject("CimMethodResult", _create_process(call))]
    result = call.machine.cim_method(namespace, class_name, method)
    if result is None and call.machine.cim_instances(namespace, class_name):
        raise NotModelled(f"Invoke-CimMethod {class_name}.{method}")
    if result is None:
        call.error(
            "Invalid namespace ",
            f"MetadataError: ({namespace}:String) [Invoke-CimMethod], CimException",
            "HRESULT 0x8004100e,Microsoft.Management.Infrastructure.CimCmdlets."
            "InvokeCimMethodCommand",
        )
        return []
    return [PSObject("CimMethodResult", result)]


def _create_process(call: Call) -> dict[str, object]:
    """Win32_Process.Create: started by the WMI service, so in no WinRS job object; it
    outlives the command and the shell that asked for it (Ansible's async_wrapper relies
    on this). Return values as documented: 0 started, 9 path not found."""
    from tests.winrm_server.programs import native_program, split_arguments

    arguments = call.arg("arguments")
    if not isinstance(arguments, dict):
        raise NotModelled("Invoke-CimMethod Win32_Process Create without -Arguments @{...}")
    given = {k.casefold(): v for k, v in arguments.items()}
    words = split_arguments(to_text(given.get("commandline")))
    cwd = to_text(given.get("currentdirectory")) or call.session.process.cwd
    program = native_program(words[0]) if words else None
    if program is None or not call.machine.file_exists(words[0]):
        return {"ProcessId": None, "ReturnValue": 9}
    parent = call.session.process
    detached = Process(parent.machine, parent.codepage, dict(parent.machine.env), cwd)
    name = re.split(r"[\\/]", words[0])[-1].removesuffix(".exe").removesuffix(".EXE")
    handle = ChildHandle(call.machine.next_pid(), name, call.machine, detached)
    call.machine.children.append(handle)
    body = program
    threading.Thread(
        target=handle.run, args=(lambda: body(detached, words[1:]),), daemon=True
    ).start()
    return {"ProcessId": handle.pid, "ReturnValue": 0}


@command("Stop-Process")
def _stop_process(call: Call) -> list[Any]:
    for pid in iterate(call.arg("id", position=0)):
        found = [c for c in call.machine.children if str(c.pid) == to_text(pid)]
        if not found or found[0].done.is_set():
            call.error(
                f"Cannot find a process with the process identifier {pid}.",
                f"ObjectNotFound: ({pid}:Int32) [Stop-Process], ProcessCommandException",
                "NoProcessFoundForGivenId,Microsoft.PowerShell.Commands.StopProcessCommand",
            )
            continue
        found[0].process.kill()
        found[0].done.wait(5)
    return []


@command("Get-Process")
def _get_process(call: Call) -> list[Any]:
    out: list[Any] = []
    for pid in iterate(call.arg("id")):
        found = [p for p in call.machine.process_table() if str(p["Id"]) == to_text(pid)]
        if not found:
            call.error(
                f"Cannot find a process with the process identifier {pid}.",
                f"ObjectNotFound: ({pid}:Int32) [Get-Process], ProcessCommandException",
                "NoProcessFoundForGivenId,Microsoft.PowerShell.Commands.GetProcessCommand",
            )
        out += [
            PSObject("System.Diagnostics.Process", {**p, "ProcessName": p["Name"]}) for p in found
        ]
    if call.arg("id") is not None:
        return out
    for name in iterate(call.arg("name", position=0)):
        found = [
            p
            for p in call.machine.process_table()
            if str(p["Name"]).casefold() == to_text(name).casefold()
        ]
        if not found:
            call.error(
                f'Cannot find a process with the name "{name}". Verify the process name and '
                "call the cmdlet again.",
                f"ObjectNotFound: ({name}:String) [Get-Process], ProcessCommandException",
                "NoProcessFoundForGivenName,Microsoft.PowerShell.Commands.GetProcessCommand",
            )
        out += [
            PSObject("System.Diagnostics.Process", {**p, "ProcessName": p["Name"]}) for p in found
        ]
    return out


@command("Get-Service")
def _get_service(call: Call) -> list[Any]:
    out: list[Any] = []
    for name in iterate(call.arg("name", position=0)):
        status = next(
            (
                v
                for k, v in call.machine.services.items()
                if k.casefold() == to_text(name).casefold()
            ),
            None,
        )
        if status is None:
            call.error(
                f"Cannot find any service with service name '{name}'.",
                f"ObjectNotFound: ({name}:String) [Get-Service], ServiceCommandException",
                "NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand",
            )
            continue
        out.append(
            PSObject(
                "System.ServiceProcess.ServiceController", {"Name": to_text(name), "Status": status}
            )
        )
    return out


@command("Get-BitLockerVolume")
def _get_bitlocker_volume(call: Call) -> list[Any]:
    call.session.load_module()  # a module cmdlet: the first-use progress record
    if not (call.machine.bitlocker_installed and call.machine.bitlocker_cmdlets):
        raise NotModelled("Get-BitLockerVolume")
    machine = call.machine
    return [
        PSObject(
            "BitLockerVolume",
            {
                "MountPoint": to_text(call.arg("mountpoint", position=0)),
                "VolumeStatus": machine.bitlocker_status,
                "ProtectionStatus": "On" if machine.bitlocker_protected() else "Off",
                "EncryptionPercentage": 100 * machine.bitlocker_encrypted(),
            },
        )
    ]


@command("Get-WindowsFeature")
def _get_windows_feature(call: Call) -> list[Any]:
    """The installed roles and features (a real machine lists the available ones too)."""
    call.session.load_module()  # ServerManager
    return [
        PSObject(
            "Microsoft.Windows.ServerManager.Commands.Feature",
            {"Name": name, "DisplayName": name, "Installed": True, "InstallState": "Installed"},
        )
        for name in call.machine.installed_features
    ]


@command("Get-AppxPackage")
def _get_appx_package(call: Call) -> list[Any]:
    call.session.load_module()  # a module cmdlet: the first-use progress record
    if not call.switch("allusers"):
        raise NotModelled("Get-AppxPackage without -AllUsers")
    machine = call.machine
    out = []
    for full_name in machine.appx_all_packages():
        users = [
            PSObject(
                "PackageUserInformation",
                {
                    "UserSecurityId": PSObject(
                        "UserSecurityId",
                        {
                            "Username": f"{machine.hostname}\\{user}",
                            "Sid": machine.sid_of(user),
                        },
                    ),
                    "InstallState": "Installed",
                },
            )
            for user, packages in sorted(machine.appx_installed.items())
            if full_name in packages
        ]
        name, version = m.appx_identity(full_name)
        out.append(
            PSObject(
                "Microsoft.Windows.Appx.PackageManager.Commands.AppxPackage",
                {
                    "Name": name,
                    "Version": version,
                    "PackageFullName": full_name,
                    "IsFramework": False,
                    "NonRemovable": False,
                    "SignatureKind": "Store",
                    "PackageUserInformation": users,
                },
            )
        )
    return out


@command("Get-AppxProvisionedPackage")
def _get_appx_provisioned(call: Call) -> list[Any]:
    call.session.load_module()  # a module cmdlet: the first-use progress record
    if not call.switch("online"):
        raise NotModelled("Get-AppxProvisionedPackage without -Online")
    out = []
    for full_name in sorted(call.machine.appx_provisioned):
        name, version = m.appx_identity(full_name)
        out.append(
            PSObject(
                "Microsoft.Dism.Commands.AppxPackageObject",
                {
                    "DisplayName": name,
                    "Version": version,
                    "PackageName": full_name,
                },
            )
        )
    return out


# -- processes ----------------------------------------------------------------------------


@command("Start-Process")
def _start_process(call: Call) -> list[Any]:
    """A child in its parent's job object: it dies when the WinRS command or shell does."""
    from tests.winrm_server.programs import native_program, split_arguments

    file_path = to_text(call.arg("filepath", position=0))
    program = native_program(file_path)
    if program is None or ("\\" in file_path and not call.machine.file_exists(file_path)):
        call.error(
            "This command cannot be run due to the error: The system cannot find the file "
            "specified.",
            "InvalidOperation: (:) [Start-Process], InvalidOperationException",
            "InvalidOperationException,Microsoft.PowerShell.Commands.StartProcessCommand",
        )
        return []
    raw = call.arg("argumentlist", position=1)
    args = [a for item in iterate(raw) for a in split_arguments(to_text(item))]
    parent = call.session.process
    child = Process(parent.machine, parent.codepage, dict(parent.env), parent.cwd)
    parent.children.append(child)  # the job object: killing the parent kills the child
    name = re.split(r"[\\/]", file_path)[-1].removesuffix(".exe").removesuffix(".EXE")
    handle = ChildHandle(call.machine.next_pid(), name, call.machine, child)
    call.machine.children.append(handle)
    threading.Thread(target=handle.run, args=(lambda: program(child, args),), daemon=True).start()
    if call.switch("wait"):
        handle.wait(None, parent)
    return [handle.as_object(parent)] if call.switch("passthru") else []


@dataclass
class ChildHandle:
    """A process started by Start-Process, as its System.Diagnostics.Process shows it."""

    pid: int
    name: str
    machine: m.WindowsMachine
    process: Process
    done: threading.Event = field(default_factory=threading.Event)
    exit_code: int | None = None

    def run(self, body: Callable[[], int]) -> None:
        try:
            self.exit_code = body()
        except (Terminated, m.PoweredOff):
            self.exit_code = 1
        finally:
            self.done.set()

    def wait(self, milliseconds: float | None, waiter: Process) -> bool:
        """Wait in virtual time; a kill of the waiting process interrupts it."""
        limit = None if milliseconds is None else milliseconds / 1000 * self.machine.time_scale
        deadline = None if limit is None else time.monotonic() + limit
        while not self.done.is_set():
            waiter.check()
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self.done.wait(0.02)
        return True

    def as_object(self, waiter: Process) -> PSObject:
        return PSObject(
            "System.Diagnostics.Process",
            {
                "Id": self.pid,
                "Name": self.name,
                "Handle": self.pid * 4,
                "HasExited": self.done.is_set,
                "ExitCode": lambda: self.exit_code if self.done.is_set() else None,
            },
            {
                "WaitForExit": lambda ms=None: self.wait(
                    float(to_text(ms)) if ms is not None else None, waiter
                ),
                "Kill": self.process.kill,
            },
        )
