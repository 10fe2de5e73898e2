"""The sender's congestion window through a transfer, from its kernel's samples: each cut, and the climb between.

A loss-based sender (reno, cubic) saws: it climbs in congestion avoidance until
the queue in front of the bottleneck overflows, cuts its window when it learns of
the loss, and climbs again (AIMD: additive increase, multiplicative decrease). The
kernel's samples show both halves, which the packets show only as a shadow:

* a **cut** is the socket entering ca_state recovery (duplicate ACKs, SACK) or loss
  (the timer): ssthresh is set then, to half the window for reno (RFC 5681), 0.7 of
  it for cubic;
* a **climb** is a stretch in ca_state open above ssthresh: reno adds one segment
  per round trip (it counts acknowledged segments until a window's worth is in).

Round trips are counted as the kernel counts time: each interval between two
samples, divided by the srtt of the first.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Sequence

from lab.inspect.kernel import KernelSample

CUT_STATES = ("recovery", "loss")
MIN_CLIMB_ROUNDS = 3.0        # shorter stretches say more about sampling than about the algorithm


@dataclasses.dataclass(frozen=True)
class Cut:
    """The sender learnt of a loss: its window before, the ssthresh it set."""

    time_ns: int
    state: str
    cwnd_before: int
    ssthresh: int

    @property
    def factor(self) -> float:
        return self.ssthresh / self.cwnd_before


@dataclasses.dataclass(frozen=True)
class Climb:
    """A stretch of congestion avoidance: the window from, to, over so many round trips."""

    start_ns: int
    end_ns: int
    cwnd_from: int
    cwnd_to: int
    rounds: float

    @property
    def per_rtt(self) -> float:
        return (self.cwnd_to - self.cwnd_from) / self.rounds


def _established(series: Sequence[KernelSample]) -> list[KernelSample]:
    return [k for k in series if k.values.get("state") == "ESTABLISHED" and k.values.get("cwnd")]


def cuts(series: Sequence[KernelSample]) -> list[Cut]:
    """Each time the sender entered recovery or loss, with the largest cwnd since the last cut."""
    found, largest, previous = [], 0, None
    for sample in _established(series):
        state = sample.values.get("ca_state")
        if state in CUT_STATES and previous not in CUT_STATES and sample.values.get("ssthresh"):
            found.append(Cut(sample.time_ns, state, max(largest, sample.values["cwnd"]), sample.values["ssthresh"]))
            largest = 0
        elif state not in CUT_STATES:
            largest = max(largest, sample.values["cwnd"])
        previous = state
    return found


def climbs(series: Sequence[KernelSample]) -> list[Climb]:
    """Each stretch in ca_state open at or above ssthresh, MIN_CLIMB_ROUNDS round trips or longer."""
    found: list[Climb] = []
    stretch: list[KernelSample] = []

    def close() -> None:
        if len(stretch) >= 2:
            rounds = sum((b.time_ns - a.time_ns) / (a.values["srtt_us"] * 1000)
                         for a, b in zip(stretch, stretch[1:]) if a.values.get("srtt_us"))
            if rounds >= MIN_CLIMB_ROUNDS:
                found.append(Climb(stretch[0].time_ns, stretch[-1].time_ns, stretch[0].values["cwnd"],
                                   stretch[-1].values["cwnd"], rounds))
        stretch.clear()

    for sample in _established(series):
        ssthresh = sample.values.get("ssthresh")
        if sample.values.get("ca_state") == "open" and ssthresh and sample.values["cwnd"] >= ssthresh:
            stretch.append(sample)
        else:
            close()
    close()
    return found


def increase_per_rtt(series: Sequence[KernelSample]) -> float | None:
    """The median climb's segments per round trip, or None without a climb."""
    found = climbs(series)
    return statistics.median(climb.per_rtt for climb in found) if found else None


# BBR (v1, Linux's tcp_bbr.c) says which phase it is in by its pacing gain, in units of 1/256:
# start-up paces at 2.89 times its bandwidth estimate, drain at 1/2.89 to empty the queue it
# built, probe-bandwidth cycles 1.25, 0.75 and six round trips of 1.0, and probe-RTT holds its
# window at 4 segments for 200 ms every 10 s without a lower RTT, to measure the link alone.
BBR_GAINS = {739: "startup", 88: "drain", 320: "probe_bw", 192: "probe_bw", 256: "probe_bw"}
BBR_PROBE_RTT_CWND = 4


def bbr_phase(sample: KernelSample) -> str | None:
    """The phase a bbr sender's sample shows, or None (no bbr state in it)."""
    gain = sample.values.get("pacing_gain")
    if not gain:            # None: not bbr; 0: bbr before its first estimate
        return None
    if gain == 256 and (sample.values.get("cwnd") or 0) <= BBR_PROBE_RTT_CWND:
        return "probe_rtt"
    return BBR_GAINS.get(gain, f"gain {gain / 256:.2f}")


def bbr_phases(series: Sequence[KernelSample]) -> list[tuple[int, str]]:
    """(from ns, phase) each time a bbr sender's phase changed while established."""
    found: list[tuple[int, str]] = []
    for sample in _established(series):
        phase = bbr_phase(sample)
        if phase is not None and (not found or found[-1][1] != phase):
            found.append((sample.time_ns, phase))
    return found
