"""Link impairments: delay, jitter, loss, reordering and a rate limit on a lab container's link.

``--target`` names the container whose link is impaired (server or client); every
impairment applies to the packets that container *sends*. Two engines emulate the
link, and `invoke impair` says which one it used:

* **netem** (``tc qdisc ... netem``), the kernel's, where it has sch_netem (Ubuntu
  and Docker Desktop kernels do): on the target's way out, set from a short-lived
  NET_ADMIN helper in the target's namespace (the "helper" role of lab.host.topology);
* **nfqueue**, our own (lab.inside.linkemu), where the kernel lacks sch_netem (this
  project's machines, many CI and cloud kernels): a sidecar container (the "link"
  role) in the namespace where the target's packets *arrive* takes them from a
  netfilter queue and gives each its verdict after the emulated delay, or drops it.
  At the receiver, not the sender: a packet held on its sender's way out counts
  against the sending socket, and TCP Small Queues throttles the sender. A drop
  there is a real loss too (a drop on the way out is reported to the sending TCP,
  which sends again at once). A capture on the server then shows, for the server's
  packets, the original and later its retransmission (with netem, which works
  before the capture point, a gap first).

``--engine`` picks one (auto: netem where it exists). The rate limit is tbf on the
target's way out with either engine. ``status`` reads what is in force from the
kernel; ``--clear`` removes all of it, and ``down`` does too.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import time
from typing import Sequence

from invoke import Context

from lab.errors import LabError
from lab.host.engines.docker import Docker
from lab.host.engines.lab_engines import Engines
from lab.host.options import number, quantity
from lab.host.settings import Lab
from lab.host.state import Found, address_of, lab_option, require_up, running
from lab.host.topology import Launch, Topology, describe
from lab.inside.linkemu import READY as EMULATOR_READY
from lab.inside.linkemu import RULE_COMMENT
from lab.terminal import say

ENGINES = ("auto", "netem", "nfqueue")
DISTRIBUTIONS = ("normal", "uniform")
NO_NETEM = ("specified qdisc kind is unknown", "unknown qdisc")
EMULATOR_START_S = 15.0
EMULATOR_GONE = "emulator gone: unimpaired"      # status's words for a rule whose emulator was killed
_RATE = re.compile(r"(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit)", re.I)
RATE_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}      # tc's: powers of 1000
# tbf's bounds as tc takes them with the lab's 32 kbit burst: under 1 kbit tc answers with its usage
# text, and past about 20 Gbit the burst rounds below one full-size packet (34gbit: "burst 0b", a
# link that passes nothing). A lab link is a veth: no faster than that anyway.
LOWEST_RATE, HIGHEST_RATE = 8e3, 10e9
_BYTE_RATE = re.compile(r"(\d+(?:\.\d+)?)([kmg]?)bps", re.I)


@dataclasses.dataclass(frozen=True)
class Impairment:
    """What to do to the target's outgoing packets; None where nothing."""

    delay_ms: float | None = None
    jitter_ms: float | None = None
    loss_pct: float | None = None
    rate: str | None = None
    reorder_pct: float | None = None
    distribution: str = "normal"
    seed: int | None = None

    @property
    def emulated(self) -> bool:
        """Anything besides the rate: what netem or the NFQUEUE emulator does."""
        return any(value is not None for value in (self.delay_ms, self.jitter_ms, self.loss_pct, self.reorder_pct))

    def __str__(self) -> str:
        parts = []
        if self.delay_ms is not None:
            parts.append(f"delay {self.delay_ms:g} ms" + (f" +/- {self.jitter_ms:g} ms ({self.distribution})"
                                                           if self.jitter_ms else ""))
        if self.loss_pct is not None:
            parts.append(f"loss {self.loss_pct:g}%")
        if self.reorder_pct is not None:
            parts.append(f"reorder {self.reorder_pct:g}%")
        if self.rate is not None:
            parts.append(f"rate {self.rate}")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        return ", ".join(parts) or "nothing"


