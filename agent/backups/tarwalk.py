"""Walk a tar stream's headers to prove it is whole, and count its members.

An archive backup is checked before it is trusted: its gzip must be intact to the last
byte and the tar inside must be well formed up to its end-of-archive blocks. tarfile
does that too, but it builds a TarInfo per member and parses every pax record with
regular expressions: about 50 ms for the 800 members of a Debian generalize's backup,
the largest piece of Python work in a run, and once per host in a fleet. This reads only
what the check needs, with the rules of POSIX.1-2001 ustar/pax and GNU tar (the format
the targets' GNU tar writes; busybox writes ustar):

* a header is 512 bytes; its checksum (bytes 148-155, octal) is the sum of the header's
  bytes with that field read as spaces; a header that fails it is corruption;
* the size field (bytes 124-135) is octal ASCII, or GNU's base-256 when its first byte
  has the high bit set;
* the data of a member follows its header, padded to 512 bytes: regular files and
  contiguous files (``0``, NUL, ``7``), GNU sparse files (``S``: the stored size), and
  the meta records that describe the next member (``x`` and ``g`` pax headers, ``L`` and
  ``K`` GNU long names); links, directories, devices and FIFOs carry no data, as
  tarfile reads them;
* the archive ends with a zero block (GNU and busybox write two, then pad the record).

Members are counted as tarfile counts them: meta records are not members.
"""

from __future__ import annotations

BLOCK = 512
_CHECKSUM = slice(148, 156)
_SIZE = slice(124, 136)
_TYPE = 156
_META = frozenset(b"xgLK")
_NO_DATA = frozenset(b"123456")  # hard/symbolic links, char/block devices, dirs, FIFOs


class TarStreamError(ValueError):
    """The stream is not a complete, well-formed tar archive."""


class TarWalker:
    """The walk fed as bytes arrive: :meth:`feed` the stream in pieces of any size, then
    :meth:`finish`. An archive backup is checked this way while it streams in, so the
    check costs no time after the last byte."""

    def __init__(self) -> None:
        self.members = 0
        self.ended = False  # the end-of-archive block was read; later bytes are padding
        self._next = 0  # stream offset of the next header
        self._member = 0  # offset of the header whose data is being passed
        self._header = bytearray()
        self._skip = 0  # data bytes of the current member still to pass

    def feed(self, data: bytes | memoryview) -> None:
        """Take the next bytes of the stream; TarStreamError on a bad header."""
        view = memoryview(data)
        pos, size = 0, len(view)
        while pos < size and not self.ended:
            if self._skip:
                passed = min(self._skip, size - pos)
                self._skip -= passed
                pos += passed
                continue
            wanted = BLOCK - len(self._header)
            self._header += view[pos : pos + wanted]
            pos += min(wanted, size - pos)
            if len(self._header) == BLOCK:
                self._read_header(bytes(self._header))
                self._header.clear()

    def finish(self) -> int:
        """The number of members, or TarStreamError if the stream stopped short."""
        if self.ended:
            return self.members
        if self._skip:
            raise TarStreamError(f"the tar stream ends inside the member at byte {self._member}")
        raise TarStreamError(f"the tar stream ends inside a header at byte {self._next}")

    def _read_header(self, header: bytes) -> None:
        offset = self._next
        if not any(header):
            self.ended = True
            return
        _check_checksum(header, offset)
        kind = header[_TYPE]
        self._skip = 0 if kind in _NO_DATA else -(-_size(header, offset) // BLOCK) * BLOCK
        self._member = offset
        self._next = offset + BLOCK + self._skip
        if kind not in _META:
            self.members += 1


def _check_checksum(header: bytes, offset: int) -> None:
    field = header[_CHECKSUM]
    try:
        stored = int(field.replace(b"\0", b" ").strip() or b"-1", 8)
    except ValueError:
        stored = -1
    unsigned = sum(header) - sum(field) + 8 * ord(" ")
    if stored == unsigned:
        return
    # Some old tars summed signed chars; tarfile accepts either, and so do we.
    high = sum(1 for b in header if b & 0x80) - sum(1 for b in field if b & 0x80)
    if stored != unsigned - 256 * high:
        raise TarStreamError(f"bad tar header checksum at byte {offset}")


def _size(header: bytes, offset: int) -> int:
    field = header[_SIZE]
    if field[0] & 0x80:  # GNU base-256: the remaining bits, big-endian
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    try:
        return int(field.replace(b"\0", b" ").strip() or b"0", 8)
    except ValueError:
        raise TarStreamError(f"bad tar size field at byte {offset}") from None
