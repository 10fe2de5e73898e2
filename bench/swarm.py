"""The lab across two hosts: up/down, throughput and RTT over the overlay, and what VXLAN adds.

On a two-node swarm made on this machine (.ci/cluster, two real engines in network
namespaces; root only), in one run:

* `invoke up` and `invoke down` of a swarm lab next to the same work in bare docker
  commands (an overlay, the server on node 1, the client on node 2, the offload
  helpers, a request until answered; rm and network rm), medians of --runs; `up` also
  with encrypt: no, which does not ask the nodes' kernels whether they can encrypt;
* a BULK download's throughput and the TCP connect time (SYN to SYN/ACK seen by the
  client, median of 50) between the containers over the overlay, next to the same
  programs run in the nodes' own namespaces, talking over the "wire" directly, with
  the nodes' offloads as they are and then off, as the lab's containers have them;
* the bytes per packet on node 1's interface against inside the server's namespace
  for the same download: the overlay's overhead, measured from the two captures.

    sudo python bench/swarm.py [--runs 3] [--bulk 20000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p not in (HERE, "")] + [HERE]
from common import table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LAB, FLOOR = "benchswarm", "benchswfloor"
IMAGE = f"tcplab/lab:{LAB}"
NODES = ("unix:///run/tcplab-cluster/node1.sock", "unix:///run/tcplab-cluster/node2.sock")
NODE1_IP = "192.168.77.1"
ENV = {**os.environ, "INVOKE_LAB_ENGINE": "swarm", "INVOKE_LAB_NODES": ",".join(NODES),
       "INVOKE_LAB_SUBNET": "10.79.20.0/24"}
OFFLOADS_OFF = ("ethtool", "-K", "eth0", "tso", "off", "gso", "off", "gro", "off", "tx", "off")
CONNECT_TIMES = ("import socket, sys, time\n"
                 "host, port, out = sys.argv[1], int(sys.argv[2]), []\n"
                 "for _ in range(50):\n"
                 "    s = socket.socket(); t = time.perf_counter(); s.connect((host, port))\n"
                 "    out.append(time.perf_counter() - t); s.close(); time.sleep(0.01)\n"
                 "out.sort(); print(out[len(out) // 2] * 1e3)")


def on(node: int, *args: str, check: bool = True) -> str:
    return subprocess.run(["docker", "-H", NODES[node - 1], *args], capture_output=True, text=True,
                          check=check).stdout


def timed(work, env=None) -> float:
    """Seconds ``work`` took: a command line, or a function."""
    started = time.perf_counter()
    if callable(work):
        work()
    else:
        subprocess.run(work, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def floor_up() -> None:
    on(1, "network", "create", "--driver", "overlay", "--attachable", "--internal", "--subnet", "10.79.21.0/24",
       f"{FLOOR}-net")
    on(1, "run", "-d", "--name", f"{FLOOR}-server", "--network", f"{FLOOR}-net", "--network-alias", "server",
       IMAGE, "python3", "-m", "lab.inside.server", "--host", "0.0.0.0", "--port", "7070")
    on(2, "run", "-d", "--name", f"{FLOOR}-client", "--network", f"{FLOOR}-net", IMAGE, "sleep", "infinity")
    for node, role in ((1, "server"), (2, "client")):
        on(node, "run", "--rm", "--network", f"container:{FLOOR}-{role}", "--user", "0", "--cap-add", "NET_ADMIN",
           IMAGE, "ethtool", "-K", "eth0", "tso", "off", "gso", "off", "gro", "off", "tx", "off")
    while on(2, "exec", f"{FLOOR}-client", "sh", "-c", "echo 'ECHO ready' | nc -N -w 2 server 7070",
             check=False).strip() != "OK ready":
        pass


def floor_down() -> None:
    on(1, "rm", "-f", f"{FLOOR}-server")
    on(2, "rm", "-f", f"{FLOOR}-client")
    on(1, "network", "rm", f"{FLOOR}-net")


def invoke(*args: str) -> list[str]:
    return [sys.executable, "-m", "invoke", *args, "--lab", LAB]


def bulk_mbit(node: int, network: str, host: str, nbytes: int) -> float:
    out = on(node, "run", "--rm", "--network", network, IMAGE, "python3", "-m", "lab.inside.client", "--host", host,
             "--port", "7070", "--bulk", str(nbytes))
    return float(out.rsplit("(", 1)[1].split(",")[1].split()[0])          # "... (167.2 MB/s, 1337 Mbit/s)"


def connect_ms(node: int, network: str, host: str) -> float:
    return float(on(node, "run", "--rm", "--network", network, IMAGE, "python3", "-c", CONNECT_TIMES, host, "7070"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bulk", type=int, default=20_000_000)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/swarm.py makes network namespaces and engines: run it as root")
    subprocess.run(invoke("build"), cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["bash", str(ROOT / ".ci" / "cluster"), "up", "2", IMAGE], check=True, stdout=subprocess.DEVNULL)
    try:
        ups, plain_ups, downs, floor_ups, floor_downs = [], [], [], [], []
        for _ in range(args.runs):
            ups.append(timed(invoke("up"), ENV))
            downs.append(timed(invoke("down"), ENV))
            plain_ups.append(timed(invoke("up"), {**ENV, "INVOKE_LAB_ENCRYPT": "no"}))
            timed(invoke("down"), ENV)
            floor_ups.append(timed(floor_up))
            floor_downs.append(timed(floor_down))
        up, plain, floor = (statistics.median(times) for times in (ups, plain_ups, floor_ups))
        down, floor_d = statistics.median(downs), statistics.median(floor_downs)
        table(f"a lab across two nodes, median of {args.runs} (seconds)", ["", "invoke", "bare docker", "ratio"],
              [["up (encrypt: auto, the nodes' kernels asked)", f"{up:.1f}", f"{floor:.1f}", f"{up / floor:.2f}"],
               ["up (encrypt: no)", f"{plain:.1f}", f"{floor:.1f}", f"{plain / floor:.2f}"],
               ["down", f"{down:.1f}", f"{floor_d:.1f}", f"{down / floor_d:.2f}"]])

        subprocess.run(invoke("up"), cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL)
        over = (bulk_mbit(2, f"container:{LAB}-client", "server", args.bulk),
                connect_ms(2, f"container:{LAB}-client", "server"))
        on(1, "run", "-d", "--name", f"{LAB}-direct", "--network", "host", IMAGE, "python3", "-m",
           "lab.inside.server", "--host", NODE1_IP, "--port", "7070")
        time.sleep(1)
        direct = (bulk_mbit(2, "host", NODE1_IP, args.bulk), connect_ms(2, "host", NODE1_IP))
        for node in (1, 2):         # as the lab's containers have them: wire-sized segments, no offloads
            subprocess.run(["nsenter", f"--net=/var/run/netns/tcplab-node{node}", *OFFLOADS_OFF], check=True,
                           stdout=subprocess.DEVNULL)
        like_lab = bulk_mbit(2, "host", NODE1_IP, args.bulk)
        on(1, "rm", "-f", f"{LAB}-direct")
        table("between the containers over the overlay, and between the nodes directly (same programs)",
              ["", "overlay", "nodes directly", "ratio"],
              [["BULK throughput, Mbit/s", f"{over[0]:.0f}", f"{direct[0]:.0f}", f"{over[0] / direct[0]:.2f}"],
               ["BULK, the nodes' offloads off as the lab's are", f"{over[0]:.0f}", f"{like_lab:.0f}",
                f"{over[0] / like_lab:.2f}"],
               ["TCP connect (SYN to SYN/ACK), ms", f"{over[1]:.3f}", f"{direct[1]:.3f}",
                f"{over[1] / direct[1]:.2f}"]])

        name = f"bench-overhead-{os.getpid()}"
        subprocess.run(invoke("capture", "--bulk", "2000000", "--underlay", "--name", name), cwd=ROOT,
                       env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        captures = ROOT / "captures"
        inner_path, outer_path = captures / f"{name}.pcapng", captures / f"{name}.underlay.pcap"
        from lab.inspect import overlay
        from lab.inspect.decode import tcp_header
        from lab.inspect.reader import read_records

        with open(inner_path, "rb") as stream:          # the lab's TCP frames, as the server's eth0 has them
            inner = [r.wire_length for r in read_records(stream) if tcp_header(r.linktype, r.data) is not None]
        outer = [p.outer_length for p in overlay.unwrap(outer_path) if tcp_header(overlay.ETHERNET, p.inner)]
        for path in (inner_path, outer_path):
            path.unlink()
        table("the same 2 MB download, bytes per packet: inside the server's namespace and on node 1's interface",
              ["", "packets", "mean bytes", "total bytes"],
              [["inside (the lab's capture)", f"{len(inner)}", f"{statistics.mean(inner):.1f}", f"{sum(inner):,}"],
               ["on the wire (VXLAN)", f"{len(outer)}", f"{statistics.mean(outer):.1f}", f"{sum(outer):,}"],
               ["overhead", "", f"{statistics.mean(outer) - statistics.mean(inner):.1f}",
                f"{sum(outer) / sum(inner) - 1:.1%}"]])
    finally:
        subprocess.run(invoke("down"), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["bash", str(ROOT / ".ci" / "cluster"), "down"], stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
