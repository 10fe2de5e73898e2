"""Capture files written by the tests themselves: pcap and pcapng around given records.

For what no tool here writes (a big-endian pcap, raw IP, Simple Packet Blocks, odd
blocks) and for synthetic conversations (tests/tcp_traces.py).
"""

from __future__ import annotations

import struct

from lab.inspect.formats import (
    BLOCK_EPB,
    BLOCK_IDB,
    BYTE_ORDER_MAGIC,
    LINKTYPE_ETHERNET,
    PCAP_MICROSECOND_MAGIC,
    PCAP_NANOSECOND_MAGIC,
    PCAPNG_SHB,
    block,
    pad,
)


def pcap_bytes(recs, endian: str = "<", nanoseconds: bool = False, linktype: int = LINKTYPE_ETHERNET) -> bytes:
    """A classic pcap file holding ``recs`` (Record tuples)."""
    magic = PCAP_NANOSECOND_MAGIC if nanoseconds else PCAP_MICROSECOND_MAGIC
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for rec in recs:
        seconds, rest = divmod(rec.time_ns, 1_000_000_000)
        out.append(struct.pack(endian + "IIII", seconds, rest if nanoseconds else rest // 1000,
                               len(rec.data), rec.wire_length))
        out.append(rec.data)
    return b"".join(out)


def section_header(endian: str = "<") -> bytes:
    return block(PCAPNG_SHB, struct.pack(endian + "IHHq", BYTE_ORDER_MAGIC, 1, 0, -1), endian)


def interface(linktype: int = LINKTYPE_ETHERNET, endian: str = "<", options: bytes = b"") -> bytes:
    return block(BLOCK_IDB, struct.pack(endian + "HHI", linktype, 0, 0) + options, endian)


def enhanced_packet(rec, interface_id: int = 0, endian: str = "<", ticks: int | None = None,
                    options: bytes = b"") -> bytes:
    """An Enhanced Packet Block of ``rec`` (timestamp in microseconds unless ``ticks`` is given)."""
    ticks = rec.time_ns // 1000 if ticks is None else ticks
    body = struct.pack(endian + "IIIII", interface_id, ticks >> 32, ticks & 0xFFFFFFFF, len(rec.data),
                       rec.wire_length) + pad(rec.data) + options
    return block(BLOCK_EPB, body, endian)


def pcapng_bytes(recs, endian: str = "<") -> bytes:
    """A pcapng file: one section, one Ethernet interface, an Enhanced Packet Block per record."""
    return section_header(endian) + interface(endian=endian) + b"".join(enhanced_packet(r, endian=endian) for r in recs)
