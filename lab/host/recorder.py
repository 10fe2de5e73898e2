"""One `invoke capture`: the capture container, the exchange it records, the annotated file.

The steps, each where a learner can see it:

1. the capture container joins the server's network namespace
   (``--network container:<lab>-server``), as root with NET_RAW and nothing else,
   and runs the engine (lab.inside.capture, or tcpdump with ``--engine tcpdump``); its
   stdout, a pcap stream, goes straight into ``captures/.NAME.pcap.part``;
2. once the engine says it is capturing, the live view (lab.livewatch) follows
   that file, and the exchange runs: ``--send`` and ``--bulk`` start a client
   container as ``invoke send`` does; without them the learner makes the traffic,
   until Ctrl-C, ``--count`` or ``--seconds``;
3. the engine is stopped with SIGINT (it hands over what is still in its ring,
   and reports the kernel's drop counter), or stops by itself;
4. the raw file becomes ``captures/NAME.pcapng`` with the story in packet
   comments (lab.annotate), written to a temporary name and renamed, so the file
   under the final name is always complete; the raw file is removed only then.

Ctrl-C at any point, or the server container dying, still ends at step 4 with a
valid file of what was captured.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import shlex
import subprocess
import threading
import time
from pathlib import Path
from typing import Sequence

from invoke import Context

from lab.errors import LabError
from lab.host.annotate import annotate
from lab.host.client_runs import send
from lab.host.docker import Docker
from lab.host.livewatch import LiveView
from lab.host.options import number
from lab.host.settings import Lab
from lab.host.state import is_ours, require_up
from lab.host.topology import Topology, describe
from lab.inside import capture as ring_engine
from lab.paths import CAPTURES_DIR
from lab.terminal import say

ENGINES = ("lab", "tcpdump")
READY_TIMEOUT = 30.0
SETTLE_S = 0.2           # after the client's last packet, before stopping the engine
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,80}")
_TCPDUMP_COUNTS = re.compile(r"(\d+) packets? (captured|received by filter|dropped by kernel)")


@dataclasses.dataclass(frozen=True)
class CaptureRequest:
    """What the learner asked `invoke capture` for."""

    name: str | None = None
    seconds: float | None = None
    count: int | None = None
    bpf: str | None = None
    client_args: tuple[str, ...] = ()     # lab.inside.client's options for --send/--bulk, or none
    engine: str = "lab"


def capture_request(seconds=None, count=None, bpf=None, client_args: Sequence[str] = (), name=None,
                    engine_name: str = "lab") -> CaptureRequest:
    """A CaptureRequest from the task's options (strings from the command line), or a one-line LabError."""
    if engine_name not in ENGINES:
        raise LabError(f"--engine must be one of {', '.join(ENGINES)}, got {engine_name!r}")
    seconds = number(seconds, "--seconds", above=True)
    count = number(count, "--count", whole=True, above=True)
    return CaptureRequest(capture_name(name), seconds, count, bpf or None, tuple(client_args), engine_name)


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


def capture_run_args(topology: Topology, request: CaptureRequest) -> list[str]:
    """The capture container ("capture" role): in the server's namespace, root with NET_RAW only.

    Its stdout is a binary stream for us, not a log to keep (the role says so).
    """
    return topology.run_args("capture", command=engine_command(request),
                             capabilities=engine_capabilities(request.engine))


class EngineLog(threading.Thread):
    """Reads the engine's stderr: when it is capturing, its statistics, its complaints.

    ``decided`` is set once the engine said it captures (``capturing`` is then
    set too) or its stderr ended: an engine that failed to start can end before
    ``docker run`` itself has exited, so the end of its stderr, not the exit of
    the docker command, is what says it never started.
    """

    def __init__(self, stream, engine_name: str) -> None:
        super().__init__(name="engine-stderr", daemon=True)
        self.stream, self.engine = stream, engine_name
        self.decided = threading.Event()
        self.capturing = threading.Event()
        self.stats: dict | None = None
        self.lines: list[str] = []

    def run(self) -> None:
        for raw in self.stream:
            line = raw.decode(errors="replace").rstrip()
            if line == ring_engine.READY or (self.engine == "tcpdump" and line.startswith("tcpdump: listening on")):
                self.capturing.set()
                self.decided.set()
            elif line.startswith(ring_engine.STATS):
                self.stats = json.loads(line[len(ring_engine.STATS):])
            elif line:
                self.lines.append(line)
        self.decided.set()    # the engine ended: nobody should wait for it any longer

    def tcpdump_stats(self) -> dict | None:
        counts = {kind: int(n) for line in self.lines for n, kind in _TCPDUMP_COUNTS.findall(line)}
        if "captured" not in counts:
            return None
        return {"captured": counts["captured"], "received": counts.get("received by filter", 0),
                "dropped": counts.get("dropped by kernel", 0)}

    def complaint(self) -> str:
        noise = ("lab.inside.capture: ", "tcpdump: listening", "tcpdump: verbose output")
        useful = [line for line in self.lines if not line.startswith(noise[1:]) and not _TCPDUMP_COUNTS.search(line)]
        return (useful[-1] if useful else "no message").removeprefix(noise[0])


