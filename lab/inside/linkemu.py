"""A link emulator in user space: delay, jitter, loss and reordering for the packets netfilter queues to it.

Where the kernel has sch_netem, `invoke impair` uses it; where it does not (this
project's machines, many CI and cloud kernels), this program does the same job in
a sidecar container that shares the receiving container's network namespace, as
root with NET_ADMIN and nothing else:

1. it binds a netfilter queue over a raw NETLINK_NETFILTER socket, and asks for
   each packet's id and its first 120 bytes (headers, not payload);
2. it adds ``iptables -t raw -A PREROUTING -s SENDER -j NFQUEUE``: every packet the
   sender sends waits in the kernel's queue for our verdict. The queue is at the
   receiving side on purpose: a packet held on its sender's way out counts against
   the sending socket, and TCP Small Queues then throttles the sender (measured
   here: 2 MB over a 40 ms link took 5.6 s queued at the sender, 0.35 s at the
   receiver, what slow start predicts);
3. for each packet it decides, once, from a seeded random generator: lost (the
   verdict DROP at once), or accepted at its release time: arrival + delay +
   jitter, never before the packet ahead of it (so jitter does not reorder; where
   packets come closer together than the jitter's spread, that adds delay, as
   netem's does with a FIFO below it), except a packet chosen to be reordered,
   which skips the delay and overtakes;
4. on SIGTERM or SIGINT it removes its rule (with ``--queue-bypass`` on the rule,
   a queue nobody listens to lets packets through: if this program dies, the link
   is plain again, never dead).

For scenarios (lab.scenarios.model) it also does what random loss cannot: it reads
each packet's IP and TCP headers (the first 120 bytes, never the payload) and
applies *events* to chosen packets, the same for everyone: drop the first
SYN/ACK, drop the 5th data segment (first transmissions counted, not
retransmissions), drop three segments from byte 100,000 on, delay a FIN by
300 ms, hold a segment back until the next two have passed it (reordering). And it
can be the bottleneck itself: ``--rate-kbit`` sends packets out one after the
other at that rate from a queue of ``--queue-packets`` (tail drop when full), so
a deep queue fills and the round trip grows, as at a home router (bufferbloat).

Why a raw netlink socket and not a library: the image has Debian's python3 and no
compiler, and the bindings (python-netfilterqueue, nfqueue-bindings) are C
extensions; the protocol needs three message types, each a few struct.pack calls.

    python3 -m lab.inside.linkemu --source 10.77.0.2 --delay-ms 40 [--jitter-ms 5]
        [--distribution normal|uniform] [--loss PCT] [--reorder PCT] [--seed N] [--queue N]
        [--rate-kbit K --queue-packets N] [--event ACTION:WHAT:N[:COUNT][:MS] ...]

An event is ``drop``, ``delay`` (by MS) or ``reorder``, of the Nth ``syn``,
``syn-ack``, ``fin`` or ``data`` segment (COUNT of them from there on), or of the
data segments from relative byte N on (``byte``): ``drop:syn-ack:1``,
``drop:data:5``, ``drop:byte:100000:3``, ``delay:fin:1:1:300``, ``reorder:data:7``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import errno
import heapq
import math
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any, Callable, Iterator

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_PAYLOAD = 1, 2, 10
NFQNL_CFG_CMD_BIND, NFQNL_COPY_PACKET = 1, 2
COPY_BYTES = 120                # an IPv4 header and a TCP header with options, at most: never the payload
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NF_DROP, NF_ACCEPT = 0, 1
QUEUE_MAXLEN = 20_000           # packets the kernel may hold for us (a 100 ms, 100 Mbit/s link holds ~900)
SOCKET_BUFFER = 8 << 20
SO_RCVBUFFORCE = 33             # not in Python's socket module
RULE_COMMENT = "tcplab-link"
READY = "tcplab-link-ready"
SPIN_S = 0.0005                 # how long before a release the emulator stays awake for it

_nlmsghdr = struct.Struct("=IHHII")        # length, type, flags, sequence, port id
_nfgenmsg = struct.Struct("=BBH")          # family, version, queue number (big-endian, packed by hand)
_attribute = struct.Struct("=HH")          # length, type


class LinkError(Exception):
    """The emulator cannot start (no NET_ADMIN, no NFQUEUE in the kernel, a bad option)."""


@dataclasses.dataclass(frozen=True)
class Link:
    """What the emulated link does to each packet."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    distribution: str = "normal"       # of the jitter: normal (sigma = jitter) or uniform (+/- jitter)
    loss_pct: float = 0.0
    reorder_pct: float = 0.0
    seed: int | None = None
    rate_kbit: float = 0.0             # 0: no bottleneck of our own
    queue_packets: int = 1000          # in front of the bottleneck
    events: tuple[Event, ...] = ()

    def describe(self) -> str:
        """The words status shows (and the rule's comment carries)."""
        parts = [f"delay {self.delay_ms:g}ms"] if self.delay_ms else []
        if self.rate_kbit:
            parts.append(f"rate {self.rate_kbit:g}kbit queue {self.queue_packets}")
        if self.jitter_ms:
            parts.append(f"jitter {self.jitter_ms:g}ms {self.distribution}")
        if self.loss_pct:
            parts.append(f"loss {self.loss_pct:g}%")
        if self.reorder_pct:
            parts.append(f"reorder {self.reorder_pct:g}%")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        parts += [str(event) for event in self.events]
        return " ".join(parts) or "no change"


