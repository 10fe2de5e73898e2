"""Files in captures/ are written without following links or replacing anything (no Docker needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.host.capture import recorder, safe_files
from lab.inspect import analyze

CORPUS = Path(__file__).parent / "corpus"


@pytest.fixture
def captures(tmp_path, monkeypatch):
    monkeypatch.setattr(recorder, "CAPTURES_DIR", tmp_path)
    monkeypatch.setattr(safe_files, "CAPTURES_DIR", tmp_path)
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


def test_a_partial_file_is_removed_only_by_a_plain_name_of_its_pattern_and_never_through_a_link(captures, tmp_path_factory):
    victim = tmp_path_factory.mktemp("elsewhere") / "precious"
    victim.write_text("mine")
    (captures / ".x.abc.pcap.part").symlink_to(victim)
    assert safe_files.remove_partial_capture(".x.abc.pcap.part") is None
    assert safe_files.remove_partial_capture("../elsewhere/precious") is None
    assert safe_files.remove_partial_capture("precious") is None
    assert victim.read_text() == "mine"
    real = captures / ".y.def.pcap.part"
    real.write_bytes(b"x")
    assert safe_files.remove_partial_capture(real.name) == real.name and not real.exists()
    samples = captures / ".y.server.ghi.kernel.part"               # a kernel sampler's, after a kill
    samples.write_bytes(b"{}")
    assert safe_files.remove_partial_capture(samples.name) == samples.name and not samples.exists()
    assert safe_files.remove_partial_capture(".kernel.part") is None


def test_an_owner_label_tells_a_live_capture_from_an_orphan():
    assert recorder.owner_alive(recorder.owner_token())
    host, pid, started = recorder.owner_token().split(":")
    assert not recorder.owner_alive(f"{host}:{pid}:{int(started) + 1}")      # same pid, another process
    assert not recorder.owner_alive(f"elsewhere:{pid}:{started}")
    assert not recorder.owner_alive("") and not recorder.owner_alive("garbage")


def test_an_annotation_that_fails_keeps_the_packets_as_pcap(captures, monkeypatch):
    def broken(raw, out):
        raise RuntimeError("disk full")

    monkeypatch.setattr(recorder, "annotate", broken)
    with pytest.raises(LabError, match="kept, unannotated, in .*hello.pcap"):
        recorder.finalize(raw_capture(captures), captures / "hello.pcapng")
    assert [p.name for p in captures.iterdir()] == ["hello.pcap"]
