"""The overlay's wire: lab.inspect.overlay takes VXLAN apart, judged by tshark.

A real lab capture (the bundled download with loss) is wrapped, frame by frame, in the
outer headers Docker Swarm's overlay gives it between two hosts; tshark reads that
underlay capture with its own VXLAN dissector, and its TCP analysis of the inner
frames must be ours, frame for frame.
"""

from __future__ import annotations

import pytest
from scapy.all import IP, UDP, VXLAN, Ether, PcapReader, raw, wrpcap

from lab.inspect import overlay
from lab.inspect.analysis import analyze
from lab.paths import PROJECT_ROOT
from tests.tshark import TSHARK, flagged

pytestmark = [pytest.mark.needs("tshark"), pytest.mark.slow]     # tshark's agreement, as the corpus: not the fast tier

LAB_CAPTURE = PROJECT_ROOT / "notebooks" / "data" / "bulk-loss.pcapng"
NODES = ("192.168.77.1", "192.168.77.2")
VNI = 4097


@pytest.fixture(scope="module")
def underlay(tmp_path_factory):
    """The lab capture as the hosts' interface would show it under the overlay."""
    outer = []
    server_ip = analyze(LAB_CAPTURE).connections[0].server.address
    for inner in PcapReader(str(LAB_CAPTURE)):
        from_server = inner.haslayer(IP) and inner[IP].src == ".".join(map(str, server_ip))
        src, dst = NODES if from_server else NODES[::-1]
        packet = Ether() / IP(src=src, dst=dst) / UDP(sport=40000 + len(outer) % 1000, dport=4789) / \
            VXLAN(vni=VNI, flags=0x08) / Ether(raw(inner))
        packet.time = inner.time
        outer.append(packet)
    path = tmp_path_factory.mktemp("overlay") / "underlay.pcap"
    wrpcap(str(path), outer)
    return path


def test_every_outer_packet_carries_one_inner_frame_50_bytes_smaller(underlay):
    packets = overlay.unwrap(underlay)
    assert len(packets) == analyze(LAB_CAPTURE).frames
    assert {p.vni for p in packets} == {VNI} and {p.overhead for p in packets} == {overlay.OUTER_OVERHEAD} == {50}
    assert overlay.pairs(packets) == {n: n for n in range(1, len(packets) + 1)}


def test_the_inner_tcp_analysis_is_tsharks_through_the_vxlan_dissector(underlay):
    inner = overlay.analyze_inner(underlay)
    theirs = flagged(str(underlay))                         # tshark numbers the outer frames
    to_outer = overlay.pairs(overlay.unwrap(underlay))
    assert theirs["retransmission"] and theirs["duplicate_ack"]          # the capture has something to judge
    for name, frames in theirs.items():
        assert {to_outer[frame] for frame in inner.frames_with(name)} == frames, name


def test_the_inner_analysis_is_the_same_as_the_lab_captures_own(underlay):
    inner, direct = overlay.analyze_inner(underlay), analyze(LAB_CAPTURE)
    assert inner.flagged == direct.flagged
    assert [c.server.payload_bytes for c in inner.connections] == [c.server.payload_bytes for c in direct.connections]


def test_a_packet_that_is_not_vxlan_is_left_alone():
    plain = raw(Ether() / IP() / UDP(dport=4789) / (b"\x00" * 16))          # no VNI flag
    assert overlay.vxlan(1, plain) is None and overlay.vxlan(1, plain[:30]) is None


def test_notebook_09s_exercises_are_asked_of_the_capture_under_the_overlay(underlay):
    from lab.teach.overlay import OverlayExercises

    ex = OverlayExercises(underlay)
    assert ex.reveal("vxlan_overhead_bytes") == 50 and ex.reveal("vni") == VNI
    assert ex.reveal("overlay_mss") == 1460                      # this capture was made on a bridge, then wrapped
    assert ex.verdict("vxlan_overhead_bytes", 50).ok and not ex.verdict("vxlan_overhead_bytes", 42).ok
    assert ex.verdict("retransmitted", True).ok                    # notebooks 01-04's questions, on the inner TCP


def test_an_encrypted_overlays_capture_is_said_to_be_esp_which_nobody_here_can_read(tmp_path):
    """Under an encrypted overlay each VXLAN packet travels inside IPsec ESP: what the lab then
    says of the capture, and tshark agrees on which frames are ESP."""
    import subprocess

    from scapy.layers.ipsec import ESP

    from tests.helpers import invoke, ok

    frames = [Ether() / IP(src=NODES[n % 2], dst=NODES[1 - n % 2]) / ESP(spi=0x1a388af0, seq=n) / (b"\xa5" * 120)
              for n in range(1, 11)]
    frames.append(Ether() / IP(src=NODES[0], dst=NODES[1]) / UDP(dport=7946) / b"gossip")    # the swarm's own
    path = tmp_path / "encrypted.underlay.pcap"
    wrpcap(str(path), frames)
    underlay = overlay.read_underlay(path)
    assert underlay.encrypted == 10 and underlay.carried == [] and overlay.unwrap(path) == []
    theirs = subprocess.run([TSHARK, "-r", str(path), "-Y", "esp"], capture_output=True, text=True, check=True)
    assert len(theirs.stdout.splitlines()) == 10
    said = ok(invoke("inspect", "--pcap", str(path), env={"COLUMNS": "300"}))
    assert "10 of 11 frames are IPsec ESP (IP protocol 50)" in said and "encrypt: no" in said
