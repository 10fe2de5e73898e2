"""Bringing a lab up and down with plain docker commands (no compose).

``up`` builds the description (lab.host.topology) in this order:

1. the image, built if missing (lab.host.image);
2. a user-defined bridge network with an explicit subnet, ``--internal`` by default
   so nothing in the lab reaches the outside world; Docker's embedded DNS on it is
   how the client finds the server by name (the default bridge has no such DNS);
3. the long-lived containers (the server, and the client host, which holds the
   client's address and namespace: each ``send`` or ``chat`` runs the client
   program in a fresh container that joins it, so the client keeps one IP across
   runs and the capture and impair helpers can be pointed at it);
4. each new namespace prepared by a short-lived helper: TSO/GSO/GRO offloads off,
   so that captures show wire-sized segments; and the host shut out (see
   :func:`namespace_setup`);
5. a real request through the network (``ECHO ready`` from the client host), which
   is how ``up`` knows the lab works: no fixed sleeps.

``down`` removes every container and network with the lab's label, and nothing else.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import shlex
import time

from invoke import Context

from lab.errors import LabError
from lab.host.docker import Docker, explain
from lab.host.encryption import choose_encryption
from lab.host.engine_kernel import EngineKernel, probe
from lab.host.image import build, build_unless_current, is_current
from lab.host.safe_files import remove_partial_capture
from lab.host.settings import AUTO, AUTO_POOL, BASE_IMAGE, PART_LABEL, Lab
from lab.host.state import existing, lab_option, our_containers, running
from lab.host.swarm import NodeDocker, docker_for
from lab.host.topology import Topology, describe
from lab.terminal import say

CC_SYSCTL = "net.ipv4.tcp_congestion_control"

READY_TIMEOUT = 30.0

# TSO/GSO/GRO hand a capture 64 KB "segments" the wire never carried; with them off,
# every captured segment is at most one MSS, as on a real link. Checksum offload
# (tx) off too, so the captured checksums are the ones on the wire, not placeholders.
OFFLOADS_OFF = ["ethtool", "-K", "eth0", "tso", "off", "gso", "off", "gro", "off", "tx", "off"]
ISOLATION_COMMENT = "tcplab-isolation"


def namespace_setup(network: dict) -> list[str]:
    """The helper's command for a new lab namespace: offloads off, and no way to the host.

    An --internal network keeps packets from leaving the bridge, but Docker still
    gives each container a default route to the bridge's gateway address, which is
    the host itself, and the host's INPUT chain lets them in: any service on the
    host that listens on 0.0.0.0 would be one `nc` away from every lab. The lab
    needs only its subnet, so the default route goes, and what on the subnet
    reaches the host (its gateway address, and broadcast and multicast, which the
    host hears too) is dropped on the way out. The lab's containers have no
    NET_ADMIN and cannot undo either; the host's own firewall is left as it is.
    """
    gateway, broadcast = gateway_of(network)
    drops = [["iptables", "-A", "OUTPUT", "-d", address, "-m", "comment", "--comment", ISOLATION_COMMENT, "-j", "DROP"]
             for address in (gateway, broadcast, "255.255.255.255", "224.0.0.0/4")]
    return ["sh", "-c", " && ".join([shlex.join(OFFLOADS_OFF), "{ ip route del default 2>/dev/null; true; }",
                                     *map(shlex.join, drops)])]


def gateway_of(network: dict) -> tuple[str, str]:
    """The lab network's gateway address (the host's address on it) and its broadcast address."""
    for config in network.get("IPAM", {}).get("Config") or []:
        if config.get("Subnet"):
            subnet = ipaddress.ip_network(config["Subnet"], strict=False)
            # Docker's default, which it records only when it was given (lab networks give it).
            gateway = config.get("Gateway") or str(subnet.network_address + 1)
            return gateway.split("/")[0], str(subnet.broadcast_address)
    raise LabError(f"the network {network.get('Name', '?')} has no subnet: remove it (invoke down) "
                   "and bring the lab up again")
PROBE_REPLY = "OK ready"


def probe_args(topology: Topology) -> list[str]:
    """A real request from the client host to the server, by name, through the network.

    nc rather than lab.inside.client: it answers the same question 50 ms sooner,
    because no Python interpreter has to start.
    """
    return ["exec", topology.container("client"), "sh", "-c",
            f"echo 'ECHO ready' | nc -N -w 2 server {topology.lab.port}"]


def create_network(docker: Docker, topology: Topology, encrypted: bool = False) -> str:
    """Create the lab network; with subnet "auto", the first free /24 of the pool."""
    lab = topology.lab
    taken = docker.subnets_in_use() if lab.engine == "swarm" else []     # a bridge engine says "overlaps" itself
    if lab.subnet != AUTO:
        clash = next((net for net in taken if net.overlaps(ipaddress.ip_network(lab.subnet))), None)
        if clash is not None:
            raise LabError(f"the lab's subnet {lab.subnet} overlaps {clash}, a network on one of the nodes: pick "
                           "another with INVOKE_LAB_SUBNET or 'subnet' in invoke.yaml")
        docker.run(topology.network_create_args(lab.subnet, encrypted), quiet=True)
        return lab.subnet
    for candidate in AUTO_POOL.subnets(new_prefix=24):
        if any(candidate.overlaps(net) for net in taken):
            continue
        args = topology.network_create_args(str(candidate), encrypted)
        result = docker.run(args, quiet=True, check=False, echo=False)     # a try: only the one that works is told
        if result.exited == 0:
            docker.print_command(args)
            return str(candidate)
        if "overlaps" not in result.stderr:
            docker.run(args, quiet=True)                                    # raises the real error
    raise LabError(f"every /24 in {AUTO_POOL} is in use: set a subnet with INVOKE_LAB_SUBNET or in invoke.yaml")


def up(c: Context, lab: Lab, topology: Topology | None = None) -> None:
    """Network and long-lived containers; return once the server answers through the network."""
    topology = topology or describe(lab)
    docker = docker_for(c, lab)
    found = existing(docker, topology, with_image=lab.engine != "swarm")
    refuse_another_congestion_control(found, topology)
    if isinstance(docker, NodeDocker):        # built here, then copied to the nodes that lack it
        build_unless_current(c, lab, Docker(c))
        docker.distribute(lab.image, is_current)
    elif lab.image not in found or not is_current(found[lab.image]):
        if lab.image in found:
            say(f"image {lab.image} was built from older code: building it again")
        build(c, lab, docker)
        found.pop(lab.image, None)
    if any(not running(found.get(topology.container(role.name))) for role in topology.long_lived):
        # Hosts will be made, with the engine's kernel's settings: ask that kernel first, before
        # anything is created for a congestion control it would refuse.
        kernel = kernel_of(c, lab, docker)
        if lab.cc != AUTO:
            kernel.check(lab.cc)
        lab = dataclasses.replace(lab, kernel=kernel)
        topology = describe(lab)
    subnet: str | None
    if lab.network not in found:
        encrypted, said = choose_encryption(docker, topology) if isinstance(docker, NodeDocker) else (False, "")
        subnet = create_network(docker, topology, encrypted)
        say(f"network {lab.network} ({subnet}{', internal' if lab.internal else ''}"
            + (f", an overlay between the nodes, {said} (see the README's Across hosts)" if said else "") + ")")
    else:
        subnet = next((str(cfg["Subnet"]) for cfg in (found[lab.network].get("IPAM", {}).get("Config") or [])
                       if cfg.get("Subnet")), None)
    names = [topology.container(role.name) for role in topology.long_lived]
    stale = [name for name in names if name in found and not running(found[name])]
    if lab.engine != "swarm":
        # A running server from an image since rebuilt runs the old code: a request the new
        # code knows (CC) was answered "unknown verb". It starts again from the new image.
        image = [found[lab.image]] if lab.image in found else docker.inspect([lab.image], kind="image")
        outdated = [name for name in names if running(found.get(name)) and image
                    and found[name].get("Image") != image[0].get("Id")]
        if outdated:
            say(f"{', '.join(outdated)} ran an older image of the lab: starting them again from the new one")
            kept = ((found[outdated[0]].get("HostConfig") or {}).get("Sysctls") or {}).get(CC_SYSCTL)
            if lab.cc == AUTO and kept:          # the lab keeps the congestion control it was made with
                lab = dataclasses.replace(lab, cc=kept)
                topology = describe(lab)
            stale += outdated
            found = {key: value for key, value in found.items() if key not in outdated}
    if stale:
        docker.run(["rm", "--force", *stale], quiet=True)
    to_start = [role.name for role in topology.long_lived if not running(found.get(topology.container(role.name)))]
    if to_start:
        docker.run_parallel(topology.run_args(role, subnet=subnet) for role in to_start)
        started = [topology.container(role) for role in to_start]
        setup = namespace_setup(docker.inspect([lab.network], kind="network")[0])
        results = docker.gather(*(lambda name=name: docker.run(topology.run_args("helper", command=setup, joins=name),
                                                             quiet=True, check=False) for name in started))
        for name, result in zip(started, results):
            if result.exited != 0:
                raise LabError(stopped_container(docker, name) or explain(result.stderr, f"docker run ... {name}"))
        say(f"offloads off on eth0 of {', '.join(started)} (captures show wire-sized segments); "
            "no route to the host")
    wait_ready(docker, topology)
    say(f"lab {lab.name!r} is up: the server answers at server:{lab.port}"
        + (f"; congestion control {lab.cc}" if lab.cc != AUTO else ""))


def refuse_another_congestion_control(found: dict, topology: Topology) -> None:
    """A namespace's congestion control is set when it is made: a running lab keeps its own."""
    lab = topology.lab
    if lab.cc == AUTO:
        return
    for role in topology.hosts:
        obj = found.get(topology.container(role.name))
        if obj is not None and running(obj):
            now = ((obj.get("HostConfig") or {}).get("Sysctls") or {}).get(CC_SYSCTL, "the default")
            if now != lab.cc:
                raise LabError(f"lab {lab.name!r} is up with congestion control {now}: run 'invoke down"
                               f"{lab_option(lab)}' first, then 'invoke up --cc {lab.cc}{lab_option(lab)}'")


