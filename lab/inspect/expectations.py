"""A scenario's expected outcome, checked against its capture (and the kernel's samples of it).

Each check reads one connection the way a learner would in Wireshark: the
analysis flags, the times of the frames, the RTT samples, and, where the kernel
was sampled, the sender's congestion window. Each says what it expected, what it
saw (in words a learner can compare with the capture), and whether they match.

The capture is taken at the server (the sender of a BULK), the way a sender-side
capture looks in the field: a segment the link loses is seen leaving, then the
duplicate ACKs, then its retransmission; the link's delay is seen as the time
between a segment and its ACK.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any, Callable, Sequence

from lab.inspect.decode import ACK, FIN, SYN
from lab.inspect.kernel import KernelSample, algorithm_of
from lab.inspect.rtt import rtt_samples
from lab.inspect.tcp import (
    DUPLICATE_ACK,
    FAST_RETRANSMISSION,
    FLAG_NAMES,
    KEEP_ALIVE,
    OUT_OF_ORDER,
    RETRANSMISSION,
    WINDOW_UPDATE,
    ZERO_WINDOW,
    Segment,
)
from lab.inspect.timers import Resend, backoffs, predicted_first_wait_ms, resends

TIME_TOLERANCE = 0.25      # a timer is "about" its value within 25% (plus 100 ms): kernels round them


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One expectation: what was expected, what the capture shows, and whether they match."""

    name: str
    expected: str
    seen: str
    ok: bool


@dataclasses.dataclass
class Evidence:
    """What the checks read: one connection's segments, who sent the data, the sender's kernel samples."""

    segments: list[Segment]
    sender_is_client: bool
    kernel: list[KernelSample] = dataclasses.field(default_factory=list)     # of the sender
    rate_kbit: float = 0.0
    receiver_kernel: list[KernelSample] = dataclasses.field(default_factory=list)    # and of the receiver
    flows: list[tuple[list[Segment], list[KernelSample]]] = dataclasses.field(default_factory=list)  # each download:
    # its segments and its sender's samples

    @property
    def start_ns(self) -> int:
        return self.segments[0].time_ns if self.segments else 0

    def sent(self) -> list[Segment]:
        return [s for s in self.segments if s.from_client == self.sender_is_client]

    def received(self) -> list[Segment]:
        return [s for s in self.segments if s.from_client != self.sender_is_client]


def _seconds(evidence: Evidence, segment: Segment) -> float:
    return (segment.time_ns - evidence.start_ns) / 1e9


def syn_retransmitted_at_s(evidence: Evidence, expected: Sequence[float]) -> Verdict:
    """The client's SYN sent again at these times after the first (its timer, backing off)."""
    syns = [s for s in evidence.segments if s.flags & SYN and not s.flags & ACK and s.from_client]
    times = [round(_seconds(evidence, s), 2) for s in syns[1:]]
    ok = len(times) == len(expected) and all(abs(t - e) <= e * TIME_TOLERANCE + 0.1 for t, e in zip(times, expected))
    gaps = [round(b - a, 2) for a, b in zip([0.0, *times], times)]
    return Verdict("syn_retransmitted_at_s", f"SYN again at {list(expected)} s", f"SYN again at {times} s "
                   f"(gaps {gaps} s: each twice the last)" if times else "no SYN sent again", ok)


def fast_retransmission(evidence: Evidence, expected: bool = True) -> Verdict:
    """Wireshark's TCP Fast Retransmission: sent again after two or more duplicate ACKs."""
    fast = [s for s in evidence.sent() if s.analysis & FAST_RETRANSMISSION]
    dupacks = [s for s in evidence.received() if s.analysis & DUPLICATE_ACK]
    before = [d for d in dupacks if fast and d.time_ns < fast[0].time_ns]
    seen = (f"frame {fast[0].frame} at {_seconds(evidence, fast[0]):.3f} s, after {len(before)} duplicate ACKs"
            if fast else f"no fast retransmission ({len(dupacks)} duplicate ACKs)")
    return Verdict("fast_retransmission", "a fast retransmission" if expected else "no fast retransmission",
                   seen, bool(fast) == expected)


