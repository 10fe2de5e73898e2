"""lab.inspect against tshark on captures of real programs (tests/corpus/README.md).

tshark is the judge: for every corpus file we ask it about every frame and compare.
Every flag must mark exactly the frames tshark marks, file by file; the precision
and recall of each flag over the whole corpus are printed in pytest's summary.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.inside import protocol
from lab.inspect import analyze, follow, rtt_samples, stream_segments
from lab.inspect.decode import address_text
from lab.inspect.report import si_size
from tests import tshark
from tests.corpus_scores import SCORES

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.pcap"))
IDS = [path.stem for path in CORPUS]

pytestmark = [pytest.mark.slow, pytest.mark.needs("tshark")]


def test_the_corpus_is_there():
    assert len(CORPUS) >= 10, "tests/corpus lost its captures"


@pytest.mark.parametrize("path", CORPUS, ids=IDS)
def test_stream_numbers_and_relative_seq_ack_match_tshark_on_every_frame(path):
    theirs = tshark.frames(str(path))
    ours = {s.frame: (s.stream, s.rel_seq, s.rel_ack) for s in analyze_segments(path)}
    assert ours == theirs


@pytest.mark.parametrize("path", CORPUS, ids=IDS)
def test_each_analysis_flag_marks_the_frames_tshark_marks(path):
    capture = analyze(path)
    verdicts = tshark.flagged(str(path))
    mismatched = {name: {"missed": sorted(verdicts[name] - set(capture.frames_with(name)))[:10],
                         "extra": sorted(set(capture.frames_with(name)) - verdicts[name])[:10]}
                  for name in tshark.FLAGS if set(capture.frames_with(name)) != verdicts[name]}
    assert not mismatched


def test_the_corpus_exercises_every_flag():
    """Each flag is marked somewhere in the corpus (else its exact test above proves nothing);
    the counts are kept for the precision and recall printed in pytest's summary."""
    SCORES.clear()
    for path in CORPUS:
        capture = analyze(path)
        verdicts = tshark.flagged(str(path))
        for name in tshark.FLAGS:
            ours, theirs = set(capture.frames_with(name)), verdicts[name]
            score = SCORES[name]
            score[0] += len(ours & theirs)
            score[1] += len(ours)
            score[2] += len(theirs)
    seen = {name for name, (_, _, theirs) in SCORES.items() if theirs}
    assert seen == set(tshark.FLAGS), "the corpus exists to exercise every flag"


@pytest.mark.parametrize("path", CORPUS, ids=IDS)
def test_duplicate_ack_numbers_match_tshark(path):
    out = tshark.run("-r", str(path), "-Y", "tcp.analysis.duplicate_ack", "-T", "fields",
                     "-e", "frame.number", "-e", "tcp.analysis.duplicate_ack_num")
    theirs = {int(frame): int(number) for frame, number in (line.split("\t") for line in out.splitlines())}
    ours = {s.frame: s.dupack_num for s in analyze_segments(path) if s.dupack_num}
    assert ours == theirs


@pytest.mark.parametrize("path", CORPUS, ids=IDS)
def test_rtt_samples_match_tsharks_ack_rtt(path):
    out = tshark.run("-r", str(path), "-Y", "tcp.analysis.ack_rtt", "-T", "fields", "-e", "frame.number",
                     "-e", "tcp.analysis.acks_frame", "-e", "tcp.analysis.ack_rtt")
    theirs = {int(a): (int(b), round(float(c) * 1e6)) for a, b, c in (line.split("\t") for line in out.splitlines())}
    ours = {}
    for conn in analyze(path).connections:
        for sample in rtt_samples(stream_segments(path, conn.stream)):
            ours[sample.ack_frame] = (sample.acked_frame, round((sample.acked_ns - sample.sent_ns) / 1e3))
    assert ours == theirs


@pytest.mark.parametrize("path", CORPUS, ids=IDS)
def test_the_conversation_table_matches_tshark_conv_tcp(path):
    capture = analyze(path)
    ours = []
    for conn in capture.connections:
        a = conn.opener
        b = conn.server if a is conn.client else conn.client
        ours.append((f"{address_text(a.address)}:{a.port}", f"{address_text(b.address)}:{b.port}",
                     b.packets, a.packets, si_size(b.frame_bytes), si_size(a.frame_bytes),
                     f"{(conn.start_ns - capture.first_time_ns) / 1e9:.9f}", f"{conn.duration_ns / 1e9:.4f}"))
    assert sorted(ours) == tshark.conversations(str(path))


def test_follow_stream_gives_exactly_what_the_server_sent_despite_loss():
    """Retransmitted bytes count once: the BULK reply comes out byte for byte."""
    path = Path(__file__).parent / "corpus" / "lossfull.pcap"
    capture = analyze(path)
    assert capture.frames_with("retransmission"), "lossfull.pcap should hold retransmissions"
    nbytes = 300_000
    expected = (b"OK %d bytes follow\n" % nbytes + protocol.bulk_pattern(0, nbytes) + b"OK end of bulk\n")
    bulk_streams = [c.stream for c in capture.connections if c.server.payload_bytes > nbytes]
    assert bulk_streams
    for stream in bulk_streams:
        request, reply = follow(path, stream)
        assert request == b"BULK 300000\n"
        assert reply == expected


def test_follow_stream_matches_tsharks_follow_on_the_lab_session():
    path = Path(__file__).parent / "corpus" / "lab.pcap"
    out = tshark.run("-r", str(path), "-q", "-z", "follow,tcp,raw,0")
    chunks = {True: b"", False: b""}
    for line in out.splitlines():
        text = line.strip()
        if not text or set(text) == {"="} or ":" in text:
            continue
        chunks[not line.startswith("\t")] += bytes.fromhex(text)
    assert follow(path, 0) == (chunks[True], chunks[False])
    assert follow(path, 0)[0] == b"ECHO hello\nUPPER tcp\nTIME\nQUIT\n"


def analyze_segments(path):
    from lab.inspect import iter_segments

    return iter_segments(path)
