"""The Wireshark dissector (lab/wireshark/tcplab.lua), judged by tshark running it.

Without it tshark shows the lab's port as plain TCP data (no dissector claims it);
with it the packet list says what the lab says.
"""

from __future__ import annotations

import subprocess

import pytest
from scapy.all import IP, TCP, Ether, wrpcap

from lab.inside.protocol import PORT
from lab.paths import PROJECT_ROOT
from tests.tshark import TSHARK

pytestmark = pytest.mark.needs("tshark")      # skipped without it, failed without it in CI (conftest)

PLUGIN = PROJECT_ROOT / "lab" / "wireshark" / "tcplab.lua"
DATA = PROJECT_ROOT / "notebooks" / "data"


def tshark(path, *args: str) -> str:
    result = subprocess.run([TSHARK, "-X", f"lua_script:{PLUGIN}", "-r", str(path), *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "Lua: Error" not in result.stderr, result.stderr
    return result.stdout


def fields(path, display_filter: str, *names: str) -> list[str]:
    out = tshark(path, "-Y", display_filter, "-T", "fields", *(f"-e{name}" for name in names))
    return [line for line in out.splitlines() if line]


def test_requests_and_replies_read_as_the_lab_writes_them():
    assert fields(DATA / "exchange.pcapng", "tcplab.line", "tcplab.line") == [
        "ECHO hello, TCP", "OK hello, TCP", "UPPER a byte stream", "OK A BYTE STREAM", "TIME",
        *[line for line in fields(DATA / "exchange.pcapng", "tcplab.status", "tcplab.line") if line.startswith("OK 20")]]
    info = tshark(DATA / "exchange.pcapng", "-Y", "tcplab")
    assert "TCPLAB" in info and "ECHO hello, TCP" in info


def test_no_wireshark_dissector_claims_the_labs_port():
    decodes = subprocess.run([TSHARK, "-G", "decodes"], capture_output=True, text=True).stdout
    claimed = {tuple(line.split("\t")[:2]) for line in decodes.splitlines()}
    assert ("tcp.port", "7000") in claimed                  # Gryphon's: the port the lab used first
    assert not {("tcp.port", str(PORT)), ("udp.port", str(PORT))} & claimed


def test_a_bulk_download_is_data_with_or_without_the_plugin():
    plain = subprocess.run([TSHARK, "-r", str(DATA / "bulk-loss.pcapng"), "-q", "-z", "expert"],
                           capture_output=True, text=True).stdout
    assert "Malformed" not in plain and "Gryphon" not in plain          # what a learner sees without it
    expert = tshark(DATA / "bulk-loss.pcapng", "-q", "-z", "expert")
    assert "Malformed" not in expert and "Gryphon" not in expert
    assert fields(DATA / "bulk-loss.pcapng", "tcplab.line", "tcplab.line") == [
        "BULK 3000000", "OK 3000000 bytes follow", "OK end of bulk"]
    data = fields(DATA / "bulk-loss.pcapng", "tcplab.bulk && !tcp.analysis.retransmission", "tcplab.bulk")
    # every byte once, retransmissions aside (a segment may also carry the end line: only its data counts)
    assert sum(len(hexed) // 2 for line in data for hexed in line.split(",")) == 3_000_000
    again = tshark(DATA / "bulk-loss.pcapng", "-Y", "tcplab.bulk && tcp.analysis.retransmission")
    assert "Retransmission] BULK data, bytes" in again                # a copy is placed where it belongs


def test_udp_datagrams_are_read_one_line_each():
    lines = fields(DATA / "udp.pcapng", "tcplab.line", "tcplab.line")
    assert lines[:4] == ["ECHO over UDP", "OK over UDP", "TIME", lines[3]] and lines[3].startswith("OK ")


def segment(seq: int, payload: bytes, to_server: bool, ack: int = 1):
    ends = (("10.0.0.3", 40000), ("10.0.0.2", PORT))
    (src, sport), (dst, dport) = ends if to_server else ends[::-1]
    return Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="PA", seq=seq, ack=ack) / payload


def handshake():
    client, server = ("10.0.0.3", 40000), ("10.0.0.2", PORT)
    return [Ether() / IP(src=client[0], dst=server[0]) / TCP(sport=client[1], dport=server[1], flags="S", seq=0),
            Ether() / IP(src=server[0], dst=client[0]) / TCP(sport=server[1], dport=client[1], flags="SA", seq=0,
                                                             ack=1),
            Ether() / IP(src=client[0], dst=server[0]) / TCP(sport=client[1], dport=server[1], flags="A", seq=1,
                                                             ack=1)]


def test_a_line_cut_across_two_segments_is_read_whole(tmp_path):
    pcap = tmp_path / "cut.pcap"
    wrpcap(str(pcap), [*handshake(), segment(1, b"ECHO a line in ", True), segment(16, b"two pieces\n", True),
                       segment(1, b"OK a line in two pieces\n", False, ack=27)])
    assert fields(pcap, "tcplab.line", "tcplab.line") == ["ECHO a line in two pieces", "OK a line in two pieces"]


def test_bulk_data_is_placed_by_its_sequence_numbers_after_a_segment_the_capture_missed(tmp_path):
    """A counter of bytes would call the segment after a gap bytes 1000-1999; its sequence number says
    2000-2999. (The copy sent later is not handed to the dissector by Wireshark's TCP, which has
    seen data beyond it; a capture that holds the original, as the bundled one does, shows it.)"""
    pcap = tmp_path / "late.pcap"
    header = b"OK 3000 bytes follow\n"
    start = 1 + len(header)
    packets = [*handshake(), segment(1, b"BULK 3000\n", True), segment(1, header, False, ack=11),
               segment(start, b"a" * 1000, False, ack=11),
               segment(start + 2000, b"c" * 1000 + b"OK end of bulk\n", False, ack=11),
               segment(start + 1000, b"b" * 1000, False, ack=11)]          # sent again, 200 ms later
    for number, packet in enumerate(packets):
        packet.time = 1_000_000 + number * 0.001 + (0.2 if number == len(packets) - 1 else 0)
    wrpcap(str(pcap), packets)
    info = tshark(pcap, "-Y", "tcplab", "-T", "fields", "-e", "_ws.col.Info")
    assert "bytes 0-999 of 3000" in info and "bytes 2000-2999 of 3000 | OK end of bulk" in info, info
    assert "bytes 1000-1999" not in info
