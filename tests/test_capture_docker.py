"""`invoke capture` and `invoke impair` on a real Docker engine, as a learner runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.host.settings import from_config
from lab.host.topology import describe
from lab.inspect import analyze, follow, read_records, stream_segments
from lab.paths import CAPTURES_DIR
from tests import tshark
from tests.helpers import ROOT, BackgroundCapture, docker_json, invoke, ok

pytestmark = pytest.mark.docker

LAB = "nlt-cap"
SERVER, CLIENT = f"{LAB}-server", f"{LAB}-client"


@pytest.fixture(scope="module")
def lab():
    ok(invoke("build", "--lab", LAB))
    ok(invoke("up", "--lab", LAB))
    yield LAB
    invoke("down", "--lab", LAB)


def address(container: str) -> str:
    [obj] = docker_json("inspect", container)
    return obj["NetworkSettings"]["Networks"][f"{LAB}-net"]["IPAddress"]


def lab_connections(path: Path):
    return [c for c in analyze(path).connections if c.server.port == 7070]


def test_a_send_exchange_is_captured_whole_and_annotated(lab, name):
    out = ok(invoke("capture", "--send", "ECHO across the wire", "--send", "UPPER tcp", "--name", name, "--lab", lab))
    path = CAPTURES_DIR / f"{name}.pcapng"
    assert "client -> server SYN" in out and "OK across the wire" in out      # live view, replies
    assert "0 dropped by the kernel" in out
    [conn] = lab_connections(path)
    assert (conn.client.address, conn.server.address) == tuple(map(_packed, (address(CLIENT), address(SERVER))))
    segments = stream_segments(path, conn.stream)
    syns = [s for s in segments if s.flags & 0x02 and not s.flags & 0x10]
    syn_acks = [s for s in segments if s.flags & 0x12 == 0x12]
    assert len(syns) == 1 and len(syn_acks) == 1 and conn.handshake.ack == syn_acks[0].frame + 1
    assert follow(path, conn.stream) == (b"ECHO across the wire\nUPPER tcp\n", b"OK across the wire\nOK TCP\n")
    assert conn.client.fin_frames and conn.server.fin_frames and not conn.rst_frames
    comments = [r.comments for r in read_records(path.open("rb")) if r.comments]
    assert comments[0][0].startswith("SYN: the client")
    assert path.stat().st_uid == os.geteuid() and not list(CAPTURES_DIR.glob(f".{name}*"))


@pytest.mark.needs("tshark")
def test_the_capture_reads_cleanly_in_scapy_and_tshark(lab, name):
    ok(invoke("capture", "--send", "ECHO readable", "--name", name, "--lab", lab))
    path = CAPTURES_DIR / f"{name}.pcapng"
    from scapy.utils import rdpcap

    assert len(rdpcap(str(path))) == analyze(path).frames
    result = subprocess.run(["tshark", "-r", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "appears to be damaged" not in result.stderr
    commented = tshark.run("-r", str(path), "-Y", "frame.comment", "-T", "fields", "-e", "frame.comment")
    assert "three-way handshake is complete" in commented


def test_a_50_mb_bulk_equals_a_tcpdump_sidecar_with_no_drops_and_wire_sized_segments(lab, name, tmp_path):
    sidecar, sidecar_err = tmp_path / "sidecar.pcap", tmp_path / "sidecar.err"
    with sidecar.open("wb") as out, sidecar_err.open("wb") as err:
        tcpdump = subprocess.Popen(
            ["docker", "run", "--rm", "--name", f"{LAB}-sidecar", "--network", f"container:{SERVER}", "--user", "0",
             "--cap-drop", "ALL", "--cap-add", "NET_RAW", "--cap-add", "SETUID", "--cap-add", "SETGID",
             "--log-driver", "none", f"tcplab/lab:{LAB}",
             "tcpdump", "-i", "eth0", "-s", "0", "-B", "65536", "-U", "--immediate-mode", "-w", "-"],
            stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 30
        while b"listening on" not in sidecar_err.read_bytes():
            assert time.monotonic() < deadline, sidecar_err.read_text()
            time.sleep(0.05)
        out = ok(invoke("capture", "--bulk", "50000000", "--name", name, "--lab", lab))
    finally:
        subprocess.run(["docker", "kill", "--signal", "INT", f"{LAB}-sidecar"], capture_output=True)
        tcpdump.wait(30)
    assert "0 dropped by the kernel" in out
    assert re.search(r"\b0 packets dropped by kernel", sidecar_err.read_text()), sidecar_err.read_text()
    [ours] = lab_connections(CAPTURES_DIR / f"{name}.pcapng")
    theirs = [c for c in analyze(sidecar).connections if c.client.port == ours.client.port]
    assert ours.server.payload_bytes >= 50_000_000
    assert [(c.client.packets, c.server.packets) for c in theirs] == [(ours.client.packets, ours.server.packets)]
    mss = ours.server.options.mss
    assert max(s.length for s in stream_segments(CAPTURES_DIR / f"{name}.pcapng", ours.stream)) <= mss


def test_ctrl_c_leaves_a_valid_file_of_what_was_captured(lab, name):
    running = BackgroundCapture(LAB, "--name", name)
    running.wait_for("capturing on")
    ok(invoke("send", "ECHO before the interrupt", "--lab", lab))
    time.sleep(0.5)
    running.proc.send_signal(signal.SIGINT)
    code, out = running.finish()
    assert code == 0 and "interrupted:" in out, out
    [conn] = lab_connections(CAPTURES_DIR / f"{name}.pcapng")
    assert follow(CAPTURES_DIR / f"{name}.pcapng", conn.stream)[1] == b"OK before the interrupt\n"
    assert not list(CAPTURES_DIR.glob(f".{name}*"))


def test_the_server_dying_mid_capture_ends_it_with_a_clear_message_and_a_valid_file(lab, name):
    running = BackgroundCapture(LAB, "--name", name)
    try:
        running.wait_for("capturing on")
        ok(invoke("send", "ECHO last words", "--lab", lab))
        time.sleep(0.5)
        subprocess.run(["docker", "rm", "--force", SERVER], check=True, capture_output=True)
        code, out = running.finish()
    finally:
        ok(invoke("up", "--lab", lab))
    assert code == 1 and "the server container stopped" in out and "Traceback" not in out, out
    [conn] = lab_connections(CAPTURES_DIR / f"{name}.pcapng")
    assert follow(CAPTURES_DIR / f"{name}.pcapng", conn.stream)[1] == b"OK last words\n"


def test_count_stops_the_capture_by_itself(lab, name):
    running = BackgroundCapture(LAB, "--count", "4", "--name", name)
    running.wait_for("capturing on")
    ok(invoke("send", "ECHO count me", "--lab", lab))
    code, out = running.finish()
    assert code == 0, out
    assert analyze(CAPTURES_DIR / f"{name}.pcapng").frames == 4


def test_the_tcpdump_engine_stops_after_its_seconds(lab, name):
    started = time.monotonic()
    out = ok(invoke("capture", "--engine", "tcpdump", "--seconds", "1", "--name", name, "--lab", lab))
    assert time.monotonic() - started < 30 and "engine tcpdump" in out
    analyze(CAPTURES_DIR / f"{name}.pcapng")   # a valid file, however few packets a quiet second had


def test_the_tcpdump_engine_records_the_same_exchange(lab, name):
    out = ok(invoke("capture", "--engine", "tcpdump", "--send", "ECHO by tcpdump", "--name", name, "--lab", lab))
    assert "0 dropped by the kernel" in out and "engine tcpdump" in out
    [conn] = lab_connections(CAPTURES_DIR / f"{name}.pcapng")
    assert follow(CAPTURES_DIR / f"{name}.pcapng", conn.stream) == (b"ECHO by tcpdump\n", b"OK by tcpdump\n")


def test_a_filter_keeps_only_what_it_matches(lab, name):
    ok(invoke("capture", "--filter", "tcp port 7070", "--send", "ECHO filtered", "--name", name, "--lab", lab))
    capture = analyze(CAPTURES_DIR / f"{name}.pcapng")
    assert capture.frames == sum(c.packets for c in capture.connections) > 0


def test_an_existing_capture_is_never_overwritten(lab, name):
    ok(invoke("capture", "--send", "ECHO first", "--name", name, "--lab", lab))
    before = (CAPTURES_DIR / f"{name}.pcapng").read_bytes()
    result = invoke("capture", "--send", "ECHO second", "--name", name, "--lab", lab)
    assert result.returncode == 1 and "exists: choose another --name" in result.stderr
    assert (CAPTURES_DIR / f"{name}.pcapng").read_bytes() == before


def test_a_bad_filter_is_one_line(lab, name):
    result = invoke("capture", "--filter", "tcp port banana", "--seconds", "1", "--name", name, "--lab", lab)
    assert result.returncode == 1 and "does not compile" in result.stderr
    assert "Traceback" not in result.stderr and not list(CAPTURES_DIR.glob(f"*{name}*"))


def test_loss_shows_retransmissions_in_the_capture_and_in_status(lab, name):
    try:
        out = ok(invoke("impair", "--loss", "5", "--lab", lab))
        assert "loss 5%" in out
        assert "loss 5%" in ok(invoke("status", "--lab", lab))
        ok(invoke("capture", "--bulk", "5000000", "--name", name, "--lab", lab))
        assert analyze(CAPTURES_DIR / f"{name}.pcapng").frames_with("retransmission")
    finally:
        ok(invoke("impair", "--clear", "--lab", lab))
    assert "loss" not in ok(invoke("status", "--lab", lab))


def test_a_rate_limit_slows_a_bulk_download(lab):
    try:
        ok(invoke("impair", "--rate", "8mbit", "--lab", lab))
        out = ok(invoke("bulk", "1000000", "--lab", lab))
        mbit = float(re.search(r"([\d.]+) MB/s", out).group(1)) * 8
        assert mbit < 12, out
    finally:
        ok(invoke("impair", "--clear", "--lab", lab))


@pytest.mark.parametrize("engine", ["auto", "nfqueue"])
def test_a_delay_shows_in_the_handshake_on_any_kernel(lab, name, engine):
    """auto is netem where the kernel has it and the lab's NFQUEUE emulator where not; nfqueue is ours anywhere."""
    try:
        out = ok(invoke("impair", "--delay", "50", "--engine", engine, "--lab", lab))
        used = "nfqueue" if "engine nfqueue" in out else "netem"
        assert f"engine {used}" in out and (engine == "auto" or used == "nfqueue"), out
        assert "delay 50" in ok(invoke("status", "--lab", lab))
        ok(invoke("capture", "--send", "ECHO slowly", "--name", name, "--lab", lab))
        [conn] = lab_connections(CAPTURES_DIR / f"{name}.pcapng")
        rtt_ms = (conn.handshake.ack_time - conn.handshake.syn_time) / 1e6   # seen at the server: its SYN/ACK waits
        assert 50 <= rtt_ms <= 50 + 25, rtt_ms
    finally:
        ok(invoke("impair", "--clear", "--lab", lab))
    assert "delay" not in ok(invoke("status", "--lab", lab))
    assert not subprocess.run(["docker", "ps", "-aq", "--filter", f"name={LAB}-link"],
                              capture_output=True, text=True).stdout.strip()


