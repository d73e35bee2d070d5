"""WS-Management SOAP envelopes as a Windows WinRM listener reads and writes them.

Part of the WinRM *test double for a Windows machine* (see ``tests/winrm_server``).

Requests are parsed by namespace, never by prefix or position (pywinrm and pypsrp use
different prefixes and header orders). Responses are written as text with the exact
prefixes, namespace declarations and header order of the recorded Windows answers in
``shared/reference/winrs-recordings`` so that a shape comparison against them is exact.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
}
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
CMD_RESOURCE = SHELL + "/cmd"
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"

_ENVELOPE_NS = (
    'xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
)
# Windows declares a different prefix set per kind of answer; copied from the recordings.
_RESPONSE_NS = {
    "transfer": _ENVELOPE_NS + 'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
    'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
    'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell" '
    'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"',
    "shell": _ENVELOPE_NS + 'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
    'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell" '
    'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"',
    "get": _ENVELOPE_NS + 'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
    'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
    'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"',
    "delete": _ENVELOPE_NS + 'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
    'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"',
    "fault": _ENVELOPE_NS + 'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
    'xmlns:e="http://schemas.xmlsoap.org/ws/2004/08/eventing" '
    'xmlns:n="http://schemas.xmlsoap.org/ws/2004/09/enumeration" '
    'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
    'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"',
}


def q(prefix: str, local: str) -> str:
    """The ElementTree name ``{uri}local`` of ``prefix:local``."""
    return f"{{{NS[prefix]}}}{local}"


@dataclass(frozen=True)
class Request:
    """The parts of a WS-Management request a WinRS listener acts on."""

    action: str
    message_id: str
    resource_uri: str
    operation_timeout: float | None  # seconds, as the client asked
    selectors: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    body: ET.Element = field(default_factory=lambda: ET.Element(q("s", "Body")))

    def option(self, name: str, default: str = "") -> str:
        return self.options.get(name, default)

    def flag(self, name: str) -> bool:
        return self.option(name).strip().lower() == "true"


_DURATION = re.compile(
    r"P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> float:
    """Seconds of an xs:duration such as ``PT20S``, ``PT7200.000S`` or ``P0DT0H0M0S``."""
    match = _DURATION.match(text.strip())
    if match is None or text.strip() in ("P", "PT"):
        raise ValueError(f"not an xs:duration: {text!r}")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def format_duration(seconds: float) -> str:
    """``PT60.000S``: the form Windows echoes an IdleTimeOut in."""
    return f"PT{seconds:.3f}S"


def parse_request(data: bytes) -> Request:
    """Parse a request envelope; a malformed one raises :class:`Fault` (invalid header)."""
    try:
        # Only the tests' own clients on loopback talk to this double.
        root = ET.fromstring(data)  # noqa: S314
    except ET.ParseError as exc:
        raise Fault.invalid_header(f"not XML: {exc}") from exc
    header = root.find(q("s", "Header"))
    body = root.find(q("s", "Body"))
    if root.tag != q("s", "Envelope") or header is None or body is None:
        raise Fault.invalid_header("not a SOAP 1.2 envelope")
    action = header.findtext(q("a", "Action"))
    message_id = header.findtext(q("a", "MessageID"))
    if not action or not message_id:
        raise Fault.invalid_header("a:Action or a:MessageID missing")
    timeout_text = header.findtext(q("w", "OperationTimeout"))
    selectors = {
        s.get("Name", ""): (s.text or "")
        for s in header.iterfind(f"{q('w', 'SelectorSet')}/{q('w', 'Selector')}")
    }
    options = {
        o.get("Name", ""): (o.text or "")
        for o in header.iterfind(f"{q('w', 'OptionSet')}/{q('w', 'Option')}")
    }
    return Request(
        action=action.strip(),
        message_id=message_id.strip(),
        resource_uri=(header.findtext(q("w", "ResourceURI")) or "").strip(),
        operation_timeout=parse_duration(timeout_text) if timeout_text else None,
        selectors=selectors,
        options=options,
        body=body,
    )


def new_guid() -> str:
    """An id in the upper-case form Windows uses for shells and commands."""
    return str(uuid.uuid4()).upper()


def envelope(action: str, relates_to: str, body: str, *, kind: str) -> bytes:
    """A response envelope in Windows' own layout; ``body`` is the inner XML of s:Body."""
    text = (
        f'<s:Envelope xml:lang="en-US" {_RESPONSE_NS[kind]}>'
        "<s:Header>"
        f"<a:Action>{escape(action)}</a:Action>"
        f"<a:MessageID>uuid:{new_guid()}</a:MessageID>"
        f"<a:To>{ANONYMOUS}</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
        "</s:Header>"
        f"<s:Body>{body}</s:Body>"
        "</s:Envelope>"
    )
    return text.encode("utf-8")


def element(name: str, text: str = "", **attrs: str) -> str:
    """``<name attr="...">text</name>`` with text and attributes escaped."""
    rendered = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    return f"<{name}{rendered}>{escape(text)}</{name}>"


