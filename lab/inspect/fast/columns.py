"""A batch of frames -> columns of TCP header fields, and the connection each frame belongs to.

decode.py reads one frame at a time; this module reads the same fields of a whole
:class:`~lab.inspect.reader.Batch` at once with numpy, for the bulk analysis
(lab.inspect.fast.bulk). The frame nearly every capture is made of (Ethernet, IPv4
without options, TCP) is read a column at a time, through a numpy record type laid
out like decode's ``_ether_ipv4_tcp`` struct. Every other frame that may carry TCP
(VLAN tags, IPv6, IP options, other link types) goes through
:func:`~lab.inspect.decode.tcp_header` one by one, so the two paths can never
disagree on what a frame means.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import numpy as np

from lab.inspect.decode import (
    ETHER_IPV4_TCP_LENGTH,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_QINQ,
    ETHERTYPE_VLAN,
    LINKTYPE_ETHERNET,
    PROTO_TCP,
    TcpHeader,
    tcp_header,
)
from lab.inspect.reader import Batch, windows

# Ethernet + IPv4 without options + TCP, as decode._ether_ipv4_tcp reads it.
ETHER_IPV4_TCP = np.dtype({
    "names": ["ethertype", "version_ihl", "total", "fragment", "proto", "src", "dst",
              "sport", "dport", "seq", "ack", "offset_byte", "flag_byte", "window"],
    "formats": [">u2", "u1", ">u2", ">u2", "u1", ">u4", ">u4", ">u2", ">u2", ">u4", ">u4", "u1", "u1", ">u2"],
    "offsets": [12, 14, 16, 20, 23, 26, 30, 34, 36, 38, 42, 46, 47, 48],
    "itemsize": ETHER_IPV4_TCP_LENGTH,
})
COLUMNS = ("record", "time_ns", "wire_length", "sport", "dport", "seq", "ack", "flags", "window",
           "offset", "payload_offset", "seglen")

FRAMES_AT_ONCE = 4096   # frames() turns this many frames into Python numbers at a time (bounded memory)

Endpoint = tuple[bytes, int]


@dataclasses.dataclass
class TcpColumns:
    """The TCP frames of a batch, in file order: one entry per frame in each int64 column.

    ``pair`` numbers the connection key of each frame: ``keys[pair]`` is its two
    endpoints, the lower one first (as (address, port) tuples compare), and
    ``backwards`` says the frame was sent from the second to the first.
    """

    record: np.ndarray          # the frame's index in the batch
    time_ns: np.ndarray
    wire_length: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    seq: np.ndarray
    ack: np.ndarray
    flags: np.ndarray
    window: np.ndarray
    offset: np.ndarray          # of the TCP header in the frame
    payload_offset: np.ndarray
    seglen: np.ndarray
    pair: np.ndarray
    backwards: np.ndarray
    keys: list[tuple[Endpoint, Endpoint]]
    batch: Batch

    def __len__(self) -> int:
        return len(self.record)

    def frames(self, indices: np.ndarray) -> Iterator[tuple[int, int, int, TcpHeader, bytes]]:
        """For the frames at ``indices``: (record, time_ns, wire_length, decode.tcp_header's
        answer, the frame's bytes)."""
        buffer, new = self.batch.buffer, tuple.__new__
        # (src, dst) of each key's two directions, made once: each frame takes one of them.
        addresses = [((low, high), (high, low)) for (low, _), (high, _) in self.keys]
        for first in range(0, len(indices), FRAMES_AT_ONCE):
            part = indices[first:first + FRAMES_AT_ONCE]
            records = self.record[part]
            # A list per column, zipped: half the cost of one 2-D tolist (a list per row).
            fields = zip(*(getattr(self, name)[part].tolist() for name in COLUMNS[3:]))
            for record, time_ns, wire_length, pair, backwards, header, start, caplen in zip(
                    records.tolist(), self.time_ns[part].tolist(), self.wire_length[part].tolist(),
                    self.pair[part].tolist(), self.backwards[part].tolist(), fields,
                    self.batch.start[records].tolist(), self.batch.caplen[records].tolist()):
                # tuple.__new__: TcpHeader's own __new__ is Python code, 9x slower, once per frame.
                yield (record, time_ns, wire_length, new(TcpHeader, addresses[pair][backwards] + header),
                       buffer[start:start + caplen])


def tcp_columns(batch: Batch) -> TcpColumns:
    """The TCP header fields of every TCP frame in ``batch``."""
    common, rest = _common_frames(batch)
    general = _general_frames(batch, rest)
    if general["record"]:
        merged = {name: np.concatenate([common[name], np.array(general[name], common[name].dtype)])
                  for name in COLUMNS}   # time_ns may hold Python integers (a clock past 2262)
        order = np.argsort(merged["record"], kind="stable")
        merged = {name: column[order] for name, column in merged.items()}
        endpoints = np.concatenate([common["endpoints"], np.full((len(general["record"]), 2), -1)])[order]
        named = dict(zip(np.flatnonzero(order >= len(common["record"])).tolist(), general["endpoints"]))
    else:
        merged, endpoints, named = common, common["endpoints"], {}
    pair, backwards, keys = _pairs(endpoints, named)
    return TcpColumns(**{name: merged[name] for name in COLUMNS}, pair=pair, backwards=backwards, keys=keys,
                      batch=batch)


def _common_frames(batch: Batch) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Columns of the Ethernet/IPv4/TCP frames, and the indices of frames that need decode.tcp_header."""
    # A shorter Ethernet frame cannot hold IPv4 and TCP headers, whatever its shape: not TCP.
    long_enough = (batch.linktype == LINKTYPE_ETHERNET) & (batch.caplen >= ETHER_IPV4_TCP_LENGTH)
    candidates = np.flatnonzero(long_enough)
    fields = windows(batch.buffer, ETHER_IPV4_TCP_LENGTH)[batch.start[candidates]].view(ETHER_IPV4_TCP)[:, 0]
    ethertype = fields["ethertype"]
    ipv4 = ethertype == ETHERTYPE_IPV4
    plain = ipv4 & (fields["version_ihl"] == 0x45)
    tcp = plain & (fields["proto"] == PROTO_TCP) & (fields["fragment"] & 0x1FFF == 0)
    header = (fields["offset_byte"] >> 4).astype(np.int64) * 4
    total = fields["total"].astype(np.int64)
    # Like tcp_header: an impossible TCP header length means "no TCP here", not "look again".
    whole = tcp & (header >= 20) & (total - 20 >= header)
    # decode.tcp_header reads these by its general path: IPv4 with options, tagged, IPv6.
    general = ((ipv4 & ~plain) | (ethertype == ETHERTYPE_VLAN) | (ethertype == ETHERTYPE_QINQ)
               | (ethertype == ETHERTYPE_IPV6))
    rest = np.sort(np.concatenate([np.flatnonzero(batch.linktype != LINKTYPE_ETHERNET), candidates[general]]))

    fields, header, total, records = fields[whole], header[whole], total[whole], candidates[whole]
    flags = fields["flag_byte"].astype(np.int64) | ((fields["offset_byte"].astype(np.int64) & 1) << 8)
    offset = np.full(len(records), 34)
    columns = {
        "record": records, "time_ns": batch.time_ns[records], "wire_length": batch.wire_length[records],
        "sport": fields["sport"].astype(np.int64), "dport": fields["dport"].astype(np.int64),
        "seq": fields["seq"].astype(np.int64), "ack": fields["ack"].astype(np.int64), "flags": flags,
        "window": fields["window"].astype(np.int64), "offset": offset, "payload_offset": offset + header,
        "seglen": total - 20 - header,
    }
    # An endpoint as one number, address then port, so that numbers compare as (address, port) tuples do.
    columns["endpoints"] = np.stack([(fields["src"].astype(np.int64) << 16) | columns["sport"],
                                     (fields["dst"].astype(np.int64) << 16) | columns["dport"]], axis=1)
    return columns, rest


def _general_frames(batch: Batch, indices: np.ndarray) -> dict[str, list[Any]]:
    """decode.tcp_header, one frame at a time, for the frames of other shapes."""
    found: dict[str, list[Any]] = {name: [] for name in (*COLUMNS, "endpoints")}
    for index in indices.tolist():
        tcp = tcp_header(int(batch.linktype[index]), batch.frame(index))
        if tcp is None:
            continue
        found["record"].append(index)
        found["time_ns"].append(batch.time_ns[index])
        found["wire_length"].append(batch.wire_length[index])
        for name in COLUMNS[3:]:
            found[name].append(getattr(tcp, name))
        found["endpoints"].append(((tcp.src, tcp.sport), (tcp.dst, tcp.dport)))
    return found


def _pairs(endpoints: np.ndarray, named: dict[int, tuple[Endpoint, Endpoint]]
           ) -> tuple[np.ndarray, np.ndarray, list[tuple[Endpoint, Endpoint]]]:
    """Number each frame's connection key: (pair, backwards, keys), as TcpColumns holds them.

    The common frames' endpoints are numbers; a 64-bit mix of the two is grouped
    with np.unique and each group is checked to hold one key only, so a collision
    of the mix can cost time but never merge two connections. ``named`` holds the
    endpoints of the frames decoded one by one (their rows of ``endpoints`` are
    placeholders), as (address, port) tuples.
    """
    backwards = endpoints[:, 0] > endpoints[:, 1]
    pair = np.zeros(len(endpoints), np.int64)
    common = np.ones(len(endpoints), bool)
    common[list(named)] = False
    source, destination = (endpoints[common, 0], endpoints[common, 1]) if named else endpoints.T
    low, high = np.minimum(source, destination), np.maximum(source, destination)
    if len(low) and (low == low[0]).all() and (high == high[0]).all():
        first, numbers = np.zeros(1, np.int64), np.zeros(len(low), np.int64)   # one connection (often)
    else:
        mix = low.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ high.astype(np.uint64)
        _, first, numbers = np.unique(mix, return_index=True, return_inverse=True)
        if not (np.array_equal(low[first][numbers.reshape(-1)], low)
                and np.array_equal(high[first][numbers.reshape(-1)], high)):
            _, first, numbers = np.unique(np.stack([low, high], axis=1), axis=0, return_index=True,
                                          return_inverse=True)
    pair[common] = numbers.reshape(-1)
    keys = [(_endpoint(int(low[i])), _endpoint(int(high[i]))) for i in first.tolist()]
    if named:
        known = {key: number for number, key in enumerate(keys)}
        for index, (src, dst) in named.items():
            key = (src, dst) if src <= dst else (dst, src)
            pair[index] = known.setdefault(key, len(known))
            backwards[index] = src > dst
        keys = list(known)
    return pair, backwards, keys


def _endpoint(number: int) -> Endpoint:
    return (number >> 16).to_bytes(4, "big"), number & 0xFFFF
