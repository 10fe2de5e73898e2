"""Requests/s and latency of the lab server next to the Python docs' asyncio echo server.

Both servers run as child processes of this one, in the same run, and face the
same load: each request is a fresh TCP connection (connect, send one line and
our FIN, read the one-line reply, close), because one request is all the textbook
server handles on a connection, and a client with nothing more to say says so
with its FIN (as ``nc -N`` does). Concurrency levels 1, 10 and 100; each level is measured in rounds
that alternate the two servers, and the medians are reported.

    python bench/server.py [--seconds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
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


def start(kind: str, port: int) -> subprocess.Popen:
    if kind == "lab":
        argv = [sys.executable, "-m", "lab.server", "--host", "127.0.0.1", "--port", str(port)]
    else:
        argv = [sys.executable, str(ROOT / "bench" / "textbook_echo.py"), "127.0.0.1", str(port)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port)
    return proc


async def one_request(port: int) -> float:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    writer.write_eof()
    reply = await reader.readline()
    writer.close()
    await writer.wait_closed()
    if not reply.endswith(b"\n"):
        raise RuntimeError(f"bad reply {reply!r}")
    return time.perf_counter() - started


async def load(port: int, concurrency: int, seconds: float) -> tuple[float, list[float]]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            latencies.append(await one_request(port))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - started), latencies


def measure(kind: str, concurrency: int, seconds: float) -> tuple[float, float, float]:
    port = free_port()
    proc = start(kind, port)
    try:
        asyncio.run(load(port, concurrency, 0.3))  # warm-up
        rate, latencies = asyncio.run(load(port, concurrency, seconds))
    finally:
        proc.terminate()
        proc.wait(5)
    return rate, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per level")
    args = parser.parse_args()
    rows = []
    for concurrency in (1, 10, 100):
        results = {"lab": [], "textbook": []}
        for _ in range(args.rounds):
            for kind in ("textbook", "lab"):
                results[kind].append(measure(kind, concurrency, args.seconds))
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
