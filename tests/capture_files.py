"""Capture files written by the tests themselves: pcap and pcapng around given records.

For what no tool here writes (a big-endian pcap, raw IP, Simple Packet Blocks, odd
blocks) and for synthetic conversations (tests/tcp_traces.py).
"""

from __future__ import annotations

import struct

LINKTYPE_ETHERNET = 1


def pcap_bytes(recs, endian: str = "<", nanoseconds: bool = False, linktype: int = LINKTYPE_ETHERNET) -> bytes:
    """A classic pcap file holding ``recs`` (Record tuples)."""
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for rec in recs:
        seconds, rest = divmod(rec.time_ns, 1_000_000_000)
        out.append(struct.pack(endian + "IIII", seconds, rest if nanoseconds else rest // 1000,
                               len(rec.data), rec.wire_length))
        out.append(rec.data)
    return b"".join(out)


def pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def block(kind: int, body: bytes, endian: str = "<") -> bytes:
    """One pcapng block: type, length, body, length again."""
    length = 12 + len(body)
    return struct.pack(endian + "II", kind, length) + body + struct.pack(endian + "I", length)


def section_header(endian: str = "<") -> bytes:
    return block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian)


def interface(linktype: int = LINKTYPE_ETHERNET, endian: str = "<", options: bytes = b"") -> bytes:
    return block(1, struct.pack(endian + "HHI", linktype, 0, 0) + options, endian)


def enhanced_packet(rec, interface_id: int = 0, endian: str = "<", ticks: int | None = None,
                    options: bytes = b"") -> bytes:
    """An Enhanced Packet Block of ``rec`` (timestamp in microseconds unless ``ticks`` is given)."""
    ticks = rec.time_ns // 1000 if ticks is None else ticks
    body = struct.pack(endian + "IIIII", interface_id, ticks >> 32, ticks & 0xFFFFFFFF, len(rec.data),
                       rec.wire_length) + pad(rec.data) + options
    return block(6, body, endian)


def pcapng_bytes(recs, endian: str = "<") -> bytes:
    """A pcapng file: one section, one Ethernet interface, an Enhanced Packet Block per record."""
    return section_header(endian) + interface(endian=endian) + b"".join(enhanced_packet(r, endian=endian) for r in recs)
