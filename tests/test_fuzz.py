"""lab.inspect on hostile captures: a result or one line, never a traceback or a hang (tests/fuzzing.py)."""

from __future__ import annotations

import pytest

from tests.fuzzing import run_cases, seeds, snap_cut

pytestmark = pytest.mark.slow      # the fast tier leaves it out: pytest -m 'not docker and not slow'

CASES = 400


def test_a_few_hundred_damaged_captures_give_a_result_or_one_line(tmp_path):
    failures = run_cases(CASES, seed=20261201, folder=tmp_path)
    assert failures == [], f"{len(failures)} of {CASES} cases failed; first: {failures[:3]}"


def test_the_seeds_include_captures_cut_by_a_snap_length():
    cut = [data for data in seeds() if data[16:20] in (b"(\0\0\0", b"6\0\0\0", b"<\0\0\0", b"D\0\0\0")]
    assert len(cut) >= 10


def test_a_snap_length_cut_keeps_every_record_and_cuts_its_bytes():
    from lab.inspect.reader import Record
    from tests.capture_files import pcap_bytes

    records = [Record(1_000_000_000 * i, 1, bytes(range(100)), 100, ()) for i in range(3)]
    cut = snap_cut(pcap_bytes(records), 60)
    assert len(cut) == 24 + 3 * (16 + 60)
