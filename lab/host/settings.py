"""What one lab is called and made of: names, labels and addresses, from invoke's config.

Naming scheme (every name derives from the lab name, so two labs never collide):

    network         <lab>-net          a user-defined bridge, --internal by default
    server          <lab>-server       runs lab.server; DNS alias "server" on the network
    client host     <lab>-client       the client's network identity (its IP, MAC and
                                       namespace); each `invoke send` runs the client
                                       program in a fresh container that joins it
    capture         <lab>-capture      `invoke capture`'s engine, in the server's namespace
    (helpers)       unnamed, --rm      short-lived NET_ADMIN containers that set
                                       offloads and impairments in a namespace
    image           <image>:<lab>      built from docker/Dockerfile
    base image      netlab/base:bookworm   debian:bookworm-slim's stand-in where no
                                       registry answers (built with debootstrap)

Every resource carries the label ``org.netlab.lab=<lab>``, and containers also
``org.netlab.role=<role>``: the lab touches nothing without its label. (Containers
inherit their image's labels, so for a container the role must be one the lab
sets: see CONTAINER_ROLES.)

Configuration comes the invoke way: defaults in tasks.py, ``invoke.yaml`` beside
it, ``INVOKE_LAB_<KEY>`` environment variables, ``invoke -f FILE``, then the
``--lab`` option every task takes.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any

from invoke.exceptions import Exit

LABEL = "org.netlab.lab"
ROLE_LABEL = "org.netlab.role"
# Roles the lab's own `docker run` commands set. Containers inherit their image's
# labels, so a container someone else starts from our image carries our lab label
# too (with the image's role, "image"): only these roles make a container ours.
CONTAINER_ROLES = ("server", "client", "client-run", "capture", "helper")
BASE_IMAGE = "netlab/base:bookworm"
SLIM_IMAGE = "debian:bookworm-slim"
AUTO = "auto"
# A pool outside Docker's default address pools (172.17-31.0.0/16 and
# 192.168.0.0/16), from which "auto" picks the first free /24.
AUTO_POOL = ipaddress.ip_network("10.77.0.0/16")

DEFAULTS: dict[str, Any] = {
    "name": "netlab",
    "subnet": AUTO,
    "port": 7000,
    "image": "netlab/lab",
    "internal": True,
    "mirror": AUTO,
    "memory": "256m",
    "pids": 128,
}

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,30}$")


@dataclasses.dataclass(frozen=True)
class Lab:
    """One lab's settings and the names derived from them."""

    name: str
    subnet: str
    port: int
    image_repo: str
    internal: bool
    mirror: str
    memory: str
    pids: int

    @property
    def network(self) -> str:
        return f"{self.name}-net"

    @property
    def server(self) -> str:
        return f"{self.name}-server"

    @property
    def client(self) -> str:
        return f"{self.name}-client"

    @property
    def capture(self) -> str:
        return f"{self.name}-capture"

    @property
    def image(self) -> str:
        return f"{self.image_repo}:{self.name}"

    @property
    def label(self) -> str:
        """The ``key=value`` that marks this lab's resources."""
        return f"{LABEL}={self.name}"


def from_config(config: Any, lab: str | None = None) -> Lab:
    """Build a Lab from invoke's ``config.lab`` section, with the ``--lab`` override."""
    section = {**DEFAULTS, **dict(config.get("lab", {}) or {})}
    name = lab or section["name"]
    if not _NAME.match(str(name)):
        raise Exit(f"lab name {name!r} is not usable: use up to 31 lowercase letters, digits, '-', '_' or '.'")
    try:
        port = int(section["port"])
    except (TypeError, ValueError):
        raise Exit(f"lab port {section['port']!r} is not a number: fix it in invoke.yaml or INVOKE_LAB_PORT") from None
    if not 1 <= port <= 65535:
        raise Exit(f"lab port {port} is out of range: use 1024..65535 (the server runs without root)")
    subnet = str(section["subnet"])
    if subnet != AUTO:
        try:
            subnet = str(ipaddress.ip_network(subnet, strict=True))
        except ValueError:
            raise Exit(f"subnet {subnet!r} is not a network like 10.77.0.0/24: fix it in invoke.yaml or INVOKE_LAB_SUBNET") from None
    internal = section["internal"]
    if isinstance(internal, str):
        internal = internal.strip().lower() not in ("0", "false", "no", "off")
    return Lab(
        name=str(name),
        subnet=subnet,
        port=port,
        image_repo=str(section["image"]),
        internal=bool(internal),
        mirror=str(section["mirror"]),
        memory=str(section["memory"]),
        pids=int(section["pids"]),
    )


def pick_subnet(used: list[str]) -> str:
    """The first /24 of AUTO_POOL that overlaps none of the ``used`` subnets."""
    taken = []
    for text in used:
        try:
            taken.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            continue
    for candidate in AUTO_POOL.subnets(new_prefix=24):
        if not any(candidate.overlaps(net) for net in taken if net.version == 4):
            return str(candidate)
    raise Exit(f"every /24 in {AUTO_POOL} is in use: set a subnet with INVOKE_LAB_SUBNET or in invoke.yaml")
