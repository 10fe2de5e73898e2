"""The kinds of engine a lab can run on, as data: what its network is, and what `up` and `down`
must do differently there.

A kind is an entry here, not a class: the lifecycle, the topology and the capture read
these fields and never the kind's name. Rootless Docker and Podman need no entry (the
engine's product says what differs: lab.host.engines.product); a lab room's is one.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class EngineKind:
    """What a kind of engine means for a lab on it."""

    name: str                          # the `engine` setting's word
    about: str                         # one line for the help and the errors
    network_driver: tuple[str, ...]    # `docker network create`'s words for the lab network
    spans_nodes: bool                  # its hosts may be on engines of their own (the `nodes` setting)
    fixed_addresses: bool              # the server is .2 and the client .3 (--ip)
    says_overlaps: bool                # the engine refuses a subnet that overlaps one of its networks itself
    network_lingers: bool              # a removed network stays listed for seconds: down waits for it to go
    between_hosts: bool                # its packets cross a wire between hosts (capture --underlay, encryption)
    through_broker: bool = False       # the tasks that act on the lab go to a lab room's broker, which runs
                                       # them on its engine for this student (lab.host.room)


BRIDGE = EngineKind(
    "bridge", "one engine: the server and the client on a user-defined bridge",
    network_driver=("--driver", "bridge"), spans_nodes=False, fixed_addresses=True, says_overlaps=True,
    network_lingers=False, between_hosts=False)

# Not fixed addresses on a swarm's overlay: each node takes an address of it for its own
# endpoint (its load balancer) when a container there first attaches, so a fixed .2 or .3
# may be taken, and Docker 20.10 then fails the attach after a 20 s deadline. The manager
# that makes an overlay does not look at the nodes' bridges: the lab does (lab_engines).
SWARM = EngineKind(
    "swarm", "two nodes of a swarm: the server on one, the client on the other, an overlay between them",
    network_driver=("--driver", "overlay", "--attachable"), spans_nodes=True, fixed_addresses=False,
    says_overlaps=False, network_lingers=True, between_hosts=True)

# In a lab room's JupyterLab: no engine here at all. The room's broker runs the student's tasks
# on its own engine, a bridge (lab.host.room.broker), so the fields below are the bridge's.
ROOM = dataclasses.replace(
    BRIDGE, name="room", about="a lab room: the tasks go to the room's broker, which runs them on the student's lab",
    through_broker=True)

KINDS = {kind.name: kind for kind in (BRIDGE, SWARM, ROOM)}
