"""Warm `invoke up` and `invoke down` next to the floor: the same work in bare docker commands.

Floor for up: the same work in bare docker commands: docker network create, docker
run of the server and of the client host (at once, as `up` does), the two
offload helpers (at once), then docker exec of the same request until it is answered. Floor for down: docker rm -f of both and
docker network rm. A third row times `invoke --version`, the part of every task that
is Python and invoke starting. Both run in this process tree, alternating, on a warm engine (the
image is built first); medians of --runs runs are compared.

    python bench/lab.py [--runs 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

# Last on the path, not first: bench/inspect.py would hide the standard library's inspect.
HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in (HERE, "")] + [HERE]
from common import median, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LAB = "benchlab"
FLOOR = "benchfloor"
IMAGE = f"tcplab/lab:{LAB}"

HARDENING = ("--user lab --cap-drop ALL --security-opt no-new-privileges --read-only "
             "--tmpfs /tmp:rw,nosuid,nodev,size=16m --memory 256m --pids-limit 128")
FLOOR_UP = f"""
docker network create --internal --subnet 10.77.250.0/24 {FLOOR}-net >/dev/null
docker run -d --name {FLOOR}-server --network {FLOOR}-net --network-alias server {HARDENING} \
    {IMAGE} python3 -m lab.inside.server --host 0.0.0.0 --port 7070 >/dev/null &
docker run -d --name {FLOOR}-client --network {FLOOR}-net {HARDENING} {IMAGE} sleep infinity >/dev/null &
wait
for c in server client; do
    docker run --rm --network container:{FLOOR}-$c --user 0 --cap-drop ALL --cap-add NET_ADMIN {IMAGE} \
        ethtool -K eth0 tso off gso off gro off tx off &
done
wait
until [ "$(docker exec {FLOOR}-client sh -c 'echo ECHO ready | nc -N -w 2 server 7070')" = "OK ready" ]; do :; done
"""
FLOOR_DOWN = (f"docker rm -f {FLOOR}-server {FLOOR}-client >/dev/null && "
              f"docker network rm {FLOOR}-net >/dev/null")


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def invoke(*args: str) -> list[str]:
    return [sys.executable, "-m", "invoke", *args, "--lab", LAB]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    subprocess.run(invoke("build"), cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(invoke("down"), cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    times: dict[str, list[float]] = {"up": [], "floor up": [], "down": [], "floor down": [], "start": []}
    for _ in range(args.runs):
        times["start"].append(timed([sys.executable, "-m", "invoke", "--version"]))
        times["floor up"].append(timed(["bash", "-c", FLOOR_UP]))
        times["up"].append(timed(invoke("up")))
        times["floor down"].append(timed(["bash", "-c", FLOOR_DOWN]))
        times["down"].append(timed(invoke("down")))
    rows = []
    for step in ("up", "down"):
        ours, floor = median(times[step]), median(times[f"floor {step}"])
        rows.append([f"invoke {step}", f"{ours:.3f}", f"{floor:.3f}", f"{ours / floor:.2f}x"])
    rows.append(["invoke --version", f"{median(times['start']):.3f}", "-", "-"])
    table(f"warm lab up/down vs bare docker (median of {args.runs})",
          ["step", "tcplab s", "bare docker s", "ratio"], rows)


if __name__ == "__main__":
    main()
