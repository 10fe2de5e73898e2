"""The capture engine: every packet on an interface, written as pcap to stdout.

It runs in the capture container (``invoke capture``), in the server's network
namespace, as root with one capability, NET_RAW. Measured on the lab's machines, a
per-packet capture loop in Python (scapy's ``sniff``) recorded 1% of the packets of
a bulk transfer; so this engine never handles a packet on its own:

* the kernel copies packets into a memory-mapped ring (TPACKET_V3, the ring libpcap
  and tcpdump use): 64 blocks of 1 MiB that the kernel fills and hands over whole;
  a block is handed over when full, or after ``BLOCK_TIMEOUT_MS`` so that a quiet
  link still shows its packets at once;
* the BPF filter, if any, is compiled by scapy (``compile_filter``, libpcap's
  compiler) and attached to the socket, so unwanted packets never reach the ring;
* for each block, every packet's ring header already holds what a pcap record
  header needs (seconds, nanoseconds, captured and wire length, in that order),
  so a record is two slices of the ring, handed to the kernel with writev: each
  byte is copied once, from the ring to the output; nothing is dissected;
* at the end the kernel's PACKET_STATISTICS tell how many packets it dropped
  because the ring was full, as tcpdump reports them.

Why a ring rather than ``recv`` with a large socket buffer: a buffer above
``net.core.rmem_max`` (208 KiB) needs CAP_NET_ADMIN, and one syscall per packet
costs more than the Python around it. The ring needs neither.

Output: a nanosecond pcap on stdout (the host writes it to a file and annotates
it); on stderr, ``tcplab-capture-ready`` once packets are being captured, and at
the end a human line and ``tcplab-capture-stats {json}`` for the host.

    python3 -m lab.inside.capture [--iface eth0] [--filter BPF] [--count N] [--seconds S]
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import mmap
import os
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

SOL_PACKET, PACKET_RX_RING, PACKET_STATISTICS, PACKET_VERSION = 263, 5, 6, 10
TPACKET_V3, ETH_P_ALL, TP_STATUS_USER = 2, 0x0003, 1
LINKTYPE_ETHERNET = 1
PCAP_NANOSECOND_MAGIC = 0xA1B23C4D

BLOCK_SIZE = 1 << 20
BLOCK_COUNT = 64
FRAME_SIZE = 2048              # only a unit of account for TPACKET_V3 (frames vary)
BLOCK_TIMEOUT_MS = 50
POLL_MS = 100
IOV_MAX = 1024                 # the most pieces one writev takes (Linux's UIO_MAXIOV)
F_SETPIPE_SZ = 1031

READY = "tcplab-capture-ready"
STATS = "tcplab-capture-stats"

# tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1: block_status,
# num_pkts, offset_to_first_pkt (we read the last three).
_block_header = struct.Struct("=8xIII").unpack_from
# tpacket3_hdr: tp_next_offset, (tp_sec, tp_nsec), tp_snaplen, (tp_len, tp_status), tp_mac.
_packet_header = struct.Struct("=I8xI8xH").unpack_from


class CaptureError(Exception):
    """The capture cannot start (no such interface, a filter that does not compile, ...)."""


class Ring:
    """A TPACKET_V3 receive ring on an AF_PACKET socket bound to one interface."""

    def __init__(self, iface: str, bpf: str | None) -> None:
        # Protocol 0 receives nothing until bind(): the ring and the filter are in
        # place before the first packet arrives.
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        request = struct.pack("=7I", BLOCK_SIZE, BLOCK_COUNT, FRAME_SIZE,
                              BLOCK_SIZE * BLOCK_COUNT // FRAME_SIZE, BLOCK_TIMEOUT_MS, 0, 0)
        self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
        self.map = mmap.mmap(self.sock.fileno(), BLOCK_SIZE * BLOCK_COUNT, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        if bpf:
            attach_filter(self.sock, bpf, iface)
        try:
            self.sock.bind((iface, ETH_P_ALL))
        except OSError as exc:
            raise CaptureError(f"cannot capture on {iface}: {exc.strerror}") from None
        self.view = memoryview(self.map)
        self.block = 0
        self.received = self.dropped = 0

    def ready_block(self) -> int | None:
        """The offset of the next block the kernel has handed over, or None."""
        base = self.block * BLOCK_SIZE
        status = _block_header(self.map, base)[0]
        return base if status & TP_STATUS_USER else None

    def take(self, base: int, fd: int, limit: int) -> int:
        """Write up to ``limit`` packets of the block at ``base`` to ``fd`` as pcap records.

        Each record is two slices of the ring (its pcap header and its bytes),
        handed to the kernel with writev: the bytes are copied once, from the ring
        to the output, and no Python object holds a copy. Then the block goes back
        to the kernel. Returns how many records were written.
        """
        view = self.view
        _, count, offset = _block_header(self.map, base)
        offset += base
        taken: int = min(count, limit)
        pieces = []
        for _ in range(taken):
            next_offset, snaplen, mac = _packet_header(view, offset)
            pieces.append(view[offset + 4:offset + 20])        # sec, nsec, snaplen, len: a pcap header
            pieces.append(view[offset + mac:offset + mac + snaplen])
            offset += next_offset
        write_all(fd, pieces)
        struct.pack_into("=I", view, base + 8, 0)            # TP_STATUS_KERNEL: the block is free again
        self.block = (self.block + 1) % BLOCK_COUNT
        return taken

    def statistics(self) -> None:
        """Add the kernel's counters since the last call (reading them resets them)."""
        packets, drops, _ = struct.unpack("=3I", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12))
        self.received += packets
        self.dropped += drops

    def error(self) -> int:
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


