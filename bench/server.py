"""Requests/s and latency of the lab server next to the Python docs' asyncio echo server.

Both servers run as child processes of this one, in the same run, and face the
same load: each request is a fresh TCP connection (connect, send one line and
our FIN, read the one-line reply, close), because one request is all the textbook
server handles on a connection, and a client with nothing more to say says so
with its FIN (as ``nc -N`` does). Concurrency levels 1, 10 and 100; each level is
measured in rounds that alternate the two servers, and the medians are reported.

Then the lab server under attack: 512 connections from two other addresses
(127.0.0.2 and 127.0.0.3) that each send one ECHO and then sit idle, reconnecting
when turned away, as a client that sends one ECHO every 100 s would; a well-behaved
client (127.0.0.1, a fresh connection per request) is measured meanwhile, next to
the same client against the same server alone: its latency and its share of
requests answered.

    python bench/server.py [--requests 10000] [--rounds 5] [--attack-requests 300] [--attack-only]
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import subprocess
import sys
import threading
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


ATTACKERS = ("127.0.0.2", "127.0.0.3")
ATTACK_CONNECTIONS = 512


def well_behaved(port: int, requests: int) -> tuple[float, float, float]:
    """One request per fresh connection, one after the other: (share answered, p50 ms, p99 ms)."""
    latencies, answered = [], 0
    for _ in range(requests):
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(REQUEST)
            reply = b""
            while not reply.endswith(b"\n") and (chunk := sock.recv(4096)):
                reply += chunk
        latencies.append(time.perf_counter() - started)
        answered += reply == b"OK hello\n"
    return answered / requests, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000


def attack(port: int, stop: threading.Event) -> dict[str, int]:
    """Hold as many idle connections as the server gives, from two addresses; reconnect the refused."""
    held: list[socket.socket] = []
    counts = {"held": 0, "refused": 0}
    while not stop.is_set():
        for number in range(ATTACK_CONNECTIONS - len(held)):
            sock = socket.socket()
            sock.settimeout(5)
            try:
                sock.bind((ATTACKERS[number % len(ATTACKERS)], 0))
                sock.connect(("127.0.0.1", port))
                sock.sendall(REQUEST)
                reply = sock.recv(4096)
            except OSError:
                sock.close()
                continue
            if reply.startswith(b"OK"):
                held.append(sock)
            else:
                counts["refused"] += 1
                sock.close()
        still = []
        for sock in held:                   # those closed to make room say so: reconnected next round
            sock.setblocking(False)
            try:
                sock.recv(4096)             # the server's last line, or its FIN
                sock.close()
            except BlockingIOError:
                still.append(sock)          # nothing to read: still held
            except OSError:
                sock.close()
        held = still
        counts["held"] = max(counts["held"], len(held))
        stop.wait(0.2)
    for sock in held:
        sock.close()
    return counts


def under_attack(requests: int) -> None:
    port = free_port()
    proc = start("lab", port)
    try:
        alone = well_behaved(port, requests)
        stop, result = threading.Event(), {}
        attacker = threading.Thread(target=lambda: result.update(attack(port, stop)))
        attacker.start()
        time.sleep(2.0)                     # the attack's connections are in, and idle
        attacked = well_behaved(port, requests)
        stop.set()
        attacker.join()
    finally:
        proc.terminate()
        proc.wait(5)
    table(f"lab.server, a well-behaved client alone and under attack ({ATTACK_CONNECTIONS} idle connections from "
          f"two addresses; {result.get('held', 0)} held at most, {result.get('refused', 0)} turned away)",
          ["client", "answered", "p50 ms", "p99 ms", "p50 ratio"],
          [["alone (reference)", f"{alone[0]:.1%}", f"{alone[1]:.2f}", f"{alone[2]:.2f}", "1.00x"],
           ["under attack", f"{attacked[0]:.1%}", f"{attacked[1]:.2f}", f"{attacked[2]:.2f}",
            f"{attacked[1] / alone[1]:.2f}x"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help=f"connections in one measurement (at most {MAX_REQUESTS:,})")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per level")
    parser.add_argument("--attack-requests", type=int, default=300,
                        help="the well-behaved client's requests, alone and under attack")
    parser.add_argument("--attack-only", action="store_true", help="only the measurement under attack")
    args = parser.parse_args()
    if args.attack_only:
        under_attack(args.attack_requests)
        return
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
    under_attack(args.attack_requests)


if __name__ == "__main__":
    main()
