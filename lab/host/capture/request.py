"""What `invoke capture` was asked for, and the capture container that follows from it (no I/O).

Checked once, here: the name becomes a file name in captures/, the numbers are
numbers, the engine is one the lab has. The container is the "capture" role of
lab.host.topology with the engine's command and capabilities.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from typing import Sequence

from lab.errors import LabError
from lab.host.options import number, quantity
from lab.host.topology import Launch, Topology

ENGINES = ("lab", "tcpdump")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,80}")


@dataclasses.dataclass(frozen=True)
class CaptureRequest:
    """What the learner asked `invoke capture` for."""

    name: str | None = None
    seconds: float | None = None
    count: int | None = None
    bpf: str | None = None
    client_args: tuple[str, ...] = ()     # lab.inside.client's options for --send/--bulk, or none
    engine: str = "lab"
    kernel: bool = False                  # also sample the kernel's TCP state (lab.host.capture.kernel_view)
    underlay: bool = False                # also capture the server node's own interface (a swarm lab)
    all_frames: bool = False              # keep frames no lab container sent (the bridge's IPv6, ...)


def lab_frames_only(request: CaptureRequest, macs: Sequence[str]) -> CaptureRequest:
    """The request with a capture filter that keeps only what the lab's containers sent (by their MAC
    addresses), beside the learner's own filter: the host's side of Docker's bridge announces itself
    in IPv6 (router solicitations, MLD), four frames among a 14-packet lesson, none of them the lab's.
    Unchanged with ``all_frames``, or when the addresses are not known."""
    if request.all_frames or not macs:
        return request
    ours = " or ".join(f"ether src {mac}" for mac in macs)
    return dataclasses.replace(request, bpf=f"({ours}) and ({request.bpf})" if request.bpf else f"({ours})")


def capture_request(seconds=None, count=None, bpf=None, client_args: Sequence[str] = (), name=None,
                    engine_name: str = "lab", kernel: bool = False, underlay: bool = False,
                    all_frames: bool = False) -> CaptureRequest:
    """A CaptureRequest from the task's options (strings from the command line), or a one-line LabError."""
    if engine_name not in ENGINES:
        raise LabError(f"--engine must be one of {', '.join(ENGINES)}, got {engine_name!r}")
    seconds = quantity(seconds, "--seconds", "s", above=True)
    count = number(count, "--count", whole=True, above=True)
    return CaptureRequest(capture_name(name), seconds, count, bpf or None, tuple(client_args), engine_name,
                          bool(kernel), bool(underlay), bool(all_frames))


def capture_name(name: str | None) -> str:
    """A safe file name: the one given, or the time now (2026-11-24T07-40-12)."""
    if name is None:
        return datetime.datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    name = name.removesuffix(".pcapng")
    if not _NAME.fullmatch(name):
        raise LabError(f"--name {name!r} is not a usable file name: use letters, digits, '-', '_' and '.'")
    return name


def engine_command(request: CaptureRequest) -> list[str]:
    """The command the capture container runs."""
    if request.engine == "lab":
        return ["python3", "-m", "lab.inside.capture", "--iface", "eth0",
                *(["--filter", request.bpf] if request.bpf else []),
                *(["--count", str(request.count)] if request.count else []),
                *(["--seconds", str(request.seconds)] if request.seconds else [])]
    # tcpdump: whole packets, each written at once, a 64 MiB buffer like our ring;
    # timeout(1) gives it a time limit with SIGINT. It drops from root to its own
    # user once the socket is open.
    command = ["tcpdump", "-i", "eth0", "-s", "0", "-B", "65536", "-U", "--immediate-mode", "-w", "-",
               *(["-c", str(request.count)] if request.count else []), *([request.bpf] if request.bpf else [])]
    return (["timeout", "-s", "INT", str(request.seconds)] + command) if request.seconds else command


def engine_capabilities(engine_name: str) -> list[str]:
    """NET_RAW opens the packet socket. Debian's tcpdump always drops root for its own
    user (even with -Z root), which takes SETUID and SETGID; and then KILL, so that
    timeout(1), still root, can pass it SIGINT."""
    return ["NET_RAW"] + (["SETUID", "SETGID", "KILL"] if engine_name == "tcpdump" else [])


def capture_launch(topology: Topology, request: CaptureRequest, labels: dict[str, str] | None = None) -> Launch:
    """The capture container ("capture" role): in the server's namespace, root with NET_RAW only.

    Its stdout is a binary stream for us, not a log to keep (the role says so);
    ``labels`` say which file it writes and who started it (lab.host.capture.recorder).
    """
    return topology.launch("capture", command=engine_command(request),
                           capabilities=engine_capabilities(request.engine), labels=labels)
