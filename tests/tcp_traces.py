"""Synthetic TCP conversations that walk into every corner of Wireshark's analysis.

Captures of real programs (tests/corpus) show what real stacks do; these show what
a damaged or odd capture may hold, in any order: gaps where the capture missed
segments, retransmissions, old and future ACK numbers, repeated ACKs, zero
windows and their probes, keep-alives, FIN and RST, a SYN reusing the ports,
sequence numbers wrapping past 2^32, several connections interleaved, and frames
of the same connection in other shapes (VLAN tag, IP options) or not TCP at all.

A conversation is a list of steps, each a tuple of small integers that
:func:`trace` interprets; hypothesis draws and shrinks them
(tests/test_inspect_bulk.py).
"""

from __future__ import annotations

import dataclasses
import struct

from hypothesis import strategies as st

from lab.inspect.reader import Record

ACK, PSH, RST, SYN, FIN = 0x10, 0x08, 0x04, 0x02, 0x01
MASK32 = 0xFFFFFFFF
ISNS = [0, 1, 1000, 0x7FFFFFF0, 0xFFFFFFFF, 0xFFFFF000, 0xFFFFFFF0 - 3000]   # some wrap soon
KINDS = ["burst", "data", "ack", "old_ack", "future_ack", "repeat_ack", "gap", "retransmit", "window",
         "zero_window", "probe", "keepalive", "fin", "rst", "syn", "pause", "not_tcp", "shape"]


@dataclasses.dataclass
class Side:
    address: bytes
    port: int
    isn: int
    next_seq: int = 0     # next byte this side sends
    window: int = 65535
    shape: str = "plain"  # how this side's next frames are wrapped

    def __post_init__(self) -> None:
        self.next_seq = self.isn


class Conversation:
    """Two sides of one connection, and the frames they exchange."""

    def __init__(self, number: int, isn_a: int, isn_b: int, handshake: bool) -> None:
        self.a = Side(bytes([10, 0, 0, 1]), 40000 + number, isn_a)
        self.b = Side(bytes([10, 0, 0, 2]), 7070, isn_b)
        self.handshake = handshake

    def sides(self, which: int) -> tuple[Side, Side]:
        return (self.a, self.b) if which % 2 == 0 else (self.b, self.a)


def steps() -> st.SearchStrategy:
    """A conversation's steps: (kind, connection, side, amount, option)."""
    step = st.tuples(st.sampled_from(KINDS), st.integers(0, 2), st.integers(0, 1),
                     st.integers(0, 40), st.integers(0, 7))
    return st.lists(step, min_size=1, max_size=120)


