"""The NFQUEUE link emulator's decisions (lab/inside/link_core.py, packet by packet on a clock the
test holds) and its netlink messages (lab/inside/linkemu.py, lab/inside/netlink.py), without a kernel.

Its work on real packets is tested in tests/test_capture_docker.py (a delayed
handshake, seeded loss), by every scenario, and measured in bench/link.py.
"""

from __future__ import annotations

import collections
import struct

from lab.inside import linkemu, netlink
from lab.inside.link_core import ACCEPT, ACK, DROP, SYN, Decider, Emulation, Event, Link


def segment(seq: int, payload: int = 1000, flags: int = 0x10, ports: tuple[int, int] = (7070, 40000)) -> bytes:
    """The first bytes of an IPv4 TCP segment, as the kernel queues them (20-byte IP, 20-byte TCP)."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + payload, 0, 0, 64, 6, 0, bytes(4), bytes(4))
    tcp = struct.pack("!HHIIBBHHH", *ports, seq, 0, 5 << 4, flags, 65535, 0, 0)
    return ip + tcp


SYN_ACK = segment(0, 0, flags=SYN | ACK)       # the sender's first segment: byte 0 of its stream


def run(emulation: Emulation, arrivals: list[tuple[float, int, bytes]], until: float) -> list[tuple[float, int, int]]:
    """Feed the sender's SYN/ACK (id 0) and then packets (time, id, first bytes), stepping the clock by 1 ms:
    (time, id, verdict) of each verdict but the SYN/ACK's."""
    emulation.arrive(0, SYN_ACK, -1.0)
    emulation.due(0.0)
    verdicts, pending, now = [], sorted(arrivals), 0.0
    while now <= until:
        while pending and pending[0][0] <= now:
            _, pid, head = pending.pop(0)
            verdicts += [(now, *verdict) for verdict in emulation.arrive(pid, head, now)]
        verdicts += [(now, *verdict) for verdict in emulation.due(now)]
        now = round(now + 0.001, 6)
    return verdicts


def test_a_delayed_packet_is_accepted_at_its_time_and_not_before():
    emulation = Emulation(Link(delay_ms=40))
    assert emulation.arrive(1, segment(1), 0.0) == [] and emulation.next_due() == 0.040
    assert emulation.due(0.039) == [] and emulation.due(0.040) == [(1, ACCEPT)] and emulation.next_due() is None


def test_the_fifth_data_segment_is_dropped_at_once_and_its_retransmission_passes():
    emulation = Emulation(Link(delay_ms=10, events=(Event.parse("drop:data:5"),)))
    arrivals = [(i * 0.001, i + 1, segment(1 + 1000 * i)) for i in range(8)]
    arrivals.append((0.020, 99, segment(1 + 1000 * 4)))                  # the 5th sent again
    verdicts = run(emulation, arrivals, 0.050)
    assert (0.004, 5, DROP) in verdicts and (0.030, 99, ACCEPT) in verdicts
    assert sorted(pid for _, pid, verdict in verdicts if verdict == ACCEPT) == [1, 2, 3, 4, 6, 7, 8, 99]
    assert emulation.counts()["dropped"] == 1 and emulation.counts()["events"] == {"syn-ack": 1, "data": 8, "resent": 1}


def test_a_reordered_segment_leaves_after_the_two_that_overtake_it():
    emulation = Emulation(Link(delay_ms=10, events=(Event.parse("reorder:data:2"),)))
    arrivals = [(0.0, 1, segment(1)), (0.0, 2, segment(1001)), (0.0, 3, segment(2001)), (0.0, 4, segment(3001))]
    order = [pid for _, pid, _ in run(emulation, arrivals, 0.030)]
    assert order == [1, 3, 4, 2]


def test_a_segment_nothing_overtakes_keeps_its_place_and_the_next_one_is_reordered_instead():
    emulation = Emulation(Link(delay_ms=10, events=(Event.parse("reorder:data:2"),)))
    arrivals = [(0.0, 1, segment(1)), (0.0, 2, segment(1001)),                  # the end of a flight
                (0.020, 3, segment(2001)), (0.020, 4, segment(3001)), (0.020, 5, segment(4001)), (0.020, 6, segment(5001))]
    verdicts = run(emulation, arrivals, 0.050)
    assert [pid for _, pid, _ in verdicts] == [1, 2, 4, 5, 3, 6]      # 3, the next data segment, is overtaken
    assert next(at for at, pid, _ in verdicts if pid == 2) == 0.010


def test_a_delayed_fin_is_held_its_extra_time():
    emulation = Emulation(Link(delay_ms=5, events=(Event.parse("delay:fin:1:1:300"),)))
    emulation.arrive(1, segment(1, 0, flags=0x11), 0.0)
    assert emulation.next_due() == 0.305