def test_seeded_loss_from_the_emulator_shows_as_retransmissions(lab, name):
    try:
        ok(invoke("impair", "--loss", "10", "--seed", "7", "--engine", "nfqueue", "--lab", lab))
        assert "loss 10% seed 7 (nfqueue)" in ok(invoke("status", "--lab", lab))
        ok(invoke("capture", "--bulk", "2000000", "--name", name, "--lab", lab))
        assert analyze(CAPTURES_DIR / f"{name}.pcapng").frames_with("retransmission")
    finally:
        ok(invoke("impair", "--clear", "--lab", lab))


def test_a_killed_emulator_is_said_in_status_and_impair_repairs_it_saying_what_it_replaces(lab):
    """Killing the emulator's container left its rule: traffic passed unimpaired while status still
    showed "delay 50ms (nfqueue)"."""
    try:
        ok(invoke("impair", "--delay", "50", "--engine", "nfqueue", "--lab", lab))
        subprocess.run(["docker", "kill", f"{LAB}-link-server-to-client"], check=True, capture_output=True)
        status = ok(invoke("status", "--lab", lab))
        assert "emulator gone: unimpaired" in " ".join(status.split()), status
        assert "run the impair command again to put it back" in " ".join(status.split()), status
        again = ok(invoke("impair", "--delay", "50", "--engine", "nfqueue", "--lab", lab))
        assert "server link had: delay 50ms (nfqueue, emulator gone: unimpaired)" in " ".join(again.split()), again
        assert "it is replaced" in again
        status = " ".join(ok(invoke("status", "--lab", lab)).split())
        assert "delay 50ms (nfqueue)" in status and "emulator gone" not in status, status
    finally:
        ok(invoke("impair", "--clear", "--lab", lab))


