"""Reading the kernel's samples beside a capture (lab/inspect/kernel.py): hostile files, matching, series."""

from __future__ import annotations

import json
import os

import pytest

from lab.inspect import analyze
from lab.inspect.kernel import (
    bytes_in_flight,
    changes,
    connection_samples,
    kernel_file_of,
    parse_sample,
    read_kernel_file,
    state_spans,
    unacked_agreement,
)
from lab.inspect.reader import CaptureFileError
from lab.paths import PROJECT_ROOT

DATA = PROJECT_ROOT / "notebooks" / "data"


def line(**fields) -> bytes:
    return json.dumps({"t": 10, "host": "server", "local": "10.0.0.2:7070", "remote": "10.0.0.3:4000",
                       "state": "ESTABLISHED", "cwnd": 10, **fields}).encode()


def test_a_sample_is_read_and_its_values_checked():
    sample = parse_sample(line(snd_mss=1448, unacked=3, ssthresh=None, cc="reno"))
    assert (sample.time_ns, sample.host, sample.cwnd, sample.cc) == (10, "server", 10, "reno")
    assert sample.cwnd_bytes == 14480 and sample.unacked_bytes == 4344 and sample.ssthresh_bytes is None


@pytest.mark.parametrize("bad", [b"not json", b"[1, 2]", line(t=-1), line(t="10"), line(host="router"),
                                 line(local="x" * 100), line(local=5)])
def test_a_line_that_is_not_the_samplers_is_left_out(bad):
    assert parse_sample(bad) is None


def test_values_of_the_wrong_kind_are_dropped_not_trusted():
    sample = parse_sample(line(cwnd="[bold]10[/]", state="x" * 40, srtt_us=True, rto_us=-5))
    assert "cwnd" not in sample.values and "state" not in sample.values
    assert "srtt_us" not in sample.values and "rto_us" not in sample.values


def test_a_kernel_file_is_never_read_through_a_link_nor_from_a_device(tmp_path):
    real = tmp_path / "real.kernel.jsonl"
    real.write_bytes(line() + b"\n" + b"garbage\n" + line(t=5) + b"\n")
    assert [s.time_ns for s in read_kernel_file(real)] == [5, 10]            # in time order, garbage left out
    link = tmp_path / "link.kernel.jsonl"
    os.symlink(real, link)
    with pytest.raises(CaptureFileError, match="cannot read the kernel samples"):
        read_kernel_file(link)
    with pytest.raises(CaptureFileError, match="not a regular file"):
        read_kernel_file("/dev/zero")


def test_the_kernel_file_is_found_beside_its_capture():
    assert kernel_file_of(DATA / "slow-start.pcapng") == DATA / "slow-start.kernel.jsonl"
    assert kernel_file_of(DATA / "bulk-loss.pcapng") is None


def test_the_bundled_slow_start_samples_match_its_connection_and_agree_with_its_packets():
    pcap = DATA / "slow-start.pcapng"
    capture = analyze(pcap, keep=True)
    [conn] = [c for c in capture.connections if c.server.port == 7070]
    series = connection_samples(read_kernel_file(kernel_file_of(pcap)), conn)
    assert series["server"] and series["client"]
    assert [state for _, _, state in state_spans(series["client"])][:2] == ["SYN_SENT", "ESTABLISHED"]
    assert changes(series["server"]) == series["server"]            # the file keeps changes only
    agreeing, disagreeing = unacked_agreement(series["server"], conn.segments, False, 1_000_000)
    assert agreeing > 100 and len(disagreeing) < 0.1 * agreeing
    flight = bytes_in_flight(conn.segments, False)
    assert max(value for _, value in flight) > 100_000 and flight[-1][1] == 0


@pytest.mark.parametrize("name", ["bufferbloat-reno", "bufferbloat-bbr", "slow-start", "aimd"])
def test_the_rtt_figure_puts_packets_and_kernel_on_one_time_axis(name):
    """A sample is taken when its ACK arrives: plotted then, the capture's EstimatedRTT and the
    kernel's srtt agree (median within 2%); plotted when the segment left, as the figure once
    did, reno's bufferbloat run was 100% apart and its srtt seemed to lag by a second."""
    import statistics

    from lab.inspect.graphs import _start, rtt_points
    from lab.inspect.rtt import estimated_rtts
    from lab.inspect.timers import state_at
    from lab.teach.dynamics import Dynamics

    dyn = Dynamics(DATA / f"{name}.pcapng")
    start = _start(dyn.segments)
    times, rtts = rtt_points(dyn.segments, dyn.sender_is_client)
    apart = []
    for at, estimate in zip(times, estimated_rtts(rtts)):
        sample = state_at(dyn.sender, start + int(at * 1e9))
        if sample is not None and sample.values.get("srtt_us"):
            apart.append(abs(estimate - sample.values["srtt_us"] / 1000) / (sample.values["srtt_us"] / 1000))
    assert len(apart) > 100 and statistics.median(apart) < 0.02


def test_a_line_is_not_drawn_across_a_silence():
    from lab.inspect.graphs import with_gaps

    xs, ys = with_gaps([0.0, 0.01, 0.02, 0.03, 1.5, 1.51], [1, 2, 3, 4, 5, 6])
    assert xs[4] != xs[4] and ys[4] != ys[4] and xs[5:] == [1.5, 1.51]      # a NaN breaks the line at the gap
    assert with_gaps([0.0, 0.01, 0.02, 0.03], [1, 2, 3, 4]) == ([0.0, 0.01, 0.02, 0.03], [1, 2, 3, 4])