def first_sent_again(segments: Sequence[Segment], flags: int = 0, without: int = 0) -> tuple[Segment, int] | None:
    """The first data segment that carries bytes sent before (its sequence number seen already),
    with any of the analysis ``flags`` (any, if none given) and none of ``without``; and when
    the first copy went: (segment, first time ns), or None."""
    first_sent: dict[int, int] = {}
    for segment in segments:
        if not segment.length:
            continue
        if segment.rel_seq in first_sent and (not flags or segment.analysis & flags) \
                and not segment.analysis & without:
            return segment, first_sent[segment.rel_seq]
        first_sent.setdefault(segment.rel_seq, segment.time_ns)
    return None


def recovered_by_duplicate_acks(evidence: Evidence, expected: bool = True) -> Verdict:
    """The lost segment sent again because the ACKs told of the gap (duplicate ACKs, with
    SACK), not because a timer expired: sooner after the original than Linux's 200 ms RTO floor.

    Linux does not wait for the third duplicate ACK of RFC 5681: its RACK rule marks a
    segment lost once a later one is acknowledged (SACK) and a quarter of a round trip
    has passed. Wireshark names such a retransmission by its own timing rules: "Fast
    Retransmission" after two duplicate ACKs, "Out-Of-Order" when it follows the
    previous segment closely; the check says which.
    """
    from lab.inspect.tcp import wireshark_labels

    found = first_sent_again(evidence.sent(), flags=FLAG_NAMES["retransmission"] | OUT_OF_ORDER)
    repeated = repeated_acks(evidence)
    expectation = "sent again within a round trip or so, before any timer (< 200 ms)"
    if found is None:
        return Verdict("recovered_by_duplicate_acks", expectation,
                       f"nothing sent again ({len(repeated)} ACKs that did not move)", not expected)
    again, first_ns = found
    waited_ms = (again.time_ns - first_ns) / 1e6
    before = sum(1 for ack in repeated if ack.time_ns < again.time_ns)
    label = ", ".join(wireshark_labels(again.analysis)) or "no label"
    return Verdict("recovered_by_duplicate_acks", expectation,
                   f"frame {again.frame} sent again {waited_ms:.1f} ms after the original, {before} ACKs "
                   f"that did not move before it (Wireshark: {label})", (waited_ms < 200) == expected)


def _resends(evidence: Evidence) -> list[Resend]:
    return resends(evidence.segments, evidence.sender_is_client, evidence.kernel)


PROBE_TOLERANCE_MS = 3 * 4.0    # three clock ticks: the kernel arms its timers in whole ticks, and paces


def retransmitted_by(evidence: Evidence, mechanism: str) -> Verdict:
    """Which of Linux's mechanisms sent the lost data again, as the sender's kernel shows it:
    ``probe`` (a tail loss probe: ca_state stays open, backoff 0, sent when 2 x srtt + 200 ms
    or the RTO, whichever is sooner, predicts), ``timer`` (a retransmission timeout: ca_state
    loss, backoff 1 or more, cwnd 1) or ``recovery`` (duplicate ACKs or SACK: ca_state recovery).

    The packets alone cannot tell a probe from a timeout: both are a silence, then the
    same bytes again. The check needs the kernel's samples (any scenario records them).
    """

    expected = f"sent again by {mechanism}" + (" (the kernel stays in open)" if mechanism == "probe" else "")
    if not evidence.kernel:
        return Verdict("retransmitted_by", expected, "no kernel samples of the sender: run it as a scenario", False)
    found = _resends(evidence)
    if not found:
        return Verdict("retransmitted_by", expected, "nothing was sent again", False)
    causes = [resend.cause for resend in found]
    seen = "; ".join(resend.describe() for resend in found[:4]) + (f"; {len(found) - 4} more" if len(found) > 4 else "")
    if mechanism == "probe":
        predicted = predicted_first_wait_ms(found[0])
        on_time = predicted is not None and abs(found[0].waited_ms - predicted[0]) <= PROBE_TOLERANCE_MS
        if predicted:
            seen += f" (the kernel's srtt and RTO predicted the probe at {predicted[0]:g} ms)"
        ok = causes[0] == "probe" and "timer" not in causes and on_time
    else:
        ok = mechanism in causes
    return Verdict("retransmitted_by", expected, seen, ok)


