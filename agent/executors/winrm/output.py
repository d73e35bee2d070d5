"""Collect a WinRS command's output: decode the code page, CRLF to LF, CLIXML stderr.

stdout is decoded incrementally (a UTF-8 character may be split across Receive answers)
and passed to ``on_output`` as it arrives, or written raw to ``stdout_sink``. stderr is
streamed the same way unless it is PowerShell CLIXML, which is only readable whole: then
it is decoded once, at the end, and given to ``on_output`` in one piece.
"""

from __future__ import annotations

import codecs
from typing import BinaryIO

from agent.executors.base import Output, OutputCallback
from agent.executors.winrm import clixml

_MARKER = clixml.MARKER.encode("ascii")


def codec_for(codepage: int) -> str:
    """The Python codec of a Windows code page (65001 is UTF-8); LookupError if none."""
    name = "utf-8" if codepage == 65001 else f"cp{codepage}"
    return codecs.lookup(name).name


class TextStream:
    """Bytes in a code page -> text with LF line ends, fed chunk by chunk."""

    def __init__(self, codepage: int) -> None:
        self._decoder = codecs.getincrementaldecoder(codec_for(codepage))(errors="replace")
        self._pending_cr = False
        self._parts: list[str] = []

    def feed(self, data: bytes, *, final: bool = False) -> str:
        text = self._decoder.decode(data, final)
        if self._pending_cr:
            text, self._pending_cr = "\r" + text, False
        if text.endswith("\r") and not final:
            # Its LF may be the first byte of the next chunk.
            text, self._pending_cr = text[:-1], True
        text = text.replace("\r\n", "\n")
        self._parts.append(text)
        return text

    def text(self) -> str:
        return "".join(self._parts)


class ShellOutputDecoder:
    """Receives raw chunks of one command; :meth:`finish` gives the decoded result."""

    def __init__(
        self,
        codepage: int,
        on_output: OutputCallback | None = None,
        stdout_sink: BinaryIO | None = None,
    ) -> None:
        self._codepage = codepage
        self._on_output = on_output
        self._sink = stdout_sink
        self._stdout = TextStream(codepage)
        self._stderr = TextStream(codepage)
        self._stderr_raw = bytearray()
        self._stderr_mode: str | None = None  # "plain" | "clixml", once known
        self.stdout_bytes = 0
        self.stderr_bytes = 0

    def feed(self, stdout: bytes, stderr: bytes) -> None:
        if stdout:
            self.stdout_bytes += len(stdout)
            if self._sink is not None:
                self._sink.write(stdout)
            else:
                self._emit("stdout", self._stdout.feed(stdout))
        if stderr:
            self.stderr_bytes += len(stderr)
            self._stderr_raw.extend(stderr)
            self._feed_stderr(stderr)

    def _feed_stderr(self, chunk: bytes) -> None:
        if self._stderr_mode is None:
            raw = bytes(self._stderr_raw)
            if _MARKER.startswith(raw):
                return  # too short to tell yet
            self._stderr_mode = "clixml" if _MARKER in raw else "plain"
            chunk = raw
        if self._stderr_mode == "plain":
            self._emit("stderr", self._stderr.feed(chunk))

    def _emit(self, stream: str, text: str) -> None:
        if text and self._on_output is not None:
            self._on_output(stream, text)

    def finish(self) -> Output:
        stdout = ""
        if self._sink is None:
            self._emit("stdout", self._stdout.feed(b"", final=True))
            stdout = self._stdout.text()
        if self._stderr_mode == "plain":
            self._emit("stderr", self._stderr.feed(b"", final=True))
            stderr = self._stderr.text()
        else:  # CLIXML, or so short that it could not be told apart (then plain)
            text = TextStream(self._codepage).feed(bytes(self._stderr_raw), final=True)
            stderr = clixml.decode(text).replace("\r\n", "\n")
            self._emit("stderr", stderr)
        return Output(stdout, stderr, self.stdout_bytes, self.stderr_bytes)
