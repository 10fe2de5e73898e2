"""The bulk analysis (lab.inspect.fast.bulk) against the Tracker frame by frame: same verdicts, same state.

tcp.py states Wireshark's rules; bulk.py skips the frames where it can show that no
rule fires. These tests hold it to that. For captures of real programs, and for
synthetic conversations made to be irregular, read in chunks of many sizes (so
that batches cut connections everywhere), ``analyze()`` and
``analyze(bulk=False)`` must agree on everything: each frame's flags, each
connection's numbers, handshake, teardown and kept segments, and the inner state
of each direction, which is what the next batch would start from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.inspect import analyze, iter_segments, reader
from lab.inspect.analysis import open_capture
from lab.inspect.fast import bulk
from lab.inspect.tcp import Flow, Tracker
from tests import tcp_traces
from tests.capture_files import enhanced_packet, interface, pad, pcap_bytes, pcapng_bytes, section_header

pytestmark = pytest.mark.slow      # the fast tier leaves it out: pytest -m 'not docker and not slow'

ROOT = Path(__file__).parent.parent
CAPTURES = sorted((ROOT / "tests" / "corpus").glob("*.pcap")) + sorted((ROOT / "notebooks" / "data").glob("*.pcapng"))
CHUNKS = [700, 3000, 20_000, reader.CHUNK]


def state(capture) -> tuple:
    """Everything an analysis knows at its end, in a form that compares."""
    def flow(f: Flow) -> dict:
        return {name: getattr(f, name) for name in Flow.__slots__}

    connections = [
        (conn.stream, conn.first_frame, conn.start_ns, conn.last_ns, flow(conn.client), flow(conn.server),
         conn.opener is conn.client, dataclasses.asdict(conn.handshake), conn.first_rtt_ns, conn.mru_syn_ns,
         conn.rst_frames, None if conn.segments is None else [dataclasses.astuple(s) for s in conn.segments])
        for conn in capture.connections]
    return capture.frames, capture.first_time_ns, connections, capture.flagged, str(capture.error)


@contextlib.contextmanager
def small_batches(chunk: int, min_bulk: int = 4):
    """Read in chunks of ``chunk`` bytes, and take even short runs in bulk."""
    saved = reader.CHUNK, bulk.MIN_BULK
    reader.CHUNK, bulk.MIN_BULK = chunk, min_bulk
    try:
        yield
    finally:
        reader.CHUNK, bulk.MIN_BULK = saved


def frames_in_bulk(path: Path, keep: int = 60) -> int:
    with open_capture(path) as stream:
        return bulk.consume(Tracker(keep=keep, emit=False), reader.read_batches(stream))


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_bulk_and_frame_by_frame_agree_on_real_captures(path, chunk):
    with small_batches(chunk):
        assert state(analyze(path)) == state(analyze(path, bulk=False))


def segments_until_damage(path: Path, bulk: bool) -> tuple[list[tuple], str]:
    """iter_segments' Segments as tuples, and what stopped it (a damaged file stops it midway)."""
    found = []
    try:
        for segment in iter_segments(path, bulk=bulk):
            found.append(dataclasses.astuple(segment))
    except reader.CaptureFileError as error:
        return found, str(error)
    return found, ""


@pytest.mark.parametrize("chunk", [CHUNKS[0], CHUNKS[-1]])     # a frame or two a batch, and the usual batches
@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_every_segment_in_bulk_is_the_rules_segment(path, chunk):
    """--csv and iter_segments: each frame's Segment, in frame order, with its final stream number."""
    with small_batches(chunk):
        assert segments_until_damage(path, bulk=True) == segments_until_damage(path, bulk=False)


@pytest.mark.parametrize("cut", [0.3, 0.77])
def test_a_cut_capture_gives_the_same_segments_up_to_the_cut(tmp_path, cut):
    whole = (ROOT / "tests" / "corpus" / "loss.pcap").read_bytes()
    damaged = tmp_path / "damaged.pcap"
    damaged.write_bytes(whole[:int(len(whole) * cut)])    # its last record cut short
    with small_batches(3000):
        bulk_way = segments_until_damage(damaged, bulk=True)
        assert bulk_way == segments_until_damage(damaged, bulk=False)
    assert bulk_way[1] and bulk_way[0]          # it was damaged, and what came before it was read


