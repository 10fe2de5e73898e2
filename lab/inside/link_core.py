"""The link emulator's decisions, without any I/O: packets in, verdicts out, each at its time.

lab.inside.linkemu is the program around this core: it reads the netfilter queue and
sends the verdicts. Everything it decides is here, so that it is tested directly,
packet by packet, on a clock the test holds (tests/test_linkemu.py), and a scenario's
events (lab.scenarios.model) mean the same thing in the tests and in the container:

    emulation = Emulation(Link(delay_ms=40, events=(Event.parse("drop:data:5"),)))
    verdicts = emulation.arrive(packet_id, first_bytes, now)   # a drop is decided at once
    verdicts += emulation.due(now)                             # the packets whose time has come
    emulation.next_due()                                       # when to look again

Only the standard library: it runs in the lab's image.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import random
import socket
import struct
from typing import Any, Callable

DROP, ACCEPT = 0, 1             # netfilter's verdicts (NF_DROP, NF_ACCEPT)
Verdict = tuple[int, int]       # (the kernel's packet id, DROP or ACCEPT)


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
        if not self.waiting:        # nearly always: a packet is held back only for a scenario's event
            return []
        leaving = [(entry[1], entry[2]) for entry in self.waiting if due(entry)]
        self.waiting = [entry for entry in self.waiting if not due(entry)]
        return leaving


class Emulation:
    """One emulated link: every packet's fate, from its arrival to its verdict.

    A packet is lost (an event's drop, a full bottleneck, the loss rate: DROP at once), or
    accepted at its release time: after the bottleneck, the delay and the jitter (never
    before the packet ahead of it), plus an event's delay; a packet to be reordered is
    held back until the next ones have passed it (HeldBack).
    """

    def __init__(self, link: Link) -> None:
        self.decider, self.events = Decider(link), Events(list(link.events))
        self.bottleneck = Bottleneck(link.rate_kbit, link.queue_packets)
        self.held: list[tuple[float, int, int]] = []        # (release time, order, packet id): a heap
        self.held_back = HeldBack()
        self.order = self.accepted = self.dropped = 0
        self.reads_headers = bool(link.events or link.rate_kbit)

    def arrive(self, pid: int, head: bytes, now: float) -> list[Verdict]:
        """A packet the kernel queued at ``now`` (its id and first bytes): the verdicts due at once."""
        packet = headers(head) if self.reads_headers else Headers(0)    # only events and a rate read them
        event = self.events.match(packet)
        left = None if event and event.action == "drop" else self.bottleneck.departure(now, packet.size)
        release = None if left is None else self.decider.release_time(left)
        if release is None:
            self.dropped += 1
            return [(pid, DROP)]
        if event and event.action == "delay":
            release += event.delay_ms / 1000
        if (event and event.action == "reorder") or (not event and self.events.first_data
                                                     and self.held_back.take_retry()):
            self.held_back.hold(pid, now, release)
            return []
        self._release_at(release, pid)
        for late in self.held_back.passed():         # leaves right after the packets that overtook it
            self._release_at(release, late)
        return []

    def due(self, now: float) -> list[Verdict]:
        """The packets whose release time has come by ``now``, in their order: ACCEPT each."""
        for late, release in self.held_back.expired(now):
            self._release_at(max(release, now), late)
        leaving = []
        while self.held and self.held[0][0] <= now:
            leaving.append((heapq.heappop(self.held)[2], ACCEPT))
        self.accepted += len(leaving)
        return leaving

    def next_due(self) -> float | None:
        """When the next held packet is due (None: nothing is held)."""
        return self.held[0][0] if self.held else None

    def rest(self) -> list[Verdict]:
        """Everything still held, accepted now (the emulator stops: the link becomes plain)."""
        leaving = [(pid, ACCEPT) for _, _, pid in sorted(self.held)] + [(pid, ACCEPT) for pid in self.held_back.all()]
        self.held = []
        return leaving

    def counts(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "dropped": self.dropped, "queue_drops": self.bottleneck.dropped,
                "events": dict(self.events.seen)}

    def _release_at(self, release: float, pid: int) -> None:
        self.order += 1
        heapq.heappush(self.held, (release, self.order, pid))
