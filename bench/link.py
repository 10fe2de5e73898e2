"""The NFQUEUE link emulator (lab/inside/linkemu.py) against what was asked of it, and netem beside it.

A test bed of two network namespaces joined by a veth pair (tests/corpus/veth_pair.sh):
the server in B, the client in A; the emulator in A delays (or drops) what B sends,
as `invoke impair --target server` does. Each table puts our figure next to the
reference measured in the same run:

* handshake RTT for delays from 1 to 500 ms, next to the requested delay plus the
  bed's own RTT; the goal: within 0.5 ms + 2% of the delay;
* loss: datagrams lost at 1, 5 and 20%, next to the binomial 99% interval;
* bulk downloads over 20, 50 and 100 ms at 10 and 100 Mbit/s (tbf on B's way out):
  the rate reached next to the limit, and when it first reached 80% (slow start);
* the emulator's CPU per packet, and the highest packet rate it passes adding no
  more than 1 ms (p99) to the bed's own one-way delay: medians of 3 rounds at each
  rate, with their range (the sender, the receiver and the emulator share two cores).

Where the kernel has sch_netem, the RTT and bulk tables are run with netem too.
Needs root, iproute2, iptables and ethtool.

    python bench/link.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in (HERE, "")] + [HERE]
from common import table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
A, B = "tcplab-bench-a", "tcplab-bench-b"
CLIENT_IP, SERVER_IP, PORT = "10.95.0.1", "10.95.0.2", 7070
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def sh(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=check, capture_output=True, text=True)


def bed_up() -> None:
    script = f". {ROOT}/tests/corpus/veth_pair.sh && veth_pair_remove {A} {B}; veth_pair {A} {B} 10.95.0"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"bench/link.py: {result.stderr.strip().splitlines()[-1]}")


def bed_down() -> None:
    subprocess.run(["bash", "-c", f". {ROOT}/tests/corpus/veth_pair.sh && veth_pair_remove {A} {B}"])


def in_ns(ns: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *command]


class Emulator:
    """lab.inside.linkemu in A, delaying what B sends."""

    def __init__(self, *options: str) -> None:
        self.proc = subprocess.Popen(in_ns(A, sys.executable, "-m", "lab.inside.linkemu", "--source", SERVER_IP,
                                           *options), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        if self.proc.stdout.readline().strip() != "tcplab-link-ready":
            sys.exit(f"bench/link.py: the emulator did not start: {self.proc.stderr.read().strip()}")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=10)
        words = err.split()
        return {"packets": int(words[1]) + int(words[4])} if len(words) > 4 and words[1].isdigit() else {"packets": 0}


class Netem:
    """tc netem on B's way out (what B sends), where the kernel has it."""

    def __init__(self, *options: str) -> None:
        sh(*in_ns(B, "tc", "qdisc", "replace", "dev", "veth-b", "root", "handle", "1:", "netem", *options))

    def stop(self) -> dict:
        sh(*in_ns(B, "tc", "qdisc", "del", "dev", "veth-b", "root"), check=False)
        return {}


def netem_present() -> bool:
    result = sh(*in_ns(B, "tc", "qdisc", "add", "dev", "veth-b", "root", "netem", "delay", "1ms"), check=False)
    sh(*in_ns(B, "tc", "qdisc", "del", "dev", "veth-b", "root"), check=False)
    return result.returncode == 0


def rate_limit(rate: str | None) -> None:
    sh(*in_ns(B, "tc", "qdisc", "del", "dev", "veth-b", "root"), check=False)
    if rate:
        sh(*in_ns(B, "tc", "qdisc", "add", "dev", "veth-b", "root", "tbf", "rate", rate, "burst", "64kbit",
                  "latency", "400ms"))


def client(code: str, timeout: float = 120) -> str:
    """Run Python ``code`` in A; its stdout."""
    return subprocess.run(in_ns(A, sys.executable, "-c", code), env=ENV, capture_output=True, text=True,
                          timeout=timeout, check=True).stdout


CONNECT = """
import socket, statistics, time
times = []
for _ in range({n}):
    started = time.perf_counter()
    s = socket.create_connection(("{ip}", {port}), timeout=10)
    times.append((time.perf_counter() - started) * 1000)
    s.close()
    time.sleep(0.02)
print(statistics.median(times))
"""


def handshake_ms(n: int = 5) -> float:
    return float(client(CONNECT.format(ip=SERVER_IP, port=PORT, n=n)))


