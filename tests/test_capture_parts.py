"""The capture's parts that need no Docker: commands, plans, annotation, pcapng, live lines, impairments."""

from __future__ import annotations

import datetime
import io
import struct
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.host import impair, settings
from lab.host.capture import request as recorder
from lab.host.capture.annotate import annotate
from lab.host.capture.livewatch import RateLimit, other_line, tcp_line
from lab.host.capture.pcapng import PcapNgWriter
from lab.host.topology import describe
from lab.inside import capture
from lab.inspect import analyze, read_records, stream_segments
from tests import tshark

CORPUS = Path(__file__).parent / "corpus"
LAB = settings.from_config({"lab": {}}, None)


def test_the_capture_container_is_root_with_net_raw_only_in_the_servers_namespace():
    args = recorder.capture_launch(describe(LAB), recorder.capture_request()).args
    joined = " ".join(args)
    assert "--network container:tcplab-server" in joined
    assert "--cap-drop ALL --cap-add NET_RAW" in joined and joined.count("--cap-add") == 1
    assert "--security-opt no-new-privileges" in joined and "--read-only" in joined
    assert "--privileged" not in joined and "--log-driver none" in joined
    assert args[args.index("--label") + 1] == "org.tcplab.lab=tcplab"
    assert args[-5:] == ["python3", "-m", "lab.inside.capture", "--iface", "eth0"]


def test_tcpdump_gets_the_capabilities_it_drops_root_with_and_can_still_be_stopped():
    args = recorder.capture_launch(describe(LAB), recorder.capture_request(engine_name="tcpdump", count="10", seconds="5")).args
    joined = " ".join(args)
    assert "--cap-add NET_RAW --cap-add SETUID --cap-add SETGID --cap-add KILL" in joined
    assert "timeout -s INT 5.0 tcpdump" in joined and "-c 10" in joined and "-w -" in joined


def test_the_engine_command_carries_filter_count_and_time():
    request = recorder.capture_request(seconds="2.5", count="100", bpf="tcp port 7070")
    assert recorder.engine_command(request)[-6:] == ["--filter", "tcp port 7070", "--count", "100", "--seconds", "2.5"]


@pytest.mark.parametrize("options, message", [
    ({"engine_name": "wireshark"}, "--engine must be one of lab, tcpdump"),
    ({"seconds": "soon"}, "--seconds takes a number"),
    ({"count": "0"}, "must be more than 0"),
    ({"name": "../etc/passwd"}, "is not a usable file name"),
])
def test_bad_capture_options_are_one_line_errors(options, message):
    with pytest.raises(LabError, match=message):
        recorder.capture_request(**options)


def test_a_capture_name_defaults_to_the_time_and_drops_a_pcapng_suffix():
    assert recorder.capture_name("hello.pcapng") == "hello"
    before = datetime.datetime.now().replace(microsecond=0)
    named = recorder.capture_name(None)
    after = datetime.datetime.now()
    assert before <= datetime.datetime.strptime(named, "%Y-%m-%dT%H-%M-%S") <= after


def test_the_pcap_header_the_engine_writes_is_a_nanosecond_pcap_in_native_order():
    header = capture.pcap_file_header()
    assert struct.unpack("=I", header[:4])[0] == 0xA1B23C4D and len(header) == 24
    record = struct.pack("=IIII", 5, 123456789, 4, 4) + b"abcd"   # as the ring's tpacket3 header holds it
    [parsed] = read_records(io.BytesIO(header + record))
    assert parsed.time_ns == 5_123_456_789 and parsed.data == b"abcd"


@pytest.mark.needs("tshark")
def test_pcapng_written_here_keeps_nanoseconds_and_comments_for_wireshark(tmp_path):
    path = tmp_path / "two.pcapng"
    records = list(read_records((CORPUS / "lab.pcap").open("rb")))[:2]
    with path.open("wb") as out:
        writer = PcapNgWriter(out, records[0].linktype)
        writer.packet(1_795_000_000_123_456_789, records[0].data, records[0].wire_length, ("first", "twice"))
        writer.packet(records[1].time_ns, records[1].data, records[1].wire_length)
    out = tshark.run("-r", str(path), "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.comment")
    first = out.splitlines()[0].split("\t")
    assert first[0] == "1795000000.123456789" and first[1] == "first,twice"
    assert [r.comments for r in read_records(path.open("rb"))] == [("first", "twice"), ()]


def comments_of(path: Path) -> dict[int, tuple[str, ...]]:
    return {i: r.comments for i, r in enumerate(read_records(path.open("rb")), 1) if r.comments}


