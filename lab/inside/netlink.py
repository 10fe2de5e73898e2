"""Netlink's framing, written once for the two programs that speak it: the link emulator
(NETLINK_NETFILTER, its packet queue) and the kernel sampler (NETLINK_SOCK_DIAG).

A netlink datagram holds messages, each a 16-byte header (length, type, flags, sequence,
port id) and a body; a body holds attributes, each a 4-byte header (length, type) and a
value, padded to 4 bytes (rtnetlink's rtattr and netfilter's nfattr are the same shape).
Only the standard library: the image has no compiler, and the protocol is a few structs.
"""

from __future__ import annotations

import struct
from typing import Iterator

HEADER = struct.Struct("=IHHII")          # length, type, flags, sequence, port id
ATTRIBUTE = struct.Struct("=HH")          # length, type
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3


def aligned(length: int) -> int:
    """Netlink pads every message and attribute to 4 bytes."""
    return (length + 3) & ~3


def message(kind: int, flags: int, body: bytes, sequence: int = 0) -> bytes:
    """One netlink message: its header, then ``body``."""
    return HEADER.pack(HEADER.size + len(body), kind, flags, sequence, 0) + body


def attribute(code: int, value: bytes) -> bytes:
    """One attribute, padded."""
    return ATTRIBUTE.pack(ATTRIBUTE.size + len(value), code) + value + b"\0" * (-len(value) % 4)


def messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, body) of each message in one datagram from the kernel; a malformed length ends it."""
    offset = 0
    while offset + HEADER.size <= len(data):
        length, kind, _, _, _ = HEADER.unpack_from(data, offset)
        if length < HEADER.size:
            return
        yield kind, data[offset + HEADER.size:offset + length]
        offset += aligned(length)


def attributes(body: bytes, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(type, value) of each attribute in ``body`` from ``offset`` (after the family's own header);
    the type's top bits (nested, byte order) are left to the caller."""
    while offset + ATTRIBUTE.size <= len(body):
        length, code = ATTRIBUTE.unpack_from(body, offset)
        if length < ATTRIBUTE.size:
            return
        yield code, body[offset + ATTRIBUTE.size:offset + length]
        offset += aligned(length)


def error_of(body: bytes) -> int:
    """The errno an NLMSG_ERROR message carries (0: an acknowledgement, not an error)."""
    code: int = struct.unpack_from("=i", body)[0]
    return -code