def rtt_table(make, label: str, delays: list[float], base: float) -> list[list[str]]:
    rows = []
    for delay in delays:
        link = make(delay)
        measured = handshake_ms(11 if delay < 200 else 5)
        link.stop()
        expected = base + delay
        tolerance = 0.5 + 0.02 * delay
        rows.append([label, f"{delay:g}", f"{measured:.2f}", f"{expected:.2f}", f"{measured - expected:+.2f}",
                     f"{tolerance:.2f}", "yes" if abs(measured - expected) <= tolerance else "NO"])
    return rows


UDP_RECEIVE = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("{ip}", {port}))
s.settimeout(2)
got, stamps = 0, []
try:
    while True:
        data = s.recv(2048)
        stamps.append((time.time_ns(), data[:20]))
        got += 1
except socket.timeout:
    pass
print(got)
print(" ".join(f"{{(now - int(sent)) / 1e6:.4f}}" for now, sent in stamps))
"""


def udp_burst(count: int, pps: float) -> tuple[int, list[float]]:
    """``count`` datagrams from B to A at ``pps``; how many arrived, and each one's one-way delay (ms),
    from its sending to its reading. (Not the kernel's receive timestamp: it is taken before
    netfilter, so it would not see the emulator at all.)"""
    receiver = subprocess.Popen(in_ns(A, sys.executable, "-c", UDP_RECEIVE.format(ip=CLIENT_IP, port=PORT + 1)),
                                env=ENV, stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    sender = f"""
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
per_ms, sent, start = max(1, round({pps} / 1000)), 0, time.perf_counter()
while sent < {count}:
    for _ in range(min(per_ms, {count} - sent)):
        s.sendto(str(time.time_ns()).zfill(20).encode() + b"x" * 80, ("{CLIENT_IP}", {PORT + 1}))
        sent += 1
    pause = start + sent / {pps} - time.perf_counter()
    if pause > 0:
        time.sleep(pause)
"""
    subprocess.run(in_ns(B, sys.executable, "-c", sender), check=True)
    lines = receiver.communicate(timeout=60)[0].splitlines()
    return int(lines[0]), [float(x) for x in lines[1].split()] if len(lines) > 1 else []


def loss_table(count: int) -> list[list[str]]:
    rows = []
    for pct in (1, 5, 20):
        link = Emulator("--loss", str(pct), "--seed", "1")
        arrived, _ = udp_burst(count, 5000)
        link.stop()
        p = pct / 100
        half = 2.576 * math.sqrt(p * (1 - p) / count)
        lost = 1 - arrived / count
        rows.append([f"{pct}%", str(count), f"{lost * 100:.2f}%", f"{(p - half) * 100:.2f}-{(p + half) * 100:.2f}%",
                     "yes" if abs(lost - p) <= half else "NO"])
    return rows


BULK = """
import socket, time
s = socket.create_connection(("{ip}", {port}), timeout=30)
s.sendall(b"BULK {n}\\n")
start, got, marks = time.perf_counter(), 0, []
while got < {n}:
    data = s.recv(1 << 20)
    if not data:
        break
    got += len(data)
    marks.append((time.perf_counter() - start, got))
s.close()
for t, g in marks:
    print(t, g)