@pytest.mark.parametrize("keep", [False, 10, True])
def test_they_agree_whatever_connections_keep(keep):
    path = ROOT / "tests" / "corpus" / "loss.pcap"
    with small_batches(3000):
        assert state(analyze(path, keep=keep)) == state(analyze(path, keep=keep, bulk=False))


@pytest.mark.parametrize("name, at_least", [("iperf.pcap", 0.9), ("loss.pcap", 0.9), ("missed.pcap", 0.7),
                                            ("zerowindow.pcap", 0.6), ("lossfull.pcap", 0.7)])
def test_most_frames_of_a_long_connection_go_in_bulk(name, at_least):
    """Else the agreement above would prove little: the bulk path must really run, losses or not."""
    path = ROOT / "tests" / "corpus" / name
    assert frames_in_bulk(path) >= at_least * analyze(path).frames


def test_a_clock_past_2262_is_analysed_the_same(tmp_path):
    """Nanosecond ticks beyond 64-bit numbers (the reader's Python-integer column), IPv6 frames among them."""
    records = list(reader.read_records((ROOT / "tests" / "corpus" / "lab.pcap").open("rb")))
    tsresol = struct.pack("<HH", 9, 1) + pad(bytes([9])) + struct.pack("<HH", 0, 0)
    path = tmp_path / "far.pcapng"
    path.write_bytes(section_header() + interface(options=tsresol) + b"".join(
        enhanced_packet(rec, ticks=(1 << 64) - 10 ** 12 + rec.time_ns % 10 ** 12) for rec in records))
    assert state(analyze(path)) == state(analyze(path, bulk=False))
    assert analyze(path).first_time_ns > 1 << 63


def test_connections_that_keep_their_segments_go_in_bulk_too():
    """The grader keeps every segment: its analysis must not fall back to the rules frame by frame."""
    path = ROOT / "tests" / "corpus" / "iperf.pcap"
    assert frames_in_bulk(path, keep=True) >= 0.9 * analyze(path).frames
    assert state(analyze(path, keep=True)) == state(analyze(path, keep=True, bulk=False))


def test_the_bulk_path_makes_no_segments():
    with pytest.raises(ValueError, match="Tracker.feed"):
        bulk.consume(Tracker(emit=True), iter([]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conversation=tcp_traces.steps(), isn=st.integers(0, 6), handshake=st.booleans(),
       chunk=st.sampled_from([400, 1500, 6000, 1 << 20]), pcapng=st.booleans(), keep=st.sampled_from([60, 7, True]))
def test_bulk_and_frame_by_frame_agree_on_any_conversation(tmp_path, conversation, isn, handshake, chunk, pcapng,
                                                           keep):
    records = tcp_traces.trace(conversation, isn, handshake)
    path = tmp_path / "synthetic.pcap"
    path.write_bytes(pcapng_bytes(records) if pcapng else pcap_bytes(records, nanoseconds=True))
    with small_batches(chunk, min_bulk=2):
        assert state(analyze(path, keep=keep)) == state(analyze(path, keep=keep, bulk=False))
        assert segments_until_damage(path, bulk=True) == segments_until_damage(path, bulk=False)


def test_a_long_irregular_conversation_goes_mostly_in_bulk_and_agrees(tmp_path):
    """Bursts between losses, repeats, zero windows and wraps: bulk between them, the rules at them."""
    irregular = ["gap", "retransmit", "repeat_ack", "zero_window", "window", "future_ack", "keepalive", "probe",
                 "shape", "old_ack", "data", "not_tcp"]
    steps = []
    for round_number in range(60):
        steps.append(("burst", round_number % 3, round_number % 2, 40, round_number % 8))
        steps.append((irregular[round_number % len(irregular)], round_number % 3, (round_number // 2) % 2,
                      round_number % 7, (round_number * 5) % 8))
    path = tmp_path / "irregular.pcap"
    records = tcp_traces.trace(steps, isn_choice=4)
    path.write_bytes(pcap_bytes(records, nanoseconds=True))
    for chunk in (5000, 50_000, reader.CHUNK):
        with small_batches(chunk):
            assert state(analyze(path)) == state(analyze(path, bulk=False))
            assert frames_in_bulk(path) > 0.6 * len(records)
