"""WinRM executor helpers that need no server: CLIXML, output decoding, option checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import UsageError
from agent.executors.winrm import WinRmExecutor, WinRmOptions, clixml
from agent.executors.winrm.output import ShellOutputDecoder, TextStream
from agent.secrets import Secret
from agent.targets import Target

PROGRESS_ONLY = (
    '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T>'
    '<T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record">'
    "<AV>Preparing modules for first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC>"
    "<T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj></Objs>"
)


def test_clixml_progress_only_is_empty() -> None:
    """A stderr holding only a progress record decodes to nothing (pywinrm #245)."""
    assert clixml.decode(PROGRESS_ONLY) == ""


def test_clixml_error_lines_and_escapes() -> None:
    """Error strings are kept in order with _xHHHH_ escapes undone (_x005F_ is '_')."""
    text = (
        '#< CLIXML\r\n<Objs xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        '<S S="Error">bad_x005F_x000D_ thing_x000D__x000A_</S>'
        '<S S="Warning">careful_x000A_</S></Objs>'
    )
    assert clixml.decode(text) == "bad_x000D_ thing\r\ncareful\n"


def test_clixml_keeps_native_text_and_unparsable_xml() -> None:
    """Text before the marker is kept; a document that does not parse is kept raw."""
    assert clixml.decode("plain error\n") == "plain error\n"
    broken = "<Objs><S>unclosed</Objs>"
    assert clixml.decode("#< CLIXML\r\n" + broken) == broken


_NS = 'xmlns="http://schemas.microsoft.com/powershell/2004/04"'


def test_interleaved_clixml_and_plain_stderr_decode_in_place() -> None:
    """Documents are decoded where they stand; plain lines between and after are kept."""
    text = (
        "native before\r\n#< CLIXML\r\n"
        f'<Objs Version="1.1.0.1" {_NS}><S S="Error">first_x000D__x000A_</S></Objs>'
        "plain between\r\n"
        f'<Objs Version="1.1.0.1" {_NS}><S S="Error">second_x000D__x000A_</S></Objs>'
        "<Objs><S>broken</Objs>"
        "last line\r\n"
    )
    assert clixml.decode(text) == (
        "native before\r\nfirst\r\nplain between\r\nsecond\r\n<Objs><S>broken</Objs>last line\r\n"
    )


def test_text_stream_joins_crlf_and_utf8_split_across_chunks() -> None:
    """A CRLF or a UTF-8 character split between two Receive answers decodes whole."""
    stream = TextStream(65001)
    data = "é\r\nx".encode()
    assert (
        stream.feed(data[:1]) + stream.feed(data[1:3]) + stream.feed(data[3:], final=True) == "é\nx"
    )


def test_collector_streams_plain_stderr_but_clixml_once() -> None:
    """Plain stderr is streamed as it comes; CLIXML stderr is given once, decoded."""
    seen: list[tuple[str, str]] = []
    plain = ShellOutputDecoder(65001, lambda s, t: seen.append((s, t)))
    plain.feed(b"", b"oops\r\n")
    assert seen == [("stderr", "oops\n")]
    seen.clear()
    structured = ShellOutputDecoder(65001, lambda s, t: seen.append((s, t)))
    xml = '<Objs xmlns="http://schemas.microsoft.com/powershell/2004/04"><S S="Error">x</S></Objs>'
    structured.feed(b"", b"#< CLIXML\r\n")
    structured.feed(b"", xml.encode())
    assert seen == []
    assert structured.finish().stderr == "x"
    assert seen == [("stderr", "x")]


def _options(**values: object) -> WinRmOptions:
    return WinRmOptions(password=Secret("pw", "test"), **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scheme", "options", "message"),
    [
        ("winrm", {"transport": "basic"}, "clear text"),
        ("winrm", {"transport": "certificate"}, "needs winrm\\+https"),
        ("winrm+https", {"operation_timeout": 30, "read_timeout": 30}, "read_timeout >"),
        ("winrm+https", {"ca_cert": Path("/nonexistent.pem")}, "not a readable file"),
        ("winrm+https", {"codepage": 99999}, "code page 99999"),
    ],
)
def test_refusals_happen_before_connecting(
    scheme: str, options: dict[str, object], message: str
) -> None:
    """Unsafe or impossible settings are UsageErrors raised at construction."""
    with pytest.raises(UsageError, match=message):
        WinRmExecutor(Target(scheme, "Administrator", "192.0.2.1", 5986), _options(**options))


def test_password_is_required_for_ntlm() -> None:
    """ntlm without a password is refused with a hint where passwords come from."""
    with pytest.raises(UsageError, match="needs a password"):
        WinRmExecutor(Target("winrm", "Administrator", "192.0.2.1", 5985), WinRmOptions())
