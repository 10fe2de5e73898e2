"""Whether a kernel file agrees with the capture it was made beside: a forged one does not.

A kernel file is JSON lines: anyone can edit it (``sed`` on ``rto_us`` turned a wrong
answer right). But the sampler wrote it while the packets of the capture flew, so the
two record the same events twice, and a file edited alone stops agreeing with them.
Each check below held, with the margin given, on every capture and kernel file the
lab bundles (tests/test_grading_trust.py reads them all); each margin is one-sided
where load can only move a number one way:

* **when**: every sample lies within the capture's span (a socket may be sampled up
  to 2 s before its first packet, in SYN_SENT, and 1 s after its last);
* **retransmissions**: a socket's ``total_retrans`` at each sample equals the copies
  of its sequence space (data, SYN or FIN sent again) the capture shows by then,
  give or take 5 ms (measured: 0.1 ms at most) and, for the client, whose copies
  reach the server's capture a one-way delay later, its srtt;
* **round trip**: the sender's kernel cannot see a round trip shorter than the
  capture shows at the sender: its smallest srtt is at least 95% of the smallest
  RTT of its data in the capture, less 0.5 ms (measured: 99.95%);
* **timers**: ``rto_us`` is what Linux computes from the srtt and rttvar it reports:
  never below srtt + max(4 x rttvar, 200 ms), to the 4 ms tick; never above that
  bound from the largest srtt and rttvar seen so far, doubled per backoff (Linux
  keeps its rttvar for a round trip, so the RTO lags a falling rttvar, never a
  rising one); in SYN_SENT, 1 s doubled per backoff;
* **window**: while a sender is in ca_state open, the bytes the capture shows in flight
  (sent and not yet acknowledged) never exceed its cwnd x snd_mss, give or take one
  segment (measured: exactly at most cwnd; bbr is left out, its PROBE_RTT cuts cwnd
  to 4 under a full flight);
* **SYN timer**: each SYN sent again follows the one before by the RTO the client's
  kernel had then (within 10% above, and 2% below: the emulator only adds delay).
"""

from __future__ import annotations

import bisect
import collections
from typing import Sequence

from lab.inspect.analysis import Capture
from lab.inspect.decode import ACK, FIN, SYN
from lab.inspect.kernel import EARLY_S, KernelSample, bytes_in_flight, connection_samples
from lab.inspect.timers import TICK_MS, linux_rto_ms

LATE_S = 1.0
RETRANS_SLACK_NS = 5_000_000
SRTT_SHARE, SRTT_SLACK_MS = 0.95, 0.5
SYN_RTO_US = 1_000_000
MAX_RTO_US = 120_000_000
MAX_SAID = 3


def disagreements(capture: Capture, samples: Sequence[KernelSample]) -> list[str]:
    """What the kernel file says that its capture (analysed with its segments kept) contradicts; [] if nothing.

    Only the samples of the capture's own sockets are held to it: the sampler also sees
    other sockets of the namespaces (a lab's readiness check in TIME_WAIT), which the
    capture knows nothing of."""
    found: list[str] = []
    frames = [segment.time_ns for conn in capture.connections for segment in (conn.segments or ())]
    if frames:
        first, last = min(frames), max(frames)
        ours = [k for conn in capture.connections
                for series in connection_samples(samples, conn, early_s=None).values() for k in series]
        outside = sorted(k.time_ns for k in ours if not first - EARLY_S * 1e9 <= k.time_ns <= last + LATE_S * 1e9)
        if outside:
            found.append(f"{len(outside)} of its samples lie outside the capture's span (the first at "
                         f"{(outside[0] - first) / 1e9:+.3f} s)")
    for conn in capture.connections:
        if not conn.segments:
            continue
        series = connection_samples(samples, conn)
        for host in ("client", "server"):
            found += _socket(conn, host, series[host])
    return found[:MAX_SAID] + ([f"and {len(found) - MAX_SAID} more"] if len(found) > MAX_SAID else [])


def _socket(conn, host: str, series: Sequence[KernelSample]) -> list[str]:
    if not series:
        return []
    said = []
    mine = host == "client"
    copies = copies_sent(conn.segments, mine)
    srtt_now = 0
    for sample in series:
        retrans = sample.values.get("total_retrans")
        srtt_now = sample.values.get("srtt_us") or srtt_now
        if retrans is None:
            continue
        slack = RETRANS_SLACK_NS + (srtt_now * 1000 if mine else 0)
        low, high = (bisect.bisect_right(copies, sample.time_ns + sign * slack) for sign in (-1, 1))
        if not low <= retrans <= high:
            said.append(f"the {host}'s kernel counts {retrans} retransmissions at "
                        f"{(sample.time_ns - conn.start_ns) / 1e9:.3f} s; the capture shows {high} by then")
            break
    said += _round_trip(conn, host, series)
    said += _window(conn, host, series)
    said += _timers(host, series)
    if mine:
        said += _syn_timer(conn, series)
    return said


