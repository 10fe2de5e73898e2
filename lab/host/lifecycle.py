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
import os
import shlex
import time

from invoke import Context

from lab.errors import LabError
from lab.host.capture import leftovers
from lab.host.engines.docker import OVERLAP_WORDS, Docker, explain
from lab.host.engines.encryption import choose_encryption
from lab.host.engines.image_copy import copy_image
from lab.host.engines.kernel import KERNEL_ANSWER_ENV, EngineKernel, probe
from lab.host.engines.kernel import parse as parse_kernel_answer
from lab.host.engines.lab_engines import Engines
from lab.host.image import build_unless_current, is_current
from lab.host.isolation import cut_from_host_steps
from lab.host.settings import AUTO, AUTO_POOL, BASE_IMAGE, Lab
from lab.host.state import existing, image_names, lab_option, our_containers, running, sysctls_of
from lab.host.topology import Topology, describe
from lab.paths import CAPTURES_DIR
from lab.scenarios.model import needs_refused, refused_words
from lab.terminal import say

CC_SYSCTL = "net.ipv4.tcp_congestion_control"

READY_TIMEOUT = 30.0
NAMES_GRACE_S = 3.0     # an engine's DNS may take a moment to learn a new container's name; not 30 s

# TSO/GSO/GRO hand a capture 64 KB "segments" the wire never carried; with them off,
# every captured segment is at most one MSS, as on a real link. Checksum offload
# (tx) off too, so the captured checksums are the ones on the wire, not placeholders.
OFFLOADS_OFF = ["ethtool", "-K", "eth0", "tso", "off", "gso", "off", "gro", "off", "tx", "off"]


def namespace_setup(network: dict) -> list[str]:
    """The helper's command for a new lab namespace: offloads off, and no way to the host
    (lab.host.isolation says why)."""
    return ["sh", "-c", " && ".join([shlex.join(OFFLOADS_OFF), *cut_from_host_steps(network)])]


PROBE_REPLY = "OK ready"


def probe_args(topology: Topology) -> list[str]:
    """A real request from the client host to the server, by name, through the network.

    nc rather than lab.inside.client: it answers the same question 50 ms sooner,
    because no Python interpreter has to start.
    """
    return ["exec", topology.container("client"), "sh", "-c",
            f"echo 'ECHO ready' | nc -N -w 2 server {topology.lab.port}"]


def create_network(engines: Engines, topology: Topology, encrypted: bool = False) -> str:
    """Create the lab network; with subnet "auto", the first free /24 of the pool."""
    lab = topology.lab
    docker = engines.network
    taken = [] if lab.kind.says_overlaps else engines.subnets_in_use()
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
        if not any(words in result.stderr for words in OVERLAP_WORDS):
            docker.run(args, quiet=True)                                    # raises the real error
    raise LabError(f"every /24 in {AUTO_POOL} is in use: set a subnet with INVOKE_LAB_SUBNET or in invoke.yaml")


