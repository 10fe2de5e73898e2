"""Which of Linux's mechanisms sent a segment again: a tail loss probe, the retransmission timer, or recovery.

On the wire a probe and a timeout look alike: a silence, then the same bytes again,
with no duplicate ACK before them. The sender's kernel tells them apart, and the
lab samples it beside the capture (lab.inspect.kernel):

* a **tail loss probe** (RFC 8985; Linux's ``net.ipv4.tcp_early_retrans=3``, on by
  default) leaves the socket in ca_state open, its backoff 0 and its cwnd as it was:
  Linux sends it before the timer would fire, hoping the ACK it brings back repairs
  the loss cheaply;
* a **retransmission timeout** puts the socket in ca_state loss with cwnd 1, and
  backs the timer off: backoff 1 and the RTO doubled, backoff 2 and doubled again
  when the copy is lost as well;
* **recovery** (ca_state recovery): duplicate ACKs or SACK told of the gap (fast
  retransmit, RACK), and the window was cut.

When Linux fires each (read in tcp_input.c's ``tcp_rtt_estimator`` and ``__tcp_set_rto``
and tcp_output.c's ``tcp_schedule_loss_probe``), with the numbers tcp_info reports:

* RTO = srtt + max(4 x rttvar, 200 ms), rounded up to the kernel's clock tick (4 ms
  at HZ=250, Debian's). On a lab's link of tens of milliseconds the 200 ms floor
  wins: 16.3 ms of srtt gives 216.3 ms, 220 ms after rounding. (The variance term
  the kernel uses rises at once and falls back a quarter of the way each round trip,
  so after a jump in the RTT the RTO stays above what tcp_info's rttvar gives: in
  the bundled captures the formula is exact in 11,259 of 11,268 samples, the other 9
  from reno's bufferbloat run, where the queue made the RTT swing.)
* PTO = 2 x srtt + 200 ms when one segment is outstanding (2 x srtt + 2 ticks with
  more), but never later than the RTO would fire: with one reply outstanding on a
  16 ms link, min(232.6, 220) = 220 ms, the probe goes when the timer would have.
* A timer longer than 63 ticks (252 ms) waits on a coarser level of the kernel's
  timer wheel and fires up to 8 ticks (32 ms) late: a doubled RTO of 440 ms shows
  as a wait of 440 to 472 ms.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from lab.inspect.kernel import KernelSample
from lab.inspect.tcp import Segment

RTO_MIN_MS = 200.0          # Linux's TCP_RTO_MIN
TICK_MS = 4.0               # one jiffy at HZ=250 (Debian's kernels): timers are whole ticks


def linux_rto_ms(srtt_ms: float, rttvar_ms: float, tick_ms: float = TICK_MS) -> float:
    """The RTO Linux sets from the srtt and rttvar it reports: srtt + max(4 x rttvar, 200 ms),
    rounded up to a whole tick."""
    return math.ceil((srtt_ms + max(4 * rttvar_ms, RTO_MIN_MS)) / tick_ms - 1e-9) * tick_ms


def linux_pto_ms(srtt_ms: float, rto_ms: float, outstanding: int, tick_ms: float = TICK_MS) -> float:
    """When Linux sends its tail loss probe after the last segment: 2 x srtt + 200 ms with one
    segment outstanding (+ 2 ticks with more), and never after the RTO."""
    extra = RTO_MIN_MS if outstanding == 1 else 2 * tick_ms
    return min(math.ceil((2 * srtt_ms + extra) / tick_ms - 1e-9) * tick_ms, rto_ms)


@dataclasses.dataclass(frozen=True)
class Resend:
    """A data segment sent again, and what the sender's kernel said about it."""

    segment: Segment
    waited_ms: float                  # since the copy before it (the original, for the first)
    cause: str                        # "probe", "timer", "recovery", or "unknown" (no kernel sample)
    before: KernelSample | None       # the sender's state when the silence began
    after: KernelSample | None        # its state once this copy had left

    def describe(self) -> str:
        """One line: the frame, the wait, and the kernel's state after it."""
        text = f"frame {self.segment.frame} after {self.waited_ms:.0f} ms: "
        if self.after is None:
            return text + "no kernel sample"
        values = self.after.values
        return text + (f"{self.cause} (ca_state {values.get('ca_state')}, backoff {values.get('backoff')}, "
                       f"cwnd {values.get('cwnd')}, RTO {values.get('rto_us', 0) / 1000:g} ms)")


