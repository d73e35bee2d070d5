"""Root-shell output framing, remote command lines and output collection (no network)."""

from __future__ import annotations

import base64
import os

import pytest

from agent.executors.ssh.channel import ChannelCollector
from agent.executors.ssh.exec import (
    exec_command_line,
    remote_timed_out,
    script_on_stdin,
    timeout_arg,
)
from agent.executors.ssh.rootshell import (
    RAW_SCRIPT_MAX,
    Framer,
    Tokens,
    heredoc_payload,
    start_command,
)

TOKENS = Tokens("0123456789abcdef")


def frame(body: bytes, rc: int = 0, seq: int = 1) -> bytes:
    """What the root shell prints on stdout around ``body``."""
    begin, end = TOKENS.begin(seq), TOKENS.end(seq, "stdout")
    return b"stray from before\n\n" + begin + body + end + f"{rc}\n".encode()


def stdout_framer(seq: int = 1) -> Framer:
    return Framer(TOKENS.begin(seq), TOKENS.end(seq, "stdout"), trailer=True)


@pytest.mark.parametrize(
    "body", [b"", b"x", b"hello\n", b"\n\n", os.urandom(5000), b"\nIPE-0123456789abcdef-12 9\n"]
)
def test_framer_returns_exact_body_when_fed_byte_by_byte(body: bytes) -> None:
    """Markers split across reads are found and the body comes back byte for byte."""
    framer = stdout_framer()
    data = frame(body, rc=7)
    got = b"".join(framer.feed(data[i : i + 1]) for i in range(len(data)))
    assert (body, b"7", True) == (got, framer.trailer, framer.done)


def test_framer_ignores_output_after_the_end_marker() -> None:
    """Bytes after the end line (a late background writer) belong to no command."""
    framer = stdout_framer()
    assert framer.feed(frame(b"body") + b"late output\n") == b"body"
    assert framer.feed(b"more late output\n") == b""


def test_framer_flush_hands_over_held_back_bytes() -> None:
    """A frame that never ends still yields everything after its begin marker."""
    framer = stdout_framer()
    got = framer.feed(b"\n" + TOKENS.begin(1) + b"partial")
    assert got + framer.flush() == b"partial"


def test_stderr_frame_has_no_trailer() -> None:
    """The stderr frame ends at its marker line."""
    framer = Framer(TOKENS.begin(3), TOKENS.end(3, "stderr"), trailer=False)
    data = b"\n" + TOKENS.begin(3) + b"oops\n" + TOKENS.end(3, "stderr")
    assert (framer.feed(data), framer.done) == (b"oops\n", True)


def test_sudo_prompt_is_ours_and_password_is_never_in_argv() -> None:
    """sudo is started with our per-run prompt; the command line has no secret slot."""
    command = start_command(TOKENS, "sudo-password")
    assert command.startswith("env LC_ALL=C sudo -S -p 'IPP-0123456789abcdef:' -- /bin/bash")
    assert "sudo -n" in start_command(TOKENS, "sudo-nopasswd")
    assert "sudo" not in start_command(TOKENS, "root-login")


def test_exec_command_line_wraps_bash_in_timeout() -> None:
    """The remote command enforces the timeout on the whole process group."""
    assert exec_command_line(2.5) == "timeout -k 10 2.5 /bin/bash -s; exit $?"
    assert exec_command_line(None) == "/bin/bash -s; exit $?"


def test_script_is_a_group_reading_dev_null() -> None:
    """The script is sent as one brace group whose stdin is /dev/null."""
    assert script_on_stdin("echo hi") == b"{ :; echo hi\n} </dev/null\n"


@pytest.mark.parametrize(
    ("seconds", "text"), [(1, "1"), (0.5, "0.5"), (90.25, "90.25"), (1e-7, "0.001")]
)
def test_timeout_arg_is_never_zero_or_exponential(seconds: float, text: str) -> None:
    """timeout(1) gets plain decimals, and never 0 (which means no limit)."""
    assert text == timeout_arg(seconds)


def test_exit_124_counts_as_timeout_only_after_the_deadline() -> None:
    """A command that exits 124 by itself early is not a timeout."""
    assert (
        remote_timed_out(124, 1.0, 1.0),
        remote_timed_out(137, 12.0, 1.0),
        remote_timed_out(124, 0.2, 1.0),
        remote_timed_out(124, 5.0, None),
    ) == (True, True, False, False)


def test_collector_decodes_split_utf8_and_counts_bytes() -> None:
    """A multi-byte character split across chunks is decoded once, whole."""
    seen: list[str] = []
    collector = ChannelCollector(lambda stream, text: seen.append(text), None)
    data = "héllo".encode()
    collector.add("stdout", data[:2])
    collector.add("stdout", data[2:])
    output = collector.output()
    assert (output.stdout, output.stdout_bytes, "".join(seen)) == ("héllo", 6, "héllo")


def test_a_short_script_goes_raw_with_a_final_newline() -> None:
    """A short script is sent as it is, gaining only a final newline."""
    assert heredoc_payload("echo hé", "IPH-0123") == ("raw", "echo hé\n".encode())


def test_a_script_over_the_raw_limit_goes_in_base64() -> None:
    """A script longer than RAW_SCRIPT_MAX is sent in base64 (bash reads pipes bytewise)."""
    script = "#" * RAW_SCRIPT_MAX + "\n"
    encoding, payload = heredoc_payload(script, "IPH-0123")
    assert (encoding, base64.decodebytes(payload).decode()) == ("b64", script)


def test_a_script_holding_the_delimiter_goes_in_base64() -> None:
    """A script that contains the here-document's delimiter cannot end it early."""
    assert heredoc_payload("echo x\nIPH-0123\necho y\n", "IPH-0123")[0] == "b64"


def test_a_script_holding_a_nul_goes_in_base64() -> None:
    """A NUL byte, which bash cannot read from a script's text, goes in base64."""
    assert heredoc_payload("printf 'a\0b'\n", "IPH-0123")[0] == "b64"


def test_the_lock_record_always_goes_in_base64() -> None:
    """raw=False (the lock function decodes base64) never sends the text as it is."""
    assert heredoc_payload("host=a\n", "IPH-0123", raw=False)[0] == "b64"