def trace(conversation_steps, isn_choice: int = 0, handshake: bool = True) -> list[Record]:
    """The frames of a conversation, as Records (time in ns)."""
    frames: list[Record] = []
    clock = [1_700_000_000_000_000_000]
    conversations: dict[int, Conversation] = {}

    def emit(sender: Side, receiver: Side, seq: int, ack: int, flags: int, length: int,
             options: bytes = b"", delay_ns: int = 50_000) -> None:
        clock[0] += delay_ns
        frames.append(_record(clock[0], sender, receiver, seq & MASK32, ack & MASK32, flags, length, options))

    def open_connection(number: int) -> Conversation:
        isns = (ISNS[(isn_choice + number) % len(ISNS)], ISNS[(isn_choice + 3 * number + 1) % len(ISNS)])
        conv = Conversation(number, *isns, handshake)
        if handshake:
            a, b = conv.a, conv.b
            emit(a, b, a.isn, 0, SYN, 0, SYN_OPTIONS)
            emit(b, a, b.isn, a.isn + 1, SYN | ACK, 0, SYN_OPTIONS)
            a.next_seq, b.next_seq = a.isn + 1, b.isn + 1
            emit(a, b, a.next_seq, b.next_seq, ACK, 0)
        return conv

    for kind, number, which, amount, option in conversation_steps:
        conv = conversations.get(number) or conversations.setdefault(number, open_connection(number))
        sender, receiver = conv.sides(which)
        length = [1, 100, 1448, 536, 2, 1000, 1460, 48][option]
        delay = [0, 1_000, 50_000, 2_000_000, 25_000_000, 200_000_000, 10, 4_000_000][option]
        if kind == "burst":           # in-order data one way, ACKed every other segment: the bulk case
            for count in range(amount + 1):
                emit(sender, receiver, sender.next_seq, receiver.next_seq, ACK | PSH, length, delay_ns=delay)
                sender.next_seq += length
                if count % 2:
                    emit(receiver, sender, receiver.next_seq, sender.next_seq, ACK, 0, delay_ns=delay)
        elif kind == "data":
            emit(sender, receiver, sender.next_seq, receiver.next_seq, ACK | PSH, length, delay_ns=delay)
            sender.next_seq += length
        elif kind == "ack":
            emit(sender, receiver, sender.next_seq, receiver.next_seq, ACK, 0, delay_ns=delay)
        elif kind == "old_ack":
            emit(sender, receiver, sender.next_seq, receiver.next_seq - amount * 100, ACK, 0, delay_ns=delay)
        elif kind == "future_ack":    # ACKs what the capture never saw
            emit(sender, receiver, sender.next_seq, receiver.next_seq + amount * 100 + 1, ACK, 0, delay_ns=delay)
        elif kind == "repeat_ack":    # duplicate ACKs, perhaps fast retransmission after
            for _ in range(amount % 5 + 1):
                emit(sender, receiver, sender.next_seq, receiver.next_seq - length, ACK, 0, delay_ns=delay)
        elif kind == "gap":           # the capture missed some of the sender's bytes
            sender.next_seq += (amount + 1) * length
        elif kind == "retransmit":
            seq = sender.next_seq - (amount % 4 + 1) * length
            emit(sender, receiver, seq, receiver.next_seq, ACK | PSH, length, delay_ns=delay)
        elif kind == "window":
            sender.window = [1, 512, 8192, 65535, 29200, 100, 65535, 3][option]
            emit(sender, receiver, sender.next_seq, receiver.next_seq, ACK, 0, delay_ns=delay)
        elif kind == "zero_window":
            sender.window = 0
            emit(sender, receiver, sender.next_seq, receiver.next_seq, ACK, 0, delay_ns=delay)
        elif kind == "probe":         # one byte at the edge, as a zero-window probe
            emit(sender, receiver, sender.next_seq, receiver.next_seq, ACK, 1, delay_ns=delay)
            if option % 2:
                sender.next_seq += 1
        elif kind == "keepalive":
            emit(sender, receiver, sender.next_seq - 1, receiver.next_seq, ACK, option % 2, delay_ns=delay)
        elif kind == "fin":
            emit(sender, receiver, sender.next_seq, receiver.next_seq, FIN | ACK, option % 3, delay_ns=delay)
            sender.next_seq += option % 3 + 1
        elif kind == "rst":
            emit(sender, receiver, sender.next_seq, receiver.next_seq if option % 2 else 0,
                 RST | (ACK if option % 2 else 0), 0, delay_ns=delay)
        elif kind == "syn":           # the same SYN again, or the ports reused by a new connection
            a, b = conv.a, conv.b
            if option % 2:
                a.isn = (a.isn + 0x10000 * (amount + 1)) & MASK32
                a.next_seq = a.isn + 1
            emit(a, b, a.isn, 0, SYN, 0, SYN_OPTIONS, delay_ns=delay)
            if option % 3:
                emit(b, a, b.isn, a.isn + 1, SYN | ACK, 0, SYN_OPTIONS, delay_ns=delay)
        elif kind == "pause":
            clock[0] += delay * (amount + 1)
        elif kind == "not_tcp":
            clock[0] += delay
            frames.append(Record(clock[0], 1, UDP_FRAME, len(UDP_FRAME)))
        elif kind == "shape":
            sender.shape = ["plain", "vlan", "ip_options", "plain"][option % 4]
    return frames


SYN_OPTIONS = (struct.pack("!BBH", 2, 4, 1460) + b"\x01" + struct.pack("!BBB", 3, 3, 7)
               + struct.pack("!BB", 4, 2) + b"\x01\x01")   # MSS, NOP, window scale 7, SACK permitted
UDP_FRAME = (b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
             + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, bytes([10, 0, 0, 9]), bytes([10, 0, 0, 2]))
             + struct.pack("!HHHH", 5353, 5353, 8, 0))


def _record(time_ns: int, sender: Side, receiver: Side, seq: int, ack: int, flags: int, length: int,
            options: bytes) -> Record:
    tcp = struct.pack("!HHIIBBHHH", sender.port, receiver.port, seq, ack, (5 + len(options) // 4) << 4,
                      flags, sender.window, 0, 0) + options + b"x" * length
    ip_options = b"\x01\x01\x01\x00" if sender.shape == "ip_options" else b""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45 + len(ip_options) // 4, 0, 20 + len(ip_options) + len(tcp), 0,
                     0x4000, 64, 6, 0, sender.address, receiver.address) + ip_options
    ethernet = b"\x02" * 6 + b"\x04" * 6
    if sender.shape == "vlan":
        ethernet += b"\x81\x00\x00\x07"
    data = ethernet + b"\x08\x00" + ip + tcp
    return Record(time_ns, 1, data, len(data))
