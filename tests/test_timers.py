"""Which timer sent a segment again, told from the kernel's samples: held to the bundled captures.

tail-loss-probe lost the server's only reply: Linux's tail loss probe repaired it
and the kernel stayed in ca_state open. tail-loss-rto lost the reply, the probe and
the timer's first copy: the RTO fired twice, backing off. The packets of the two
look alike; the tests hold the lesson's claims to the kernel's samples.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.inspect.analysis import analyze
from lab.inspect.expectations import (
    Evidence,
    backoff_reaches,
    cwnd_after_timeout,
    reaches_pct_of_rate,
    retransmitted_by,
)
from lab.inspect.graphs import data_sender
from lab.inspect.kernel import connection_samples, kernel_file_of, read_kernel_file
from lab.inspect.timers import backoffs, linux_pto_ms, linux_rto_ms, resends

DATA = Path(__file__).resolve().parent.parent / "notebooks" / "data"


def evidence_of(name: str, rate_kbit: float = 0.0, kernel: bool = True) -> Evidence:
    capture = DATA / name
    conn = max(analyze(capture, keep=True).connections, key=lambda c: len(c.segments))
    samples = connection_samples(read_kernel_file(kernel_file_of(capture)), conn)
    sender_is_client = data_sender(conn.segments)
    sender = samples["client" if sender_is_client else "server"] if kernel else []
    return Evidence(conn.segments, sender_is_client, sender, rate_kbit)


def test_linux_rto_is_srtt_plus_the_200_ms_floor_rounded_up_to_a_tick():
    assert linux_rto_ms(16.323, 8.161) == 220          # 216.3 ms, rounded up to 4 ms ticks
    assert linux_rto_ms(100.0, 60.0) == 340            # 4 x rttvar above the floor: 100 + 240
    assert linux_pto_ms(16.3, 220.0, outstanding=1) == 220    # 2 x srtt + 200 = 232.6: the RTO is sooner
    assert linux_pto_ms(5.0, 220.0, outstanding=1) == 212     # 210, rounded up to a tick
    assert linux_pto_ms(16.3, 220.0, outstanding=5) == 44     # more in flight: 2 x srtt + 2 ticks


@pytest.mark.parametrize("kernel_file", sorted(DATA.glob("*.kernel.jsonl")), ids=lambda p: p.stem)
def test_the_rto_formula_is_what_the_kernel_reports_in_every_bundled_sample(kernel_file):
    """Exact below the floor; above it the kernel's slowly falling variance keeps the RTO at or
    above what tcp_info's rttvar gives, never below."""
    checked = 0
    for line in kernel_file.read_text().splitlines():
        sample = json.loads(line)
        if sample["state"] != "ESTABLISHED" or not sample.get("srtt_us") or sample.get("backoff"):
            continue
        predicted = linux_rto_ms(sample["srtt_us"] / 1000, sample["rttvar_us"] / 1000)
        if 4 * sample["rttvar_us"] < 200_000:
            assert sample["rto_us"] / 1000 == predicted, sample
        else:
            assert sample["rto_us"] / 1000 >= predicted, sample
        checked += 1
    assert checked


def test_a_lost_tail_is_repaired_by_a_probe_and_the_kernel_stays_in_open():
    evidence = evidence_of("tail-loss-probe.pcapng")
    found = resends(evidence.segments, evidence.sender_is_client, evidence.kernel)
    assert [resend.cause for resend in found] == ["probe"]
    after = found[0].after.values
    assert after["ca_state"] == "open" and after["backoff"] == 0 and after["cwnd"] >= 10
    assert all(k.values["ca_state"] == "open" for k in evidence.kernel)
    assert retransmitted_by(evidence, "probe").ok and not retransmitted_by(evidence, "timer").ok
    assert not cwnd_after_timeout(evidence, 1).ok


