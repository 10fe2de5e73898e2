"""The lab's engines by host: each docker command goes to the engine the lab's description names.

A lab has hosts, the roles with an address of their own (the server, the client); every
other container runs in one of their namespaces, so on that host's engine. The topology
says which host a container belongs to (``Topology.launch``: the host and the ``docker
run`` arguments), the placement says which engine runs each host, and :class:`Engines`
holds one :class:`Docker` per engine. Nothing is recovered from a command's words:

    engines.run(topology.launch("client-run", "ECHO hi"))     the client's engine
    engines.of("server").run(["logs", "lab-server"])         the server's engine
    engines.each(lambda docker: docker.ids("network", ...))  every engine, in parallel

On one engine (a bridge lab) all three are the same Docker; across a swarm's nodes they
are two, and ``each`` asks both. An engine that does not answer ``each`` is remembered in
``unreachable``, and the others answer alone.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

from invoke import Context
from invoke.runners import Result

from lab.host.engines.docker import Docker, DockerError
from lab.host.engines.placement import Placement
from lab.host.settings import Lab
from lab.host.topology import Launch

T = TypeVar("T")
ATTACH_TRIES = 3


class Engines:
    """One Docker per engine of the lab, chosen by host."""

    def __init__(self, c: Context, lab: Lab, echo: bool = True) -> None:
        self.c, self.lab, self.echo = c, lab, echo
        self.kind = lab.kind
        self.unreachable: set[str] = set()
        self.placement = Placement(c, lab, self.unreachable)
        self._dockers: dict[str | None, Docker] = {}

    def quiet(self) -> Engines:
        """The same engines, placed the same way (nothing asked again), whose commands go to the
        command log only: housekeeping the learner need not read."""
        quiet = Engines(self.c, self.lab, echo=False)
        quiet.unreachable, quiet.placement = self.unreachable, self.placement
        return quiet

    def at(self, endpoint: str | None) -> Docker:
        """The Docker of one engine (None: the docker CLI's own, where images are built)."""
        if endpoint not in self._dockers:
            self._dockers[endpoint] = Docker(self.c, self.echo, host=endpoint)
        return self._dockers[endpoint]

    def of(self, host: str) -> Docker:
        """The engine that runs ``host`` (server or client) and everything in its namespace."""
        return self.at(self.placement.endpoint_of(host))

    @property
    def network(self) -> Docker:
        """The engine where the lab network is made and removed."""
        return self.at(self.placement.network_endpoint)

    @property
    def home(self) -> Docker:
        """This machine's engine: where the image is built before it goes to the others."""
        return self.at(None)

    @property
    def others(self) -> list[Docker]:
        """The lab's engines that are not this machine's (they get the image by copy)."""
        return [self.at(endpoint) for endpoint in self.placement.endpoints if endpoint is not None]

    def run(self, launch: Launch, **kwargs: Any) -> Result:
        """``docker run`` a container of the lab on its host's engine.

        A swarm worker asks the manager for the container's place on the overlay; right
        after another overlay came or went, that answer can miss the engine's deadline
        ("attaching to network failed"): the named container is removed and started again.
        """
        docker = self.of(launch.host)
        name = launch.name
        for attempt in range(ATTACH_TRIES):
            try:
                return docker.run(launch.args, **kwargs)
            except DockerError as error:
                if "attaching to network failed" not in str(error) or attempt + 1 == ATTACH_TRIES or not name:
                    raise
                docker.run(["rm", "--force", name], quiet=True, check=False, echo=False)
        raise AssertionError("unreachable")

    def popen(self, launch: Launch, *args: Any, **kwargs: Any):
        """A container of the lab started in the background on its host's engine (Docker.popen)."""
        return self.of(launch.host).popen(launch.args, *args, **kwargs)

    def each(self, question: Callable[[Docker], T]) -> list[T]:
        """Ask every engine of the lab at once; the answers of those that answered, in the
        configuration's order. An engine that fails with a DockerError is added to
        ``unreachable``; if none answers, the first one's error is raised."""
        endpoints = self.placement.endpoints

        def ask(endpoint: str | None) -> tuple[bool, Any]:
            try:
                return True, question(self.at(endpoint))
            except DockerError as error:
                return False, error

        answers = Docker.gather(*(lambda endpoint=endpoint: ask(endpoint) for endpoint in endpoints))
        if len(endpoints) == 1 and not answers[0][0]:
            raise answers[0][1]
        for endpoint, (answered, _) in zip(endpoints, answers):
            if not answered and endpoint is not None:
                self.unreachable.add(endpoint)
        found = [answer for answered, answer in answers if answered]
        if not found:
            raise DockerError(f"no node of the lab answers ({', '.join(map(str, endpoints))}): is the swarm up?")
        return found

    def inspect(self, names: Sequence[str], kind: str | None = None) -> list[dict[str, Any]]:
        """``docker inspect`` on every engine: the objects that exist, wherever they are."""
        return [obj for found in self.each(lambda docker: docker.inspect(names, kind=kind)) for obj in found]

    def subnets_in_use(self) -> list:
        """Every engine's networks' subnets: an overlay spans the nodes, and Docker lets it be made
        over a subnet a node's own bridge uses (a bridge lab there), whose containers then never
        attach to it ("context deadline exceeded")."""
        return [subnet for found in self.each(Docker.subnets_in_use) for subnet in found]
