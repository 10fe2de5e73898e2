"""Two hosts on one machine: a real Docker Swarm of two engines (.ci/cluster), the lab's server
on one, its client on the other, a BULK download across the overlay, captured three ways.

What it proves about the multi-host path, with the lab's own image, capture engine and
analysis: the capture on the server's node and the one on the client's node hold the
same TCP segments, packet for packet; the capture of node 1's own interface holds them
inside VXLAN, 50 bytes each larger, and lab.inspect.overlay finds each one there; the
handshake agrees on an MSS of 1410 (1460 on a bridge); and nothing is left on any node.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import time

import pytest

from lab.inside.protocol import PORT
from lab.inspect import overlay
from lab.inspect.analysis import analyze
from lab.paths import CAPTURES_DIR, PROJECT_ROOT
from tests.helpers import invoke, ok

LAB = "nlt-swarm"
IMAGE = f"tcplab/lab:{LAB}"
CLUSTER = PROJECT_ROOT / ".ci" / "cluster"
SOCKETS = {1: "unix:///run/tcplab-cluster/node1.sock", 2: "unix:///run/tcplab-cluster/node2.sock"}
HARDENING = ["--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--read-only"]

pytestmark = [pytest.mark.docker, pytest.mark.needs("root", "ip")]      # a cluster of engines in namespaces


def on(node: int, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "-H", SOCKETS[node], *args], capture_output=True, check=check, timeout=300,
                          **kwargs)


@pytest.fixture(scope="module")
def cluster():
    ok(invoke("build", "--lab", LAB))
    made = subprocess.run(["bash", str(CLUSTER), "up", "2", IMAGE], capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr
    try:
        yield
    finally:
        subprocess.run(["bash", str(CLUSTER), "down"], capture_output=True, timeout=300)


def overlay_receive_offload_off(node: int, net_id: str) -> None:
    """GRO off on the overlay's VXLAN device on a node (in the network's sandbox namespace,
    which only the node's root can enter): otherwise it merges the segments it unwraps into
    super-segments before the container sees them, and the client's capture shows 6,990-byte
    segments where the wire carried 1,398-byte ones. The containers' own eth0 have theirs off."""
    sandbox = f"/run/tcplab-cluster/exec{node}/netns/1-{net_id[:10]}"
    subprocess.run(["nsenter", f"--net={sandbox}", "ethtool", "-K", "vxlan0", "gro", "off"], check=True,
                   capture_output=True, timeout=30)