def parse(delay=None, jitter=None, loss=None, rate=None, reorder=None, distribution=None, seed=None) -> Impairment:
    """An Impairment from the task's options (strings), or a one-line LabError saying what is wrong."""
    if distribution is not None and distribution not in DISTRIBUTIONS:
        raise LabError(f"--distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
    impairment = Impairment(quantity(delay, "--delay", "ms", high=60_000), quantity(jitter, "--jitter", "ms", high=60_000),
                            quantity(loss, "--loss", "%", high=100), rate, quantity(reorder, "--reorder", "%", high=100),
                            distribution or "normal", number(seed, "--seed", whole=True, high=2**31 - 1))
    if impairment.jitter_ms and impairment.delay_ms is None:
        raise LabError("--jitter varies a delay: give --delay too (e.g. --delay 100 --jitter 20)")
    if impairment.reorder_pct and not impairment.delay_ms:
        raise LabError("--reorder sends some packets without the delay, so that they overtake: give --delay too")
    if rate is not None:
        impairment = dataclasses.replace(impairment, rate=check_rate(rate))
    if not impairment.emulated and impairment.rate is None:
        raise LabError("nothing to do: give --delay, --jitter, --loss, --reorder or --rate (or --clear)")
    return impairment


def check_rate(given: str) -> str:
    """A rate in bits per second, as tc writes it (500kbit, 10mbit), from what a person types
    (``10mbit``, ``10 Mbit/s``), within tc's range for the link; else a one-line LabError.

    tc reads "bps" as *bytes* per second (1mbps is 8 Mbit/s), a trap for anyone who
    reads it as bits: such rates are refused with what they would have meant.
    """
    rate = given.strip().replace(" ", "").lower().removesuffix("/s")
    byte_rate = _BYTE_RATE.fullmatch(rate)
    if byte_rate:
        number_, prefix = byte_rate.groups()
        raise LabError(f"--rate {rate}: tc reads 'bps' as bytes per second ({float(number_) * 8:g} "
                       f"{prefix.upper()}bit/s); write bits: {number_}{prefix.lower()}bit for {number_} "
                       f"{prefix.upper()}bit/s")
    bit_rate = _RATE.fullmatch(rate)
    if bit_rate is None and re.fullmatch(r"\d+(\.\d+)?", rate):
        raise LabError(f"--rate {rate} is ambiguous: say its unit, in bits per second: {rate}kbit, {rate}mbit, ...")
    if bit_rate is None:
        raise LabError(f"--rate {rate!r} is not a rate: use bits per second, e.g. 500kbit, 10mbit, 1gbit")
    bits_per_s = float(bit_rate.group(1)) * RATE_UNITS[bit_rate.group(2).lower()]
    if bits_per_s <= 0:
        raise LabError(f"--rate {rate} stops the link altogether: give a rate above 0, e.g. 100kbit")
    if not LOWEST_RATE <= bits_per_s <= HIGHEST_RATE:
        raise LabError(f"--rate {rate} is out of tc's range for the lab's link: give 8kbit to 10gbit")
    return rate


# --- commands (pure, tested without Docker) ---------------------------------------------


def netem_command(impairment: Impairment) -> list[str]:
    """tc netem as the root qdisc, with delay/jitter/loss/reorder; tbf hangs below it if a rate is set."""
    command = ["tc", "qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "netem"]
    if impairment.delay_ms is not None:
        command += ["delay", f"{impairment.delay_ms:g}ms"]
        if impairment.jitter_ms:
            command += [f"{impairment.jitter_ms:g}ms", "distribution", impairment.distribution]
    if impairment.loss_pct is not None:
        command += ["loss", f"{impairment.loss_pct:g}%"]
    if impairment.reorder_pct is not None:
        command += ["reorder", f"{impairment.reorder_pct:g}%"]
    return command


def tbf_command(rate: str, parent: str = "root") -> list[str]:
    """A token bucket: ``rate`` on average, bursts of 32 kbit, packets wait at most 400 ms."""
    where = ["root"] if parent == "root" else ["parent", parent]
    return ["tc", "qdisc", "replace", "dev", "eth0", *where, "handle", "2:", "tbf",
            "rate", rate, "burst", "32kbit", "latency", "400ms"]


def emulator_options(source: str, impairment: Impairment) -> list[str]:
    """lab.inside.linkemu's command line for delaying what ``source`` sends."""
    options = ["--source", source, "--delay-ms", f"{impairment.delay_ms or 0:g}"]
    if impairment.jitter_ms:
        options += ["--jitter-ms", f"{impairment.jitter_ms:g}", "--distribution", impairment.distribution]
    if impairment.loss_pct:
        options += ["--loss", f"{impairment.loss_pct:g}"]
    if impairment.reorder_pct:
        options += ["--reorder", f"{impairment.reorder_pct:g}"]
    if impairment.seed is not None:
        options += ["--seed", str(impairment.seed)]
    return options


CLEAR_QDISC = "tc qdisc del dev eth0 root 2>/dev/null; true"
# A rule the emulator could not remove (it was killed): its comment has spaces, hence eval.
CLEAR_LINK_RULES = (f"iptables -t raw -S PREROUTING | grep -- '{RULE_COMMENT}' | sed 's/^-A /-D /' "
                    "| while read -r rule; do eval iptables -t raw \"$rule\"; done; true")
SHOW = "tc qdisc show dev eth0; echo ---; iptables -t raw -S PREROUTING"


def shell(*commands: Sequence[str] | str) -> list[str]:
    return ["sh", "-c", "; ".join(c if isinstance(c, str) else shlex.join(c) for c in commands)]


# --- doing it ---------------------------------------------------------------------------


def helper(topology: Topology, host: str, command: list[str]) -> Launch:
    """A helper in ``host``'s namespace that runs ``command`` and exits."""
    return topology.launch("helper", command=command, joins=host)


def receivers_of(topology: Topology, target: str) -> list[str]:
    """The hosts that receive what ``target`` sends: every other host; a target that is not a host
    is one line."""
    hosts = [role.name for role in topology.hosts]
    if target not in hosts:
        raise LabError(f"--target must be {' or '.join(hosts)}, got {target!r}")
    return [host for host in hosts if host != target]


def emulator_instance(target: str, receiver: str) -> str:
    """The link container's instance name: the sender's host and the receiver's."""
    return f"{target}-to-{receiver}"


def impair(c: Context, lab: Lab, target: str, impairment: Impairment, engine: str = "auto") -> None:
    """Replace whatever impaired the target's link with ``impairment``, with netem or the emulator.

    Nothing is removed before the new impairment is known to be possible: netem
    is tried first with ``tc qdisc replace``, which changes nothing if it fails.
    """
    if engine not in ENGINES:
        raise LabError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    topology = describe(lab)
    others = receivers_of(topology, target)
    engines = Engines(c, lab)
    found = require_up(engines, topology)
    before = active(engines, topology, found).get(topology.container(target))
    if before:
        say(f"{target} link had: {before}; it is replaced")
    if impairment.emulated and engine in ("auto", "netem"):
        commands = [netem_command(impairment)]
        if impairment.rate:
            commands.append(tbf_command(impairment.rate, parent="1:1"))
        result = engines.run(helper(topology, target, shell(*commands)), quiet=True, check=False)
        if result.exited == 0:
            remove_emulators(engines, topology, target, others)
            say(f"{target} link: {impairment} (engine netem{' + tbf' if impairment.rate else ''}"
                + ("; --seed is for the nfqueue engine, netem's randomness is its own)" if impairment.seed is not None
                   else ")"))
            return
        if not any(text in result.stderr.lower() for text in NO_NETEM):
            raise LabError(f"tc could not impair the {target}'s link: {result.stderr.strip().splitlines()[-1]}")
        if engine == "netem":
            raise LabError("this kernel lacks sch_netem: use --engine nfqueue (or auto), the lab's own emulator")
    clear(c, lab, target, quiet=True, engines=engines)
    if impairment.rate:
        engines.run(helper(topology, target, tbf_command(impairment.rate)), quiet=True)
    if impairment.emulated:
        start_emulators(engines, topology, target, others,
                        emulator_options(address_of(found, topology.container(target), topology), impairment))
    how = (["tbf"] if impairment.rate else []) + (["engine nfqueue, where the packets arrive"]
                                                 if impairment.emulated else [])
    said = "; this kernel lacks sch_netem" if impairment.emulated and engine == "auto" else ""
    say(f"{target} link: {impairment} ({' + '.join(how)}{said})")


def start_emulators(engines: Engines, topology: Topology, target: str, receivers: list[str],
                    options: list[str]) -> None:
    """A link emulator (lab.inside.linkemu with ``options``) in each receiver host's namespace, for
    what ``target`` sends; return once each has its rule in place."""
    started = []
    for receiver in receivers:
        launch = topology.launch("link", *options, joins=receiver, instance=emulator_instance(target, receiver))
        engines.run(launch, quiet=True)
        started.append((engines.of(receiver), str(launch.name)))
    deadline = time.monotonic() + EMULATOR_START_S
    waiting = list(started)
    while waiting:
        docker, name = waiting[0]
        log = docker.run(["logs", name], quiet=True, check=False)
        if EMULATOR_READY in log.stdout:
            waiting.pop(0)
            continue
        inspected = docker.inspect([name], kind="container")
        if not inspected or not running(inspected[0]) or time.monotonic() > deadline:
            complaint = (log.stderr.strip().splitlines() or ["no message"])[-1]
            if not inspected:       # it exited at once, and --rm took its log with it
                again = lab_option(topology.lab)
                complaint = ("it exited at once: run it by hand to see why (docker run ... python3 -m "
                             f"lab.inside.linkemu ...), or rebuild an image older than this code (invoke down{again}, "
                             f"then invoke up{again})")
            for docker, name in started:
                docker.run(["rm", "--force", name], quiet=True, check=False)
            raise LabError(f"the link emulator did not start: {complaint}")
        time.sleep(0.1)


def remove_emulators(engines: Engines, topology: Topology, target: str, receivers: list[str]) -> None:
    """The emulators delaying what ``target`` sends, and any rule one of them left behind."""
    def remove(receiver: str) -> None:
        name = topology.container("link", emulator_instance(target, receiver))
        engines.of(receiver).run(["rm", "--force", name], quiet=True, check=False)
        engines.run(helper(topology, receiver, shell(CLEAR_LINK_RULES)), quiet=True)

    Docker.gather(*(lambda receiver=receiver: remove(receiver) for receiver in receivers))


def clear(c: Context, lab: Lab, target: str | None = None, quiet: bool = False,
          engines: Engines | None = None) -> None:
    """Remove the impairments of one target's link, or of every host's."""
    topology = describe(lab)
    roles = [target] if target else [role.name for role in topology.hosts]
    for role in roles:
        receivers_of(topology, role)        # a bad --target is said before anything runs
    engines = engines or Engines(c, lab)
    require_up(engines, topology)
    for role in roles:
        engines.run(helper(topology, role, shell(CLEAR_QDISC)), quiet=True)
        remove_emulators(engines, topology, role, receivers_of(topology, role))
    if not quiet:
        hosts = " and ".join(roles)
        say(f"impairments cleared on the {hosts} link{'s' if len(roles) > 1 else ''}")


def describe_rules(qdiscs_and_rules: str, sources: dict[str, str]) -> dict[str, str]:
    """What ``SHOW`` printed in one namespace, as {container: impairments}.

    Its qdiscs impair its own link; its emulator rules impair the link of the
    container whose address they name (``sources``: ip -> container).
    """
    qdiscs, _, rules = qdiscs_and_rules.partition("---")
    found: dict[str, list[str]] = {}
    own = []
    for line in qdiscs.splitlines():
        words = line.split()
        if "netem" in words:
            own.append("netem " + " ".join(netem_words(words)))
        elif "tbf" in words and "rate" in words:
            own.append(f"tbf rate {words[words.index('rate') + 1]}")
    found["self"] = own
    for line in rules.splitlines():
        if RULE_COMMENT in line and "-s " in line:
            source = line.split("-s ")[1].split()[0].split("/")[0]
            said = line.split(RULE_COMMENT, 1)[1].split('"')[0].strip()
            found.setdefault(sources.get(source, source), []).append(f"{said} (nfqueue)")
    return {who: ", ".join(what) for who, what in found.items() if what}


def netem_words(words: list[str]) -> list[str]:
    """From ``tc qdisc show``'s netem line, the delay (and jitter), loss and reorder it applies."""
    kept = []
    for at, word in enumerate(words):
        if word == "delay":
            kept += ["delay", words[at + 1]]
            if at + 2 < len(words) and words[at + 2][:1].isdigit():
                kept.append(words[at + 2])
        elif word in ("loss", "reorder"):
            kept += [word, words[at + 1]]
    return kept


def active(engines: Engines, topology: Topology, found: Found) -> dict[str, str]:
    """Impairments in force now, by container name (read from the kernel, not remembered).

    An emulator's rule whose emulator is gone (its container killed) lets packets through
    unimpaired (``--queue-bypass``): it is said so, not shown as if it delayed them.
    """
    hosts = [role.name for role in topology.hosts if topology.container(role.name) in found]
    names = [topology.container(host) for host in hosts]
    sources = {address_of(found, name, topology): name for name in names}
    host_of = {topology.container(host): host for host in hosts}
    outputs = Docker.gather(*(lambda host=host: engines.run(helper(topology, host, shell(SHOW)), quiet=True,
                                                            echo=False) for host in hosts))
    impaired: dict[str, list[str]] = {}
    for receiver, output in zip(hosts, outputs):
        for who, what in describe_rules(output.stdout, sources).items():
            if who != "self" and who in host_of and not emulator_runs(engines, topology, host_of[who], receiver):
                what = what.removesuffix(")") + f", {EMULATOR_GONE})"
            impaired.setdefault(topology.container(receiver) if who == "self" else who, []).append(what)
    return {name: ", ".join(what) for name, what in impaired.items()}


def emulator_runs(engines: Engines, topology: Topology, sender: str, receiver: str) -> bool:
    """Whether the link emulator for what ``sender`` sends to ``receiver`` is running."""
    name = topology.container("link", emulator_instance(sender, receiver))
    found = engines.of(receiver).inspect([name], kind="container")
    return running(found[0] if found else None)
