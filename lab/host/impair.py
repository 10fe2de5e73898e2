"""Link impairments: delay, jitter, loss and a rate limit on a lab container's link.

``--target`` names the container whose link is impaired (server or client); every
impairment applies to the packets that container *sends*. The tools are the
kernel's: ``tc`` with netem (delay, jitter, loss) and tbf (rate), set from a
short-lived NET_ADMIN helper in the target's namespace (lab.orchestrate).

Where the kernel has no sch_netem (the machines this lab is built on lack it;
Ubuntu and Docker Desktop kernels have it):

* loss falls back to iptables' ``statistic`` match, dropping a share of the
  target's packets where they *arrive*, in the other container's INPUT chain.
  Dropping them on the way out does not work: the sending TCP is told of a local
  drop at once and simply sends again, so nothing is ever lost on the wire. A
  capture on the server then shows the original and, later, its retransmission
  (with netem, which drops before the capture point, it shows a gap first);
* rate uses tbf, which every kernel has;
* delay and jitter stop with a clear message: nothing else can do them.

``--clear`` removes all of it; ``down`` does too (the namespaces go away).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from typing import Sequence

from invoke import Context

from lab.errors import LabError
from lab.host.docker import Docker
from lab.host.options import number
from lab.host.settings import Lab
from lab.host.state import Found, address_of, require_up
from lab.host.topology import Topology, describe
from lab.terminal import say

LOSS_COMMENT = "tcplab-loss"
NO_NETEM = ("specified qdisc kind is unknown", "unknown qdisc")
_RATE = re.compile(r"(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit)", re.I)
_BYTE_RATE = re.compile(r"(\d+(?:\.\d+)?)([kmg]?)bps", re.I)


@dataclasses.dataclass(frozen=True)
class Impairment:
    """What to do to the target's outgoing packets; None where nothing."""

    delay_ms: float | None = None
    jitter_ms: float | None = None
    loss_pct: float | None = None
    rate: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.delay_ms is not None:
            parts.append(f"delay {self.delay_ms:g} ms" + (f" +/- {self.jitter_ms:g} ms" if self.jitter_ms else ""))
        if self.loss_pct is not None:
            parts.append(f"loss {self.loss_pct:g}%")
        if self.rate is not None:
            parts.append(f"rate {self.rate}")
        return ", ".join(parts) or "nothing"


def parse(delay=None, jitter=None, loss=None, rate=None) -> Impairment:
    """An Impairment from the task's options (strings), or a one-line LabError saying what is wrong."""
    impairment = Impairment(number(delay, "--delay", high=60_000), number(jitter, "--jitter", high=60_000),
                            number(loss, "--loss", high=100), rate)
    if impairment.jitter_ms and impairment.delay_ms is None:
        raise LabError("--jitter varies a delay: give --delay too (e.g. --delay 100 --jitter 20)")
    if rate is not None:
        check_rate(rate)
    if impairment == Impairment():
        raise LabError("nothing to do: give --delay, --jitter, --loss or --rate (or --clear)")
    return impairment


def check_rate(rate: str) -> None:
    """A rate in bits per second as tc writes it (500kbit, 10mbit), above 0, or a one-line LabError.

    tc reads "bps" as *bytes* per second (1mbps is 8 Mbit/s), a trap for anyone who
    reads it as bits: such rates are refused with what they would have meant.
    """
    byte_rate = _BYTE_RATE.fullmatch(rate)
    if byte_rate:
        number, prefix = byte_rate.groups()
        raise LabError(f"--rate {rate}: tc reads 'bps' as bytes per second ({float(number) * 8:g} "
                       f"{prefix.upper()}bit/s); write bits: {number}{prefix.lower()}bit for {number} "
                       f"{prefix.upper()}bit/s")
    bit_rate = _RATE.fullmatch(rate)
    if bit_rate is None:
        raise LabError(f"--rate {rate!r} is not a rate: use bits per second, e.g. 500kbit, 10mbit, 1gbit")
    if float(bit_rate.group(1)) <= 0:
        raise LabError(f"--rate {rate} stops the link altogether: give a rate above 0, e.g. 100kbit")


# --- commands (pure, tested without Docker) ---------------------------------------------


