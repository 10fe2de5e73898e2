"""The kernel-state sampler (lab/inside/sampler.py): its parsing, and real samples of a real BULK on loopback."""

from __future__ import annotations

import io
import json
import re
import signal
import socket
import struct
import subprocess
import sys
import time

from lab.inside import netlink, sampler
from tests.helpers import ROOT


def diag_message(state: int, info: bytes, cc: bytes = b"cubic\0") -> bytes:
    head = sampler._diag_msg.pack(socket.AF_INET, state, 0, 0, socket.htons(7070), socket.htons(41234),
                                  socket.inet_aton("10.77.0.2") + bytes(12), socket.inet_aton("10.77.0.3") + bytes(12),
                                  0, b"", 0, 0, 0, 0, 0)
    attributes = b""
    for kind, value in ((sampler.INET_DIAG_INFO, info), (sampler.INET_DIAG_CONG, cc)):
        attributes += netlink.attribute(kind, value)
    return head + attributes


def tcp_info(**fields: int) -> bytes:
    info = bytearray(232)
    info[0], info[1] = 1, 0
    for name, value in fields.items():
        at, form = sampler.TCP_INFO_FIELDS[name]
        form.pack_into(info, at, value)
    return bytes(info)


def test_a_sockets_kernel_state_is_read_from_its_tcp_info():
    sample = sampler.parse_socket(diag_message(1, tcp_info(cwnd=42, ssthresh=30, srtt_us=40_000, rto_us=240_000,
                                                           unacked=12, bytes_acked=123_456)))
    assert sample["local"] == "10.77.0.2:7070" and sample["remote"] == "10.77.0.3:41234"
    assert sample["state"] == "ESTABLISHED" and sample["cc"] == "cubic" and sample["ca_state"] == "open"
    assert (sample["cwnd"], sample["ssthresh"], sample["srtt_us"], sample["rto_us"], sample["unacked"],
            sample["bytes_acked"]) == (42, 30, 40_000, 240_000, 12, 123_456)


def test_bbrs_own_state_is_read_when_the_kernel_gives_it():
    head = diag_message(1, tcp_info(cwnd=30), cc=b"bbr\0")
    bbr = sampler._bbr_info.pack(500_000, 0, 26_200, 320, 512)
    sample = sampler.parse_socket(head + netlink.attribute(sampler.INET_DIAG_BBRINFO, bbr))
    assert (sample["bbr_bw"], sample["bbr_min_rtt_us"], sample["pacing_gain"], sample["cwnd_gain"]) == \
        (500_000, 26_200, 320, 512)
    assert "pacing_gain" not in sampler.parse_socket(diag_message(1, tcp_info(cwnd=30)))   # reno, cubic: none


def test_the_receivers_side_and_the_window_scales_are_read_too():
    info = bytearray(tcp_info(rcv_space=14_480, rcv_ssthresh=64_088, ato_us=40_000))
    info[6] = (7 << 4) | 10                          # tcpi_rcv_wscale 7, tcpi_snd_wscale 10 (bit-fields, low first)
    sample = sampler.parse_socket(diag_message(1, bytes(info)))
    assert (sample["rcv_space"], sample["rcv_ssthresh"], sample["ato_us"]) == (14_480, 64_088, 40_000)
    assert (sample["snd_wscale"], sample["rcv_wscale"]) == (10, 7)


def test_no_threshold_yet_is_none_not_two_billion():
    assert sampler.parse_socket(diag_message(1, tcp_info(ssthresh=0x7FFFFFFF)))["ssthresh"] is None


def test_the_dump_request_is_a_sock_diag_request_for_every_state_but_listen():
    request = sampler.dump_request()
    length, kind, flags, _, _ = struct.unpack_from("=IHHII", request)
    assert length == len(request) == 16 + 56 and kind == sampler.SOCK_DIAG_BY_FAMILY
    assert flags & netlink.NLM_F_DUMP == netlink.NLM_F_DUMP
    states = struct.unpack_from("=I", request, 20)[0]
    assert not states & (1 << 10) and states & (1 << 1) and states & (1 << 6)


def test_a_real_bulk_is_sampled_with_the_kernels_window_and_states(server, tmp_path):
    # Its samples go to a file, as in the lab: a pipe nobody reads until the end would fill and stop it.
    out_file = (tmp_path / "samples.jsonl").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "lab.inside.sampler", "--port", str(server.port)], cwd=ROOT,
                            stdout=out_file, stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline().strip() == "tcplab-sampler-ready"
    with server.connect() as sock:
        sock.sendall(b"BULK 20000000\n")
        received = 0
        while received < 20_000_000:
            received += len(sock.recv(1 << 16))
            time.sleep(0.001)           # a slow reader: the transfer lasts long enough to be seen (~0.3 s)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    out_file.seek(0)
    samples = [json.loads(line) for line in out_file]
    senders = [s for s in samples if s["local"].endswith(f":{server.port}") and s["state"] == "ESTABLISHED"]
    assert len(senders) >= 20, err
    assert max(s["cwnd"] for s in senders) >= 10 and all(s["srtt_us"] > 0 and s["rto_us"] >= 200_000 for s in senders)
    assert max(s["bytes_acked"] for s in senders) > 1_000_000
    assert {s["state"] for s in samples} & {"FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE_WAIT", "LAST_ACK"}, err
    times = [s["t"] for s in samples]
    assert times == sorted(times) and abs(times[0] / 1e9 - time.time()) < 60      # the wall clock, as captures have
    taken = int(re.search(r"written of (\d+) taken", err)[1])
    assert taken > len(samples) and re.search(r"every [\d.]+ ms \(median", err)    # only changes are kept


def test_only_changes_are_written_and_an_earlier_runs_time_wait_is_left_out():
    out = io.StringIO()
    recorder = sampler.Recorder(out)
    old = {"local": "10.77.0.3:40000", "remote": "10.77.0.2:7070", "state": "TIME_WAIT"}
    mine = {"local": "10.77.0.3:40001", "remote": "10.77.0.2:7070", "state": "ESTABLISHED", "cwnd": 10}
    recorder.record(1, [old, mine])
    recorder.record(2, [old, mine])                                     # nothing changed
    recorder.record(3, [old, {**mine, "cwnd": 20}])
    recorder.record(4, [old, {**mine, "state": "TIME_WAIT", "cwnd": None}])    # ours may end in TIME_WAIT
    written = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(w["t"], w["local"][-5:], w["state"]) for w in written] == [
        (1, "40001", "ESTABLISHED"), (3, "40001", "ESTABLISHED"), (4, "40001", "TIME_WAIT")]
    assert recorder.taken == 8 and recorder.written == 3
