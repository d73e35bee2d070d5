"""The Windows test double answers recorded requests the way real Windows did.

Each file in ``shared/reference/winrs-recordings`` is a scenario recorded between pypsrp
and a real Windows host. Its requests are replayed, in order, against
``tests.winrm_server`` over real HTTP; each answer must have the recorded *shape*: HTTP
status, the envelope's namespace prefixes, header elements, body elements and
attributes, fault codes, reason and message texts, exit codes, and the stream content a
command wrote. Ids, timestamps, machine names and addresses are not compared; shell and
command ids are mapped from the recorded ones to the live ones as the replay learns them.
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.winrm_server import WindowsMachine, WinRmTestServer
from tests.winrm_server.soap import NS

RECORDINGS = Path(__file__).resolve().parents[2].parent / "shared/reference/winrs-recordings"
FILES = sorted(RECORDINGS.glob("*.yml")) if RECORDINGS.is_dir() else []

# The first four messages talk PSRP (a PowerShell runspace), which the double does not
# serve; only the last one, a request for a shell that no longer exists, is WinRS.
SKIP = {"test_psrp_is_alive_invalid_selectors.yml": range(4)}
# `cmd /c set` lists the recorded host's environment, which is not the double's.
OWN_DATA = {"test_winrs_environment.yml", "test_winrs_noprofile.yml"}
# Elements whose text is part of the shape (constants of the protocol, not ids).
EXACT_TEXT = {
    "Action", "Value", "Text", "FaultDetail", "ResourceURI", "ResourceUri", "ExitCode",
    "Message", "ProviderFault", "InputStreams", "OutputStreams", "IdleTimeOut",
    "WorkingDirectory",
}  # fmt: skip
EXACT_ATTRIBUTES = {
    ("Stream", "Name"), ("Stream", "End"), ("Selector", "Name"), ("CommandState", "State"),
    ("WSManFault", "Code"), ("ProviderFault", "provider"), ("ProviderFault", "path"),
    ("Text", "{http://www.w3.org/XML/1998/namespace}lang"),
}  # fmt: skip
# Sent by some Windows versions only (the recordings disagree among themselves).
OPTIONAL_HEADERS = {"ActivityId"}


def local(tag: str) -> str:
    return tag.rpartition("}")[2]


def shape(element: ET.Element) -> tuple[Any, ...]:
    """What must match: tag, attributes (values where constant), text where constant."""
    name = local(element.tag)
    attributes = tuple(
        sorted(
            (key, value if (name, local(key)) in EXACT_ATTRIBUTES or key.startswith("{") else "*")
            for key, value in element.attrib.items()
        )
    )
    text = (element.text or "").strip() if name in EXACT_TEXT and len(element) == 0 else ""
    has_text = bool((element.text or "").strip())
    children: list[tuple[Any, ...]] = []
    for child in element:
        if local(child.tag) in OPTIONAL_HEADERS:
            continue
        child_shape = shape(child)
        if not children or children[-1] != child_shape:  # Windows splits output freely
            children.append(child_shape)
    return (element.tag, attributes, text or has_text, tuple(children))


def prefixes(xml: str) -> set[str]:
    """Namespace prefixes declared on the envelope element."""
    start = xml[: xml.index(">")]
    return set(re.findall(r"xmlns:(\w+)=", start))


def stream_data(envelope: ET.Element) -> dict[str, bytes]:
    data: dict[str, bytes] = {}
    for stream in envelope.iter(f"{{{NS['rsp']}}}Stream"):
        name = stream.get("Name", "")
        data[name] = data.get(name, b"") + base64.b64decode(stream.text or "")
    return data


def ids(envelope: ET.Element) -> list[str]:
    """Shell and command ids an answer introduces."""
    found = [
        s.text or "" for s in envelope.iter(f"{{{NS['w']}}}Selector") if s.get("Name") == "ShellId"
    ]
    found += [c.text or "" for c in envelope.iter(f"{{{NS['rsp']}}}CommandId")]
    return found


def prepare(message: dict[str, Any], id_map: dict[str, str]) -> tuple[bytes, str]:
    """The recorded request with live ids and overrides applied; and its MessageID."""
    text: str = message["request"]
    for recorded, live in id_map.items():
        text = text.replace(recorded, live)
    root = ET.fromstring(text)  # noqa: S314  recorded test data
    for override in message.get("overrides", []):
        target = root.find(override["path"].removeprefix("s:Envelope/"), NS)
        assert target is not None, override
        target.attrib.update(override["attributes"])
    message_id = root.findtext(f"{{{NS['s']}}}Header/{{{NS['a']}}}MessageID") or ""
    return ET.tostring(root), message_id


@pytest.fixture
def server() -> Iterator[WinRmTestServer]:
    # Virtual time at 1/50: the recorded PT10S time-out and `Start-Sleep 30` take 0.2 s
    # and 0.6 s, keeping their ratio and so the recorded sequence of answers.
    machine = WindowsMachine(time_scale=0.02)
    # The recordings' account (public: the Vagrant box default).
    with WinRmTestServer(
        machine,
        auth=("basic",),
        username="vagrant",
        password="vagrant",  # noqa: S106
    ) as running:
        yield running


@pytest.mark.skipif(not FILES, reason=f"recordings not found at {RECORDINGS}")
@pytest.mark.parametrize("recording", FILES, ids=lambda p: p.stem)
def test_answers_have_the_recorded_shape(server: WinRmTestServer, recording: Path) -> None:
    """Every replayed request gets an answer shaped like the recorded Windows answer."""
    messages = yaml.safe_load(recording.read_text())["messages"]
    id_map: dict[str, str] = {}
    with requests.Session() as http:
        http.auth = ("vagrant", "vagrant")
        http.headers["Content-Type"] = "application/soap+xml;charset=UTF-8"
        for index, message in enumerate(messages):
            if index in SKIP.get(recording.name, ()):
                continue
            body, message_id = prepare(message, id_map)
            answer = http.post(server.url, data=body, timeout=10)
            where = f"{recording.name} message {index}"
            expected_status = message.get("transport_error", {}).get("code", 200)
            assert answer.status_code == expected_status, where
            recorded = ET.fromstring(message["response"])  # noqa: S314
            live = ET.fromstring(answer.content)  # noqa: S314
            assert prefixes(answer.text) == prefixes(message["response"]), where
            assert shape(live) == shape(recorded), where
            relates_to = live.findtext(f"{{{NS['s']}}}Header/{{{NS['a']}}}RelatesTo")
            assert relates_to == message_id, where
            if recording.name not in OWN_DATA:
                assert stream_data(live) == stream_data(recorded), where
            id_map.update(zip(ids(recorded), ids(live), strict=True))
    assert server.stats.internal_errors == []