def backoff_reaches(evidence: Evidence, count: int) -> Verdict:
    """The retransmission timer expired ``count`` times in a row: the sender's kernel shows
    backoff 1, 2, ... with its RTO doubled each time (Linux's exponential backoff)."""

    steps = backoffs(evidence.kernel)
    if not steps:
        return Verdict("backoff_reaches", f"backoff {count}, the RTO doubling", "no kernel samples of the sender", False)
    base = steps[0][1]
    doubled = all(abs(rto - base * 2 ** backoff) <= 4.0 * 2 ** backoff for backoff, rto in steps if backoff)
    seen = ", ".join(f"backoff {backoff}: RTO {rto:g} ms" for backoff, rto in steps)
    return Verdict("backoff_reaches", f"backoff {count}, the RTO doubling each time", seen,
                   max(backoff for backoff, _ in steps) >= count and doubled)


def cwnd_after_timeout(evidence: Evidence, segments: int) -> Verdict:
    """After a retransmission timeout the sender starts again from a window of ``segments``
    (RFC 5681's loss window: 1), in ca_state loss."""
    timed_out = [resend for resend in _resends(evidence) if resend.cause == "timer"]
    if not timed_out:
        return Verdict("cwnd_after_timeout", f"cwnd {segments} after the timer", "the timer never fired", False)
    after = timed_out[0].after.values if timed_out[0].after else {}      # "timer": a sample after it said so
    cwnd = after.get("cwnd")
    return Verdict("cwnd_after_timeout", f"cwnd {segments} after the timer",
                   f"cwnd {cwnd}, ca_state {after.get('ca_state')}", cwnd == segments)


def duplicate_acks_at_least(evidence: Evidence, count: int) -> Verdict:
    seen = sum(1 for s in evidence.received() if s.analysis & DUPLICATE_ACK)
    return Verdict("duplicate_acks_at_least", f">= {count} duplicate ACKs", f"{seen} duplicate ACKs", seen >= count)


def repeated_acks(evidence: Evidence) -> list[Segment]:
    """ACKs from the receiver that did not move (the same ACK number as the one before, no data):
    each says "I am still waiting for this byte" while later segments arrive.

    Wireshark calls such an ACK a duplicate ACK only when its window is the same too;
    a receiver still growing its window (early in a transfer) sends it with a larger
    one, and Wireshark then calls it a window update. Both say the same about the gap.
    """
    last_ack, repeated = None, []
    for segment in evidence.received():
        if not segment.flags & ACK or segment.length or segment.flags & (SYN | FIN):
            continue
        if segment.rel_ack == last_ack:
            repeated.append(segment)
        last_ack = segment.rel_ack
    return repeated


def repeated_acks_at_least(evidence: Evidence, count: int) -> Verdict:
    repeated = repeated_acks(evidence)
    names = {"duplicate ACK" if ack.analysis & DUPLICATE_ACK else
             "window update" if ack.analysis & WINDOW_UPDATE else "ACK" for ack in repeated}
    said = f" (Wireshark: {', '.join(sorted(names))})" if names else ""
    return Verdict("repeated_acks_at_least", f">= {count} ACKs that did not move", f"{len(repeated)}{said}",
                   len(repeated) >= count)


def no_retransmission(evidence: Evidence, expected: bool = True) -> Verdict:
    again = [s for s in evidence.sent() if s.analysis & FLAG_NAMES["retransmission"]]
    return Verdict("no_retransmission", "nothing sent again",
                   f"{len(again)} retransmissions" if again else "nothing sent again", (not again) == expected)