def test_annotation_tells_the_story_of_the_lab_session(tmp_path):
    out = tmp_path / "lab.pcapng"
    result = annotate(CORPUS / "lab.pcap", out)
    capture_ = analyze(CORPUS / "lab.pcap")
    hs = capture_.connections[0].handshake
    comments = comments_of(out)
    assert result.packets == capture_.frames
    assert comments[hs.syn][0].startswith("SYN: the client") and str(capture_.connections[0].client.isn) in comments[hs.syn][0]
    assert comments[hs.syn_ack][0].startswith("SYN/ACK") and "ISN + 1" in comments[hs.syn_ack][0]
    assert comments[hs.ack][0].startswith("ACK: the three-way handshake is complete")
    segments = stream_segments(CORPUS / "lab.pcap", 0)
    first_request = next(s for s in segments if s.length and s.from_client)
    assert "'ECHO hello\\n'" in comments[first_request.frame][0]
    fins = [s.frame for s in segments if s.flags & 1]
    assert "closes first" in comments[fins[0]][0] and comments[fins[1]][0].startswith("FIN: the server")
    assert any("TIME_WAIT" in c[0] for c in comments.values())
    refused = next(conn for conn in capture_.connections if conn.server.port == 9)
    assert any(text.startswith("RST") for text in comments[refused.rst_frames[0]])


def test_every_flagged_frame_is_explained(tmp_path):
    out = tmp_path / "loss.pcapng"
    annotate(CORPUS / "lossfull.pcap", out)
    comments = comments_of(out)
    capture_ = analyze(CORPUS / "lossfull.pcap")
    for frame in capture_.frames_with("retransmission"):
        assert any("retransmission" in text for text in comments[frame])
    for frame in capture_.frames_with("duplicate_ack"):
        assert any(text.startswith("duplicate ACK #") for text in comments[frame])


