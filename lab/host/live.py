"""What the notebooks' live cells do to a running lab: is it up, a shell line in its client, a packet
made by hand. The notebooks call these through lab.teach.notebook; in a lab room the broker calls
them for the student whose lab it is (lab.host.room.broker), since there the student has no Docker.
"""

from __future__ import annotations

from invoke import Context

from lab.errors import LabError
from lab.host.engines.lab_engines import Engines
from lab.host.settings import from_config, user_config
from lab.host.state import existing, is_up
from lab.host.topology import Topology, describe

CRAFTS = ("syn", "connect")


def topology_of(name: str | None = None) -> Topology:
    """The lab's description for ``name`` (default: the configuration's), with the user's configuration
    (its image, port, subnet), as the tasks build it."""
    return describe(from_config(user_config(), name))


def engines_of(topology: Topology, echo: bool = True) -> Engines:
    """The lab's engines, as the tasks reach them. ``echo`` prints each command first, so the learner
    can run it by hand; questions the learner did not ask (is the lab up?) are not echoed."""
    return Engines(Context(), topology.lab, echo=echo)


def lab_is_up(name: str | None = None) -> bool:
    """True when every long-lived container of the lab runs (False when Docker cannot be asked)."""
    topology = topology_of(name)
    try:
        return is_up(existing(engines_of(topology, echo=False), topology), topology)
    except LabError:
        return False


def in_client(script: str, name: str | None = None, echo: bool = True) -> str:
    """Run a shell ``script`` in the client host (``docker exec``); what it printed."""
    topology = topology_of(name)
    result = engines_of(topology, echo).of("client").run(["exec", topology.container("client"), "sh", "-c", script],
                                                         quiet=True, check=False)
    return result.stdout + result.stderr


def craft(what: str, line: str, name: str | None = None, echo: bool = True) -> str:
    """Run lab.inside.craft (``syn`` or ``connect``) in the client's namespace; what it printed.

    A short-lived helper container, root with NET_RAW (raw packets) and NET_ADMIN
    (its iptables rule); the docker command is printed first, so it can be run by hand.
    """
    if what not in CRAFTS:
        raise LabError(f"craft makes {' or '.join(CRAFTS)}, not {what[:20]!r}")
    topology = topology_of(name)
    launch = topology.launch("helper", command=["python3", "-m", "lab.inside.craft", what, "--line", line,
                                                "--port", str(topology.lab.port)],
                             joins="client", capabilities=("NET_RAW", "NET_ADMIN"))
    result = engines_of(topology, echo).run(launch, quiet=True, check=False)
    return result.stdout + result.stderr