def zero_window(evidence: Evidence, expected: bool = True) -> Verdict:
    """The receiver's window closed (Wireshark: TCP ZeroWindow), then opened (TCP Window Update)."""
    zero = [s for s in evidence.received() if s.analysis & ZERO_WINDOW]
    update = [s for s in evidence.received() if s.analysis & WINDOW_UPDATE and zero and s.time_ns > zero[0].time_ns]
    if not zero:
        return Verdict("zero_window", "a zero window, then a window update", "the window never closed", not expected)
    closed_s = (update[0].time_ns - zero[0].time_ns) / 1e9 if update else None
    seen = (f"zero window at {_seconds(evidence, zero[0]):.3f} s (frame {zero[0].frame}), "
            + (f"opened {closed_s:.2f} s later (frame {update[0].frame})" if update else "never opened again"))
    return Verdict("zero_window", "a zero window, then a window update", seen, bool(update) == expected)


def window_probes_at_least(evidence: Evidence, count: int) -> Verdict:
    """The sender's persist timer probing a zero window (Linux sends seq-1 with no data:
    Wireshark calls it TCP Keep-Alive), backing off between probes."""
    probes = [s for s in evidence.sent() if s.analysis & KEEP_ALIVE]
    times = [round(_seconds(evidence, s), 2) for s in probes]
    return Verdict("window_probes_at_least", f">= {count} zero-window probes",
                   f"{len(probes)} probes at {times} s" if probes else "no probe", len(probes) >= count)


def cwnd_grows_by_at_least(evidence: Evidence, factor: float) -> Verdict:
    """The sender's congestion window (its kernel's) grows from its first value by ``factor``."""
    cwnds = [k.values["cwnd"] for k in evidence.kernel
             if k.values.get("state") == "ESTABLISHED" and k.values.get("cwnd")]
    if not cwnds:
        return Verdict("cwnd_grows_by_at_least", f"cwnd x{factor:g}", "no kernel samples of the sender", False)
    grown = max(cwnds) / cwnds[0]
    return Verdict("cwnd_grows_by_at_least", f"cwnd x{factor:g} or more",
                   f"cwnd {cwnds[0]} -> {max(cwnds)} segments (x{grown:.1f})", grown >= factor)


RATE_SLACK = 0.05      # a delivery rate above the link's by more is a measurement error, never a pass


def delivered(evidence: Evidence) -> list[tuple[int, int]]:
    """(time ns, bytes newly acknowledged) at each ACK from the receiver that moved the
    cumulative ACK. After a loss repaired with SACK this jumps over data that arrived
    earlier, so a rate from it can exceed the link's for a while."""
    moved, highest = [], None
    for segment in evidence.received():
        if not segment.flags & ACK or segment.flags & SYN:
            continue
        if highest is not None and segment.rel_ack > highest:
            moved.append((segment.time_ns, segment.rel_ack - highest))
        highest = segment.rel_ack if highest is None else max(highest, segment.rel_ack)
    return moved


def delivery_rates(evidence: Evidence, window_s: float) -> tuple[list[tuple[int, float]], str]:
    """(time ns, bits/s) the link delivered, and where the numbers come from.

    The sender's kernel measures it (tcp_info's delivery_rate: data acknowledged or
    SACKed over the interval it took, the estimate BBR steers by); without kernel
    samples, the cumulative ACK over ``window_s``.
    """
    kernel = [(k.time_ns, k.values["delivery_rate"] * 8.0) for k in evidence.kernel
              if k.values.get("delivery_rate")]
    if kernel:
        # Each sample is one ACK's estimate, and an ACK that came close behind another (the
        # emulator releasing two at once) overshoots: 21.0 Mbit/s on a 20 Mbit/s link once,
        # in CI. The median of each window's estimates is what the link delivered then.
        smoothed, low = [], 0
        for high, (time_ns, _) in enumerate(kernel):
            while kernel[low][0] <= time_ns - window_s * 1e9:
                low += 1
            smoothed.append((time_ns, statistics.median(rate for _, rate in kernel[low:high + 1])))
        return smoothed, f"the sender's kernel's delivery rate, median over {window_s:g} s"
    acked, rates, low, in_window = delivered(evidence), [], 0, 0
    for time_ns, count in acked:
        in_window += count
        while acked[low][0] <= time_ns - window_s * 1e9:
            in_window -= acked[low][1]
            low += 1
        rates.append((time_ns, in_window * 8 / window_s))
    return rates, f"bytes acknowledged over {window_s:g} s"


