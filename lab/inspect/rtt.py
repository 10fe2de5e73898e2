"""Round-trip times as Wireshark measures them: from a segment to the ACK that covers it.

Wireshark shows ``tcp.analysis.ack_rtt`` on an ACK when its number is exactly the
end of a segment still waiting for acknowledgement; that is what its RTT graph
draws and what textbook exercises ask for ("the RTT of each segment"). We keep the
same list of unacknowledged segments per direction, with the same rules
(packet-tcp.c, end of ``tcp_analyze_sequence_number``):

* every segment with data, SYN or FIN joins its direction's list (up to 10,000);
* an ACK equal to a listed segment's end measures that segment and removes it;
* an ACK inside a segment trims it; an ACK past a segment removes it unmeasured.

A retransmitted segment joins the list again, so its ACK may be measured from the
original or the copy: where both match, Wireshark keeps the older, and so do we.
Karn's rule (ignore samples of retransmitted segments) is the learner's to apply;
:attr:`RttSample.retransmitted` says which samples it would drop.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable

from lab.inspect.decode import FIN, SYN
from lab.inspect.tcp import MASK32, RETRANSMISSION, Segment, gt_seq

MAX_UNACKED = 10_000
ALPHA = 0.125        # RFC 6298's weight of a new sample, what textbooks use for EstimatedRTT


@dataclasses.dataclass(frozen=True)
class RttSample:
    """One measurement: ``acked_frame`` was sent at ``sent_ns``, ``ack_frame`` covered it."""

    ack_frame: int
    acked_frame: int
    sent_ns: int
    acked_ns: int
    from_client: bool       # direction of the measured (data) segment
    rel_seq: int            # of the measured segment
    length: int
    retransmitted: bool

    @property
    def rtt_ms(self) -> float:
        return (self.acked_ns - self.sent_ns) / 1e6


@dataclasses.dataclass
class _Unacked:
    segment: Segment
    seq: int
    nextseq: int


def rtt_samples(segments: Iterable[Segment]) -> list[RttSample]:
    """The RTT samples of the segments of one connection, in frame order."""
    unacked: dict[bool, list[_Unacked]] = {True: [], False: []}   # newest first, as Wireshark
    samples = []
    for seg in segments:
        if seg.length or seg.flags & (SYN | FIN):
            pending = unacked[seg.from_client]
            if len(pending) < MAX_UNACKED:
                end = (seg.seq_raw + seg.length + (1 if seg.flags & (SYN | FIN) else 0)) & MASK32
                pending.insert(0, _Unacked(seg, seg.seq_raw, end))
        measured = _acknowledge(unacked[not seg.from_client], seg.ack_raw)
        if measured is not None:
            sent = measured.segment
            samples.append(RttSample(seg.frame, sent.frame, sent.time_ns, seg.time_ns, sent.from_client,
                                     sent.rel_seq, sent.length, bool(sent.analysis & RETRANSMISSION)))
    return samples


def _acknowledge(pending: list[_Unacked], ack: int) -> _Unacked | None:
    """Apply one ACK number to a direction's list; return the segment it measures."""
    measured = None
    kept = []
    for item in pending:
        if ack == item.nextseq:
            measured = item          # the oldest match wins, as the list is walked newest first
            continue
        if gt_seq(ack, item.seq) and not gt_seq(ack, item.nextseq):
            item.seq = ack           # partly acknowledged: what is left still waits
        if gt_seq(item.nextseq, ack):
            kept.append(item)
    pending[:] = kept
    return measured


def stream_rtt(path: str | os.PathLike[str], stream: int) -> list[RttSample]:
    """RTT samples of one connection of a capture file."""
    from lab.inspect.analysis import stream_segments

    return rtt_samples(stream_segments(path, stream))


def estimated_rtts(samples_ms: Iterable[float], alpha: float = ALPHA) -> list[float]:
    """EstimatedRTT after each sample: (1 - alpha) * previous + alpha * sample, from the first (RFC 6298)."""
    estimates: list[float] = []
    for sample in samples_ms:
        estimates.append((1 - alpha) * estimates[-1] + alpha * sample if estimates else sample)
    return estimates
