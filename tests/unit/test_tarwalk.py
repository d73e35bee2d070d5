"""The tar header walk that checks archive backups agrees with tarfile and catches damage."""

from __future__ import annotations

import io
import tarfile
from typing import Protocol

import pytest

from agent.backups.tarwalk import BLOCK, TarStreamError, TarWalker


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def count_members(stream: _Readable) -> int:
    """The walk over a whole stream, fed in 1 MiB pieces, as the archive sink feeds it."""
    walker = TarWalker()
    while not walker.ended and (chunk := stream.read(1 << 20)):
        walker.feed(chunk)
    return walker.finish()


FORMATS = {"gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT, "ustar": tarfile.USTAR_FORMAT}


def _archive(fmt: int) -> bytes:
    """A tar of every member kind a backup holds: files, long and non-ASCII names, links."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:

        def add(info: tarfile.TarInfo, data: bytes = b"") -> None:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        directory = tarfile.TarInfo("etc")
        directory.type = tarfile.DIRTYPE
        add(directory)
        add(tarfile.TarInfo("etc/hostname"), b"vm\n")
        add(tarfile.TarInfo("etc/" + "d" * 60 + "/" + "f" * 60), b"x" * 1500)  # over 100
        if fmt != tarfile.USTAR_FORMAT:  # ustar cannot hold a non-ASCII name
            add(tarfile.TarInfo("home/ünï"), b"u")
        for kind, name in ((tarfile.SYMTYPE, "etc/link"), (tarfile.LNKTYPE, "etc/hard")):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = kind, "etc/hostname"
            add(link)
    return out.getvalue()


@pytest.mark.parametrize("fmt", FORMATS.values(), ids=FORMATS.keys())
def test_members_are_counted_as_tarfile_counts_them(fmt: int) -> None:
    """Meta records (pax headers, GNU long names) are not members; every entry is."""
    data = _archive(fmt)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        expected = len(tar.getmembers())
    assert count_members(io.BytesIO(data)) == expected


def test_a_damaged_header_is_refused() -> None:
    """One flipped byte in a header fails its checksum."""
    data = bytearray(_archive(tarfile.GNU_FORMAT))
    data[BLOCK + 10] ^= 0x01  # inside the second member's name
    with pytest.raises(TarStreamError, match="checksum"):
        count_members(io.BytesIO(bytes(data)))


def test_an_archive_cut_inside_a_member_is_refused() -> None:
    """A stream that ends before a member's data does is not a whole archive."""
    data = _archive(tarfile.GNU_FORMAT)
    cut = data[: 5 * BLOCK + 100]
    with pytest.raises(TarStreamError):
        count_members(io.BytesIO(cut))


def test_an_archive_without_its_end_block_is_refused() -> None:
    """Members alone, without the end-of-archive block, are a truncated archive."""
    one = io.BytesIO()
    with tarfile.open(fileobj=one, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("a")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    headers_and_data = one.getvalue()[: 2 * BLOCK]
    with pytest.raises(TarStreamError, match="ends inside a header"):
        count_members(io.BytesIO(headers_and_data))


class _ZerosAfter:
    """A header, then as many zero bytes as asked for (no 8 GiB in memory)."""

    def __init__(self, header: bytes) -> None:
        self._header = header
        self._zeros = bytes(1 << 20)

    def read(self, size: int = -1, /) -> bytes:
        if self._header:
            head, self._header = self._header[:size], self._header[size:]
            return head
        return self._zeros if size >= len(self._zeros) else self._zeros[:size]


def test_a_gnu_base_256_size_is_read() -> None:
    """A member over 8 GiB (size in GNU base-256) is skipped by its real size."""
    info = tarfile.TarInfo("disk.img")
    info.size = 8 * (1 << 30) + BLOCK
    header = info.tobuf(tarfile.GNU_FORMAT)
    assert header[124] & 0x80  # tarfile wrote the base-256 form
    assert count_members(_ZerosAfter(header)) == 1


def test_a_stream_fed_one_byte_at_a_time_counts_the_same() -> None:
    """TarWalker gives the same answer however the bytes are cut into pieces."""
    data = _archive(tarfile.PAX_FORMAT)
    walker = TarWalker()
    for i in range(len(data)):
        walker.feed(data[i : i + 1])
    assert walker.finish() == count_members(io.BytesIO(data))


def test_bytes_after_the_end_block_are_ignored() -> None:
    """What follows the end-of-archive block (tar's record padding) is not read as headers."""
    walker = TarWalker()
    walker.feed(_archive(tarfile.GNU_FORMAT) + b"not a header" * 100)
    assert walker.ended
