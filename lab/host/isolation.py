"""No way from a container to the host: what a lab's hosts and a room's JupyterLabs get once made.

An --internal network keeps packets from leaving the bridge, but Docker still gives each
container a default route to the bridge's gateway address, which is the host itself, and the
host's INPUT chain lets them in: any service on the host that listens on 0.0.0.0 would be one
`nc` away from every container. A lab (or a room's JupyterLab) needs only its subnet, so the
default route goes, and what on the subnet reaches the host (its gateway address, and broadcast
and multicast, which the host hears too) is dropped on the way out. A helper with NET_ADMIN in
the container's namespace does it; the container itself has no NET_ADMIN and cannot undo either;
the host's own firewall is left as it is.
"""

from __future__ import annotations

import ipaddress
import shlex

from lab.errors import LabError

ISOLATION_COMMENT = "tcplab-isolation"


def gateway_of(network: dict) -> tuple[str, str]:
    """A network's gateway address (the host's address on it) and its broadcast address
    (``network``: docker network inspect's answer, or only its ``IPAM``)."""
    for config in network.get("IPAM", {}).get("Config") or []:
        if config.get("Subnet"):
            subnet = ipaddress.ip_network(config["Subnet"], strict=False)
            # Docker's default, which it records only when it was given (lab networks give it).
            gateway = config.get("Gateway") or str(subnet.network_address + 1)
            return gateway.split("/")[0], str(subnet.broadcast_address)
    raise LabError(f"the network {network.get('Name', '?')} has no subnet: remove it (invoke down) "
                   "and bring the lab up again")


def cut_from_host_steps(network: dict) -> list[str]:
    """The shell steps (to join with &&) that leave a namespace on ``network`` no way to the host."""
    gateway, broadcast = gateway_of(network)
    drops = [["iptables", "-A", "OUTPUT", "-d", address, "-m", "comment", "--comment", ISOLATION_COMMENT, "-j", "DROP"]
             for address in (gateway, broadcast, "255.255.255.255", "224.0.0.0/4")]
    return ["{ ip route del default 2>/dev/null; true; }", *map(shlex.join, drops)]
