"""The story of a connection, a sentence per frame that matters: what a learner should notice there.

The SYN and its initial sequence number, the SYN/ACK, the ACK that completes the
handshake, the first data each way, the FINs and the last ACK, a RST, and every
frame Wireshark's analysis flags (retransmissions, duplicate ACKs, ...), with the
reason. The capture's pcapng comments are these sentences (lab.host.capture.annotate),
and `invoke inspect` prints them under the ladder's arrows.

The analysis is lab.inspect's (Wireshark's rules), so the story and Wireshark's
own expert info never disagree.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from lab.inspect.decode import ACK, FIN, RST, SYN, endpoint_text
from lab.inspect.ladder import payload_preview
from lab.inspect.tcp import (
    ACK_LOST_SEGMENT,
    DUPLICATE_ACK,
    FAST_RETRANSMISSION,
    KEEP_ALIVE,
    LOST_SEGMENT,
    OUT_OF_ORDER,
    RETRANSMISSION,
    SPURIOUS_RETRANSMISSION,
    WINDOW_FULL,
    ZERO_WINDOW,
    Connection,
    Segment,
)

# What each analysis flag means, said once on the frame that carries it.
FLAG_STORIES = (
    (FAST_RETRANSMISSION, "fast retransmission: sent again after duplicate ACKs, without waiting for the timer"),
    (SPURIOUS_RETRANSMISSION, "spurious retransmission: sent again although the receiver had ACKed it"),
    (RETRANSMISSION, "retransmission: these bytes were sent before; the first copy was lost or late"),
    (OUT_OF_ORDER, "out of order: an earlier segment, arriving after a later one"),
    (LOST_SEGMENT, "previous segment not captured: bytes before this one never passed here"),
    (ACK_LOST_SEGMENT, "ACKed unseen segment: this ACKs data the capture never saw"),
    (ZERO_WINDOW, "zero window: the receiver's buffer is full; the sender must wait"),
    (WINDOW_FULL, "window full: the sender has filled all the window the receiver offered"),
    (KEEP_ALIVE, "keep-alive: an empty probe asking whether the peer is still there"),
)


@dataclasses.dataclass
class _Story:
    """What has happened so far on one connection."""

    data_seen: set[bool] = dataclasses.field(default_factory=set)   # directions (from_client) that sent data
    fins: list[bool] = dataclasses.field(default_factory=list)      # from_client of each FIN, in order
    closed: bool = False


class Storyteller:
    """Decides the comments of each analysed segment, remembering each connection's story."""

    def __init__(self, connections: Sequence[Connection] | Mapping[int, Connection]) -> None:
        """``connections``: the connections by stream number (a Tracker's, or a Capture's), as they
        are known when each segment is told (a streaming pass tells each as it comes)."""
        self.connections = connections
        self.stories: dict[int, _Story] = {}

    def comments(self, seg: Segment) -> tuple[str, ...]:
        conn = self.connections[seg.stream]
        story = self.stories.setdefault(seg.stream, _Story())
        side = "client" if seg.from_client else "server"
        told = []
        if seg.flags & SYN and not seg.flags & ACK:
            told.append(f"SYN: the client {endpoint_text(seg.src, seg.sport)} asks to open a connection; "
                        f"its initial sequence number (ISN) is {seg.seq_raw}, shown as relative seq 0")
        elif seg.flags & SYN:
            told.append(f"SYN/ACK: the server accepts; its ISN is {seg.seq_raw}, and ack={seg.ack_raw} is the "
                        "client's ISN + 1 (a SYN counts as one byte)")
        elif seg.frame == conn.handshake.ack:
            rtt = (conn.handshake.ack_time - conn.handshake.syn_time) / 1e6
            told.append(f"ACK: the three-way handshake is complete ({rtt:.3f} ms from the SYN, seen here)")
        if seg.length and seg.from_client not in story.data_seen and not seg.analysis & RETRANSMISSION:
            story.data_seen.add(seg.from_client)
            told.append(f"first data from the {side}: {seg.length} bytes {payload_preview(seg.payload, 40)}, "
                        f"seq {seg.rel_seq} to {seg.rel_seq + seg.length}")
        if seg.flags & FIN and seg.from_client not in story.fins:
            story.fins.append(seg.from_client)
            told.append(f"FIN: the {side} closes its side: it will send no more data"
                        + (" (it closes first)" if len(story.fins) == 1 else ""))
        elif len(story.fins) == 2 and not story.closed and seg.flags & ACK and seg.from_client == story.fins[0]:
            story.closed = True
            told.append(f"last ACK: the connection is closed; the {side}, which closed first, "
                        "now waits in TIME_WAIT")
        if seg.flags & RST:
            told.append(f"RST: the {side} resets the connection (nothing listens there, or it aborts)")
        told.extend(story_of_flags(seg))
        return tuple(told)


def story_of_flags(seg: Segment) -> list[str]:
    """The sentences for a frame's analysis flags, most specific first."""
    told = []
    for bit, sentence in FLAG_STORIES:
        if seg.analysis & bit:
            if bit == RETRANSMISSION and seg.analysis & (FAST_RETRANSMISSION | SPURIOUS_RETRANSMISSION):
                continue
            told.append(sentence)
    if seg.analysis & DUPLICATE_ACK:
        told.append(f"duplicate ACK #{seg.dupack_num}: the receiver still waits for relative seq {seg.rel_ack}")
    return told
