"""The NFQUEUE link emulator's decisions and its netlink messages, without a kernel (lab/inside/linkemu.py).

Its work on real packets is tested in tests/test_capture_docker.py (a delayed
handshake, seeded loss) and measured in bench/link.py.
"""

from __future__ import annotations

import struct

from lab.inside import linkemu
from lab.inside.linkemu import Decider, Link


def fates(link: Link, count: int = 2000, spacing: float = 0.001) -> list[float | None]:
    decider = Decider(link)
    return [decider.release_time(i * spacing) for i in range(count)]


def test_the_same_seed_decides_the_same_fates_and_another_seed_others():
    link = Link(delay_ms=20, jitter_ms=5, loss_pct=10, reorder_pct=5, seed=7)
    assert fates(link) == fates(link)
    assert fates(link) != fates(Link(delay_ms=20, jitter_ms=5, loss_pct=10, reorder_pct=5, seed=8))


def test_loss_is_near_its_rate():
    lost = sum(fate is None for fate in fates(Link(loss_pct=10, seed=1), 20_000))
    assert 1_800 <= lost <= 2_200


def test_jitter_never_reorders():
    releases = fates(Link(delay_ms=20, jitter_ms=8, seed=3), 5000, 0.0005)
    assert releases == sorted(releases)


def test_packets_further_apart_than_the_jitter_keep_the_delay_on_average():
    releases = fates(Link(delay_ms=20, jitter_ms=8, seed=3), 2000, 0.050)
    added = [release - i * 0.050 for i, release in enumerate(releases)]
    assert 0.0195 < sum(added) / len(added) < 0.0205


def test_reorder_sends_some_packets_at_once_so_that_they_overtake():
    releases = fates(Link(delay_ms=20, reorder_pct=10, seed=5), 1000)
    overtaking = [i for i, r in enumerate(releases) if r == i * 0.001]
    assert 60 <= len(overtaking) <= 140
    assert any(releases[i] < releases[i - 1] for i in overtaking if i)


def test_a_verdict_is_a_netfilter_queue_request_for_one_packet():
    message = linkemu.verdict_message(7, 1234, linkemu.NF_ACCEPT)
    length, kind, flags, _, _ = struct.unpack_from("=IHHII", message)
    assert length == len(message) and kind == (3 << 8) | 1 and flags & linkemu.NLM_F_REQUEST
    assert struct.unpack_from("!H", message, 18)[0] == 7                     # the queue, big-endian
    assert struct.unpack_from("!II", message, 24) == (linkemu.NF_ACCEPT, 1234)


def test_a_queued_packets_id_is_read_from_its_packet_header_attribute():
    header = struct.pack("!IHB", 99, 0x0800, 1) + b"\0"
    payload = struct.pack("=BBH", 2, 0, 0) + struct.pack("=HH", 4 + 7, 1) + header
    assert linkemu.packet_id(payload) == 99
    assert linkemu.packet_id(struct.pack("=BBH", 2, 0, 0)) is None


def test_the_rule_says_what_the_link_does_for_status_to_read():
    rule = linkemu.rule("-A", "10.77.0.2", 7, Link(delay_ms=40, loss_pct=2, seed=7))
    assert rule[rule.index("--comment") + 1] == "tcplab-link delay 40ms loss 2% seed 7"
    assert rule[-1] == "--queue-bypass" and rule[2:4] == ["raw", "-A"]
