"""Every benchmark script under bench/ runs in its short mode, so that none of them rots.

These assert that each script runs to the end and prints its comparison, never a timing:
speed is read from the numbers they print (README, "Performance"), not asserted.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.latency import DelayProxy, Endpoint

REPO = Path(__file__).resolve().parents[2]


def _bench(*args: str, timeout: float) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def test_journal_bench_runs() -> None:
    """bench.journal prints the journal's cost per step."""
    assert "journal per step" in _bench(
        "bench.journal", "--steps", "10", "--repeat", "1", timeout=120
    )


def test_startup_bench_runs() -> None:
    """bench.startup --quick prints each offline command's ratio to a bare Python start."""
    from bench.startup import CASES

    output = _bench("bench.startup", "--quick", timeout=300)
    assert [case.label for case in CASES if case.label not in output] == []


def test_redaction_bench_runs() -> None:
    """bench.redaction --quick prints the redactor's time against the raw replace's."""
    output = _bench("bench.redaction", "--quick", timeout=120)
    assert [way for way in ("replace", "alternation", "redactor") if way not in output] == []
    assert "redactor / alternation" in output


def test_winrm_roundtrips_bench_runs() -> None:
    """bench.winrm_roundtrips prints WS-Man requests per command against pywinrm's run_ps."""
    output = _bench("bench.winrm_roundtrips", timeout=300)
    assert "WS-Man requests" in output
    assert "request(s) per run" in output  # the fixed part, apart from the per-step one


@pytest.mark.integration
def test_generalize_bench_runs(target_image: object) -> None:
    """bench.generalize --quick compares imageprep with every baseline, Ansible's included."""
    # Through the latency relay (bench/latency.py), the part that only the bench has.
    output = _bench("bench.generalize", "--quick", "--rtt-ms", "2", timeout=900)
    assert "imageprep and ansible-core run on Python 3." in output
    assert "over a link of 2 ms round trip" in output
    assert "baseline: ansible-core, pipelining" in output
    assert "P1 imageprep / one script" in output
    assert "fastest run of each way: P1" in output
    assert "per round: P1 median" in output
    assert "steps, up to the power-off" in output  # the median run's breakdown


def test_generalize_phases_end_at_their_events(tmp_path: Path) -> None:
    """Each phase ends at the first of its events after the previous phase's end."""
    from bench.generalize import PHASE_ENDS, phases_of

    events = ["ssh.connected", "run.start", *(e for _, e in PHASE_ENDS if e != "run.start")]
    lines = [
        f'{{"timestamp": "2026-12-03T10:00:0{second}.000000Z", "event": "{event}"}}'
        for second, event in enumerate(events)
        if event is not None
    ]
    (tmp_path / "run.log.jsonl").write_text("\n".join(lines) + "\n")
    start = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC).timestamp() - 0.5
    phases = phases_of(tmp_path / "run.log.jsonl", start, start + 10)
    # start-up 1.5 s (the ssh.connected before run.start does not end "connect"), then a
    # second per event, and the rest until the process ended.
    assert [p.seconds for p in phases] == pytest.approx([1.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.5])


def test_the_latency_relay_carries_both_ways_and_each_end_of_stream() -> None:
    """What goes in comes out whole, in order, each way; a half-close reaches the far end."""
    with _relay() as (proxy, listener):
        client, server = _connect(proxy, listener)
        with client, server:
            sent = bytes(range(256)) * 4096  # 1 MiB, more than one chunk
            client.sendall(sent)
            client.shutdown(socket.SHUT_WR)
            assert _read_to_eof(server) == sent
            server.sendall(b"reply")
            server.shutdown(socket.SHUT_WR)
            assert _read_to_eof(client) == b"reply"


def test_the_latency_relay_ends_open_connections_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A connection still open when the relay stops (Ansible's ControlPersist master) is
    cut at both ends, and asyncio logs no error for it. Ten times: stopping while the
    relay is still between its two connections was a race (it hung, then the loop was
    closed under pending tasks)."""
    for _ in range(10):
        with _relay() as (proxy, listener):
            client, server = _connect(proxy, listener)
        with client, server:
            assert _read_to_eof(client) == b""
            assert _read_to_eof(server) == b""
    # Its debug lines ("Using selector: EpollSelector") are there whenever an earlier test
    # in the same worker left the root logger at DEBUG; a complaint is a warning or worse.
    complaints = [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.WARNING]
    assert complaints == []


@contextmanager
def _relay() -> Iterator[tuple[DelayProxy, socket.socket]]:
    """A DelayProxy of 2 ms in front of a listening socket of this test's."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        upstream = Endpoint("127.0.0.1", listener.getsockname()[1])
        with DelayProxy(upstream, rtt=0.002) as proxy:
            yield proxy, listener


def _connect(proxy: DelayProxy, listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    """A connection through the relay: its client end and the listener's end."""
    client = socket.create_connection((proxy.endpoint.host, proxy.endpoint.port))
    server, _ = listener.accept()
    return client, server


def _read_to_eof(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def test_upload_bench_runs() -> None:
    """bench.upload sends exactly the non-zero ranges and the footer, then resumes a kill."""
    out = _bench("bench.upload", "--size-mib", "64", timeout=300)
    assert "equal to the non-zero ranges + footer: True" in out
    assert "resume after SIGKILL at 2 of 4 ranges recorded" in out


@pytest.mark.integration
def test_fleet_bench_runs(target_image: object) -> None:
    """bench.fleet --quick compares a fleet with raw scripts at once and prints its peak RSS."""
    output = _bench("bench.fleet", "--quick", timeout=900)
    assert "P3 fleet / raw scripts" in output
    assert "P6 peak RSS of the fleet process" in output
