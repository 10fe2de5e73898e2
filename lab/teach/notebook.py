"""What the study notebooks share: which capture to read, whether a lab is up, small views.

Each notebook reads its capture: the learner's own when the notebook's parameters cell,
``invoke notebook --pcap NN=FILE`` or ``TCPLAB_PCAP`` names it, otherwise the one bundled in
``notebooks/data/`` (made by the lab itself; notebooks/data/README.md says how).
Cells that need the running lab ask :func:`lab_is_up` first and, when it is not,
print one line saying so and what to run, instead of failing.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from lab.inspect.decode import ACK, FIN, RST, SYN, tcp_flags_text
from lab.inspect.lab_port import server_port
from lab.inspect.reader import read_records
from lab.inspect.tcp import Segment
from lab.paths import PROJECT_ROOT, shown
from lab.teach.exercises import CaptureMismatch  # noqa: F401  (the notebooks and the grader name it here)

if TYPE_CHECKING:
    from scapy.packet import Packet

DATA = PROJECT_ROOT / "notebooks" / "data"
# Set while `invoke publish` runs the notebooks: the copies it writes show what a learner
# without a running lab sees, whatever labs are up on the machine that made them.
PUBLISHING = "TCPLAB_PUBLISHING"


def _lab_connections(path: Path):
    """The connections to the lab's server: the port its protocol is spoken to (any port)."""
    from lab.inspect.analysis import analyze

    port = server_port(path)
    return [c for c in analyze(path).connections if c.server.port == port]


def _has_exchange(path: Path) -> bool:
    return any(c.handshake.complete() and c.client.payload_bytes and c.server.payload_bytes
               for c in _lab_connections(path))


DOWNLOAD_BYTES = 100_000     # a connection that carried this much is a download, not an exchange


def _has_loss(path: Path) -> bool:
    """A download with data sent again (a SYN sent again is another lesson: 08's)."""
    from lab.inspect.analysis import analyze, stream_segments
    from lab.inspect.tcp import RETRANSMITTED

    for conn in analyze(path).connections:
        if max(conn.server.payload_bytes, conn.client.payload_bytes) >= DOWNLOAD_BYTES:
            if any(s.length and s.analysis & RETRANSMITTED for s in stream_segments(path, conn.stream)):
                return True
    return False


def _has_udp(path: Path) -> bool:
    from lab.inspect.decode import udp_datagram

    port = server_port(path)
    with path.open("rb") as stream:
        return any((found := udp_datagram(record.linktype, record.data)) is not None and port in (found.sport,
                                                                                                   found.dport)
                   for record in read_records(stream))


def _has_vxlan(path: Path) -> bool:
    from lab.inspect.lab_port import port_of_connections
    from lab.inspect.overlay import analyze_inner

    inner = analyze_inner(path).connections
    port = port_of_connections(inner)
    return any(c.server.port == port for c in inner)


def _has_crafted(path: Path) -> bool:
    """A SYN made by hand: the server's SYN/ACK answered by the client kernel's RST."""
    from lab.inspect.analysis import stream_segments

    for conn in _lab_connections(path):
        if conn.handshake.syn_ack is not None and conn.rst_frames:
            kinds = [(s.from_client, s.flags & (SYN | ACK | RST)) for s in stream_segments(path, conn.stream)[:3]]
            if kinds[:3] == [(True, SYN), (False, SYN | ACK), (True, RST)]:
                return True
    return False


@functools.lru_cache(maxsize=32)
def _dynamics(path: Path, bulk: bool, modified_ns: int):
    """The capture with its kernel samples (lab.teach.dynamics), or None without them; read once
    per file while it is unchanged, since several needs ask of the same capture."""
    from lab.inspect.kernel import kernel_file_of
    from lab.teach.dynamics import Dynamics

    if kernel_file_of(path) is None:
        return None
    dyn = Dynamics(path, bulk=bulk)
    return dyn if dyn.conn is not None and dyn.sender else None


def _kernel_view(path: Path, bulk: bool = True):
    """The capture's Dynamics: for ``bulk`` a download's (the biggest connection, one that carried
    DOWNLOAD_BYTES or more); else an exchange's (the lab's first, one that carried less)."""
    dyn = _dynamics(path, bulk, path.stat().st_mtime_ns)
    if dyn is None:
        return None
    carried = max(dyn.conn.server.payload_bytes, dyn.conn.client.payload_bytes)
    return dyn if (carried >= DOWNLOAD_BYTES) == bulk else None


