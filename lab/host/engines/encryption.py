"""Whether a swarm lab's overlay is encrypted: wherever the nodes' kernels can, unless told.

Docker encrypts an overlay (``--opt encrypted``) with IPsec: each VXLAN packet between
two nodes inside ESP, in transport mode, with AES-GCM (``rfc4106(gcm(aes))``) and keys the
managers hand out and rotate. Where a node's kernel has no ESP (``CONFIG_INET_ESP`` unset,
as on the machine this lab is tested on), Docker creates the network all the same,
attaches the containers, and only logs that it could not add the keys; the overlay then
carries nothing between the nodes, and ``up`` would wait 30 s for an answer that never
comes. So the lab asks each node's kernel first: a helper with no network of its own
and NET_ADMIN only adds one such key to its own empty namespace, which goes away with
it, and the kernel either takes the key or says it has no such algorithm.

``encrypt`` in the settings: ``auto`` (default) encrypts where both nodes can and says
so when they cannot; ``yes`` refuses to come up unencrypted; ``no`` never encrypts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.errors import LabError
from lab.host.engines.docker import Docker
from lab.host.topology import NO_NETWORK, Topology

if TYPE_CHECKING:
    from lab.host.engines.lab_engines import Engines

# One ESP key, as Docker adds them (AES-GCM with a 128-bit ICV), between two documentation
# addresses (RFC 5737): it is never used, and the namespace it is added to is the helper's.
ESP_KEY_PROBE = ("ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp",
                 "spi", "0x100", "mode", "transport", "aead", "rfc4106(gcm(aes))", "0x" + "00" * 20, "128")


def kernel_cannot_encrypt(docker: Docker, topology: Topology) -> str | None:
    """Why this engine's kernel cannot carry an encrypted overlay (its own words), or None if it can."""
    probe = docker.run(topology.run_args("helper", command=ESP_KEY_PROBE, joins=NO_NETWORK),
                       quiet=True, check=False, echo=False)
    if probe.exited == 0:
        return None
    said = (probe.stderr or probe.stdout).strip().splitlines()
    return said[-1] if said else f"ip xfrm exited with {probe.exited}"


def choose_encryption(engines: Engines, topology: Topology) -> tuple[bool, str]:
    """Encrypt the lab's overlay or not, and the words ``up`` says about it: the kernels of the
    server's and the client's nodes are asked, at once."""
    lab = topology.lab
    if lab.encrypt == "no":
        return False, "not encrypted (encrypt: no): the lab's packets cross the hosts' network as they are"
    by_node = {str(engines.placement.endpoint_of(role.name)): engines.of(role.name) for role in topology.hosts}
    nodes = list(by_node)
    answers = Docker.gather(*(lambda node=node: kernel_cannot_encrypt(by_node[node], topology) for node in nodes))
    cannot = {node: why for node, why in zip(nodes, answers) if why}
    if not cannot:
        return True, "encrypted (IPsec ESP between the nodes; the underlay capture shows ESP, not VXLAN)"
    said = "; ".join(f"on {' and '.join(node for node in cannot if cannot[node] == why)}: "
                     f"{why.removeprefix('Error: ')!r}" for why in dict.fromkeys(cannot.values()))
    if lab.encrypt == "yes":
        raise LabError(f"encrypt is yes, but a node's kernel has no IPsec ESP with AES-GCM ({said}): set encrypt to "
                       "auto or no, or use nodes whose kernel has ESP (CONFIG_INET_ESP)")
    return False, (f"not encrypted: a node's kernel has no IPsec ESP with AES-GCM ({said}), so the lab's "
                   "packets cross the hosts' network as they are")