"""


def bulk(nbytes: int) -> list[tuple[float, int]]:
    out = client(BULK.format(ip=SERVER_IP, port=PORT, n=nbytes), timeout=300)
    return [(float(t), int(g)) for t, g in (line.split() for line in out.splitlines())]


def rate_reached(marks: list[tuple[float, int]], limit_bps: float) -> tuple[float, float | None]:
    """(the rate over the second half of the download, bit/s; when a 0.25 s window first reached 80%)."""
    end_time, end_bytes = marks[-1]
    half = next((t, g) for t, g in marks if t >= end_time / 2)
    steady = (end_bytes - half[1]) * 8 / (end_time - half[0])
    first = None
    j = 0
    for t, g in marks:
        while marks[j][0] < t - 0.25:
            j += 1
        if t - marks[j][0] >= 0.2 and (g - marks[j][1]) * 8 / (t - marks[j][0]) >= 0.8 * limit_bps:
            first = t
            break
    return steady, first


def bulk_table(make, label: str, quick: bool) -> list[list[str]]:
    rows = []
    for rate_mbit in (10, 100):
        for rtt in (20, 50, 100):
            rate_limit(f"{rate_mbit}mbit")
            link = make(rtt)
            seconds = 3 if quick else 5
            marks = bulk(int(rate_mbit * 1e6 / 8 * seconds))
            link.stop()
            steady, first = rate_reached(marks, rate_mbit * 1e6)
            rows.append([label, f"{rtt}", f"{rate_mbit}", f"{steady / 1e6:.1f}", f"{steady / (rate_mbit * 1e6) * 100:.0f}%",
                         f"{first:.2f}" if first is not None else "never",
                         "yes" if steady >= 0.8 * rate_mbit * 1e6 else "NO"])
    rate_limit(None)
    return rows


def cpu_and_capacity(quick: bool, rounds: int = 3) -> list[list[str]]:
    """For each packet rate, ``rounds`` bursts through the emulator (delay 0): CPU per packet and the
    p99 one-way delay, medians over the rounds (one round's p99 on two shared cores swings with
    whatever else the cores ran), next to the p99 without the emulator, measured the same way."""
    rows = []
    base_p99 = statistics.median(statistics.quantiles(udp_burst(4000, 2000)[1], n=100)[98] for _ in range(rounds))
    for pps in ((1_000, 2_000, 5_000, 20_000) if quick else (1_000, 2_000, 5_000, 10_000, 20_000, 40_000)):
        cpu, p99s, lost = [], [], 0
        for _ in range(rounds):
            link = Emulator("--delay-ms", "0")
            before = link.cpu_seconds()
            count = pps * 2
            arrived, delays = udp_burst(count, pps)
            used = link.cpu_seconds() - before
            cpu.append(used / max(link.stop()["packets"], 1) * 1e6)
            p99s.append(statistics.quantiles(delays, n=100)[98] if len(delays) > 100 else float("nan"))
            lost += count - arrived
        p99 = statistics.median(p99s)
        rows.append([f"{pps:,}", f"{lost}", f"{statistics.median(cpu):.1f}", f"{p99:.3f}",
                     f"{min(p99s):.3f}-{max(p99s):.3f}", f"{base_p99:.3f}",
                     "yes" if p99 - base_p99 <= 1 and not lost else "NO"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer delays and shorter downloads")
    args = parser.parse_args()
    for tool in ("ip", "iptables", "ethtool", "tc"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/link.py: {tool} is missing (bash .ci/setup --test installs it)")
    if os.geteuid() != 0:
        sys.exit("bench/link.py: the test bed of network namespaces needs root")
    bed_up()
    server = subprocess.Popen(in_ns(B, sys.executable, "-m", "lab.server", "--host", SERVER_IP, "--port", str(PORT)),
                              env=ENV, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        base = handshake_ms(9)
        delays = [1, 20, 100, 500] if args.quick else [1, 5, 20, 50, 100, 200, 500]
        netem = netem_present()
        rows = rtt_table(lambda d: Emulator("--delay-ms", str(d)), "nfqueue", delays, base)
        if netem:
            rows += rtt_table(lambda d: Netem("delay", f"{d}ms"), "netem", delays, base)
        table(f"handshake RTT (ms, medians): the bed's own RTT is {base:.3f} ms",
              ["engine", "delay asked", "measured", "expected", "off by", "tolerance", "within"], rows)
        table("loss (UDP datagrams from the server, seed 1): measured next to the binomial 99% interval",
              ["asked", "sent", "lost", "99% interval", "within"], loss_table(4000 if args.quick else 20_000))
        rows = bulk_table(lambda d: Emulator("--delay-ms", str(d)), "nfqueue", args.quick)
        if netem:
            rows += bulk_table(lambda d: Netem("delay", f"{d}ms"), "netem", args.quick)
        table("bulk downloads: the rate over the second half, and when it first reached 80% (slow start)",
              ["engine", "RTT ms", "limit Mbit/s", "reached Mbit/s", "of limit", "80% at s", ">= 80%"], rows)
        table("the emulator's own cost: CPU per packet, and the one-way delay it adds (p99, UDP)",
              ["packets/s", "lost", "CPU us/pkt", "p99 ms with", "its range", "p99 without", "adds <= 1ms"],
              cpu_and_capacity(args.quick))
        if not netem:
            print("netem: this kernel has no sch_netem, so the netem rows are missing (they run where it exists)")
    finally:
        server.terminate()
        bed_down()


if __name__ == "__main__":
    main()