def capture(c: Context, lab: Lab, request: CaptureRequest, console) -> Path:
    """Run one capture as the module docstring says; return the annotated file."""
    topology = describe(lab)
    docker = Docker(c)
    require_up(docker, topology)
    engine_container = topology.container("capture")
    for other in docker.inspect([engine_container], kind="container"):
        if is_ours(other, topology):
            raise LabError(f"a capture is already running in lab {lab.name!r}: stop it with Ctrl-C in its "
                           f"terminal, or docker rm -f {engine_container}")
        raise LabError(f"a container named {engine_container!r} exists but was not made by lab {lab.name!r}: "
                       "rename or remove it yourself, or use --lab OTHER")
    CAPTURES_DIR.mkdir(exist_ok=True)
    name = request.name or capture_name(None)
    final = CAPTURES_DIR / f"{name}.pcapng"
    if final.exists():
        raise LabError(f"{final} exists: choose another --name, or move that file away first")
    raw = CAPTURES_DIR / f".{name}.pcap.part"
    with raw.open("wb") as sink:
        proc = docker.popen(capture_run_args(topology, request), sink, str(raw.relative_to(CAPTURES_DIR.parent)))
    engine_log = EngineLog(proc.stderr, request.engine)
    engine_log.start()
    engine_log.decided.wait(READY_TIMEOUT)
    if not engine_log.capturing.is_set() or proc.poll() is not None:
        finish_engine(docker, engine_container, proc)
        engine_log.join(2)
        raw.unlink(missing_ok=True)
        raise LabError(f"the capture did not start: {engine_log.complaint()}")
    say(f"capturing on {topology.container('server')}'s eth0 with the {request.engine} engine"
        + ("; press Ctrl-C to stop" if not request.client_args and not request.count and not request.seconds
           else ""))
    view = LiveView(raw, console).start()
    outcome, client_exit = "", None
    try:
        if request.client_args:
            client_exit = run_client(c, lab, request.client_args)
            time.sleep(SETTLE_S)
            stop_engine(docker, engine_container)
        proc.wait()
    except KeyboardInterrupt:
        outcome = "interrupted: "
        stop_engine(docker, engine_container)
    finally:
        finish_engine(docker, engine_container, proc)
        engine_log.join(5)
        view.finish()
    stats = engine_log.stats or engine_log.tcpdump_stats() or {}
    result = finalize(raw, final)
    report(final, result, stats, request, outcome)
    if stats.get("reason") == "interface-gone":
        raise LabError(code=1)
    if client_exit:
        raise LabError(f"the capture is saved, but the client failed (exit {client_exit})", code=client_exit)
    return final


def run_client(c: Context, lab: Lab, client_args: Sequence[str]) -> int:
    """The exchange to record, as `invoke send` runs it; its exit code (0: all OK)."""
    try:
        send(c, lab, client_args)
    except LabError as exc:
        if exc.message:
            print(exc.message)
        return exc.code or 1
    return 0


def stop_engine(docker: Docker, container: str) -> None:
    """SIGINT: the engine hands over what is left in its ring and reports its counters."""
    docker.run(["kill", "--signal", "INT", container], quiet=True, check=False)


def finish_engine(docker: Docker, container: str, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Wait for the engine to end; if it will not, remove its container."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        docker.run(["rm", "--force", container], quiet=True, check=False)
        proc.wait(timeout)


def finalize(raw: Path, final: Path):
    """The raw pcap becomes the annotated pcapng, atomically; the raw file goes last."""
    temporary = final.with_name(f".{final.name}.tmp")
    try:
        result = annotate(raw, temporary)
    except Exception:
        temporary.unlink(missing_ok=True)
        keep = final.with_suffix(".pcap")
        raw.rename(keep)
        raise LabError(f"could not annotate the capture; the packets are kept, unannotated, in {keep}") from None
    give_to_invoking_user(temporary)
    temporary.rename(final)
    raw.unlink()
    return result


def give_to_invoking_user(path: Path) -> None:
    """Under sudo, a file we write belongs to the user who ran sudo, not to root."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() == 0 and uid and gid:
        os.chown(path, int(uid), int(gid))


def report(final: Path, result, stats: dict, request: CaptureRequest, outcome: str) -> None:
    shown = final.relative_to(CAPTURES_DIR.parent) if final.is_relative_to(CAPTURES_DIR.parent) else final
    dropped = stats.get("dropped")
    counters = (f"{stats['captured']} packets captured, {dropped} dropped by the kernel"
                if stats else f"{result.packets} packets")
    say(f"{outcome}{shown}: {counters} ({result.comments} annotated; engine {request.engine})")
    if stats.get("reason") == "interface-gone":
        say("the capture ended because the server's interface went away: the server container stopped "
            "(see invoke status); the file holds everything captured until then")
    if dropped:
        say(f"warning: the kernel dropped {dropped} packets the engine could not take in time; "
            "the file misses them")
    say(f"next: invoke inspect --pcap {shlex.quote(str(shown))} (or open it in Wireshark)")
