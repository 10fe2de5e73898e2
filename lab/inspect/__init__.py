"""Reading captures and explaining their TCP the way Wireshark does, fast enough for big files.

Layers, each a module with one job (read bottom-up):

    formats   the numbers of pcap and pcapng, and a pcapng block's framing
    reader    pcap and pcapng files -> batches of records (time, link type, bytes), constant memory
    decode    a record's bytes -> IP, UDP and TCP header fields (struct, no dissection)
    tcp       connection tracking (tcp.stream) and Wireshark 4.0's analysis flags, frame by frame:
              the one statement of the rules
    fast/     the speed layer, which a reader learning the rules can skip:
      columns   a batch of records -> columns of TCP header fields (numpy), and each frame's connection
      bulk      tcp's rules a batch at a time: the frames no rule can touch in bulk, the rest frame by frame
    analysis  a whole file -> Capture; one stream's segments; Follow TCP Stream
    rtt       round-trip samples as Wireshark's tcp.analysis.ack_rtt
    ladder    ladder diagrams (text and matplotlib)
    graphs    time-sequence (Stevens), throughput and RTT figures
    report    the --json and --csv contracts and the text report
    cli       python -m lab.inspect / invoke inspect (__main__ calls it)

What the lessons read beside the analysis:

    lab_port      which port the lab's server listens on, read from a capture
    story         a sentence per frame that matters: what a learner should notice there
    kernel        the kernel's samples beside a capture, matched to its connections
    timers        which of Linux's mechanisms sent a segment again: probe, timer or recovery
    congestion    the sender's cwnd through a transfer: each cut, and the climb between
    fairness      flows sharing a bottleneck: what each delivered, and how fair the shares were
    expectations  a scenario's expected outcome, checked against its capture and kernel samples
    overlay       the wire under an overlay network: the lab's TCP inside VXLAN

Scapy stays the tool for looking at one packet closely (the notebooks use it); the
bulk path here parses headers itself, which is what makes it faster than tshark.
To learn the rules, read tcp.py: fast/bulk.py only decides where they cannot fire, and
the tests hold the two to the same answers on every frame.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.inspect.analysis import Capture, analyze, follow, iter_segments, stream_segments
    from lab.inspect.reader import CaptureFileError, Record, read_records
    from lab.inspect.rtt import RttSample, rtt_samples, stream_rtt
    from lab.inspect.tcp import FLAG_NAMES, Connection, Segment, analysis_flag_names, wireshark_labels

# Loaded when first asked for (PEP 562): importing one small module of this package (formats, for
# the pcap magic numbers) must not bring the analysis and numpy with it; `invoke up` waited 140 ms
# for them.
_HOMES = {
    "lab.inspect.analysis": ("Capture", "analyze", "follow", "iter_segments", "stream_segments"),
    "lab.inspect.reader": ("CaptureFileError", "Record", "read_records"),
    "lab.inspect.rtt": ("RttSample", "rtt_samples", "stream_rtt"),
    "lab.inspect.tcp": ("FLAG_NAMES", "Connection", "Segment", "analysis_flag_names", "wireshark_labels"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "Capture", "CaptureFileError", "Connection", "FLAG_NAMES", "Record", "RttSample", "Segment",
    "analyze", "analysis_flag_names", "follow", "iter_segments", "read_records", "rtt_samples",
    "stream_rtt", "stream_segments", "wireshark_labels",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME_OF:
        raise AttributeError(f"module 'lab.inspect' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME_OF[name]), name)
    globals()[name] = value
    return value
