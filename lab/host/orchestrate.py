"""Bringing a lab up and down with plain docker commands (no compose).

The model, in the order ``up`` builds it (names: lab.settings):

1. the image, built if missing (lab.image);
2. a user-defined bridge network with an explicit subnet, ``--internal`` by default
   so nothing in the lab reaches the outside world; Docker's embedded DNS on it is
   how the client finds the server by name (the default bridge has no such DNS);
3. the server container, DNS alias ``server``, and the client host container, which
   holds the client's address and namespace; each ``send`` or ``chat`` runs the
   client program in a fresh container that joins that namespace, so the client
   keeps one IP across runs and the capture and impair helpers can be pointed at it;
4. TSO/GSO/GRO offloads turned off in both namespaces by short-lived helpers, so
   that captures show wire-sized segments;
5. a real request through the network (``ECHO ready`` from the client host), which is
   how ``up`` knows the lab works: no fixed sleeps.

Server and client containers are hardened: a non-root user, no capabilities, no new
privileges, a read-only root filesystem with a small tmpfs, memory and pids limits.
Every docker command is echoed (lab.docker) so it can be replayed by hand; every
resource carries the lab's label, and a resource with our name but not our label is
reported and left alone.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Sequence

from invoke import Context
from invoke.exceptions import Exit

from lab.host.docker import Docker
from lab.host.image import build, say
from lab.host.settings import AUTO, AUTO_POOL, CONTAINER_ROLES, LABEL, ROLE_LABEL, Lab

READY_TIMEOUT = 30.0


# --- command construction (pure functions, tested without Docker) ----------------


def labels(lab: Lab, role: str) -> list[str]:
    return ["--label", lab.label, "--label", f"{ROLE_LABEL}={role}"]


def hardening(lab: Lab) -> list[str]:
    """The options that confine the server and client containers."""
    return [
        "--user", "lab",
        "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
        "--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,size=16m",
        "--memory", lab.memory, "--pids-limit", str(lab.pids),
    ]


def network_create_args(lab: Lab, subnet: str) -> list[str]:
    args = ["network", "create", "--driver", "bridge", "--subnet", subnet, *labels(lab, "network")[:2]]
    if lab.internal:
        args.append("--internal")
    return [*args, lab.network]


def server_run_args(lab: Lab) -> list[str]:
    return [
        "run", "--detach", "--name", lab.server, "--hostname", "server",
        "--network", lab.network, "--network-alias", "server",
        *labels(lab, "server"), *hardening(lab), lab.image,
        "python3", "-m", "lab.inside.server", "--host", "0.0.0.0", "--port", str(lab.port),
    ]


def client_host_run_args(lab: Lab) -> list[str]:
    return [
        "run", "--detach", "--name", lab.client, "--hostname", "client",
        "--network", lab.network, "--network-alias", "client",
        *labels(lab, "client"), *hardening(lab), lab.image,
        "sleep", "infinity",
    ]


def client_run_args(lab: Lab, client_args: Sequence[str], tty: bool = False) -> list[str]:
    """A one-shot client container in the client host's namespace."""
    return [
        "run", "--rm", "--interactive", *(["--tty"] if tty else []),
        "--network", f"container:{lab.client}",
        *labels(lab, "client-run"), *hardening(lab), lab.image,
        "python3", "-m", "lab.inside.client", "--host", "server", "--port", str(lab.port), *client_args,
    ]


def capability_options(capabilities: Sequence[str]) -> list[str]:
    """``--cap-add`` for each capability (after ``--cap-drop ALL``, the only ones a container has)."""
    return [option for capability in capabilities for option in ("--cap-add", capability)]