def reaches_pct_of_rate(evidence: Evidence, pct: float, window_s: float = 0.2) -> Verdict:
    """Data is delivered at ``pct`` percent of the link's rate; and when.

    What the sender hands the link can exceed the link's rate for a while: the
    emulator's queue takes it (the bundled slow start sent 34 Mbit/s into a 20 Mbit/s
    link). What the link delivers cannot, so delivery is what counts, and a rate above
    the link's (by more than RATE_SLACK) fails the check as a measurement gone wrong.
    """
    rates, source = delivery_rates(evidence, window_s)
    expected = f">= {pct:g}% of {evidence.rate_kbit / 1000:g} Mbit/s delivered"
    if not rates or not evidence.rate_kbit:
        return Verdict("reaches_pct_of_rate", expected, "no data delivered, or no rate to compare", False)
    link = evidence.rate_kbit * 1000
    best = max(rate for _, rate in rates)
    when = next(((time_ns - evidence.start_ns) / 1e9 for time_ns, rate in rates if rate >= link * pct / 100), None)
    seen = f"best {best / 1e6:.1f} Mbit/s ({source})" + (f", {pct:g}% first at {when:.2f} s" if when else "")
    if best > link * (1 + RATE_SLACK):
        return Verdict("reaches_pct_of_rate", expected, seen + ": above the link's rate, so not a delivery rate", False)
    return Verdict("reaches_pct_of_rate", expected, seen, when is not None)


def aimd_cycles_at_least(evidence: Evidence, count: int) -> Verdict:
    """The sender cut its window ``count`` times or more (ca_state recovery or loss, ssthresh
    set to a fraction of the window), climbing between the cuts: a saw-tooth."""
    from lab.inspect.congestion import cuts

    found = cuts(evidence.kernel)
    if not found:
        return Verdict("aimd_cycles_at_least", f">= {count} cuts of the window", "no cut: "
                       + ("no kernel samples of the sender" if not evidence.kernel else "the window was never cut"),
                       False)
    factors = sorted(cut.factor for cut in found)
    seen = (f"{len(found)} cuts, ssthresh {factors[0]:.2f} to {factors[-1]:.2f} of the window before "
            f"(first: cwnd {found[0].cwnd_before} -> {found[0].ssthresh}, last: {found[-1].cwnd_before} -> "
            f"{found[-1].ssthresh})")
    return Verdict("aimd_cycles_at_least", f">= {count} cuts of the window", seen, len(found) >= count)


def additive_increase_per_rtt(evidence: Evidence, bounds: Sequence[float]) -> Verdict:
    """Between cuts the window climbs by ``bounds`` (low, high) segments per round trip, the
    median over the climbs (reno: one per round trip)."""
    from lab.inspect.congestion import climbs

    low, high = bounds
    found = climbs(evidence.kernel)
    expected = f"{low:g} to {high:g} segments per round trip between cuts"
    if not found:
        return Verdict("additive_increase_per_rtt", expected, "no stretch of congestion avoidance", False)
    rates = sorted(climb.per_rtt for climb in found)
    median = statistics.median(rates)
    seen = (f"{median:.2f} segments per round trip (median of {len(found)} climbs, {rates[0]:.2f} to {rates[-1]:.2f}; "
            f"e.g. cwnd {found[0].cwnd_from} -> {found[0].cwnd_to} over {found[0].rounds:.1f} round trips)")
    return Verdict("additive_increase_per_rtt", expected, seen, low <= median <= high)