def test_two_captures_started_at_once_are_one_capture_and_one_line(lab, name):
    """The second said only "Run 'docker run --help'": the name conflict was hidden."""
    first, second = (subprocess.Popen([sys.executable, "-m", "invoke", "capture", "--count", "2", "--seconds", "4",
                                       "--name", f"{name}-{n}", "--lab", lab], cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for n in (1, 2))
    outcomes = sorted((proc.wait(60), proc.stderr.read()) for proc in (first, second))
    assert outcomes[0][0] == 0 and outcomes[1][0] == 1, outcomes
    assert "a capture is already running in lab" in outcomes[1][1] and "--help" not in outcomes[1][1]


def test_capture_when_the_lab_is_down_is_one_line():
    result = invoke("capture", "--send", "ECHO x", "--lab", "nlt-never-up")
    assert result.returncode == 1 and result.stderr.strip() == "lab 'nlt-never-up' is not up: run 'invoke up --lab nlt-never-up' first"


def _packed(ip: str) -> bytes:
    import ipaddress

    return ipaddress.ip_address(ip).packed


def test_the_kernel_sampler_runs_beside_each_host_with_no_capability():
    topology = describe(from_config({"lab": {}}, LAB))
    for host in ("server", "client"):
        args = topology.run_args("sampler", joins=host, instance=host)
        assert "--cap-add" not in args and f"container:{LAB}-{host}" in args and f"{LAB}-sampler-{host}" in args


def test_kernel_samples_sit_beside_the_capture_on_its_clock_and_agree_with_its_packets(lab, name):
    """The server's unacked segments, sampled every millisecond, match the bytes in flight the packets show."""
    from lab.inspect.kernel import connection_samples, kernel_file_of, read_kernel_file, unacked_agreement

    try:
        ok(invoke("impair", "--delay", "20", "--engine", "nfqueue", "--lab", lab))   # a transfer long enough to see
        out = ok(invoke("capture", "--bulk", "1000000", "--kernel", "--name", name, "--lab", lab))
    finally:
        ok(invoke("impair", "--clear", "--lab", lab))
    pcap = CAPTURES_DIR / f"{name}.pcapng"
    assert kernel_file_of(pcap) == CAPTURES_DIR / f"{name}.kernel.jsonl" and "kernel view:" in out, out
    info = subprocess.run(["capinfos", str(pcap)], capture_output=True, text=True).stdout
    assert f"kernel samples of this run: {name}.kernel.jsonl" in info, info      # Wireshark shows it too
    capture = analyze(pcap, keep=True)
    [conn] = [c for c in capture.connections if c.server.port == 7070]
    series = connection_samples(read_kernel_file(kernel_file_of(pcap)), conn)
    server, client = series["server"], series["client"]
    assert {"ESTABLISHED"} <= {s.state for s in server} and "TIME_WAIT" in {s.state for s in client}
    last_frame = conn.segments[-1].time_ns
    assert conn.start_ns - 2e9 < server[0].time_ns and server[-1].time_ns < last_frame + 5e9   # the same clock
    agreeing, disagreeing = unacked_agreement(server, conn.segments, from_client=False, slack_ns=1_000_000)
    assert agreeing >= 20 and agreeing >= 0.9 * (agreeing + len(disagreeing)), (agreeing, disagreeing[:5])
    assert max(s.cwnd for s in server if s.values.get("cwnd")) > 10         # it grew: slow start, seen by the kernel
    report = ok(invoke("inspect", "--pcap", str(pcap)))
    assert "the kernel's view" in report and "TIME_WAIT" in report
    data = json.loads(subprocess.run([sys.executable, "-m", "lab.inspect", "--json", str(pcap)],
                                     capture_output=True, text=True).stdout)
    rows = [c for c in data["connections"] if c["server"].endswith(":7070")][0]["kernel"]["server"]
    assert rows and all("t_s" in row and "cwnd" in row for row in rows if row.get("state") == "ESTABLISHED")


def test_a_capture_holds_only_what_the_labs_containers_sent_and_says_so(lab, name):
    """The host's side of Docker's bridge announced itself in IPv6 in every capture: four frames among
    14 TCP packets, none of them the lab's."""
    ok(invoke("capture", "--send", "ECHO only ours", "--name", name, "--lab", lab))
    macs = {docker_json("inspect", f"{LAB}-{host}")[0]["NetworkSettings"]["Networks"][f"{LAB}-net"]["MacAddress"]
            for host in ("server", "client")}
    with (CAPTURES_DIR / f"{name}.pcapng").open("rb") as stream:
        sources = {":".join(f"{byte:02x}" for byte in record.data[6:12]) for record in read_records(stream)}
    assert sources and sources <= macs, (sources, macs)
    info = subprocess.run(["capinfos", str(CAPTURES_DIR / f"{name}.pcapng")], capture_output=True, text=True).stdout
    assert "capture filter: (ether src" in info and "--all-frames keeps the rest" in " ".join(info.split())