def helper_run_args(lab: Lab, namespace: str, command: Sequence[str],
                    capabilities: Sequence[str] = ("NET_ADMIN",)) -> list[str]:
    """A short-lived root container in ``namespace``'s network namespace, with NET_ADMIN only
    (or the ``capabilities`` given: crafting packets also needs NET_RAW).

    The one way to change an interface of a hardened container (which has no
    capabilities at all): a helper joins its namespace, does one thing, and exits.
    /run is writable for iptables' lock file; nothing else is.
    """
    return [
        "run", "--rm", "--network", f"container:{namespace}", *labels(lab, "helper"),
        "--user", "0", "--cap-drop", "ALL", *capability_options(capabilities),
        "--security-opt", "no-new-privileges", "--read-only", "--tmpfs", "/run:rw,size=1m",
        lab.image, *command,
    ]


# TSO/GSO/GRO hand a capture 64 KB "segments" the wire never carried; with them off,
# every captured segment is at most one MSS, as on a real link. Checksum offload
# (tx) off too, so the captured checksums are the ones on the wire, not placeholders.
OFFLOADS_OFF = ["ethtool", "-K", "eth0", "tso", "off", "gso", "off", "gro", "off", "tx", "off"]


def probe_args(lab: Lab) -> list[str]:
    """A real request from the client host to the server, by name, through the network.

    nc rather than lab.client: it answers the same question 50 ms sooner, because
    no Python interpreter has to start.
    """
    return ["exec", lab.client, "sh", "-c", f"echo 'ECHO ready' | nc -N -w 2 server {lab.port}"]


PROBE_REPLY = "OK ready"


# --- reading what exists ---------------------------------------------------------


def object_labels(obj: dict[str, Any]) -> dict[str, str]:
    """Labels of a container (under Config) or a network (at the top)."""
    return (obj.get("Config") or {}).get("Labels") or obj.get("Labels") or {}


def object_name(obj: dict[str, Any]) -> str:
    return obj.get("Name", "").lstrip("/")


def is_ours(obj: dict[str, Any], lab: Lab) -> bool:
    """Our label, and for a container also a role only our `docker run` sets."""
    found = object_labels(obj)
    if found.get(LABEL) != lab.name:
        return False
    return "IPAM" in obj or found.get(ROLE_LABEL) in CONTAINER_ROLES


def our_containers(docker: Docker, lab: Lab) -> list[str]:
    return docker.containers(lab.label, ROLE_LABEL, CONTAINER_ROLES)


def existing(docker: Docker, lab: Lab, with_image: bool = False) -> dict[str, dict[str, Any]]:
    """The lab's network and containers that exist, by name; foreign ones stop us.

    ``with_image`` asks about the image in the same call, found under its tag.
    """
    names = [lab.network, lab.server, lab.client] + ([lab.image] if with_image else [])
    found = {}
    for obj in docker.inspect(names):
        if lab.image in (obj.get("RepoTags") or []):
            found[lab.image] = obj
        else:
            found[object_name(obj)] = obj
    for name, obj in found.items():
        if name == lab.image:
            continue
        if not is_ours(obj, lab):
            kind = "network" if "IPAM" in obj else "container"
            raise Exit(f"a {kind} named {name!r} exists but was not made by lab {lab.name!r} "
                       "(its labels say so); rename or remove it yourself, or use --lab OTHER")
    return found


def running(obj: dict[str, Any] | None) -> bool:
    return bool(obj) and obj.get("State", {}).get("Running", False)


# --- the tasks' work ---------------------------------------------------------------


def create_network(docker: Docker, lab: Lab) -> str:
    """Create the lab network; with subnet "auto", the first free /24 of the pool."""
    if lab.subnet != AUTO:
        docker.run(network_create_args(lab, lab.subnet), quiet=True)
        return lab.subnet
    for candidate in AUTO_POOL.subnets(new_prefix=24):
        result = docker.run(network_create_args(lab, str(candidate)), quiet=True, check=False)
        if result.exited == 0:
            return str(candidate)
        if "overlaps" not in result.stderr:
            docker.run(network_create_args(lab, str(candidate)), quiet=True)  # raises the real error
    raise Exit(f"every /24 in {AUTO_POOL} is in use: set a subnet with INVOKE_LAB_SUBNET or in invoke.yaml")