def receive_window_grows_by_at_least(evidence: Evidence, factor: float) -> Verdict:
    """The receiver's advertised window grows ``factor`` times from its first ACK's: Linux tunes
    its receive buffer to what the connection delivers per round trip (net.ipv4.tcp_moderate_rcvbuf),
    and window scaling (RFC 7323, the SYN's option) lets the window say more than 64 KiB."""
    acks = [s for s in evidence.received() if s.flags & ACK and not s.flags & SYN]
    syn = next((s for s in evidence.received() if s.flags & SYN and s.options), None)
    if not acks or not acks[0].window:
        return Verdict("receive_window_grows_by_at_least", f"window x{factor:g}", "no ACK from the receiver", False)
    first, most = acks[0].window, max(ack.window for ack in acks)
    scale = syn.options.window_scale if syn and syn.options else None
    seen = (f"advertised window {first:,} -> {most:,} bytes (x{most / first:.1f})"
            + (f", window scale {scale} (each unit {1 << scale} bytes)" if scale is not None else ""))
    spaces = [k.values["rcv_space"] for k in evidence.receiver_kernel if k.values.get("rcv_space")]
    if spaces:
        seen += f"; the receiver's kernel: rcv_space {spaces[0]:,} -> {max(spaces):,} bytes"
    return Verdict("receive_window_grows_by_at_least", f"the receiver's window x{factor:g} or more", seen,
                   most >= factor * first)


def request_writes(evidence: Evidence) -> list[list[Segment]]:
    """The client's data segments, request by request: those up to and with the one that
    ends a line (a request written in two writes may leave as two segments)."""
    requests, current = [], []
    for segment in evidence.segments:
        if segment.from_client and segment.length and not segment.analysis & RETRANSMISSION:
            current.append(segment)
            if segment.payload.endswith(b"\n"):
                requests.append(current)
                current = []
    return requests


def second_write_waits(evidence: Evidence) -> list[float]:
    """For each request after the first that left in pieces: ms from its first piece to its last."""
    return [(pieces[-1].time_ns - pieces[0].time_ns) / 1e6 for pieces in request_writes(evidence)[1:]
            if len(pieces) > 1]


def _waits_text(waits: list[float]) -> str:
    return (f"the rest of each request left {statistics.median(waits):.1f} ms after its first piece (median of "
            f"{len(waits)}; {min(waits):.1f} to {max(waits):.1f})") if waits else "no request left in pieces"


def second_write_waits_ms_at_least(evidence: Evidence, ms: float) -> Verdict:
    """Nagle's algorithm holds a small write while earlier data is unacknowledged: the second
    write of a request leaves only when the first is ACKed, ``ms`` or more later (the receiver
    delays that ACK: it has nothing to send with it yet)."""
    waits = second_write_waits(evidence)
    return Verdict("second_write_waits_ms_at_least", f"the second write held >= {ms:g} ms", _waits_text(waits),
                   bool(waits) and statistics.median(waits) >= ms)


def second_write_waits_ms_at_most(evidence: Evidence, ms: float) -> Verdict:
    """Without Nagle (TCP_NODELAY) each write leaves at once: ``ms`` at most between the pieces."""
    waits = second_write_waits(evidence)
    return Verdict("second_write_waits_ms_at_most", f"the second write held <= {ms:g} ms", _waits_text(waits),
                   bool(waits) and statistics.median(waits) <= ms)


def delayed_acks(evidence: Evidence) -> list[float]:
    """For each request after the first that left in pieces: ms from its first piece to the server's
    ACK of that piece alone (no data with it: the server has nothing to answer yet)."""
    waits = []
    for pieces in request_writes(evidence)[1:]:
        end = pieces[0].rel_seq + pieces[0].length
        ack = next((s for s in evidence.segments if not s.from_client and not s.length and s.flags & ACK
                    and s.rel_ack == end and s.time_ns >= pieces[0].time_ns), None)
        if len(pieces) > 1 and ack is not None:
            waits.append((ack.time_ns - pieces[0].time_ns) / 1e6)
    return waits


