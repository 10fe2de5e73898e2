"""The kernel sampler (lab/inside/sampler.py) next to `ss -tin` run every millisecond, in the same run.

Both watch the same transfer: a lab server on loopback and a client reading a
BULK slowly for a few seconds, so the connection lives long enough to be sampled
thousands of times. For each: the interval it really kept between two samples of
the connection (median and 99th percentile, the goal being 1 ms) and the CPU it
spent per second of sampling. The reference is what one would write first: ask
`ss` (iproute2, the tool the sampler's fields come from) for the sockets every
millisecond.

    python bench/sampler.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in (HERE, "")] + [HERE]
from common import free_port, median, percentile, table, wait_listening  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
INTERVAL_S = 0.001


def slow_download(port: int, seconds: float) -> threading.Thread:
    """A client that reads a long BULK slowly, for about ``seconds``."""
    def read() -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            sock.sendall(b"BULK 1000000000\n")
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                if not sock.recv(1 << 16):
                    break
                time.sleep(0.0005)
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_ours(port: int, seconds: float) -> tuple[list[float], float]:
    """([median, p99] of its intervals in ms, from its own report; CPU seconds)."""
    before = children_cpu()
    proc = subprocess.Popen([sys.executable, "-m", "lab.inside.sampler", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc.stderr.readline()                           # ready
    slow_download(port, seconds).join()
    proc.send_signal(signal.SIGINT)
    report = proc.communicate(timeout=10)[1]
    interval = float(report.split("every ")[1].split(" ms")[0])
    p99 = float(report.split("99% within ")[1].split(" ms")[0])
    return [interval, p99], children_cpu() - before


def run_ss(port: int, seconds: float) -> tuple[list[float], float]:
    """The same with `ss -tin` every millisecond: intervals between answers that named the socket."""
    before = children_cpu()
    client = slow_download(port, seconds)
    stamps, next_at = [], time.monotonic()
    while client.is_alive():
        out = subprocess.run(["ss", "-tin", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True).stdout
        if "cwnd:" in out:
            stamps.append(time.monotonic())
        next_at += INTERVAL_S
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at = max(next_at, time.monotonic() - INTERVAL_S)
    return [(b - a) * 1000 for a, b in zip(stamps, stamps[1:])], children_cpu() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long each one samples (default 3)")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "lab.server", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        ours, our_cpu = run_ours(port, args.seconds)
        reference, ss_cpu = run_ss(port, args.seconds)
    finally:
        server.terminate()
        server.wait()
    ss_median, ss_p99 = median(reference), percentile(reference, 0.99)
    table(f"sampling one connection every {INTERVAL_S * 1000:g} ms for {args.seconds:g} s (loopback)",
          ["", "lab sampler", "ss -tin each ms", "ratio"],
          [["interval kept, median (ms)", f"{ours[0]:.2f}", f"{ss_median:.2f}", f"{ss_median / ours[0]:.1f}x"],
           ["interval kept, p99 (ms)", f"{ours[1]:.2f}", f"{ss_p99:.2f}", f"{ss_p99 / ours[1]:.1f}x"],
           ["CPU per second sampled (s)", f"{our_cpu / args.seconds:.3f}", f"{ss_cpu / args.seconds:.3f}",
            f"{ss_cpu / max(our_cpu, 1e-9):.1f}x"]])


if __name__ == "__main__":
    main()