def up(c: Context, lab: Lab) -> None:
    """Network, server and client host; return once the server answers through the network."""
    docker = Docker(c)
    found = existing(docker, lab, with_image=True)
    if lab.image not in found:
        build(c, lab, docker)
    if lab.network not in found:
        subnet = create_network(docker, lab)
        say(f"network {lab.network} ({subnet}{', internal' if lab.internal else ''})")
    stale = [name for name in (lab.server, lab.client) if name in found and not running(found[name])]
    if stale:
        docker.run(["rm", "--force", *stale], quiet=True)
    to_start = []
    if not running(found.get(lab.server)):
        to_start.append(server_run_args(lab))
    if not running(found.get(lab.client)):
        to_start.append(client_host_run_args(lab))
    if to_start:
        docker.run_parallel(to_start)
        started = [args[args.index("--name") + 1] for args in to_start]
        docker.run_parallel(helper_run_args(lab, name, OFFLOADS_OFF) for name in started)
        say(f"offloads off on eth0 of {', '.join(started)}: captures show wire-sized segments")
    wait_ready(docker, lab)
    say(f"lab {lab.name!r} is up: the server answers at server:{lab.port}")


def wait_ready(docker: Docker, lab: Lab) -> None:
    """Send real requests until one is answered; stop early if the server died."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        probe = docker.run(probe_args(lab), quiet=True, check=False)
        if probe.exited == 0 and probe.stdout.strip() == PROBE_REPLY:
            return
        server = docker.inspect([lab.server], kind="container")
        if not running(server[0] if server else None):
            tail = docker.run(["logs", "--tail", "1", lab.server], quiet=True, check=False)
            last = (tail.stderr or tail.stdout).strip().splitlines()
            raise Exit(f"the server container stopped: {last[-1] if last else 'no log'} "
                       f"(see: invoke logs --lab {lab.name})")
        if time.monotonic() > deadline:
            raise Exit(f"the server did not answer within {READY_TIMEOUT:.0f} s: "
                       f"{(probe.stderr or probe.stdout).strip() or 'no reply'}")


def require_up(docker: Docker, lab: Lab) -> dict[str, dict[str, Any]]:
    found = existing(docker, lab)
    if not (running(found.get(lab.server)) and running(found.get(lab.client))):
        raise Exit(f"lab {lab.name!r} is not up: run 'invoke up' first")
    return found


def send(c: Context, lab: Lab, client_args: Sequence[str], tty: bool = False) -> None:
    """Run the client once in a fresh container; its exit code becomes ours."""
    docker = Docker(c)
    require_up(docker, lab)
    result = docker.run(client_run_args(lab, client_args, tty=tty), check=False, pty=tty)
    if result.exited != 0:
        if not tty and result.stderr.strip():
            print(result.stderr.strip().splitlines()[-1], file=sys.stderr)
        raise Exit(code=result.exited)


def chat(c: Context, lab: Lab) -> None:
    if not sys.stdin.isatty():
        raise Exit("chat needs a terminal; to send requests from a script use: invoke send 'ECHO hi'")
    send(c, lab, ["--interactive"], tty=True)


def container_rows(docker: Docker, lab: Lab, impaired: dict[str, str] | None = None) -> list[dict[str, str]]:
    """One row per container of the lab, for the status table."""
    rows = []
    impaired = impaired or {}
    for obj in docker.inspect(our_containers(docker, lab), kind="container"):
        network = (obj.get("NetworkSettings", {}).get("Networks") or {}).get(lab.network) or {}
        ports = sorted((obj.get("Config", {}).get("ExposedPorts") or {}).keys())
        rows.append({
            "container": object_name(obj),
            "role": object_labels(obj).get(ROLE_LABEL, "?"),
            "ip": network.get("IPAddress") or "-",
            "mac": network.get("MacAddress") or "-",
            "ports": ", ".join(ports) if object_labels(obj).get(ROLE_LABEL) == "server" else "-",
            "state": obj.get("State", {}).get("Status", "?"),
            "impairments": impaired.get(object_name(obj), "-"),
        })
    return sorted(rows, key=lambda row: row["container"])


def status(c: Context, lab: Lab) -> None:
    from rich.table import Table

    from lab.terminal import console

    from lab import impair   # impair builds on this module's helpers

    docker = Docker(c)
    found = existing(docker, lab)
    up_now = running(found.get(lab.server)) and running(found.get(lab.client))
    rows = container_rows(docker, lab, impair.active(c, lab, found) if up_now else None)
    networks = [found[lab.network]] if lab.network in found else []
    if not rows and not networks:
        say(f"lab {lab.name!r} is down (nothing with label {lab.label})")
        return
    table = Table(title=f"lab {lab.name}")
    for column in ("container", "role", "IP", "MAC", "ports", "state", "impairments"):
        table.add_column(column, overflow="fold")  # wrap, never cut an address short
    for row in rows:
        table.add_row(*row.values())
    console().print(table)
    for net in networks:
        subnets = ", ".join(cfg.get("Subnet", "?") for cfg in (net.get("IPAM", {}).get("Config") or []))
        print(f"network {object_name(net)}: {subnets}{' (internal)' if net.get('Internal') else ''}")


def logs(c: Context, lab: Lab, role: str = "server", follow: bool = False, tail: int | None = None) -> None:
    docker = Docker(c)
    name = {"server": lab.server, "client": lab.client}.get(role)
    if name is None:
        raise Exit(f"--role must be server or client, got {role!r}")
    existing(docker, lab)
    args = ["logs", *(["--follow"] if follow else []), *(["--tail", str(tail)] if tail else []), name]
    result = docker.run(args, check=False, show_stderr=True)
    if result.exited != 0:
        raise Exit(f"no {role} container in lab {lab.name!r}: run 'invoke up' first")


def down(c: Context, lab: Lab) -> None:
    """Remove every container and network with this lab's label (and nothing else)."""
    docker = Docker(c)
    containers, networks = docker.gather(
        lambda: our_containers(docker, lab), lambda: docker.ids("network", lab.label))
    if containers:
        docker.run(["rm", "--force", *containers], quiet=True)
    if networks:
        docker.run(["network", "rm", *networks], quiet=True)
    if containers or networks:
        say(f"lab {lab.name!r} is down: removed {len(containers)} container(s), {len(networks)} network(s)")
    else:
        say(f"lab {lab.name!r} is already down")