class Decider:
    """Each packet's fate and release time, the same for the same seed and arrival order."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.random = random.Random(link.seed)
        self.last_release = 0.0

    def release_time(self, arrived: float) -> float | None:
        """When to accept a packet that arrived at ``arrived`` (monotonic seconds), or None: lost."""
        link, rng = self.link, self.random
        if link.loss_pct and rng.random() * 100 < link.loss_pct:
            return None
        if link.reorder_pct and rng.random() * 100 < link.reorder_pct:
            return arrived                      # overtakes the packets still held (netem's reorder)
        delay = link.delay_ms
        if link.jitter_ms:
            if link.distribution == "uniform":
                delay += rng.uniform(-link.jitter_ms, link.jitter_ms)
            else:
                delay += rng.gauss(0.0, link.jitter_ms)
        release = max(arrived + max(delay, 0.0) / 1000, self.last_release)   # jitter never reorders
        self.last_release = release
        return release


def netlink_message(kind: int, flags: int, queue: int, attributes: list[tuple[int, bytes]], family: int = 0) -> bytes:
    body = _nfgenmsg.pack(family, 0, socket.htons(queue))
    for code, value in attributes:
        body += _attribute.pack(4 + len(value), code) + value + b"\0" * (-len(value) % 4)
    return _nlmsghdr.pack(16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, 0, 0) + body


def verdict_message(queue: int, packet_id: int, verdict: int) -> bytes:
    return netlink_message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, queue,
                           [(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))])


def messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink message in one datagram from the kernel."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _, _, _ = _nlmsghdr.unpack_from(data, offset)
        if length < 16:
            return
        yield kind, data[offset + 16:offset + length]
        offset += (length + 3) & ~3


def packet_id(payload: bytes) -> int | None:
    """The kernel's id of a queued packet (NFQA_PACKET_HDR), or None."""
    found = packet_attributes(payload)
    return found[0] if found else None


