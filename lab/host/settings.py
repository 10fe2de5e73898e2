"""What one lab is called and configured with: its name, subnet, port, image and limits.

The names of its containers follow from its roles (lab.host.topology); the names
here are the lab-wide ones: the network ``<lab>-net``, the image ``<image>:<lab>``
and the label ``org.tcplab.lab=<lab>`` that marks everything the lab creates.

``DEFAULTS`` below is the one place the defaults live: tasks.py hands them to
invoke, and each can be overridden the invoke way: a file ``invoke.yaml`` beside
tasks.py, ``INVOKE_LAB_<KEY>`` environment variables, ``invoke -f FILE``, then the
``--lab NAME`` option every task takes (README, "Configuration").
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any

from lab.errors import LabError
from lab.host.engines.docker import is_engine_address
from lab.host.engines.kernel import EngineKernel
from lab.host.engines.kinds import KINDS, EngineKind
from lab.inside.protocol import PORT

LABEL = "org.tcplab.lab"
ROLE_LABEL = "org.tcplab.role"
SYSCTLS_LABEL = "org.tcplab.sysctls"   # on a host: the sysctls it was made with (Podman's inspect omits them)
SOURCE_LABEL = "org.tcplab.source"      # on the image: the digest of the code it was built from
PART_LABEL = "org.tcplab.capture-file"  # on a capture container: the raw file it writes (for a person who looks)
OWNER_LABEL = "org.tcplab.capture-owner"
GROUP_LABEL = "org.tcplab.group"        # on every resource of a class's labs: `invoke class down` removes by it  # on a capture container: host:pid:start of its `invoke capture`
BASE_IMAGE = "tcplab/base:bookworm"
SLIM_IMAGE = "debian:bookworm-slim"
AUTO = "auto"
# A pool outside Docker's default address pools (172.17-31.0.0/16 and
# 192.168.0.0/16), from which "auto" picks the first free /24.
AUTO_POOL = ipaddress.ip_network("10.77.0.0/16")

# Each key's meaning is in the README's "Configuration" table.
DEFAULTS: dict[str, Any] = {
    "name": "tcplab",
    "subnet": AUTO,
    "port": PORT,
    "image": "tcplab/lab",
    "internal": True,
    "mirror": AUTO,
    "memory": "256m",
    "pids": 128,
    "cc": AUTO,
    "ipv6": False,
    "seed": 1,              # a student's own: scenarios pick their lost segment and link numbers by it
    "group": "",            # the class a lab belongs to (invoke class up sets it)
    "engine": "bridge",     # bridge: one engine; swarm: the server and the client on two nodes of a swarm
    "nodes": "",            # with swarm: the engines (docker -H addresses or context names), comma-separated
    "server_node": "",      # with swarm: which of them runs the server (a swarm node's hostname, ID or LABEL=VALUE)
    "client_node": "",      # with swarm: which runs the client (the same forms); unset: the first two of nodes
    "encrypt": AUTO,        # with swarm: the overlay encrypted (IPsec) where every node's kernel can; yes; no
    "underlay": "eth0",     # with swarm: the server node's own interface, where capture --underlay listens
    "verbose": False,       # every line of an image build, not its progress (build, up, demo: --verbose)
}

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,30}")
_CC = re.compile(r"[a-z0-9_]{1,16}")
_CONTEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")     # the docker CLI's rule for a context's name
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")


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
    cc: str = AUTO           # the hosts' TCP congestion control; auto: the kernel's default
    ipv6: bool = False       # an IPv4 lesson: no IPv6 (router solicitations, MLD) unless asked
    group: str = ""          # the class this lab belongs to, if any
    engine: str = "bridge"   # or "swarm": server and client on two nodes, an overlay between them
    nodes: tuple[str, ...] = ()   # with swarm: the engines (docker -H endpoints or docker context names)
    server_node: str = ""    # with swarm: the server's node by the swarm's name for it ("": the first of nodes)
    client_node: str = ""    # with swarm: the client's ("": the first other node)
    encrypt: str = AUTO      # with swarm: auto, yes or no (lab.host.engines.encryption)
    underlay: str = "eth0"   # with swarm: the server node's interface between the hosts
    kernel: EngineKernel | None = None   # the engine's kernel, as lab.host.engines.kernel asked it (up does)

    @property
    def sysctls(self) -> dict[str, str]:
        """Settings of each host's network namespace, made at its creation (docker --sysctl,
        no capability needed): the congestion control, IPv6 off unless asked for, no memory
        of earlier connections, and the SYN timer of RFC 6298 (1 s, then doubling) where the
        kernel starts with linear ones."""
        found = {} if self.cc == AUTO else {"net.ipv4.tcp_congestion_control": self.cc}
        if self.kernel is not None and self.kernel.syn_linear_timeouts:
            # Linux 6.x retries a SYN every second four times before backing off (its
            # default since 2025); the lab's lessons and scenarios show the backoff every
            # textbook describes, so every learner's kernel does the same here.
            found["net.ipv4.tcp_syn_linear_timeouts"] = "0"
        # Linux remembers each peer's RTT and its variance when a connection closes
        # (tcp_metrics, `ip tcp_metrics show`) and starts the next connection to it from
        # them: a tail-loss run after a 40 ms scenario on the same lab began with an RTO
        # of 240 ms where its own 16 ms RTT gives 220 ms. Every run starts from the
        # kernel's defaults, as a learner's first run does.
        found["net.ipv4.tcp_no_metrics_save"] = "1"
        if not self.ipv6:     # "default" for eth0, which Docker adds after the sysctls are set
            found["net.ipv6.conf.all.disable_ipv6"] = "1"
            found["net.ipv6.conf.default.disable_ipv6"] = "1"
        return found

    @property
    def kind(self) -> EngineKind:
        """What the lab's kind of engine (the ``engine`` setting) means for it."""
        return KINDS[self.engine]

    @property
    def network(self) -> str:
        return f"{self.name}-net"

    @property
    def image(self) -> str:
        return f"{self.image_repo}:{self.name}"

    @property
    def label(self) -> str:
        """The ``key=value`` that marks this lab's resources."""
        return f"{LABEL}={self.name}"

    @property
    def labels(self) -> list[str]:
        """Every ``key=value`` on this lab's resources: its own, and its class's if it has one."""
        return [self.label] + ([f"{GROUP_LABEL}={self.group}"] if self.group else [])