def test_a_lost_probe_leaves_the_timer_which_backs_off_and_cuts_cwnd_to_one():
    evidence = evidence_of("tail-loss-rto.pcapng")
    found = resends(evidence.segments, evidence.sender_is_client, evidence.kernel)
    assert [resend.cause for resend in found] == ["probe", "timer", "timer"]
    assert [(r.after.values["ca_state"], r.after.values["backoff"], r.after.values["cwnd"]) for r in found[1:]] \
        == [("loss", 1, 1), ("loss", 2, 1)]
    assert backoffs(evidence.kernel) == [(0, 220.0), (1, 440.0), (2, 880.0)]
    waits = [resend.waited_ms for resend in found]
    assert 216 <= waits[0] <= 236 and 216 <= waits[1] <= 236 and 436 <= waits[2] <= 476   # the wheel: <= 32 ms late
    assert retransmitted_by(evidence, "timer").ok and not retransmitted_by(evidence, "probe").ok
    assert backoff_reaches(evidence, 2).ok and not backoff_reaches(evidence, 3).ok
    assert cwnd_after_timeout(evidence, 1).ok and not cwnd_after_timeout(evidence, 2).ok


def test_without_kernel_samples_a_probe_cannot_be_told_from_a_timeout():
    verdict = retransmitted_by(evidence_of("tail-loss-probe.pcapng", kernel=False), "probe")
    assert not verdict.ok and "no kernel samples" in verdict.seen


def test_no_delivery_rate_above_the_link_passes():
    """The bundled slow start sent 34 Mbit/s into its 20 Mbit/s link, and its cumulative ACK
    jumps over SACKed data after the loss: only the kernel's delivery rate stays under the link."""
    kernel = reaches_pct_of_rate(evidence_of("slow-start.pcapng", 20_000), 80)
    assert kernel.ok and "kernel's delivery rate" in kernel.seen
    best = float(kernel.seen.split()[1])
    assert 16 <= best <= 20 * 1.05
    packets_only = reaches_pct_of_rate(evidence_of("slow-start.pcapng", 20_000, kernel=False), 80)
    assert not packets_only.ok and "above the link's rate" in packets_only.seen
    assert not reaches_pct_of_rate(evidence_of("slow-start.pcapng", 10_000), 80).ok     # a link half as fast
    bloat = reaches_pct_of_rate(evidence_of("bufferbloat-reno.pcapng", 10_000, kernel=False), 80)
    assert bloat.ok and "acknowledged" in bloat.seen


@pytest.mark.parametrize("name", ["slow-start.pcapng", "aimd.pcapng"])
def test_a_download_repairs_its_losses_in_recovery_not_by_a_probe_or_the_timer(name):
    """In a download the next packet follows a copy within microseconds, before the next
    sample: the cause is read in the samples just after it (read before the next packet,
    burst-loss's three copies once showed as probes)."""
    evidence = evidence_of(name)
    found = resends(evidence.segments, evidence.sender_is_client, evidence.kernel)
    assert found and {resend.cause for resend in found} == {"recovery"}
    assert retransmitted_by(evidence, "recovery").ok and not retransmitted_by(evidence, "probe").ok


def test_a_reply_sent_before_the_sockets_first_sample_is_still_told_a_probe_on_time():
    """In CI the server answered within its first sampling interval: no sample before the original,
    so the probe's predicted time was missing and a true probe failed the check."""
    import dataclasses

    evidence = evidence_of("tail-loss-probe.pcapng")
    original = next(s for s in evidence.segments if s.length and not s.from_client)
    # The socket's first sample, taken 0.6 ms after the reply left instead of 1.4 ms before it:
    late = [dataclasses.replace(k, time_ns=original.time_ns + 600_000) if k.time_ns < original.time_ns else k
            for k in evidence.kernel]
    assert not [k for k in late if k.time_ns <= original.time_ns + 500_000]
    shifted = Evidence(evidence.segments, evidence.sender_is_client, late)
    verdict = retransmitted_by(shifted, "probe")
    assert verdict.ok and "predicted the probe at 220 ms" in verdict.seen