def packet_attributes(payload: bytes) -> tuple[int, bytes] | None:
    """(id, the packet's first bytes) of a queued packet, or None."""
    offset, pid, head = 4, None, b""             # after nfgenmsg
    while offset + 4 <= len(payload):
        length, code = _attribute.unpack_from(payload, offset)
        if length < 4:
            break
        if code & 0x7FFF == NFQA_PACKET_HDR:
            pid = struct.unpack_from("!I", payload, offset + 4)[0]
        elif code & 0x7FFF == NFQA_PAYLOAD:
            head = payload[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return None if pid is None else (pid, head)


@dataclasses.dataclass(frozen=True)
class Headers:
    """What an event needs to know of a packet: its size and, for TCP, its ports, flags and place."""

    size: int
    tcp: bool = False
    ports: tuple[int, int] = (0, 0)
    seq: int = 0
    flags: int = 0
    payload: int = 0


def headers(head: bytes) -> Headers:
    """The IPv4 and TCP headers at the start of a packet (a packet too short to read is just a size)."""
    if len(head) < 20 or head[0] >> 4 != 4:
        return Headers(len(head))
    ihl, total = (head[0] & 0xF) * 4, struct.unpack_from("!H", head, 2)[0]
    if head[9] != socket.IPPROTO_TCP or len(head) < ihl + 20:
        return Headers(total)
    sport, dport, seq = struct.unpack_from("!HHI", head, ihl)
    offset_flags = struct.unpack_from("!H", head, ihl + 12)[0]
    return Headers(total, True, (sport, dport), seq, offset_flags & 0x3F,
                   max(total - ihl - (offset_flags >> 12) * 4, 0))


SYN, ACK, FIN = 0x02, 0x10, 0x01
EVENT_ACTIONS = ("drop", "delay", "reorder")
EVENT_TARGETS = ("syn", "syn-ack", "fin", "data", "resent", "byte")


@dataclasses.dataclass(frozen=True)
class Event:
    """Something done to chosen packets: the Nth of a kind, COUNT of them (or from byte N on)."""

    action: str
    what: str
    nth: int
    count: int = 1
    delay_ms: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "Event":
        parts = text.split(":")
        try:
            action, what, nth = parts[0], parts[1], int(parts[2])
            count = int(parts[3]) if len(parts) > 3 else 1
            delay_ms = float(parts[4]) if len(parts) > 4 else 0.0
        except (IndexError, ValueError):
            raise ValueError(f"event {text!r}: write ACTION:WHAT:N[:COUNT][:MS], e.g. drop:data:5") from None
        if action not in EVENT_ACTIONS or what not in EVENT_TARGETS or nth < 0 or count < 1 or len(parts) > 5:
            raise ValueError(f"event {text!r}: ACTION is {'|'.join(EVENT_ACTIONS)}, WHAT {'|'.join(EVENT_TARGETS)}, "
                             "N and COUNT whole numbers")
        if action == "delay" and not 0 < delay_ms <= 60_000:
            raise ValueError(f"event {text!r}: a delay needs its milliseconds, e.g. delay:fin:1:1:300")
        return cls(action, what, nth, count, delay_ms)

    def __str__(self) -> str:
        return ":".join([self.action, self.what, str(self.nth), str(self.count)]
                        + ([f"{self.delay_ms:g}"] if self.action == "delay" else []))


class Events:
    """Counts the sender's segments as a learner would, and says which event, if any, is a packet's.

    Data segments are counted by first transmission: a retransmission carries
    bytes already counted, so "the 5th data segment" stays the same segment
    whatever happens to it. Retransmissions are counted apart, as "resent":
    "drop:resent:1:2" loses the first two copies sent again (a tail loss probe
    and the timer's first retransmission, when the original was lost too).
    Bytes are relative to the connection's first sequence number, as
    Wireshark shows them.
    """

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.seen: collections.Counter[str] = collections.Counter()     # packets of each kind so far
        self.first_seq: dict[tuple[int, int], int] = {}
        self.sent_up_to: dict[tuple[int, int], int] = {}
        self.byte_hits: dict[Event, int] = {}
        self.first_data = False           # whether the last packet matched was data sent the first time

    def match(self, packet: Headers) -> Event | None:
        self.first_data = False
        if not (self.events and packet.tcp):
            return None
        kinds = []
        if packet.flags & SYN:
            self.first_seq[packet.ports] = packet.seq
            kinds.append("syn-ack" if packet.flags & ACK else "syn")
        if packet.flags & FIN:
            kinds.append("fin")
        relative = (packet.seq - self.first_seq.get(packet.ports, packet.seq - 1)) % (1 << 32)
        end = relative + packet.payload
        first_time = packet.payload and end > self.sent_up_to.get(packet.ports, 0)
        self.first_data = bool(first_time)
        if first_time:
            self.sent_up_to[packet.ports] = end
            kinds.append("data")
        elif packet.payload:
            kinds.append("resent")
        for kind in kinds:
            self.seen[kind] += 1
        for event in self.events:
            if event.what == "byte":
                if first_time and relative >= event.nth and self.byte_hits.get(event, 0) < event.count:
                    self.byte_hits[event] = self.byte_hits.get(event, 0) + 1
                    return event
            elif event.what in kinds and event.nth <= self.seen[event.what] < event.nth + event.count:
                return event
        return None


class Bottleneck:
    """A link of a given rate with a queue in front: packets leave one after the other.

    Each packet starts out when the link is free, and takes its size in bits over
    the rate; a packet that finds ``queue_packets`` waiting is dropped (tail drop).
    """

    def __init__(self, rate_kbit: float, queue_packets: int) -> None:
        self.bits_per_s = rate_kbit * 1000
        self.queue_packets = queue_packets
        self.departures: collections.deque[float] = collections.deque()
        self.free_at = 0.0
        self.dropped = 0

    def departure(self, arrived: float, size: int) -> float | None:
        """When the packet has left the bottleneck, or None: the queue was full."""
        if not self.bits_per_s:
            return arrived
        while self.departures and self.departures[0] <= arrived:
            self.departures.popleft()
        if len(self.departures) >= self.queue_packets:
            self.dropped += 1
            return None
        self.free_at = max(arrived, self.free_at) + size * 8 / self.bits_per_s
        self.departures.append(self.free_at)
        return self.free_at


class Queue:
    """A bound netfilter queue: packets come in as ids, verdicts go out."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER)     # past rmem_max: NET_ADMIN
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        self.sock.bind((0, 0))
        self._configure([(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET))])
        self._configure([(NFQA_CFG_PARAMS, struct.pack("!IB", COPY_BYTES, NFQNL_COPY_PACKET)),
                         (NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN))])
        self.sock.setblocking(False)
        self.overflows = 0

    def _configure(self, attributes: list[tuple[int, bytes]]) -> None:
        self.sock.send(netlink_message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, self.number, attributes))
        for kind, payload in messages(self.sock.recv(65536)):
            if kind == NLMSG_ERROR:
                error = -struct.unpack_from("=i", payload)[0]
                if error:
                    raise LinkError(f"binding netfilter queue {self.number}: {os.strerror(error)} "
                                    "(the container needs NET_ADMIN, the kernel NFQUEUE)")

    def receive(self) -> list[tuple[int, bytes]]:
        """(id, first bytes) of the packets queued since the last call."""
        ids: list[tuple[int, bytes]] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return ids
            except OSError as exc:        # ENOBUFS: the kernel could not tell us of some packets
                if exc.errno != errno.ENOBUFS:
                    raise
                self.overflows += 1
                continue
            for kind, payload in messages(data):
                if kind & 0xFF == NFQNL_MSG_PACKET:
                    found = packet_attributes(payload)
                    if found is not None:
                        ids.append(found)

    def verdicts(self, decided: list[tuple[int, int]]) -> None:
        """Send (packet id, verdict) pairs, many in one datagram."""
        for start in range(0, len(decided), 200):
            self.sock.sendall(b"".join(verdict_message(self.number, pid, verdict)
                                       for pid, verdict in decided[start:start + 200]))


def rule(action: str, source: str, queue: int, link: Link) -> list[str]:
    return ["iptables", "-t", "raw", action, "PREROUTING", "-s", source, "-m", "comment", "--comment",
            f"{RULE_COMMENT} {link.describe()}"[:255], "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass"]


class HeldBack:
    """Segments held back to be reordered: each leaves once OVERTAKEN_BY packets have passed it,
    or after HOLD_S if they do not come (the end of a flight): longer, and the sender's RACK
    rule would call it lost and send it again, which is a loss, not a reordering.

    A segment that leaves without being overtaken keeps its place and its delay, and the
    reordering moves on to the next data segment (``retries``): the end of a flight
    cannot be reordered, the segment after it can, and the scenario's lesson still happens.
    """

    OVERTAKEN_BY = 2
    HOLD_S = 0.001

    def __init__(self) -> None:
        self.waiting: list[list[Any]] = []     # [since, packet id, its release time, packets that passed it]
        self.retries = 0

    def hold(self, pid: int, now: float, release: float) -> None:
        self.waiting.append([now, pid, release, 0])

    def passed(self) -> list[int]:
        """A packet went by: the ids that may now follow it."""
        for entry in self.waiting:
            entry[3] += 1
        return [pid for pid, _ in self._release(lambda entry: entry[3] >= self.OVERTAKEN_BY)]

    def expired(self, now: float) -> list[tuple[int, float]]:
        """(id, release time) of the segments nothing overtook in time: they leave as if never held."""
        leaving = self._release(lambda entry: now - entry[0] > self.HOLD_S)
        self.retries += len(leaving)
        return leaving

    def take_retry(self) -> bool:
        """True (once per segment that was not overtaken) for the next data segment to hold back."""
        if self.retries:
            self.retries -= 1
            return True
        return False

    def all(self) -> list[int]:
        return [pid for pid, _ in self._release(lambda entry: True)]

    def _release(self, due: Callable[[list[Any]], bool]) -> list[tuple[int, float]]:
        leaving = [(entry[1], entry[2]) for entry in self.waiting if due(entry)]
        self.waiting = [entry for entry in self.waiting if not due(entry)]
        return leaving


def run(source: str, queue_number: int, link: Link) -> dict[str, Any]:
    """Emulate until SIGTERM or SIGINT; return the counts."""
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))
    queue = Queue(queue_number)
    subprocess.run(rule("-A", source, queue_number, link), check=True)
    print(READY, flush=True)
    decider, events = Decider(link), Events(list(link.events))
    bottleneck = Bottleneck(link.rate_kbit, link.queue_packets)
    held: list[tuple[float, int, int]] = []      # (release time, order, packet id)
    held_back = HeldBack()
    order = accepted = dropped = 0
    try:
        while not stopping:
            # Sleep until the next release, less SPIN_S, then wait for it awake: a sleeping
            # process wakes up late (a few hundred microseconds on a busy machine), and
            # every packet's delay would grow by that.
            until_next = held[0][0] - time.monotonic() if held else 0.5
            ready, _, _ = select.select([queue.sock], [], [], min(max(until_next - SPIN_S, 0.0), 0.5))
            while not ready and held and held[0][0] > time.monotonic():
                ready, _, _ = select.select([queue.sock], [], [], 0)
            now = time.monotonic()
            decided = []
            for pid, head in queue.receive() if ready else []:
                packet = headers(head)
                event = events.match(packet)
                left = None if event and event.action == "drop" else bottleneck.departure(now, packet.size)
                release = None if left is None else decider.release_time(left)
                if release is None:
                    decided.append((pid, NF_DROP))
                    dropped += 1
                    continue
                if event and event.action == "delay":
                    release += event.delay_ms / 1000
                if (event and event.action == "reorder") or (not event and events.first_data and
                                                             held_back.take_retry()):
                    held_back.hold(pid, now, release)
                    continue
                order += 1
                heapq.heappush(held, (release, order, pid))
                for late in held_back.passed():     # leaves right after the packets that overtook it
                    order += 1
                    heapq.heappush(held, (release, order, late))
            for late, release in held_back.expired(now):
                order += 1
                heapq.heappush(held, (max(release, now), order, late))
            while held and held[0][0] <= now:
                decided.append((heapq.heappop(held)[2], NF_ACCEPT))
                accepted += 1
            if decided:
                queue.verdicts(decided)
    finally:
        subprocess.run(rule("-D", source, queue_number, link), check=False)
        queue.verdicts([(pid, NF_ACCEPT) for _, _, pid in held] + [(pid, NF_ACCEPT) for pid in held_back.all()])
    return {"accepted": accepted, "dropped": dropped, "overflows": queue.overflows,
            "queue_drops": bottleneck.dropped, "events": dict(events.seen)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m lab.inside.linkemu", description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="the sender's address: its packets are delayed here")
    parser.add_argument("--queue", type=int, default=7, help="netfilter queue number (default %(default)s)")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--distribution", choices=["normal", "uniform"], default="normal")
    parser.add_argument("--loss", type=float, default=0.0, help="percentage of packets lost")
    parser.add_argument("--reorder", type=float, default=0.0, help="percentage sent without the delay")
    parser.add_argument("--seed", type=int, help="the same seed loses and delays the same packets")
    parser.add_argument("--rate-kbit", type=float, default=0.0, help="be a bottleneck of this rate (kbit/s)")
    parser.add_argument("--queue-packets", type=int, default=1000, help="the bottleneck's queue (default %(default)s)")
    parser.add_argument("--event", action="append", default=[], metavar="ACTION:WHAT:N[:COUNT][:MS]",
                        help="do this to chosen packets (repeatable): drop:syn-ack:1, drop:data:5, delay:fin:1:1:300")
    args = parser.parse_args(argv)
    numbers = (args.delay_ms, args.jitter_ms, args.loss, args.reorder, args.rate_kbit)
    if not all(math.isfinite(n) and n >= 0 for n in numbers) or args.loss > 100 or args.reorder > 100:
        parser.error("delay, jitter, loss, reorder and rate are finite, 0 or more; loss and reorder at most 100")
    if args.queue_packets < 1:
        parser.error("--queue-packets is 1 or more")
    try:
        events = tuple(Event.parse(text) for text in args.event)
    except ValueError as exc:
        parser.error(str(exc))
    link = Link(args.delay_ms, args.jitter_ms, args.distribution, args.loss, args.reorder, args.seed,
                args.rate_kbit, args.queue_packets, events)
    try:
        counts = run(args.source, args.queue, link)
    except (LinkError, subprocess.CalledProcessError, PermissionError) as exc:
        print(f"lab.inside.linkemu: {exc}", file=sys.stderr)
        return 2
    print(f"lab.inside.linkemu: {counts['accepted']} packets passed, {counts['dropped']} lost"
          + (f" ({counts['queue_drops']} by a full queue)" if counts["queue_drops"] else "")
          + (f", {counts['overflows']} netlink overflows" if counts["overflows"] else "")
          + (f"; segments seen: {counts['events']}" if counts["events"] else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