def write_all(fd: int, pieces: list[memoryview]) -> None:
    """os.writev in batches the kernel accepts, finishing any partial write."""
    for start in range(0, len(pieces), IOV_MAX):
        batch = pieces[start:start + IOV_MAX]
        written = os.writev(fd, batch)
        total = sum(len(piece) for piece in batch)
        if written < total:     # a signal cut the write short: send the rest as one piece
            rest = b"".join(batch)[written:]
            while rest:
                rest = rest[os.write(fd, rest):]


def widen_pipe(fd: int) -> None:
    """If ``fd`` is a pipe, make it hold a whole ring block (1 MiB, the most an
    unprivileged process may ask): one writev per block instead of sixteen rounds
    of fill-and-wait with the reader on the other end (Docker's shim)."""
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, BLOCK_SIZE)
    except OSError:
        pass    # not a pipe (a file, a terminal), or a system with a lower limit


def attach_filter(sock: socket.socket, bpf: str, iface: str) -> None:
    """Compile ``bpf`` with scapy (libpcap's compiler) and attach it to the socket."""
    try:
        from scapy.arch.linux import attach_filter as scapy_attach
        from scapy.error import Scapy_Exception
    except ImportError:
        raise CaptureError("--filter needs scapy, which is not installed here") from None
    try:
        scapy_attach(sock, bpf, iface)
    except Scapy_Exception as exc:
        raise CaptureError(f"the filter {bpf!r} does not compile: {str(exc).strip().splitlines()[-1]}") from None


def pcap_file_header(snaplen: int = 262144) -> bytes:
    """A nanosecond pcap header in this machine's byte order, as the ring's records are."""
    return struct.pack("=IHHiIII", PCAP_NANOSECOND_MAGIC, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET)


def run(iface: str, bpf: str | None, count: int | None, seconds: float | None, fd: int) -> dict[str, Any]:
    """Capture until stopped, writing pcap to ``fd``; return the statistics and what ended it."""
    stopping = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.append("interrupted"))
    ring = Ring(iface, bpf)
    poller = select.poll()
    poller.register(ring.sock, select.POLLIN | select.POLLERR)
    widen_pipe(fd)
    os.write(fd, pcap_file_header())
    print(READY, file=sys.stderr, flush=True)
    deadline = time.monotonic() + seconds if seconds else None
    captured, reason = 0, None
    while reason is None:
        base = ring.ready_block()
        if base is not None:
            captured += ring.take(base, fd, count - captured if count else BLOCK_SIZE)
            if count and captured >= count:
                reason = "count"
            continue
        if stopping:
            reason = stopping[0]
        elif deadline and time.monotonic() >= deadline:
            reason = "seconds"
        elif any(event & select.POLLERR for _, event in poller.poll(POLL_MS)) and ring.error() == errno.ENETDOWN:
            reason = "interface-gone"
    if reason in ("interrupted", "seconds"):
        captured += drain(ring, fd, count - captured if count else None)
    ring.statistics()
    return {"captured": captured, "received": ring.received, "dropped": ring.dropped, "reason": reason}


def drain(ring: Ring, fd: int, limit: int | None) -> int:
    """Packets still in the ring when we stop: the kernel hands over a partly filled
    block only after BLOCK_TIMEOUT_MS, so wait for that before leaving."""
    taken = 0
    until = time.monotonic() + 3 * BLOCK_TIMEOUT_MS / 1000
    while time.monotonic() < until and (limit is None or taken < limit):
        base = ring.ready_block()
        if base is None:
            time.sleep(BLOCK_TIMEOUT_MS / 5000)
            continue
        taken += ring.take(base, fd, BLOCK_SIZE if limit is None else limit - taken)
    return taken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m lab.inside.capture", description=__doc__.splitlines()[0])
    parser.add_argument("--iface", default="eth0", help="interface to capture on (default %(default)s)")
    parser.add_argument("--filter", dest="bpf", help="a BPF filter, as tcpdump takes it")
    parser.add_argument("--count", type=int, help="stop after N packets")
    parser.add_argument("--seconds", type=float, help="stop after S seconds")
    args = parser.parse_args(argv)
    try:
        stats = run(args.iface, args.bpf, args.count, args.seconds, sys.stdout.fileno())
    except CaptureError as exc:
        print(f"lab.capture: {exc}", file=sys.stderr)
        return 2
    except PermissionError:
        print("lab.capture: capturing needs CAP_NET_RAW (run as root with --cap-add NET_RAW)", file=sys.stderr)
        return 2
    except BrokenPipeError:
        stats = {"captured": 0, "received": 0, "dropped": 0, "reason": "output-closed"}
    print(f"lab.capture: {stats['captured']} packets captured, {stats['dropped']} dropped by the kernel",
          file=sys.stderr)
    print(f"{STATS} {json.dumps(stats)}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
