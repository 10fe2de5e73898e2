"""Many labs on one host: `invoke class up/down` for 10, 25 and 50 labs next to bare docker.

The floor is the same work in bare docker commands, four labs at a time as `class up`
brings them (a network with its own /24, the server and the client host, the offload
helpers, a request until it is answered; then rm -f and network rm). With every lab
of the largest class up and idle, `docker stats` gives each container's memory and
CPU: the footprint of a lab, and how many this host would hold.

    python bench/class.py [--sizes 10,25,50]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in (HERE, "")] + [HERE]
from common import table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GROUP, FLOOR = "benchclass", "benchfloor"
IMAGE = f"tcplab/lab:{GROUP}"
PARALLEL = 4
HARDENING = ("--user lab --cap-drop ALL --security-opt no-new-privileges --read-only "
             "--tmpfs /tmp:rw,nosuid,nodev,size=16m --memory 256m --pids-limit 128")


def floor_up(number: int) -> None:
    name = f"{FLOOR}-{number:02d}"
    script = f"""
docker network create --internal --subnet 10.78.{number}.0/24 --label bench={FLOOR} {name}-net >/dev/null
docker run -d --name {name}-server --network {name}-net --network-alias server --label bench={FLOOR} {HARDENING} \
    {IMAGE} python3 -m lab.inside.server --host 0.0.0.0 --port 7070 >/dev/null &
docker run -d --name {name}-client --network {name}-net --label bench={FLOOR} {HARDENING} {IMAGE} sleep infinity >/dev/null &
wait
for c in server client; do
    docker run --rm --network container:{name}-$c --user 0 --cap-drop ALL --cap-add NET_ADMIN {IMAGE} \
        ethtool -K eth0 tso off gso off gro off tx off >/dev/null &
done
wait
until [ "$(docker exec {name}-client sh -c 'echo ECHO ready | nc -N -w 2 server 7070')" = "OK ready" ]; do :; done
"""
    subprocess.run(["sh", "-c", script], check=True)


def floor_down() -> None:
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=bench={FLOOR}"], capture_output=True,
                         text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], check=True, stdout=subprocess.DEVNULL)
    nets = subprocess.run(["docker", "network", "ls", "-q", "--filter", f"label=bench={FLOOR}"], capture_output=True,
                          text=True).stdout.split()
    if nets:
        subprocess.run(["docker", "network", "rm", *nets], check=True, stdout=subprocess.DEVNULL)


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def invoke(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def floor_class_up(count: int) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        list(pool.map(floor_up, range(1, count + 1)))


def footprint() -> tuple[float, float, int]:
    """(MiB of memory, % of one CPU, containers) of the class's containers, idle, from docker stats."""
    ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=org.tcplab.group={GROUP}"], capture_output=True,
                         text=True).stdout.split()
    out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}\t{{.CPUPerc}}", *ids],
                         capture_output=True, text=True, check=True).stdout
    memory = cpu = 0.0
    units = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}
    for line in out.splitlines():
        used, percent = line.split("\t")
        value, unit = re.match(r"([\d.]+)\s*([A-Za-z]+)", used.split("/")[0].strip()).groups()
        memory += float(value) * units[unit]
        cpu += float(percent.rstrip("%"))
    return memory, cpu, len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,25,50")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    invoke("class", "down", "--group", GROUP)
    floor_down()
    invoke("build", "--lab", GROUP)                     # both sides start from a built image
    rows, stats = [], None
    for count in sizes:
        ours_up = timed(lambda count=count: invoke("class", "up", "--count", str(count), "--group", GROUP))
        if count == max(sizes):
            time.sleep(10)                              # idle: the servers wait, the clients sleep
            stats = footprint()
        ours_down = timed(lambda: invoke("class", "down", "--group", GROUP))
        bare_up = timed(lambda count=count: floor_class_up(count))
        bare_down = timed(floor_down)
        rows.append([str(count), f"{ours_up:.1f}", f"{bare_up:.1f}", f"{ours_up / bare_up:.2f}",
                     f"{ours_down:.1f}", f"{bare_down:.1f}", f"{ours_down / bare_down:.2f}"])
    table(f"class up / down, {PARALLEL} labs at a time (seconds)",
          ["labs", "class up", "bare docker up", "ratio", "class down", "bare docker down", "ratio"], rows)
    if stats:
        memory, cpu, containers = stats
        labs = max(sizes)
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
        per_lab = memory / labs
        table(f"{labs} labs up and idle ({containers} containers), docker stats",
              ["", "memory MiB", "CPU % of one core"],
              [["all labs", f"{memory:.0f}", f"{cpu:.2f}"], ["per lab", f"{per_lab:.1f}", f"{cpu / labs:.3f}"],
               [f"labs in this host's {total / 1024:.0f} GiB at that footprint", f"{total / per_lab:.0f}", ""]])


if __name__ == "__main__":
    main()