def up(c: Context, lab: Lab, topology: Topology | None = None) -> None:
    """Network and long-lived containers; return once the server answers through the network."""
    topology = topology or describe(lab)
    engines = Engines(c, lab)
    found = existing(engines, topology)
    refuse_another_congestion_control(found, topology)
    say_engine(engines)
    image_ids = image_everywhere(c, lab, engines)
    if any(not running(found.get(topology.container(role.name))) for role in topology.long_lived):
        # Hosts will be made, with the engine's kernel's settings: ask that kernel first, before
        # anything is created for a congestion control it would refuse.
        kernel = kernel_of(lab, engines)
        if lab.cc != AUTO:
            kernel.check(lab.cc)
        say_lessons_lacking(kernel)
        lab = dataclasses.replace(lab, kernel=kernel)
        topology = describe(lab)
    subnet: str | None
    if lab.network not in found:
        encrypted, said = choose_encryption(engines, topology) if lab.kind.between_hosts else (False, "")
        subnet = create_network(engines, topology, encrypted)
        say(f"network {lab.network} ({subnet}{', internal' if lab.internal else ''}"
            + (f", an overlay between the nodes, {said} (see the README's Across hosts)" if said else "") + ")")
    else:
        subnet = next((str(cfg["Subnet"]) for cfg in (found[lab.network].get("IPAM", {}).get("Config") or [])
                       if cfg.get("Subnet")), None)
    hosts = [role.name for role in topology.long_lived]
    held = {host: found[topology.container(host)] for host in hosts if topology.container(host) in found}
    stale = [host for host, container in held.items() if not running(container)]
    # A running server from an image since rebuilt runs the old code: a request the new
    # code knows (CC) was answered "unknown verb". It starts again from the new image.
    # So does one made before the lab wrote its names into /etc/hosts: the engine's DNS can lose them.
    outdated = [host for host, container in held.items() if running(container)
                and (container.get("Image") != image_ids[engines.of(host).host] or lacks_names(container, topology))]
    if outdated:
        names = [topology.container(host) for host in outdated]
        say(f"{', '.join(names)} ran an older image of the lab or lacked its names in /etc/hosts: starting them "
            "again as this version makes them")
        kept = sysctls_of(held[outdated[0]]).get(CC_SYSCTL)
        if lab.cc == AUTO and kept:          # the lab keeps the congestion control it was made with
            lab = dataclasses.replace(lab, cc=kept)
            topology = describe(lab)
        stale += outdated
        found = {key: value for key, value in found.items() if key not in names}
    for host in stale:
        engines.of(host).run(["rm", "--force", topology.container(host)], quiet=True)
    to_start = [host for host in hosts if not running(found.get(topology.container(host)))]
    if to_start:
        Docker.gather(*(lambda host=host: engines.run(topology.launch(host, subnet=subnet), quiet=True)
                        for host in to_start))
        setup = namespace_setup(engines.network.inspect([lab.network], kind="network")[0])
        results = Docker.gather(*(lambda host=host: engines.run(topology.launch("helper", command=setup, joins=host),
                                                                quiet=True, check=False) for host in to_start))
        for host, result in zip(to_start, results):
            if result.exited != 0:
                raise LabError(stopped_container(engines.of(host), topology.container(host))
                               or explain(result.stderr, f"docker run ... {topology.container(host)}"))
        say(f"offloads off on eth0 of {', '.join(map(topology.container, to_start))} (captures show wire-sized "
            "segments); no route to the host")
        forget_old_neighbours(engines, topology, [host for host in hosts if host not in to_start])
    wait_ready(engines, topology)
    say(f"lab {lab.name!r} is up: the server answers at server:{lab.port}"
        + (f"; congestion control {lab.cc}" if lab.cc != AUTO else ""))


def say_engine(engines: Engines) -> None:
    """Which engine the lab runs on, and what a learner should know of it (limits not enforced)."""
    product = engines.network.product()
    warning = product.limits_warning()
    say(f"engine: {product.words()}" + (f"; {warning}" if warning else ""))


def say_lessons_lacking(kernel: EngineKernel) -> None:
    """The scenarios this engine's kernel will refuse (their congestion control is not allowed to
    containers), said before a learner meets the refusal in a lesson."""
    refused = needs_refused(kernel.allowed) if kernel.allowed else {}
    if refused:
        say(f"this engine lets containers use only {', '.join(kernel.allowed)}: the scenarios "
            f"{refused_words(refused)} cannot run here (invoke doctor says more)")


def forget_old_neighbours(engines: Engines, topology: Topology, kept: list[str]) -> None:
    """The hosts that kept running forget the MACs they knew: Podman gives a host made again a
    new random MAC, and the client's neighbour cache sent the server's packets to the old one
    for some 24 s (Docker derives the MAC from the address, so there nothing changes)."""
    Docker.gather(*(lambda host=host: engines.run(topology.launch("helper", command=["ip", "neigh", "flush", "dev",
                                                                                   "eth0"], joins=host),
                                                  quiet=True, check=False, echo=False) for host in kept))


def lacks_names(container: dict, topology: Topology) -> bool:
    """A host of a lab with fixed addresses made without the lab's names in its /etc/hosts."""
    extra = (container.get("HostConfig") or {}).get("ExtraHosts") or []
    return topology.lab.kind.fixed_addresses and not any(entry.startswith("server:") for entry in extra)


