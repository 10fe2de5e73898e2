"""Reading pcap and pcapng files in batches of records, in constant memory.

Formats: pcap in both byte orders with micro- or nanosecond timestamps, and pcapng
(Section Header, Interface Description, Enhanced and Simple Packet blocks, several
interfaces and sections, comments on packets read back). Other pcapng blocks are
skipped, as the format asks.

Why not scapy's readers: dissecting every packet runs at ~2,400 packets/s here and
even ``RawPcapReader`` keeps per-packet Python objects we do not need. This reader
reads the file in large chunks and hands out each chunk's records as a
:class:`Batch`: the chunk's bytes and numpy columns saying where each record
starts, how long it is and when it was captured. Only one loop runs per record, the
one that follows the chain of record lengths (each record says where the next
begins); everything else is done a column at a time. The bulk analysis works on
batches; :func:`read_records` hands out one :class:`Record` at a time for everyone
else. Memory stays the size of one chunk, whatever the file's size.

A damaged file raises :class:`CaptureFileError` naming the byte offset of the bad
record; every record before it has already been handed out.

To learn the formats, read ``_read_pcap`` and ``_read_pcapng`` (the numbers are in
lab.inspect.formats); the helpers marked "speed layer" below only make the
length-following loop cheap, and a reader may skip them.
"""

from __future__ import annotations

import array
import dataclasses
import math
import struct
import sys
from typing import BinaryIO, Iterator, NamedTuple

import numpy as np

from lab.errors import LabError
from lab.inspect.formats import BLOCK_EPB, BLOCK_IDB, BLOCK_SPB, IF_TSRESOL, OPT_COMMENT, OPT_END, PCAPNG_SHB

CHUNK = 4 << 20
MAX_RECORD = 0x4000000   # larger claims are damage, not packets (tshark's limit is 256 KiB)

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),   # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),      # little-endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
EPB_HEADER = 28          # type, length, interface, time high, time low, caplen, wire length
EPB_OVERHEAD = EPB_HEADER + 4


Words = list["memoryview | array.array[int]"]     # lab.inspect.reader._words: one view per alignment


class CaptureFileError(LabError):
    """The file is missing, not a capture, or damaged at byte ``offset``."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} at byte {offset}")
        self.offset = offset


class Record(NamedTuple):
    """One captured frame: when (ns since the epoch), on what link, its bytes.

    A NamedTuple rather than a dataclass: one is made per packet, and a tuple is
    the cheapest object Python can make.
    """

    time_ns: int
    linktype: int
    data: bytes
    wire_length: int
    comments: tuple[str, ...] = ()


@dataclasses.dataclass
class Batch:
    """Consecutive records of one file, as columns (numpy int64 arrays, one entry per record).

    Record i's frame is ``buffer[start[i]:start[i] + caplen[i]]``; ``comments`` has
    an entry only for the few records that carry some.
    """

    buffer: bytes
    start: np.ndarray
    caplen: np.ndarray
    wire_length: np.ndarray
    time_ns: np.ndarray
    linktype: np.ndarray
    comments: dict[int, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.start)

    def frame(self, index: int) -> bytes:
        start = int(self.start[index])
        return self.buffer[start:start + int(self.caplen[index])]

    def records(self) -> Iterator[Record]:
        buffer, comments, new = self.buffer, self.comments, tuple.__new__
        columns = zip(self.time_ns.tolist(), self.linktype.tolist(), self.start.tolist(),
                      self.caplen.tolist(), self.wire_length.tolist())
        for index, (time_ns, linktype, start, caplen, wire_length) in enumerate(columns):
            # tuple.__new__: Record's own __new__ is Python code, 9x slower, once per packet.
            yield new(Record, (time_ns, linktype, buffer[start:start + caplen], wire_length,
                               comments.get(index, ())))


class _Chunks:
    """A window over the file that hands out byte ranges, refilling as needed."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.buffer = b""
        self.start = 0      # file offset of buffer[0]
        self.pos = 0        # read position inside buffer
        self._words: tuple[str, Words] | None = None   # _words() of this buffer, and in which byte order
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
            try:
                more = self.stream.read(max(CHUNK, size - have))
            except OSError as exc:
                raise CaptureFileError(f"cannot read the file: {exc.strerror or exc}", self.offset + have) from None
            if not more:
                break
            pieces.append(more)
            have += len(more)
        self.start += self.pos
        self.buffer = b"".join(pieces)
        self.pos = 0
        self._words = None
        return have >= size

    def words(self, endian: str) -> Words:
        """_words() of the window, made once per window: a rescan after each odd block reuses them."""
        if self._words is None or self._words[0] != endian:
            self._words = (endian, _words(self.buffer, endian))
        return self._words[1]


