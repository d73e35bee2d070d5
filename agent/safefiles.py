"""Reading files whose path came from input: only regular files, only up to a size.

A path in a profile directory, on the command line or recorded in a run folder's journal
may name a FIFO (``open`` blocks until a writer comes, forever), a device (``/dev/zero``
never ends) or a file of gigabytes. :func:`read_regular` opens without blocking, checks
what it opened (``fstat`` of the open descriptor, so a swap between check and read does
not help) and reads at most ``limit`` bytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent import readlog

__all__ = ["NotRegularFile", "TooLarge", "read_regular"]


class NotRegularFile(OSError):
    """The path exists but is a FIFO, a device, a socket or a directory."""


class TooLarge(OSError):
    """The file is larger than the reader accepts."""


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``; NotRegularFile, TooLarge or OSError else.

    The two own errors' messages do not name the path (callers do, in their words).
    """
    # O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a
    # writer; the fstat below then refuses it. It does not change reads of regular files.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(f"not a regular file ({_kind(info.st_mode)})")
        if info.st_size > limit:
            raise TooLarge(f"{info.st_size} bytes, more than the {limit} accepted")
        chunks: list[bytes] = []
        left = limit + 1  # one more than allowed tells a file that grew while read
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise TooLarge(f"more than the {limit} bytes accepted")
        readlog.note_file(path, data)  # a cache keyed on what was read sees this file
        return data
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"