def copies_sent(segments, from_client: bool) -> list[int]:
    """When each copy left: a segment of this side whose sequence space (data, SYN, FIN) was sent before."""
    highest = None
    times = []
    for segment in segments:
        if segment.from_client != from_client:
            continue
        span = segment.length + (1 if segment.flags & (SYN | FIN) else 0)
        if not span:
            continue
        if highest is not None and segment.rel_seq < highest:
            times.append(segment.time_ns)
        highest = max(highest or 0, segment.rel_seq + span)
    return times


def _round_trip(conn, host: str, series) -> list[str]:
    srtts = [k.values["srtt_us"] / 1000 for k in series if k.values.get("srtt_us")]
    seen = shortest_round_trip_ms(conn.segments, host == "client")
    if not srtts or seen is None:
        return []
    if min(srtts) < SRTT_SHARE * seen - SRTT_SLACK_MS:
        return [f"the {host}'s kernel saw a {min(srtts):.1f} ms round trip; the capture's shortest is {seen:.1f} ms"]
    return []


def shortest_round_trip_ms(segments, from_client: bool) -> float | None:
    """The shortest round trip the capture shows for this side's data (its SYN and FIN count,
    as the kernel's first sample is the handshake's): a segment sent once, to the first ACK
    that covers it (Karn's rule: copies measure nothing). One pass: what waits for an ACK
    is a queue in the order it was sent."""
    waiting: collections.deque = collections.deque()
    highest, shortest = 0, None
    for segment in segments:
        if segment.from_client == from_client:
            span = segment.length + (1 if segment.flags & (SYN | FIN) else 0)
            if span:
                end = segment.rel_seq + span
                waiting.append((end, segment.time_ns, segment.rel_seq < highest))
                highest = max(highest, end)
        elif segment.flags & ACK:
            newest = None
            while waiting and waiting[0][0] <= segment.rel_ack:
                newest = waiting.popleft()
            if newest is not None and not newest[2]:
                rtt = (segment.time_ns - newest[1]) / 1e6
                shortest = rtt if shortest is None else min(shortest, rtt)
    return shortest


def _window(conn, host: str, series) -> list[str]:
    in_flight = bytes_in_flight(conn.segments, host == "client")
    times, flights = [time for time, _ in in_flight], [flight for _, flight in in_flight]
    for sample in series:
        values = sample.values
        cwnd, mss = values.get("cwnd"), values.get("snd_mss")
        if not cwnd or not mss or values.get("ca_state") != "open" or values.get("cc") == "bbr" \
                or values.get("state") != "ESTABLISHED":
            continue
        at = bisect.bisect_right(times, sample.time_ns) - 1
        if at >= 0 and flights[at] > (cwnd + 1) * mss:
            return [f"the {host}'s kernel says its cwnd was {cwnd} segments at {(sample.time_ns - conn.start_ns) / 1e9:.3f}"
                    f" s; the capture shows {flights[at] / mss:.0f} segments in flight then"]
    return []


def _timers(host: str, series) -> list[str]:
    top_srtt = top_rttvar = 0.0
    for sample in series:
        values = sample.values
        rto, srtt, rttvar, backoff = (values.get(key) for key in ("rto_us", "srtt_us", "rttvar_us", "backoff"))
        if rto is None or backoff is None:
            continue
        if values.get("state") == "SYN_SENT":
            if rto != min(SYN_RTO_US << backoff, MAX_RTO_US):
                return [f"the {host}'s kernel says its RTO was {rto / 1000:.0f} ms in SYN_SENT after {backoff} "
                        f"backoffs; Linux's is {min(SYN_RTO_US << backoff, MAX_RTO_US) / 1000:.0f} ms"]
            continue
        if not srtt or rttvar is None or values.get("state") != "ESTABLISHED":
            continue
        top_srtt, top_rttvar = max(top_srtt, srtt), max(top_rttvar, rttvar)
        low = linux_rto_ms(srtt / 1000, rttvar / 1000) * 1000 - TICK_MS * 1000
        high = min(linux_rto_ms(top_srtt / 1000, top_rttvar / 1000) * 1000 * 2 ** backoff, MAX_RTO_US) \
            + TICK_MS * 1000
        if not low <= rto <= high:
            return [f"the {host}'s kernel says its RTO was {rto / 1000:.0f} ms with srtt {srtt / 1000:.1f} ms and "
                    f"rttvar {rttvar / 1000:.1f} ms; Linux's would be {max(low, 0) / 1000:.0f} to {high / 1000:.0f} ms"]
    return []


def _syn_timer(conn, series) -> list[str]:
    syns = [s.time_ns for s in conn.segments if s.from_client and s.flags & SYN and not s.flags & ACK]
    for before, after in zip(syns, syns[1:]):
        waiting = [k for k in series if k.time_ns <= after and k.values.get("state") == "SYN_SENT"
                   and k.values.get("rto_us")]
        if not waiting:
            continue
        rto_ms, gap_ms = waiting[-1].values["rto_us"] / 1000, (after - before) / 1e6
        if not 0.98 * rto_ms <= gap_ms <= 1.10 * rto_ms:
            return [f"the client's kernel says its SYN timer was {rto_ms:.0f} ms; the capture shows the SYN "
                    f"sent again {gap_ms:.0f} ms after the one before"]
    return []
