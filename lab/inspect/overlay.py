"""The wire under an overlay network: VXLAN (RFC 7348), as Docker Swarm's overlay uses it.

Between two containers on different hosts, each packet of the lab travels the hosts'
own network inside another one:

    outer Ethernet (14) | outer IPv4 (20) | UDP to port 4789 (8) | VXLAN (8: flags, VNI)
    | the inner Ethernet frame, as the container sent it

50 bytes more than the inner frame, which is why the handshake over an overlay agrees
on an MSS of 1410 where the bridge gives 1460. An underlay capture (`invoke capture
--underlay`, on a host's own interface) holds the outer packets; this module takes
them apart: :func:`unwrap` finds every VXLAN packet and its inner frame,
:func:`analyze_inner` analyses the inner TCP as lab.inspect does any capture (the
frame numbers are the inner frames' order), and :func:`pairs` says which outer packet
carried which inner frame.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import TYPE_CHECKING, Iterator

from lab.inspect.decode import IpPacket, ip_packet
from lab.inspect.reader import Record, read_records

if TYPE_CHECKING:
    from lab.inspect.analysis import Capture

VXLAN_PORT = 4789
UDP, VXLAN_HEADER = 17, 8
ESP = 50
ETHERNET = 1                      # the inner frame's link type (pcap's LINKTYPE_ETHERNET)
OUTER_OVERHEAD = 14 + 20 + 8 + VXLAN_HEADER      # what the overlay adds to each inner frame: 50 bytes
VNI_PRESENT = 0x08                # the I flag: the VNI field is valid


@dataclasses.dataclass(frozen=True)
class Encapsulated:
    """One outer packet that carries a lab frame."""

    outer_frame: int              # 1-based, in the underlay capture
    time_ns: int
    outer_src: bytes
    outer_dst: bytes
    vni: int
    outer_length: int             # the whole outer frame on the wire
    inner: bytes                  # the inner Ethernet frame

    @property
    def overhead(self) -> int:
        return self.outer_length - len(self.inner)


def vxlan(linktype: int, data: bytes) -> tuple[int, int, bytes, bytes, bytes] | None:
    """(VNI, inner offset, outer src, outer dst, inner frame) of a VXLAN packet, or None."""
    return _vxlan_in(ip_packet(linktype, data), data)


def _vxlan_in(ip: IpPacket | None, data: bytes) -> tuple[int, int, bytes, bytes, bytes] | None:
    if ip is None or ip.proto != UDP or len(data) < ip.offset + 8 + VXLAN_HEADER:
        return None
    dport = struct.unpack_from("!H", data, ip.offset + 2)[0]
    header = ip.offset + 8
    if dport != VXLAN_PORT or not data[header] & VNI_PRESENT:
        return None
    vni = int.from_bytes(data[header + 4:header + 7], "big")
    inner = header + VXLAN_HEADER
    return vni, inner, ip.src, ip.dst, data[inner:]


@dataclasses.dataclass(frozen=True)
class Underlay:
    """What a capture of a host's own interface holds of overlay networks."""

    carried: list[Encapsulated]   # every VXLAN packet, with its inner frame, in capture order
    encrypted: int                # packets of IPsec ESP: an encrypted overlay's, which only the nodes' keys can read


def read_underlay(path: str | os.PathLike[str]) -> Underlay:
    """The VXLAN packets and the ESP packets of a capture, in one pass over it."""
    carried, encrypted = [], 0
    with open(path, "rb") as stream:
        for number, record in enumerate(read_records(stream), start=1):
            ip = ip_packet(record.linktype, record.data)
            if ip is not None and ip.proto == ESP:
                encrypted += 1
                continue
            parts = _vxlan_in(ip, record.data)
            if parts is not None:
                vni, _, src, dst, inner = parts
                carried.append(Encapsulated(number, record.time_ns, src, dst, vni, record.wire_length, inner))
    return Underlay(carried, encrypted)


def unwrap(path: str | os.PathLike[str]) -> list[Encapsulated]:
    """Every VXLAN packet of a capture, with its inner frame, in capture order."""
    return read_underlay(path).carried


def inner_records(encapsulated: list[Encapsulated]) -> Iterator[Record]:
    """The inner frames as a capture of their own (Ethernet, the outer packet's time)."""
    for packet in encapsulated:
        yield Record(packet.time_ns, ETHERNET, packet.inner, len(packet.inner))


def analyze_inner(path: str | os.PathLike[str], encapsulated: list[Encapsulated] | None = None) -> Capture:
    """The lab's TCP inside the overlay, analysed as lab.inspect analyses a capture (a
    lab.inspect.analysis.Capture; frame N is the Nth inner frame, see :func:`pairs`).
    ``encapsulated`` is :func:`unwrap`'s answer where the caller has it already."""
    from lab.inspect.analysis import Capture as Analysed
    from lab.inspect.tcp import Tracker

    encapsulated = unwrap(path) if encapsulated is None else encapsulated
    tracker = Tracker(keep=True, emit=False)
    tracker.consume(inner_records(encapsulated))
    return Analysed(str(path), tracker.frames, tracker.connections, tracker.flagged, tracker.first_time_ns or 0)


def pairs(encapsulated: list[Encapsulated]) -> dict[int, int]:
    """Inner frame number -> the outer frame that carried it."""
    return {inner: packet.outer_frame for inner, packet in enumerate(encapsulated, start=1)}