def stopped_container(docker: Docker, name: str) -> str | None:
    """'the X container stopped: <its last log line>' if ``name`` is not running, else None."""
    inspected = docker.inspect([name], kind="container")
    if running(inspected[0] if inspected else None):
        return None
    tail = docker.run(["logs", "--tail", "1", name], quiet=True, check=False)
    last = (tail.stderr or tail.stdout).strip().splitlines()
    state = (inspected[0].get("State", {}) if inspected else {})
    why = last[-1] if last else f"exit {state.get('ExitCode', '?')}{', out of memory' if state.get('OOMKilled') else ''}"
    return f"the {name} container stopped: {why} (see: docker logs {name})"


def wait_ready(docker: Docker, topology: Topology) -> None:
    """Send real requests until one is answered; stop early if the server died."""
    server = topology.container("server")
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        probe = docker.run(probe_args(topology), quiet=True, check=False)
        if probe.exited == 0 and probe.stdout.strip() == PROBE_REPLY:
            return
        stopped = stopped_container(docker, server)
        if stopped:
            raise LabError(stopped)
        if time.monotonic() > deadline:
            raise LabError(f"the server did not answer within {READY_TIMEOUT:.0f} s: "
                           f"{(probe.stderr or probe.stdout).strip() or 'no reply'}")


