"""From a frame's bytes to the IP and TCP/UDP header fields the analysis needs.

Link types: Ethernet (with 802.1Q tags), Linux cooked captures (SLL and SLL2) and
raw IP. Network: IPv4 and IPv6 (skipping IPv6 extension headers). Only headers are
read, with ``struct``; payload bytes stay where they are until someone asks.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from typing import NamedTuple

LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_SLL, LINKTYPE_SLL2 = 1, 101, 113, 276
LINKTYPE_IPV4, LINKTYPE_IPV6, DLT_RAW_BSD, DLT_RAW_OPENBSD = 228, 229, 12, 14
ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN, ETHERTYPE_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8
PROTO_TCP, PROTO_UDP = 6, 17
IPV6_EXTENSIONS = {0, 43, 60, 135, 139, 140}  # hop-by-hop, routing, destination, mobility, HIP, shim6
IPV6_FRAGMENT = 44

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
NS = 0x100

_u16 = struct.Struct("!H").unpack_from
_ipv4 = struct.Struct("!BxH5xB2x4s4s").unpack_from  # ver/ihl, total length, protocol, src, dst
_tcp = struct.Struct("!HHIIBBH").unpack_from
# Ethernet + IPv4 without options + TCP, the frames of nearly every capture, in one
# call: ethertype, version/IHL, total length, fragment field, protocol, addresses,
# then the TCP header. Anything else takes the general path (ip_packet()).
_ether_ipv4_tcp = struct.Struct("!12xHBxH2xHxB2x4s4sHHIIBBH").unpack_from
ETHER_IPV4_TCP_LENGTH = 14 + 20 + 20


class IpPacket(NamedTuple):
    """The network layer of a frame: addresses (packed bytes), protocol, where its payload is."""

    src: bytes
    dst: bytes
    proto: int
    offset: int      # of the transport header in the frame
    length: int      # transport header + payload, from the IP header


def network_offset(linktype: int, data: bytes) -> tuple[int, int] | None:
    """(offset of the IP header, IP version) for a frame, or None if it carries no IP."""
    if linktype == LINKTYPE_ETHERNET:
        offset, ethertype = 14, _u16(data, 12)[0] if len(data) >= 14 else 0
        while ethertype in (ETHERTYPE_VLAN, ETHERTYPE_QINQ) and len(data) >= offset + 4:
            ethertype = _u16(data, offset + 2)[0]
            offset += 4
    elif linktype == LINKTYPE_SLL:
        offset, ethertype = 16, _u16(data, 14)[0] if len(data) >= 16 else 0
    elif linktype == LINKTYPE_SLL2:
        offset, ethertype = 20, _u16(data, 0)[0] if len(data) >= 20 else 0
    elif linktype in (LINKTYPE_RAW, DLT_RAW_BSD, DLT_RAW_OPENBSD, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not data:
            return None
        version = data[0] >> 4
        return (0, version) if version in (4, 6) else None
    else:
        return None
    if ethertype == ETHERTYPE_IPV4:
        return offset, 4
    if ethertype == ETHERTYPE_IPV6:
        return offset, 6
    return None


def ip_packet(linktype: int, data: bytes) -> IpPacket | None:
    """The IP layer of a frame, or None when the frame is not (whole-header) IP."""
    found = network_offset(linktype, data)
    if found is None:
        return None
    offset, version = found
    if version == 4:
        if len(data) < offset + 20:
            return None
        version_ihl, total, proto, src, dst = _ipv4(data, offset)
        header = (version_ihl & 0x0F) * 4
        fragment = _u16(data, offset + 6)[0]
        if fragment & 0x1FFF:  # a later fragment carries no transport header
            return IpPacket(src, dst, -proto, offset + header, total - header)
        return IpPacket(src, dst, proto, offset + header, total - header)
    if len(data) < offset + 40:
        return None
    payload_length, proto = _u16(data, offset + 4)[0], data[offset + 6]
    src, dst = data[offset + 8:offset + 24], data[offset + 24:offset + 40]
    position, end = offset + 40, offset + 40 + payload_length
    while proto in IPV6_EXTENSIONS or proto == IPV6_FRAGMENT:
        if len(data) < position + 8:
            return None
        next_proto = data[position]
        if proto == IPV6_FRAGMENT:
            if _u16(data, position + 2)[0] & 0xFFF8:
                return IpPacket(src, dst, -next_proto, position + 8, end - position - 8)
            size = 8
        else:
            size = (data[position + 1] + 1) * 8
        proto, position = next_proto, position + size
    return IpPacket(src, dst, proto, position, end - position)


class UdpDatagram(NamedTuple):
    """A UDP datagram of a frame: its IP addresses (packed bytes), ports and payload."""

    src: bytes
    dst: bytes
    sport: int
    dport: int
    payload: bytes


def udp_datagram(linktype: int, data: bytes) -> UdpDatagram | None:
    """The UDP datagram a frame carries, or None when it carries none (whole-header)."""
    ip = ip_packet(linktype, data)
    if ip is None or ip.proto != PROTO_UDP or len(data) < ip.offset + 8:
        return None
    sport, dport = _u16(data, ip.offset)[0], _u16(data, ip.offset + 2)[0]
    return UdpDatagram(ip.src, ip.dst, sport, dport, data[ip.offset + 8:ip.offset + ip.length])


class TcpHeader(NamedTuple):
    """What the analysis needs of one TCP segment."""

    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int           # the 9 flag bits, NS included
    window: int          # as sent (not scaled)
    offset: int          # of the TCP header in the frame; options from offset + 20
    payload_offset: int  # of the payload in the frame
    seglen: int          # payload bytes, from the IP lengths (not what was captured)


def tcp_header(linktype: int, data: bytes) -> TcpHeader | None:
    """The TCP header of a frame, or None when the frame carries no (whole) TCP header."""
    if linktype == LINKTYPE_ETHERNET and len(data) >= ETHER_IPV4_TCP_LENGTH:
        (ethertype, version_ihl, total, fragment, proto, src, dst,
         sport, dport, seq, ack, offset_byte, flag_byte, window) = _ether_ipv4_tcp(data)
        if ethertype == ETHERTYPE_IPV4 and version_ihl == 0x45 and proto == PROTO_TCP \
                and not fragment & 0x1FFF:
            header = (offset_byte >> 4) * 4
            if header < 20 or total - 20 < header:
                return None
            flags = flag_byte | ((offset_byte & 1) << 8)
            # tuple.__new__: a NamedTuple's own __new__ costs 9x more, once per packet.
            return tuple.__new__(TcpHeader, (src, dst, sport, dport, seq, ack, flags, window,
                                             34, 34 + header, total - 20 - header))
    ip = ip_packet(linktype, data)
    if ip is None or ip.proto != PROTO_TCP or len(data) < ip.offset + 20:
        return None
    sport, dport, seq, ack, offset_byte, flag_byte, window = _tcp(data, ip.offset)
    header = (offset_byte >> 4) * 4
    if header < 20 or ip.length < header:
        return None
    flags = flag_byte | ((offset_byte & 1) << 8)
    return TcpHeader(ip.src, ip.dst, sport, dport, seq, ack, flags, window, ip.offset, ip.offset + header,
                     ip.length - header)


@functools.lru_cache(maxsize=4096)
def address_text(packed: bytes) -> str:
    """Dotted IPv4 or compressed IPv6 text of a packed address (remembered: a capture has few)."""
    return str(ipaddress.ip_address(packed))


def endpoint_text(packed: bytes, port: int) -> str:
    """``ip:port``, with IPv6 in brackets."""
    text = address_text(packed)
    return f"[{text}]:{port}" if len(packed) == 16 else f"{text}:{port}"


class TcpOptions(NamedTuple):
    """The options a handshake negotiates (None where absent)."""

    mss: int | None = None
    window_scale: int | None = None
    sack_permitted: bool = False
    timestamps: bool = False
    sack_blocks: int = 0
    cut: bool = False          # the capture's snap length cut the options short (read up to the cut)


def tcp_options(data: bytes, start: int, end: int) -> TcpOptions:
    """The options between ``start`` and ``end`` (the header's length); those the snap length
    cut off are not there to read, and ``cut`` says so, as Wireshark does."""
    mss = scale = None
    sack_permitted = timestamps = False
    sack_blocks = 0
    cut = end > len(data)
    end = min(end, len(data))
    position = start
    while position < end:
        kind = data[position]
        if kind == 0:
            break
        if kind == 1:
            position += 1
            continue
        if position + 1 >= end:
            break
        length = data[position + 1]
        if length < 2 or position + length > end:
            break   # malformed, or cut: what came before is kept
        if kind == 2 and length == 4:
            mss = _u16(data, position + 2)[0]
        elif kind == 3 and length == 3:
            scale = min(data[position + 2], 14)
        elif kind == 4:
            sack_permitted = True
        elif kind == 5:
            sack_blocks = (length - 2) // 8
        elif kind == 8:
            timestamps = True
        position += length
    return TcpOptions(mss, scale, sack_permitted, timestamps, sack_blocks, cut)


FLAG_LETTERS = ((NS, "N"), (CWR, "C"), (ECE, "E"), (URG, "U"), (ACK, "A"), (PSH, "P"),
                (RST, "R"), (SYN, "S"), (FIN, "F"))


def tcp_flags_column(flags: int) -> str:
    """Wireshark's ``tcp.flags.str``: 12 positions, a letter where a flag is set."""
    return "···" + "".join(letter if flags & bit else "·" for bit, letter in FLAG_LETTERS)


def tcp_flags_text(flags: int) -> str:
    """Flags as a learner reads them: SYN, SYN/ACK, PSH/ACK, FIN/ACK, RST, ..."""
    names = [name for bit, name in ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"),
                                    (ACK, "ACK"), (URG, "URG"), (ECE, "ECE"), (CWR, "CWR"))
             if flags & bit]
    return "/".join(names) or "none"
