"""One `invoke capture`: the capture container, the exchange it records, the annotated file.

The steps, each where a learner can see it:

1. the capture container (lab.host.capture.request) joins the server's network
   namespace (``--network container:<lab>-server``), as root with NET_RAW and
   nothing else, and runs the engine (lab.inside.capture, or tcpdump with
   ``--engine tcpdump``); its stdout, a pcap stream, goes straight into
   ``captures/.NAME.<random>.pcap.part``, a file made new for this capture alone
   (lab.host.capture.safe_files);
2. once the engine says it is capturing, the live view (lab.host.capture.livewatch)
   follows that file, and the exchange runs: ``--send`` and ``--bulk`` start a
   client container as ``invoke send`` does; without them the learner makes the
   traffic, until Ctrl-C, ``--count`` or ``--seconds``;
3. the engine is stopped with SIGINT (it hands over what is still in its ring,
   and reports the kernel's drop counter), or stops by itself;
4. the raw file becomes ``captures/NAME.pcapng`` with the story in packet
   comments (lab.host.capture.annotate), written to a new temporary file and linked to its
   final name, so the file under that name is always complete and nothing that
   appeared there meanwhile is replaced; the raw file is removed only then.

Ctrl-C at any moment ends with a valid file of what was captured or, before the
engine captured anything, with nothing; either way with no container left. The
server container dying ends at step 4 too, and so does the engine dying, which
is said. A capture container whose `invoke capture` was killed (kill -9) is an
orphan: the next capture, or `down`, removes it and its partial file; its label
names the process that started it, which is how a live capture is told apart.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import NoReturn, Sequence

from invoke import Context

from lab.errors import LabError
from lab.host.capture import leftovers
from lab.host.capture.annotate import Annotated, annotate
from lab.host.capture.kernel_view import KernelSummary, KernelView, remove_leftovers
from lab.host.capture.leftovers import whole_records
from lab.host.capture.livewatch import LiveView
from lab.host.capture.owners import owner_alive, owner_token
from lab.host.capture.raw_sink import RawSink
from lab.host.capture.request import CaptureRequest, capture_launch, capture_name, lab_frames_only
from lab.host.capture.safe_files import (
    PART_SUFFIX,
    give_to_invoking_user,
    new_private_file,
    place,
    remove_if_regular,
    writable_folder,
)
from lab.host.engines.docker import Docker
from lab.host.engines.lab_engines import Engines
from lab.host.held_interrupts import held_interrupts
from lab.host.settings import OWNER_LABEL, PART_LABEL, Lab
from lab.host.state import is_ours, mac_of, object_labels, require_up
from lab.host.topology import NODE_NETWORK, Topology, describe
from lab.inside import capture as ring_engine
from lab.paths import CAPTURES_DIR, shown
from lab.terminal import say

READY_TIMEOUT = 30.0
SETTLE_S = 0.2           # after the client's last packet, before stopping the engine
CLIENT_STOP_S = 5.0      # after Ctrl-C, how long the client may take to stop by itself
_TCPDUMP_COUNTS = re.compile(r"(\d+) packets? (captured|received by filter|dropped by kernel)")


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
        noise = ("lab.inside.capture: ", "tcpdump: listening", "tcpdump: verbose output", "Run 'docker",
                 "See 'docker")
        useful = [line for line in self.lines if not line.startswith(noise[1:]) and not _TCPDUMP_COUNTS.search(line)]
        return (useful[-1] if useful else "no message").removeprefix(noise[0]).removeprefix("docker: ")

    def name_taken(self) -> bool:
        """The engine's container was not made: one of its name exists (a capture started at the same moment)."""
        return any("is already in use by container" in line for line in self.lines)