def down(c: Context, lab: Lab) -> None:
    """Remove every container and network with this lab's label (and nothing else)."""
    topology = describe(lab)
    docker = docker_for(c, lab)
    containers, networks = docker.gather(
        lambda: our_containers(docker, topology, PART_LABEL), lambda: docker.ids("network", lab.label))
    if containers:
        docker.run(["rm", "--force", *containers], quiet=True)
        for labels in containers.values():          # an orphaned capture's partial file goes with it
            remove_partial_capture(labels.get(PART_LABEL, ""))
    unreachable = sorted(docker.unreachable)        # a swarm lab's node that left
    if networks:
        kept = docker.run(["network", "rm", *networks], quiet=True, check=not unreachable).exited != 0
        if not kept and isinstance(docker, NodeDocker):      # an overlay stays listed for seconds
            wait_until_gone(docker, lab)
    if unreachable:
        raise LabError(f"lab {lab.name!r}: removed {len(containers)} container(s)"
                       + ("" if networks and kept else f" and {len(networks)} network(s)")
                       + f" where the nodes answered; {', '.join(unreachable)} does not answer, so the lab's "
                       "containers there" + (" and its network" if networks and kept else "")
                       + " remain: run invoke down again when it is back")
    if containers or networks:
        say(f"lab {lab.name!r} is down: removed {len(containers)} container(s), {len(networks)} network(s)")
    else:
        say(f"lab {lab.name!r} is already down")


def kernel_of(c: Context, lab: Lab, docker: Docker) -> EngineKernel:
    """The kernel the lab's namespaces will be made on: the engine's (each node's, for a swarm lab:
    what all of them offer), asked with the lab's image, which is there once up has built it."""
    if isinstance(docker, NodeDocker):
        return EngineKernel.of_all([probe(Docker(c, host=node, echo=False), lab.image)
                                    for node in dict.fromkeys(lab.nodes)])
    return probe(docker, lab.image)


def wait_until_gone(docker: Docker, lab: Lab, timeout: float = 30.0) -> None:
    """Return when the engine no longer lists the lab's network: a swarm's overlay stays listed
    for seconds after its removal, and a lab brought up again at once would find it."""
    deadline = time.monotonic() + timeout
    while docker.ids("network", lab.label) and time.monotonic() < deadline:
        time.sleep(0.5)


def clean(c: Context, lab: Lab, base: bool = False) -> None:
    """down, then the lab's image (and the base it bootstrapped, with ``base``).

    An image is the lab's by its tag, not by its labels: an image someone built
    FROM the lab's image inherits every label of it, and is theirs.
    """
    down(c, lab)
    docker = docker_for(c, lab)
    ours = {lab.image} | ({BASE_IMAGE} if base else set())
    images = []
    for image in docker.inspect(docker.ids("image", lab.label), kind="image"):
        images.extend(sorted(ours & set(image.get("RepoTags") or [])))
    if images:
        docker.run(["rmi", *images], quiet=True)
        say(f"removed image(s): {', '.join(images)}")
    else:
        say(f"lab {lab.name!r} has no images to remove")
