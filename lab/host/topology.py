"""A lab described as data: its containers' roles, and every ``docker run`` that follows from them.

Like Mininet's ``Topo``, the description comes first and does no I/O; the modules
that act (lab.host.lifecycle brings a lab up and down, lab.host.capture.recorder runs a
capture, lab.host.impair runs helpers) take their ``docker run`` arguments from
here. Adding a kind of container to a lab is an entry in ``ROLES`` plus the code
of its own behaviour; names, labels, user, capabilities, network, limits, tmpfs
and the hardening all follow from the entry.

Naming scheme (every name derives from the lab name, so two labs never collide):

    network         <lab>-net          a user-defined bridge, --internal by default
    server          <lab>-server       runs lab.inside.server; DNS name "server" on the network
    client host     <lab>-client       the client's network identity (its IP, MAC and
                                       namespace); DNS name "client"
    client run      unnamed, --rm      each `invoke send` runs lab.inside.client in a
                                       fresh container that joins the client host
    capture         <lab>-capture      `invoke capture`'s engine, in the server's namespace
    helper          unnamed, --rm      short-lived NET_ADMIN containers that set
                                       offloads and impairments in a namespace
    image           <image>:<lab>      built from docker/Dockerfile

Every container carries the labels ``<LABEL>=<lab>`` and ``<ROLE_LABEL>=<role>``.
Containers inherit their image's labels, so a container someone else starts from
our image carries our lab label too (with the image's role, "image"): only the
roles named here make a container the lab's.

The hardening, written once (:func:`hardening`): every container drops every
capability and adds back only its role's, cannot gain privileges, has a read-only
root filesystem with at most a small tmpfs, and memory and pids limits.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import typing
from typing import Sequence

from lab.host.settings import ROLE_LABEL, SYSCTLS_LABEL, Lab

LAB_TMPFS = "/tmp:rw,nosuid,nodev,size=16m"


NO_RESOLVER = "127.0.0.1"         # --dns: the container's own loopback, where no DNS server listens
NODE_NETWORK = "the node's own"   # joins= this: the node's namespace (an underlay capture), not a container's
NO_NETWORK = "a new empty one"    # joins= this: a namespace of its own with no network (a probe of the kernel)



class Launch(typing.NamedTuple):
    """A container to start: the host whose engine runs it, and its ``docker run`` arguments."""

    host: str                 # a host role (server, client): lab.host.engines.placement says which engine
    args: list[str]
    name: str | None = None   # its container name, if it has one


@dataclasses.dataclass(frozen=True)
class Role:
    """One kind of container in a lab, as data: what its ``docker run`` says follows from it."""

    name: str                                 # the role label's value, and the container's name suffix
    purpose: str                              # one line, for people reading the table
    named: bool = True                        # <lab>-<name>; False: anonymous, one at a time is not needed
    long_lived: bool = False                  # started by `up` (--detach), removed by `down`; else --rm
    detach: bool = False                      # runs in the background though `up` does not start it
    on_network: bool = False                  # its own address on the lab network, DNS name = its name
    joins: str | None = None                  # else the role whose network namespace it shares
    user: str = "lab"                         # the image's unprivileged user, or "0"
    capabilities: tuple[str, ...] = ()        # added back after --cap-drop ALL
    memory: str | None = None                 # None: the lab's limit (invoke.yaml's memory)
    pids: int | None = None                   # None: the lab's limit (pids)
    tmpfs: str | None = LAB_TMPFS             # the one writable place; None: nothing is writable
    keep_log: bool = True                     # False: stdout is data for us, not a log (--log-driver none)
    log_limit: str | None = None              # a kept log's size on the host's disk, at most (twice: 2 files)
    init: bool = False                        # an init as PID 1 reaps orphaned processes (--init)
    interactive: bool = False                 # stdin attached (a client reading a terminal)
    command: tuple[str, ...] = ()             # "{port}" stands for the lab's port
    host: int | None = None                   # its address: this host number in the lab's subnet (.2, .3)


ROLES: tuple[Role, ...] = (
    # The long-lived containers log one line per connection (about 190 bytes), for as
    # long as the lab is up: their logs are capped. Processes orphaned inside them
    # (a learner's `docker exec ... &`) are reaped by Docker's init, not left as zombies.
    Role("server", "serves the lab protocol on TCP and UDP", long_lived=True, on_network=True, host=2,
         log_limit="1m", init=True,
         command=("python3", "-m", "lab.inside.server", "--host", "0.0.0.0", "--port", "{port}")),
    Role("client", "the client host: holds the client's address and namespace", long_lived=True,
         on_network=True, host=3, log_limit="1m", init=True, command=("sleep", "infinity")),
    Role("client-run", "one run of the client program, in the client host's namespace",
         named=False, joins="client", interactive=True,
         command=("python3", "-m", "lab.inside.client", "--host", "server", "--port", "{port}")),
    Role("capture", "the capture engine, in the server's namespace", joins="server", user="0",
         capabilities=("NET_RAW",), memory="512m", pids=32, tmpfs=None, keep_log=False),
    # /run is writable for iptables' lock file; nothing else is.
    Role("helper", "does one thing in a namespace (offloads, impairments) and exits", named=False,
         user="0", capabilities=("NET_ADMIN",), tmpfs="/run:rw,size=1m"),
    # sock_diag answers any process about its own namespace's sockets: no capability at all.
    Role("sampler", "samples the kernel's TCP state of the lab's sockets (cwnd, ssthresh, RTO, states)",
         joins="server", memory="64m", pids=16, keep_log=False,
         command=("python3", "-m", "lab.inside.sampler", "--port", "{port}")),
    Role("link", "the NFQUEUE link emulator, where a sender's packets arrive (impair without netem)",
         detach=True, user="0", capabilities=("NET_ADMIN",), tmpfs="/run:rw,size=1m", memory="64m", pids=16,
         log_limit="1m", command=("python3", "-m", "lab.inside.linkemu")),
)


def capability_options(capabilities: Sequence[str]) -> list[str]:
    """``--cap-add`` for each capability (after ``--cap-drop ALL``, the only ones a container has)."""
    return [option for capability in capabilities for option in ("--cap-add", capability)]


def hardening(role: Role, lab: Lab, capabilities: Sequence[str] | None = None) -> list[str]:
    """The options that confine every container of the lab; ``capabilities`` replaces the role's."""
    return [
        "--user", role.user,
        "--cap-drop", "ALL", *capability_options(role.capabilities if capabilities is None else capabilities),
        "--security-opt", "no-new-privileges",
        "--read-only", *(["--tmpfs", role.tmpfs] if role.tmpfs else []),
        "--memory", role.memory or lab.memory, "--pids-limit", str(role.pids or lab.pids),
    ]


