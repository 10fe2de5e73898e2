"""The capture reader and decoder on every format and link type it claims, and on damage.

Files come from real tools where a tool can make them (editcap, mergecap, tcpdump's
corpus); the rest (big-endian pcap, raw IP, Simple Packet Blocks) are written here
from the corpus's own packets, and tshark checks that they mean the same.
"""

from __future__ import annotations

import io
import struct
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from lab.inspect import CaptureFileError, analyze, iter_segments, read_records, reader
from lab.inspect.decode import LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_SLL, LINKTYPE_SLL2, ip_packet
from tests import tshark
from tests.capture_files import block, enhanced_packet, interface, pad, pcap_bytes, pcapng_bytes, section_header

CORPUS = Path(__file__).parent / "corpus"
LAB = CORPUS / "lab.pcap"
EXCHANGE_PCAPNG = Path(__file__).parent.parent / "notebooks" / "data" / "exchange.pcapng"  # with comments


def records(path: Path) -> list:
    with path.open("rb") as stream:
        return list(read_records(stream))


def segment_view(path: Path) -> list[tuple]:
    return [(s.frame, s.stream, s.rel_seq, s.rel_ack, s.length, s.flags, s.analysis) for s in iter_segments(path)]


def test_the_corpus_holds_every_link_type_and_both_ip_versions():
    linktypes = {records(CORPUS / name)[0].linktype for name in ("lab.pcap", "sll.pcap", "sll2.pcap")}
    assert linktypes == {LINKTYPE_ETHERNET, LINKTYPE_SLL, LINKTYPE_SLL2}
    versions = {len(ip_packet(r.linktype, r.data).src) for r in records(LAB) if ip_packet(r.linktype, r.data)}
    assert versions == {4, 16}  # IPv4 and IPv6 addresses


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nanoseconds", [False, True])
def test_pcap_in_both_byte_orders_and_resolutions_reads_the_same(tmp_path, endian, nanoseconds):
    original = records(LAB)
    path = tmp_path / "copy.pcap"
    path.write_bytes(pcap_bytes(original, endian, nanoseconds))
    copy = records(path)
    assert [(r.data, r.wire_length) for r in copy] == [(r.data, r.wire_length) for r in original]
    assert [r.time_ns for r in copy] == [r.time_ns // 1000 * 1000 if not nanoseconds else r.time_ns
                                        for r in original]
    assert segment_view(path) == segment_view(LAB)


@pytest.mark.needs("editcap")
@pytest.mark.parametrize("kind", ["nsecpcap", "pcapng"])
def test_files_written_by_editcap_read_the_same(tmp_path, kind):
    path = tmp_path / f"lab.{kind}"
    subprocess.run(["editcap", "-F", kind, str(LAB), str(path)], check=True, capture_output=True)
    assert [(r.data, r.time_ns) for r in records(path)] == [(r.data, r.time_ns) for r in records(LAB)]
    assert segment_view(path) == segment_view(LAB)


@pytest.mark.needs("editcap")
def test_pcapng_packet_comments_are_read_back(tmp_path):
    path = tmp_path / "commented.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", "-a", "3:the SYN", "-a", "5:handshake done", str(LAB), str(path)],
                   check=True, capture_output=True)
    comments = {i: r.comments for i, r in enumerate(records(path), 1) if r.comments}
    assert comments == {3: ("the SYN",), 5: ("handshake done",)}


@pytest.mark.needs("mergecap", "tshark")
def test_pcapng_with_several_interfaces_and_link_types(tmp_path):
    path = tmp_path / "merged.pcapng"
    subprocess.run(["mergecap", "-F", "pcapng", "-w", str(path), str(LAB), str(CORPUS / "sll2.pcap")],
                   check=True, capture_output=True)
    assert {r.linktype for r in records(path)} == {LINKTYPE_ETHERNET, LINKTYPE_SLL2}
    ours = {s.frame: (s.stream, s.rel_seq, s.rel_ack) for s in iter_segments(path)}
    assert ours == tshark.frames(str(path))


@pytest.mark.needs("tshark")
def test_raw_ip_link_type(tmp_path):
    """Frames without a link layer (what a tun device or `tcpdump -y RAW` gives)."""
    raw = [r._replace(data=r.data[14:], wire_length=r.wire_length - 14) for r in records(LAB)
           if r.data[12:14] in (b"\x08\x00", b"\x86\xdd")]
    path = tmp_path / "raw.pcap"
    path.write_bytes(pcap_bytes(raw, linktype=LINKTYPE_RAW))
    ours = {s.frame: (s.stream, s.rel_seq, s.rel_ack) for s in iter_segments(path)}
    assert ours == tshark.frames(str(path))
    assert len(ours) > 100