def _has_slow_start_loss(path: Path) -> bool:
    """Kernel samples of a download whose slow start ended in a loss (ssthresh set)."""
    dyn = _kernel_view(path)
    return bool(dyn and len(dyn.flights) >= 4 and dyn.window_cuts())


def _has_saw_tooth(path: Path) -> bool:
    """Kernel samples of a download that cut its window twice or more and climbed between."""
    from lab.inspect.congestion import climbs

    dyn = _kernel_view(path)
    return bool(dyn and len(dyn.window_cuts()) >= 2 and climbs(dyn.sender))


def _congestion_control(path: Path) -> str | None:
    dyn = _kernel_view(path)
    from lab.inspect.kernel import algorithm_of

    return algorithm_of(dyn.sender) if dyn else None


def _has_bloat(path: Path) -> bool:
    """A loss-based sender's download whose late round trip is three times its least: a full queue."""
    from lab.inspect.expectations import Evidence, rtt_range

    if _congestion_control(path) not in ("reno", "cubic"):
        return False
    dyn = _kernel_view(path)
    found = rtt_range(Evidence(dyn.segments, dyn.sender_is_client))
    return found is not None and found[2] >= 3 * found[0]


def _has_bbr_phases(path: Path) -> bool:
    """A bbr download long enough to reach probe-RTT (its kernel state recorded)."""
    dyn = _kernel_view(path)
    return bool(dyn and any(phase == "probe_rtt" for _, phase in dyn.bbr_phase_times_s()))


def _has_two_flows(path: Path) -> bool:
    """Two downloads under way at once, with the kernel's samples."""
    dyn = _kernel_view(path)
    return bool(dyn and len(dyn.flows) >= 2 and dyn.flow_shares().rates)


def _has_bbr_beside_reno(path: Path) -> bool:
    """Two downloads at once, one sent with bbr and one with reno, with the kernel's samples."""
    dyn = _kernel_view(path)
    return bool(dyn and {"bbr", "reno"} <= set(dyn.flow_windows()) and dyn.flow_shares().rates)


def _has_syn_again(path: Path) -> bool:
    """Kernel samples of a connection whose client sent its SYN more than once."""
    dyn = _kernel_view(path, bulk=False)
    return bool(dyn and len(dyn.syn_times_s()) >= 2)


def _has_resend_by(cause: str):
    """Kernel samples of a reply sent again by ``cause``: the timer's at least once, or only
    tail loss probes (a capture where the timer fired teaches the timer, not the probe)."""
    def has(path: Path) -> bool:
        dyn = _kernel_view(path, bulk=False)
        causes = {resend.cause for resend in dyn.resends} if dyn else set()
        return cause in causes and (cause != "probe" or causes == {"probe"})
    return has


def _has_zero_window(path: Path) -> bool:
    """Kernel samples of a download whose receiver's window closed and opened again."""
    from lab.inspect.tcp import WINDOW_UPDATE, ZERO_WINDOW

    dyn = _kernel_view(path)
    if not dyn:
        return False
    received = [s for s in dyn.segments if s.from_client != dyn.sender_is_client]
    zero = next((s for s in received if s.analysis & ZERO_WINDOW), None)
    return zero is not None and any(s.analysis & WINDOW_UPDATE and s.time_ns > zero.time_ns for s in received)


def _has_pieces(nagle: bool):
    """Requests written in two pieces: the second held back (Nagle) or not (TCP_NODELAY)."""
    def has(path: Path) -> bool:
        from lab.inspect.expectations import Evidence, second_write_waits

        dyn = _kernel_view(path, bulk=False)
        waits = second_write_waits(Evidence(dyn.segments, True)) if dyn else []
        return bool(waits) and (statistics.median(waits) >= 20) == nagle
    return has


