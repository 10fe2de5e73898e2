"""Scenarios: their files and seeds, the emulator's packet events, and each bundled one run on a real lab.

The docker test at the end runs every bundled scenario as a learner does
(`invoke scenario NAME`) and checks that what it expects is what its capture shows.
"""

from __future__ import annotations

import re
import struct

import pytest

from lab.errors import LabError
from lab.host import scenario as running
from lab.inside.link_core import ACK, FIN, SYN, Bottleneck, Event, Events, HeldBack, headers
from lab.scenarios import model as scenario
from tests.helpers import invoke, ok

SERVER, CLIENT = (7070, 41234), (41234, 7070)


def tcp_packet(ports: tuple[int, int], seq: int, flags: int, payload: int = 0) -> bytes:
    """The first bytes of an IPv4/TCP packet, as the emulator's queue hands them over."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + payload, 0, 0, 64, 6, 0, bytes(4), bytes(4))
    return ip + struct.pack("!HHIIHHHH", *ports, seq, 0, (5 << 12) | flags, 65535, 0, 0)


def test_an_event_is_parsed_and_written_back_the_same():
    assert str(Event.parse("drop:data:5")) == "drop:data:5:1"
    assert Event.parse("delay:fin:1:1:300").delay_ms == 300
    for bad in ("drop:data", "lose:data:5", "drop:ack:1", "delay:fin:1", "drop:data:x", "drop:data:1:0"):
        with pytest.raises(ValueError):
            Event.parse(bad)


@pytest.mark.parametrize("file_name, made", [
    ("slow-start-reno-seed7.pcapng", ("slow-start", 7)), ("slow-start-seed7-2.pcapng", ("slow-start", 7)),
    ("tail-loss-rto-bbr-seed3-12.pcapng", ("tail-loss-rto", 3)), ("tail-loss-probe-seed1.pcapng", ("tail-loss-probe", 1)),
    ("aimd.pcapng", ("aimd", None)), ("my-own-seed3.pcapng", None), ("slow-start-reno.pcapng", None),
])
def test_a_captures_name_says_which_scenario_and_seed_made_it(file_name, made):
    assert scenario.made_by(file_name) == made


def test_the_nth_data_segment_is_counted_by_first_transmission_not_by_retransmission():
    events = Events([Event.parse("drop:data:3")])
    fates = [events.match(headers(tcp_packet(SERVER, 1000, SYN | ACK)))]
    for seq in (1001, 2449, 2449, 3897):          # the 2nd segment is sent twice: the 3rd is still 3897
        fates.append(events.match(headers(tcp_packet(SERVER, seq, ACK, 1448))))
    assert fates == [None, None, None, None, Event.parse("drop:data:3")]


def test_copies_sent_again_are_counted_apart_as_resent():
    """The tail-loss-rto scenario loses the original, the probe and the timer's first copy:
    drop:data:1 and drop:resent:1:2."""
    events = Events([Event.parse("drop:data:1"), Event.parse("drop:resent:1:2")])
    assert events.match(headers(tcp_packet(SERVER, 1000, SYN | ACK))) is None
    fates = [events.match(headers(tcp_packet(SERVER, 1001, ACK, 24))) for _ in range(4)]   # one reply, four times
    assert [fate.what if fate else None for fate in fates] == ["data", "resent", "resent", None]
    assert events.match(headers(tcp_packet(SERVER, 1025, ACK))) is None                    # a pure ACK is neither


def test_syn_acks_and_fins_are_counted_and_bytes_are_relative_to_the_first_sequence_number():
    events = Events([Event.parse("drop:syn-ack:2"), Event.parse("drop:byte:2000:2")])
    assert events.match(headers(tcp_packet(SERVER, 5000, SYN | ACK))) is None
    assert events.match(headers(tcp_packet(SERVER, 5000, SYN | ACK))).what == "syn-ack"    # the second one
    assert events.match(headers(tcp_packet(SERVER, 5001, ACK, 1448))) is None             # bytes 0-1447
    assert events.match(headers(tcp_packet(SERVER, 6449, ACK, 1448))) is None             # from 1448: before 2000
    assert events.match(headers(tcp_packet(SERVER, 7897, ACK, 1448))).what == "byte"      # from 2896
    assert events.match(headers(tcp_packet(SERVER, 9345, ACK, 1448))).what == "byte"
    assert events.match(headers(tcp_packet(SERVER, 10793, ACK, 1448))) is None            # COUNT was 2
    assert Events([Event.parse("delay:fin:1:1:300")]).match(headers(tcp_packet(CLIENT, 9, FIN | ACK))).delay_ms == 300


def test_the_bottleneck_sends_at_its_rate_and_drops_what_its_full_queue_cannot_hold():
    link = Bottleneck(rate_kbit=8_000, queue_packets=3)            # 1 byte per microsecond
    leaving = [link.departure(0.0, 1000) for _ in range(5)]
    assert leaving[:3] == pytest.approx([0.001, 0.002, 0.003]) and leaving[3:] == [None, None]
    assert link.dropped == 2 and link.departure(0.0025, 1000) == pytest.approx(0.004)
    assert Bottleneck(0, 1).departure(1.5, 1500) == 1.5                                    # no rate: no bottleneck


def test_a_segment_held_back_leaves_after_two_others_have_passed_it_or_after_a_while():
    held = HeldBack()
    held.hold(7, now=0.0, release=0.02)
    assert held.passed() == [] and held.passed() == [7] and held.passed() == []
    assert not held.take_retry()                                  # 7 was reordered: nothing to try again
    held.hold(8, now=1.0, release=1.02)
    assert held.expired(1.0005) == [] and held.expired(1.002) == [(8, 1.02)]   # keeps its own delay
    assert held.take_retry() and not held.take_retry()            # the next data segment is held instead, once


def test_every_bundled_scenario_loads_with_checks_that_exist():
    names = scenario.bundled()
    assert set(names) >= {"syn-loss", "fast-retransmit", "tail-loss-rto", "reorder", "slow-start", "bufferbloat",
                          "zero-window"}
    for name in names:
        loaded = scenario.load(name)
        assert loaded.title and loaded.lesson and loaded.expect and running.client_args(loaded)


def test_a_seed_picks_the_same_numbers_every_time_and_another_seed_others():
    picks = {seed: scenario.load("fast-retransmit", seed).to_client for seed in range(1, 9)}
    assert picks[3] == scenario.load("fast-retransmit", 3).to_client
    assert len({(d.delay_ms, d.events) for d in picks.values()}) > 4
    for direction in picks.values():
        nth = int(direction.events[0].split(":")[2])
        assert 15 <= direction.delay_ms <= 30 and 15 <= nth <= 40


def test_a_slow_reader_scenario_gives_the_client_its_options():
    assert running.client_args(scenario.load("zero-window")) == ["--bulk", "400000", "--rcvbuf", "16384",
                                                          "--pause-after", "30000", "--pause-for", "2"]


@pytest.mark.parametrize("raw, complaint", [
    ({}, "'exchange' needs send"),
    ({"exchange": {"send": ["ECHO x"], "bulk": 5}}, "'exchange' needs send"),
    ({"exchange": {"send": "ECHO x"}}, "a list of request lines"),
    ({"exchange": {"bulk": -1}}, "exchange.bulk must be a number"),
    ({"exchange": {"bulk": 10}, "to_client": {"delay": 5}}, "to_client takes delay_ms"),
    ({"exchange": {"bulk": 10}, "to_client": {"events": ["drop:everything:1"]}}, "event 'drop:everything:1'"),
    ({"exchange": {"bulk": 10}, "expect": {"happiness": True}}, "unknown expectation 'happiness'"),
])
def test_a_bad_scenario_is_one_line_that_says_what_to_fix(raw, complaint):
    with pytest.raises(LabError, match=complaint):
        scenario.resolve("mine", raw, 1)


def test_a_scenario_file_is_read_as_hostile_input(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("exchange = {")
    with pytest.raises(LabError, match="not a readable TOML scenario"):
        scenario.load(str(broken))
    with pytest.raises(LabError, match="no scenario '../etc'"):
        scenario.load("../etc")
    huge = tmp_path / "huge.toml"
    huge.write_text("# " + "x" * (scenario.MAX_FILE_BYTES + 10))
    with pytest.raises(LabError, match="larger than"):
        scenario.load(str(huge))


def test_an_unknown_scenario_is_one_line_naming_the_bundled_ones():
    result = invoke("scenario", "no-such-thing")
    assert result.returncode == 1 and "the bundled ones are aimd, bbr, bufferbloat, burst-loss, fairness, fairness-bbr-reno, fast-retransmit" in result.stderr
    assert "Traceback" not in result.stderr


LAB = "nlt-scn"


@pytest.fixture(scope="module")
def lab():
    ok(invoke("up", "--lab", LAB))
    yield LAB
    invoke("down", "--lab", LAB)


@pytest.fixture
def captures_made():
    """The files a test adds to captures/ (a scenario's capture and its kernel view), removed after it;
    what was there before is left alone."""
    from lab.paths import CAPTURES_DIR

    before = set(CAPTURES_DIR.iterdir()) if CAPTURES_DIR.exists() else set()
    yield
    for made in set(CAPTURES_DIR.iterdir()) - before if CAPTURES_DIR.exists() else ():
        made.unlink()


@pytest.mark.docker
@pytest.mark.parametrize("name", scenario.bundled())
def test_each_bundled_scenario_shows_what_it_expects(lab, name, captures_made):
    result = invoke("scenario", name, "--seed", "7", "--lab", lab)
    out = ok(result)                        # exit 0: every expectation matched (else "does not show what ...")
    assert "matches" in out and "yes" in out and "kernel view:" in result.stdout + result.stderr
    ran = re.search(rf"captures/{name}-(\w+)-seed7\.pcapng", out)       # the name carries the algorithm
    assert ran, out[-2000:]
    about = scenario.load(name).cc
    if about and ran[1] != about:
        assert f"{name} is about {about}, and lab {lab!r} runs {ran[1]}" in out
    status = ok(invoke("status", "--lab", lab))
    assert "nfqueue" not in status and "delay" not in status        # the scenario's link is gone
    # What the learner reads of it at 80 columns: every check's name and the lesson whole.
    from lab.paths import CAPTURES_DIR
    from tests.test_output_at_80 import reads_at_80, rendered

    chosen = scenario.load(name, 7)
    verdicts, cc = running.judge(CAPTURES_DIR / f"{name}-{ran[1]}-seed7.pcapng", chosen, 7070)
    lesson = [" ".join(paragraph.split()) for paragraph in chosen.lesson.split("\n\n") if paragraph.strip()]
    reads_at_80(rendered(lambda console: running.report(verdicts, chosen, cc, console)),
                *(verdict.name for verdict in verdicts), *lesson)


@pytest.mark.docker
def test_a_scenario_about_reno_brings_its_lab_up_with_reno_and_shows_the_saw_tooth(captures_made):
    """aimd names reno: a lab that is down comes up with it, and the kernel shows reno's cuts
    (ssthresh half the window) and its climb of about one segment per round trip."""
    name = "nlt-aimd"
    try:
        out = ok(invoke("scenario", "aimd", "--seed", "2", "--lab", name, env={"COLUMNS": "250"}))
        assert f"lab {name!r} comes up with reno" in out and "captures/aimd-reno-seed2.pcapng" in out
        assert re.search(r"aimd_cycles_at_least .*? [3-9]\d* cuts, ssthresh 0\.4\d to 0\.5\d", out.replace("\n", " "))
    finally:
        invoke("down", "--lab", name)


def test_acks_that_did_not_move_count_whatever_wireshark_calls_them():
    """Early in a transfer the receiver's window still grows, so Wireshark calls some repeated
    ACKs window updates, not duplicate ACKs; the burst-loss check failed on that once."""
    from pathlib import Path

    from lab.inspect.analysis import analyze
    from lab.inspect.expectations import DUPLICATE_ACK, Evidence, repeated_acks, repeated_acks_at_least
    from lab.inspect.graphs import data_sender

    conn = max(analyze(Path("notebooks/data/bulk-loss.pcapng"), keep=True).connections,
               key=lambda c: len(c.segments))
    evidence = Evidence(conn.segments, data_sender(conn.segments))
    repeated = repeated_acks(evidence)
    wireshark_dupacks = [s for s in evidence.received() if s.analysis & DUPLICATE_ACK]
    assert wireshark_dupacks and len(repeated) >= len(wireshark_dupacks)
    assert all(ack.length == 0 for ack in repeated)
    assert repeated_acks_at_least(evidence, len(repeated)).ok
    assert not repeated_acks_at_least(evidence, len(repeated) + 1).ok