def test_simple_packet_blocks(tmp_path):
    """pcapng's Simple Packet Block: no timestamp, no interface number."""
    original = records(LAB)[:20]
    blocks = [section_header(), interface()]
    for rec in original:
        blocks.append(block(3, struct.pack("<I", rec.wire_length) + pad(rec.data)))
    path = tmp_path / "simple.pcapng"
    path.write_bytes(b"".join(blocks))
    assert [r.data for r in records(path)] == [r.data for r in original]


@pytest.mark.parametrize("record", [1, 7, 150])
@pytest.mark.parametrize("into", [7, 16 + 5])   # inside the record's header, inside its data
def test_a_truncated_pcap_names_the_offset_and_keeps_the_frames_before(tmp_path, record, into):
    whole = LAB.read_bytes()
    start = _record_start(whole, record)
    path = tmp_path / "cut.pcap"
    path.write_bytes(whole[:start + into])
    capture = analyze(path)
    assert capture.frames == record
    assert capture.error is not None and str(capture.error).endswith(f"at byte {start}")


def test_a_pcap_cut_before_its_first_record_ends_is_an_error(tmp_path):
    path = tmp_path / "cut.pcap"
    path.write_bytes(LAB.read_bytes()[:24 + 10])
    with pytest.raises(CaptureFileError, match="record header cut short at byte 24"):
        analyze(path)


def _record_start(whole: bytes, index: int) -> int:
    """File offset of record number ``index`` (0-based) of a little-endian pcap."""
    offset = 24
    for _ in range(index):
        offset += 16 + struct.unpack_from("<I", whole, offset + 8)[0]
    return offset


@pytest.mark.needs("editcap")
def test_a_truncated_pcapng_keeps_the_frames_before(tmp_path):
    full = tmp_path / "full.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(LAB), str(full)], check=True, capture_output=True)
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(full.read_bytes()[:5000])
    capture = analyze(cut)
    assert 0 < capture.frames < len(records(full))
    assert "cut short at byte" in str(capture.error)


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"GET / HTTP/1.1\r\n\r\n", "not a pcap or pcapng file"),
    (b"\xd4\xc3\xb2\xa1\x02\x00", "pcap file header is cut short"),
])
def test_files_that_are_not_captures_are_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureFileError, match=message):
        analyze(path)


def test_a_record_claiming_an_impossible_size_is_an_error_not_an_allocation(tmp_path):
    head = LAB.read_bytes()[:24]
    path = tmp_path / "huge.pcap"
    path.write_bytes(head + struct.pack("<IIII", 0, 0, 0x7FFFFFFF, 0x7FFFFFFF) + b"x" * 100)
    with pytest.raises(CaptureFileError, match="claims 2147483647 bytes at byte 24"):
        analyze(path)


@pytest.mark.slow          # it writes and reads a growing file
def test_reading_memory_stays_flat_as_the_file_grows():
    """Peak memory of reading a 40 MB and a 120 MB capture is the same: a few chunks."""
    recs = records(LAB)

    def peak(copies: int) -> int:
        data = pcap_bytes(recs * copies)
        stream = io.BytesIO(data)
        tracemalloc.start()
        try:
            for _ in read_records(stream):
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(200), peak(600)
    assert large < small + (1 << 20), (small, large)


class Trickle:
    """A stream that hands out at most 777 bytes per read, seekable or (like a pipe) not."""

    def __init__(self, data: bytes, seekable: bool, start: int = 0) -> None:
        self.data, self._seekable, self.position = data, seekable, start

    def seekable(self) -> bool:
        return self._seekable

    def tell(self) -> int:
        return self.position

    def seek(self, position: int) -> None:
        assert self._seekable, "seek on a pipe"
        self.position = position

    def read(self, size: int) -> bytes:
        out = self.data[self.position:self.position + min(size, 777)]
        self.position += len(out)
        return out


@pytest.mark.parametrize("seekable", [True, False])
@pytest.mark.parametrize("prefix", [b"", b"JUNK"])
def test_records_across_chunk_boundaries_and_short_reads_read_the_same(monkeypatch, seekable, prefix):
    """Chunks smaller than a packet, reads cut short, a stream not at offset 0: the same records."""
    whole = {path: records(path) for path in (LAB, EXCHANGE_PCAPNG)}  # each file in one chunk
    monkeypatch.setattr("lab.inspect.reader.CHUNK", 1000)
    for path, expected in whole.items():
        stream = Trickle(prefix + path.read_bytes(), seekable, start=len(prefix))
        assert list(read_records(stream)) == expected