def clean(c: Context, lab: Lab, base: bool = False) -> None:
    """down, then the lab's images (the bootstrapped base too with ``base``)."""
    down(c, lab)
    docker = Docker(c)
    images = []
    for image in docker.inspect(docker.ids("image", lab.label), kind="image"):
        if object_labels(image).get(ROLE_LABEL) == "base" and not base:
            continue
        images.extend(image.get("RepoTags") or [image["Id"]])
    if images:
        docker.run(["rmi", *images], quiet=True)
        say(f"removed image(s): {', '.join(images)}")
    else:
        say(f"lab {lab.name!r} has no images to remove")



def client_options(messages: Sequence[str], udp: bool = False, step: bool = False) -> list[str]:
    """lab.client's command line for the send task's options."""
    messages = [m for m in messages if m]
    if not messages:
        raise Exit("nothing to send: give a request line, e.g. invoke send 'ECHO hello'")
    if udp and step:
        raise Exit("--step works over TCP only (UDP has no connection to step through)")
    return [*(["--udp"] if udp else []), *(["--step"] if step else []), *messages]


def bulk_options(nbytes: str | int) -> list[str]:
    """lab.client's command line for downloading ``nbytes``."""
    try:
        count = int(nbytes)
    except ValueError:
        raise Exit(f"NBYTES must be a whole number of bytes, got {nbytes!r}") from None
    if count < 0:
        raise Exit(f"NBYTES must be 0 or more, got {count}")
    return ["--bulk", str(count)]