def test_annotating_a_file_cut_short_keeps_every_whole_packet(tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((CORPUS / "lab.pcap").read_bytes()[:5000])
    result = annotate(cut, tmp_path / "cut.pcapng")
    assert result.packets == analyze(cut).frames > 0


def test_live_lines_say_direction_flags_numbers_payload_and_wiresharks_words():
    segments = stream_segments(CORPUS / "lossfull.pcap", 0)
    request = next(s for s in segments if s.length and s.from_client)
    line = tcp_line(request)
    assert line.startswith("PSH/ACK") and "seq=1" in line and "len=12" in line and "'BULK 300000\\n'" in line
    flagged = next(s for s in segments if s.analysis & 1)     # a plain retransmission
    assert "[TCP Retransmission]" in tcp_line(flagged)
    udp = next(r for r in read_records((CORPUS / "lab.pcap").open("rb")) if r.data[23:24] == b"\x11")
    assert other_line(udp.linktype, udp.data).startswith("UDP 10.99.0.1:")


def test_the_rate_limit_lets_a_burst_through_then_holds():
    limit = RateLimit(rate=10, burst=5)
    allowed = sum(limit.allow() for _ in range(100))
    assert 5 <= allowed <= 6


@pytest.mark.parametrize("options, message", [
    ({"jitter": "10"}, "give --delay too"),
    ({"loss": "120"}, "between 0 and 100"),
    ({"delay": "soon"}, "takes a number"),
    ({"rate": "fast"}, "is not a rate: use bits per second"),
    ({"rate": "1mbps"}, "bytes per second"),
    ({"rate": "0bit"}, "give a rate above 0"),
    ({"delay": "10", "distribution": "pareto"}, "--distribution must be one of normal, uniform"),
    ({"reorder": "5"}, "give --delay too"),
    ({"delay": "10", "seed": "-1"}, "--seed must be between 0"),
    ({}, "nothing to do"),
])
def test_bad_impairments_are_one_line_errors(options, message):
    with pytest.raises(LabError, match=message):
        impair.parse(**options)


def test_impairment_commands():
    both = impair.parse(delay="100", jitter="20", loss="5", rate="1mbit")
    assert impair.netem_command(both)[-8:] == ["netem", "delay", "100ms", "20ms", "distribution", "normal", "loss", "5%"]
    assert impair.tbf_command("1mbit", parent="1:1")[5:7] == ["parent", "1:1"]
    seeded = impair.parse(delay="40", jitter="5", distribution="uniform", loss="2", reorder="10", seed="7")
    assert impair.emulator_options("10.77.0.2", seeded) == [
        "--source", "10.77.0.2", "--delay-ms", "40", "--jitter-ms", "5", "--distribution", "uniform",
        "--loss", "2", "--reorder", "10", "--seed", "7"]
    assert str(both) == "delay 100 ms +/- 20 ms (normal), loss 5%, rate 1mbit"


def test_the_emulator_runs_in_the_receivers_namespace_with_net_admin_only():
    topology = describe(LAB)
    args = topology.run_args("link", "--source", "10.77.0.2", joins="client", instance="server-to-client")
    joined = " ".join(args)
    assert args[:3] == ["run", "--detach", "--rm"] and "--name tcplab-link-server-to-client" in joined
    assert "--network container:tcplab-client" in joined
    assert "--cap-drop ALL --cap-add NET_ADMIN --security-opt" in joined and joined.count("--cap-add") == 1
    assert args[-5:] == ["python3", "-m", "lab.inside.linkemu", "--source", "10.77.0.2"]


def test_status_reads_impairments_from_tc_and_the_emulators_rules():
    shown = ("qdisc netem 1: root refcnt 2 limit 1000 delay 100ms  20ms loss 5% reorder 10%\n"
             "qdisc tbf 2: parent 1:1 rate 1Mbit burst 4Kb lat 400ms\n---\n-P PREROUTING ACCEPT\n"
             '-A PREROUTING -s 10.77.0.3/32 -m comment --comment "tcplab-link delay 40ms loss 2% seed 7" '
             "-j NFQUEUE --queue-num 7 --queue-bypass\n")
    described = impair.describe_rules(shown, {"10.77.0.3": "tcplab-client"})
    assert described == {"self": "netem delay 100ms 20ms loss 5% reorder 10%, tbf rate 1Mbit",
                         "tcplab-client": "delay 40ms loss 2% seed 7 (nfqueue)"}
    assert impair.describe_rules("qdisc noqueue 0: root refcnt 2\n---\n-P PREROUTING ACCEPT\n", {}) == {}


def test_the_live_view_tells_the_story_under_the_packets_that_carry_one():
    """The sentences the pcapng's comments will hold, shown as the packets go by."""
    import io

    from rich.console import Console

    from lab.host.capture.livewatch import LiveView
    from lab.inspect.analysis import analyze
    from lab.inspect.decode import endpoint_text
    from lab.paths import PROJECT_ROOT

    bundled = PROJECT_ROOT / "notebooks" / "data" / "exchange.pcapng"
    first = analyze(bundled).connections[0].client
    client = endpoint_text(first.address, first.port)
    out = io.StringIO()
    view = LiveView(bundled,
                    Console(file=out, width=100, color_system=None), RateLimit(rate=1e6, burst=1000))
    view.done.set()                                  # the file is complete: read it to the end
    view.run()
    text = " ".join(out.getvalue().split())
    assert f"-> SYN: the client {client} asks to open a connection" in text
    assert "-> last ACK: the connection is closed; the client, which closed first, now waits in TIME_WAIT" in text


def test_a_capture_whose_engine_fails_to_start_leaves_nothing_running_and_no_file(tmp_path, monkeypatch):
    """The kernel's samplers and the partial file were started before the engine, outside the
    try that stops them: an engine that could not start left the samplers running."""
    from lab.host.capture import recorder
    from lab.host.capture.request import CaptureRequest
    from lab.host.settings import from_config

    stopped = []

    class Samplers:
        def abandon(self):
            stopped.append("samplers")

    class Engines:
        def of(self, host):
            return self

        def popen(self, *args, **kwargs):
            raise LabError("docker: no such image")

    monkeypatch.setattr(recorder, "CAPTURES_DIR", tmp_path)
    monkeypatch.setattr(recorder, "Engines", lambda c, lab: Engines())
    for name in ("remove_orphan", "remove_leftovers"):
        monkeypatch.setattr(recorder, name, lambda *args, **kwargs: None)
    monkeypatch.setattr(recorder, "require_up", lambda *args, **kwargs: {})
    monkeypatch.setattr(recorder, "start_kernel_view", lambda engines, topology, final: Samplers())
    with pytest.raises(LabError, match="no such image"):
        recorder.capture(None, from_config({}), CaptureRequest(name="x", kernel=True), console=None)
    assert stopped == ["samplers"] and list(tmp_path.iterdir()) == []


def test_the_live_view_always_shows_the_retransmission_whatever_it_elides():
    """fast-retransmit's live view said "... 485 lines not shown" and frame 94, the retransmission,
    never appeared."""
    import io

    from rich.console import Console

    from lab.host.capture.livewatch import LiveView
    from lab.inspect.analysis import analyze
    from lab.paths import PROJECT_ROOT

    bundled = PROJECT_ROOT / "notebooks" / "data" / "bulk-loss.pcapng"
    flagged = analyze(bundled).frames_with("retransmission")
    assert len(flagged) > 10
    out = io.StringIO()
    view = LiveView(bundled, Console(file=out, width=200, color_system=None), RateLimit(rate=0.001, burst=5))
    view.done.set()
    view.run()
    assert view.hidden > 100                              # most lines are elided ...
    assert out.getvalue().count("Retransmission") >= len(flagged)                # ... never these


def test_a_capture_keeps_what_the_labs_containers_sent_beside_the_learners_filter():
    macs = ["02:42:0a:4d:00:02", "02:42:0a:4d:00:03"]
    plain = recorder.capture_request()
    assert recorder.lab_frames_only(plain, macs).bpf == "(ether src 02:42:0a:4d:00:02 or ether src 02:42:0a:4d:00:03)"
    mine = recorder.capture_request(bpf="tcp port 7070")
    assert recorder.lab_frames_only(mine, macs).bpf.endswith(") and (tcp port 7070)")
    everything = recorder.capture_request(all_frames=True)
    assert recorder.lab_frames_only(everything, macs).bpf is None and recorder.lab_frames_only(plain, []).bpf is None