# What each bundled capture has that its notebooks need, judged by the packets and the kernel's
# samples (not by a kernel file's being there), and how a learner makes one like it.
NEEDS = {
    "exchange.pcapng": (_has_exchange, "a TCP connection to the lab's server with requests and replies",
                        "invoke capture --send 'ECHO hello' --send TIME"),
    "bulk-loss.pcapng": (_has_loss, "a download with retransmissions",
                         "invoke impair --loss 2, then invoke capture --bulk 3000000"),
    "crafted.pcapng": (_has_crafted, "a SYN made by hand: the server's SYN/ACK answered by the client's RST",
                       "invoke capture --seconds 8, and run the crafting cells meanwhile"),
    "udp.pcapng": (_has_udp, "UDP datagrams to the lab's server",
                   "invoke capture --seconds 10 while invoke send --udp 'ECHO hi' runs"),
    "overlay.underlay.pcap": (_has_vxlan, "the lab's TCP inside VXLAN, from a host's own interface",
                              "invoke capture --underlay --bulk 1000000 on a lab across hosts (engine swarm)"),
    "slow-start.pcapng": (_has_slow_start_loss, "a download's slow start ending in a loss, with the kernel's samples",
                          "invoke scenario slow-start"),
    "aimd.pcapng": (_has_saw_tooth, "a download that cut its window twice or more, with the kernel's samples",
                    "invoke scenario aimd"),
    "bufferbloat-reno.pcapng": (_has_bloat,
                                "a download by a loss-based sender (reno, cubic) whose round trip grew threefold "
                                "or more (a queue that filled), with the kernel's samples",
                                "invoke up --cc reno, then invoke scenario bufferbloat"),
    "bufferbloat-bbr.pcapng": (lambda path: _congestion_control(path) == "bbr",
                               "a download by bbr, with the kernel's samples",
                               "invoke up --cc bbr, then invoke scenario bufferbloat"),
    "bbr.pcapng": (_has_bbr_phases, "a bbr download that reached probe-RTT (10 s or more), with the kernel's samples",
                   "invoke up --cc bbr, then invoke scenario bbr"),
    "fairness.pcapng": (_has_two_flows, "two downloads at once, with the kernel's samples",
                        "invoke scenario fairness"),
    "fairness-bbr-reno.pcapng": (_has_bbr_beside_reno, "two downloads at once, one sent with bbr and one with "
                                 "reno, with the kernel's samples", "invoke scenario fairness-bbr-reno"),
    "syn-loss.pcapng": (_has_syn_again, "a SYN sent again, with the kernel's samples", "invoke scenario syn-loss"),
    "tail-loss-probe.pcapng": (_has_resend_by("probe"), "a reply sent again by a tail loss probe, with the kernel's "
                               "samples", "invoke scenario tail-loss-probe"),
    "tail-loss-rto.pcapng": (_has_resend_by("timer"), "a reply sent again by the retransmission timer, with the "
                             "kernel's samples", "invoke scenario tail-loss-rto"),
    "nagle.pcapng": (_has_pieces(True), "requests written in two pieces, the second held back by Nagle's algorithm, "
                     "with the kernel's samples", "invoke scenario nagle"),
    "nagle-off.pcapng": (_has_pieces(False), "requests written in two pieces with TCP_NODELAY, with the kernel's "
                         "samples", "invoke scenario nagle-off"),
    "zero-window.pcapng": (_has_zero_window, "a zero window that opened again, with the kernel's samples",
                           "invoke scenario zero-window"),
}


# The bundled captures each notebook studies, in the order its cells read them.
STUDIES = {
    "01": ("exchange.pcapng",), "02": ("exchange.pcapng",), "03": ("exchange.pcapng",),
    "04": ("bulk-loss.pcapng",), "05": ("crafted.pcapng",), "06": ("udp.pcapng",),
    "07": ("slow-start.pcapng", "aimd.pcapng", "bufferbloat-reno.pcapng", "bufferbloat-bbr.pcapng", "bbr.pcapng",
           "fairness.pcapng", "fairness-bbr-reno.pcapng"),
    "08": ("syn-loss.pcapng", "tail-loss-probe.pcapng", "tail-loss-rto.pcapng", "zero-window.pcapng", "nagle.pcapng",
           "nagle-off.pcapng"),
    "09": ("overlay.underlay.pcap",),
}


def need_of(bundled: str) -> tuple:
    """(test, what it needs in words, how a learner makes one) for the captures like ``bundled``."""
    return NEEDS[bundled]


def variable_for(bundled: str) -> str:
    """The environment variable that names a capture for the notebooks that study ``bundled``:
    TCPLAB_PCAP_BULK_LOSS for bulk-loss.pcapng (`invoke notebook --pcap 04=FILE` sets it)."""
    return "TCPLAB_PCAP_" + re.sub(r"[^A-Z0-9]", "_", Path(bundled).stem.upper())


