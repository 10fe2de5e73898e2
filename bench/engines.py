"""The lab on rootful Docker, rootless Docker and rootless Podman (its socket), in one run.

For each engine: warm `invoke up` and `invoke down` (the image built first; medians of
--runs), a BULK download's throughput as the client reports it, and the handshake's RTT
in a capture with `impair --delay 40ms` on the server's link (the SYN/ACK waits 40 ms).
Rootful Docker, as root in this checkout, is the reference; the rootless engines run as
the user .ci/rootless-engines made, in that user's own copy of the project (set up with
`bash .ci/setup` as the user, the README's way). Needs root, to be both.

    sudo python bench/engines.py [--runs 3] [--bulk 50000000]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if p not in (HERE, "")] + [HERE]   # bench/lab.py is not the package
from common import median, table  # noqa: E402

from lab.inspect import analyze  # noqa: E402
from tests.rootless import ENGINES, as_user, engines_problem, project_copy  # noqa: E402

LAB = "benchengines"
RATE = re.compile(r"([\d.]+) Mbit/s")


class Rootful:
    """This checkout, as root, on the CLI's default engine."""

    name = "rootful Docker"
    folder = ROOT

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "invoke", *args, "--lab", LAB], cwd=ROOT,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)


class Rootless:
    """The rootless user's copy, on one of its engines."""

    def __init__(self, engine: str, folder: Path) -> None:
        self.engine, self.folder = engine, folder
        self.name = "rootless Docker" if engine == "rootless-docker" else "rootless Podman"

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return as_user([".venv/bin/invoke", *args, "--lab", LAB], self.engine, cwd=self.folder)


def checked(result: subprocess.CompletedProcess) -> str:
    if result.returncode != 0:
        raise SystemExit(f"failed: {result.args}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def timed(step) -> float:
    started = time.perf_counter()
    checked(step())
    return time.perf_counter() - started


def measure(lab, runs: int, nbytes: int) -> dict[str, float]:
    checked(lab.run("build"))
    checked(lab.run("down"))
    ups, downs = [], []
    for _ in range(runs):
        ups.append(timed(lambda: lab.run("up")))
        downs.append(timed(lambda: lab.run("down")))
    checked(lab.run("up"))
    try:
        rates = [float(RATE.findall(checked(lab.run("bulk", str(nbytes))))[-1]) for _ in range(runs)]
        checked(lab.run("impair", "--delay", "40ms"))
        rtts = []
        for n in range(runs):
            name = f"{LAB}-{n}"
            pcap = lab.folder / "captures" / f"{name}.pcapng"
            pcap.unlink(missing_ok=True)        # an earlier run's
            checked(lab.run("capture", "--send", "ECHO x", "--name", name))
            [conn] = [c for c in analyze(pcap).connections if c.server.port == 7070]
            rtts.append((conn.handshake.ack_time - conn.handshake.syn_time) / 1e6)
    finally:
        lab.run("down")
    return {"up": median(ups), "down": median(downs), "bulk": median(rates), "rtt": median(rtts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bulk", type=int, default=50_000_000, help="bytes per BULK download")
    args = parser.parse_args()
    problem = engines_problem()
    if problem:
        raise SystemExit(f"no rootless engines: {problem}")
    copy = project_copy()
    labs = [Rootful(), *(Rootless(engine, copy) for engine in ENGINES)]
    found = {}
    for lab in labs:
        print(f"measuring {lab.name} ...", flush=True)
        found[lab.name] = measure(lab, args.runs, args.bulk)
    reference = found["rootful Docker"]
    rows = []
    for what, unit, key in (("warm up", "s", "up"), ("down", "s", "down"), ("BULK", "Mbit/s", "bulk"),
                            ("RTT, 40 ms delay", "ms", "rtt")):
        for lab in labs[1:]:
            ours = found[lab.name][key]
            rows.append([what, lab.name, f"{ours:.2f} {unit}", f"{reference[key]:.2f} {unit}",
                         f"{ours / reference[key]:.2f}x"])
    table(f"the lab on each engine (median of {args.runs}); reference: rootful Docker, same run",
          ["what", "engine", "figure", "rootful Docker", "ratio"], rows)


if __name__ == "__main__":
    main()