def netem_command(impairment: Impairment) -> list[str]:
    """tc netem as the root qdisc, with delay/jitter/loss; tbf hangs below it if a rate is set."""
    command = ["tc", "qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "netem"]
    if impairment.delay_ms is not None:
        command += ["delay", f"{impairment.delay_ms:g}ms"]
        if impairment.jitter_ms:
            command += [f"{impairment.jitter_ms:g}ms"]
    if impairment.loss_pct is not None:
        command += ["loss", f"{impairment.loss_pct:g}%"]
    return command


def tbf_command(rate: str, parent: str = "root") -> list[str]:
    """A token bucket: ``rate`` on average, bursts of 32 kbit, packets wait at most 400 ms."""
    where = ["root"] if parent == "root" else ["parent", parent]
    return ["tc", "qdisc", "replace", "dev", "eth0", *where, "handle", "2:", "tbf",
            "rate", rate, "burst", "32kbit", "latency", "400ms"]


def loss_rule(source_ip: str, loss_pct: float, action: str = "-A") -> list[str]:
    """The iptables fallback: drop a share of what ``source_ip`` sends, where it arrives."""
    return ["iptables", action, "INPUT", "-s", source_ip, "-m", "statistic", "--mode", "random",
            "--probability", f"{loss_pct / 100:.6f}", "-m", "comment", "--comment", LOSS_COMMENT, "-j", "DROP"]


CLEAR_QDISC = "tc qdisc del dev eth0 root 2>/dev/null; true"
CLEAR_LOSS = (f"iptables -S INPUT | grep -- '--comment {LOSS_COMMENT}' | sed 's/^-A /-D /' "
              "| while read -r rule; do iptables $rule; done; true")
SHOW = "tc qdisc show dev eth0; echo ---; iptables -S INPUT"


def shell(*commands: Sequence[str] | str) -> list[str]:
    return ["sh", "-c", "; ".join(c if isinstance(c, str) else shlex.join(c) for c in commands)]


# --- doing it ---------------------------------------------------------------------------


def helper(topology: Topology, container: str, command: list[str]) -> list[str]:
    return topology.run_args("helper", command=command, joins=container)


def namespaces(topology: Topology, target: str) -> tuple[str, list[str]]:
    """(the target's container, the other hosts' containers) for a target role."""
    hosts = [role.name for role in topology.hosts]
    if target not in hosts:
        raise LabError(f"--target must be {' or '.join(hosts)}, got {target!r}")
    return topology.container(target), [topology.container(host) for host in hosts if host != target]


def impair(c: Context, lab: Lab, target: str, impairment: Impairment) -> None:
    """Replace whatever impaired the target's link with ``impairment``.

    Nothing is removed before the new impairment is known to be possible: netem
    is tried first with ``tc qdisc replace``, which changes nothing if it fails.
    """
    topology = describe(lab)
    own, others = namespaces(topology, target)
    docker = Docker(c)
    found = require_up(docker, topology)
    if impairment.delay_ms is not None or impairment.loss_pct is not None:
        commands = [netem_command(impairment)]
        if impairment.rate:
            commands.append(tbf_command(impairment.rate, parent="1:1"))
        result = docker.run(helper(topology, own, shell(*commands)), quiet=True, check=False)
        if result.exited == 0:
            docker.run_parallel(helper(topology, other, shell(CLEAR_LOSS)) for other in others)
            say(f"{target} link: {impairment} (tc netem{' + tbf' if impairment.rate else ''})")
            return
        if not any(text in result.stderr.lower() for text in NO_NETEM):
            raise LabError(f"tc could not impair the {target}'s link: {result.stderr.strip().splitlines()[-1]}")
        if impairment.delay_ms is not None:
            raise LabError("this kernel lacks sch_netem, which delay and jitter need; --loss and --rate work "
                           "without it (load it with 'modprobe sch_netem' where the kernel has the module)")
    clear(c, lab, target, quiet=True, docker=docker)
    if impairment.rate:
        docker.run(helper(topology, own, tbf_command(impairment.rate)), quiet=True)
    if impairment.loss_pct is not None:
        rule = loss_rule(address_of(found, own, topology), impairment.loss_pct)
        docker.run_parallel(helper(topology, other, rule) for other in others)
    how = ["tbf"] if impairment.rate else []
    how += ["iptables statistic, where the packets arrive"] if impairment.loss_pct is not None else []
    say(f"{target} link: {impairment} ({' + '.join(how)}"
        + ("; this kernel lacks sch_netem)" if impairment.loss_pct is not None else ")"))


def clear(c: Context, lab: Lab, target: str | None = None, quiet: bool = False, docker: Docker | None = None) -> None:
    """Remove the impairments of one target's link, or of every host's."""
    topology = describe(lab)
    roles = [target] if target else [role.name for role in topology.hosts]
    for role in roles:
        namespaces(topology, role)          # a bad --target is said before anything runs
    docker = docker or Docker(c)
    require_up(docker, topology)
    for role in roles:
        own, others = namespaces(topology, role)
        docker.run_parallel([helper(topology, own, shell(CLEAR_QDISC)),
                             *(helper(topology, other, shell(CLEAR_LOSS)) for other in others)])
    if not quiet:
        hosts = " and ".join(roles)
        say(f"impairments cleared on the {hosts} link{'s' if len(roles) > 1 else ''}")


def describe_rules(qdiscs_and_rules: str, sources: dict[str, str]) -> dict[str, str]:
    """What ``SHOW`` printed in one namespace, as {container: impairments}.

    Its qdiscs impair its own link; its loss rules impair the link of the
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
        if LOSS_COMMENT in line and "-s " in line:
            source = line.split("-s ")[1].split()[0].split("/")[0]
            probability = float(line.split("--probability ")[1].split()[0])
            found.setdefault(sources.get(source, source), []).append(f"loss {probability * 100:g}% (iptables)")
    return {who: ", ".join(what) for who, what in found.items() if what}


def netem_words(words: list[str]) -> list[str]:
    """From ``tc qdisc show``'s netem line, the delay (and jitter) and loss it applies."""
    kept = []
    for at, word in enumerate(words):
        if word == "delay":
            kept += ["delay", words[at + 1]]
            if at + 2 < len(words) and words[at + 2][:1].isdigit():
                kept.append(words[at + 2])
        elif word == "loss":
            kept += ["loss", words[at + 1]]
    return kept


def active(c: Context, topology: Topology, found: Found) -> dict[str, str]:
    """Impairments in force now, by container name (read from the kernel, not remembered)."""
    docker = Docker(c)
    names = [name for name in (topology.container(role.name) for role in topology.hosts) if name in found]
    sources = {address_of(found, name, topology): name for name in names}
    outputs = docker.run_parallel(helper(topology, name, shell(SHOW)) for name in names)
    impaired: dict[str, list[str]] = {}
    for name, output in zip(names, outputs):
        for who, what in describe_rules(output.stdout, sources).items():
            impaired.setdefault(name if who == "self" else who, []).append(what)
    return {name: ", ".join(what) for name, what in impaired.items()}