def read_batches(stream: BinaryIO) -> Iterator[Batch]:
    """Every record of a pcap or pcapng stream, in file order, a chunk's worth at a time."""
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


def read_records(stream: BinaryIO) -> Iterator[Record]:
    """Every record of a pcap or pcapng stream, in file order, one at a time."""
    for batch in read_batches(stream):
        yield from batch.records()


# --- speed layer: word views and byte windows, so that one cheap loop per record does the work ---


def _words(buffer: bytes, endian: str) -> Words:
    """``words[p & 3][p >> 2]`` is the 32-bit number at byte p of buffer, in the file's byte order.

    The record-length loop reads one number per record; indexing a memoryview
    cast to 32-bit words costs a third of ``struct.unpack_from``. A cast needs
    aligned words, so there is one view per alignment. A file in the other byte
    order than this machine's (rare) gets byte-swapped copies instead.
    """
    views: Words = []
    for shift in range(4):
        words: memoryview | array.array[int] = memoryview(buffer)[shift:shift + (len(buffer) - shift) // 4 * 4].cast("I")
        if (endian == "<") != (sys.byteorder == "little"):
            swapped = array.array("I", words)
            swapped.byteswap()
            words = swapped
        views.append(words)
    return views


def windows(buffer: bytes, width: int) -> np.ndarray:
    """Every run of ``width`` bytes in buffer, as rows of a 2-D view (row p starts at byte p).

    Indexing it with record positions copies each record's first bytes in one call.
    (numpy's sliding_window_view does the same, with 15 times the overhead.)
    """
    return np.ndarray((max(len(buffer) - width + 1, 0), width), np.uint8, buffer, 0, (1, 1))


def _gather(buffer: bytes, positions: np.ndarray, width: int, dtype: np.dtype) -> np.ndarray:
    """The ``width`` bytes at each position, as a row of ``dtype`` values (one row per position)."""
    rows: np.ndarray = windows(buffer, width)[positions].view(dtype)
    return rows


# --- the formats ---


def _read_pcap(chunks: _Chunks, endian: str, ns_per_unit: int) -> Iterator[Batch]:
    if not chunks.ensure(24):
        raise CaptureFileError("pcap file header is cut short", 0)
    linktype = struct.unpack_from(endian + "I", chunks.buffer, 20)[0] & 0x0FFFFFFF
    chunks.pos = 24
    header = np.dtype(endian + "u4")
    while True:
        length_fields, chunks.pos = _pcap_record_lengths(chunks.words(endian), chunks.pos, len(chunks.buffer))
        if length_fields:
            positions = np.frombuffer(length_fields, np.int64) - 8
            seconds, fraction, caplen, wire_length = _gather(chunks.buffer, positions, 16, header).astype(np.int64).T
            yield Batch(chunks.buffer, positions + 16, caplen, wire_length,
                        seconds * 1_000_000_000 + fraction * ns_per_unit, np.full(len(positions), linktype))
        # The next record is not whole in the window: refill, or find the end or the damage.
        if not chunks.ensure(16):
            if len(chunks.buffer) - chunks.pos:
                raise CaptureFileError("record header cut short", chunks.offset)
            return
        caplen = struct.unpack_from(endian + "I", chunks.buffer, chunks.pos + 8)[0]
        if caplen > MAX_RECORD:
            raise CaptureFileError(f"record claims {caplen} bytes", chunks.offset)
        if not chunks.ensure(16 + caplen):
            raise CaptureFileError(f"record of {caplen} bytes cut short", chunks.offset)


def _pcap_record_lengths(words: Words, pos: int, end: int) -> tuple[array.array[int], int]:
    """Where the length field of each whole record from ``pos`` on is, and where the first
    unfinished record starts (``words``: the window's, ``end``: its length).

    The one loop that runs once per packet: a record's header says how long it
    is, and so where the next one starts.
    """
    length_fields = array.array("q")
    add = length_fields.append
    limit = end - 8
    # The loop follows each record's length field (8 bytes into its header): one
    # addition fewer per record than following the records' starts.
    at = pos + 8
    while at <= limit:
        add(at)
        at += 16 + words[at & 3][at >> 2]
    if at - 8 > end:   # the last one runs past the window: it is read again after a refill
        at = length_fields.pop()
    return length_fields, at - 8


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

    def nanoseconds_of(self, ticks: np.ndarray) -> np.ndarray:
        """nanoseconds() of a column of (unsigned 64-bit) ticks, exact.

        In int64 where no step can overflow; otherwise in Python integers (an
        object column), which only a clock set past the year 2262 needs.
        """
        common = math.gcd(self.multiply, self.divide)
        multiply, divide = self.multiply // common, self.divide // common
        if divide * multiply < 1 << 62 and (not len(ticks) or int(ticks.max()) < (1 << 62) // multiply):
            whole, rest = np.divmod(ticks.astype(np.int64), divide)
            nanoseconds: np.ndarray = whole * multiply + rest * multiply // divide
            return nanoseconds
        return np.array([self.nanoseconds(tick) for tick in ticks.tolist()], dtype=object)


def _read_pcapng(chunks: _Chunks) -> Iterator[Batch]:
    endian = "<"
    interfaces: list[_Interface] = []
    while True:
        starts, chunks.pos = _packet_block_starts(chunks.words(endian), chunks.pos, len(chunks.buffer))
        if starts:
            batch, damage = _packet_blocks(chunks, starts, endian, interfaces)
            if len(batch):
                yield batch
            if damage is not None:
                raise damage
        # The next block is another kind, or not whole in the window, or the end.
        block_offset = chunks.offset
        if not chunks.ensure(12):
            if len(chunks.buffer) - chunks.pos:
                raise CaptureFileError("block header cut short", block_offset)
            return
        buffer, pos = chunks.buffer, chunks.pos
        block_type = struct.unpack_from(endian + "I", buffer, pos)[0]
        if block_type == PCAPNG_SHB:
            bom = buffer[pos + 8:pos + 12]
            order = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}.get(bom)
            if order is None:
                raise CaptureFileError("section header with a bad byte-order magic", block_offset)
            endian = order
            interfaces = []
        length = struct.unpack_from(endian + "I", buffer, pos + 4)[0]
        if length < 12 or length % 4:
            raise CaptureFileError(f"block with impossible length {length}", block_offset)
        if length > MAX_RECORD:
            raise CaptureFileError(f"block claims {length} bytes", block_offset)
        if not chunks.ensure(length):
            raise CaptureFileError(f"block of {length} bytes cut short", block_offset)
        buffer, pos = chunks.buffer, chunks.pos
        if struct.unpack_from(endian + "I", buffer, pos + length - 4)[0] != length:
            raise CaptureFileError("block's trailing length does not match", block_offset)
        if block_type == BLOCK_EPB:
            if length < EPB_OVERHEAD:
                raise CaptureFileError(f"enhanced packet block of only {length} bytes", block_offset)
            continue    # whole in the window now: the next scan takes it
        chunks.pos = pos + length
        body = buffer[pos + 8:pos + length - 4]
        if block_type == BLOCK_SPB:
            if len(body) < 4:
                raise CaptureFileError(f"simple packet block of only {length} bytes", block_offset)
            interface = _interface(interfaces, 0, block_offset)
            wire_length = struct.unpack_from(endian + "I", body)[0]
            caplen = min(wire_length, interface.snaplen or wire_length, len(body) - 4)
            yield Batch(buffer, np.array([pos + 12]), np.array([caplen]), np.array([wire_length]),
                        np.zeros(1, np.int64), np.array([interface.linktype]))
        elif block_type == BLOCK_IDB:
            if len(body) < 8:
                raise CaptureFileError(f"interface description block of only {length} bytes", block_offset)
            linktype, _, snaplen = struct.unpack_from(endian + "HHI", body)
            interface = _Interface(linktype, snaplen)
            for code, value in _options(body[8:], endian):
                if code == IF_TSRESOL and value:
                    exponent = value[0] & 0x7F
                    interface.multiply = 10 ** 9
                    interface.divide = 2 ** exponent if value[0] & 0x80 else 10 ** exponent
            interfaces.append(interface)


def _packet_block_starts(words: Words, pos: int, end: int) -> tuple[array.array[int], int]:
    """Where each whole Enhanced Packet Block from ``pos`` on starts; where the first other block does.

    The per-packet loop of pcapng (see _pcap_record_lengths). Anything unusual (a
    block of another kind, an implausible length, the window's end) stops it;
    the caller deals with that block and calls again.
    """
    starts = array.array("q")
    add = starts.append
    limit = end - 8
    while pos <= limit and words[pos & 3][pos >> 2] == BLOCK_EPB:
        length_at = pos + 4
        length = words[length_at & 3][length_at >> 2]
        if length < EPB_OVERHEAD or length & 3 or pos + length > end:
            break
        add(pos)
        pos += length
    return starts, pos


def _packet_blocks(chunks: _Chunks, starts: array.array[int], endian: str,
                   interfaces: list[_Interface]) -> tuple[Batch, CaptureFileError | None]:
    """The Enhanced Packet Blocks at ``starts`` as a Batch, up to the first damaged one (and its error)."""
    buffer = chunks.buffer
    positions = np.frombuffer(starts, np.int64)
    word = np.dtype(endian + "u4")
    fields = _gather(buffer, positions, EPB_HEADER, word).astype(np.int64).T
    _, length, interface, high, low, caplen, wire_length = fields
    trailer = _gather(buffer, positions + length - 4, 4, word)[:, 0]
    damage = None
    bad = np.flatnonzero((trailer != length) | (interface >= len(interfaces)))
    if len(bad):
        first = int(bad[0])
        offset = chunks.start + int(positions[first])
        if trailer[first] != length[first]:
            damage = CaptureFileError("block's trailing length does not match", offset)
        else:
            damage = CaptureFileError(f"packet on undescribed interface {interface[first]}", offset)
        positions, length, interface, high, low, caplen, wire_length = (
            column[:first] for column in (positions, length, interface, high, low, caplen, wire_length))
    caplen = np.minimum(caplen, length - EPB_OVERHEAD)   # a claim past the block gets what the block has
    ticks = (high.astype(np.uint64) << np.uint64(32)) | low.astype(np.uint64)
    used = np.unique(interface).tolist()
    if len(used) == 1:
        time_ns = interfaces[used[0]].nanoseconds_of(ticks)
    else:
        parts = {number: interfaces[number].nanoseconds_of(ticks[interface == number]) for number in used}
        time_ns = np.empty(len(ticks), object if any(p.dtype == object for p in parts.values()) else np.int64)
        for number, part in parts.items():
            time_ns[interface == number] = part
    linktype = np.array([i.linktype for i in interfaces] or [0])[interface]
    comments = {}
    for index in np.flatnonzero(length > EPB_OVERHEAD + ((caplen + 3) & ~3)).tolist():
        start = int(positions[index])
        options_at = start + EPB_HEADER + ((int(caplen[index]) + 3) & ~3)
        found = _comments(buffer[options_at:start + int(length[index]) - 4], endian)
        if found:
            comments[index] = found
    return Batch(buffer, positions + EPB_HEADER, caplen, wire_length, time_ns, linktype, comments), damage


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
