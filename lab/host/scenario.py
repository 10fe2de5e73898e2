"""`invoke scenario NAME`: bring the lab up if needed, put the scenario's link in place with
the lab's own emulator (the same on every kernel: events need it), capture the exchange with
the kernel's view, remove the link, and check the outcome. What a scenario is, and how its
numbers follow from the seed, is lab.scenarios.model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from invoke import Context

from lab.errors import LabError
from lab.host import impair, lifecycle
from lab.host.capture import recorder
from lab.host.capture.request import CaptureRequest
from lab.host.engines.lab_engines import Engines
from lab.host.lifecycle import image_everywhere, kernel_of
from lab.host.options import bulk_options, with_tag
from lab.host.settings import AUTO, Lab
from lab.host.state import address_of, existing, is_up, lab_option, require_up
from lab.host.topology import Topology, describe
from lab.scenarios.model import Scenario, free_name
from lab.terminal import say


def client_args(scenario: Scenario, tag: str | None = None) -> list[str]:
    """lab.inside.client's options for the exchange, with a student's ``tag`` if given."""
    exchange = scenario.exchange
    if "send" in exchange:
        writes = (["--nagle"] if exchange.get("nagle") else []) + \
            (["--split-at", str(exchange["split_at"])] if "split_at" in exchange else [])
        return writes + with_tag([str(line) for line in exchange["send"]], tag)
    args = bulk_options(exchange["bulk"], tag)
    if "rcvbuf" in exchange:
        args += ["--rcvbuf", str(exchange["rcvbuf"])]
    if "flows" in exchange:
        args += ["--flows", str(exchange["flows"])]
    if exchange.get("flow_cc"):
        args += ["--cc", ",".join(exchange["flow_cc"])]
    if "pause_after" in exchange:
        args += ["--pause-after", str(exchange["pause_after"]), "--pause-for", f"{exchange.get('pause_for', 2):g}"]
    return args


def congestion_control_of(engines: Engines, topology: Topology) -> str | None:
    """The congestion control the server's new connections get: its namespace's own word
    (the engine's kernel, wherever it runs), or None if it does not answer."""
    result = engines.of("server").run(["exec", topology.container("server"), "cat",
                                       "/proc/sys/net/ipv4/tcp_congestion_control"],
                                      quiet=True, check=False, echo=False)
    return (result.stdout.strip() or None) if result.exited == 0 else None


def lab_for(c: Context, lab: Lab, scenario: Scenario, engines: Engines, topology: Topology) -> Lab:
    """The lab to run ``scenario`` on: a lab that is down and left to the kernel's default
    comes up with the congestion control the lesson is about, where the host allows it."""
    if not scenario.cc or lab.cc != AUTO or is_up(existing(engines, topology), topology):
        return lab
    image_everywhere(c, lab, engines)           # the kernel's probe runs the lab's image
    try:
        kernel_of(lab, engines).check(scenario.cc)
    except LabError as refused:
        say(f"{scenario.name} is about {scenario.cc}, which this lab cannot use ({refused}); "
            "it runs with the kernel's default")
        return lab
    say(f"lab {lab.name!r} comes up with {scenario.cc}: the congestion control {scenario.name} is about")
    return dataclasses.replace(lab, cc=scenario.cc)


def run(c: Context, lab: Lab, scenario: Scenario, console, tag: str | None = None) -> Path:
    """Bring the lab up if needed, apply the scenario, capture the exchange (with a student's
    ``tag`` in its requests), remove the link; the capture."""
    engines = Engines(c, lab)               # where each host runs: the congestion control lab_for picks changes nothing
    lab = lab_for(c, lab, scenario, engines, describe(lab))
    topology = describe(lab)
    lifecycle.up(c, lab, topology)          # up if it is not; its image rebuilt if older than this code
    found = require_up(engines, topology)
    say(f"scenario {scenario.name} (seed {scenario.seed}): {scenario.title}")
    cc = congestion_control_of(engines, topology)
    if scenario.cc and cc and cc != scenario.cc:
        say(f"{scenario.name} is about {scenario.cc}, and lab {lab.name!r} runs {cc}: this run shows {cc} "
            f"(for {scenario.cc}: invoke down{lab_option(lab)}, then invoke up --cc {scenario.cc}{lab_option(lab)})")
    had = impair.active(engines, topology, found)
    if had:
        say(f"the scenario sets its own link: removed what lab {lab.name!r} had ("
            + "; ".join(f"{name.removeprefix(lab.name + '-')}: {what}" for name, what in had.items())
            + "); put it back after with invoke impair")
    housekeeping = engines.quiet()          # clearing the link: in the command log, not on screen
    impair.clear(c, lab, quiet=True, engines=housekeeping)
    try:
        for direction, sender, receiver in ((scenario.to_client, "server", "client"),
                                            (scenario.to_server, "client", "server")):
            if direction is not None:
                options = direction.emulator_options(address_of(found, topology.container(sender), topology),
                                                     scenario.seed)
                impair.start_emulators(engines, topology, sender, [receiver], options)
                say(f"link to the {receiver}: {direction} (lab's emulator)")
        request = CaptureRequest(name=free_name(scenario, cc), client_args=tuple(client_args(scenario, tag)), kernel=True)
        return recorder.capture(c, lab, request, console)
    finally:
        impair.clear(c, lab, quiet=True, engines=housekeeping)


def judge(pcap: Path, scenario: Scenario, port: int):
    """The scenario's expectations checked on its capture: (verdicts, the server's congestion control)."""
    from lab.inspect.analysis import analyze
    from lab.inspect.expectations import Evidence, check_all
    from lab.inspect.graphs import data_sender
    from lab.inspect.kernel import connection_samples, kernel_file_of, read_kernel_file

    capture = analyze(pcap, keep=True)
    connections = [conn for conn in capture.connections if conn.server.port == port]
    if not connections:
        raise LabError(f"{pcap.name} holds no connection to port {port}: the exchange did not happen")
    conn = connections[-1]
    kernel_path = kernel_file_of(pcap)
    kernel_samples = read_kernel_file(kernel_path) if kernel_path else []
    samples = connection_samples(kernel_samples, conn)
    segments = conn.segments or []          # judge analyses with every segment kept
    sender_is_client = data_sender(segments)
    sender = samples["client" if sender_is_client else "server"]
    cc = next((s.values["cc"] for s in samples["server"] if s.values.get("cc")), None)
    rate = scenario.to_client.rate_kbit if scenario.to_client else 0.0
    receiver = samples["server" if sender_is_client else "client"]
    flows = [(flow.segments or [], connection_samples(kernel_samples, flow)["server"]) for flow in connections
             if flow.server.payload_bytes]
    evidence = Evidence(segments, sender_is_client, sender, rate, receiver, flows)
    return check_all(evidence, scenario.expectations(cc)), cc


def report(verdicts, scenario: Scenario, cc: str | None, console) -> bool:
    """The verdicts as a table; True if every one matched."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    title = (f"{escape(scenario.name)}, seed {scenario.seed}: expected and seen"
             + (f" (server's congestion control: {cc})" if cc else ""))
    matches = {True: "[green]yes[/]", False: "[red]NO[/]"}
    if console.width >= WIDE_VERDICTS:
        table = Table(title=title)
        for column in ("check", "expected", "seen", "matches"):
            table.add_column(column)
        for verdict in verdicts:
            table.add_row(escape(verdict.name), escape(verdict.expected), escape(verdict.seen), matches[verdict.ok])
    else:                   # narrower: each check's name on a line of its own, never cut, its values under it
        table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, show_lines=True)
        table.add_column("check: expected, seen", ratio=1)
        table.add_column("matches", no_wrap=True)
        for verdict in verdicts:
            table.add_row(f"[bold]{escape(verdict.name)}[/]\nexpected: {escape(verdict.expected)}\n"
                          f"seen: {escape(verdict.seen)}", matches[verdict.ok])
    console.print(table)
    for paragraph in scenario.lesson.split("\n\n"):   # the TOML's lines are joined: the terminal wraps them
        if paragraph.strip():
            console.print(" ".join(paragraph.split()), markup=False, highlight=False)
    return all(verdict.ok for verdict in verdicts)


WIDE_VERDICTS = 110      # all four columns side by side from this width
