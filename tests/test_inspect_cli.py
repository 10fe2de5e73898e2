"""`python -m lab.inspect` and `invoke inspect` as a user runs them, and the drawings."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import pytest

from lab.inspect import CaptureFileError, analyze, stream_segments
from lab.inspect.cli import newest_capture
from lab.inspect.graphs import estimated_rtt, rtt_figure, sequence_points, throughput_figure, time_sequence_figure
from lab.inspect.ladder import ladder_figure, ladder_text
from lab.inspect.report import CSV_COLUMNS, MAX_LADDERS, MAX_ROWS
from lab.inspect.rtt import rtt_samples
from lab.inspect.tcp import FLAG_NAMES
from tests import tcp_traces, tshark
from tests.capture_files import pcap_bytes
from tests.helpers import ROOT, invoke

matplotlib.use("Agg")

CORPUS = Path(__file__).parent / "corpus"
LAB, LOSS = CORPUS / "lab.pcap", CORPUS / "lossfull.pcap"


def inspect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.inspect", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_json_has_the_contracted_shape_and_the_handshake_of_the_lab_session():
    result = inspect(str(LAB), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"file", "packets", "connections", "flags"}
    assert set(data["flags"]) == set(tshark.FLAGS)
    first = data["connections"][0]
    assert set(first) >= {"stream", "client", "server", "first_frame", "packets", "bytes", "handshake", "teardown"}
    assert first["client"].startswith("10.99.0.1:") and first["server"] == "10.99.0.2:7000"
    replies = b"OK hello\nOK TCP\n" + b"OK 2026-11-24T07:00:00.000Z\n" + b"OK bye\n"   # TIME's is 28 bytes
    assert first["bytes"] == {"client_to_server": len(b"ECHO hello\nUPPER tcp\nTIME\nQUIT\n"),
                              "server_to_client": len(replies)}
    handshake = first["handshake"]
    assert set(handshake) == {"syn", "syn_ack", "ack", "rtt_ms", "client_isn", "server_isn", "mss",
                              "window_scale", "sack_permitted", "timestamps"}
    assert (handshake["syn_ack"], handshake["ack"]) == (handshake["syn"] + 1, handshake["syn"] + 2)
    assert handshake["mss"]["client"] == 1460 and handshake["sack_permitted"]["server"] is True
    assert first["teardown"]["kind"] == "fin" and len(first["teardown"]["frames"]) == 2
    refused = [c for c in data["connections"] if c["server"].endswith(":9")]
    assert refused and refused[0]["teardown"]["kind"] == "rst" and refused[0]["handshake"]["syn_ack"] is None
    assert any(c["client"].startswith("[fd99::1]:") for c in data["connections"])


@pytest.mark.needs("tshark")
@pytest.mark.slow          # tshark's agreement, as the corpus
def test_json_flags_are_tsharks_frame_numbers():
    data = json.loads(inspect(str(LOSS), "--json").stdout)
    verdicts = tshark.flagged(str(LOSS))
    assert {name: set(frames) for name, frames in data["flags"].items()} == verdicts
    assert data["flags"]["retransmission"]


@pytest.mark.needs("tshark")
def test_csv_has_one_row_per_tcp_frame_with_tsharks_flag_letters():
    result = inspect(str(LAB), "--csv")
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == CSV_COLUMNS
    letters = dict(line.split("\t") for line in tshark.run(
        "-r", str(LAB), "-Y", "tcp", "-T", "fields", "-e", "frame.number", "-e", "tcp.flags.str").splitlines())
    assert {int(row[0]): row[6] for row in rows[1:]} == {int(k): v for k, v in letters.items()}
    frames = tshark.frames(str(LAB))
    assert {int(r[0]): (int(r[1]), int(r[8]), int(r[9])) for r in rows[1:]} == frames


def test_the_report_shows_conversations_ladders_and_flags():
    out = inspect(str(LOSS), "--width", "120").stdout
    assert "TCP conversations" in out and "analysis flags" in out
    assert "retransmission" in out
    lab = inspect(str(LAB)).stdout
    assert "SYN seq=0" in lab and "'ECHO hello\\n'" in lab and "FIN/ACK" in lab


def many_connections(tmp_path: Path, count: int = 80) -> Path:
    """A capture of ``count`` short connections: handshake, a request, a reply, FINs."""
    steps = [step for number in range(count)
             for step in (("data", number, 0, 0, 1), ("data", number, 1, 0, 1), ("fin", number, 0, 0, 0),
                          ("fin", number, 1, 0, 0), ("ack", number, 0, 0, 0))]
    path = tmp_path / "many.pcap"
    path.write_bytes(pcap_bytes(tcp_traces.trace(steps), nanoseconds=True))
    return path


def test_the_report_of_many_connections_lists_some_and_says_where_the_rest_are(tmp_path):
    out = inspect(str(many_connections(tmp_path))).stdout
    words = " ".join(out.split())          # sentences fold at the terminal's width
    assert "80 TCP connection(s)" in words
    assert f"... and {80 - MAX_ROWS} more connections (--json lists them all; --stream N shows one)" in words
    assert out.count("\nstream ") == MAX_LADDERS
    assert f"the ladders of {80 - MAX_LADDERS} more short connections are not drawn (--stream N draws one)" in words


def test_stream_shows_one_connection_its_ladder_and_its_flags():
    out = inspect(str(LOSS), "--stream", "0", "--ladders", "400", "--width", "120").stdout
    assert out.count("\nstream ") == 1 and "SYN seq=0" in out
    frames = stream_segments(LOSS, 0)
    retransmissions = sum(1 for s in frames if s.analysis & FLAG_NAMES["retransmission"])
    assert retransmissions and f"retransmission      │ {retransmissions:6}" in out
    short = inspect(str(LOSS), "--stream", "0", "--ladders", "10").stdout
    assert f"stream 0 has {len(frames)} frames: its ladder is drawn up to --ladders 10 frames" in short


def test_stream_with_csv_keeps_that_streams_rows(tmp_path):
    every = list(csv.reader(io.StringIO(inspect(str(LAB), "--csv").stdout)))
    one = list(csv.reader(io.StringIO(inspect(str(LAB), "--csv", "--stream", "2").stdout)))
    assert one == [every[0]] + [row for row in every[1:] if row[1] == "2"] and len(one) > 2


@pytest.mark.parametrize("args, code, message", [
    (("--stream", "9"), 1, "has no stream 9: its streams are 0 to 4"),
    (("--stream", "-1"), 1, "has no stream -1"),
    (("--stream", "1", "--json"), 2, "--json lists every connection"),
])
def test_a_stream_that_is_not_there_is_one_line(args, code, message):
    result = inspect(str(LAB), *args)
    assert result.returncode == code and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing.pcap", "no such file"),
    (lambda tmp: tmp, "is a folder"),
    (lambda tmp: (tmp / "text.pcap").write_text("hello") and tmp / "text.pcap", "not a pcap or pcapng file"),
])
def test_bad_input_is_one_line_and_exit_1(tmp_path, make, message):
    result = inspect(str(make(tmp_path)))
    assert result.returncode == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_a_damaged_file_is_reported_and_what_came_before_is_shown(tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(LAB.read_bytes()[:5000])
    result = inspect(str(cut), "--json")
    assert result.returncode == 1 and "cut short at byte" in result.stderr
    data = json.loads(result.stdout)
    assert data["packets"] > 0 and "cut short" in data["error"]


def test_newest_capture_is_the_most_recent_file(tmp_path):
    older, newer = tmp_path / "a.pcapng", tmp_path / "b.pcap"
    older.write_bytes(b"x")
    newer.write_bytes(b"y")
    os.utime(older, (time.time() + 10, time.time() + 10))
    (tmp_path / ".partial.pcapng").write_bytes(b"z")
    assert newest_capture(tmp_path) == older


def test_without_captures_the_error_says_how_to_make_one(tmp_path):
    with pytest.raises(CaptureFileError, match="invoke capture"):
        newest_capture(tmp_path)


def test_invoke_inspect_reads_a_named_capture():
    result = invoke("inspect", "--pcap", str(LAB), "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["packets"] > 200
    one = invoke("inspect", "--pcap", str(LAB), "--stream", "3")
    assert one.returncode == 0 and "RST/ACK" in one.stdout and "\nstream 0" not in one.stdout


def test_the_text_ladder_has_one_arrow_per_frame_in_the_right_direction():
    capture = analyze(LAB)
    segments = stream_segments(LAB, 0)
    lines = ladder_text(capture.connections[0], segments).splitlines()[1:]
    assert len(lines) == len(segments)
    for line, segment in zip(lines, segments):
        assert line.rstrip().endswith(">|") == segment.from_client
        assert f"seq={segment.rel_seq}" in line


def test_the_ladder_figure_draws_one_arrow_per_frame_and_marks_flagged_ones_red():
    from lab.inspect.ladder import MAX_FIGURE_RUNGS

    capture = analyze(LOSS, keep=True)
    segments = capture.connections[0].segments[:MAX_FIGURE_RUNGS]      # longer: a window (the test below)
    fig = ladder_figure(capture.connections[0], segments)
    arrows = [text for text in fig.axes[0].texts if getattr(text, "arrow_patch", None) is not None]
    assert len(arrows) == len(segments)
    flagged = sum(1 for s in segments if s.analysis)
    red = sum(1 for a in arrows if a.arrow_patch.get_edgecolor()[:3] == matplotlib.colors.to_rgb("tab:red"))
    assert flagged and red == flagged


def test_the_time_sequence_graph_plots_every_data_segment_of_the_sender():
    segments = stream_segments(LOSS, 0)
    points = sequence_points(segments)
    assert len(points) == sum(1 for s in segments if not s.from_client and s.length)
    assert any(p.retransmitted for p in points)
    fig = time_sequence_figure(segments)
    plotted = sum(len(c.get_offsets()) for c in fig.axes[0].collections)
    assert plotted == len(points)


def test_throughput_and_rtt_figures_and_the_estimated_rtt():
    segments = stream_segments(LOSS, 0)
    assert throughput_figure(segments).axes[0].patches
    samples = [s for s in rtt_samples(segments) if not s.from_client]
    assert samples
    estimates = estimated_rtt(samples)
    assert estimates[0] == samples[0].rtt_ms
    assert estimates[1] == pytest.approx(0.875 * samples[0].rtt_ms + 0.125 * samples[1].rtt_ms)
    assert rtt_figure(segments).axes[0].collections


@pytest.mark.parametrize("width", [80, 100, 120, 200])
def test_the_report_reads_whole_at_any_width_from_80_columns(width):
    """Nothing cut to '10.…', no line longer than the terminal, the story under the arrows."""
    import io

    from rich.cells import cell_len
    from rich.console import Console

    from lab.inspect.analysis import analyze
    from lab.inspect.decode import endpoint_text
    from lab.inspect.report import print_report
    from lab.paths import PROJECT_ROOT

    out = io.StringIO()
    term = Console(width=width, file=out, color_system=None, legacy_windows=False)
    capture = analyze(PROJECT_ROOT / "notebooks" / "data" / "exchange.pcapng")
    print_report(capture, term)
    first = capture.connections[0]
    client, server = (endpoint_text(end.address, end.port) for end in (first.client, first.server))
    text = out.getvalue()
    assert "…" not in text and max(cell_len(line) for line in text.splitlines()) <= width
    assert client in text and server in text                                # endpoints whole, ports kept
    assert f"-> SYN: the client {client} asks to open a connection;" in text
    assert "now waits in TIME_WAIT" in " ".join(text.split())


def test_a_long_stream_is_laddered_as_a_window_around_what_wireshark_flags():
    """05 and 08 once spent two minutes drawing 2,790 arrows of a download."""
    from lab.inspect.analysis import analyze
    from lab.inspect.ladder import MAX_FIGURE_RUNGS, ladder_figure, ladder_window
    from lab.paths import PROJECT_ROOT

    capture = PROJECT_ROOT / "notebooks" / "data" / "bulk-loss.pcapng"
    conn = max(analyze(capture, keep=True).connections, key=lambda c: len(c.segments))
    shown, said = ladder_window(conn.segments)
    flagged = next(s for s in conn.segments if s.analysis)
    assert len(shown) == MAX_FIGURE_RUNGS and flagged in shown and shown[0].frame < flagged.frame
    assert said.startswith(f"frames {shown[0].frame}-{shown[-1].frame} of {len(conn.segments)}")
    figure = ladder_figure(conn, conn.segments, title="a download")
    assert said in figure.axes[0].get_title() and len(figure.axes[0].texts) < 3 * MAX_FIGURE_RUNGS + 10
    assert ladder_window(conn.segments[:10]) == (conn.segments[:10], "")