def test_a_full_bottleneck_drops_the_tail_and_spaces_the_rest_by_their_size_over_the_rate():
    emulation = Emulation(Link(rate_kbit=1040, queue_packets=2))        # a 1,040-byte packet: 8 ms at 1,040 kbit/s
    verdicts = [emulation.arrive(pid, segment(1 + 1000 * pid), 0.0) for pid in range(4)]
    assert verdicts == [[], [], [(2, DROP)], [(3, DROP)]] and emulation.counts()["queue_drops"] == 2
    assert emulation.due(0.0079) == [] and emulation.due(0.008) == [(0, ACCEPT)] and emulation.due(0.016) == [(1, ACCEPT)]


def test_what_is_still_held_when_the_emulator_stops_is_let_through_in_order():
    emulation = Emulation(Link(delay_ms=100, events=(Event.parse("reorder:syn:1"),)))
    emulation.arrive(7, segment(0, 0, flags=SYN), 0.0)                  # held back
    emulation.arrive(8, segment(1), 0.001)
    emulation.arrive(9, segment(1001), 0.002)
    assert emulation.rest() == [(8, ACCEPT), (9, ACCEPT), (7, ACCEPT)] and emulation.next_due() is None
    alone = Emulation(Link(delay_ms=100, events=(Event.parse("reorder:syn:1"),)))
    alone.arrive(7, segment(0, 0, flags=SYN), 0.0)                      # held back, nothing overtakes it
    assert alone.next_due() is None and alone.rest() == [(7, ACCEPT)] and alone.rest() == []


def test_the_same_seed_drops_the_same_packets_through_the_whole_core():
    def dropped(seed: int) -> list[int]:
        emulation = Emulation(Link(delay_ms=1, loss_pct=20, seed=seed))
        return [pid for pid in range(500) for _, verdict in emulation.arrive(pid, segment(1 + 1000 * pid), pid / 1000)
                if verdict == DROP]

    assert dropped(3) == dropped(3) != dropped(4) and 60 <= len(dropped(3)) <= 140


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
    message = linkemu.verdict_message(7, 1234, ACCEPT)
    length, kind, flags, _, _ = struct.unpack_from("=IHHII", message)
    assert length == len(message) and kind == (3 << 8) | 1 and flags & netlink.NLM_F_REQUEST
    assert struct.unpack_from("!H", message, 18)[0] == 7                     # the queue, big-endian
    assert struct.unpack_from("!II", message, 24) == (ACCEPT, 1234)
    assert list(netlink.messages(message + message)) == [(kind, message[16:])] * 2


def test_a_queued_packets_id_is_read_from_its_packet_header_attribute():
    header = struct.pack("!IHB", 99, 0x0800, 1) + b"\0"
    payload = struct.pack("=BBH", 2, 0, 0) + struct.pack("=HH", 4 + 7, 1) + header
    assert linkemu.packet_id(payload) == 99
    assert linkemu.packet_id(struct.pack("=BBH", 2, 0, 0)) is None


def test_the_rule_says_what_the_link_does_for_status_to_read():
    rule = linkemu.rule("-A", "10.77.0.2", 7, Link(delay_ms=40, loss_pct=2, seed=7))
    assert rule[rule.index("--comment") + 1] == "tcplab-link delay 40ms loss 2% seed 7"
    assert rule[-1] == "--queue-bypass" and rule[2:4] == ["raw", "-A"]


class SentVerdicts:
    """A socket that keeps what the emulator sends: (batch?, id, verdict) of each message."""

    def __init__(self) -> None:
        self.sent: list[tuple[bool, int, int]] = []

    def sendall(self, data: bytes) -> None:
        for kind, body in netlink.messages(data):
            verdict, pid = struct.unpack_from("!II", body, 8)
            self.sent.append((kind == (3 << 8) | linkemu.NFQNL_MSG_VERDICT_BATCH, pid, verdict))


def test_the_oldest_packets_accepted_in_order_get_one_batch_verdict_and_the_rest_one_each():
    queue = object.__new__(linkemu.Queue)       # its socket and kernel are not needed for the bookkeeping
    queue.number, queue.sock, queue.answered = 7, SentVerdicts(), set()
    queue.held = collections.deque([1, 2, 3, 4, 5])
    queue.verdicts([(1, ACCEPT), (2, ACCEPT), (4, ACCEPT)])        # 3 is still delayed (an event's delay)
    assert queue.sock.sent == [(True, 2, ACCEPT), (False, 4, ACCEPT)]
    queue.verdicts([(3, ACCEPT), (5, DROP)])
    assert queue.sock.sent[2:] == [(True, 3, ACCEPT), (False, 5, DROP)]    # the batch may not reach 5: dropped
    queue.held.append(6)
    queue.verdicts([(6, ACCEPT)])
    assert queue.sock.sent[4:] == [(True, 6, ACCEPT)] and not queue.held and not queue.answered
    queue.held.extend([7, 8, 9])
    queue.verdicts([(8, ACCEPT), (9, ACCEPT), (7, ACCEPT)])        # 7 was held back: the other two overtake it
    assert queue.sock.sent[5:] == [(False, 8, ACCEPT), (False, 9, ACCEPT), (False, 7, ACCEPT)]