def test_batches_cut_short_at_pcapng_damage_keep_every_frame_before_it(tmp_path):
    """Damage found in the middle of a run of packets (where the reader works a batch at a
    time) is named by its offset, and the frames before it are all analysed."""
    original = records(LAB)
    head = section_header() + interface()
    good = [enhanced_packet(rec) for rec in original[:40]]
    bad = bytearray(enhanced_packet(original[40]))
    bad[-4:] = struct.pack("<I", len(bad) + 4)              # its trailing length disagrees
    path = tmp_path / "damaged.pcapng"
    path.write_bytes(head + b"".join(good) + bytes(bad) + enhanced_packet(original[41]))
    capture = analyze(path)
    assert capture.frames == 40
    assert str(capture.error) == f"block's trailing length does not match at byte {len(head) + sum(map(len, good))}"


def test_a_packet_on_an_undescribed_interface_is_named(tmp_path):
    original = records(LAB)[:10]
    head = section_header() + interface()
    blocks = [enhanced_packet(rec, interface_id=1 if i == 6 else 0) for i, rec in enumerate(original)]
    path = tmp_path / "interfaces.pcapng"
    path.write_bytes(head + b"".join(blocks))
    capture = analyze(path)
    assert capture.frames == 6
    assert str(capture.error) == f"packet on undescribed interface 1 at byte {len(head) + sum(map(len, blocks[:6]))}"


def test_an_enhanced_packet_block_too_short_to_be_one_is_an_error(tmp_path):
    path = tmp_path / "short.pcapng"
    path.write_bytes(section_header() + interface() + block(6, b"\0" * 12))
    with pytest.raises(CaptureFileError, match="enhanced packet block of only 24 bytes at byte 48"):
        analyze(path)


def test_a_pcapng_block_claiming_an_impossible_size_is_an_error_not_an_allocation(tmp_path):
    path = tmp_path / "huge.pcapng"
    path.write_bytes(section_header() + interface() + struct.pack("<II", 6, 0x7FFFFFF0) + b"x" * 100)
    with pytest.raises(CaptureFileError, match="block claims 2147483632 bytes at byte 48"):
        analyze(path)


def test_big_endian_pcapng_reads_the_same(tmp_path):
    path = tmp_path / "big.pcapng"
    path.write_bytes(pcapng_bytes(records(LAB), endian=">"))
    assert [(r.data, r.time_ns) for r in records(path)] == [(r.data, r.time_ns) for r in records(LAB)]
    assert segment_view(path) == segment_view(LAB)


@pytest.mark.parametrize("resolution, ticks, expected_ns", [
    (bytes([9]), 1_700_000_000_123_456_789, 1_700_000_000_123_456_789),          # nanoseconds
    (bytes([6]), 1_700_000_000_123_456, 1_700_000_000_123_456_000),              # microseconds
    (bytes([0x80 | 20]), (1_700_000_000 << 20) + (1 << 19), 1_700_000_000_500_000_000),  # 2^-20 s
    (bytes([9]), (1 << 64) - 1, (1 << 64) - 1),                                  # past the year 2262
])
def test_pcapng_timestamps_in_every_resolution_are_exact(tmp_path, resolution, ticks, expected_ns):
    rec = records(LAB)[0]
    tsresol = struct.pack("<HH", 9, 1) + pad(resolution) + struct.pack("<HH", 0, 0)
    path = tmp_path / "resolution.pcapng"
    path.write_bytes(section_header() + interface(options=tsresol) + enhanced_packet(rec, ticks=ticks) * 3)
    assert [r.time_ns for r in records(path)] == [expected_ns] * 3


def test_simple_packet_blocks_between_enhanced_ones_keep_their_place(tmp_path):
    original = records(LAB)[:30]
    blocks = [section_header(), interface()]
    for index, rec in enumerate(original):
        blocks.append(block(3, struct.pack("<I", rec.wire_length) + pad(rec.data)) if index % 7 == 3
                      else enhanced_packet(rec))
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(b"".join(blocks))
    assert [r.data for r in records(path)] == [r.data for r in original]
    assert [r.time_ns == 0 for r in records(path)] == [index % 7 == 3 for index in range(30)]


def test_a_window_becomes_words_once_however_many_blocks_interrupt_its_packets(monkeypatch, tmp_path):
    """A rescan after each odd block must not redo the window's word views (byte-swapped copies
    of the whole window, for a file in the other byte order: 85 s for 13k packets, once)."""
    original = records(LAB)
    calls = []
    real = reader._words
    monkeypatch.setattr(reader, "_words", lambda buffer, endian: calls.append(endian) or real(buffer, endian))
    blocks = [section_header(">"), interface(endian=">")]
    for index, rec in enumerate(original):
        blocks.append(block(3, struct.pack(">I", rec.wire_length) + pad(rec.data), ">") if index % 7 == 3
                      else enhanced_packet(rec, endian=">"))
    path = tmp_path / "interrupted.pcapng"
    path.write_bytes(b"".join(blocks))
    assert [r.data for r in records(path)] == [r.data for r in original]
    assert calls.count(">") == 1     # the section's byte order, for the one window