def delayed_ack_ms_at_least(evidence: Evidence, ms: float) -> Verdict:
    """The server acknowledges a request's first piece on its own (no reply to carry the ACK yet)
    only after its delayed-ACK timer: ``ms`` or more, the median over requests after the first
    (Linux ACKs at once while a connection is new, in quick-ACK mode)."""
    waits = delayed_acks(evidence)
    seen = (f"the server's ACK of a first piece after {statistics.median(waits):.1f} ms (median of {len(waits)})"
            if waits else "no first piece acknowledged on its own")
    atos = sorted({k.values["ato_us"] // 1000 for k in evidence.receiver_kernel if k.values.get("ato_us")})
    if atos:
        seen += f"; the server's kernel: delayed-ACK timeout (ato) {', '.join(map(str, atos))} ms"
    return Verdict("delayed_ack_ms_at_least", f"the ACK delayed >= {ms:g} ms", seen,
                   bool(waits) and statistics.median(waits) >= ms)


def bbr_phases_seen(evidence: Evidence, phases: Sequence[str]) -> Verdict:
    """A bbr sender went through these phases, in this order (its kernel's pacing gain says
    which: lab.inspect.congestion.bbr_phase), with its bandwidth and min RTT estimates."""
    from lab.inspect.congestion import bbr_phases

    seen_phases = bbr_phases(evidence.kernel)
    expected = "bbr's phases " + " -> ".join(phases)
    if not seen_phases:
        cc = algorithm_of(evidence.kernel)
        return Verdict("bbr_phases_seen", expected, f"no bbr state in the samples (the sender runs {cc})", False)
    order = [phase for _, phase in seen_phases]
    position = 0
    for phase in order:
        if position < len(phases) and phase == phases[position]:
            position += 1
    start = seen_phases[0][0]
    names = " -> ".join(dict.fromkeys(order))
    when = ", ".join(f"{phase} at {(at - start) / 1e9:.2f} s" for at, phase in seen_phases
                     if phase in ("drain", "probe_rtt"))
    estimates = [k for k in evidence.kernel if k.values.get("bbr_bw")]
    seen = f"{names}" + (f" ({when})" if when else "")
    if estimates:
        last = estimates[-1].values
        seen += (f"; its estimates: {last['bbr_bw'] * 8 / 1e6:.1f} Mbit/s, min RTT "
                 f"{last['bbr_min_rtt_us'] / 1000:.1f} ms")
    return Verdict("bbr_phases_seen", expected, seen, position == len(phases))


def jain_index_at_least(evidence: Evidence, least: float) -> Verdict:
    """Flows that share the bottleneck get fair shares: Jain's index of their delivery rates,
    the median over half-second windows where all were under way, is ``least`` or more; with
    each flow's share and its sender's cwnd (lab.inspect.fairness)."""
    from lab.inspect.fairness import median_jain, shares

    found = shares([segments for segments, _ in evidence.flows])
    index = median_jain(found)
    expected = f"Jain's index >= {least:g} over {len(evidence.flows)} flows"
    if index is None:
        return Verdict("jain_index_at_least", expected,
                       f"{len(evidence.flows)} flow(s), never all under way for half a second", False)
    parts = []
    for number, (_, kernel) in enumerate(evidence.flows):
        cwnds = [k.values["cwnd"] for k in kernel if k.values.get("state") == "ESTABLISHED" and k.values.get("cwnd")]
        cc = algorithm_of(kernel)
        parts.append(f"flow {number + 1}{f' ({cc})' if cc else ''} {100 * found.share(number):.0f}%"
                     + (f", cwnd median {statistics.median(cwnds):.0f}" if cwnds else ""))
    seen = (f"Jain's index {index:.3f} (median of {len(found.rates)} windows, least {min(found.jain):.3f}); "
            + ", ".join(parts))
    return Verdict("jain_index_at_least", expected, seen, index >= least)


def window_larger(evidence: Evidence, algorithms: Sequence[str], factor: float = 1.2) -> Verdict:
    """Of two flows sharing the bottleneck, the one sent with ``algorithms[0]`` keeps a larger
    window than the one with ``algorithms[1]``: its median cwnd ``factor`` times the other's
    or more (each flow's algorithm is its sender's, from the kernel's samples)."""
    first, second = algorithms
    medians = {}
    for _, kernel in evidence.flows:
        cc = algorithm_of(kernel)
        cwnds = [k.values["cwnd"] for k in kernel if k.values.get("state") == "ESTABLISHED" and k.values.get("cwnd")]
        if cc and cwnds:
            medians[cc] = statistics.median(cwnds)
    expected = f"{first}'s window >= {factor:g} x {second}'s"
    if first not in medians or second not in medians:
        return Verdict("window_larger", expected, f"flows with {', '.join(medians) or 'no kernel samples'}", False)
    ratio = medians[first] / medians[second]
    return Verdict("window_larger", expected, f"median cwnd {first} {medians[first]:.0f}, {second} "
                   f"{medians[second]:.0f} (x{ratio:.2f})", ratio >= factor)


def rtt_range(evidence: Evidence) -> tuple[float, float, float] | None:
    """(least, greatest, median of the second half) of the sender's RTT samples, in ms."""
    samples = [s.rtt_ms for s in rtt_samples(evidence.segments) if s.from_client == evidence.sender_is_client]
    if not samples:
        return None
    late = sorted(samples[len(samples) // 2:])
    return min(samples), max(samples), late[len(late) // 2]


def _rtt_text(found: tuple[float, float, float] | None) -> str:
    if not found:
        return "no RTT sample"
    least, most, late = found
    return f"RTT {least:.1f} ms at least, {most:.1f} at most, {late:.1f} in the second half (x{late / least:.1f})"


def rtt_grows_by_at_least(evidence: Evidence, factor: float) -> Verdict:
    """The round trip, in the second half of the transfer, is ``factor`` times its least:
    the sender keeps the queue in front of the bottleneck full."""
    found = rtt_range(evidence)
    return Verdict("rtt_grows_by_at_least", f"RTT x{factor:g} or more, late in the transfer", _rtt_text(found),
                   found is not None and found[2] >= factor * found[0])


def rtt_grows_by_at_most(evidence: Evidence, factor: float) -> Verdict:
    """The round trip, in the second half of the transfer, stays within ``factor`` of its least."""
    found = rtt_range(evidence)
    return Verdict("rtt_grows_by_at_most", f"RTT x{factor:g} at most, late in the transfer", _rtt_text(found),
                   found is not None and found[2] <= factor * found[0])


CHECKS: dict[str, Callable[[Evidence, Any], Verdict]] = {
    check.__name__: check for check in (
        syn_retransmitted_at_s, fast_retransmission, recovered_by_duplicate_acks, retransmitted_by, backoff_reaches,
        cwnd_after_timeout, duplicate_acks_at_least,
        repeated_acks_at_least, no_retransmission, zero_window, window_probes_at_least, cwnd_grows_by_at_least, reaches_pct_of_rate,
        rtt_grows_by_at_least, rtt_grows_by_at_most, aimd_cycles_at_least, additive_increase_per_rtt,
        receive_window_grows_by_at_least, second_write_waits_ms_at_least, second_write_waits_ms_at_most,
        delayed_ack_ms_at_least, bbr_phases_seen, jain_index_at_least, window_larger)
}
"""Every expectation a scenario may state, by the name it uses."""


def check_all(evidence: Evidence, expected: dict[str, Any]) -> list[Verdict]:
    return [CHECKS[name](evidence, value) for name, value in expected.items()]
