"""A link emulator in user space: delay, jitter, loss and reordering for the packets netfilter queues to it.

Where the kernel has sch_netem, `invoke impair` uses it; where it does not (this
project's machines, many CI and cloud kernels), this program does the same job in
a sidecar container that shares the receiving container's network namespace, as
root with NET_ADMIN and nothing else:

1. it binds a netfilter queue over a raw NETLINK_NETFILTER socket (metadata only:
   it never sees a packet's bytes, only the kernel's id for it);
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

Why a raw netlink socket and not a library: the image has Debian's python3 and no
compiler, and the bindings (python-netfilterqueue, nfqueue-bindings) are C
extensions; the protocol needs three message types, each a few struct.pack calls.

    python3 -m lab.inside.linkemu --source 10.77.0.2 --delay-ms 40 [--jitter-ms 5]
        [--distribution normal|uniform] [--loss PCT] [--reorder PCT] [--seed N] [--queue N]
"""

from __future__ import annotations

import argparse
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

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQNL_CFG_CMD_BIND, NFQNL_COPY_META = 1, 1
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

    def describe(self) -> str:
        """The words status shows (and the rule's comment carries)."""
        parts = [f"delay {self.delay_ms:g}ms"] if self.delay_ms else []
        if self.jitter_ms:
            parts.append(f"jitter {self.jitter_ms:g}ms {self.distribution}")
        if self.loss_pct:
            parts.append(f"loss {self.loss_pct:g}%")
        if self.reorder_pct:
            parts.append(f"reorder {self.reorder_pct:g}%")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
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


def messages(data: bytes):
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
    offset = 4                                  # after nfgenmsg
    while offset + 4 <= len(payload):
        length, code = _attribute.unpack_from(payload, offset)
        if length < 4:
            return None
        if code & 0x7FFF == NFQA_PACKET_HDR:
            return struct.unpack_from("!I", payload, offset + 4)[0]
        offset += (length + 3) & ~3
    return None


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
        self._configure([(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
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

    def receive(self) -> list[int]:
        """The ids of the packets queued since the last call."""
        ids = []
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
                    found = packet_id(payload)
                    if found is not None:
                        ids.append(found)

    def verdicts(self, decided: list[tuple[int, int]]) -> None:
        """Send (packet id, verdict) pairs, many in one datagram."""
        for start in range(0, len(decided), 200):
            self.sock.sendall(b"".join(verdict_message(self.number, pid, verdict)
                                       for pid, verdict in decided[start:start + 200]))


def rule(action: str, source: str, queue: int, link: Link) -> list[str]:
    return ["iptables", "-t", "raw", action, "PREROUTING", "-s", source, "-m", "comment", "--comment",
            f"{RULE_COMMENT} {link.describe()}", "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass"]


def run(source: str, queue_number: int, link: Link) -> dict:
    """Emulate until SIGTERM or SIGINT; return the counts."""
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))
    queue = Queue(queue_number)
    subprocess.run(rule("-A", source, queue_number, link), check=True)
    print(READY, flush=True)
    decider = Decider(link)
    held: list[tuple[float, int, int]] = []      # (release time, order, packet id)
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
            if ready:
                for pid in queue.receive():
                    release = decider.release_time(now)
                    if release is None:
                        decided.append((pid, NF_DROP))
                        dropped += 1
                    else:
                        order += 1
                        heapq.heappush(held, (release, order, pid))
            while held and held[0][0] <= now:
                decided.append((heapq.heappop(held)[2], NF_ACCEPT))
                accepted += 1
            if decided:
                queue.verdicts(decided)
    finally:
        subprocess.run(rule("-D", source, queue_number, link), check=False)
        queue.verdicts([(pid, NF_ACCEPT) for _, _, pid in held])     # nothing is left waiting
    return {"accepted": accepted, "dropped": dropped, "overflows": queue.overflows}


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
    args = parser.parse_args(argv)
    numbers = (args.delay_ms, args.jitter_ms, args.loss, args.reorder)
    if not all(math.isfinite(n) and n >= 0 for n in numbers) or args.loss > 100 or args.reorder > 100:
        parser.error("delay, jitter, loss and reorder are finite, 0 or more; loss and reorder at most 100")
    link = Link(args.delay_ms, args.jitter_ms, args.distribution, args.loss, args.reorder, args.seed)
    try:
        counts = run(args.source, args.queue, link)
    except (LinkError, subprocess.CalledProcessError, PermissionError) as exc:
        print(f"lab.inside.linkemu: {exc}", file=sys.stderr)
        return 2
    print(f"lab.inside.linkemu: {counts['accepted']} packets passed, {counts['dropped']} lost"
          + (f", {counts['overflows']} netlink overflows" if counts["overflows"] else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
