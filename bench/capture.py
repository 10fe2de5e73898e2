"""Our capture engine next to tcpdump, capturing the same bulk transfers at rising rates.

For each rate, in one run: the server's link is limited with `invoke impair --rate`
(tbf), both engines start in the server's namespace at once (each in its own
container, each writing its pcap to a file on the host, each with a 64 MiB ring),
a client downloads with BULK, and both are stopped with SIGINT. Per engine: the
packets of the transfer it recorded, the drops the kernel reported, and its CPU
time (user + system of the engine process, startup and drain included, measured
with getrusage in a small wrapper that is the same for both). tcpdump runs with its
defaults (buffered output, 1 s buffer timeout), its cheapest way to capture; ours
hands over packets within 50 ms, for the live view. Each rate is measured
--rounds times: packets and drops of every round, CPU medians.

    python bench/capture.py [--rates 50mbit,200mbit,500mbit,1gbit,unlimited] [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

# Last on the path, not first: bench/inspect.py would hide the standard library's inspect.
HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in (HERE, "")] + [HERE]
from common import median, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / ".data"
LAB = "benchcap"
IMAGE = f"tcplab/lab:{LAB}"
# PID 1 of each engine container: runs the engine, passes SIGINT on, then reports
# the engine's CPU seconds on stderr.
WRAPPER = ("import resource, signal, subprocess, sys; p = subprocess.Popen(sys.argv[1:]); "
           "signal.signal(signal.SIGINT, lambda *_: p.send_signal(signal.SIGINT)); p.wait(); "
           "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
           "print('engine-cpu', u.ru_utime + u.ru_stime, file=sys.stderr, flush=True)")
ENGINES = {
    "lab": (["--cap-add", "NET_RAW"], ["python3", "-m", "lab.inside.capture"]),
    "tcpdump": (["--cap-add", "NET_RAW", "--cap-add", "SETUID", "--cap-add", "SETGID", "--cap-add", "KILL"],
                # tcpdump's defaults otherwise (buffered output, 1 s buffer timeout):
                # its cheapest way to capture, so the strongest reference.
                ["tcpdump", "-i", "eth0", "-s", "0", "-B", "65536", "-w", "-"]),
}
MBIT = {"50mbit": 50, "200mbit": 200, "500mbit": 500, "1gbit": 1000, "unlimited": None}


def invoke(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "invoke", *args, "--lab", LAB], cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"invoke {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


class Engine:
    """One engine container writing to a file; its stderr read as it comes."""

    def __init__(self, kind: str, rate: str) -> None:
        caps, command = ENGINES[kind]
        self.kind, self.path = kind, DATA / f"capture-{rate}-{kind}.pcap"
        self.name = f"{LAB}-bench-{kind}"
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True)
        with self.path.open("wb") as out:
            self.proc = subprocess.Popen(
                ["docker", "run", "--rm", "--name", self.name, "--network", f"container:{LAB}-server",
                 "--user", "0", "--cap-drop", "ALL", *caps, "--log-driver", "none", IMAGE,
                 "python3", "-c", WRAPPER, *command],
                stdout=out, stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        self.reader = threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True)
        self.reader.start()

    def wait_ready(self) -> None:
        marker = "tcplab-capture-ready" if self.kind == "lab" else "listening on"
        deadline = time.monotonic() + 30
        while not any(marker in line for line in list(self.err)):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                sys.exit(f"{self.kind} did not start: {''.join(self.err)}")
            time.sleep(0.05)

    def stop(self) -> dict:
        subprocess.run(["docker", "kill", "--signal", "INT", self.name], capture_output=True)
        self.proc.wait(60)
        self.reader.join(5)
        text = "".join(self.err)
        if self.kind == "lab":
            dropped = json.loads(text.split("tcplab-capture-stats", 1)[1].splitlines()[0])["dropped"]
        else:
            found = re.search(r"(\d+) packets? dropped by kernel", text)
            assert found, text
            dropped = int(found.group(1))
        cpu = float(re.search(r"engine-cpu ([\d.]+)", text).group(1))
        return {"dropped": dropped, "cpu": cpu}


def flow_packets(path: Path, client_port: int | None) -> tuple[int, int]:
    """(packets of the BULK connection, its client port) in a capture file."""
    out = subprocess.run([sys.executable, "-m", "lab.inspect", str(path), "--json"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    connections = [c for c in json.loads(out.stdout)["connections"] if c["server"].endswith(":7070")]
    if client_port is not None:
        connections = [c for c in connections if c["client"].endswith(f":{client_port}")]
    biggest = max(connections, key=lambda c: c["bytes"]["server_to_client"])
    return biggest["packets"], int(biggest["client"].rsplit(":", 1)[1])


def one_round(rate: str, nbytes: int) -> dict:
    """Both engines capture one BULK download of ``nbytes``; their packets, drops, CPU."""
    engines = [Engine("lab", rate), Engine("tcpdump", rate)]
    for engine in engines:
        engine.wait_ready()
    invoke("bulk", str(nbytes))
    time.sleep(1.2)     # tcpdump hands over its buffer after at most 1 s
    results = {engine.kind: engine.stop() for engine in engines}
    results["lab"]["packets"], port = flow_packets(engines[0].path, None)
    results["tcpdump"]["packets"], _ = flow_packets(engines[1].path, port)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default=",".join(MBIT), help="comma-separated: 50mbit, 200mbit, 500mbit, 1gbit, unlimited")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each rate-limited transfer")
    parser.add_argument("--rounds", type=int, default=3, help="transfers per rate (CPU: median)")
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    invoke("build")
    invoke("up")
    rows = []
    try:
        for rate in args.rates.split(","):
            mbit = MBIT[rate]
            nbytes = int(mbit * 1e6 / 8 * args.seconds) if mbit else 300_000_000
            invoke("impair", "--clear")
            if mbit:
                invoke("impair", "--rate", rate)
            rounds = [one_round(rate, nbytes) for _ in range(args.rounds)]
            ours_cpu = median([r["lab"]["cpu"] for r in rounds])
            their_cpu = median([r["tcpdump"]["cpu"] for r in rounds])
            rows.append([rate, f"{nbytes / 1e6:.0f} MB",
                         " / ".join(f"{r['lab']['packets']:,}" for r in rounds),
                         " / ".join(str(r["lab"]["dropped"]) for r in rounds),
                         " / ".join(f"{r['tcpdump']['packets']:,}" for r in rounds),
                         " / ".join(str(r["tcpdump"]["dropped"]) for r in rounds),
                         " / ".join("yes" if r["lab"]["packets"] == r["tcpdump"]["packets"] else "NO" for r in rounds),
                         f"{ours_cpu:.2f}", f"{their_cpu:.2f}", f"{ours_cpu / their_cpu:.2f}x"])
    finally:
        invoke("impair", "--clear")
        invoke("down")
    table(f"capture engines on the same bulk transfers (the server's eth0; {args.rounds} rounds, CPU medians)",
          ["rate", "transfer", "ours packets", "ours drops", "tcpdump packets", "tcpdump drops", "equal",
           "ours CPU s", "tcpdump CPU s", "CPU ratio"], rows)


if __name__ == "__main__":
    main()
