"""What the engine's kernel offers the lab's namespaces, asked of that kernel, not of this machine's.

The engine can be another machine (``ssh://``, a swarm's nodes, Docker Desktop's VM):
the congestion controls its kernel offers and lets containers use, and whether it has
the linear SYN timeouts the lab turns off, are that kernel's. A helper container
(the lab's image, no network, no capability) reads them from /proc and answers, as
lab.host.engines.encryption asks the nodes about ESP.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from lab.errors import LabError

if TYPE_CHECKING:
    from lab.host.engines.docker import Docker

PROBE = ("cat /proc/sys/net/ipv4/tcp_available_congestion_control; echo '|'; "
         "cat /proc/sys/net/ipv4/tcp_allowed_congestion_control; echo '|'; "
         "test -e /proc/sys/net/ipv4/tcp_syn_linear_timeouts && echo linear")


@dataclasses.dataclass(frozen=True)
class EngineKernel:
    """A kernel's answers; empty tuples where it did not say (then nothing is refused)."""

    available: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()
    syn_linear_timeouts: bool = False

    def check(self, name: str) -> None:
        """A container may choose only what the kernel allows (tcp_allowed_congestion_control):
        it refuses the others outside its own host namespace, even when loaded."""
        if self.available and name not in self.available:
            raise LabError(f"the engine's kernel offers the congestion controls {', '.join(self.available)}, not "
                           f"{name!r}: pick one of those with --cc (a module may add more: modprobe tcp_{name})")
        if self.available and self.allowed and name not in self.allowed:
            raise LabError(f"the engine's kernel has {name} but lets containers use only {', '.join(self.allowed)}: "
                           "pick one of those, or allow it on the engine's host: sysctl -w "
                           f"net.ipv4.tcp_allowed_congestion_control=\"{' '.join(self.allowed)} {name}\"")

    @classmethod
    def of_all(cls, kernels: list["EngineKernel"]) -> "EngineKernel":
        """What every one of several kernels (a swarm lab's nodes) offers."""
        if not kernels:
            return cls()
        first, *rest = kernels
        return cls(tuple(n for n in first.available if all(n in k.available for k in rest)),
                   tuple(n for n in first.allowed if all(n in k.allowed for k in rest)),
                   all(k.syn_linear_timeouts for k in kernels))


def parse(answer: str) -> EngineKernel:
    parts = (answer.split("|") + ["", "", ""])[:3]
    return EngineKernel(tuple(parts[0].split()), tuple(parts[1].split()), parts[2].strip() == "linear")


def probe(docker: "Docker", image: str) -> EngineKernel:
    """The kernel behind ``docker`` (one engine), asked with a short-lived container of ``image``."""
    return parse(probe_answer(docker, image))


def probe_answer(docker: "Docker", image: str) -> str:
    """What the probe container answered ("" if it could not run: then nothing is refused). A class
    asks it once per engine and hands it to each lab's `up` (KERNEL_ANSWER_ENV)."""
    result = docker.run(["run", "--rm", "--network", "none", "--cap-drop", "ALL", "--read-only",
                         "--security-opt", "no-new-privileges", image, "sh", "-c", PROBE],
                        quiet=True, check=False, echo=False)
    return result.stdout if result.exited == 0 else ""


KERNEL_ANSWER_ENV = "TCPLAB_ENGINE_KERNEL"
"""Set by `invoke class up` for the `up` of each of its labs: the probe's answer on that lab's engine,
asked once for the whole class (a probe is a container's start, half a second a lab)."""
