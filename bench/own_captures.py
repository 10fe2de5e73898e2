"""A capture of each student's own, made from a bundled one, for benchmarks of grading.

Grading counts an answer only when its capture is the student's (their token or BULK
size in it) and no classmate's (no two runs of the lab share ISNs or nanosecond
times). A bench that gives 200 students the same bundled capture times the path where
every answer is refused. This module makes each student a run of their own from one
bundled capture: their marks patched into the request (same length: the lengths the
exercises ask about stay), each direction's sequence numbers (and SACK edges) moved
by offsets of their own, and the clock (the kernel file's too) moved by an offset of
their own. The analysis, and so every right answer, stays what it was.
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

from lab.inspect.analysis import open_capture
from lab.inspect.reader import read_records

ETHERNET = 1
PCAP_NS_MAGIC = 0xA1B23C4D
SACK = 5


def rewrite(source: Path, target: Path, patches: dict[bytes, bytes], student: str) -> int:
    """``source`` as ``target`` (a pcap), a run of ``student``'s own; returns the clock offset (ns)."""
    rng = random.Random(student)
    moved = {True: rng.getrandbits(32), False: rng.getrandbits(32)}     # by direction: from the client or not
    clock = rng.randrange(1, 10 ** 6) * 10 ** 9
    client_port = None
    out = [struct.pack("<IHHiIII", PCAP_NS_MAGIC, 2, 4, 0, 0, 262144, ETHERNET)]
    with open_capture(source) as stream:
        for record in read_records(stream):
            frame = bytearray(record.data)
            if record.linktype == ETHERNET and frame[12:14] == b"\x08\x00" and frame[23] == 6:
                client_port = _move_sequence_numbers(frame, moved, client_port)
                for old, new in patches.items():
                    frame = bytearray(bytes(frame).replace(old, new))
            seconds, nanoseconds = divmod(record.time_ns + clock, 10 ** 9)
            out.append(struct.pack("<IIII", seconds, nanoseconds, len(frame), record.wire_length) + bytes(frame))
    target.write_bytes(b"".join(out))
    return clock


def _move_sequence_numbers(frame: bytearray, moved: dict[bool, int], client_port: int | None) -> int:
    ip = 14
    tcp = ip + (frame[ip] & 0x0F) * 4
    source_port, = struct.unpack_from("!H", frame, tcp)
    flags = frame[tcp + 13]
    if client_port is None and flags & 0x02 and not flags & 0x10:       # the first SYN names the client
        client_port = source_port
    from_client = source_port == client_port
    seq, ack = struct.unpack_from("!II", frame, tcp + 4)
    struct.pack_into("!I", frame, tcp + 4, (seq + moved[from_client]) & 0xFFFFFFFF)
    if flags & 0x10:
        struct.pack_into("!I", frame, tcp + 8, (ack + moved[not from_client]) & 0xFFFFFFFF)
    at, end = tcp + 20, tcp + (frame[tcp + 12] >> 4) * 4
    while at < end:
        kind = frame[at]
        if kind in (0, 1):
            at += 1
            continue
        length = frame[at + 1] if at + 1 < end else 0
        if length < 2:
            break
        if kind == SACK:
            for edge in range(at + 2, at + length, 4):
                value, = struct.unpack_from("!I", frame, edge)
                struct.pack_into("!I", frame, edge, (value + moved[not from_client]) & 0xFFFFFFFF)
        at += length
    return client_port


def rewrite_kernel_file(source: Path, target: Path, clock: int) -> None:
    """The kernel samples beside a rewritten capture, on its moved clock."""
    lines = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    target.write_text("".join(json.dumps({**line, "t": line["t"] + clock}) + "\n" for line in lines))