def capture(c: Context, lab: Lab, request: CaptureRequest, console) -> Path:
    """Run one capture as the module docstring says; return the annotated file."""
    writable_folder(CAPTURES_DIR)           # before anything starts: one line if it cannot be written
    topology = describe(lab)
    engines = Engines(c, lab)
    docker = engines.of("server")           # the capture engine runs in the server's namespace
    found = require_up(engines, topology)
    asked = request
    macs = [mac_of(found, topology.container(host.name), topology) for host in topology.hosts]
    request = lab_frames_only(request, [mac for mac in macs if mac])
    engine_container = topology.container("capture")
    remove_orphan(docker, topology, engine_container)
    remove_leftovers(engines, topology)     # the samplers of a killed capture (it is not running: see above)
    for line in leftovers.sweep(CAPTURES_DIR):
        say(line)
    final = CAPTURES_DIR / f"{request.name or capture_name(None)}.pcapng"
    if final.exists() or final.is_symlink():
        raise LabError(f"{final} exists: choose another --name, or move that file away first")
    if request.underlay and not lab.kind.between_hosts:
        raise LabError("--underlay captures the wire between two hosts: it needs a lab across hosts "
                       "(engine swarm); on one host nothing travels inside VXLAN")
    # What starts is undone if a later start fails: the kernel's samplers, the underlay's engine,
    # the partial file. Once the engine and the threads that own its file run, the finally below
    # owns them all; Ctrl-C waits (held_interrupts) until they do, so none is left behind.
    outcome, client_exit = "", 0
    kernel: KernelView | None = None
    underlay: Underlay | None = None
    engine_log: EngineLog | None = None
    view: LiveView | None = None
    try:
        with contextlib.ExitStack() as started:
            kernel = start_kernel_view(engines, topology, final) if request.kernel else None
            if kernel is not None:
                started.callback(kernel.abandon)
            underlay = Underlay(engines, topology, final) if request.underlay else None
            if underlay is not None:
                started.callback(underlay.finish)
            with held_interrupts():
                fd, raw = new_private_file(CAPTURES_DIR, f".{final.stem}.", PART_SUFFIX)
                started.callback(remove_if_regular, raw)
                started.callback(os.close, fd)
                proc = engines.popen(capture_launch(topology, request, {PART_LABEL: raw.name,
                                                                        OWNER_LABEL: owner_token()}),
                                     subprocess.PIPE, str(raw.relative_to(CAPTURES_DIR.parent)))
                started.pop_all()
                assert proc.stdout is not None
                sink = RawSink(proc.stdout, fd, on_failure=lambda: docker.interrupt(engine_container))
                sink.start()
                engine_log = EngineLog(proc.stderr, request.engine)
                engine_log.start()
        engine_log.decided.wait(READY_TIMEOUT)
        if engine_log.capturing.is_set():
            say(f"capturing on {topology.container('server')}'s eth0 with the {request.engine} engine"
                + (" and the kernel's view of both hosts" if kernel else "")
                + ("; press Ctrl-C to stop" if not (request.client_args or request.count or request.seconds)
                   else ""))
            view = LiveView(raw, console).start()
            if request.client_args:
                client_exit = run_client(engines, topology, request.client_args)
                time.sleep(SETTLE_S)
                docker.interrupt(engine_container)
            proc.wait()
    except KeyboardInterrupt:
        outcome = "interrupted: "
    finally:
        if engine_log is not None:          # the engine started (else what had started is undone)
            with held_interrupts(then_raise=False) as held:     # a Ctrl-C now cuts nothing in half
                kernel_summary = stop_engine(docker, engine_container, proc, sink, engine_log, raw,
                                             kernel, underlay, view)
            if held.interrupted:
                outcome = "interrupted: "
    if engine_log is None or not engine_log.capturing.is_set():
        if outcome:     # interrupted before the engine captured (or even started): what had started is undone
            raise LabError("interrupted before the capture started: nothing was saved", code=130)
        assert engine_log is not None       # only Ctrl-C leaves the try above without an engine
        if engine_log.name_taken():
            raise LabError(f"a capture is already running in lab {lab.name!r} (it started at the same moment as this "
                           "one): wait for it to end, or stop it with Ctrl-C in its terminal")
        raise LabError(f"the capture did not start: {engine_log.complaint()}")
    stats = engine_log.stats or engine_log.tcpdump_stats() or {}
    if sink.error is not None:
        cut_short(raw, final, stats, sink.error)
    final, result = finalize(raw, final, kernel_summary, filter_words(asked, request))
    report(final, result, stats, request, outcome)
    if kernel_summary is not None:
        say(f"kernel view: {kernel_summary}")
    if underlay is not None and underlay.path is not None:
        say(f"underlay: {shown(underlay.path)}: the server node's {lab.underlay}, the lab's packets inside VXLAN "
            f"(invoke inspect --pcap {shown(underlay.path)})")
    if not stats and not outcome:
        raise LabError(f"the capture engine died (exit {proc.returncode}) before it finished: {final.name} "
                       f"holds the {result.packets} packets it had written")
    if stats.get("reason") == "interface-gone":
        raise LabError(code=1)
    if client_exit and not result.comments:     # not one packet of the exchange: nothing worth keeping
        remove_if_regular(final)
        if kernel_summary is not None:
            remove_if_regular(kernel_summary.path)
        raise LabError(f"the client failed (exit {client_exit}) before any packet of the exchange: no capture "
                       "is kept (see the client's message above)", code=client_exit)
    if client_exit:
        raise LabError(f"the capture is saved, but the client failed (exit {client_exit})", code=client_exit)
    return final


