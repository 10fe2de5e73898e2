"""Reno's saw-tooth in the kernel's samples (the bundled aimd capture), and bbr's window that holds."""

from __future__ import annotations

import pytest

from lab.inspect.congestion import climbs, cuts, increase_per_rtt
from lab.inspect.expectations import additive_increase_per_rtt, aimd_cycles_at_least
from tests.test_timers import evidence_of


def test_reno_halves_its_window_at_each_loss_and_climbs_one_segment_per_round_trip():
    evidence = evidence_of("aimd.pcapng")
    found = cuts(evidence.kernel)
    assert len(found) >= 3 and all(cut.state == "recovery" for cut in found)
    assert all(0.45 <= cut.factor <= 0.52 for cut in found)           # RFC 5681: half the flight
    rising = climbs(evidence.kernel)
    assert len(rising) >= 3 and all(climb.cwnd_to > climb.cwnd_from for climb in rising)
    assert 0.85 <= increase_per_rtt(evidence.kernel) <= 1.1
    assert aimd_cycles_at_least(evidence, 3).ok and not aimd_cycles_at_least(evidence, len(found) + 1).ok
    assert additive_increase_per_rtt(evidence, (0.5, 1.5)).ok
    assert not additive_increase_per_rtt(evidence, (-0.3, 0.3)).ok       # what bbr's scenario expects


def test_a_slow_start_that_ends_with_its_first_loss_has_no_climb_to_measure():
    evidence = evidence_of("slow-start.pcapng")
    assert cuts(evidence.kernel)[0].factor < 0.55 and climbs(evidence.kernel) == []
    verdict = additive_increase_per_rtt(evidence, (0.5, 1.5))
    assert not verdict.ok and "no stretch of congestion avoidance" in verdict.seen


def test_without_kernel_samples_no_saw_tooth_is_claimed():
    verdict = aimd_cycles_at_least(evidence_of("aimd.pcapng", kernel=False), 1)
    assert not verdict.ok and "no kernel samples" in verdict.seen


def test_bbrs_phase_is_told_by_its_pacing_gain():
    from lab.inspect.congestion import bbr_phase, bbr_phases
    from lab.inspect.kernel import KernelSample

    def sample(at_ms: int, gain: int | None, cwnd: int = 40) -> KernelSample:
        return KernelSample(at_ms * 1_000_000, "server", "a", "b",
                            {"state": "ESTABLISHED", "cwnd": cwnd, "pacing_gain": gain})

    series = [sample(0, 0), sample(1, 739), sample(400, 88), sample(450, 320), sample(480, 192), sample(500, 256),
              sample(10_000, 256, cwnd=4), sample(10_200, 320)]
    assert bbr_phase(sample(0, None)) is None and bbr_phase(sample(0, 0)) is None
    assert [phase for _, phase in bbr_phases(series)] == ["startup", "drain", "probe_bw", "probe_rtt", "probe_bw"]


def test_jains_index_is_one_for_equal_shares_and_one_over_n_for_one_taking_all():
    from lab.inspect.fairness import jain_index

    assert jain_index([5.0, 5.0]) == 1.0 and jain_index([10.0, 0.0]) == 0.5
    assert jain_index([7.0, 3.0]) == pytest.approx(0.862, abs=0.001)       # 70/30: below the scenario's 0.9
    assert jain_index([1.0, 1.0, 1.0, 0.0]) == pytest.approx(0.75)


def test_two_copies_of_one_download_share_perfectly_and_one_flow_has_no_share():
    from lab.inspect.expectations import Evidence, jain_index_at_least
    from lab.inspect.fairness import shares

    evidence = evidence_of("aimd.pcapng")
    both = shares([evidence.segments, evidence.segments])
    assert len(both.rates) >= 4 and all(index == pytest.approx(1.0) for index in both.jain)
    assert both.share(0) == pytest.approx(0.5)
    assert shares([evidence.segments]).rates == []
    alone = jain_index_at_least(Evidence(evidence.segments, False, flows=[(evidence.segments, [])]), 0.9)
    assert not alone.ok and "never all under way" in alone.seen


def test_a_larger_window_is_read_per_flow_from_each_senders_algorithm():
    from lab.inspect.expectations import Evidence, window_larger
    from lab.inspect.kernel import KernelSample

    def flow(cc: str, cwnd: int) -> tuple[list, list]:
        samples = [KernelSample(i, "server", "a", "b", {"state": "ESTABLISHED", "cwnd": cwnd, "cc": cc})
                   for i in range(3)]
        return [], samples

    evidence = Evidence([], False, flows=[flow("bbr", 26), flow("reno", 15)])
    assert window_larger(evidence, ["bbr", "reno"]).ok and not window_larger(evidence, ["reno", "bbr"]).ok
    assert not window_larger(Evidence([], False, flows=[flow("bbr", 18), flow("reno", 16)]), ["bbr", "reno"]).ok
    missing = window_larger(Evidence([], False, flows=[flow("reno", 15), flow("reno", 16)]), ["bbr", "reno"])
    assert not missing.ok and "flows with reno" in missing.seen
