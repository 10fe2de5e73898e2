"""The kernel's own view of TCP: its state of the lab's sockets, sampled every millisecond.

What ``ss -ti`` shows once, this program records as a series: for each TCP socket
on the lab's port, the kernel's state (SYN_SENT, ESTABLISHED, FIN_WAIT1, ...),
congestion window and slow-start threshold, smoothed RTT and its variation, the
retransmission timeout and how often it has doubled (backoff), zero-window
probes, segments in flight, retransmissions, bytes acknowledged, delivery and
pacing rates, and the congestion control algorithm. A capture shows
what crossed the wire; this shows why the sender sent it then.

It runs in a sidecar container that joins a lab container's network namespace
with no capability at all: NETLINK_SOCK_DIAG answers any process about the
sockets of its own namespace. Each sample is stamped with CLOCK_REALTIME, the
clock the kernel stamps captured packets with, so the series lines up with the
capture of the same run.

Why not simply dump every millisecond, as ``ss`` does once: a dump walks the
kernel's whole established-socket hash table, which every namespace shares
(262,144 buckets on this 24 GiB machine: 3 ms a dump, three times the interval).
So the sampler *finds* sockets with a dump and *follows* them with exact lookups
(a request naming the socket's four addresses and ports is one hash lookup, a
few microseconds). It dumps again when /proc/net/sockstat, which counts this
namespace's TCP sockets, says that count changed (a new connection), and every
DISCOVER_S in any case; a followed socket that the kernel no longer knows (after
TIME_WAIT) is dropped.

Output: one JSON object per socket and change on stdout (a sample is written
when some value of the socket changed since its last one), e.g.
``{"t": 1764550000123456789, "local": "10.77.0.2:7070", "remote": "10.77.0.3:41234",
"state": "ESTABLISHED", "cwnd": 10, "ssthresh": null, "srtt_us": 52, ...}``;
while no lab socket exists, only the socket count is read (36 us).

    python3 -m lab.inside.sampler [--port 7070] [--interval-ms 1]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import socket
import statistics
import struct
import sys
import time
from typing import IO, Any

from lab.inside import netlink
from lab.inside.protocol import PORT

Sample = dict[str, Any]       # one socket at one instant: its endpoints, state and tcp_info's fields

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
INET_DIAG_INFO, INET_DIAG_VEGASINFO, INET_DIAG_CONG, INET_DIAG_BBRINFO = 2, 3, 4, 16
DISCOVER_S = 0.25
ANSWER_TIMEOUT_S = 0.5
MAX_INTERVALS = 100_000     # the intervals kept for the median and p99 at the end: the last 100 s of sampling
INET_DIAG_NOCOOKIE = 0xFFFFFFFF
INFINITE_SSTHRESH = 0x7FFFFFFF      # the kernel's "no threshold yet" (TCP_INFINITE_SSTHRESH)

# RFC 9293's names as Linux numbers them (include/net/tcp_states.h).
STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
          7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV"}
CA_STATES = {0: "open", 1: "disorder", 2: "cwr", 3: "recovery", 4: "loss"}

_request = struct.Struct("=BBBxI4s32sI8s")     # family, protocol, extensions, states, ports, addresses, if, cookie
_diag_msg = struct.Struct("=BBBBHH16s16sI8sIIIII")
# struct tcp_info (linux/tcp.h), as far as the fields we keep: offsets into it.
_u8x5 = struct.Struct("=BBBBB")                # state, ca_state, retransmits, probes, backoff
_u32 = struct.Struct("=I")
_u64 = struct.Struct("=Q")
TCP_INFO_FIELDS = {                             # name: (offset, format)
    "rto_us": (8, _u32), "ato_us": (12, _u32), "snd_mss": (16, _u32), "unacked": (24, _u32), "lost": (32, _u32),
    "rcv_ssthresh": (64, _u32), "rcv_space": (96, _u32),
    "retrans": (36, _u32), "srtt_us": (68, _u32), "rttvar_us": (72, _u32), "ssthresh": (76, _u32),
    "cwnd": (80, _u32), "total_retrans": (100, _u32), "pacing_rate": (104, _u64), "bytes_acked": (120, _u64),
    "delivery_rate": (160, _u64),
}


def _layout(fields: dict[str, tuple[int, struct.Struct]]) -> tuple[struct.Struct, list[str]]:
    """One struct for all the fields kept, gaps padded: a socket is read with one unpack."""
    layout, at, names = "=", 0, list[str]()
    for name, (offset, form) in sorted(fields.items(), key=lambda item: item[1][0]):
        layout += (f"{offset - at}x" if offset > at else "") + form.format[-1]
        at, names = offset + form.size, names + [name]
    return struct.Struct(layout), names


_tcp_info, _tcp_info_names = _layout(TCP_INFO_FIELDS)


# BBR's own state (its bandwidth and min RTT estimates, its gains) comes as INET_DIAG_BBRINFO when
# asked for as INET_DIAG_VEGASINFO (linux/inet_diag.h): the extension bits stop at 8.
EXTENSIONS = (1 << (INET_DIAG_INFO - 1)) | (1 << (INET_DIAG_CONG - 1)) | (1 << (INET_DIAG_VEGASINFO - 1))
_bbr_info = struct.Struct("=IIIII")            # bw_lo, bw_hi (bytes/s), min_rtt (us), pacing_gain, cwnd_gain (x256)
ALL_BUT_LISTEN = 0xFFFFFFFF & ~(1 << 10)


def dump_request(family: int = socket.AF_INET) -> bytes:
    """A sock_diag dump of every TCP socket but the listening ones, with tcp_info and the algorithm."""
    body = _request.pack(family, socket.IPPROTO_TCP, EXTENSIONS, ALL_BUT_LISTEN, b"", b"", 0, b"")
    return netlink.message(SOCK_DIAG_BY_FAMILY, netlink.NLM_F_REQUEST | netlink.NLM_F_DUMP, body, sequence=1)


def lookup_request(local: str, remote: str) -> bytes:
    """A sock_diag request for one IPv4 socket, named by its endpoints ("10.77.0.2:7070"): one hash lookup."""
    (src, sport), (dst, dport) = (address.rsplit(":", 1) for address in (local, remote))
    ports = struct.pack("!HH", int(sport), int(dport))
    cookie = struct.pack("=II", INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE)
    body = _request.pack(socket.AF_INET, socket.IPPROTO_TCP, EXTENSIONS, ALL_BUT_LISTEN, ports,
                         socket.inet_aton(src) + bytes(12) + socket.inet_aton(dst) + bytes(12), 0, cookie)
    return netlink.message(SOCK_DIAG_BY_FAMILY, netlink.NLM_F_REQUEST, body, sequence=2)


class SocketCount:
    """This namespace's count of TCP sockets ("TCP: inuse N" in /proc/net/sockstat): it changes
    when a connection comes or goes. The file stays open and is read again from its start."""

    def __init__(self, path: str = "/proc/net/sockstat") -> None:
        self.fd = os.open(path, os.O_RDONLY)

    def __call__(self) -> int:
        for line in os.pread(self.fd, 4096, 0).splitlines():
            if line.startswith(b"TCP:"):
                return int(line.split()[2])
        return 0


def endpoint(family: int, address: bytes, port: int) -> str:
    if family == socket.AF_INET:
        return f"{socket.inet_ntop(family, address[:4])}:{port}"
    return f"[{socket.inet_ntop(family, address)}]:{port}"


def parse_socket(payload: bytes) -> Sample:
    """One inet_diag_msg and its attributes: the socket's endpoints and the kernel's view of it."""
    family, state, _, _, sport, dport, src, dst, *_ = _diag_msg.unpack_from(payload)
    sample: Sample = {"local": endpoint(family, src, socket.ntohs(sport)), "remote": endpoint(family, dst, socket.ntohs(dport)),
              "state": STATES.get(state, str(state))}
    for kind, value in netlink.attributes(payload, _diag_msg.size):
        if kind == INET_DIAG_INFO and len(value) >= 168:
            _, ca_state, _, probes, backoff = _u8x5.unpack_from(value)
            sample["ca_state"] = CA_STATES.get(ca_state, str(ca_state))
            sample["probes"], sample["backoff"] = probes, backoff   # zero-window probes; timer doublings
            scales = value[6]                                     # tcpi_snd_wscale : 4, tcpi_rcv_wscale : 4
            sample["snd_wscale"], sample["rcv_wscale"] = scales & 0x0F, scales >> 4
            sample.update(zip(_tcp_info_names, _tcp_info.unpack_from(value)))
            if sample["ssthresh"] >= INFINITE_SSTHRESH:
                sample["ssthresh"] = None       # still in slow start: no threshold yet
        elif kind == INET_DIAG_CONG:
            sample["cc"] = value.split(b"\0", 1)[0].decode(errors="replace")
        elif kind == INET_DIAG_BBRINFO and len(value) >= _bbr_info.size:
            bw_lo, bw_hi, min_rtt, pacing_gain, cwnd_gain = _bbr_info.unpack_from(value)
            sample.update(bbr_bw=bw_lo | bw_hi << 32, bbr_min_rtt_us=min_rtt, pacing_gain=pacing_gain,
                          cwnd_gain=cwnd_gain)
    return sample


class Diag:
    """A NETLINK_SOCK_DIAG socket: dumps this namespace's TCP sockets, or looks up the ones it names."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
        self.sock.bind((0, 0))
        self.sock.settimeout(ANSWER_TIMEOUT_S)      # an answer the kernel never sends must not stop the sampler

    def sockets(self) -> list[Sample]:
        """Every TCP socket of the namespace but the listening ones (IPv4: the lab's namespaces have no IPv6)."""
        self.sock.send(dump_request(socket.AF_INET))
        return self._answers(until_done=True)

    def lookup(self, endpoints: list[tuple[str, str]]) -> list[Sample]:
        """The sockets named by (local, remote), those the kernel still knows, in one netlink datagram."""
        if not endpoints:
            return []
        self.sock.send(b"".join(lookup_request(local, remote) for local, remote in endpoints))
        asked = set(endpoints)
        # A lookup of a socket that is gone finds the listener on its port instead: not ours.
        return [found for found in self._answers(expected=len(endpoints)) if (found["local"], found["remote"]) in asked]

    def _answers(self, until_done: bool = False, expected: int = 0) -> list[Sample]:
        found: list[Sample] = []
        answered = 0
        while until_done or answered < expected:
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                return found
            for kind, body in netlink.messages(data):
                if kind == netlink.NLMSG_DONE or (kind == netlink.NLMSG_ERROR and until_done):
                    return found
                answered += 1
                if kind != netlink.NLMSG_ERROR:     # ENOENT: that socket is gone
                    found.append(parse_socket(body))
        return found