def capture_path(given: str | None, bundled: str) -> Path:
    """The capture to study: ``given`` (the parameters cell), else the one named for this kind
    of capture (TCPLAB_PCAP_BULK_LOSS, ...), else $TCPLAB_PCAP, else the bundled one.

    A capture that lacks what this notebook studies is refused in one sentence when it was
    named for this notebook, and passed over for the bundled one when TCPLAB_PCAP names it
    (one variable feeds every notebook, and each needs its own kind).
    """
    named = given or os.environ.get(variable_for(bundled))
    chosen = named or os.environ.get("TCPLAB_PCAP")
    path = Path(chosen).expanduser() if chosen else DATA / bundled
    if not path.exists():
        raise FileNotFoundError(f"no capture at {path}: make one with invoke capture, or name an existing file")
    has, what, how = need_of(bundled)
    if chosen and not has(path):
        if named:
            raise CaptureMismatch(f"{path.name} lacks what this notebook studies ({what}); make one with: {how}")
        print(f"TCPLAB_PCAP={path} lacks what this notebook studies ({what}); studying the bundled "
              f"{bundled} instead (make one with: {how}, and name it with invoke notebook --pcap NN=FILE)")
        chosen, path = None, DATA / bundled
    print(f"studying {shown(path)}" + ("" if chosen else " (bundled; invoke notebook --pcap NN=yours.pcapng studies yours)"))
    return path



def addresses(path: Path) -> tuple[str, str]:
    """(client, server) IPv4 addresses of the lab's first connection in the capture at ``path``:
    the real ones, for packets made by hand (scapy would otherwise fill in this machine's own)."""
    from lab.inspect.decode import address_text

    conn = _lab_connections(Path(path))[0]
    return address_text(conn.client.address), address_text(conn.server.address)


def lab_name() -> str:
    """The lab the live cells act on: the one the tasks would (INVOKE_LAB_NAME, invoke.yaml's, the default)."""
    from lab.host.settings import user_config

    return str(user_config().lab.name)


def lab_is_up(name: str | None = None) -> bool:
    """True when every long-lived container of the lab runs (False without Docker); in a lab room,
    as the room's broker says of the student's own lab."""
    from lab.host import live
    from lab.host.room import client as room

    if os.environ.get(PUBLISHING):
        return False
    if room.in_room():
        return bool(room.ask("is-up").get("up"))
    if shutil.which("docker") is None:
        return False
    return live.lab_is_up(name)


def needs_lab(what: str) -> bool:
    """For a cell that needs the running lab: True if it is up, else say what to run."""
    if lab_is_up():
        return True
    from lab.host.settings import DEFAULTS

    option = "" if lab_name() == DEFAULTS["name"] else f" --lab {lab_name()}"
    print(f"skipped: {what} needs the running lab (run 'invoke up{option}' in the project, then this cell again)")
    return False


def lab_port() -> int:
    """The port the lab's server listens on, as the user configured it (7070 by default)."""
    from lab.host.live import topology_of

    return topology_of().lab.port


def in_client(script: str) -> str:
    """Run a shell ``script`` in the client host (``docker exec``); return what it printed. In a lab
    room the broker runs it, if it is one of the lines the notebooks run (it runs nothing else)."""
    from lab.host import live
    from lab.host.room import client as room

    if room.in_room():
        return str(room.ask("in-client", script=script).get("output", ""))
    return live.in_client(script)


def craft(what: str, line: str = "ECHO crafted by hand") -> str:
    """Run lab.inside.craft (``syn`` or ``connect``) in the client's namespace; return what it printed
    (lab.host.live.craft; in a lab room, the broker runs it on the student's lab)."""
    from lab.host import live
    from lab.host.room import client as room

    if room.in_room():
        return str(room.ask("craft", what=what, line=line).get("output", ""))
    return live.craft(what, line)


def capture_now(name: str, send: list[str]) -> Path:
    """Capture the lab's server while the client sends ``send``, into captures/NAME-DATE-TIME.pcapng
    (a cell run again makes a new one), as ``invoke capture --send ... --name ...`` does, bringing
    the lab up first if it is not (each task's output printed here as it comes); the capture's path.
    In a lab room the broker runs both, and the capture, signed, lands in the student's captures/."""
    import datetime

    from lab.errors import LabError
    from lab.paths import CAPTURES_DIR

    name = f"{name}-{datetime.datetime.now().strftime('%Y-%m-%dT%H-%M-%S')}"
    if not lab_is_up():
        code = _task("up", {})
        if code:
            raise LabError(f"the lab did not come up (exit {code}): see the lines above")
    code = _task("capture", {"send": send, "name": name})
    if code:
        raise LabError(f"the capture did not complete (exit {code}): see the lines above")
    return CAPTURES_DIR / f"{name}.pcapng"