def capture_start(node: int, name: str, network: str) -> subprocess.Popen:
    """The lab's capture engine on a node, in ``network`` (a container's, or the node's own)."""
    return subprocess.Popen(["docker", "-H", SOCKETS[node], "run", "--rm", "--name", name, "--network", network,
                             "--user", "0", *HARDENING, "--cap-add", "NET_RAW", IMAGE,
                             "python3", "-m", "lab.inside.capture", "--iface", "eth0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def segments(conn) -> dict[bool, list[tuple]]:
    """Each direction's TCP segments in order, (flags, seq, ack, length), by whether the client sent
    them. Each direction is the same at both ends; how the two interleave is not (at the server,
    a segment leaves before the ACK that is already on its way arrives; at the client, after)."""
    by_side: dict[bool, list[tuple]] = {True: [], False: []}
    for s in conn.segments:
        by_side[s.from_client].append((s.flags, s.seq_raw, s.ack_raw, s.length))
    return by_side


def out_of_place(few: list, many: list) -> int:
    """How many of ``few`` come after an item that ``many`` has later: 0 when ``few`` is ``many`` with
    some items left out, in the same order."""
    places: dict = collections.defaultdict(collections.deque)        # a segment sent twice has two places
    for number, item in enumerate(many):
        places[item].append(number)
    latest, late = -1, 0
    for item in few:
        place = places[item].popleft()
        if place < latest:
            late += 1
        latest = max(latest, place)
    return late


def arrived_as_sent(one_end: dict, other_end: dict, sent_by_client: bool, most_lost: int = 5) -> None:
    """Packet for packet, as two ends of one connection see it: each direction's segments arrive
    unchanged and in order, except the few the wire lost (the sender sent those again) or handed
    over late. The simulated wire is veths: a veth queues each packet on the backlog of the core
    that sent it, and consecutive segments sent from the two cores may be handed over in the other
    order; under load it drops one now and then. So every segment that arrived must have been sent,
    unchanged, at most a few out of place or lost, and the ACKs are compared as a set."""
    sender, receiver = (other_end, one_end) if sent_by_client else (one_end, other_end)
    data = sent_by_client                 # the key of the data direction: from_client
    assert not collections.Counter(receiver[data]) - collections.Counter(sender[data])    # nothing changed
    assert out_of_place(receiver[data], sender[data]) <= most_lost
    lost = [s for s in sender[data] if s not in receiver[data]]
    assert len(lost) <= most_lost and all(any(again[1] == s[1] for again in sender[data][sender[data].index(s) + 1:])
                                          for s in lost if s[3])           # every lost data segment was sent again
    acks_sent, acks_seen = collections.Counter(receiver[not data]), collections.Counter(sender[not data])
    assert not acks_seen - acks_sent and sum((acks_sent - acks_seen).values()) <= most_lost


def lab_connection(capture):
    [conn] = [c for c in capture.connections if c.server.port == PORT]
    return conn


def test_a_bulk_download_crosses_the_overlay_between_two_nodes_and_reads_the_same_at_both_ends(cluster, tmp_path):
    net = f"{LAB}-overlay"
    on(1, "network", "create", "--driver", "overlay", "--attachable", "--internal", "--subnet", "10.79.0.0/24",
       "--label", f"org.tcplab.lab={LAB}", net)
    on(1, "run", "-d", "--name", f"{LAB}-server", "--network", net, "--network-alias", "server", "--user", "lab",
       *HARDENING, IMAGE, "python3", "-m", "lab.inside.server", "--host", "0.0.0.0", "--port", str(PORT))
    on(2, "run", "-d", "--name", f"{LAB}-client", "--network", net, "--user", "lab", *HARDENING, IMAGE,
       "sleep", "infinity")
    # Offloads off, as `up` does; and the server's link at 100 Mbit/s (tbf): the two simulated hosts
    # share this machine's two cores, and an unlimited burst overflows the backlog of the veths
    # that stand in for the wire, which then drops a segment now and then.
    tbf = "tc qdisc replace dev eth0 root tbf rate 100mbit burst 64kb latency 50ms"
    for node, role, shaping in ((1, "server", tbf), (2, "client", "true")):
        on(node, "run", "--rm", "--network", f"container:{LAB}-{role}", "--user", "0", "--cap-drop", "ALL",
           "--cap-add", "NET_ADMIN", IMAGE, "sh", "-c", f"ethtool -K eth0 tso off gso off gro off tx off && {shaping}")
    net_id = on(1, "network", "inspect", "--format", "{{.Id}}", net, text=True).stdout.strip()
    for node in (1, 2):
        overlay_receive_offload_off(node, net_id)
    for _ in range(60):                                       # the overlay learns the far end in a moment
        answer = on(2, "exec", f"{LAB}-client", "sh", "-c", f"echo 'ECHO ready' | nc -N -w 2 server {PORT}",
                    check=False, text=True)
        if answer.stdout.strip() == "OK ready":
            break
        time.sleep(0.5)
    assert answer.stdout.strip() == "OK ready", answer.stderr
    engines = {"server": capture_start(1, f"{LAB}-cap-server", f"container:{LAB}-server"),
               "client": capture_start(2, f"{LAB}-cap-client", f"container:{LAB}-client"),
               "underlay": capture_start(1, f"{LAB}-cap-underlay", "host")}
    time.sleep(2)
    bulk = on(2, "run", "--rm", "--network", f"container:{LAB}-client", "--user", "lab", *HARDENING, IMAGE,
              "python3", "-m", "lab.inside.client", "--host", "server", "--port", str(PORT), "--bulk", "300000",
              text=True)
    assert "OK received 300000 bytes" in bulk.stdout
    time.sleep(1)
    files = {}
    for (where, engine), node in zip(engines.items(), (1, 2, 1)):
        on(node, "kill", "--signal", "INT", f"{LAB}-cap-{where}", check=False)
        out, _ = engine.communicate(timeout=60)
        files[where] = tmp_path / f"{where}.pcap"
        files[where].write_bytes(out)
    at_server = lab_connection(analyze(files["server"], keep=True))
    server_side, client_side = segments(at_server), segments(lab_connection(analyze(files["client"], keep=True)))
    assert len(server_side[False]) > 200
    arrived_as_sent(server_side, client_side, sent_by_client=False)
    assert at_server.segments[0].options.mss == 1410         # 1500 - 50 for VXLAN - 40 for IPv4 and TCP
    assert max(s.length for s in at_server.segments) == 1398                 # 1410 - 12 of TCP timestamps
    carried = overlay.unwrap(files["underlay"])
    assert carried and {p.overhead for p in carried} == {50}
    arrived_as_sent(server_side, segments(lab_connection(overlay.analyze_inner(files["underlay"]))),
                    sent_by_client=False)
    for node in (1, 2):
        on(node, "rm", "--force", f"{LAB}-server" if node == 1 else f"{LAB}-client")
    on(1, "network", "rm", net)
    for node in (1, 2):
        assert on(node, "ps", "-aq", text=True).stdout.split() == []


def test_the_lab_itself_runs_across_two_nodes_and_down_leaves_nothing_on_either(cluster):
    """`engine: swarm`: the lab's own tasks, unchanged, with the server on node 1 and the client on node 2."""
    env = {"INVOKE_LAB_ENGINE": "swarm", "INVOKE_LAB_NODES": f"{SOCKETS[1]},{SOCKETS[2]}",
           "INVOKE_LAB_SUBNET": "10.79.7.0/24"}
    lab = f"{LAB}-lab"
    try:
        up = ok(invoke("up", "--lab", lab, env=env, timeout=900))
        assert f"docker -H {SOCKETS[1]} run --detach --name {lab}-server" in up
        assert f"docker -H {SOCKETS[2]} run --detach --name {lab}-client" in up
        assert "an overlay between the nodes, not encrypted" in up
        assert "OK across hosts" in ok(invoke("send", "ECHO across hosts", "--lab", lab, env=env))
        status = ok(invoke("status", "--lab", lab, env={**env, "COLUMNS": "200"}))
        assert "an overlay between two nodes" in status and "running" in status
        out = ok(invoke("scenario", "tail-loss-rto", "--seed", "3", "--lab", lab, env=env))   # link, samplers, capture
        assert "retransmitted_by" in out and "backoff_reaches" in out
        ok(invoke("capture", "--bulk", "200000", "--underlay", "--name", f"{lab}-wire", "--lab", lab, env=env))
        wire = ok(invoke("inspect", "--pcap", str(CAPTURES_DIR / f"{lab}-wire.underlay.pcap"), "--ladders", "0",
                         env={"COLUMNS": "200"}))
        assert "inside VXLAN (UDP 4789" in wire and "each 50 bytes larger" in wire and "1 TCP connection" in wire
        ok(invoke("down", "--lab", lab, env=env))
        for node in (1, 2):
            assert on(node, "ps", "-aq", "--filter", f"label=org.tcplab.lab={lab}", text=True).stdout.split() == []
        assert on(1, "network", "ls", "-q", "--filter", f"label=org.tcplab.lab={lab}", text=True).stdout.split() == []
    finally:
        invoke("down", "--lab", lab, env=env)
        for made in [*CAPTURES_DIR.glob("tail-loss-rto-*seed3*"), *CAPTURES_DIR.glob(f"{lab}-wire*")]:
            made.unlink()


def test_a_swarm_lab_comes_up_beside_a_bridge_lab_on_the_same_engine(cluster):
    """With a bridge lab up on node 1 (the first free /24, 10.77.0.0/24), `up` with engine swarm
    chose 10.77.0.0/24 too, and every attach failed after 40 s: it now skips what a node uses."""
    bridge_env = {"DOCKER_HOST": SOCKETS[1], "INVOKE_LAB_SUBNET": "10.77.0.0/24"}
    swarm_env = {"INVOKE_LAB_ENGINE": "swarm", "INVOKE_LAB_NODES": f"{SOCKETS[1]},{SOCKETS[2]}"}
    bridge, swarm = f"{LAB}-br", f"{LAB}-ov"
    on(1, "tag", IMAGE, f"tcplab/lab:{bridge}")        # node 1 builds nothing: the lab's image is there
    try:
        ok(invoke("up", "--lab", bridge, env=bridge_env, timeout=900))
        up = ok(invoke("up", "--lab", swarm, env=swarm_env, timeout=900))
        made = re.search(r"network \S+ \((10\.77\.\d+\.0/24)", up)
        assert made and made[1] != "10.77.0.0/24", up[-2000:]
        assert "OK beside" in ok(invoke("send", "ECHO beside", "--lab", swarm, env=swarm_env))
        assert "OK still" in ok(invoke("send", "ECHO still", "--lab", bridge, env=bridge_env))
        ok(invoke("down", "--lab", swarm, env=swarm_env))
        assert on(1, "network", "ls", "-q", "--filter", f"label=org.tcplab.lab={swarm}", text=True).stdout.split() == []
    finally:
        invoke("down", "--lab", swarm, env=swarm_env)
        invoke("down", "--lab", bridge, env=bridge_env)


def kernel_takes_an_esp_key() -> bool:
    """Whether this machine's kernel (every node's here) can hold the keys of an encrypted overlay:
    asked in a throw-away network namespace, as the lab asks each node."""
    from lab.host.engines.encryption import ESP_KEY_PROBE

    return subprocess.run(["unshare", "--net", *ESP_KEY_PROBE], capture_output=True, timeout=30).returncode == 0


def test_placed_by_node_label_through_docker_contexts_with_the_server_on_a_worker(cluster, tmp_path):
    """Nodes named as docker contexts (in the test's own DOCKER_CONFIG), the server placed by the
    label tcplab.node=node2 on node 2, which is a worker, the client on node 1; the overlay is
    made on node 1, the manager; encrypted as far as this kernel allows, and said."""
    config = {"DOCKER_CONFIG": str(tmp_path / "docker-config")}
    for node in (1, 2):
        subprocess.run(["docker", "context", "create", f"tcplab-node{node}", "--docker", f"host={SOCKETS[node]}"],
                       env={**os.environ, **config}, check=True, capture_output=True, timeout=60)
    env = {**config, "INVOKE_LAB_ENGINE": "swarm", "INVOKE_LAB_NODES": "tcplab-node1,tcplab-node2",
           "INVOKE_LAB_SERVER_NODE": "tcplab.node=node2", "INVOKE_LAB_CLIENT_NODE": "tcplab.node=node1",
           "INVOKE_LAB_SUBNET": "10.79.11.0/24"}
    lab = f"{LAB}-placed"
    esp = kernel_takes_an_esp_key()
    try:
        if not esp:
            refused = invoke("up", "--lab", lab, env={**env, "INVOKE_LAB_ENCRYPT": "yes"}, timeout=900)
            assert refused.returncode == 1 and "Traceback" not in refused.stderr
            assert "encrypt is yes, but a node's kernel has no IPsec ESP" in refused.stderr
            assert on(1, "network", "ls", "-q", "--filter", f"label=org.tcplab.lab={lab}", text=True).stdout == ""
        up = ok(invoke("up", "--lab", lab, env=env, timeout=900))
        assert "docker --context tcplab-node1 network create --driver overlay" in up
        assert f"docker --context tcplab-node2 run --detach --name {lab}-server" in up
        assert f"docker --context tcplab-node1 run --detach --name {lab}-client" in up
        assert ("encrypted (IPsec ESP" if esp else "not encrypted: a node's kernel has no IPsec ESP") in up
        assert on(2, "ps", "-q", "--filter", f"name={lab}-server", text=True).stdout.strip()
        assert "OK placed" in ok(invoke("send", "ECHO placed", "--lab", lab, env=env))
        status = ok(invoke("status", "--lab", lab, env={**env, "COLUMNS": "250"}))
        assert "the server on tcplab-node2, the client on tcplab-node1" in status
        ok(invoke("down", "--lab", lab, env=env))
        for node in (1, 2):
            assert on(node, "ps", "-aq", "--filter", f"label=org.tcplab.lab={lab}", text=True).stdout.split() == []
        assert on(1, "network", "ls", "-q", "--filter", f"label=org.tcplab.lab={lab}", text=True).stdout == ""
    finally:
        invoke("down", "--lab", lab, env=env)


def test_a_class_is_spread_over_the_nodes_by_free_memory_and_goes_down_from_all_of_them(cluster):
    env = {"INVOKE_LAB_ENGINE": "swarm", "INVOKE_LAB_NODES": f"{SOCKETS[1]},{SOCKETS[2]}"}
    group = "nlt-swcls"
    try:
        out = ok(invoke("class", "up", "--count", "4", "--group", group, env=env, timeout=900))
        assert f"2 on {SOCKETS[1]}, 2 on {SOCKETS[2]}" in out          # the same memory each: they alternate
        status = ok(invoke("class", "status", "--group", group, env={**env, "COLUMNS": "200"}))
        placed = {line.split()[1]: line.split()[3] for line in status.splitlines() if f"{group}-0" in line}
        assert sorted(placed.values()) == sorted([SOCKETS[1]] * 2 + [SOCKETS[2]] * 2) and "NO" not in status
        for lab, node in placed.items():                             # each lab works on its node, alone
            number = 1 if node == SOCKETS[1] else 2
            answer = on(number, "exec", f"{lab}-client", "sh", "-c", "echo 'ECHO mine' | nc -N -w 2 server 7070",
                        text=True)
            assert answer.stdout.strip() == "OK mine"
        neighbours = [lab for lab, node in placed.items() if node == SOCKETS[1]]      # two labs on one node
        other = json.loads(on(1, "inspect", f"{neighbours[1]}-server", text=True).stdout)[0]
        other_ip = next(iter(other["NetworkSettings"]["Networks"].values()))["IPAddress"]
        reach = on(1, "exec", f"{neighbours[0]}-client", "nc", "-z", "-w", "2", other_ip, "7070", check=False)
        assert reach.returncode != 0                                 # a lab cannot reach its neighbour's server
        assert "removed 4 labs" in ok(invoke("class", "down", "--group", group, env=env))
        for number in (1, 2):
            left = on(number, "ps", "-aq", "--filter", f"label=org.tcplab.group={group}", text=True).stdout.split()
            assert left == []
    finally:
        invoke("class", "down", "--group", group, env=env)


def test_a_node_that_leaves_mid_lab_is_said_and_down_cleans_what_it_can_reach(cluster):
    """Last in this file: it stops node 2's engine, and the cluster goes down after it. The lab is
    placed by label, so that its client's node is one that no longer answers when status asks."""
    env = {"INVOKE_LAB_ENGINE": "swarm", "INVOKE_LAB_NODES": f"{SOCKETS[1]},{SOCKETS[2]}",
           "INVOKE_LAB_SUBNET": "10.79.8.0/24", "INVOKE_LAB_SERVER_NODE": "tcplab.node=node1",
           "INVOKE_LAB_CLIENT_NODE": "tcplab.node=node2"}
    lab = f"{LAB}-gone"
    ok(invoke("up", "--lab", lab, env=env))
    pid = int(open("/run/tcplab-cluster/node2.pid").read())
    os.kill(pid, 15)
    for _ in range(40):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.25)
    status = ok(invoke("status", "--lab", lab, env={**env, "COLUMNS": "200"}))
    assert f"node {SOCKETS[2]} does not answer" in status and f"{lab}-server" in status
    assert "the client on a node that does not answer (tcplab.node=node2)" in status
    down = invoke("down", "--lab", lab, env=env)
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert f"{SOCKETS[2]} does not answer" in down.stderr and "run invoke down again when it is back" in down.stderr
    assert on(1, "ps", "-aq", "--filter", f"label=org.tcplab.lab={lab}", text=True).stdout.split() == []
