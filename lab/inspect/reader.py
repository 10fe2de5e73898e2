"""Reading pcap and pcapng files one record at a time, in constant memory.

Formats: pcap in both byte orders with micro- or nanosecond timestamps, and pcapng
(Section Header, Interface Description, Enhanced and Simple Packet blocks, several
interfaces and sections, comments on packets read back). Other pcapng blocks are
skipped, as the format asks.

Why not scapy's readers: dissecting every packet runs at ~2,400 packets/s here and
even ``RawPcapReader`` keeps per-packet Python objects we do not need. This reader
reads the file in large chunks and cuts records out of them with ``struct``, so the
analysis on top can run at hundreds of thousands of packets per second while memory
stays the size of one chunk, whatever the file's size.

A damaged file raises :class:`CaptureFileError` naming the byte offset of the bad
record; every record before it has already been handed out.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import BinaryIO, Iterator, NamedTuple

CHUNK = 4 << 20

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),   # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),      # little-endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_SHB = 0x0A0D0D0A
BLOCK_IDB, BLOCK_SPB, BLOCK_EPB = 1, 3, 6
OPT_END, OPT_COMMENT, OPT_IF_TSRESOL = 0, 1, 9


class CaptureFileError(Exception):
    """The file is missing, not a capture, or damaged at byte ``offset``."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} at byte {offset}")
        self.offset = offset


class Record(NamedTuple):
    """One captured frame: when (ns since the epoch), on what link, its bytes.

    A NamedTuple rather than a dataclass: one is made per packet, and a tuple is
    the cheapest object Python can make. The readers build it with _record(),
    which skips NamedTuple's Python-level __new__ (155 ns against 17 ns here).
    """

    time_ns: int
    linktype: int
    data: bytes
    wire_length: int
    comments: tuple[str, ...] = ()


def _record(time_ns: int, linktype: int, data: bytes, wire_length: int, comments: tuple = ()) -> Record:
    return tuple.__new__(Record, (time_ns, linktype, data, wire_length, comments))