@dataclasses.dataclass(frozen=True)
class Topology:
    """One lab's containers: the lab's settings and its roles, each a ``docker run`` away."""

    lab: Lab
    roles: tuple[Role, ...] = ROLES

    def role(self, name: str) -> Role:
        for role in self.roles:
            if role.name == name:
                return role
        raise KeyError(f"no role {name!r} in this lab; its roles are {', '.join(self.role_names)}")

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(role.name for role in self.roles)

    @property
    def long_lived(self) -> tuple[Role, ...]:
        """The roles `up` starts and that make the lab "up", in the order they start."""
        return tuple(role for role in self.roles if role.long_lived)

    @property
    def hosts(self) -> tuple[Role, ...]:
        """The roles with an address of their own on the lab network (what impair can target)."""
        return tuple(role for role in self.roles if role.on_network)

    def container(self, role: str, instance: str | None = None) -> str:
        """The container name of a named role: <lab>-<role>, or <lab>-<role>-<instance> where a
        role has one container per something (a link emulator per direction)."""
        return f"{self.lab.name}-{role}" + (f"-{instance}" if instance else "")

    def labels(self, role: str) -> list[str]:
        return [*self.lab_labels(), "--label", f"{ROLE_LABEL}={role}"]

    def lab_labels(self) -> list[str]:
        return [word for label in self.lab.labels for word in ("--label", label)]

    def network_create_args(self, subnet: str, encrypted: bool = False) -> list[str]:
        """The lab network: a bridge (an attachable overlay for a swarm lab, ``encrypted`` with
        IPsec between the nodes if asked) with an explicit subnet, --internal unless configured
        otherwise."""
        gateway = ipaddress.ip_network(subnet).network_address + 1    # the host's address on it
        driver = [*self.lab.kind.network_driver, *(["--opt", "encrypted"] if encrypted else [])]
        args = ["network", "create", *driver, "--subnet", subnet, "--gateway", str(gateway), *self.lab_labels()]
        if self.lab.internal:
            args.append("--internal")
        return [*args, self.lab.network]

    def run_args(self, role_name: str, *arguments: str, command: Sequence[str] | None = None,
                 joins: str | None = None, capabilities: Sequence[str] | None = None,
                 tty: bool = False, labels: dict[str, str] | None = None, instance: str | None = None,
                 subnet: str | None = None) -> list[str]:
        """``docker run`` arguments for one container of ``role_name``.

        ``arguments`` are appended to the role's command (a client's requests);
        ``command`` replaces it (a helper's one job, the capture engine);
        ``joins`` names the host (a role on the network) whose namespace a role without
        one of its own shares (a helper's target), or NODE_NETWORK or NO_NETWORK; ``capabilities`` replaces the role's (crafting
        packets needs NET_RAW beside NET_ADMIN); ``tty`` gives an interactive role a
        terminal; ``labels`` are more labels for this one run (a capture's file);
        ``instance`` tells apart the containers of a role that has several;
        ``subnet`` (the lab network's) gives a role with a host number its fixed
        address, so the server is .2 and the client .3 in every capture.
        """
        role = self.role(role_name)
        args = ["run", *(["--detach"] if role.long_lived or role.detach else []),
                *([] if role.long_lived else ["--rm"])]
        if role.interactive:
            args += ["--interactive", *(["--tty"] if tty else [])]
        if role.named:
            args += ["--name", self.container(role.name, instance)]
        if role.on_network:
            args += ["--hostname", role.name, "--network", self.lab.network, "--network-alias", role.name]
            if role.host is not None and subnet is not None and self.lab.kind.fixed_addresses:
                args += ["--ip", str(ipaddress.ip_network(subnet)[role.host])]
                args += self.names_without_dns(subnet)
            for key, value in self.lab.sysctls.items():        # a namespace's own: only its creator sets them
                args += ["--sysctl", f"{key}={value}"]
        elif joins == NODE_NETWORK:
            args += ["--network", "host"]
        elif joins == NO_NETWORK:
            args += ["--network", "none"]
        else:
            args += ["--network", f"container:{self.container(self.host_of(role.name, joins))}"]
        args += self.labels(role.name) + hardening(role, self.lab, capabilities)
        if role.on_network:
            args += ["--label", f"{SYSCTLS_LABEL}={json.dumps(self.lab.sysctls, sort_keys=True)}"]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        if not role.keep_log:
            args += ["--log-driver", "none"]
        elif role.log_limit:
            args += ["--log-driver", "json-file", "--log-opt", f"max-size={role.log_limit}", "--log-opt", "max-file=2"]
        if role.init:
            args.append("--init")
        base = role.command if command is None else tuple(command)
        return [*args, self.lab.image, *(part.replace("{port}", str(self.lab.port)) for part in base), *arguments]


    def names_without_dns(self, subnet: str) -> list[str]:
        """``--add-host`` for every host of the lab, and ``--dns`` that answers nothing: the lab
        assigned each address, so its names are in every namespace's /etc/hosts (which the
        containers that join a namespace share) and never depend on the engine's resolver
        (which lost them after a `docker swarm init` and `leave` on the engine); and a name the
        lab does not know is not passed on to the host's DNS server, out of an --internal
        network (the embedded resolver forwards to the --dns given: here, an address in the
        container's own namespace where nothing listens)."""
        network = ipaddress.ip_network(subnet)
        added = [f"{role.name}:{network[role.host]}" for role in self.hosts if role.host is not None]
        return [*(word for entry in added for word in ("--add-host", entry)), "--dns", NO_RESOLVER]

    def host_of(self, role_name: str, joins: str | None = None) -> str:
        """The host whose namespace, and so whose engine, a container of ``role_name`` is in:
        its own if it is on the network, else the one it joins (``joins``, or the role's own
        ``joins``); a container in no host's namespace runs beside the first host (the server)."""
        role = self.role(role_name)
        if role.on_network:
            return role.name
        if joins in (NODE_NETWORK, NO_NETWORK):
            return self.hosts[0].name
        host = joins or role.joins
        if host is None:
            raise ValueError(f"role {role.name!r} joins a host's namespace: say which")
        if host not in (known.name for known in self.hosts):
            raise ValueError(f"{host!r} is not a host of this lab; its hosts are "
                             f"{', '.join(known.name for known in self.hosts)}")
        return host

    def launch(self, role_name: str, *arguments: str, joins: str | None = None,
               instance: str | None = None, **options: typing.Any) -> Launch:
        """A container of ``role_name`` to start (run_args' arguments), with the host whose engine runs it."""
        role = self.role(role_name)
        return Launch(self.host_of(role_name, joins),
                      self.run_args(role_name, *arguments, joins=joins, instance=instance, **options),
                      self.container(role.name, instance) if role.named else None)


def describe(lab: Lab) -> Topology:
    """The lab's description with the standard roles."""
    return Topology(lab)


CONTAINER_ROLES = tuple(role.name for role in ROLES)
"""Roles the lab's own `docker run` commands set: only these make a container the lab's."""
