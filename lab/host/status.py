"""Looking at a lab: a table of its containers (`invoke status`) and their logs (`invoke logs`).

Everything shown is read from Docker and the kernel at the moment of asking (the
impairments too, by lab.host.impair), never remembered from an earlier task.
"""

from __future__ import annotations

from invoke import Context

from lab.errors import LabError
from lab.host import impair
from lab.host.engines.docker import Docker
from lab.host.engines.lab_engines import Engines
from lab.host.settings import ROLE_LABEL, Lab
from lab.host.state import (
    existing,
    is_up,
    lab_option,
    object_labels,
    object_name,
    on_lab_network,
    our_containers,
    sysctls_of,
)
from lab.host.topology import Topology, describe
from lab.terminal import console, prose, say

COLUMNS = ("container", "role", "IP", "MAC", "ports", "state", "impairments")


def container_rows(engines: Engines, topology: Topology, impaired: dict[str, str] | None = None) -> list[dict[str, str]]:
    """One row per container of the lab, on every engine it has, for the status table."""
    return sorted((row for rows in engines.each(lambda docker: rows_on(docker, topology, impaired or {}))
                   for row in rows), key=lambda row: row["container"])


def rows_on(docker: Docker, topology: Topology, impaired: dict[str, str]) -> list[dict[str, str]]:
    """The status rows of the lab's containers on one engine."""
    rows = []
    for obj in docker.inspect(list(our_containers(docker, topology)), kind="container"):
        network = on_lab_network(obj, topology)
        ports = sorted((obj.get("Config", {}).get("ExposedPorts") or {}).keys())
        role = object_labels(obj).get(ROLE_LABEL, "?")
        rows.append({
            "container": object_name(obj),
            "role": role,
            "ip": network.get("IPAddress") or "-",
            "mac": network.get("MacAddress") or "-",
            "ports": ", ".join(ports) if role == "server" else "-",
            "state": obj.get("State", {}).get("Status", "?") + fork_state(docker, obj),
            "impairments": impaired.get(object_name(obj), "-"),
        })
    return rows


def tasks_in_use(docker: Docker, container: str) -> int | None:
    """How many processes and threads run in a container (what its pids limit counts), or None."""
    result = docker.run(["top", container, "-L", "-o", "pid,lwp"], quiet=True, check=False)
    return len(result.stdout.splitlines()) - 1 if result.exited == 0 else None