def on_port(sample: Sample, port: int) -> bool:
    return bool(sample["local"].endswith(f":{port}") or sample["remote"].endswith(f":{port}"))


class Recorder:
    """Writes what changed: a socket's sample only when some value but the time differs from
    its last one (the file holds every change at its millisecond, not a thousand copies of a
    socket that sits still), and never a socket first seen in TIME_WAIT: that is an earlier
    run's, not this one's."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.last: dict[tuple[str, str], Sample] = {}
        self.taken = self.written = 0
        self.intervals: collections.deque[float] = collections.deque(maxlen=MAX_INTERVALS)

    def record(self, stamp: int, samples: list[Sample]) -> None:
        self.taken += len(samples)
        present = {(sample["local"], sample["remote"]) for sample in samples}
        for gone in [key for key in self.last if key not in present]:    # memory bounded by live sockets
            del self.last[gone]
        for sample in samples:
            key = (sample["local"], sample["remote"])
            if key not in self.last and sample["state"] == "TIME_WAIT":
                continue
            if self.last.get(key) != sample:
                self.out.write(json.dumps({"t": stamp, **sample}, separators=(",", ":")) + "\n")
                self.written += 1
                self.last[key] = sample


def run(port: int, interval_s: float, out: IO[str]) -> Recorder:
    """Sample until SIGTERM or SIGINT; return the recorder (its counts and the intervals kept)."""
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))
    diag, tcp_sockets_in_use = Diag(), SocketCount()
    recorder = Recorder(out)
    print("tcplab-sampler-ready", file=sys.stderr, flush=True)
    followed: list[tuple[str, str]] = []
    in_use, discovered_at, last_at = -1, 0.0, None
    next_at = time.monotonic()
    while not stopping:
        now_in_use = tcp_sockets_in_use()
        stamp = time.time_ns()
        if now_in_use != in_use or time.monotonic() - discovered_at > DISCOVER_S:
            in_use, discovered_at = now_in_use, time.monotonic()
            lab_sockets = [sample for sample in diag.sockets() if on_port(sample, port)]
        else:
            lab_sockets = diag.lookup(followed)
        followed = [(sample["local"], sample["remote"]) for sample in lab_sockets]
        recorder.record(stamp, lab_sockets)
        if lab_sockets and last_at is not None:
            recorder.intervals.append((stamp - last_at) / 1e6)
        last_at = stamp if lab_sockets else None
        next_at += interval_s
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at = max(next_at, time.monotonic() - interval_s)     # a late sample does not cause a burst
    out.flush()
    return recorder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m lab.inside.sampler", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=PORT, help="the lab's port: its sockets are sampled")
    parser.add_argument("--interval-ms", type=float, default=1.0, help="between samples (default %(default)s)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536 or not 0.05 <= args.interval_ms <= 1000:
        parser.error("--port is 1..65535 and --interval-ms 0.05..1000")
    started = time.process_time()
    recorder = run(args.port, args.interval_ms / 1000, sys.stdout)
    intervals = sorted(recorder.intervals) or [0.0]
    interval, p99 = statistics.median(intervals), intervals[min(len(intervals) - 1, int(0.99 * len(intervals)))]
    print(f"lab.inside.sampler: {recorder.written} samples written of {recorder.taken} taken, "
          f"every {interval:.2f} ms (median; 99% within {p99:.2f} ms, while a lab socket existed), "
          f"{time.process_time() - started:.2f} s of CPU", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