def _task(name: str, options: dict) -> int:
    """``invoke NAME --OPTION VALUE ...``, its output printed as it comes (a notebook shows a
    subprocess's output only if it is printed from here); its exit code. In a lab room, the broker runs it."""
    import subprocess
    import sys

    from lab.host.room import client as room

    if room.in_room():
        return room.run_task(name, options)
    words = [word for option, values in options.items()
             for value in (values if isinstance(values, list) else [values]) for word in (f"--{option}", value)]
    with subprocess.Popen([sys.executable, "-m", "invoke", "--search-root", str(PROJECT_ROOT), name, *words],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="")
    return process.returncode


def frame_bytes(path: Path, frame: int) -> bytes:
    """The captured bytes of one frame (1-based, as Wireshark numbers them)."""
    with Path(path).open("rb") as stream:
        for number, record in enumerate(read_records(stream), 1):
            if number == frame:
                return record.data
    raise IndexError(f"{path} has no frame {frame}")


def dissect(path: Path, frame: int) -> Packet:
    """Scapy's dissection of one frame, ports as numbers (scapy would name some from its services table)."""
    from scapy.config import conf
    from scapy.layers.inet import TCP, UDP
    from scapy.layers.l2 import Ether

    conf.noenum.add(TCP.sport, TCP.dport, UDP.sport, UDP.dport)
    return Ether(frame_bytes(path, frame))


def hexdump(data: bytes, width: int = 16) -> str:
    """Offset, hex bytes and printable characters, 16 bytes a line (like `xxd`)."""
    lines = []
    for offset in range(0, len(data), width):
        chunk = data[offset:offset + width]
        hexes = " ".join(f"{byte:02x}" for byte in chunk)
        text = "".join(chr(byte) if 32 <= byte < 127 else "." for byte in chunk)
        lines.append(f"{offset:08x}  {hexes:<{width * 3}} {text}")
    return "\n".join(lines)


# The TCP states (RFC 9293, section 3.3.2) each side is in after a segment passes, as
# far as a capture can tell: a state changes when a segment is sent or received.
_AFTER = {
    # (state, sent or received, flags seen) -> next state
    ("LISTEN", "recv", "SYN"): "SYN-RECEIVED",
    ("CLOSED", "sent", "SYN"): "SYN-SENT",
    ("SYN-SENT", "recv", "SYN/ACK"): "ESTABLISHED",
    ("SYN-RECEIVED", "recv", "ACK"): "ESTABLISHED",
    ("ESTABLISHED", "sent", "FIN"): "FIN-WAIT-1",
    ("ESTABLISHED", "recv", "FIN"): "CLOSE-WAIT",
    ("FIN-WAIT-1", "recv", "ACK"): "FIN-WAIT-2",
    ("FIN-WAIT-1", "recv", "FIN"): "CLOSING",
    ("FIN-WAIT-1", "recv", "FIN/ACK"): "TIME-WAIT",
    ("FIN-WAIT-2", "recv", "FIN"): "TIME-WAIT",
    ("FIN-WAIT-2", "recv", "FIN/ACK"): "TIME-WAIT",
    ("CLOSING", "recv", "ACK"): "TIME-WAIT",
    ("CLOSE-WAIT", "sent", "FIN"): "LAST-ACK",
    ("LAST-ACK", "recv", "ACK"): "CLOSED",
}


def _kind(segment: Segment) -> str:
    if segment.flags & SYN:
        return "SYN/ACK" if segment.flags & ACK else "SYN"
    if segment.flags & FIN:
        return "FIN/ACK" if segment.flags & ACK else "FIN"
    return "ACK"


def _received(state: str, kind: str) -> str:
    """The state after receiving ``kind``: its exact flags first, then its FIN, then its ACK."""
    for seen in (kind, "FIN" if "FIN" in kind else None, "ACK" if kind != "SYN" else None):
        if seen and (state, "recv", seen) in _AFTER:
            return _AFTER[(state, "recv", seen)]
    return state


def tcp_states(segments: list[Segment]) -> list[tuple[int, str, str, str]]:
    """(frame, what it carries, client state, server state) after each segment of a connection."""
    client, server = "CLOSED", "LISTEN"
    rows = []
    for segment in segments:
        kind = _kind(segment)
        if segment.flags & RST:
            client = server = "CLOSED"
        else:
            sender, receiver = (client, server) if segment.from_client else (server, client)
            sender = _AFTER.get((sender, "sent", kind.split("/")[0]), sender)
            receiver = _received(receiver, kind)
            client, server = (sender, receiver) if segment.from_client else (receiver, sender)
        shown = tcp_flags_text(segment.flags) + (f" len={segment.length}" if segment.length else "")
        rows.append((segment.frame, shown, client, server))
    return rows