def stop_engine(docker: Docker, engine_container: str, proc: subprocess.Popen, sink: RawSink,
                engine_log: EngineLog, raw: Path, kernel: KernelView | None, underlay: Underlay | None,
                view: LiveView | None) -> KernelSummary | None:
    """After the exchange, or after Ctrl-C: the engine stopped and waited for, the file's writer and the
    live view done, the raw file gone if nothing was captured; the kernel's summary if it was sampled."""
    if engine_log.name_taken():         # that name is another capture's container: not ours to stop
        proc.wait(10)
    else:
        if proc.poll() is None:         # still running: interrupted, or the wait failed
            docker.interrupt(engine_container)
        docker.wait_or_remove(engine_container, proc)
    sink.join(10)
    if underlay is not None:
        underlay.finish()
    engine_log.join(5)
    if view is not None:
        view.finish()
    if not engine_log.capturing.is_set():
        remove_if_regular(raw)          # nothing was captured: nothing is left
    if kernel is not None and engine_log.capturing.is_set() and sink.error is None:
        return kernel.finish()
    if kernel is not None:
        kernel.abandon()
    return None


class Underlay:
    """A second capture engine on the server's node, in the node's own namespace, on its
    interface between the hosts (the lab's ``underlay`` setting): what VXLAN makes of the lab's
    packets. It starts with the capture and stops after it; its file is NAME.underlay.pcap."""

    def __init__(self, engines: Engines, topology: Topology, final: Path) -> None:
        self.docker = engines.of(topology.host_of("capture", NODE_NETWORK))     # the server's node
        self.path: Path | None = None
        self.container = topology.container("capture", "underlay")
        self.final = final.with_name(f"{final.stem}.underlay.pcap")
        fd, self.raw = new_private_file(CAPTURES_DIR, f".{self.final.stem}.", PART_SUFFIX)
        from lab.inspect.overlay import VXLAN_PORT

        command = ["python3", "-m", "lab.inside.capture", "--iface", topology.lab.underlay,
                   "--filter", f"udp port {VXLAN_PORT}"]
        with os.fdopen(fd, "wb") as sink:
            self.proc = engines.popen(topology.launch("capture", command=command, capabilities=["NET_RAW"],
                                                      joins=NODE_NETWORK, instance="underlay",
                                                      labels={PART_LABEL: self.raw.name}),
                                      sink, str(self.raw.relative_to(CAPTURES_DIR.parent)))
        self.log = EngineLog(self.proc.stderr, "lab")
        self.log.start()
        self.log.decided.wait(READY_TIMEOUT)

    def finish(self) -> None:
        self.docker.interrupt(self.container)
        self.docker.wait_or_remove(self.container, self.proc)
        self.log.join(5)
        if self.log.capturing.is_set():
            self.path = place(self.raw, self.final)
        else:
            remove_if_regular(self.raw)
            say(f"the underlay capture did not start: {self.log.complaint()}")


def remove_orphan(docker: Docker, topology: Topology, engine_container: str) -> None:
    """Refuse when a capture runs; remove one whose `invoke capture` is gone (its files are
    lab.host.capture.leftovers' business)."""
    for other in docker.inspect([engine_container], kind="container"):
        if not is_ours(other, topology):
            raise LabError(f"a container named {engine_container!r} exists but was not made by lab "
                           f"{topology.lab.name!r}: rename or remove it yourself, or use --lab OTHER")
        labels = object_labels(other)
        if owner_alive(labels.get(OWNER_LABEL, "")):
            raise LabError(f"a capture is already running in lab {topology.lab.name!r}: stop it with Ctrl-C in "
                           f"its terminal (or docker rm -f {engine_container})")
        docker.run(["rm", "--force", engine_container], quiet=True, check=False)
        say("removed the container of a capture whose invoke was killed")


def run_client(engines: Engines, topology: Topology, client_args: Sequence[str]) -> int:
    """The exchange to record, in a client container as `invoke send` runs it; its exit code.

    Ctrl-C is passed on to the client, which stops at once (without reading the
    rest of a BULK); if it has not stopped after CLIENT_STOP_S, it is killed.
    """
    client = engines.popen(topology.launch("client-run", *client_args), stderr=None)
    try:
        return client.wait()
    except KeyboardInterrupt:
        client.send_signal(signal.SIGINT)      # docker run passes it on to the client in the container
        try:
            client.wait(CLIENT_STOP_S)
        except subprocess.TimeoutExpired:
            client.kill()
            client.wait()
        raise