class _Chunks:
    """A window over the file that hands out byte ranges, refilling as needed."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.buffer = b""
        self.start = 0      # file offset of buffer[0]
        self.pos = 0        # read position inside buffer
        try:
            self.origin = stream.tell() if stream.seekable() else None  # file offset of start 0
        except (AttributeError, OSError):
            self.origin = None

    @property
    def offset(self) -> int:
        return self.start + self.pos

    def ensure(self, size: int) -> bool:
        """Make ``size`` bytes available at pos; False at the end of the stream.

        A stream may hand out less than asked (a file still being written, a
        pipe), so read until there is enough or it says there is no more.
        """
        if len(self.buffer) - self.pos >= size:
            return True
        if self.origin is not None:
            # Read the unfinished record again from the file rather than glue it to
            # the next chunk: gluing copies every chunk once more (a tenth of the
            # time of bench/inspect.py's biggest capture).
            self.stream.seek(self.origin + self.start + self.pos)
            pieces = []
        else:
            pieces = [self.buffer[self.pos:]]
        have = sum(map(len, pieces))
        while have < size:
            more = self.stream.read(max(CHUNK, size - have))
            if not more:
                break
            pieces.append(more)
            have += len(more)
        self.start += self.pos
        self.buffer = b"".join(pieces)
        self.pos = 0
        return have >= size


def read_records(stream: BinaryIO) -> Iterator[Record]:
    """Every record of a pcap or pcapng stream, in file order."""
    chunks = _Chunks(stream)
    if not chunks.ensure(4):
        raise CaptureFileError("empty file, not a pcap or pcapng capture", 0)
    magic = chunks.buffer[:4]
    if magic in PCAP_MAGICS:
        yield from _read_pcap(chunks, *PCAP_MAGICS[magic])
    elif struct.unpack("<I", magic)[0] == PCAPNG_SHB:
        yield from _read_pcapng(chunks)
    else:
        raise CaptureFileError(f"not a pcap or pcapng file (magic {magic.hex()})", 0)


def _read_pcap(chunks: _Chunks, endian: str, ns_per_unit: int) -> Iterator[Record]:
    if not chunks.ensure(24):
        raise CaptureFileError("pcap file header is cut short", 0)
    linktype = struct.unpack_from(endian + "I", chunks.buffer, 20)[0] & 0x0FFFFFFF
    chunks.pos = 24
    unpack_header = struct.Struct(endian + "IIII").unpack_from
    new = tuple.__new__
    # The hot loop of the whole analysis: locals only, each header unpacked once,
    # and the slow path (refill the window, check sizes) only at a chunk's end.
    buffer, pos, end = chunks.buffer, chunks.pos, len(chunks.buffer)
    while True:
        if end - pos >= 16:
            seconds, fraction, caplen, wirelen = unpack_header(buffer, pos)
            start = pos + 16
            if start + caplen <= end:
                pos = start + caplen
                yield new(Record, (seconds * 1_000_000_000 + fraction * ns_per_unit, linktype,
                                   buffer[start:pos], wirelen, ()))
                continue
        chunks.pos = pos
        if not chunks.ensure(16):
            if len(chunks.buffer) - chunks.pos:
                raise CaptureFileError("record header cut short", chunks.offset)
            return
        caplen = unpack_header(chunks.buffer, chunks.pos)[2]
        if caplen > 0x4000000:
            raise CaptureFileError(f"record claims {caplen} bytes", chunks.offset)
        if not chunks.ensure(16 + caplen):
            raise CaptureFileError(f"record of {caplen} bytes cut short", chunks.offset)
        buffer, pos, end = chunks.buffer, chunks.pos, len(chunks.buffer)


@dataclasses.dataclass
class _Interface:
    linktype: int
    snaplen: int
    # Timestamps are ticks of 10^-k or 2^-k seconds; ns = ticks * multiply // divide.
    # Integers, not a float factor: a float has 53 bits, and today in nanoseconds
    # needs 61, so a float would round every timestamp to a few hundred ns.
    multiply: int = 1000
    divide: int = 1

    def nanoseconds(self, ticks: int) -> int:
        return ticks * self.multiply // self.divide


def _read_pcapng(chunks: _Chunks) -> Iterator[Record]:
    endian = "<"
    interfaces: list[_Interface] = []
    while True:
        block_offset = chunks.offset
        if not chunks.ensure(12):
            if len(chunks.buffer) - chunks.pos:
                raise CaptureFileError("block header cut short", block_offset)
            return
        buffer, pos = chunks.buffer, chunks.pos
        block_type = struct.unpack_from(endian + "I", buffer, pos)[0]
        if block_type == PCAPNG_SHB:
            bom = buffer[pos + 8:pos + 12]
            endian = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}.get(bom)
            if endian is None:
                raise CaptureFileError("section header with a bad byte-order magic", block_offset)
            interfaces = []
        length = struct.unpack_from(endian + "I", buffer, pos + 4)[0]
        if length < 12 or length % 4:
            raise CaptureFileError(f"block with impossible length {length}", block_offset)
        if not chunks.ensure(length):
            raise CaptureFileError(f"block of {length} bytes cut short", block_offset)
        buffer, pos = chunks.buffer, chunks.pos
        body = buffer[pos + 8:pos + length - 4]
        if struct.unpack_from(endian + "I", buffer, pos + length - 4)[0] != length:
            raise CaptureFileError("block's trailing length does not match", block_offset)
        chunks.pos = pos + length
        if block_type == BLOCK_EPB:
            interface_id, high, low, caplen, wirelen = struct.unpack_from(endian + "IIIII", body)
            interface = _interface(interfaces, interface_id, block_offset)
            padded = (caplen + 3) & ~3
            data = body[20:20 + caplen]
            comments = _comments(body[20 + padded:], endian) if len(body) > 20 + padded else ()
            ticks = (high << 32) | low
            yield _record(interface.nanoseconds(ticks), interface.linktype, data, wirelen, comments)
        elif block_type == BLOCK_SPB:
            interface = _interface(interfaces, 0, block_offset)
            wirelen = struct.unpack_from(endian + "I", body)[0]
            caplen = min(wirelen, interface.snaplen or wirelen, len(body) - 4)
            yield _record(0, interface.linktype, body[4:4 + caplen], wirelen)
        elif block_type == BLOCK_IDB:
            linktype, _, snaplen = struct.unpack_from(endian + "HHI", body)
            interface = _Interface(linktype, snaplen)
            for code, value in _options(body[8:], endian):
                if code == OPT_IF_TSRESOL and value:
                    exponent = value[0] & 0x7F
                    interface.multiply = 10 ** 9
                    interface.divide = 2 ** exponent if value[0] & 0x80 else 10 ** exponent
            interfaces.append(interface)


def _interface(interfaces: list[_Interface], interface_id: int, offset: int) -> _Interface:
    if interface_id >= len(interfaces):
        raise CaptureFileError(f"packet on undescribed interface {interface_id}", offset)
    return interfaces[interface_id]


def _options(data: bytes, endian: str) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos + 4 <= len(data):
        code, length = struct.unpack_from(endian + "HH", data, pos)
        if code == OPT_END:
            return
        yield code, data[pos + 4:pos + 4 + length]
        pos += 4 + ((length + 3) & ~3)


def _comments(data: bytes, endian: str) -> tuple[str, ...]:
    return tuple(value.decode("utf-8", "replace") for code, value in _options(data, endian)
                 if code == OPT_COMMENT)
