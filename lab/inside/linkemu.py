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
extensions; the protocol needs four message types, each a few struct.pack calls
(lab.inside.netlink). Verdicts go out many to a datagram, and the oldest packets
accepted together (a delay's usual case) as one batch verdict. What it decides
for each packet is lab.inside.link_core, which does no I/O; this module is the
queue, the rule and the loop around it.

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
import errno
import gc
import math
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any

from lab.inside import netlink
from lab.inside.link_core import ACCEPT, Emulation, Event, Link, Verdict

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 1, 2, 3
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_PAYLOAD = 1, 2, 10
NFQNL_CFG_CMD_BIND, NFQNL_COPY_PACKET = 1, 2
COPY_BYTES = 120                # an IPv4 header and a TCP header with options, at most: never the payload
QUEUE_MAXLEN = 20_000           # packets the kernel may hold for us (a 100 ms, 100 Mbit/s link holds ~900)
SOCKET_BUFFER = 8 << 20
SO_RCVBUFFORCE = 33             # not in Python's socket module
RULE_COMMENT = "tcplab-link"
READY = "tcplab-link-ready"
RECEIVE_AT_ONCE = 32            # packets read before their verdicts go out (a backlog is taken in parts)
SPIN_S = 0.0005                 # how long before a release the emulator stays awake for it

_nfgenmsg = struct.Struct("=BBH")          # family, version, queue number (big-endian, packed by hand)


class LinkError(Exception):
    """The emulator cannot start (no NET_ADMIN, no NFQUEUE in the kernel, a bad option)."""


def queue_message(kind: int, flags: int, queue: int, attributes: list[tuple[int, bytes]], family: int = 0) -> bytes:
    """A message to netfilter's queue subsystem: its nfgenmsg header, then the attributes."""
    body = _nfgenmsg.pack(family, 0, socket.htons(queue)) + b"".join(netlink.attribute(code, value)
                                                                     for code, value in attributes)
    return netlink.message((NFNL_SUBSYS_QUEUE << 8) | kind, flags, body)


def verdict_message(queue: int, packet_id: int, verdict: int, batch: bool = False) -> bytes:
    """The verdict on one packet; with ``batch``, on every packet the queue still holds up to
    this id (NFQNL_MSG_VERDICT_BATCH: one message for a whole run of packets)."""
    return queue_message(NFQNL_MSG_VERDICT_BATCH if batch else NFQNL_MSG_VERDICT, netlink.NLM_F_REQUEST, queue,
                         [(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))])


def packet_id(payload: bytes) -> int | None:
    """The kernel's id of a queued packet (NFQA_PACKET_HDR), or None."""
    found = packet_attributes(payload)
    return found[0] if found else None


def packet_attributes(payload: bytes) -> tuple[int, bytes] | None:
    """(id, the packet's first bytes) of a queued packet, or None."""
    pid, head = None, b""
    for code, value in netlink.attributes(payload, _nfgenmsg.size):
        if code & 0x7FFF == NFQA_PACKET_HDR and len(value) >= 4:
            pid = struct.unpack_from("!I", value)[0]
        elif code & 0x7FFF == NFQA_PAYLOAD:
            head = value
    return None if pid is None else (pid, head)


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
        self.held: collections.deque[int] = collections.deque()    # ids the kernel holds for us, oldest first
        self.answered: set[int] = set()     # ids among them answered one by one (ahead of older ones)

    def _configure(self, attributes: list[tuple[int, bytes]]) -> None:
        self.sock.send(queue_message(NFQNL_MSG_CONFIG, netlink.NLM_F_REQUEST | netlink.NLM_F_ACK, self.number,
                                     attributes))
        for kind, payload in netlink.messages(self.sock.recv(65536)):
            if kind == netlink.NLMSG_ERROR:
                error = netlink.error_of(payload)
                if error:
                    raise LinkError(f"binding netfilter queue {self.number}: {os.strerror(error)} "
                                    "(the container needs NET_ADMIN, the kernel NFQUEUE)")

    def receive(self) -> list[tuple[int, bytes]]:
        """(id, first bytes) of the packets queued since the last call, at most RECEIVE_AT_ONCE: after
        a stall, the first of a backlog gets its verdict without waiting for the whole backlog's."""
        ids: list[tuple[int, bytes]] = []
        while len(ids) < RECEIVE_AT_ONCE:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return ids
            except OSError as exc:        # ENOBUFS: the kernel could not tell us of some packets
                if exc.errno != errno.ENOBUFS:
                    raise
                self.overflows += 1
                continue
            for kind, payload in netlink.messages(data):
                if kind & 0xFF == NFQNL_MSG_PACKET:
                    found = packet_attributes(payload)
                    if found is not None:
                        ids.append(found)
                        self.held.append(found[0])
        return ids

    def verdicts(self, decided: list[Verdict]) -> None:
        """Send (packet id, verdict) pairs. While they accept the oldest packets the queue holds in
        the order they came (a delay's usual case), they go as one batch verdict; from the first
        that does not (a loss, a packet that overtakes), one message each, in their order, many to
        a datagram. The kernel lets a batch's packets go in its own order, the order they came:
        a reordered packet must have a message of its own."""
        run_end, position = None, 0
        while position < len(decided) and self.held:
            oldest = self.held[0]
            if oldest in self.answered:                 # answered on its own earlier
                self.answered.discard(self.held.popleft())
                continue
            if decided[position] != (oldest, ACCEPT):
                break
            run_end = self.held.popleft()
            position += 1
        messages = [] if run_end is None else [verdict_message(self.number, run_end, ACCEPT, batch=True)]
        for pid, verdict in decided[position:]:
            messages.append(verdict_message(self.number, pid, verdict))
            self.answered.add(pid)
        for start in range(0, len(messages), 200):
            self.sock.sendall(b"".join(messages[start:start + 200]))


def rule(action: str, source: str, queue: int, link: Link) -> list[str]:
    return ["iptables", "-t", "raw", action, "PREROUTING", "-s", source, "-m", "comment", "--comment",
            f"{RULE_COMMENT} {link.describe()}"[:255], "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass"]


def run(source: str, queue_number: int, link: Link) -> dict[str, Any]:
    """Emulate until SIGTERM or SIGINT; return the counts."""
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))
    queue = Queue(queue_number)
    subprocess.run(rule("-A", source, queue_number, link), check=True)
    print(READY, flush=True)
    emulation = Emulation(link)
    # The loop makes no reference cycles (what it allocates per packet is freed as soon as it is
    # dropped), so the cycle collector would only pause it now and then, packets waiting meanwhile.
    gc.disable()
    try:
        while not stopping:
            # Sleep until the next release, less SPIN_S, then wait for it awake: a sleeping
            # process wakes up late (a few hundred microseconds on a busy machine), and
            # every packet's delay would grow by that.
            due = emulation.next_due()
            until_next = due - time.monotonic() if due is not None else 0.5
            ready, _, _ = select.select([queue.sock], [], [], min(max(until_next - SPIN_S, 0.0), 0.5))
            while not ready and due is not None and due > time.monotonic():
                ready, _, _ = select.select([queue.sock], [], [], 0)
            now = time.monotonic()
            decided = [verdict for pid, head in (queue.receive() if ready else [])
                       for verdict in emulation.arrive(pid, head, now)]
            decided += emulation.due(now)
            if decided:
                queue.verdicts(decided)
    finally:
        subprocess.run(rule("-D", source, queue_number, link), check=False)
        queue.verdicts(emulation.rest())
    return {**emulation.counts(), "overflows": queue.overflows}


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
