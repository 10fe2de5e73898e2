"""Which port the lab's server listens on, read from a capture: the one its protocol is spoken to.

A lab's port is configurable (``lab: {port: ...}``), so a capture is not studied by
its port number but by what it carries: the first request the lab's protocol knows
(``ECHO ...``, ``BULK 300000``; lab.inside.protocol's verbs) names the server's port
as its destination. A capture with no request at all (a SYN made by hand, a
connection refused) falls back to the default port where the capture has it, then
to the port of its first handshake.

The scan reads headers only and stops at the first request, which nearly every
capture holds within its first frames.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from lab.inside.protocol import PORT, VERBS
from lab.inspect.decode import ACK, SYN, tcp_header, udp_datagram
from lab.inspect.reader import read_records
from lab.inspect.tcp import Connection

_REQUESTS = tuple(verb.encode() for verb in VERBS)


def is_request(payload: bytes) -> bool:
    """True if ``payload`` begins as one of the lab's requests does: a verb, then a space or the line's end."""
    for verb in _REQUESTS:
        if payload.startswith(verb) and payload[len(verb):len(verb) + 1] in (b" ", b"\n", b"\r", b""):
            return True
    return False


def server_port(path: str | os.PathLike[str]) -> int:
    """The port the lab's protocol is spoken to in this capture, over TCP or UDP: the
    destination of its first request; else PORT if the capture holds it; else the port
    of its first SYN; else PORT."""
    first_syn = None
    seen_default = False
    with Path(path).open("rb") as stream:
        for record in read_records(stream):
            header = tcp_header(record.linktype, record.data)
            if header is not None:
                if header.seglen and is_request(record.data[header.payload_offset:header.payload_offset + 8]):
                    return header.dport
                if first_syn is None and header.flags & SYN and not header.flags & ACK:
                    first_syn = header.dport
                seen_default = seen_default or PORT in (header.sport, header.dport)
                continue
            datagram = udp_datagram(record.linktype, record.data)
            if datagram is not None:
                if is_request(datagram.payload[:8]):
                    return datagram.dport
                seen_default = seen_default or PORT in (datagram.sport, datagram.dport)
    return PORT if seen_default or first_syn is None else first_syn


def port_of_connections(connections: Sequence[Connection]) -> int:
    """The same, for connections analysed with their segments (an overlay's inner TCP, a
    grader's capture): the server port of the first one whose client sends a request."""
    for conn in connections:
        first = next((s for s in conn.segments or () if s.from_client and s.payload), None)
        if first is not None and is_request(first.payload[:8]):
            return conn.server.port
    if any(conn.server.port == PORT for conn in connections):
        return PORT
    return next((conn.server.port for conn in connections if conn.handshake.syn is not None), PORT)
