"""The numbers of the pcap and pcapng formats, and the framing of a pcapng block, in one place.

The reader (lab.inspect.reader), the writer of annotated captures
(lab.host.capture.pcapng) and the tests' hand-made files all take them from here.
pcap: the tcpdump file format (a 24-byte header, then a 16-byte header per
record); pcapng: draft-ietf-opsawg-pcapng, a sequence of blocks
``type, length, body, length``, bodies padded to 32 bits.
"""

from __future__ import annotations

import struct

PCAP_MICROSECOND_MAGIC = 0xA1B2C3D4
PCAP_NANOSECOND_MAGIC = 0xA1B23C4D

PCAPNG_SHB = 0x0A0D0D0A          # Section Header Block, also the file's first four bytes
BLOCK_IDB, BLOCK_SPB, BLOCK_EPB = 1, 3, 6   # Interface Description, Simple Packet, Enhanced Packet
BYTE_ORDER_MAGIC = 0x1A2B3C4D    # in the section header: tells the section's byte order

OPT_END, OPT_COMMENT = 0, 1      # every block: end of options, a comment (Wireshark's frame.comment)
SHB_USERAPPL = 4                 # section header: the application that wrote the file
IF_NAME, IF_TSRESOL = 2, 9       # interface: its name, its timestamps' resolution

LINKTYPE_ETHERNET = 1


def pad(data: bytes) -> bytes:
    """``data`` padded with zeros to a multiple of 4 bytes, as pcapng bodies are."""
    return data + b"\0" * (-len(data) % 4)


def block(kind: int, body: bytes, endian: str = "<") -> bytes:
    """One pcapng block: type, total length, body, total length again."""
    length = 12 + len(body)
    return struct.pack(endian + "II", kind, length) + body + struct.pack(endian + "I", length)


def options(items: list[tuple[int, bytes]], endian: str = "<") -> bytes:
    """A block's options (code, length, value padded), closed by opt_endofopt; none: nothing."""
    if not items:
        return b""
    encoded = b"".join(struct.pack(endian + "HH", code, len(value)) + pad(value) for code, value in items)
    return encoded + struct.pack(endian + "HH", OPT_END, 0)