def start_kernel_view(engines: Engines, topology: Topology, final: Path) -> KernelView:
    """Samplers in both hosts' namespaces, sampling before the exchange starts."""
    kernel = KernelView(engines, topology, final)
    if not kernel.wait_ready():
        kernel.abandon()
        raise LabError(f"the kernel sampler did not start: {kernel.complaint()}")
    return kernel


def cut_short(raw: Path, final: Path, stats: dict, error: OSError) -> NoReturn:
    """A write to the raw file failed (the disk is full): keep its whole records as a pcap, say how
    many of how many, and stop."""
    fd = os.open(raw, os.O_RDWR | os.O_NOFOLLOW)
    try:
        end, packets = whole_records(fd)
        os.ftruncate(fd, end)                       # a record cut by the failed write goes
        give_to_invoking_user(fd)
    finally:
        os.close(fd)
    keep = place(raw, final.with_suffix(".pcap"))
    captured = f" of {stats['captured']} captured" if stats.get("captured") else ""
    say(f"{shown(keep)}: {packets} packets kept{captured}, {stats.get('dropped', 0)} dropped by the kernel "
        "(not annotated)")
    what = "disk full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else f"cannot write {raw.name}"
    raise LabError(f"{what}: capture cut at {packets} packets ({error.strerror}); they are in {shown(keep)}: "
                   f"free some room, then invoke inspect --pcap {shlex.quote(shown(keep))}")


def filter_words(asked: CaptureRequest, used: CaptureRequest) -> str | None:
    """What the capture's file comment says of its filter, if the lab added one."""
    if used.bpf == asked.bpf:
        return None
    return (f"capture filter: {used.bpf} (only frames the lab's containers sent; invoke capture --all-frames "
            "keeps the rest, such as the host's IPv6 announcements)")


def finalize(raw: Path, final: Path, kernel: KernelSummary | None = None,
             said_of_filter: str | None = None) -> tuple[Path, Annotated]:
    """The raw pcap becomes the annotated pcapng, never replacing a file; the raw file goes last.

    The kernel's samples of the same run, if any, are named in the file's comment.

    Returns the name the capture got (``final``, or final-2 and so on if that name
    was taken meanwhile) and what annotate did.
    """
    fd, temporary = new_private_file(final.parent, f".{final.stem}.", ".pcapng.tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            said = "; ".join(filter(None, [f"kernel samples of this run: {kernel.path.name} (tcplab)" if kernel
                                           else None, said_of_filter])) or None
            result = annotate(raw, out, file_comment=said)
            give_to_invoking_user(out.fileno())
    except (Exception, KeyboardInterrupt) as exc:
        remove_if_regular(temporary)
        keep = place(raw, final.with_suffix(".pcap"))      # the raw file is a whole pcap of its own
        why = ("interrupted while annotating" if isinstance(exc, KeyboardInterrupt)
               else "disk full while annotating (the annotated copy needs room)"
               if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
               else "could not annotate the capture")
        raise LabError(f"{why}: every packet is kept, unannotated, in {shown(keep)}",
                       code=130 if isinstance(exc, KeyboardInterrupt) else 1) from None
    with held_interrupts():             # the capture under its name and its raw copy gone, both or neither
        placed = place(temporary, final)
        remove_if_regular(raw)
    if placed != final:
        say(f"{final.name} appeared while capturing and is left as it was; this capture is {placed.name}")
    return placed, result


def report(final: Path, result, stats: dict, request: CaptureRequest, outcome: str) -> None:
    where = shown(final)
    dropped = stats.get("dropped")
    counters = (f"{stats['captured']} packets captured, {dropped} dropped by the kernel"
                if stats else f"{result.packets} packets")
    say(f"{outcome}{where}: {counters} ({result.comments} annotated; engine {request.engine})")
    if stats.get("reason") == "interface-gone":
        say("the capture ended because the server's interface went away: the server container stopped "
            "(see invoke status); the file holds everything captured until then")
    if dropped:
        say(f"warning: the kernel dropped {dropped} packets the engine could not take in time; "
            "the file misses them")
    say(f"next: invoke inspect --pcap {shlex.quote(where)} (or open it in Wireshark)")