_WSMSVC = r"%systemroot%\system32\WsmSvc.dll"
_WINRSCMD = r"%systemroot%\system32\winrscmd.dll"
_FAULT_DETAIL = "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/"
_INVALID_SELECTORS = (
    "The WS-Management service cannot process the request because the request contained "
    "invalid selectors for the resource. "
)


@dataclass
class Fault(Exception):
    """A WS-Management fault: HTTP 500 with a SOAP fault body (see the recordings).

    ``provider`` says how Windows wraps ``message`` in ``f:Message``: as plain text
    (None), inside the cmd plugin's ``f:ProviderFault`` ("cmd"), or inside the shell
    provider's ``f:ProviderFault`` around a second ``f:WSManFault`` ("shell").
    """

    code: str  # s:Sender | s:Receiver
    subcode: str  # w:TimedOut, w:InvalidSelectors, ...
    reason: str
    wsman_code: int
    message: str
    provider: Literal["cmd", "shell"] | None = None
    fault_detail: str | None = None

    def render(self, relates_to: str, machine: str) -> bytes:
        detail = ""
        if self.fault_detail is not None:
            detail = element("w:FaultDetail", _FAULT_DETAIL + self.fault_detail)
        body = (
            "<s:Fault>"
            f"<s:Code><s:Value>{self.code}</s:Value>"
            f"<s:Subcode><s:Value>{self.subcode}</s:Value></s:Subcode></s:Code>"
            f'<s:Reason><s:Text xml:lang="en-US">{escape(self.reason)}</s:Text></s:Reason>'
            f"<s:Detail>{detail}{self._wsman_fault(machine)}</s:Detail></s:Fault>"
        )
        return envelope(FAULT_ACTION, relates_to, body, kind="fault")

    def _wsman_fault(self, machine: str) -> str:
        text = escape(self.message)
        if self.provider == "cmd":
            text = _provider_fault("Shell cmd plugin", _WINRSCMD, text)
        elif self.provider == "shell":
            inner = _wsman_fault(self.wsman_code, machine, text)
            text = _provider_fault("Shell provider", _WSMSVC, inner)
        return _wsman_fault(self.wsman_code, machine, text)

    # -- the faults Windows is recorded (or documented) to send ---------------------------

    @classmethod
    def timed_out(cls) -> Fault:
        """No output within the request's OperationTimeout (recorded, 2150858793)."""
        text = (
            "The WS-Management service cannot complete the operation within the time "
            "specified in OperationTimeout.  "
        )
        return cls("s:Receiver", "w:TimedOut", text, 2150858793, text)

    @classmethod
    def unknown_shell(cls) -> Fault:
        """A ShellId that does not exist (any more), as after a reboot (recorded)."""
        return cls(
            "s:Sender",
            "w:InvalidSelectors",
            _INVALID_SELECTORS,
            2150858843,
            _INVALID_SELECTORS,
            provider="shell",
            fault_detail="UnexpectedSelectors",
        )

    @classmethod
    def unknown_command(cls) -> Fault:
        """A CommandId the shell does not know (recorded: test_winrs_bad_cmd_id)."""
        text = (
            "The Windows Remote Shell received a request to perform an operation on a "
            "command identifier that does not exist. Either the command has completed "
            "execution or the client specified an invalid command identifier. "
        )
        return cls(
            "s:Sender",
            "w:InvalidSelectors",
            _INVALID_SELECTORS,
            2150858843,
            text,
            fault_detail="UnexpectedSelectors",
        )

    @classmethod
    def invalid_parameter(cls) -> Fault:
        """A Receive without a CommandId (recorded: test_winrs_fail_poll_process)."""
        text = "The parameter is incorrect. "
        return cls("s:Sender", "w:InvalidParameter", text, 87, text, "cmd", "InvalidValue")

    @classmethod
    def file_not_found(cls) -> Fault:
        """WINRS_SKIP_CMD_SHELL with an executable not found (recorded)."""
        text = "The system cannot find the file specified. "
        return cls("s:Receiver", "w:InternalError", text, 2147942402, text, "cmd")

    @classmethod
    def invalid_header(cls, why: str) -> Fault:
        """A request the listener cannot parse (code from MS-WSMV; not recorded here)."""
        text = (
            "The WS-Management service cannot process the request because the header of "
            f"the request is invalid ({why}). "
        )
        return cls("s:Sender", "a:InvalidMessageInformationHeader", text, 2150858767, text)

    @classmethod
    def action_not_supported(cls, action: str) -> Fault:
        """An action or resource this double does not serve (MS-WSMV code; not recorded)."""
        text = f"The action or resource {action} is not supported by this service. "
        return cls("s:Sender", "a:ActionNotSupported", text, 2150858754, text)


def _provider_fault(provider: str, path: str, content: str) -> str:
    return (
        f"<f:ProviderFault provider={quoteattr(provider)} path={quoteattr(path)}>"
        f"{content}</f:ProviderFault>"
    )


def _wsman_fault(code: int, machine: str, message_xml: str) -> str:
    return (
        f'<f:WSManFault xmlns:f="{NS["f"]}" Code="{code}" Machine={quoteattr(machine)}>'
        f"<f:Message>{message_xml}</f:Message></f:WSManFault>"
    )