def refuse_another_congestion_control(found: dict, topology: Topology) -> None:
    """A namespace's congestion control is set when it is made: a running lab keeps its own."""
    lab = topology.lab
    if lab.cc == AUTO:
        return
    for role in topology.hosts:
        obj = found.get(topology.container(role.name))
        if obj is not None and running(obj):
            now = sysctls_of(obj).get(CC_SYSCTL, "the default")
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


def wait_ready(engines: Engines, topology: Topology) -> None:
    """Send real requests until one is answered; stop early if the server died."""
    server = topology.container("server")
    started = time.monotonic()
    deadline = started + READY_TIMEOUT
    pause = 0.05
    while True:
        probe = engines.of("client").run(probe_args(topology), quiet=True, check=False)
        if probe.exited == 0 and probe.stdout.strip() == PROBE_REPLY:
            return
        stopped = stopped_container(engines.of("server"), server)
        if stopped:
            raise LabError(stopped)
        if "getaddrinfo" in probe.stderr and time.monotonic() - started > NAMES_GRACE_S:
            raise LabError(f"the client cannot resolve 'server' (the engine's DNS lost the lab's names): run "
                           f"'invoke down{lab_option(topology.lab)}', then 'invoke up{lab_option(topology.lab)}', "
                           "which puts them in every container's /etc/hosts")
        if time.monotonic() > deadline:
            raise LabError(f"the server did not answer within {READY_TIMEOUT:.0f} s: "
                           f"{(probe.stderr or probe.stdout).strip() or 'no reply'}")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.5)   # each try is an exec: through Podman's socket, a conmon each


def down(c: Context, lab: Lab) -> None:
    """Remove every container and network with this lab's label (and nothing else)."""
    topology = describe(lab)
    engines = Engines(c, lab)

    def remove_containers(docker: Docker) -> list[str]:
        containers = list(our_containers(docker, topology))
        if containers:
            docker.run(["rm", "--force", *containers], quiet=True)
        return containers

    containers = [container for found in engines.each(remove_containers) for container in found]
    for line in leftovers.sweep(CAPTURES_DIR):      # a killed capture's files: recovered or removed
        say(line)
    unreachable = sorted(engines.unreachable)       # a swarm lab's node that left
    networks = engines.network.ids("network", lab.label)
    if networks:
        docker = engines.network
        kept = docker.run(["network", "rm", *networks], quiet=True, check=not unreachable).exited != 0
        if not kept and lab.kind.network_lingers:
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


def kernel_of(lab: Lab, engines: Engines) -> EngineKernel:
    """The kernel the lab's namespaces will be made on: the engine's (each node's, for a lab across
    nodes: what all of them offer), asked with the lab's image, which is there once up has built it;
    or, for a lab of a class on one engine, what the class asked that engine once for all its labs."""
    told = os.environ.get(KERNEL_ANSWER_ENV)
    if told is not None and not lab.kind.spans_nodes:
        return parse_kernel_answer(told)
    return EngineKernel.of_all(engines.each(lambda docker: probe(docker, lab.image)))


def image_everywhere(c: Context, lab: Lab, engines: Engines) -> dict[str | None, str | None]:
    """The lab's image, current, on every engine of the lab: built on this machine's engine (if it is
    missing or was built from older code), then copied to each other engine that lacks it; its ID
    on each, by endpoint (None: this machine's)."""
    ids: dict[str | None, str | None] = {None: build_unless_current(c, lab, engines.home)}
    for docker in engines.others:
        ids[docker.host] = copy_image(docker, lab.image, is_current)
    return ids


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
    engines = Engines(c, lab)
    ours = {lab.image} | ({BASE_IMAGE} if base else set())

    def remove_images(docker: Docker) -> list[str]:
        images = []
        for image in docker.inspect(docker.ids("image", lab.label), kind="image"):
            images.extend(sorted(ours & image_names(image)))
        if images:
            docker.run(["rmi", *images], quiet=True)
        return images

    removed = sorted({image for docker in dict.fromkeys([engines.home, *engines.others])
                      for image in remove_images(docker)})
    if removed:
        say(f"removed image(s): {', '.join(removed)}")
    else:
        say(f"lab {lab.name!r} has no images to remove")