def fork_state(docker: Docker, obj: dict) -> str:
    """' (cannot fork: N of M pids)' for a running container at (or a hair from) its pids limit, else ''.

    A container whose processes fill its pids limit still "runs", but a request
    that needs a process, a `docker exec`, a helper joining it, all fail.
    """
    limit = (obj.get("HostConfig") or {}).get("PidsLimit") or 0
    if limit <= 0 or not obj.get("State", {}).get("Running"):
        return ""
    used = tasks_in_use(docker, object_name(obj))
    if used is None or used < limit - max(1, limit // 20):
        return ""
    return f" (cannot fork: {used} of {limit} pids in use)"


WIDE_STATUS = 110      # every column side by side from this width; narrower, IP and MAC share a cell


def status_table(lab: Lab, rows: list[dict[str, str]], width: int):
    """The containers as a table that reads whole at the terminal's width (80 columns and up)."""
    from rich import box
    from rich.table import Table

    if width >= WIDE_STATUS:
        table = Table(title=f"lab {lab.name}")
        for column in COLUMNS:
            table.add_column(column, overflow="fold")  # wrap, never cut an address short
        for row in rows:
            table.add_row(*row.values())
        return table
    # Narrower: the container over its role, the IP over the MAC, a port a line, and the impairments,
    # which can be long, as sentences under the table: no word is ever cut ("clien/t", "(nfque/ue)").
    from rich.console import Group
    from rich.text import Text

    table = Table(title=f"lab {lab.name}", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for column in ("container\nrole", "IP\nMAC", "ports", "state"):
        table.add_column(column, no_wrap=column != "state", ratio=1 if column == "state" else None)
    for row in rows:
        table.add_row(f"{row['container']}\n{row['role']}", f"{row['ip']}\n{row['mac']}",
                      row["ports"].replace(", ", "\n"), row["state"])
    impaired = [Text(f"{row['container']}: {row['impairments']}") for row in rows if row["impairments"] != "-"]
    return Group(table, *([Text("impairments (what each container sends):")] + impaired if impaired else []))


def overlay_line(engines: Engines, network: dict) -> str:
    """What the status of a lab across nodes adds to its network's line: encrypted or not, and which
    node holds the server and which the client."""
    encrypted = "encrypted" in (network.get("Options") or {})
    return (f", an overlay between two nodes{', encrypted (IPsec)' if encrypted else ', not encrypted'}: "
            f"the server on {node_of_host(engines, 'server')}, the client on {node_of_host(engines, 'client')}")


def node_of_host(engines: Engines, host: str) -> str:
    """The engine of the server's or the client's node; placed by name, a node that does not answer
    is said as such (the name it was chosen by)."""
    try:
        return str(engines.placement.endpoint_of(host))
    except LabError:
        return f"a node that does not answer ({getattr(engines.lab, f'{host}_node')})"


def status(c: Context, lab: Lab) -> None:
    """Print the table of the lab's containers and its network."""
    topology = describe(lab)
    engines = Engines(c, lab)
    found = existing(engines, topology)
    impaired = impair.active(engines, topology, found) if is_up(found, topology) else None
    rows = container_rows(engines, topology, impaired)
    networks = [found[lab.network]] if lab.network in found else []
    if not rows and not networks:
        say(f"lab {lab.name!r} is down (nothing with label {lab.label})")
        return
    term = console()
    term.print(status_table(lab, rows, term.width))
    if impaired and any(impair.EMULATOR_GONE in what for what in impaired.values()):
        print(prose("an emulator's container is gone, so its rule lets packets through unimpaired: run the "
                    f"impair command again to put it back, or 'invoke impair --clear{lab_option(lab)}'"))
    for node in sorted(engines.unreachable):
        print(f"node {node} does not answer (it left the swarm, or its host is down): the lab's containers there "
              "are not shown; invoke down removes the rest and says what it could not")
    for net in networks:
        subnets = ", ".join(cfg.get("Subnet", "?") for cfg in (net.get("IPAM", {}).get("Config") or []))
        print(f"network {object_name(net)}: {subnets}{' (internal)' if net.get('Internal') else ''}"
              + (overlay_line(engines, net) if lab.kind.spans_nodes else ""))
    if is_up(found, topology) and not lab.kind.spans_nodes:
        unresolved = names_unresolved(engines, topology)
        if unresolved:
            print(prose(f"the client cannot resolve {', '.join(unresolved)}: run 'invoke down{lab_option(lab)}', "
                        f"then 'invoke up{lab_option(lab)}' (the lab's names are then in every container's "
                        "/etc/hosts)"))
    server = found.get(topology.container("server")) or {}
    sysctls = sysctls_of(server)
    if server:
        print(f"TCP congestion control: {sysctls.get('net.ipv4.tcp_congestion_control', 'the kernel default')}; "
              f"IPv6 {'off' if sysctls.get('net.ipv6.conf.all.disable_ipv6') == '1' else 'on'}")
    product = engines.network.product()
    print(prose(f"engine: {product.words()}" + (f"; {product.limits_warning()}" if product.limits_warning() else "")))


def names_unresolved(engines: Engines, topology: Topology) -> list[str]:
    """The lab's host names the client's namespace does not resolve (asked as its programs ask)."""
    names = [role.name for role in topology.hosts]
    result = engines.of("client").run(["exec", topology.container("client"), "getent", "hosts", *names],
                                      quiet=True, check=False, echo=False)
    resolved = {word for line in result.stdout.splitlines() for word in line.split()[1:]}
    return [name for name in names if name not in resolved]


def logs(c: Context, lab: Lab, role: str = "server", follow: bool = False, tail: int | None = None) -> None:
    """Print a long-lived container's log."""
    topology = describe(lab)
    roles = [r.name for r in topology.long_lived]
    if role not in roles:
        raise LabError(f"--role must be {' or '.join(roles)}, got {role!r}")
    engines = Engines(c, lab)
    name = topology.container(role)
    if name not in existing(engines, topology):
        raise LabError(f"no {role} container in lab {lab.name!r}: run 'invoke up{lab_option(lab)}' first")
    if role == "client" and not follow:
        say("the client host runs no program of its own (it holds the client's address); each 'invoke send' "
            "runs the client in a container of its own and prints what it did")
    args = ["logs", *(["--follow"] if follow else []), *(["--tail", str(tail)] if tail else []), name]
    engines.of(role).run(args, check=False, show_stderr=True)
