"""Which engine runs each host of the lab (the server, the client), and where its network is made.

A lab on one engine has nothing to choose: every host runs on the docker CLI's engine
(``None``). A lab whose kind spans nodes (a swarm) names its engines in ``nodes``.

The configuration names the engines as the docker CLI reaches them (``nodes``: addresses
or context names); the swarm knows each as a node, with an ID, a hostname and labels
(``docker node update --label-add tcplab.role=server NODE``). ``server_node`` and
``client_node`` choose by the swarm's names: a node's hostname, its ID, or ``KEY=VALUE``
for one of its labels. To match the two, each engine is asked its node ID (``docker
info``) and a manager of the swarm describes the nodes (``docker node inspect``). Without
them, the first engine runs the server and the second the client, as before, and the
first must be a manager; with them, the overlay is made on the first engine that is one
(a worker cannot create a swarm's network, only attach to it).
"""

from __future__ import annotations

import dataclasses
import functools
import json

from invoke import Context

from lab.errors import LabError
from lab.host.engines.docker import Docker, DockerError
from lab.host.settings import Lab

NODE_SETTINGS = {"server": "server_node", "client": "client_node"}
"""Each host role, and the setting that names its node."""


@dataclasses.dataclass(frozen=True)
class Node:
    """One engine of the lab, as the swarm describes it."""

    endpoint: str
    node_id: str
    manager: bool
    hostname: str = ""
    labels: tuple[tuple[str, str], ...] = ()

    def matches(self, wanted: str) -> bool:
        """By a label (KEY=VALUE), its hostname, or its ID or a prefix of it, as docker node takes one."""
        key, equals, value = wanted.partition("=")
        if equals:
            return (key, value) in self.labels
        return wanted == self.hostname or (len(wanted) >= 6 and self.node_id.startswith(wanted))

    def described(self) -> str:
        labels = ", ".join(f"{key}={value}" for key, value in self.labels) or "no labels"
        return f"{self.endpoint} (node {self.node_id[:12]}, hostname {self.hostname or '?'}, {labels})"


class Placement:
    """The lab's server, client and manager engines, each found when first asked for: ``down``,
    which needs only a manager, still works after the server's or client's node has left. An
    engine that does not answer is added to ``unreachable`` and is not chosen."""

    def __init__(self, c: Context, lab: Lab, unreachable: set[str]) -> None:
        self.c, self.lab, self.unreachable = c, lab, unreachable
        self.by_name = bool(lab.server_node or lab.client_node)

    def endpoint_of(self, host: str) -> str | None:
        """The engine that runs ``host`` (a host role: server or client) and every container in
        its namespace; None: the docker CLI's own."""
        if not self.lab.kind.spans_nodes:
            return None
        if host not in NODE_SETTINGS:
            raise KeyError(f"no setting places {host!r}: hosts are {', '.join(NODE_SETTINGS)}")
        return self.server if host == "server" else self.client

    @property
    def network_endpoint(self) -> str | None:
        """Where the lab network is made (a swarm's overlay: on a manager)."""
        return self.manager if self.lab.kind.spans_nodes else None

    @property
    def endpoints(self) -> tuple[str | None, ...]:
        """Every engine the lab may have containers on, in the configuration's order."""
        return tuple(dict.fromkeys(self.lab.nodes)) if self.lab.kind.spans_nodes else (None,)

    @functools.cached_property
    def nodes(self) -> list[Node]:
        return describe_nodes(self.c, self.lab.nodes, self.unreachable)

    @functools.cached_property
    def server(self) -> str:
        if not self.by_name:
            return self.lab.nodes[0]
        return choose(self.nodes, self.lab.server_node, "server_node", taken=None).endpoint

    @functools.cached_property
    def client(self) -> str:
        if not self.by_name:
            return self.lab.nodes[1]
        try:
            server = next(node for node in self.nodes if node.endpoint == self.server)
        except LabError:          # the server's node left: the client's can still be found (status, down)
            server = None
        return choose(self.nodes, self.lab.client_node, "client_node", taken=server).endpoint

    @functools.cached_property
    def manager(self) -> str:
        """Where the overlay is made: the server's engine by default, else the first manager."""
        if not self.by_name:
            return self.lab.nodes[0]
        return next(node.endpoint for node in self.nodes if node.manager)


def describe_nodes(c: Context, endpoints: tuple[str, ...], unreachable: set[str]) -> list[Node]:
    """Each answering engine's swarm node: its ID and role from the engine, its hostname and labels
    from a manager."""
    def swarm_of(endpoint: str) -> dict | None:
        try:
            found = Docker(c, echo=False, host=endpoint).run(["info", "--format", "{{json .Swarm}}"],
                                                                    quiet=True, echo=False)
        except DockerError:
            unreachable.add(endpoint)
            return None
        return json.loads(found.stdout or "{}")

    answers = Docker.gather(*(lambda endpoint=endpoint: swarm_of(endpoint) for endpoint in endpoints))
    answered = {endpoint: swarm for endpoint, swarm in zip(endpoints, answers) if swarm is not None}
    not_in_swarm = [endpoint for endpoint, swarm in answered.items() if not swarm.get("NodeID")]
    if not_in_swarm:
        raise LabError(f"{', '.join(not_in_swarm)} is not a node of a swarm: join it (docker swarm join) or take "
                       "it out of nodes")
    managers = [endpoint for endpoint, swarm in answered.items() if swarm.get("ControlAvailable")]
    if not managers:
        raise LabError("none of the lab's nodes that answer is a manager of the swarm: add one to nodes "
                       "(docker node ls on a manager lists them)")
    described = Docker(c, echo=False, host=managers[0]).inspect(
        [swarm["NodeID"] for swarm in answered.values()], kind="node")
    by_id = {item.get("ID"): item for item in described}
    return [node_of(endpoint, swarm, by_id.get(swarm["NodeID"], {})) for endpoint, swarm in answered.items()]


def node_of(endpoint: str, swarm: dict, description: dict) -> Node:
    """A Node from what its engine says of its swarm (``docker info``) and a manager of it (``docker
    node inspect``)."""
    return Node(endpoint, swarm["NodeID"], bool(swarm.get("ControlAvailable")),
                hostname=(description.get("Description") or {}).get("Hostname", ""),
                labels=tuple(sorted(((description.get("Spec") or {}).get("Labels") or {}).items())))


def choose(nodes: list[Node], wanted: str, setting: str, taken: Node | None) -> Node:
    """The first node (in the order of ``nodes``) that ``wanted`` names and that is not ``taken``;
    unset, the first one not taken."""
    free = [node for node in nodes if node != taken]
    if not wanted:
        if not free:
            raise LabError("the lab needs two nodes that answer, one for the server and one for the client")
        return free[0]
    for node in free:
        if node.matches(wanted):
            return node
    same = " (it names the server's node: the client needs another)" if taken and taken.matches(wanted) else ""
    raise LabError(f"no node of the lab matches {setting} {wanted!r}{same}; its nodes that answer: "
                   + "; ".join(node.described() for node in nodes)
                   + ". Name one by hostname, node ID or KEY=VALUE of a label (docker node update --label-add)")