def from_config(config: Any, lab: str | None = None, **overrides: Any) -> Lab:
    """Build a Lab from invoke's ``config.lab`` section, with the ``--lab`` override and a
    task's own options (``cc=``) where given."""
    section = {**DEFAULTS, **dict(config.get("lab", {}) or {}),
               **{key: value for key, value in overrides.items() if value is not None}}
    name = check_name(lab or section["name"])
    try:
        port = int(section["port"])
    except (TypeError, ValueError):
        raise LabError(f"lab port {section['port']!r} is not a number: fix it in invoke.yaml or INVOKE_LAB_PORT") from None
    if not 1 <= port <= 65535:
        raise LabError(f"lab port {port} is out of range: use 1024..65535 (the server runs without root)")
    subnet = str(section["subnet"])
    if subnet != AUTO:
        try:
            subnet = str(ipaddress.ip_network(subnet, strict=True))
        except ValueError:
            raise LabError(f"subnet {subnet!r} is not a network like 10.77.0.0/24: fix it in invoke.yaml or INVOKE_LAB_SUBNET") from None
    cc = str(section["cc"]).strip().lower()
    if cc != AUTO and not _CC.fullmatch(cc):
        raise LabError(f"congestion control {cc[:20]!r} is not a name like reno, cubic or bbr: fix --cc, "
                       "invoke.yaml or INVOKE_LAB_CC")
    engine = str(section["engine"]).strip().lower()
    nodes = tuple(node.strip() for node in str(section["nodes"] or "").split(",") if node.strip())
    if engine not in KINDS:
        raise LabError(f"lab engine {engine[:20]!r} is not one: use "
                       + " or ".join(f"{kind.name} ({kind.about})" for kind in KINDS.values()))
    if KINDS[engine].spans_nodes and len(nodes) < 2:
        raise LabError("a swarm lab needs its nodes: nodes = 'SERVER_NODE,CLIENT_NODE[,MORE...]' (docker -H "
                       "endpoints, e.g. ssh://user@host1,ssh://user@host2, or docker context names) in invoke.yaml "
                       "or INVOKE_LAB_NODES")
    for node in nodes:
        if not is_engine_address(node) and not _CONTEXT.fullmatch(node):
            raise LabError(f"node {node!r} is neither an engine address (unix://, tcp://, ssh://) nor a docker "
                           "context name: fix nodes in invoke.yaml or INVOKE_LAB_NODES")
    server_node, client_node = (str(section[key] or "").strip() for key in ("server_node", "client_node"))
    encrypt = str(section["encrypt"]).strip().lower()
    if encrypt not in (AUTO, *TRUE_WORDS, *FALSE_WORDS):
        raise LabError(f"encrypt {encrypt!r} is not one of auto, yes, no: fix it in invoke.yaml or INVOKE_LAB_ENCRYPT")
    encrypt = encrypt if encrypt == AUTO else ("yes" if encrypt in TRUE_WORDS else "no")
    group = check_name(section["group"], "lab group") if section["group"] else ""
    return Lab(
        name=str(name),
        subnet=subnet,
        port=port,
        image_repo=str(section["image"]),
        internal=yes(section["internal"]),
        mirror=str(section["mirror"]),
        memory=str(section["memory"]),
        pids=int(section["pids"]),
        cc=cc,
        ipv6=yes(section["ipv6"]),
        group=group,
        engine=engine,
        nodes=nodes,
        server_node=server_node,
        client_node=client_node,
        encrypt=encrypt,
        underlay=str(section["underlay"]),
    )


def check_name(name: Any, what: str = "lab name") -> str:
    """A lab's (or a class's) name, as Docker and the lab's own names need it; else one line."""
    if not _NAME.fullmatch(str(name)):
        raise LabError(f"{what} {str(name)[:40]!r} is not usable: use up to 31 lowercase letters, digits, '-', '_' "
                       "or '.', starting with a letter or digit")
    return str(name)


def user_config() -> Any:
    """invoke's configuration as the tasks see it (the defaults, invoke.yaml beside tasks.py,
    INVOKE_LAB_*), for code that runs outside a task: a notebook's live cells act on the lab
    the user configured, not on the defaults."""
    from invoke import Config

    from lab.paths import PROJECT_ROOT

    config = Config(project_location=PROJECT_ROOT, defaults={**Config.global_defaults(), "lab": dict(DEFAULTS)})
    config.load_project()
    config.load_shell_env()
    return config


def yes(value: Any) -> bool:
    """A setting's truth, however it was written (invoke.yaml's true, INVOKE_LAB_X=0, "no")."""
    if isinstance(value, str):
        return value.strip().lower() not in FALSE_WORDS
    return bool(value)

