"""Flows that share a bottleneck: what each delivered, window by window, and how fair the shares were.

Each flow's delivery is read from its receiver's cumulative ACK, as the sender
sees it, over windows long enough (half a second: a dozen round trips on the lab's
links) that the ACK's jump over data SACKed during a repair evens out. Fairness
is Jain's index over the flows' rates in a window,

    J = (x1 + ... + xn)^2 / (n * (x1^2 + ... + xn^2)),

1 when every flow gets the same, 1/n when one flow gets everything (R. Jain,
D. Chiu, W. Hawe, DEC-TR-301, 1984). Only windows where every flow was under way
count: a flow that has not started yet, or has finished, is not treated unfairly.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Sequence

from lab.inspect.decode import ACK, SYN
from lab.inspect.tcp import Segment

WINDOW_S = 0.5


@dataclasses.dataclass(frozen=True)
class Shares:
    """The flows' rates (bits/s) in each window where all of them were under way."""

    start_ns: int
    rates: list[list[float]]          # one row per window, one rate per flow

    @property
    def jain(self) -> list[float]:
        return [jain_index(row) for row in self.rates]

    def share(self, flow: int) -> float:
        """The flow's part of everything delivered in those windows."""
        total = sum(sum(row) for row in self.rates)
        return sum(row[flow] for row in self.rates) / total if total else 0.0


def jain_index(rates: Sequence[float]) -> float:
    """Jain's fairness index of some rates: 1 for equal shares, 1/n for one flow taking all."""
    squares = sum(rate * rate for rate in rates)
    return sum(rates) ** 2 / (len(rates) * squares) if squares else 1.0


def acked(segments: Sequence[Segment]) -> list[tuple[int, int]]:
    """(time ns, highest byte the receiver has acknowledged) at each ACK that moved it."""
    sender_is_client = sum(s.length for s in segments if s.from_client) > sum(s.length for s in segments
                                                                              if not s.from_client)
    points, highest = [], 0
    for segment in segments:
        if segment.from_client != sender_is_client and segment.flags & ACK and not segment.flags & SYN \
                and segment.rel_ack > highest:
            highest = segment.rel_ack
            points.append((segment.time_ns, highest))
    return points


def shares(flows: Sequence[Sequence[Segment]], window_s: float = WINDOW_S) -> Shares:
    """Each flow's delivery rate in each window of ``window_s`` where all the flows were under way."""
    progress = [acked(segments) for segments in flows]
    if len(progress) < 2 or not all(progress):
        return Shares(0, [])
    start = max(points[0][0] for points in progress)          # the last to begin
    end = min(points[-1][0] for points in progress)           # the first to end
    step = int(window_s * 1e9)
    rows = []
    for left in range(start, end - step + 1, step):
        rows.append([(_acked_at(points, left + step) - _acked_at(points, left)) * 8 / window_s for points in progress])
    return Shares(start, rows)


def _acked_at(points: list[tuple[int, int]], time_ns: int) -> int:
    value = 0
    for at, highest in points:
        if at > time_ns:
            break
        value = highest
    return value


def median_jain(found: Shares) -> float | None:
    return statistics.median(found.jain) if found.rates else None
