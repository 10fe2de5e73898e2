"""Reading what a lab has in Docker now, and telling the lab's resources from anyone else's.

Ownership is by label, never by name alone: a network or container that carries
the lab's name but not its labels (and, for a container, a role only the lab's own
``docker run`` sets) is someone else's, reported and left alone.
"""

from __future__ import annotations

import json
from typing import Any

from lab.errors import LabError
from lab.host.engines.docker import Docker
from lab.host.engines.lab_engines import Engines
from lab.host.settings import DEFAULTS, LABEL, ROLE_LABEL, SYSCTLS_LABEL, Lab
from lab.host.topology import Topology

Found = dict[str, dict[str, Any]]
"""What ``docker inspect`` said of the lab's objects that exist, by name."""


def object_labels(obj: dict[str, Any]) -> dict[str, str]:
    """Labels of a container or an image (under Config) or a network (at the top)."""
    return (obj.get("Config") or {}).get("Labels") or obj.get("Labels") or {}


def sysctls_of(container: dict[str, Any]) -> dict[str, str]:
    """The sysctls a host was made with: as the engine reports them, else as the lab labelled
    them (Podman's Docker-compatible inspect answers null for them)."""
    reported = (container.get("HostConfig") or {}).get("Sysctls")
    if reported:
        return reported
    try:
        labelled = json.loads(object_labels(container).get(SYSCTLS_LABEL) or "{}")
    except ValueError:
        return {}
    return {str(key): str(value) for key, value in labelled.items()} if isinstance(labelled, dict) else {}


def image_names(image: dict[str, Any]) -> set[str]:
    """An image's repo:tag names as the lab writes them: Podman qualifies them with the registry
    (docker.io/tcplab/lab:x, localhost/tcplab/base:bookworm), and the lab then never found its
    own images and built them again at every `up`."""
    prefixes = ("docker.io/library/", "docker.io/", "localhost/")
    return {next((tag.removeprefix(p) for p in prefixes if tag.startswith(p)), tag)
            for tag in image.get("RepoTags") or []}


def object_name(obj: dict[str, Any]) -> str:
    return obj.get("Name", "").lstrip("/")


def kind_of(obj: dict[str, Any]) -> str:
    """What ``docker inspect`` described: a network, a container, an image or a volume."""
    if "IPAM" in obj:
        return "network"
    if "RepoTags" in obj:
        return "image"
    if "Mountpoint" in obj:
        return "volume"
    return "container"


def is_ours(obj: dict[str, Any], topology: Topology) -> bool:
    """Our label, and for a container also a role only our `docker run` sets."""
    found = object_labels(obj)
    if found.get(LABEL) != topology.lab.name:
        return False
    return kind_of(obj) == "network" or found.get(ROLE_LABEL) in topology.role_names


def our_containers(docker: Docker, topology: Topology, *labels: str) -> dict[str, dict[str, str]]:
    """Every container of the lab, whatever its state: id -> its role and the ``labels`` asked for."""
    return docker.containers(topology.lab.label, ROLE_LABEL, topology.role_names, labels)


def existing(engines: Engines, topology: Topology) -> Found:
    """The lab's network and long-lived containers that exist on its engines, by name; foreign ones
    stop us. A volume or an image that merely shares a container's name is not in the way
    (``docker inspect`` without a type finds those too) and is left out.
    """
    lab = topology.lab
    names = [lab.network, *(topology.container(role.name) for role in topology.long_lived)]
    found: Found = {}
    for obj in engines.inspect(names):
        kind = kind_of(obj)
        name = object_name(obj)
        if name not in names or kind != ("network" if name == lab.network else "container"):
            continue
        if not is_ours(obj, topology):
            raise LabError(f"a {kind} named {name!r} exists but was not made by lab {lab.name!r} "
                           "(its labels say so); rename or remove it yourself, or use --lab OTHER")
        found[name] = obj
    return found


def running(obj: dict[str, Any] | None) -> bool:
    return bool(obj and obj.get("State", {}).get("Running", False))


def is_up(found: Found, topology: Topology) -> bool:
    """Every long-lived container of the lab runs."""
    return all(running(found.get(topology.container(role.name))) for role in topology.long_lived)


def require_up(engines: Engines, topology: Topology) -> Found:
    """The lab's objects, or one line saying what to run to bring it up."""
    found = existing(engines, topology)
    if not is_up(found, topology):
        raise LabError(f"lab {topology.lab.name!r} is not up: run 'invoke up{lab_option(topology.lab)}' first")
    return found


def lab_option(lab: Lab) -> str:
    """`` --lab NAME`` for a command we tell the user to run, unless NAME is the default."""
    return "" if lab.name == DEFAULTS["name"] else f" --lab {lab.name}"


def on_lab_network(obj: dict[str, Any] | None, topology: Topology) -> dict[str, Any]:
    """What ``docker inspect`` says of a container's endpoint on the lab network ({} if it has none)."""
    networks = (obj or {}).get("NetworkSettings", {}).get("Networks") or {}
    return networks.get(topology.lab.network) or {}


def address_of(found: Found, container: str, topology: Topology) -> str:
    """A container's IPv4 address on the lab network ('' if it has none)."""
    return str(on_lab_network(found[container], topology).get("IPAddress") or "")


def mac_of(found: Found, container: str, topology: Topology) -> str:
    """A container's MAC address on the lab network ('' if it has none, or is not there)."""
    return str(on_lab_network(found.get(container), topology).get("MacAddress") or "")
