"""Requests/s and latency of the lab server next to the Python docs' asyncio echo server.

Both servers run as child processes of this one, in the same run, and face the
same load: each request is a fresh TCP connection (connect, send one line and
our FIN, read the one-line reply, close), because one request is all the textbook
server handles on a connection, and a client with nothing more to say says so
with its FIN (as ``nc -N`` does). Concurrency levels 1, 10 and 100; each level is
measured in rounds that alternate the two servers, and the medians are reported.

    python bench/server.py [--requests 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

# Last on the path, not first: bench/inspect.py would hide the standard library's inspect.
HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in (HERE, "")] + [HERE]
from common import free_port, median, percentile, table, wait_listening  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REQUEST = b"ECHO hello\n"
# Each measurement talks to a fresh server port, and each of its connections then
# waits a minute in TIME_WAIT. connect() tries the even ephemeral ports first
# (about 14,000 here); once they are all waiting it reuses one that has waited a
# second, and the rate meets a ceiling near 14k requests/s. So a measurement stays
# below that many connections, and times the servers, not the kernel's port reuse.
WARM_UP = 500
MAX_REQUESTS = 13_000


def start(kind: str, port: int) -> subprocess.Popen:
    if kind == "lab":
        argv = [sys.executable, "-m", "lab.server", "--host", "127.0.0.1", "--port", str(port)]
    else:
        argv = [sys.executable, str(ROOT / "bench" / "textbook_echo.py"), "127.0.0.1", str(port)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port)
    return proc


def load(port: int, concurrency: int, requests: int) -> tuple[float, list[float]]:
    """Make ``requests`` requests, ``concurrency`` at a time; return requests/s and latencies.

    One thread and a selector, not asyncio streams or threads: this is the cheapest
    Python client per request (about half the CPU of an asyncio one), so that on two
    cores the servers, not the load generator, set the pace as far as possible;
    threads would add their contention for the GIL to the latencies measured.
    """
    selector = selectors.DefaultSelector()
    latencies: list[float] = []
    unstarted = requests

    def connect() -> None:
        request = Request()
        sock = socket.socket(type=socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        # Over loopback the handshake usually completes inside connect() itself.
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            send(sock)
            selector.register(sock, selectors.EVENT_READ, request)
        else:
            selector.register(sock, selectors.EVENT_WRITE, request)

    def send(sock: socket.socket) -> None:
        """The request, then our FIN: we have nothing more to say."""
        sock.send(REQUEST)
        sock.shutdown(socket.SHUT_WR)

    started = time.perf_counter()
    in_flight = min(concurrency, requests)
    for _ in range(in_flight):
        connect()
    unstarted -= in_flight
    while in_flight:
        for key, events in selector.select():
            sock, request = key.fileobj, key.data
            if events & selectors.EVENT_WRITE:  # connected, or failed to
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    raise OSError(error, f"connect to port {port}: {os.strerror(error)}")
                send(sock)
                selector.modify(sock, selectors.EVENT_READ, request)
                continue
            chunk = sock.recv(4096)
            request.reply += chunk
            if chunk and not request.reply.endswith(b"\n"):
                continue
            if not request.reply.endswith(b"\n"):
                raise RuntimeError(f"bad reply {request.reply!r}")
            selector.unregister(sock)
            sock.close()
            latencies.append(time.perf_counter() - request.started)
            if unstarted:
                unstarted -= 1
                connect()
            else:
                in_flight -= 1
    selector.close()
    return len(latencies) / (time.perf_counter() - started), latencies


class Request:
    """One request in flight: when its connection began, and the reply so far."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.reply = b""


def measure(kind: str, concurrency: int, requests: int) -> tuple[float, float, float]:
    port = free_port()
    proc = start(kind, port)
    try:
        load(port, concurrency, WARM_UP)
        rate, latencies = load(port, concurrency, requests)
    finally:
        proc.terminate()
        proc.wait(5)
    return rate, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help=f"connections in one measurement (at most {MAX_REQUESTS:,})")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per level")
    args = parser.parse_args()
    if not 1 <= args.requests <= MAX_REQUESTS:
        parser.error(f"--requests must be 1..{MAX_REQUESTS:,}")
    rows = []
    for concurrency in (1, 10, 100):
        results = {"lab": [], "textbook": []}
        for _ in range(args.rounds):
            for kind in ("textbook", "lab"):
                results[kind].append(measure(kind, concurrency, args.requests))
        med = {kind: [median([r[i] for r in runs]) for i in range(3)] for kind, runs in results.items()}
        rows.append([
            str(concurrency),
            f"{med['lab'][0]:,.0f}", f"{med['lab'][1]:.2f}", f"{med['lab'][2]:.2f}",
            f"{med['textbook'][0]:,.0f}", f"{med['textbook'][1]:.2f}", f"{med['textbook'][2]:.2f}",
            f"{med['lab'][0] / med['textbook'][0]:.2f}x",
        ])
    table(
        "lab.server vs the Python docs' asyncio echo server (one request per connection, medians)",
        ["clients", "lab req/s", "lab p50 ms", "lab p99 ms",
         "textbook req/s", "textbook p50 ms", "textbook p99 ms", "lab/textbook"],
        rows,
    )


if __name__ == "__main__":
    main()
