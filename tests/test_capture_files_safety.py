"""Files in captures/ are written without following links or replacing anything (no Docker needed)."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.host.capture import leftovers, owners, recorder, safe_files
from lab.inspect import analyze

CORPUS = Path(__file__).parent / "corpus"


@pytest.fixture
def captures(tmp_path, monkeypatch):
    monkeypatch.setattr(recorder, "CAPTURES_DIR", tmp_path)
    return tmp_path


def raw_capture(folder: Path) -> Path:
    fd, raw = safe_files.new_private_file(folder, ".mine.", safe_files.PART_SUFFIX)
    with os.fdopen(fd, "wb") as out:
        out.write((CORPUS / "lab.pcap").read_bytes())
    return raw


def test_every_temporary_name_is_new_so_two_captures_of_one_name_never_share_a_file(captures):
    names = {safe_files.new_private_file(captures, ".same.", ".pcap.part")[1] for _ in range(20)}
    assert len(names) == 20


def test_a_link_planted_under_the_final_name_is_not_followed_nor_replaced(captures, tmp_path_factory):
    victim = tmp_path_factory.mktemp("elsewhere") / "precious"
    victim.write_text("mine")
    final = captures / "hello.pcapng"
    final.symlink_to(victim)
    placed, result = recorder.finalize(raw_capture(captures), final)
    assert placed == captures / "hello-2.pcapng" and result.packets > 0
    assert victim.read_text() == "mine" and final.is_symlink()
    assert analyze(placed).frames == result.packets


def test_a_file_that_appeared_under_the_final_name_during_the_capture_is_kept(captures):
    final = captures / "hello.pcapng"
    raw = raw_capture(captures)
    final.write_text("someone else's")
    placed, _ = recorder.finalize(raw, final)
    assert final.read_text() == "someone else's" and placed.name == "hello-2.pcapng"
    assert not raw.exists() and sorted(p.name for p in captures.iterdir()) == ["hello-2.pcapng", "hello.pcapng"]


def dead_mark() -> str:
    """The owner mark of a process that has ended (as a killed `invoke capture` has)."""
    gone = subprocess.Popen(["sleep", "30"])
    mark = owners.owner_mark(gone.pid)
    gone.kill()
    gone.wait()
    return mark


def pcap_with(records: int, cut: int = 0) -> bytes:
    """A pcap of ``records`` 60-byte Ethernet frames, the last ``cut`` bytes of a further one after them."""
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    frame = bytes(60)
    record = struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame
    return header + record * records + record[:cut]


def test_a_killed_captures_raw_file_is_recovered_whole_records_only_and_the_rest_removed(captures):
    mark = dead_mark()
    part = captures / f".lesson.{mark}.k3j2h1g0.pcap.part"
    part.write_bytes(pcap_with(3, cut=30))                 # killed in the middle of the 4th record
    samples = captures / f".lesson.server.{mark}.a1b2c3d4.kernel.part"
    samples.write_text('{"t": 1}\n')
    annotating = captures / f".lesson.{mark}.z9y8x7w6.pcapng.tmp"
    annotating.write_bytes(b"half a pcapng")
    said = leftovers.sweep(captures)
    assert said == ["recovered 3 packets of a capture whose invoke was killed: lesson.recovered.pcap (unannotated)"]
    assert sorted(path.name for path in captures.iterdir()) == ["lesson.recovered.pcap"]
    assert analyze(captures / "lesson.recovered.pcap").frames == 3


def test_a_live_captures_files_another_hosts_and_links_are_left_alone(captures, tmp_path_factory):
    mine = captures / f".live.{owners.owner_mark()}.abcdefgh.pcap.part"      # this process runs: a live capture
    mine.write_bytes(pcap_with(1))
    elsewhere = captures / f".far.{dead_mark()[:-6]}ffffff.abcdefgh.pcap.part"   # another host's mark
    elsewhere.write_bytes(pcap_with(1))
    victim = tmp_path_factory.mktemp("elsewhere") / "precious"
    victim.write_text("mine")
    (captures / f".x.{dead_mark()}.abcdefgh.pcap.part").symlink_to(victim)
    plain = captures / ".unmarked.abcdefgh.pcap.part"
    plain.write_bytes(pcap_with(1))
    assert leftovers.sweep(captures) == []
    assert mine.exists() and elsewhere.exists() and plain.exists() and victim.read_text() == "mine"


def test_an_empty_raw_file_of_a_killed_capture_is_removed_and_said(captures):
    (captures / f".quiet.{dead_mark()}.abcdefgh.pcap.part").write_bytes(pcap_with(0))
    [said] = leftovers.sweep(captures)
    assert said.startswith("removed .quiet.") and list(captures.iterdir()) == []


def test_every_working_file_a_capture_makes_carries_its_owner(captures):
    fd, path = safe_files.new_private_file(captures, ".mine.", safe_files.PART_SUFFIX)
    os.close(fd)
    assert f".{owners.owner_mark()}." in path.name and not owners.dead_owner(path.name)


def test_an_owner_label_tells_a_live_capture_from_an_orphan():
    assert owners.owner_alive(owners.owner_token())
    host, pid, started = owners.owner_token().split(":")
    assert not owners.owner_alive(f"{host}:{pid}:{int(started) + 1}")      # same pid, another process
    assert not owners.owner_alive(f"elsewhere:{pid}:{started}")
    assert not owners.owner_alive("") and not owners.owner_alive("garbage")


def test_an_annotation_that_fails_keeps_the_packets_as_pcap(captures, monkeypatch):
    def broken(raw, out):
        raise RuntimeError("disk full")

    monkeypatch.setattr(recorder, "annotate", broken)
    with pytest.raises(LabError, match="kept, unannotated, in .*hello.pcap"):
        recorder.finalize(raw_capture(captures), captures / "hello.pcapng")
    assert [p.name for p in captures.iterdir()] == ["hello.pcap"]


def test_a_recovery_that_cannot_be_written_is_said_and_leaves_the_raw_file_for_the_next_sweep(captures, monkeypatch):
    import errno

    part = captures / f".full.{dead_mark()}.abcdefgh.pcap.part"
    part.write_bytes(pcap_with(2))

    def no_room(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(leftovers, "give_to_invoking_user", no_room)      # the copy fails as a full disk fails
    assert leftovers.sweep(captures) == [f"could not recover or remove {part.name}, left by a killed capture: "
                                         "No space left on device"]
    assert [path.name for path in captures.iterdir()] == [part.name]      # the half copy is gone, the raw file kept
