"""A capture that misses packets on purpose: each is dropped with probability P.

The corpus needs captures where a segment crossed the wire but the capture did not
record it, because that is what Wireshark's "ACKed segment that wasn't captured"
describes. A classic BPF socket filter can read a random number
(SKF_AD_RANDOM), so the kernel itself drops a random share of packets before they
reach this socket. The rest is the plainest capture loop: an AF_PACKET socket and
pcap records written as they come, until SIGINT or SIGTERM.

    python3 lossy_capture.py IFACE OUT.pcap PROBABILITY SNAPLEN
"""

import ctypes
import signal
import socket
import struct
import sys
import time

SO_ATTACH_FILTER = 26
SKF_AD_RANDOM = -0x1000 + 56  # SKF_AD_OFF + SKF_AD_RANDOM


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter))]


def main() -> None:
    iface, out, probability, snaplen = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    threshold = int(probability * 0xFFFFFFFF)
    program = (SockFilter * 4)(
        SockFilter(0x20, 0, 0, SKF_AD_RANDOM & 0xFFFFFFFF),  # ld [random]
        SockFilter(0x35, 0, 1, threshold),                    # jge #threshold: keep, else drop
        SockFilter(0x06, 0, 0, 0xFFFF),                       # ret #65535: keep the packet
        SockFilter(0x06, 0, 0, 0),                            # ret #0: drop it
    )
    fprog = SockFprog(4, program)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(ctypes.string_at(ctypes.addressof(fprog), ctypes.sizeof(fprog))))
    sock.bind((iface, 0))
    sock.settimeout(0.2)
    running = True

    def stop(*_):
        nonlocal running
        running = False

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))
        while running:
            try:
                data = sock.recv(65535)
            except socket.timeout:
                continue
            except InterruptedError:
                continue
            now = time.time()
            f.write(struct.pack("<IIII", int(now), int(now % 1 * 1e6), min(len(data), snaplen), len(data)))
            f.write(data[:snaplen])


if __name__ == "__main__":
    main()
