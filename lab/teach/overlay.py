"""Exercises on the wire between two hosts: an underlay capture, the lab's TCP inside VXLAN.

Notebook 09 studies the capture of a host's own interface under Docker Swarm's overlay
(`invoke capture --underlay`). The questions are asked of the learner's own capture,
as every notebook's are: the bytes the overlay adds, the network's VNI, and the MSS the
handshake agreed on inside it; the questions of notebooks 01-04 work on the inner TCP.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lab.inspect import overlay
from lab.inspect.lab_port import port_of_connections
from lab.inspect.tcp import Segment
from lab.teach.exercises import QUESTIONS, Exercises, Question


class OverlayExercises(Exercises):
    """The questions about an underlay capture; the studied connection is the lab's, inside it."""

    def __init__(self, path: str | Path, port: int | None = None) -> None:
        super().__init__(path, bulk=True, port=port)      # the connection that carried the most, as for 04
        self.options = {"port": port}

    def read_capture(self):
        self.carried = overlay.unwrap(self.path)
        return overlay.analyze_inner(self.path, self.carried)

    def lab_port(self) -> int:
        return port_of_connections(self.capture.connections)

    @functools.cached_property
    def segments(self) -> list[Segment]:
        return self.tcp.segments or []

    @property
    def questions(self) -> dict[str, Question]:
        return {**QUESTIONS, **OVERLAY_QUESTIONS}

    @property
    def predictions(self) -> dict[str, Question]:
        return OVERLAY_PREDICTIONS

    def syn_mss(self) -> int | None:
        options = self.syn().options
        return options.mss if options else None

    def largest_segment(self) -> int:
        """The most data one segment carried inside the overlay (bytes)."""
        return max(segment.length for segment in self.segments)

    def overlay_share_pct(self) -> float:
        """The share of the bytes on the wire that the overlay's own headers took (percent)."""
        wire = sum(packet.outer_length for packet in self.carried)
        inner = sum(len(packet.inner) for packet in self.carried)
        return round(100 * (1 - inner / wire), 1)


OVERLAY_QUESTIONS = {
    "vxlan_overhead_bytes": Question(
        "how many bytes longer is each packet on the wire than the frame it carries?",
        lambda e: e.carried[0].overhead,
        "subtract the inner frame's length from the outer frame's (outer Ethernet, IPv4, UDP and VXLAN headers)"),
    "vni": Question(
        "the VXLAN network identifier (VNI) of the lab's overlay network",
        lambda e: e.carried[0].vni,
        "the 24-bit field in the VXLAN header, after its flags"),
    "overlay_mss": Question(
        "the MSS the client's SYN announces inside the overlay",
        lambda e: e.syn_mss(),
        "the MSS option of the SYN: the overlay's interface has an MTU 50 bytes below 1500; less 40 for the "
        "IPv4 and TCP headers"),
}

OVERLAY_PREDICTIONS = {
    "largest_segment": Question(
        "the most data (bytes) one segment carried inside the overlay",
        lambda e: e.largest_segment(),
        "the MSS less the options every segment carries (the timestamps: 12 bytes)"),
    "overlay_share_pct": Question(
        "the share (%) of the bytes on the wire that the overlay's headers took, over the whole download",
        lambda e: e.overlay_share_pct(),
        "50 bytes a packet: about 3% of a full segment's 1,514, 43% of a 66-byte ACK; weigh by how many of each"),
}