def state_at(series: Sequence[KernelSample], time_ns: int) -> KernelSample | None:
    """The sample in force at ``time_ns``: the sampler keeps a socket's changes only, so a
    socket's state at any moment is its last sample before it."""
    found = None
    for sample in series:
        if sample.time_ns > time_ns:
            break
        found = sample
    return found


def _cause(before: KernelSample | None, after: KernelSample | None) -> str:
    if after is None:
        return "unknown"
    ca_state, backoff = after.values.get("ca_state"), after.values.get("backoff") or 0
    if ca_state == "loss" or backoff > ((before.values.get("backoff") or 0) if before else 0):
        return "timer"
    if ca_state in ("recovery", "cwr"):
        return "recovery"
    return "probe" if ca_state in ("open", "disorder") and backoff == 0 else "unknown"


AFTER_NS = 5_000_000        # the kernel's state is read in the 5 ms after a copy left: a few sampling intervals


def _after(series: Sequence[KernelSample], time_ns: int, before: KernelSample | None) -> KernelSample | None:
    """The sender's state once a copy had left: of the samples in the AFTER_NS after it, the one
    that says most (a timeout, then recovery), else the last; else the state in force then.

    In a download the next packet follows within microseconds, long before the next sample,
    so the state cannot be read "before the next packet": recovery lasts a round trip, a
    timeout's loss state longer, and either shows in the samples just after the copy.
    """
    window = [k for k in series if time_ns - 200_000 <= k.time_ns <= time_ns + AFTER_NS and k.values.get("ca_state")]
    for wanted in ("timer", "recovery"):
        found = next((k for k in window if _cause(before, k) == wanted), None)
        if found is not None:
            return found
    return window[-1] if window else state_at(series, time_ns + AFTER_NS)


def resends(segments: Sequence[Segment], sender_is_client: bool,
            sender_kernel: Sequence[KernelSample]) -> list[Resend]:
    """Every data segment the sender sent again, in order, each with its cause from the kernel."""
    first_copy: dict[int, int] = {}
    last_copy: dict[int, int] = {}
    found = []
    for segment in segments:
        if segment.from_client != sender_is_client or not segment.length:
            continue
        if segment.rel_seq in first_copy:
            # The state when the last copy left; a socket that sent its reply within the first
            # sampling interval has no sample before it (CI once), and its first sample, taken
            # before any ACK could come, holds the same srtt and RTO.
            before = state_at(sender_kernel, last_copy[segment.rel_seq] + 500_000) or next(
                (k for k in sender_kernel if k.time_ns < segment.time_ns), None)
            after = _after(sender_kernel, segment.time_ns, before)
            found.append(Resend(segment, (segment.time_ns - last_copy[segment.rel_seq]) / 1e6,
                                _cause(before, after), before, after))
        first_copy.setdefault(segment.rel_seq, segment.time_ns)
        last_copy[segment.rel_seq] = segment.time_ns
    return found


def predicted_first_wait_ms(resend: Resend) -> tuple[float, float] | None:
    """(PTO, RTO) in ms as the kernel's state when the segment left predicts them, or None."""
    if resend.before is None or not resend.before.values.get("srtt_us"):
        return None
    values = resend.before.values
    rto_ms = values["rto_us"] / 1000
    return linux_pto_ms(values["srtt_us"] / 1000, rto_ms, values.get("unacked") or 1), rto_ms


def backoffs(sender_kernel: Sequence[KernelSample]) -> list[tuple[int, float]]:
    """(backoff, RTO ms) each time the retransmission timer's backoff changed while the
    connection was established: (0, 220), (1, 440), (2, 880) for two expiries in a row."""
    seen: list[tuple[int, float]] = []
    for sample in sender_kernel:
        backoff, rto = sample.values.get("backoff"), sample.values.get("rto_us")
        if sample.values.get("state") != "ESTABLISHED" or backoff is None or not rto:
            continue
        if not seen or seen[-1][0] != backoff:
            seen.append((backoff, rto / 1000))
    return seen
